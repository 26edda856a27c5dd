// The ids one filtered search may return, built once per search from the
// filter's cheapest clause (Filter::plan) so that the graph walk tests a bit
// per node instead of evaluating the predicate, and the exact scan reads the
// matches without asking the filter again.
//
// Two forms, chosen by density as roaring bitmaps choose a container: a bitmap
// over [first, last] when clearing and scanning it costs no more than sorting
// the ids (up to about 32 log2(n) bits of span an id: the catalog's usual
// dense ids, even at 1% of them), else the ids sorted (a few matches
// scattered over a wide id space), tested by binary search. Building is
// O(span / 64 + n) for a bitmap (bits set in any order, no sort) and
// O(n log n) for the sorted form, which only small or scattered sets take.
//
// A filter that evaluates itself as a bitmap of ids (predicate.h: a store whose
// rows are its ids) hands the words over whole (assign_bits): no bit is set
// one at a time.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace lookalike::hnsw {

class MatchSet {
 public:
  // Takes the ids (any order, repeats allowed) from `ids`, which it leaves unspecified.
  void assign(std::vector<int64_t>& ids);
  void clear() { assign(empty_); }
  // Takes the bitmap in `words` (bit i % 64 of word i / 64 for id i; `count`
  // bits set), leaving `words` unspecified. Kept as a bitmap, trimmed to its
  // first and last set words, where assign would keep one; else sorted.
  void assign_bits(std::vector<uint64_t>& words, size_t count);

  bool contains(int64_t id) const {
    if (bitmap_) {
      const uint64_t at = uint64_t(id) - uint64_t(first_);
      return at < span_ && (bits_[at >> 6] >> (at & 63)) & 1;
    }
    return std::binary_search(sorted_.begin(), sorted_.end(), id);
  }
  size_t size() const { return size_; }
  bool is_bitmap() const { return bitmap_; }
  // Calls f(id) for every id, in increasing order.
  template <class F>
  void for_each(F&& f) const {
    if (!bitmap_) {
      for (int64_t id : sorted_) f(id);
      return;
    }
    for (size_t w = 0; w < bits_.size(); ++w)
      for (uint64_t word = bits_[w]; word; word &= word - 1)
        f(first_ + int64_t(w * 64 + size_t(__builtin_ctzll(word))));
  }
  size_t bytes() const { return bits_.capacity() * sizeof(uint64_t) + sorted_.capacity() * sizeof(int64_t); }

 private:
  bool bitmap_ = false;
  int64_t first_ = 0;
  uint64_t span_ = 0;  // bits in the bitmap: last - first + 1
  size_t size_ = 0;
  std::vector<uint64_t> bits_;
  std::vector<int64_t> sorted_;
  std::vector<int64_t> empty_;
};

}  // namespace lookalike::hnsw
