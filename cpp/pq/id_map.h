// External id -> slot, for ids >= 0: an open-addressing hash table (linear
// probing) whose buckets hold only a 4-byte slot. The key of a bucket is not
// stored: it is keys[slot], read from the owner's slot -> id table, which the
// index keeps anyway. The table is any size (a bucket is chosen by
// multiply-shift, not by masking a power of two), rebuilt 0.85 full and
// rebuilt again at 0.9: ~4.7 bytes an id, where a power-of-two table between
// 1/2 and 3/4 full held 5.3-8 (8.4 at 1M ids), std::unordered_map ~50. At
// 0.9 a probe for an absent id visits ~50 buckets, a present one ~5; the
// price, one dependent load a bucket, is paid by writes and contains(), never
// by a search.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pq/slot_ids.h"

namespace lookalike::pq {

class IdMap {
 public:
  static constexpr uint32_t kAbsent = UINT32_MAX;

  // `keys` is the owner's slot -> id table; it must outlive the map, and
  // keys[slot] must be the id before set(id, slot) is called.
  explicit IdMap(const SlotIds& keys) : keys_(keys) {}

  uint32_t find(int64_t id) const;      // kAbsent when not present
  void set(int64_t id, uint32_t slot);  // inserts or overwrites
  bool erase(int64_t id);               // false when not present
  // Makes room for `more` ids beyond size() without a rebuild on the way (a
  // bulk load then leaves the table at the rebuild load, not anywhere between).
  void reserve(size_t more);
  size_t size() const { return size_; }
  size_t memory_bytes() const { return slots_.capacity() * sizeof(uint32_t); }

 private:
  static constexpr uint32_t kEmpty = kAbsent, kErased = UINT32_MAX - 1;  // never valid slots
  size_t bucket(int64_t id) const;
  size_t next(size_t b) const { return b + 1 == slots_.size() ? 0 : b + 1; }
  bool holds(size_t b, int64_t id) const { return slots_[b] < kErased && keys_[slots_[b]] == id; }
  void rehash(size_t buckets);

  const SlotIds& keys_;
  std::vector<uint32_t> slots_;
  size_t size_ = 0, used_ = 0;  // live keys; live + erased buckets
};

}  // namespace lookalike::pq
