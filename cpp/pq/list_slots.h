// The slot numbers of an inverted list's entries (ivf_pq.h), in list order,
// stored a fast-scan block (32 entries) at a time in the narrowest form that
// holds the block:
//   run     slot = base + j: no bytes an entry. add() numbers a batch's
//           vectors cell by cell, so a bulk load's entries in a cell are
//           consecutive slots and its blocks are runs;
//   narrow  slot = base + a 16-bit offset: 2 bytes an entry, for slots that
//           trickled in close together (at 1M vectors and 1024 cells, 32
//           single adds to one cell span ~32k slots);
//   wide    the 4-byte slots themselves.
// Plus 8 bytes a block (base and where its entries are). A 1M-vector bulk
// load holds ~0.25 bytes a vector here instead of 4: 4.7% of an 80-byte
// budget. Only the last block grows (entries are appended), so it alone
// changes form, and its entries are always the last of narrow_ or wide_.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pq/fast_scan.h"

namespace lookalike::pq {

class ListSlots {
 public:
  size_t size() const { return size_; }
  uint32_t operator[](size_t i) const {
    const Block& b = blocks_[i / kFastScanBlock];
    const size_t j = i % kFastScanBlock, at = first_entry(b);
    switch (b.at >> kFormShift) {
      case kRun: return b.base + uint32_t(j);
      case kNarrow: return b.base + narrow_[at + j];
      default: return wide_[at + j];
    }
  }

  void push_back(uint32_t slot);
  // Room for `entries` in the block table (bulk loads; the entries' form, and
  // so their bytes, is known only as they come).
  void reserve(size_t entries) { blocks_.reserve((entries + kFastScanBlock - 1) / kFastScanBlock); }
  void shrink_to_fit();
  size_t memory_bytes() const {
    return blocks_.capacity() * sizeof(Block) + narrow_.capacity() * sizeof(uint16_t) +
           wide_.capacity() * sizeof(uint32_t);
  }

 private:
  enum Form : uint32_t { kRun = 0, kNarrow = 1, kWide = 2 };
  static constexpr uint32_t kFormShift = 30, kIndexMask = (1u << kFormShift) - 1;
  struct Block {
    uint32_t base;  // the block's first slot
    uint32_t at;    // its form (top 2 bits) and, narrow or wide, where its entries are there, in blocks
  };
  static Form form(const Block& b) { return Form(b.at >> kFormShift); }
  static size_t first_entry(const Block& b) { return size_t(b.at & kIndexMask) * kFastScanBlock; }
  // Rewrites the last block, whose entries so far are `entries`, in `to` form.
  void reform_last(Form to, size_t entries);

  std::vector<Block> blocks_;
  std::vector<uint16_t> narrow_;
  std::vector<uint32_t> wide_;
  size_t size_ = 0;
};

}  // namespace lookalike::pq
