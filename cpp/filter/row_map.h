// External id -> row of an AttributeStore, looked up for every node a filtered
// search visits, so it must be fast (and, the same way, the HNSW index's id ->
// slot map, which an exact scan of a filter's matches reads per match). Ids below a bound live in a direct array
// (4 bytes a slot, no hashing: the usual case of dense catalog ids); the rest in
// a hash map (~40 bytes an id). The bound grows while the array keeps to at most
// 4 slots per id held, plus 64k.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <unordered_map>
#include <vector>

namespace lookalike::filter {

inline constexpr uint32_t kNoRow = std::numeric_limits<uint32_t>::max();

class RowMap {
 public:
  uint32_t find(int64_t id) const {
    if (id >= 0 && uint64_t(id) < direct_.size()) return direct_[size_t(id)];
    auto it = sparse_.find(id);
    return it == sparse_.end() ? kNoRow : it->second;
  }
  // Starts reading the id's entry, for a find() soon after (of ids listed ahead).
  void prefetch(int64_t id) const {
    // One unsigned compare (a negative id wraps past the end): with the id >= 0
    // test beside it, GCC 12 dropped the prefetch altogether.
    if (uint64_t(id) < direct_.size()) __builtin_prefetch(&direct_[size_t(id)]);
  }
  // False (and nothing changes) if the id is present already.
  bool insert(int64_t id, uint32_t row);
  void erase(int64_t id);
  void clear() {
    direct_.clear();
    sparse_.clear();
    size_ = 0;
  }
  size_t size() const { return size_; }
  size_t bytes() const {
    return direct_.capacity() * sizeof(uint32_t) + sparse_.bucket_count() * sizeof(void*) + sparse_.size() * 32;
  }

 private:
  std::vector<uint32_t> direct_;
  std::unordered_map<int64_t, uint32_t> sparse_;
  size_t size_ = 0;
};

}  // namespace lookalike::filter
