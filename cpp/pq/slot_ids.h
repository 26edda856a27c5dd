// Slot -> external id, 4 bytes a slot while every id fits in 32 bits and 8
// bytes from the first one that does not. Catalog ids are mostly small
// integers: at 1M-100M vectors the narrow table saves 4 bytes a vector of an
// ~80-byte budget (ivf_pq.h), and the one branch an access costs is the same
// every time, so it is predicted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pq/amortised.h"

namespace lookalike::pq {

class SlotIds {
 public:
  int64_t operator[](size_t slot) const { return wide_ ? wide_ids_[slot] : int64_t(narrow_ids_[slot]); }
  size_t size() const { return wide_ ? wide_ids_.size() : narrow_ids_.size(); }
  bool empty() const { return size() == 0; }
  bool wide() const { return wide_; }

  // Appends n ids (all >= 0), widening the table first when one needs it.
  void append(const int64_t* ids, size_t n) {
    if (!wide_) {
      for (size_t i = 0; i < n && !wide_; ++i)
        if (ids[i] > int64_t(UINT32_MAX)) widen();
    }
    if (wide_) {
      reserve_amortised(wide_ids_, n);
      wide_ids_.insert(wide_ids_.end(), ids, ids + n);
    } else {
      reserve_amortised(narrow_ids_, n);
      for (size_t i = 0; i < n; ++i) narrow_ids_.push_back(uint32_t(ids[i]));
    }
  }

  // Room for n ids in all (a load, which knows its count), narrow until an id says otherwise.
  void reserve(size_t n) {
    if (wide_)
      wide_ids_.reserve(n);
    else
      narrow_ids_.reserve(n);
  }

  size_t memory_bytes() const {
    return narrow_ids_.capacity() * sizeof(uint32_t) + wide_ids_.capacity() * sizeof(int64_t);
  }

 private:
  void widen() {
    wide_ids_.reserve(narrow_ids_.capacity());
    wide_ids_.assign(narrow_ids_.begin(), narrow_ids_.end());
    std::vector<uint32_t>().swap(narrow_ids_);  // (assigning {} would keep its capacity)
    wide_ = true;
  }

  bool wide_ = false;
  std::vector<uint32_t> narrow_ids_;
  std::vector<int64_t> wide_ids_;
};

}  // namespace lookalike::pq
