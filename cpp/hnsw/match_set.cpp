#include "hnsw/match_set.h"

namespace lookalike::hnsw {

void MatchSet::assign(std::vector<int64_t>& ids) {
  bits_.clear();
  sorted_.clear();
  size_ = 0;
  bitmap_ = false;
  if (ids.empty()) return;
  const auto [lo, hi] = std::minmax_element(ids.begin(), ids.end());
  first_ = *lo;
  span_ = uint64_t(*hi) - uint64_t(*lo) + 1;
  // A bitmap costs span / 8 bytes, the sorted ids 8 bytes each.
  bitmap_ = span_ / 64 <= ids.size();
  if (bitmap_) {
    bits_.assign((span_ + 63) / 64, 0);
    for (int64_t id : ids) {
      const uint64_t at = uint64_t(id) - uint64_t(first_);
      bits_[at >> 6] |= uint64_t(1) << (at & 63);
    }
    for (uint64_t w : bits_) size_ += size_t(__builtin_popcountll(w));
    return;
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  sorted_.swap(ids);
  size_ = sorted_.size();
}

}  // namespace lookalike::hnsw
