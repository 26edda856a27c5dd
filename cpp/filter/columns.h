// The column types of an AttributeStore, one value (or list of keywords) per
// row. Each column also keeps the index its estimates and enumerations come
// from: posting lists (sorted rows per value) for keywords and booleans, a
// sorted (value, row) array for numbers and timestamps.
//
// Index upkeep has two modes. One row at a time (maintain = true) costs a
// binary search and a shift of the list it touches: cheap for a trickle of
// updates, and O(1) when new rows are appended. A large batch instead skips the
// upkeep (maintain = false) and calls rebuild_index() once at the end, O(rows)
// for postings and O(rows log rows) for the sorted array; AttributeStore::set
// picks the mode by the batch's size.
//
// A numeric column also keeps each row's value bucket (one byte a row), so a
// range gets its rows as a bitmap without reading a value per row: see
// NumericColumn::and_rows_in.
//
// Columns are not thread-safe: the store serialises writers and readers.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lookalike::filter {

inline constexpr uint32_t kNoCode = std::numeric_limits<uint32_t>::max();

// Sorted rows per code (a keyword's dictionary code, or false / true), and,
// for a dense code, the same rows as a bitmap (as roaring bitmaps choose by
// density): once a list holds at least 1 / kDenseShare of the rows, its bitmap
// (rows / 8 bytes) is no larger than the list (4 bytes a row), and a filter
// tests a row's bit in it instead of reading the row's values (a keyword's
// span, then its codes: two cold lines) or listing the whole posting list to
// narrow another clause's candidates by it.
class PostingLists {
 public:
  static constexpr size_t kDenseShare = 32;
  // Below this many rows every list is short enough to read whole.
  static constexpr size_t kDenseFloor = 4096;

  void resize(size_t codes) {
    lists_.resize(std::max(lists_.size(), codes));
    bits_.resize(lists_.size());
  }
  void add(uint32_t code, uint32_t row);
  void remove(uint32_t code, uint32_t row);
  void clear() {
    for (auto& list : lists_) list.clear();
    for (auto& bits : bits_) bits.clear();
    rows_ = 0;
  }
  // Rebuilding: clear, append rows in increasing order, shrink (drops the slack
  // of growth, and makes the bitmaps of the lists that are dense now).
  void append(uint32_t code, uint32_t row) {
    lists_[code].push_back(row);
    rows_ = std::max<size_t>(rows_, size_t(row) + 1);
  }
  void shrink();
  const std::vector<uint32_t>& rows(uint32_t code) const { return lists_[code]; }
  // The code's rows as a bitmap (bit r of word r / 64; rows past its end are not
  // in it), or null when the list is sparse.
  const std::vector<uint64_t>* dense_rows(uint32_t code) const {
    return bits_[code].empty() ? nullptr : &bits_[code];
  }
  size_t bytes() const;

 private:
  bool dense(uint32_t code) const { return rows_ >= kDenseFloor && lists_[code].size() * kDenseShare >= rows_; }
  // A bitmap is dropped only at half the density that makes one, so that a list
  // near the threshold is not turned back and forth by each write.
  bool thinned(uint32_t code) const { return lists_[code].size() * kDenseShare * 2 < rows_; }
  void make_bitmap(uint32_t code);

  std::vector<std::vector<uint32_t>> lists_;
  std::vector<std::vector<uint64_t>> bits_;  // per code: empty, or its rows' bitmap
  size_t rows_ = 0;                          // one past the largest row ever listed
};

// Keywords, dictionary-encoded, any number per row (a category path, colours).
// A row's codes are a span of one shared pool; an update appends a new span and
// leaves the old one as garbage, reclaimed once garbage outweighs live codes.
class KeywordColumn {
 public:
  void grow(size_t rows) { spans_.resize(rows, Span{0, 0}); }
  // The code of a word, or kNoCode if no row ever had it.
  uint32_t code(const std::string& word) const;
  const std::string& word(uint32_t code) const { return words_[code]; }
  size_t dictionary_size() const { return words_.size(); }

  void set(uint32_t row, const std::vector<std::string>& words, bool maintain);
  void clear(uint32_t row, bool maintain);
  bool has(uint32_t row, uint32_t code) const;
  std::vector<std::string> get(uint32_t row) const;
  size_t count(uint32_t row) const { return spans_[row].count; }
  const std::vector<uint32_t>& rows_with(uint32_t code) const { return postings_.rows(code); }
  const std::vector<uint64_t>* dense_rows_with(uint32_t code) const { return postings_.dense_rows(code); }

  void rebuild_index();
  size_t bytes() const;

  // For save and load: the row's codes, and setting a row from codes.
  const uint32_t* codes(uint32_t row) const { return pool_.data() + spans_[row].begin; }
  uint32_t add_word(const std::string& word);  // its code, new or existing
  void set_codes(uint32_t row, const uint32_t* codes, uint32_t n);

 private:
  struct Span {
    uint32_t begin, count;
  };
  void compact_pool();

  std::vector<std::string> words_;
  std::unordered_map<std::string, uint32_t> code_of_;
  std::vector<Span> spans_;
  std::vector<uint32_t> pool_;
  size_t garbage_ = 0;  // pool entries no span points at
  PostingLists postings_;
};

// Booleans (in stock), with the rows of each value listed.
class BoolColumn {
 public:
  static constexpr uint8_t kAbsent = 2;
  void grow(size_t rows) {
    values_.resize(rows, kAbsent);
    postings_.resize(2);
  }
  void set(uint32_t row, uint8_t value, bool maintain);  // value: 0, 1 or kAbsent
  uint8_t get(uint32_t row) const { return values_[row]; }
  // Whether row holds `value`; false for a row past the column's end (kNoRow).
  bool holds(uint32_t row, bool value) const { return row < values_.size() && values_[row] == uint8_t(value); }
  const std::vector<uint32_t>& rows_with(bool value) const { return postings_.rows(value); }
  const std::vector<uint64_t>* dense_rows_with(bool value) const { return postings_.dense_rows(value); }
  void rebuild_index();
  size_t bytes() const { return values_.capacity() + postings_.bytes(); }

 private:
  std::vector<uint8_t> values_;
  PostingLists postings_;
};

// Numbers (T = double: price, rating) or timestamps (T = int64_t), with a
// sorted (value, row) array that counts and lists the rows of a range.
//
// And each row's bucket, a byte monotone in its value: up to kBuckets buckets
// cut at the values' quantiles (edges_), so a range's rows come as a bitmap
// (and_rows_in) from a SIMD scan of a byte a row (bitmap_kernels.h): a row whose
// bucket lies within the range's two end buckets is in the bitmap, and the few
// rows of the end buckets that lie outside the range are cleared after, read
// from the sorted array where they lie together. That reads a byte a row of
// the store and writes a word per 64 rows however many rows the range holds,
// where listing the range's slice costs a scattered write per row in it. A row's bucket follows its
// value on every write (a binary search in the edges); the edges are cut again
// by rebuild_index, and when one bucket has grown to twice its share of the
// rows (values arriving at one end, as timestamps do), which is amortised
// over the share's writes. Cost: 1 byte a row, and 3 KB a column (edges and counts).
template <class T>
class NumericColumn {
 public:
  struct Entry {
    T value;
    uint32_t row;
    bool operator<(const Entry& o) const { return value < o.value || (value == o.value && row < o.row); }
  };
  // A range of values; each bound inclusive or not, or absent (nullopt-like: `has_*` false).
  struct Range {
    bool has_lo = false, lo_inclusive = false, has_hi = false, hi_inclusive = false;
    T lo{}, hi{};
    // Without early returns: a scan of candidates checks values that pass or
    // fail at random, where a branch per bound would be mispredicted half the time.
    bool contains(T v) const {
      return (!has_lo | (lo_inclusive ? v >= lo : v > lo)) & (!has_hi | (hi_inclusive ? v <= hi : v < hi));
    }
  };

  static constexpr size_t kBuckets = 255;  // bucket numbers 0 .. 254; kNoBucket for a row without a value
  static constexpr uint8_t kNoBucket = 255;

  void grow(size_t rows) {
    values_.resize(rows, T{});
    present_.resize(rows, 0);
    buckets_.resize(rows, kNoBucket);
  }
  void set(uint32_t row, T value, bool maintain);
  void clear(uint32_t row, bool maintain);
  size_t rows() const { return values_.size(); }
  bool present(uint32_t row) const { return present_[row]; }
  T get(uint32_t row) const { return values_[row]; }
  // Whether row holds a value in r; false for a row past the column's end (kNoRow).
  bool holds(uint32_t row, const Range& r) const {
    const bool inside = row < values_.size();
    const uint32_t at = inside ? row : 0;  // read in bounds, without a branch
    return inside & bool(present_[at]) & r.contains(values_[at]);
  }
  void prefetch(uint32_t row) const {
    if (row < values_.size()) __builtin_prefetch(&values_[row]);
  }

  // The sorted entries of a range, as [first, last).
  std::pair<const Entry*, const Entry*> entries_in(const Range& r) const;
  // ANDs into words[0 .. n_words) the bitmap of the rows holding a value in r
  // among rows [64 first_word, 64 (first_word + n_words)): bit r % 64 of word
  // r / 64 - first_word.
  void and_rows_in(const Range& r, uint64_t* words, size_t first_word, size_t n_words) const;
  // The rows of r's end buckets that and_rows_in clears one by one: what it
  // costs beyond its scan.
  size_t edge_rows(const Range& r) const;
  void rebuild_index();
  size_t bytes() const {
    return values_.capacity() * sizeof(T) + present_.capacity() + sorted_.capacity() * sizeof(Entry) +
           buckets_.capacity() + edges_.capacity() * sizeof(T) + sizeof(bucket_rows_);
  }

 private:
  uint8_t bucket_of(T v) const { return uint8_t(std::upper_bound(edges_.begin(), edges_.end(), v) - edges_.begin()); }
  // The buckets a range's rows lie in, [lo, hi]; lo > hi when none can.
  std::pair<size_t, size_t> buckets_of(const Range& r) const;
  // The sorted entries of buckets [lo, hi].
  std::pair<const Entry*, const Entry*> bucket_entries(size_t lo, size_t hi) const;
  void place(uint32_t row, T value);
  void cut_buckets();  // new edges at the sorted values' quantiles, every row's bucket again

  std::vector<T> values_;
  std::vector<uint8_t> present_;
  std::vector<Entry> sorted_;
  std::vector<uint8_t> buckets_;                 // per row: its value's bucket, or kNoBucket
  std::vector<T> edges_;                         // ascending: bucket b holds [edges_[b - 1], edges_[b])
  std::array<uint32_t, kBuckets> bucket_rows_{};  // rows per bucket
  size_t share_ = 0;                             // rows a bucket held when cut (at least 64)
};

extern template class NumericColumn<double>;
extern template class NumericColumn<int64_t>;

}  // namespace lookalike::filter
