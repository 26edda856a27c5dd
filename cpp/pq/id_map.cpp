#include "pq/id_map.h"

namespace lookalike::pq {

size_t IdMap::bucket(int64_t id) const {
  // A multiplicative hash spreads sequential ids (the common case) evenly.
  return size_t((uint64_t(id) * 0x9E3779B97F4A7C15ull) >> 20) & (slots_.size() - 1);
}

uint32_t IdMap::find(int64_t id) const {
  if (slots_.empty()) return kAbsent;
  for (size_t b = bucket(id);; b = (b + 1) & (slots_.size() - 1)) {
    if (slots_[b] == kEmpty) return kAbsent;
    if (holds(b, id)) return slots_[b];
  }
}

void IdMap::set(int64_t id, uint32_t slot) {
  if (4 * (used_ + 1) > 3 * slots_.size()) {
    // Rebuild at a size where the live keys fill at most half: this also
    // clears the erased buckets that slow probing down.
    size_t buckets = slots_.empty() ? 64 : slots_.size();
    while (4 * (size_ + 1) > 2 * buckets) buckets *= 2;
    rehash(buckets);
  }
  size_t b = bucket(id), erased = SIZE_MAX;
  for (;; b = (b + 1) & (slots_.size() - 1)) {
    if (slots_[b] == kEmpty) break;
    if (holds(b, id)) {
      slots_[b] = slot;
      return;
    }
    if (slots_[b] == kErased && erased == SIZE_MAX) erased = b;
  }
  if (erased != SIZE_MAX) {
    b = erased;  // reuse a tombstone: `used_` does not grow
  } else {
    ++used_;
  }
  slots_[b] = slot;
  ++size_;
}

bool IdMap::erase(int64_t id) {
  if (slots_.empty()) return false;
  for (size_t b = bucket(id);; b = (b + 1) & (slots_.size() - 1)) {
    if (slots_[b] == kEmpty) return false;
    if (holds(b, id)) {
      slots_[b] = kErased;
      --size_;
      return true;
    }
  }
}

void IdMap::rehash(size_t buckets) {
  std::vector<uint32_t> slots(buckets, kEmpty);
  slots.swap(slots_);
  size_ = used_ = 0;
  for (uint32_t s : slots)
    if (s < kErased) set(keys_[s], s);
}

}  // namespace lookalike::pq
