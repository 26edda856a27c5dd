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

FilterPlan Filter::plan(size_t build_limit, MatchSet& set, const StopToken* /*stop*/) const {
  FilterPlan out;
  out.estimate = estimate();
  thread_local std::vector<int64_t> ids;
  ids.clear();
  if (!candidates(build_limit, ids)) return out;
  out.driver = out.build = ids.size();
  set.assign(ids);
  out.estimate = set.size();
  out.built = true;
  return out;
}

bool IdFilter::candidates(size_t limit, std::vector<int64_t>& out) const {
  if (exclude_ || size_ > limit) return false;
  out.insert(out.end(), set_.begin(), set_.end());
  for (size_t w = 0; w < bits_.size(); ++w)
    for (uint64_t word = bits_[w]; word; word &= word - 1) out.push_back(int64_t(w * 64 + size_t(__builtin_ctzll(word))));
  return true;
}

}  // namespace lookalike::hnsw
