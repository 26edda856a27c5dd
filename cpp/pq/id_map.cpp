#include "pq/id_map.h"

#include <algorithm>

namespace lookalike::pq {

namespace {

// Loads as fractions of the buckets: a rebuild fills kRebuildLoad of them with
// live ids, and an insert that would fill more than kMaxLoad (live + erased)
// rebuilds first. Between the two, ~6% of the table's size of inserts.
constexpr double kRebuildLoad = 0.85, kMaxLoad = 0.9;

size_t buckets_for(size_t ids) { return std::max<size_t>(64, size_t(double(ids) / kRebuildLoad) + 1); }

}  // namespace

size_t IdMap::bucket(int64_t id) const {
  // A multiplicative hash spreads sequential ids (the common case) over the
  // high bits; multiply-shift maps those onto any number of buckets.
  const uint64_t h = uint64_t(id) * 0x9E3779B97F4A7C15ull;
  return size_t((unsigned __int128)h * slots_.size() >> 64);
}

uint32_t IdMap::find(int64_t id) const {
  if (slots_.empty()) return kAbsent;
  for (size_t b = bucket(id);; b = next(b)) {
    if (slots_[b] == kEmpty) return kAbsent;
    if (holds(b, id)) return slots_[b];
  }
}

void IdMap::reserve(size_t more) {
  if (double(used_ + more) > kMaxLoad * double(slots_.size())) rehash(buckets_for(size_ + more));
}

void IdMap::set(int64_t id, uint32_t slot) {
  // The rebuild also clears the erased buckets that slow probing down.
  if (double(used_ + 1) > kMaxLoad * double(slots_.size())) rehash(buckets_for(size_ + 1));
  size_t b = bucket(id), erased = SIZE_MAX;
  for (;; b = next(b)) {
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
  for (size_t b = bucket(id);; b = next(b)) {
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
