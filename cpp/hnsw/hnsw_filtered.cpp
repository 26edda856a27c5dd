// Filtered search: the planner, the two-hop walk, and the exact scan of the
// ids a filter lists (the group walk is in hnsw_groups.cpp).
//
// Each filtered search starts by asking the filter for its numbers
// (Filter::plan): the size of its cheapest clause's list (the driver: a
// posting list, or the slice of a sorted numeric index a range covers), and how
// many ids match: counted exactly when the driver is short enough to list whole
// (the matches then become the search's MatchSet, a bit per id), else measured
// on a sample of the driver. Then it costs each plan in units of one
// distance computation and runs the cheapest:
//
//   exact scan     build the match set, unless already built (listing the
//                  driver's rows and keeping the matches, or ANDing the
//                  clauses' row bitmaps: the filter says which costs less,
//                  FilterPlan::build, in ids listed, kListedRowLines each), then
//                  score each match (kScanIdLines: the id -> slot lookup and a
//                  cold vector), in storage order, on the graph's codes; with
//                  sketches (node_sketches.h) and at least kSketchScanPerKept
//                  matches a kept result, estimate each match on its sketch
//                  (kSketchLines) and read whole only those whose lower bound
//                  can still beat the kept ones (kSketchReadShare of them):
//                  scan_sketched
//   filtered walk  the walk that scores every node it meets and admits only
//                  matches, so it stays connected however the matches lie. To
//                  admit walk_ef of them it scores about kWalkScored x walk_ef /
//                  sel x M nodes, and tests the filter on the walk_ef / sel
//                  it expands (not on every node it scores). walk_ef
//                  shrinks with the selectivity (ef x sel x kAdmitShare, at
//                  least kAdmitFloor x k): the walk explores the ball around the
//                  query that holds walk_ef matches, about walk_ef / sel nodes,
//                  already a wide search, so admitting a full ef would explore
//                  ef / sel nodes for nothing
//   two-hop walk   a walk over the matches only (ACORN-1, Patel et al., SIGMOD
//                  2024): a node's neighbours that fail the filter are not
//                  scored but passed through, their own neighbours taken in
//                  their place, so it scores about what an unfiltered walk of ef
//                  does, but tests the filter on every neighbour it looks at: 2M
//                  a node, plus 2M for each rejected one it passes through
//   group walk     the filtered walk inside the group graph (group_graph.h) of
//                  a value the filter requires, the smallest one kept: costed
//                  as the filtered walk at the selectivity among the group's
//                  members (matches / members), plus its seeds. Where the
//                  group's members lie away from the query, this is the walk
//                  that does not cross the rest of the graph to reach them
//
// Why group graphs (extra links per frequent value, as Qdrant's payload-aware
// HNSW keeps) and not the two-hop walk carry the selective conjunctions with a
// broad category: on bench/filters.py's 10% one (a top category of 21% AND a
// price window AND in stock, 200k x 512 float16, ef 64), the group walk read
// ~1,150 vectors a query at recall@10 0.962, 0.52-0.74x the unfiltered walk's
// rate, where the plain walk read ~4,150 (0.16x) and the two-hop walk lost
// recall (below). The price window keeps about half the category's members
// wherever they lie, so inside the category's graph the walk meets matches
// as densely as an unfiltered walk meets nodes at 50%; the cost is a graph per
// value grouped (8M + 20 bytes a member: 148 at M 16), chosen by the caller
// (Collection groups the keyword attributes it is told to).
//
// Why the plain walk and not two-hop expansion carries the other low
// selectivities: measured with bench/filters.py's conjunctions (20k x 128 to
// 200k x 512, ef 64, plans forced), the two-hop walk scores 3-4x fewer vectors
// at 10% but tests the filter ~15,000 times a query against ~2,800-4,100 for
// the plain walk, each test reading a cold node header (its id) and then the
// bitmap or the attribute rows, so it took 2-5x the plain walk's time there, at
// a lower recall@10 (0.91-0.99 against 0.98-1.00); at 1% it loses the
// matches' connectivity (recall@10 0.66-0.92, and slower than a scan of the
// matches). Where the costs say it is cheaper it still runs:
// the planner costs it like the others.
//
// Why the filtered walk scores full vectors, not sketches: tried on
// bench/filters.py's conjunctions (200k x 512 float16, ef 64, A/B in one
// process), a walk that queued neighbours under their sketch estimates and
// read a node's vector only when it reached the front (then queued again
// under its distance) read 3-4x fewer vectors (10%: 1,220 against 4,164 a
// query; 50%: 251 against 1,039), but expanded as many nodes or more, and the
// estimates' noise (1 bit a dimension) cost recall@10: 0.962 against 0.981 at
// 10%, 0.940 against 0.958 at 50%. At equal recall (the plain walk with a
// smaller admitted ef) the plain walk was as fast or faster (10%: 878 us at
// 0.975 against 877 us at 0.962): with only a code's first 256 bytes
// prefetched, a walk here was bound by the latency of its ~640 expansions one
// after another, not by the bytes of the vectors it scores. Pruning neighbours on their lower bounds once walk_ef are admitted
// dropped almost none (22 of 4,164 at 10%: the walk admits its last match
// near its end).
//
// What a filtered walk costs, and what limits it (200k x 512 float16, ef 64,
// A/B in one process, CPU time, with every block prefetched whole: see
// prefetch_code): its time follows the nodes it scores, each one block of
// 1,168 bytes read from memory at about the same cost as in the unfiltered
// walk (0.15-0.17 us). An expansion costs no more than the unfiltered walk's:
// it scores fewer new neighbours (~6.5 against ~13: the walk's wider ball has
// seen more of them). At recall 0.95 the unfiltered walk scores ~710 nodes
// (ef 48, 54 expansions); at 50% the filtered walk scores ~1,050 (88
// expansions, ~0.6x its QPS), at 10% ~4,150 (636 expansions, ~0.15x): ~4.8 MB
// read a query, at ~7 GB/s. The filter test of each expanded node (an id ->
// row lookup and cold attribute columns, ~0.2 us) is a sixth of the 10% walk.
// Scoring fewer nodes needs a per-node test cheap enough to run on every
// neighbour before reading it. Tried and not kept:
//   - matches scored in full, the other neighbours estimated on their sketches
//     (each neighbour tested when met): 603 full distances instead of 4,152 at
//     10%, but 6,282 predicate tests made it 1.5x slower. With the tests on a
//     bit per slot instead (the match set built as row bitmaps, then its ids
//     turned into slots: ~0.09 ms together), recall 0.984, but the walk
//     itself was slower than the plain one (~1.0 against 0.88 ms): it expands
//     885 nodes instead of 636 (the estimates' noise), and an estimated node's
//     links are cold when it is expanded, so each expansion waits on memory
//     twice, one after the other
//   - the two-hop walk testing ids read from a compact slot -> id array rather
//     than the nodes' headers: still 2x slower than the plain walk at 10%, at
//     recall 0.918 against 0.981. Testing a bit per slot instead, the walk
//     itself took ~0.29 ms (1,123 distances, 68 expansions) against the plain
//     walk's 0.7-0.9, but the recall stayed 0.918: 7 queries in 100 got
//     under 0.7, those whose neighbourhood holds almost no matches, which a
//     walk over matches only cannot cross. Raising its ef to 240 brought 0.983
//     at 3,483 distances, no faster than the plain walk; scoring a node's
//     rejected neighbours too when it gathers fewer than 2-8 matches, 0.926-0.959
//     at 1.1-1.6 ms. On a graph with twice the links (M 32: 128 bytes more a
//     node, as ACORN-gamma densifies its graph), the same walk reached 0.954 in
//     ~0.45 ms, 0.28x that graph's own unfiltered rate at recall 0.95 (the
//     plain walk 0.14x), and 0.965 at ef 96 in ~0.75 ms: denser links halve
//     the gap, not close it
//   - a walk's cost follows the matches' density around the query, not the
//     filter's: at 10% (200k x 512), the 40 queries in 100 whose 100 nearest
//     neighbours hold under 6% matches expand ~1,100-1,200 nodes, those above
//     30% ~110. An admitted ef shrinking with the selectivity by a power
//     instead (k + (ef - k) x sel^0.5: 27 at 10%, 45-48 at 50%) was 20% faster
//     at 10% (recall 0.972 / 0.964 on 200k x 512 / 100k x 256) and 30% slower
//     at 50%; not kept
//   - cells of nodes around 781 or 390 random centres (IVF over the graph's
//     vectors), read until 80 x k matches were seen (numpy, 200k x 512): recall
//     0.70-0.75 at 10% with ~9,000 nodes read; these embeddings do not
//     partition tightly enough
//   - navigating on sketch estimates alone, testing and reading a node when
//     expanded: 1,155 expansions instead of 636, recall 0.945, 2x slower
//   - testing the expanded node after its neighbours are prefetched, or
//     prefetching the next candidate's links: no measurable change
//   - node blocks on huge pages: no measurable change (718 against 722 us)
// A freshly built graph walks as fast as the same index saved and loaded
// (10%: 956 against 1,047 us, A/B in one process): an earlier gap was the
// machine's load in wall-clock time.
//
// Each walk is a "walk plus fallback scan": when it finds fewer than k, or runs
// out of nodes to expand with fewer than its ef admitted while more ids match
// (the matches' part of the graph is not connected from where it started), the
// exact scan follows, so k results come back whenever k ids match.
#include <algorithm>
#include <cmath>
#include <limits>

#include "hnsw/hnsw_index.h"

namespace lookalike::hnsw {

namespace {
constexpr float kInf = std::numeric_limits<float>::infinity();
// The filtered walk's admitted ef: ef x sel x kAdmitShare, at least kAdmitFloor
// x k and at most ef. Measured recall@10 at ef 64: at 10%, 0.97 with a floor of
// 2 and 0.99 with 3 (20k x 128), 0.96 with 3 and 0.975-0.982 with 4 (100k x 256,
// 200k x 512); at 50%, a share of 1 keeps 0.983-0.992 for 30% fewer distances
// than 2. The floor binds at 50% too: with 3 instead of 4, 0.958 against 0.966
// there (200k x 512, the conjunctions' L0), and 4 keeps only 0.956 at 100k x
// 256 (seed 1), so it stays at 4 though 10% would keep 0.975 with 3.
constexpr double kAdmitShare = 1.0;
constexpr double kAdmitFloor = 4.0;
// Nodes the filtered walk scores, per (walk_ef / sel x M) (measured: 0.6-0.66).
constexpr double kWalkScored = 0.65;
// The same for a group graph's walk, whose members keep up to 2M links from the
// start (hnsw_groups.cpp): measured 0.84 on bench/filters.py's 10% conjunction
// (a 41,575-member group) and 1.08 on its 1% near filter (groups of 4-15k).
constexpr double kGroupWalkScored = 1.0;
// A group walk runs only where it costs less than the exact scan by this factor.
// Its recall@10 is lower: on bench/filters.py's 1% near filter (200k x 512,
// groups of 4-8k members, 2,000 matches), 0.92-0.94 for the walk against
// 0.99-1.0 for the scan, where the walk took ~0.8x the scan's time; without
// this margin the planner took the walk for half the queries there, costing
// recall for ~20% of their time.
constexpr double kGroupWalkMargin = 1.5;
// The other steps cost cold cache lines, read one at a time, which weigh less
// against a distance the longer the vectors: a distance streams code_bytes / 64
// lines (prefetched, about kStreamedLines of them cost one cold line) plus a
// fixed kDistanceLines, so one cold line costs 1 / (kDistanceLines + code lines
// / kStreamedLines) of a distance. Measured on bench/filters.py's conjunctions
// at 128 dimensions, a bit test costs ~0.7 distance:
//   kScanIdLines   scoring a listed id beyond its distance: the id -> slot
//                  lookup, and the vector not yet in cache
//   kRowLines      evaluating one clause check on a row (Filter::cost of them a test)
//   kListedRowLines
//                  building the match set, per id of the driver listed (the
//                  unit of FilterPlan::build): measured on bench/filters.py's
//                  conjunctions (200k x 512 float16, plan() alone, CPU time),
//                  listing cost 2.7-5.6 ns a driver row for a filter shared by
//                  all queries, 6-11 ns for one per query (colder rows), and a
//                  distance ~0.2 us (an unfiltered walk of ef 48: ~144 us for
//                  ~710 distances), so a cold line (1/6 of a distance at
//                  512-d) ~33 ns and a listed row ~0.12 of one. The row check
//                  kRowLines x Filter::cost (6 lines a row for 3 clauses)
//                  overstated it 15-50x: a listing reads rows in order,
//                  prefetched, where a walk's test reads cold ones
//   kBitLines      one test of the match set in a walk: the node's id (a cold
//                  header when the walk did not score it), then a bit
constexpr double kDistanceLines = 2.0;
constexpr double kStreamedLines = 4.0;
constexpr double kScanIdLines = 4.0;
constexpr double kRowLines = 2.0;
constexpr double kListedRowLines = 0.12;
constexpr double kBitLines = 3.0;
// The match set is built up front when that costs at most this share of an
// unfiltered walk of the same ef (ef x M distances): the count is then exact,
// and a scan needs nothing more. A quarter (~35 us at 200k x 512) covers
// every conjunction of bench/filters.py built as bitmaps (8-16 us there),
// while a long listing (a broad driver where no bitmap form is cheaper) is
// sampled first.
constexpr double kBuildWalkShare = 0.25;
// A scan estimates its matches on their sketches first (scan_sketched) when
// they are at least this many per result it keeps: preparing the query's side
// costs ~5 us (a rotation at 512-d), and a match's estimate saves its full
// vector only when most matches are then not read. Measured on
// bench/filters.py (200k x 512 float16, k 10, the two scans A/B in one
// process): 21 and 195 matches with their vectors in cache scanned 1.2-1.9x
// slower on sketches (17 and 67 vectors still read); 2,000 matches, a filter
// per query (vectors from memory: "1% near / far"), 9-25% faster (410 and 160
// read); 2,000 matches of one filter shared by all queries (in cache: "1%
// L1 / L2"), 13-15% slower; 20,000 matches (10%), 28% faster (420 read).
// An estimate costs about what a cached full distance does (~20 ns at 512-d
// with AVX-512), so sketches pay where the vectors are not in cache.
constexpr size_t kSketchScanPerKept = 32;
// A match estimated on its sketch: the id -> slot lookup, its bits and its
// factors (cold lines); then a share of them read whole (measured: 6-16% of
// 2,000 matches at k 10 since the query's levels are int16, node_sketches.h;
// 8-20% before: the share is kept, no plan of bench/filters.py is near the
// line it draws).
constexpr double kSketchLines = 3.0;
constexpr double kSketchReadShare = 0.2;
}  // namespace

const char* plan_name(Plan plan) {
  switch (plan) {
    case Plan::Graph: return "graph";
    case Plan::FilteredGraph: return "filtered_graph";
    case Plan::ExactScan: return "exact_scan";
    case Plan::TwoHopGraph: return "two_hop_graph";
    case Plan::GroupGraph: return "group_graph";
  }
  return "unknown";
}

size_t HnswIndex::scan_keep(const SearchParams& p) const {
  return rerank_ && p.rerank ? std::max(p.ef ? p.ef : ef_search(), p.k) : p.k;
}

void HnswIndex::search_filtered(SearchScratch& s, const SearchParams& p, uint64_t entry, SearchStats& st,
                                Checkpoint& pace) const {
  const Filter& filter = *p.filter;
  const size_t ef = std::max(p.ef ? p.ef : ef_search(), p.k);
  const double live = double(std::max<size_t>(slot_count_.load(std::memory_order_relaxed) -
                                                  deleted_.load(std::memory_order_relaxed), 1));
  const double unfiltered_walk = double(ef) * double(config_.M);  // distances of a walk of ef, roughly
  const double line = 1.0 / (kDistanceLines + double(codec_.code_bytes()) / 64.0 / kStreamedLines);
  const double row_cost = kRowLines * line * double(std::max<size_t>(filter.cost(), 1));
  const double listed_row_cost = kListedRowLines * line;
  const double bit_cost = kBitLines * line;

  // The costs of each plan, for a match set that costs `build` ids listed to
  // build and `estimate` matches (either kUnknown when the filter cannot
  // tell), the set built or not.
  struct Costs {
    double selectivity, scan, walk_plain, walk_two_hop, two_hop_tests, listing;
    size_t walk_ef;
  };
  // `nodes`: of the graph walked (the whole index's live ones, or a group's);
  // `scored`: its walk's nodes scored per (walk_ef / sel x M).
  auto costs = [&](size_t build, size_t estimate, bool built, double nodes, double scored_share) {
    Costs c;
    const bool known = estimate != Filter::kUnknown;
    c.selectivity = known ? std::clamp(double(estimate) / nodes, 1.0 / nodes, 1.0) : 1.0;
    c.walk_ef = std::max(p.k, size_t(std::clamp(double(ef) * c.selectivity * kAdmitShare,
                                                 std::min(kAdmitFloor * double(p.k), double(ef)), double(ef))));
    c.listing = build == Filter::kUnknown ? live * row_cost : double(build) * listed_row_cost;
    const double scanned = known ? double(estimate) : live;
    const double scored = 1.0 + kScanIdLines * line;  // a match scored on its full vector
    const double per_match = sketches_ && scanned >= double(kSketchScanPerKept * scan_keep(p))
                                 ? kSketchLines * line + kSketchReadShare * scored
                                 : scored;
    c.scan = (built ? 0.0 : c.listing) + scanned * per_match;
    const double walk_scored = scored_share * double(c.walk_ef) / c.selectivity * double(config_.M);
    // The two-hop walk gathers 2M matches a node: about 2M / sel neighbours looked at.
    const double links = double(max_links(0));
    c.two_hop_tests = unfiltered_walk / links * std::min(links / c.selectivity, links + links * links);
    // A walk tests the filter on each node it meets: lazily (row_cost a test), or
    // on the match set (kBitLines) once the driver is listed, when that is cheaper.
    auto walk_cost = [&](double scored, double tests) {
      return scored + std::min(tests * row_cost, (built ? 0.0 : c.listing) + tests * bit_cost);
    };
    // The plain walk tests each node it expands (search_level's test_when_expanded).
    c.walk_plain = walk_cost(walk_scored, double(c.walk_ef) / c.selectivity);
    c.walk_two_hop = walk_cost(unfiltered_walk, c.two_hop_tests);
    return c;
  };

  // The filter's numbers, and its matches when they are cheap to build: at
  // most kBuildWalkShare of a walk, or a driver short enough that a scan of
  // all of it (as if every id matched) beats every walk at that count.
  // The scan then follows whatever the true count (its cost grows with the
  // count, each walk's shrinks), and sampling the driver first would read part
  // of it twice (measured at 1%: the sample took 5-10% of a query's time).
  size_t build_limit =
      p.plan == Plan::ExactScan ? Filter::kUnknown : size_t(kBuildWalkShare * unfiltered_walk / listed_row_cost);
  auto scan_certain = [&](size_t driver) {  // a driver listed whole, every id a match
    const Costs c = costs(driver, driver, false, live, kWalkScored);
    return c.scan <= std::min(c.walk_plain, c.walk_two_hop);
  };
  if (p.plan == Plan::Graph && scan_certain(build_limit)) {
    for (size_t fails = size_t(live); build_limit + 1 < fails;) {  // scan_certain(build_limit) holds
      const size_t mid = build_limit + (fails - build_limit) / 2;
      if (scan_certain(mid))
        build_limit = mid;
      else
        fails = mid;
    }
  }
  FilterPlan fp = filter.plan(build_limit, s.matches, p.stop);
  st.estimate = fp.estimate;
  st.driver = fp.driver;
  if (fp.built) st.matches = s.matches.size();
  const Costs c = costs(fp.build, fp.estimate, fp.built, live, kWalkScored);
  // The filtered walk inside a group graph the filter requires (group_graph.h):
  // the same walk at the selectivity among the group's members, from its seeds.
  const std::shared_ptr<const GroupGraph> group = group_for(filter);
  if (p.plan == Plan::GroupGraph && !group)
    throw std::invalid_argument("plan group_graph: the index keeps no group graph of a value the filter requires");
  const bool grouped = group && group->size() > 0 && fp.estimate != Filter::kUnknown;
  const Costs g = grouped ? costs(fp.build, fp.estimate, fp.built, double(group->size()), kGroupWalkScored) : c;
  const double walk_group = grouped ? g.walk_plain + double(GroupGraph::kSeeds) : kInf;
  Plan plan = p.plan;
  if (plan == Plan::Graph) {
    const double best = std::min({c.scan, c.walk_plain, c.walk_two_hop});
    plan = c.scan <= best ? Plan::ExactScan : c.walk_two_hop <= best ? Plan::TwoHopGraph : Plan::FilteredGraph;
    const double bar = plan == Plan::ExactScan ? c.scan / kGroupWalkMargin : best;  // what the group walk must beat
    if (walk_group < bar) plan = Plan::GroupGraph;
  }
  const size_t walk_ef = plan == Plan::GroupGraph ? g.walk_ef : c.walk_ef;
  const double tests = plan == Plan::TwoHopGraph ? c.two_hop_tests
                       : plan == Plan::GroupGraph ? double(walk_ef) / g.selectivity
                                                  : double(walk_ef) / c.selectivity;
  if (plan != Plan::ExactScan && !fp.built && c.listing + tests * bit_cost < tests * row_cost) {
    fp = filter.plan(Filter::kUnknown, s.matches, p.stop);
    if (fp.built) st.matches = s.matches.size();
  }
  st.plan = plan;

  // Lists every match into s.matches (once) and scans them, or, for a filter
  // that cannot list, scans every node.
  thread_local std::vector<int64_t> listed_buffer;
  std::vector<int64_t>& listed = listed_buffer;  // a thread_local named in a lambda is looked up per use
  auto scan_matches = [&] {
    if (!fp.built) {
      fp = filter.plan(Filter::kUnknown, s.matches, p.stop);
      if (fp.built) st.matches = s.matches.size();
    }
    if (!fp.built) {
      search_exact(s, p, pace);
      st.distances += slot_count_.load(std::memory_order_relaxed);
      return;
    }
    listed.clear();
    s.matches.for_each([&](int64_t id) { listed.push_back(id); });
    scan_ids(listed, p, s, st, pace);
  };
  if (plan == Plan::ExactScan) {
    scan_matches();
    return;
  }

  const MatchSetFilter bits(s.matches);
  const Filter& allowed = fp.built ? static_cast<const Filter&>(bits) : filter;
  if (plan == Plan::GroupGraph) {
    st.ef = walk_ef;
    st.group_size = group->size();
    search_group(*group, s.query_code.data(), walk_ef, allowed, s, pace);
    st.tested += s.filter_tests;
  } else if (plan == Plan::TwoHopGraph) {
    st.ef = ef;
    search_two_hop(s.query_code.data(), greedy_descend(s.query_code.data(), entry_slot(entry), entry_level(entry), 0),
                   ef, allowed, s, st, pace);
  } else {
    const uint32_t start = greedy_descend(s.query_code.data(), entry_slot(entry), entry_level(entry), 0);
    st.ef = walk_ef;
    search_level(s.query_code.data(), start, walk_ef, 0, &allowed, s, &pace, /*test_when_expanded=*/true);
    st.tested += s.filter_tests;
  }
  st.distances = s.distance_count;
  st.expansions = s.expansions;
  const bool ran_dry = s.candidates.empty() && s.top.size() < st.ef &&
                       (!fp.built || s.top.size() < s.matches.size());
  if (s.top.size() >= p.k && !ran_dry) return;
  st.fell_back = true;
  scan_matches();
}

void HnswIndex::search_two_hop(const uint8_t* query, uint32_t entry, size_t ef, const Filter& allowed,
                               SearchScratch& s, SearchStats& st, Checkpoint& pace) const {
  const uint32_t limit = slot_count_.load(std::memory_order_acquire);
  const size_t gather = max_links(0);  // matches gathered per expansion, as many as a node has links
  auto admits = [&](uint32_t slot) {
    ++st.tested;
    return !is_deleted(slot) && allowed.allows(header(slot).id);
  };
  // Marks an allowed node seen and queues it for scoring.
  auto take = [&](uint32_t slot) {
    s.visited.mark(slot);
    s.batch.push_back(slot);
    prefetch_code(slot);
  };

  s.visited.reset(limit);
  s.candidates.clear();
  s.top.clear();
  const float d = codec_.distance(query, code(entry));
  ++s.distance_count;
  s.visited.mark(entry);
  s.candidates.push_back({d, entry});
  if (admits(entry)) s.top.push_back({d, entry});
  float bound = s.top.empty() ? kInf : d;

  while (!s.candidates.empty()) {
    const Candidate current = s.candidates.front();
    if (current.dist > bound && s.top.size() >= ef) break;
    std::pop_heap(s.candidates.begin(), s.candidates.end(), CloserFirst());
    s.candidates.pop_back();
    ++s.expansions;

    // One hop: the allowed neighbours; the rejected ones are kept to pass through.
    s.batch.clear();
    s.hops.clear();
    LinkList list = link_list(current.slot, 0);
    const uint32_t n = std::min<uint32_t>(list.count.load(std::memory_order_acquire), max_links(0));
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t next = std::atomic_ref<uint32_t>(list.slots[i]).load(std::memory_order_acquire);
      if (next >= limit || s.visited.marked(next)) continue;
      if (admits(next))
        take(next);
      else
        s.hops.push_back(next);
    }
    // Two hops: through each rejected neighbour (once per search) to its allowed
    // neighbours, until the node has as many matches as it has links.
    for (size_t h = 0; h < s.hops.size() && s.batch.size() < gather; ++h) {
      const uint32_t hop = s.hops[h];
      if (s.visited.test_and_set(hop)) continue;
      LinkList far = link_list(hop, 0);
      const uint32_t m = std::min<uint32_t>(far.count.load(std::memory_order_acquire), max_links(0));
      for (uint32_t j = 0; j < m && s.batch.size() < gather; ++j) {
        const uint32_t next = std::atomic_ref<uint32_t>(far.slots[j]).load(std::memory_order_acquire);
        if (next < limit && !s.visited.marked(next) && admits(next)) take(next);
      }
    }
    s.distance_count += s.batch.size();
    pace.step(s.batch.size() + s.hops.size() + 1);
    for (uint32_t next : s.batch) {
      const float dn = codec_.distance(query, code(next));
      if (s.top.size() >= ef && dn >= bound) continue;
      s.candidates.push_back({dn, next});
      std::push_heap(s.candidates.begin(), s.candidates.end(), CloserFirst());
      keep_closest(s.top, {dn, next}, ef);
      bound = s.top.front().dist;
    }
  }
}

void HnswIndex::scan_ids(const std::vector<int64_t>& ids, const SearchParams& p, SearchScratch& s,
                         SearchStats& st, Checkpoint& pace) const {
  std::vector<uint32_t>& slots = s.batch;
  slots.clear();
  {
    // The ids lie anywhere in the map: each read is started kLookAhead ids early
    // (RowMap::prefetch). Measured on bench/filters.py's 1% near filter: 2,000
    // lookups took ~60k cycles while GCC dropped that prefetch (row_map.h says
    // why), mostly waiting on the map's lines, the same at 4, 16 or 48 ahead;
    // a ring of finds issued 16 ahead as loads was no faster; the prefetch
    // emitted took ~40% off.
    constexpr size_t kLookAhead = 16;
    std::lock_guard<std::mutex> lock(ids_mutex_);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i + kLookAhead < ids.size()) slot_by_id_.prefetch(ids[i + kLookAhead]);
      if (const uint32_t slot = slot_by_id_.find(ids[i]); slot != kNoSlot) slots.push_back(slot);
    }
  }
  // Slot order reads memory forwards and drops repeats. Ids listed in increasing
  // order (a match set) mostly come out in slot order already: skip the sort then.
  if (!std::is_sorted(slots.begin(), slots.end())) std::sort(slots.begin(), slots.end());
  slots.erase(std::unique(slots.begin(), slots.end()), slots.end());

  // Scored on the graph's codes, like a walk: on compressed codes the scan
  // reads a fraction of the bytes (int8: a quarter of float32), and with
  // re-ranking copies it keeps the ef best for finish_results to re-rank, as
  // the walk does. A scan of the matches is bound by memory: their vectors lie
  // anywhere in the index and are read once, so each one's lines are
  // prefetched whole, kAhead matches ahead (the hardware prefetcher alone
  // followed too late). Measured on bench/filters.py's 1% filters (200k x 512
  // float32, ~2,000 matches a query, each in a different place): a whole
  // vector 8 ahead scanned 5-13% faster than its first 256 bytes 4 ahead, and
  // 16 ahead was slower than 8 (more lines in flight than the core keeps).
  constexpr size_t kAhead = 8;
  const size_t keep = scan_keep(p);
  if (sketches_ && slots.size() >= kSketchScanPerKept * keep) {
    scan_sketched(slots, keep, p, s, st, pace);
    return;
  }
  s.top.clear();
  for (size_t i = 0; i < slots.size(); ++i) {
    if (i + kAhead < slots.size()) prefetch_code(slots[i + kAhead]);
    pace.work(1);  // listed ids passed the filter already
    const uint32_t slot = slots[i];
    if (is_deleted(slot)) continue;
    const float d = codec_.distance(s.query_code.data(), code(slot));
    ++st.distances;
    if (s.top.size() >= keep && d >= s.top.front().dist) continue;
    keep_closest(s.top, {d, slot}, keep);
  }
}

void HnswIndex::scan_sketched(const std::vector<uint32_t>& slots, size_t keep, const SearchParams& p,
                              SearchScratch& s, SearchStats& st, Checkpoint& pace) const {
  // Two passes, as the IVF-RaBitQ search does (ivf_rabitq_search.cpp): every
  // match gets an estimate and a bound from its sketch (two cold lines a match
  // in storage order, prefetched kAhead ahead, where the full vector is 16 at
  // 512-d float16); a match whose lower bound is above the keep-th smallest
  // upper bound cannot be among the best keep (while the bounds hold) and is
  // dropped. The rest are read lowest lower bound first, until the keep-th
  // exact distance found so far is below the next lower bound, so the reads
  // follow the bounds: on bench/filters.py's 1% filters every match read had
  // its lower bound below the final keep-th distance (none read in vain), so
  // only tighter bounds read fewer. Deleted nodes are skipped when read: the
  // listed slots were live when looked up, and the estimates do not read the
  // nodes' headers.
  //
  // The keep-th smallest upper bound is kept as the pass goes (a max-heap of
  // the keep smallest in s.uppers) and the drop tested there, without a branch:
  // it ends looser than the final one (more kept: 757 against 556 of 2,000 on
  // the 1% near filter), but a selection of the keep-th upper bound and a
  // filtering pass after the estimates cost more: ~57k cycles a query there
  // against ~15k more for the larger heap and the pass's own upkeep (200k x
  // 512 float16, A/B in one process: the scan ~6% faster). 8 and 32 sketches
  // prefetched ahead were 3-5% slower than 16.
  constexpr size_t kAhead = 16;
  prepare_sketch_query(p, s);
  s.bounded.resize(slots.size());
  s.uppers.clear();
  size_t kept = 0;
  float cut = kInf;  // the keep-th smallest upper bound so far
  for (size_t i = 0; i < slots.size(); ++i) {
    if (i + kAhead < slots.size()) sketches_->prefetch(slots[i + kAhead]);
    pace.work(1);
    float est, err;
    sketches_->estimate(s.sketch_query, slots[i], est, err);
    if (est + err < cut) {
      if (s.uppers.size() == keep) {
        std::pop_heap(s.uppers.begin(), s.uppers.end());
        s.uppers.pop_back();
      }
      s.uppers.push_back(est + err);
      std::push_heap(s.uppers.begin(), s.uppers.end());
      if (s.uppers.size() == keep) cut = s.uppers.front();
    }
    s.bounded[kept] = {est - err, slots[i]};
    kept += est - err <= cut;
  }
  s.bounded.resize(kept);
  st.estimates += slots.size();
  // From a heap: only the ones read (and kReadAhead more) are popped. Each
  // popped match's vector is prefetched whole as it is popped, kReadAhead reads
  // before its own: the reads are cold and independent, and one at a time
  // (the next one only) each waited for memory alone: on bench/filters.py's 1%
  // near filter (200k x 512 float16, ~670 reads a query) that was a third of
  // a query's time. 1, 2, 4 and 8 ahead measured there: 8 fastest, as in
  // scan_ids. Popped ones past the stop cost a prefetch each, never a distance.
  // Measured again at 315 reads a query (A/B in one process): 5, 8 and 12
  // ahead the same, 16 slower; prefetching only the code's lines (not the
  // node's head and links), or into L2 only (prefetcht1 / t2), no faster. A
  // read costs ~240 ns of a 1,168-byte block whatever the depth: bound by the
  // lines a core keeps in flight, so only fewer reads make this pass shorter.
  constexpr ptrdiff_t kReadAhead = 8;
  const auto heap = s.bounded.begin();
  auto heap_end = s.bounded.end();  // [heap, heap_end) the heap; then popped, not yet read
  auto unread = s.bounded.end();    // [heap_end, unread): read from the back, in popping order
  std::make_heap(heap, heap_end, CloserFirst());
  s.top.clear();
  while (true) {
    for (; heap_end != heap && unread - heap_end < kReadAhead; --heap_end) {
      std::pop_heap(heap, heap_end, CloserFirst());
      prefetch_code((heap_end - 1)->slot);
    }
    if (unread == heap_end) break;
    const Candidate b = *--unread;
    if (s.top.size() >= keep && b.dist >= s.top.front().dist) break;
    if (is_deleted(b.slot)) continue;
    const float d = codec_.distance(s.query_code.data(), code(b.slot));
    ++st.distances;
    if (s.top.size() >= keep && d >= s.top.front().dist) continue;
    keep_closest(s.top, {d, b.slot}, keep);
  }
}

}  // namespace lookalike::hnsw
