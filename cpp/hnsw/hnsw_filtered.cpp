// Filtered search: the planner, and the exact scan of the ids a filter lists.
//
// A filter that keeps 0.5% of the catalog starves a graph walk: it must pass
// ~200 nodes for each one it may return. So each filtered search is planned
// from the filter's estimate of how many ids it allows, with costs counted in
// distance computations:
//
//   exact scan     one distance per allowed id (the filter lists candidates,
//                  each is checked with allows(), the survivors are scored)
//   filtered walk  the walk runs until it has admitted walk_ef ids; with a
//                  fraction `sel` of ids allowed it expands about walk_ef / sel
//                  nodes, each bringing about M new neighbours to score
//
// and the cheaper one runs. At 200k ids, ef 64 and M 16 that scans up to some
// 10k allowed ids (~5%) and walks above. The walk passes through filtered-out
// nodes (search_level computes their distances and expands them) so the graph
// stays connected, and ef is raised with the inverse selectivity (bounded)
// because the neighbourhood of the query holds fewer allowed ids to refine.
//
// Either way no result fails the filter, and when the walk finds fewer than k
// (an unreachable part of the graph, or an estimate far off) a scan of the
// filter's list, or of every node, follows: k results whenever k ids match.
#include <algorithm>
#include <cmath>

#include "hnsw/hnsw_index.h"

namespace lookalike::hnsw {

namespace {
// The walk's ef grows as ef / selectivity, up to this multiple of the asked ef:
// beyond it the walk costs more than it gains, and the exact scan takes over.
constexpr size_t kMaxEfRaise = 4;
// A list may hold ids the filter rejects (a must's narrowest clause): allow it to
// be this many times the ids the scan expects, since checking an id is far
// cheaper than scoring it.
constexpr size_t kListSlack = 8;
}  // namespace

const char* plan_name(Plan plan) {
  switch (plan) {
    case Plan::Graph: return "graph";
    case Plan::FilteredGraph: return "filtered_graph";
    case Plan::ExactScan: return "exact_scan";
  }
  return "unknown";
}

void HnswIndex::search_filtered(SearchScratch& s, const SearchParams& p, uint64_t entry, SearchStats& st) const {
  const Filter& filter = *p.filter;
  const size_t ef = std::max(p.ef ? p.ef : ef_search(), p.k);
  const double live = double(std::max<size_t>(slot_count_.load(std::memory_order_relaxed) -
                                                  deleted_.load(std::memory_order_relaxed), 1));
  st.estimate = filter.estimate();
  const bool known = st.estimate != Filter::kUnknown;
  const double selectivity = known ? std::clamp(double(st.estimate) / live, 1.0 / live, 1.0) : 1.0;
  const size_t walk_ef = std::min(size_t(std::ceil(double(ef) / selectivity)), kMaxEfRaise * ef);
  const double walk_cost = double(walk_ef) / selectivity * double(config_.M);

  thread_local std::vector<int64_t> listed;
  listed.clear();
  if (known && double(st.estimate) <= walk_cost &&
      filter.candidates(kListSlack * size_t(walk_cost) + p.k, listed)) {
    st.plan = Plan::ExactScan;
    scan_ids(listed, p, s, st);
    return;
  }

  st.plan = Plan::FilteredGraph;
  st.ef = walk_ef;
  uint32_t start = greedy_descend(s.query_code.data(), entry_slot(entry), entry_level(entry), 0);
  search_level(s.query_code.data(), start, walk_ef, 0, &filter, s);
  st.distances = s.distance_count;
  if (s.top.size() >= p.k) return;

  st.fell_back = true;
  listed.clear();
  if (filter.candidates(Filter::kUnknown, listed)) {
    scan_ids(listed, p, s, st);
  } else {
    search_exact(s, p);
    st.distances += slot_count_.load(std::memory_order_relaxed);
  }
}

void HnswIndex::scan_ids(const std::vector<int64_t>& ids, const SearchParams& p, SearchScratch& s,
                         SearchStats& st) const {
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

  const auto* query_f32 = reinterpret_cast<const uint8_t*>(s.query.data());
  constexpr size_t kAhead = 4;
  s.top.clear();
  for (size_t i = 0; i < slots.size(); ++i) {
    if (i + kAhead < slots.size()) {
      __builtin_prefetch(nodes_->at(slots[i + kAhead]));
      __builtin_prefetch(exact_ ? exact_->at(slots[i + kAhead]) : code(slots[i + kAhead]));
    }
    const uint32_t slot = slots[i];
    if (is_deleted(slot) || !p.filter->allows(header(slot).id)) continue;
    const float d = exact_ ? exact_codec_.distance(query_f32, exact_->at(slot))
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
