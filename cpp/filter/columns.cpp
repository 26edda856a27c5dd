#include "filter/columns.h"

#include <stdexcept>

#include "filter/bitmap_kernels.h"

namespace lookalike::filter {

// --- PostingLists ------------------------------------------------------------------

void PostingLists::add(uint32_t code, uint32_t row) {
  auto& list = lists_[code];
  rows_ = std::max<size_t>(rows_, size_t(row) + 1);
  if (list.empty() || list.back() < row) {
    list.push_back(row);  // the common case: a new row
  } else {
    auto at = std::lower_bound(list.begin(), list.end(), row);
    if (*at == row) return;
    list.insert(at, row);
  }
  auto& bits = bits_[code];
  if (bits.empty()) {
    if (dense(code)) make_bitmap(code);
  } else if (thinned(code)) {  // the other lists grew past it
    std::vector<uint64_t>().swap(bits);
  } else {
    if (row / 64 >= bits.size()) bits.resize(row / 64 + 1, 0);
    bits[row / 64] |= uint64_t(1) << (row % 64);
  }
}

void PostingLists::remove(uint32_t code, uint32_t row) {
  auto& list = lists_[code];
  auto at = std::lower_bound(list.begin(), list.end(), row);
  if (at == list.end() || *at != row) return;
  list.erase(at);
  auto& bits = bits_[code];
  if (bits.empty()) return;
  if (thinned(code))
    std::vector<uint64_t>().swap(bits);
  else
    bits[row / 64] &= ~(uint64_t(1) << (row % 64));
}

void PostingLists::make_bitmap(uint32_t code) {
  auto& bits = bits_[code];
  bits.assign((rows_ + 63) / 64, 0);
  for (uint32_t row : lists_[code]) bits[row / 64] |= uint64_t(1) << (row % 64);
}

void PostingLists::shrink() {
  for (uint32_t code = 0; code < lists_.size(); ++code) {
    lists_[code].shrink_to_fit();
    if (dense(code) && !lists_[code].empty())
      make_bitmap(code);
    else
      std::vector<uint64_t>().swap(bits_[code]);
  }
}

size_t PostingLists::bytes() const {
  size_t total = lists_.capacity() * sizeof(lists_[0]) + bits_.capacity() * sizeof(bits_[0]);
  for (const auto& list : lists_) total += list.capacity() * sizeof(uint32_t);
  for (const auto& bits : bits_) total += bits.capacity() * sizeof(uint64_t);
  return total;
}

// --- KeywordColumn -----------------------------------------------------------------

uint32_t KeywordColumn::code(const std::string& word) const {
  auto it = code_of_.find(word);
  return it == code_of_.end() ? kNoCode : it->second;
}

uint32_t KeywordColumn::add_word(const std::string& word) {
  auto [it, added] = code_of_.try_emplace(word, uint32_t(words_.size()));
  if (added) {
    if (words_.size() >= kNoCode) throw std::length_error("too many distinct keywords in one attribute");
    words_.push_back(word);
    postings_.resize(words_.size());
  }
  return it->second;
}

void KeywordColumn::set(uint32_t row, const std::vector<std::string>& words, bool maintain) {
  thread_local std::vector<uint32_t> codes;
  codes.clear();
  for (const std::string& w : words) codes.push_back(add_word(w));
  std::sort(codes.begin(), codes.end());
  codes.erase(std::unique(codes.begin(), codes.end()), codes.end());
  clear(row, maintain);
  set_codes(row, codes.data(), uint32_t(codes.size()));
  if (maintain)
    for (uint32_t c : codes) postings_.add(c, row);
}

void KeywordColumn::set_codes(uint32_t row, const uint32_t* codes, uint32_t n) {
  if (pool_.size() + n > std::numeric_limits<uint32_t>::max()) throw std::length_error("keyword pool is full");
  spans_[row] = Span{uint32_t(pool_.size()), n};
  pool_.insert(pool_.end(), codes, codes + n);
}

void KeywordColumn::clear(uint32_t row, bool maintain) {
  Span& span = spans_[row];
  if (maintain)
    for (uint32_t i = 0; i < span.count; ++i) postings_.remove(pool_[span.begin + i], row);
  garbage_ += span.count;
  span = Span{0, 0};
  if (garbage_ > 4096 && garbage_ > pool_.size() / 2) compact_pool();
}

void KeywordColumn::compact_pool() {
  std::vector<uint32_t> pool;
  pool.reserve(pool_.size() - garbage_);
  for (Span& span : spans_) {
    const uint32_t begin = uint32_t(pool.size());
    pool.insert(pool.end(), pool_.begin() + span.begin, pool_.begin() + span.begin + span.count);
    span.begin = begin;
  }
  pool_.swap(pool);
  garbage_ = 0;
}

bool KeywordColumn::has(uint32_t row, uint32_t code) const {
  const Span span = spans_[row];
  const uint32_t* codes = pool_.data() + span.begin;
  for (uint32_t i = 0; i < span.count; ++i)
    if (codes[i] == code) return true;
  return false;
}

std::vector<std::string> KeywordColumn::get(uint32_t row) const {
  std::vector<std::string> out;
  for (uint32_t i = 0; i < spans_[row].count; ++i) out.push_back(words_[codes(row)[i]]);
  return out;
}

void KeywordColumn::rebuild_index() {
  postings_.clear();
  postings_.resize(words_.size());
  for (uint32_t row = 0; row < spans_.size(); ++row)
    for (uint32_t i = 0; i < spans_[row].count; ++i) postings_.append(codes(row)[i], row);
  postings_.shrink();
}

size_t KeywordColumn::bytes() const {
  size_t dictionary = code_of_.bucket_count() * sizeof(void*);
  for (const std::string& w : words_) dictionary += sizeof(std::string) + 48 + w.capacity();  // two copies, map node
  return dictionary + spans_.capacity() * sizeof(Span) + pool_.capacity() * sizeof(uint32_t) + postings_.bytes();
}

// --- BoolColumn --------------------------------------------------------------------

void BoolColumn::set(uint32_t row, uint8_t value, bool maintain) {
  uint8_t& slot = values_[row];
  if (slot == value) return;
  if (maintain) {
    if (slot != kAbsent) postings_.remove(slot, row);
    if (value != kAbsent) postings_.add(value, row);
  }
  slot = value;
}

void BoolColumn::rebuild_index() {
  postings_.clear();
  for (uint32_t row = 0; row < values_.size(); ++row)
    if (values_[row] != kAbsent) postings_.append(values_[row], row);
  postings_.shrink();
}

// --- NumericColumn -----------------------------------------------------------------

template <class T>
void NumericColumn<T>::set(uint32_t row, T value, bool maintain) {
  clear(row, maintain);
  values_[row] = value;
  present_[row] = 1;
  place(row, value);
  if (maintain) {
    const Entry e{value, row};
    sorted_.insert(std::lower_bound(sorted_.begin(), sorted_.end(), e), e);
    // A bucket grown to twice its share: cut again (O(rows)), at most once per
    // share's writes into one bucket.
    if (bucket_rows_[buckets_[row]] > 2 * share_) cut_buckets();
  }
}

template <class T>
void NumericColumn<T>::clear(uint32_t row, bool maintain) {
  if (!present_[row]) return;
  present_[row] = 0;
  --bucket_rows_[buckets_[row]];
  buckets_[row] = kNoBucket;
  if (maintain) {
    auto at = std::lower_bound(sorted_.begin(), sorted_.end(), Entry{values_[row], row});
    if (at != sorted_.end() && at->row == row) sorted_.erase(at);
  }
}

template <class T>
void NumericColumn<T>::place(uint32_t row, T value) {
  const uint8_t b = bucket_of(value);
  buckets_[row] = b;
  ++bucket_rows_[b];
}

template <class T>
void NumericColumn<T>::cut_buckets() {
  // Equal values stay in one bucket: an edge is a value, and repeats of it are skipped.
  edges_.clear();
  const size_t n = sorted_.size();
  for (size_t b = 1; b < kBuckets; ++b) {
    const T v = sorted_.empty() ? T{} : sorted_[b * n / kBuckets].value;
    if (n && (edges_.empty() || edges_.back() < v) && v > sorted_.front().value) edges_.push_back(v);
  }
  edges_.shrink_to_fit();
  bucket_rows_.fill(0);
  for (uint32_t row = 0; row < values_.size(); ++row)
    if (present_[row]) place(row, values_[row]);
  share_ = std::max<size_t>(64, n / kBuckets);
}

template <class T>
std::pair<size_t, size_t> NumericColumn<T>::buckets_of(const Range& r) const {
  return {r.has_lo ? bucket_of(r.lo) : 0, r.has_hi ? bucket_of(r.hi) : edges_.size()};
}

template <class T>
std::pair<const typename NumericColumn<T>::Entry*, const typename NumericColumn<T>::Entry*>
NumericColumn<T>::bucket_entries(size_t lo, size_t hi) const {
  auto below = [](const Entry& e, T v) { return e.value < v; };
  auto first = lo == 0 ? sorted_.begin() : std::lower_bound(sorted_.begin(), sorted_.end(), edges_[lo - 1], below);
  auto last = hi >= edges_.size() ? sorted_.end() : std::lower_bound(first, sorted_.end(), edges_[hi], below);
  return {sorted_.data() + (first - sorted_.begin()), sorted_.data() + (last - sorted_.begin())};
}

template <class T>
size_t NumericColumn<T>::edge_rows(const Range& r) const {
  const auto [lo, hi] = buckets_of(r);
  if (lo > hi) return 0;
  const auto [first, last] = entries_in(r);
  const auto [bucket_first, bucket_last] = bucket_entries(lo, hi);
  return size_t(std::max(first, bucket_first) - bucket_first) + size_t(bucket_last - std::min(last, bucket_last));
}

template <class T>
void NumericColumn<T>::and_rows_in(const Range& r, uint64_t* words, size_t first_word, size_t n_words) const {
  const auto [lo, hi] = buckets_of(r);
  // The words that hold rows of the column: none past them has a value.
  const size_t rows = buckets_.size();
  const size_t have = std::min(n_words, (rows + 63) / 64 - std::min((rows + 63) / 64, first_word));
  const size_t whole = std::min(have, rows / 64 - std::min(rows / 64, first_word));
  std::fill(words + have, words + n_words, 0);
  if (lo > hi) {
    std::fill(words, words + have, 0);
    return;
  }
  bitmap_kernels().and_buckets(buckets_.data() + 64 * first_word, whole, uint8_t(lo), uint8_t(hi - lo), words);
  if (whole < have) {  // the last, partial word
    uint64_t mask = 0;
    for (size_t row = 64 * (first_word + whole); row < rows; ++row)
      mask |= uint64_t(size_t(uint8_t(buckets_[row] - lo)) <= hi - lo) << (row % 64);
    words[whole] &= mask;
  }
  // The end buckets' rows outside the range: below its start and past its end
  // in the sorted order, within the buckets' entries.
  const auto [first, last] = entries_in(r);
  const auto [bucket_first, bucket_last] = bucket_entries(lo, hi);
  const uint64_t begin_row = 64 * uint64_t(first_word), end_row = begin_row + 64 * uint64_t(n_words);
  auto drop = [&](const Entry* from, const Entry* to) {
    for (const Entry* e = from; e < to; ++e)
      if (e->row >= begin_row && e->row < end_row) {
        const uint64_t at = e->row - begin_row;
        words[at / 64] &= ~(uint64_t(1) << (at % 64));
      }
  };
  drop(bucket_first, std::max(first, bucket_first));
  drop(std::min(last, bucket_last), bucket_last);
}

template <class T>
std::pair<const typename NumericColumn<T>::Entry*, const typename NumericColumn<T>::Entry*>
NumericColumn<T>::entries_in(const Range& r) const {
  auto first = sorted_.begin(), last = sorted_.end();
  auto below = [](const Entry& e, T v) { return e.value < v; };
  auto not_above = [](const Entry& e, T v) { return e.value <= v; };
  if (r.has_lo) first = r.lo_inclusive ? std::lower_bound(first, last, r.lo, below)
                                       : std::partition_point(first, last, [&](const Entry& e) { return not_above(e, r.lo); });
  if (r.has_hi) last = r.hi_inclusive ? std::partition_point(first, last, [&](const Entry& e) { return not_above(e, r.hi); })
                                      : std::lower_bound(first, last, r.hi, below);
  if (first > last) first = last;
  return {sorted_.data() + (first - sorted_.begin()), sorted_.data() + (last - sorted_.begin())};
}

template <class T>
void NumericColumn<T>::rebuild_index() {
  std::vector<Entry> sorted;  // built apart, so it is allocated at its exact size
  sorted.reserve(size_t(std::count(present_.begin(), present_.end(), 1)));
  for (uint32_t row = 0; row < values_.size(); ++row)
    if (present_[row]) sorted.push_back({values_[row], row});
  std::sort(sorted.begin(), sorted.end());
  sorted_.swap(sorted);
  cut_buckets();
}

template class NumericColumn<double>;
template class NumericColumn<int64_t>;

}  // namespace lookalike::filter
