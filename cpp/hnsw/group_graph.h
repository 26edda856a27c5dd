// A group graph: a level-0 graph over one group of the index's nodes, those
// that share an attribute value (a category), so that a search whose filter
// requires that value walks among the group's members only (Qdrant keeps such
// links per payload value). The index builds and searches it
// (hnsw_groups.cpp); this class only holds it.
//
// Why: where a filter's matches lie away from the query (a category correlated
// with the embedding, whose members cluster elsewhere), a walk of the whole
// graph crosses many non-matching nodes before it gathers enough matches: on
// bench/filters.py's 10% conjunction (a top category AND a price window AND in
// stock, 200k x 512), ~4,150 vectors read a query against ~710 unfiltered.
// Inside the category's own graph the same filter keeps ~half the members, and
// the walk reads ~1,150 vectors, as the whole graph's does at 50%.
//
// Members are numbered 0, 1, ... in the order they join. Each keeps its slot in
// the index (a dense array, 16 a cache line: a walk reads a neighbour's slot
// before its vector) and up to max_links links to other members, by member
// number, in a block beside its link count and a lock word. A member whose node
// is deleted (or has left the group's value) stays: its links keep the graph
// connected, and the walk's filter test rejects it as a result; compact()
// rebuilds groups without deleted nodes.
//
// Concurrency as in the index: links are read without locks (relaxed atomics)
// and written under the member's lock word; members are appended by one writer
// at a time (the index serialises link_group), and readers see only members
// below size().
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "hnsw/block_array.h"

namespace lookalike::hnsw {

class GroupGraph {
 public:
  explicit GroupGraph(size_t max_links);

  // Members a walk starts from (a search's, and an insert's): scored first, the
  // walk goes on from the nearest (hnsw_groups.cpp says what more would give).
  static constexpr size_t kSeeds = 16;

  size_t max_links() const { return max_links_; }
  // Members readers may walk.
  uint32_t size() const { return size_.load(std::memory_order_acquire); }
  uint32_t slot(uint32_t member) const { return *reinterpret_cast<const uint32_t*>(slots_.at(member)); }

  struct Links {  // a view of one member's links
    std::atomic_ref<uint32_t> count;
    uint32_t* members;
  };
  Links links(uint32_t member) const {
    uint32_t* block = reinterpret_cast<uint32_t*>(links_.at(member));
    return {std::atomic_ref<uint32_t>(block[0]), block + 2};
  }
  void lock(uint32_t member) const;
  void unlock(uint32_t member) const;

  // Writers only (one at a time): appends the slots not yet members, in order,
  // unlinked, and returns the number of the first one appended; readers see
  // them once publish() is called. `slots` holds no repeats.
  uint32_t append(std::span<const uint32_t> slots);
  // Makes every appended member visible to readers.
  void publish() { size_.store(appended_, std::memory_order_release); }
  // Writers only: the member holding a slot, or kNone.
  static constexpr uint32_t kNone = UINT32_MAX;
  uint32_t member_of(uint32_t slot) const;

  // Entry points of a walk: up to `n` members spread over the joining order
  // (the earliest ones hold the graph's long links, as in a flat NSW).
  void seeds(size_t n, std::vector<uint32_t>& out) const;

  size_t bytes() const;

 private:
  size_t max_links_;
  BlockArray slots_;  // a member's slot, 4 bytes each
  BlockArray links_;  // [count][lock][max_links members]
  std::atomic<uint32_t> size_{0};
  uint32_t appended_ = 0;
  // (slot, member) by slot, for writers: 8 bytes a member.
  std::vector<std::pair<uint32_t, uint32_t>> by_slot_;
  static bool by_slot(const std::pair<uint32_t, uint32_t>& a, const std::pair<uint32_t, uint32_t>& b) {
    return a.first < b.first;
  }
};

}  // namespace lookalike::hnsw
