#include "hnsw/match_set.h"

#include <cmath>

namespace lookalike::hnsw {

namespace {
// A bitmap costs a clear and a scan of span / 64 words, the sorted form a
// sort: n log2 n comparisons, each about half a word's cost (measured:
// sorting 2,000 ids of a 1% filter was a third of the time listing them
// took). So a bitmap while it has at most n log2(n) / 2 words: up to log2(n)
// / 2 times the sorted form's 8 bytes an id, which a pooled scratch keeps.
bool bitmap_pays(uint64_t span, size_t count) {
  const double n = double(count);
  return double(span / 64) <= std::max(1.0, n * std::log2(n) / 2);
}
}  // namespace

void MatchSet::assign(std::vector<int64_t>& ids) {
  bits_.clear();
  sorted_.clear();
  size_ = 0;
  bitmap_ = false;
  if (ids.empty()) return;
  const auto [lo, hi] = std::minmax_element(ids.begin(), ids.end());
  first_ = *lo;
  span_ = uint64_t(*hi) - uint64_t(*lo) + 1;
  bitmap_ = bitmap_pays(span_, ids.size());
  if (bitmap_) {
    bits_.assign((span_ + 63) / 64, 0);
    // Counted as set, not by a popcount of every word: without a popcount
    // instruction in the portable build, that is a call per word.
    for (int64_t id : ids) {
      const uint64_t at = uint64_t(id) - uint64_t(first_);
      const uint64_t bit = uint64_t(1) << (at & 63);
      size_ += (bits_[at >> 6] & bit) == 0;
      bits_[at >> 6] |= bit;
    }
    return;
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  sorted_.swap(ids);
  size_ = sorted_.size();
}

void MatchSet::assign_bits(std::vector<uint64_t>& words, size_t count) {
  bits_.clear();
  sorted_.clear();
  size_ = count;
  bitmap_ = false;
  size_t lo = 0, hi = words.size();
  while (lo < hi && words[lo] == 0) ++lo;
  while (hi > lo && words[hi - 1] == 0) --hi;
  if (lo == hi) {
    size_ = 0;
    return;
  }
  first_ = int64_t(64 * lo);
  span_ = 64 * uint64_t(hi - lo);
  bitmap_ = bitmap_pays(span_, count);
  if (!bitmap_) {
    sorted_.reserve(count);
    for (size_t w = lo; w < hi; ++w)
      for (uint64_t word = words[w]; word; word &= word - 1) sorted_.push_back(int64_t(w * 64 + size_t(__builtin_ctzll(word))));
    return;
  }
  if (lo > 0) std::copy(words.begin() + ptrdiff_t(lo), words.begin() + ptrdiff_t(hi), words.begin());
  words.resize(hi - lo);
  bits_.swap(words);
}

}  // namespace lookalike::hnsw
