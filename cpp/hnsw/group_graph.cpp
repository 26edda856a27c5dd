#include "hnsw/group_graph.h"

#include <algorithm>
#include <thread>

namespace lookalike::hnsw {

GroupGraph::GroupGraph(size_t max_links)
    : max_links_(max_links), slots_(sizeof(uint32_t)), links_((2 + max_links) * sizeof(uint32_t)) {}

void GroupGraph::lock(uint32_t member) const {
  std::atomic_ref<uint32_t> word(reinterpret_cast<uint32_t*>(links_.at(member))[1]);
  while (word.exchange(1, std::memory_order_acquire)) std::this_thread::yield();
}

void GroupGraph::unlock(uint32_t member) const {
  std::atomic_ref<uint32_t>(reinterpret_cast<uint32_t*>(links_.at(member))[1]).store(0, std::memory_order_release);
}

uint32_t GroupGraph::append(std::span<const uint32_t> slots) {
  const uint32_t first = appended_;
  const auto old_end = by_slot_.size();
  for (const uint32_t slot : slots) {
    const auto known = by_slot_.begin() + ptrdiff_t(old_end);
    if (std::binary_search(by_slot_.begin(), known, std::pair{slot, 0u}, by_slot)) continue;
    slots_.reserve(size_t(appended_) + 1);
    links_.reserve(size_t(appended_) + 1);
    *reinterpret_cast<uint32_t*>(slots_.at(appended_)) = slot;
    by_slot_.push_back({slot, appended_++});
  }
  std::sort(by_slot_.begin() + ptrdiff_t(old_end), by_slot_.end(), by_slot);
  std::inplace_merge(by_slot_.begin(), by_slot_.begin() + ptrdiff_t(old_end), by_slot_.end(), by_slot);
  return first;
}

uint32_t GroupGraph::member_of(uint32_t slot) const {
  const auto it = std::lower_bound(by_slot_.begin(), by_slot_.end(), std::pair{slot, 0u}, by_slot);
  return it != by_slot_.end() && it->first == slot ? it->second : kNone;
}

void GroupGraph::seeds(size_t n, std::vector<uint32_t>& out) const {
  out.clear();
  const size_t members = size();
  n = std::min(n, members);
  for (size_t i = 0; i < n; ++i) out.push_back(uint32_t(i * members / n));
}

size_t GroupGraph::bytes() const {
  return slots_.allocated_bytes() + links_.allocated_bytes() + by_slot_.capacity() * sizeof(by_slot_[0]);
}

}  // namespace lookalike::hnsw
