#include "pq/list_slots.h"

#include "pq/amortised.h"

namespace lookalike::pq {

void ListSlots::push_back(uint32_t slot) {
  const size_t j = size_ % kFastScanBlock;
  if (j == 0) {
    reserve_amortised(blocks_, 1);
    blocks_.push_back({slot, uint32_t(kRun) << kFormShift});
    ++size_;
    return;
  }
  Block& b = blocks_.back();
  const bool fits_narrow = slot >= b.base && slot - b.base <= UINT16_MAX;
  if (form(b) == kRun && slot == b.base + j) {
    ++size_;
    return;
  }
  if (form(b) == kRun) reform_last(fits_narrow ? kNarrow : kWide, j);
  if (form(b) == kNarrow && !fits_narrow) reform_last(kWide, j);
  const size_t at = first_entry(b) + j;
  if (form(b) == kNarrow)
    narrow_[at] = uint16_t(slot - b.base);
  else
    wide_[at] = slot;
  ++size_;
}

void ListSlots::reform_last(Form to, size_t entries) {
  Block& b = blocks_.back();
  uint32_t slots[kFastScanBlock];
  for (size_t j = 0; j < entries; ++j) slots[j] = (*this)[(blocks_.size() - 1) * kFastScanBlock + j];
  // The last block's entries are the last of their array: they go.
  if (form(b) == kNarrow) narrow_.resize(first_entry(b));
  size_t at;
  if (to == kNarrow) {
    at = narrow_.size();
    reserve_amortised(narrow_, kFastScanBlock);
    narrow_.resize(at + kFastScanBlock);
    for (size_t j = 0; j < entries; ++j) narrow_[at + j] = uint16_t(slots[j] - b.base);
  } else {
    at = wide_.size();
    reserve_amortised(wide_, kFastScanBlock);
    wide_.resize(at + kFastScanBlock);
    for (size_t j = 0; j < entries; ++j) wide_[at + j] = slots[j];
  }
  // (2^30 blocks of 32 outnumber the 2^32 slots an index can hold.)
  b.at = (uint32_t(to) << kFormShift) | uint32_t(at / kFastScanBlock);
}

void ListSlots::shrink_to_fit() {
  blocks_.shrink_to_fit();
  narrow_.shrink_to_fit();
  wide_.shrink_to_fit();
}

}  // namespace lookalike::pq
