// The best-first search of one graph, shared by the index's levels and its
// group graphs (group_graph.h): included by the index's own .cpp files only.
#pragma once

#include <algorithm>
#include <limits>

#include "hnsw/hnsw_index.h"

namespace lookalike::hnsw {

// The index's links on one level: nodes are slots.
struct HnswIndex::LevelView {
  const HnswIndex& index;
  int level;
  uint32_t limit;  // slots reserved when the walk began
  uint32_t slot(uint32_t node) const { return node; }
  uint32_t max_links() const { return uint32_t(index.max_links(level)); }
  LinkList links(uint32_t node) const { return index.link_list(node, level); }
};

// A group graph: nodes are member numbers, whose vectors sit at their slots.
struct HnswIndex::GroupView {
  const GroupGraph& group;
  uint32_t limit;  // members when the walk began
  uint32_t slot(uint32_t node) const { return group.slot(node); }
  uint32_t max_links() const { return uint32_t(group.max_links()); }
  LinkList links(uint32_t node) const {
    const GroupGraph::Links l = group.links(node);
    return {l.count, l.members};
  }
};

template <class View>
void HnswIndex::best_first(const View& view, const uint8_t* query, std::span<const uint32_t> entries, size_t ef,
                           const Filter* filter, SearchScratch& s, Checkpoint* pace, bool test_when_expanded) const {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const bool skip_deleted = deleted_.load(std::memory_order_relaxed) > 0;
  const bool late = filter && test_when_expanded;
  auto admits = [&](uint32_t node) {
    if (filter) ++s.filter_tests;
    return admitted(view.slot(node), filter, skip_deleted);
  };

  s.visited.reset(view.limit);
  s.candidates.clear();
  s.top.clear();
  for (const uint32_t entry : entries) prefetch_code(view.slot(entry));
  for (const uint32_t entry : entries) {
    if (s.visited.test_and_set(entry)) continue;
    const float d = codec_.distance(query, code(view.slot(entry)));
    s.candidates.push_back({d, entry});
    if (!late && admits(entry)) keep_closest(s.top, {d, entry}, ef);
  }
  std::make_heap(s.candidates.begin(), s.candidates.end(), CloserFirst());
  float bound = s.top.empty() ? kInf : s.top.front().dist;

  while (!s.candidates.empty()) {
    Candidate current = s.candidates.front();
    if (current.dist > bound && s.top.size() >= ef) break;
    std::pop_heap(s.candidates.begin(), s.candidates.end(), CloserFirst());
    s.candidates.pop_back();
    ++s.expansions;
    if (late && admits(current.slot)) {
      keep_closest(s.top, current, ef);
      bound = s.top.front().dist;
    }

    LinkList list = view.links(current.slot);
    uint32_t n = std::min<uint32_t>(list.count.load(std::memory_order_acquire), view.max_links());
    s.batch.clear();
    for (uint32_t i = 0; i < n; ++i) {
      uint32_t next = std::atomic_ref<uint32_t>(list.slots[i]).load(std::memory_order_acquire);
      if (next >= view.limit || s.visited.test_and_set(next)) continue;
      s.batch.push_back(next);
      prefetch_code(view.slot(next));
    }
    s.distance_count += s.batch.size();
    if (pace) pace->step(s.batch.size() + 1);
    for (uint32_t next : s.batch) {
      float dn = codec_.distance(query, code(view.slot(next)));
      if (s.top.size() < ef || dn < bound) {
        s.candidates.push_back({dn, next});
        std::push_heap(s.candidates.begin(), s.candidates.end(), CloserFirst());
        if (!late && admits(next)) {
          keep_closest(s.top, {dn, next}, ef);
          bound = s.top.front().dist;
        }
      }
    }
  }
}

}  // namespace lookalike::hnsw
