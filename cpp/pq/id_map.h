// External id -> slot, for ids >= 0: an open-addressing hash table (linear
// probing) at most 3/4 full whose buckets hold only a 4-byte slot. The key of
// a bucket is not stored: it is keys[slot], read from the owner's slot -> id
// table, which the index keeps anyway. So 8-12 bytes an id (a power-of-two
// table at most 3/4 and, after a rebuild, at most 1/2 full) instead of 24-36
// with the key beside the slot, or ~50 with std::unordered_map. At 100M
// products that is the difference between ~64 and ~81 bytes a vector. The
// price, one more dependent load a probe, is paid by writes and contains(),
// never by a search.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lookalike::pq {

class IdMap {
 public:
  static constexpr uint32_t kAbsent = UINT32_MAX;

  // `keys` is the owner's slot -> id table; it must outlive the map, and
  // keys[slot] must be the id before set(id, slot) is called.
  explicit IdMap(const std::vector<int64_t>& keys) : keys_(keys) {}

  uint32_t find(int64_t id) const;      // kAbsent when not present
  void set(int64_t id, uint32_t slot);  // inserts or overwrites
  bool erase(int64_t id);               // false when not present
  size_t size() const { return size_; }
  size_t memory_bytes() const { return slots_.capacity() * sizeof(uint32_t); }

 private:
  static constexpr uint32_t kEmpty = kAbsent, kErased = UINT32_MAX - 1;  // never valid slots
  size_t bucket(int64_t id) const;
  bool holds(size_t b, int64_t id) const { return slots_[b] < kErased && keys_[slots_[b]] == id; }
  void rehash(size_t buckets);

  const std::vector<int64_t>& keys_;
  std::vector<uint32_t> slots_;
  size_t size_ = 0, used_ = 0;  // live keys; live + erased buckets
};

}  // namespace lookalike::pq
