// Filtered search: the planner, and the exact scan of the ids a filter lists.
//
// A filter that keeps 0.5% of the catalog starves a graph walk: it must pass
// ~200 nodes for each one it may return. So each filtered search is planned
// from the filter's estimate of how many ids it allows, with costs counted in
// graph-walk distance computations:
//
//   exact scan     kScanIdCost per allowed id: the filter lists them, each is
//                  looked up (id -> slot, a hash probe and a cache miss) and
//                  scored
//   filtered walk  the walk runs until it has admitted walk_ef ids; with a
//                  fraction `sel` of ids allowed it expands about walk_ef / sel
//                  nodes, each bringing about M new neighbours to score
//
// and the cheaper one runs. At 200k ids, ef 64 and M 16 that scans up to ~12k
// allowed ids (~6%) and walks above. The walk passes through filtered-out
// nodes (search_level scores and expands them, admitting only allowed ones), so
// the graph stays connected and the walk keeps going until it has admitted
// walk_ef ids. Its ef is raised with the inverse selectivity, up to
// kMaxEfRaise x, for the sparser neighbourhood it has to refine.
//
// Either way no result fails the filter, and when the walk finds fewer than k
// (an unreachable part of the graph, or an estimate far off) a scan of the
// filter's list, or of every node, follows: k results whenever k ids match.
#include <algorithm>
#include <cmath>

#include "hnsw/hnsw_index.h"

namespace lookalike::hnsw {

namespace {
// The walk's ef grows as ef / selectivity up to this multiple of the asked ef.
// The walk already explores about ef / selectivity nodes to admit ef of them, so
// a large raise buys little recall for its cost (measured with bench/filters.py).
constexpr double kMaxEfRaise = 2.0;
// Scoring a listed id costs about this many walk distances (measured with
// bench/filters.py): the id -> slot lookup and a cold vector dominate.
constexpr double kScanIdCost = 3.0;
}  // namespace

const char* plan_name(Plan plan) {
  switch (plan) {
    case Plan::Graph: return "graph";
    case Plan::FilteredGraph: return "filtered_graph";
    case Plan::ExactScan: return "exact_scan";
  }
  return "unknown";
}

void HnswIndex::search_filtered(SearchScratch& s, const SearchParams& p, uint64_t entry, SearchStats& st,
                                Checkpoint& pace) const {
  const Filter& filter = *p.filter;
  const size_t ef = std::max(p.ef ? p.ef : ef_search(), p.k);
  const double live = double(std::max<size_t>(slot_count_.load(std::memory_order_relaxed) -
                                                  deleted_.load(std::memory_order_relaxed), 1));
  st.estimate = filter.estimate();
  const bool known = st.estimate != Filter::kUnknown;
  const double selectivity = known ? std::clamp(double(st.estimate) / live, 1.0 / live, 1.0) : 1.0;
  const size_t walk_ef = size_t(double(ef) * std::min(kMaxEfRaise, 1.0 / selectivity));
  const double walk_cost = double(walk_ef) / selectivity * double(config_.M);
  const double scan_cost = double(st.estimate) * kScanIdCost;

  // The list may need to gather more ids than match (a must's narrowest clause):
  // let it, up to what a walk would have cost.
  thread_local std::vector<int64_t> listed;
  listed.clear();
  if (known && scan_cost <= walk_cost && filter.candidates(size_t(walk_cost) + p.k, listed)) {
    st.plan = Plan::ExactScan;
    scan_ids(listed, p, s, st, pace);
    return;
  }

  st.plan = Plan::FilteredGraph;
  st.ef = walk_ef;
  uint32_t start = greedy_descend(s.query_code.data(), entry_slot(entry), entry_level(entry), 0);
  search_level(s.query_code.data(), start, walk_ef, 0, &filter, s, &pace);
  st.distances = s.distance_count;
  if (s.top.size() >= p.k) return;

  st.fell_back = true;
  listed.clear();
  if (filter.candidates(Filter::kUnknown, listed)) {
    scan_ids(listed, p, s, st, pace);
  } else {
    search_exact(s, p, pace);
    st.distances += slot_count_.load(std::memory_order_relaxed);
  }
}

void HnswIndex::scan_ids(const std::vector<int64_t>& ids, const SearchParams& p, SearchScratch& s,
                         SearchStats& st, Checkpoint& pace) const {
  std::vector<uint32_t>& slots = s.batch;
  slots.clear();
  {
    std::lock_guard<std::mutex> lock(ids_mutex_);
    for (int64_t id : ids)
      if (auto it = slot_by_id_.find(id); it != slot_by_id_.end()) slots.push_back(it->second);
  }
  // Slot order reads memory forwards and drops repeats.
  std::sort(slots.begin(), slots.end());
  slots.erase(std::unique(slots.begin(), slots.end()), slots.end());

  constexpr size_t kAhead = 4;
  s.top.clear();
  for (size_t i = 0; i < slots.size(); ++i) {
    if (i + kAhead < slots.size()) {
      __builtin_prefetch(nodes_->at(slots[i + kAhead]));
      __builtin_prefetch(rerank_ ? rerank_->at(slots[i + kAhead]) : code(slots[i + kAhead]));
    }
    pace.work(1);  // listed ids passed the filter already
    const uint32_t slot = slots[i];
    if (is_deleted(slot)) continue;
    const float d = rerank_ ? rerank_codec_->distance(s.rerank_query.data(), rerank_->at(slot))
                            : codec_.distance(s.query_code.data(), code(slot));
    ++st.distances;
    if (s.top.size() >= p.k && d >= s.top.front().dist) continue;
    s.top.push_back({d, slot});
    std::push_heap(s.top.begin(), s.top.end(), FartherFirst());
    if (s.top.size() > p.k) {
      std::pop_heap(s.top.begin(), s.top.end(), FartherFirst());
      s.top.pop_back();
    }
  }
}

}  // namespace lookalike::hnsw
