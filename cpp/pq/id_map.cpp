#include "pq/id_map.h"

namespace lookalike::pq {

size_t IdMap::bucket(int64_t id) const {
  // A multiplicative hash spreads sequential ids (the common case) evenly.
  return size_t((uint64_t(id) * 0x9E3779B97F4A7C15ull) >> 20) & (keys_.size() - 1);
}

uint32_t IdMap::find(int64_t id) const {
  if (keys_.empty()) return kAbsent;
  for (size_t b = bucket(id);; b = (b + 1) & (keys_.size() - 1)) {
    if (keys_[b] == id) return slots_[b];
    if (keys_[b] == kEmpty) return kAbsent;
  }
}

void IdMap::set(int64_t id, uint32_t slot) {
  if (4 * (used_ + 1) > 3 * keys_.size()) {
    // Rebuild at a size where the live keys fill at most half: this also
    // clears the erased buckets that slow probing down.
    size_t buckets = keys_.empty() ? 64 : keys_.size();
    while (4 * (size_ + 1) > 2 * buckets) buckets *= 2;
    rehash(buckets);
  }
  size_t b = bucket(id), erased = SIZE_MAX;
  for (;; b = (b + 1) & (keys_.size() - 1)) {
    if (keys_[b] == id) {
      slots_[b] = slot;
      return;
    }
    if (keys_[b] == kErased && erased == SIZE_MAX) erased = b;
    if (keys_[b] == kEmpty) break;
  }
  if (erased != SIZE_MAX) {
    b = erased;  // reuse a tombstone: `used_` does not grow
  } else {
    ++used_;
  }
  keys_[b] = id;
  slots_[b] = slot;
  ++size_;
}

bool IdMap::erase(int64_t id) {
  if (keys_.empty()) return false;
  for (size_t b = bucket(id);; b = (b + 1) & (keys_.size() - 1)) {
    if (keys_[b] == id) {
      keys_[b] = kErased;
      --size_;
      return true;
    }
    if (keys_[b] == kEmpty) return false;
  }
}

void IdMap::rehash(size_t buckets) {
  std::vector<int64_t> keys(buckets, kEmpty);
  std::vector<uint32_t> slots(buckets);
  keys.swap(keys_);
  slots.swap(slots_);
  size_ = used_ = 0;
  for (size_t b = 0; b < keys.size(); ++b)
    if (keys[b] >= 0) set(keys[b], slots[b]);
}

}  // namespace lookalike::pq
