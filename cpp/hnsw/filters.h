// The native filter hook of a search: a predicate the graph traversal asks about
// each candidate, evaluated in C++ with the GIL released (never a Python
// callback per node). A node that fails the filter is still walked through, so
// the graph stays connected, but never returned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_set>
#include <vector>

namespace lookalike::hnsw {

class Filter {
 public:
  virtual ~Filter() = default;
  virtual bool allows(int64_t id) const = 0;
};

// Allows (or, with exclude, rejects) a set of external ids. Dense id ranges are
// held as a bitset (one bit an id up to the largest), sparse ones as a hash set.
class IdFilter final : public Filter {
 public:
  IdFilter(const int64_t* ids, size_t n, bool exclude);
  bool allows(int64_t id) const override {
    bool listed = dense_ ? in_bitset(id) : set_.count(id) != 0;
    return listed != exclude_;
  }
  size_t size() const { return size_; }
  bool exclude() const { return exclude_; }

 private:
  bool in_bitset(int64_t id) const {
    return id >= 0 && uint64_t(id) < bits_.size() * 64 && (bits_[uint64_t(id) >> 6] >> (id & 63)) & 1;
  }

  std::vector<uint64_t> bits_;
  std::unordered_set<int64_t> set_;
  bool dense_ = false;
  size_t size_ = 0;  // distinct ids listed
  bool exclude_;
};

}  // namespace lookalike::hnsw
