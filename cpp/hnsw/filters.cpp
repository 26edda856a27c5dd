#include "hnsw/filters.h"

#include <algorithm>

namespace lookalike::hnsw {

IdFilter::IdFilter(const int64_t* ids, size_t n, bool exclude) : exclude_(exclude) {
  int64_t max_id = -1;
  for (size_t i = 0; i < n; ++i) max_id = std::max(max_id, ids[i]);
  // A bitset costs max_id / 8 bytes, a hash set ~32 bytes an id: take the
  // bitset while it is no more than a few times the hash set's size.
  dense_ = max_id >= 0 && uint64_t(max_id) / 8 <= std::max<uint64_t>(uint64_t(n) * 128, 1 << 16);
  if (dense_) {
    bits_.assign(uint64_t(max_id) / 64 + 1, 0);
    for (size_t i = 0; i < n; ++i)
      if (ids[i] >= 0) bits_[uint64_t(ids[i]) >> 6] |= uint64_t(1) << (ids[i] & 63);
  } else {
    set_.reserve(n);
    set_.insert(ids, ids + n);
  }
  size_ = set_.size();
  for (uint64_t w : bits_) size_ += size_t(__builtin_popcountll(w));
}

}  // namespace lookalike::hnsw
