// Fixed-size blocks addressed by slot number, allocated in segments that never
// move. Readers can use a block while a writer grows the array: growth adds
// segments and, when the segment table is full, publishes a larger copy of it;
// older tables stay alive until the array dies, so a reader holding one is safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace lookalike::hnsw {

class BlockArray {
 public:
  // 4096 blocks a segment: small enough that the unused tail of the last
  // segment is noise, large enough that the table stays tiny.
  static constexpr unsigned kSegmentShift = 12;
  static constexpr size_t kSegmentBlocks = size_t(1) << kSegmentShift;

  // With huge_pages, segments are packed into 2 MB chunks backed by huge pages
  // where the system allows: for arrays read at random across their whole
  // length (node_sketches.h), where a 4 KB page's TLB miss per read costs more
  // than the read.
  explicit BlockArray(size_t block_bytes, bool huge_pages = false);
  ~BlockArray();
  BlockArray(const BlockArray&) = delete;
  BlockArray& operator=(const BlockArray&) = delete;

  size_t block_bytes() const { return block_bytes_; }
  size_t capacity() const { return capacity_.load(std::memory_order_acquire); }

  // The block of `slot`; slot < capacity(). Blocks start zeroed and 64-byte aligned.
  uint8_t* at(size_t slot) const {
    uint8_t* const* table = table_.load(std::memory_order_acquire);
    return table[slot >> kSegmentShift] + (slot & (kSegmentBlocks - 1)) * block_bytes_;
  }

  // The first block of segment `s`. The blocks of a segment are contiguous, so a
  // scan can hand a whole segment to a one-to-many kernel.
  uint8_t* segment(size_t s) const { return table_.load(std::memory_order_acquire)[s]; }

  // Grows capacity to at least n blocks. Safe against concurrent readers; concurrent
  // growers are serialised.
  void reserve(size_t n);

  size_t allocated_bytes() const;

 private:
  size_t block_bytes_;
  std::atomic<uint8_t* const*> table_{nullptr};
  std::atomic<size_t> capacity_{0};
  std::mutex grow_mutex_;
  std::vector<std::unique_ptr<uint8_t*[]>> tables_;  // current table last
  size_t table_slots_ = 0;
  size_t segments_ = 0;
  bool huge_pages_;
  std::vector<void*> chunks_;  // with huge_pages: what the segments are carved from
  size_t chunk_bytes_ = 0, chunk_used_ = 0;
  void* huge_page_segment(size_t bytes);
};

}  // namespace lookalike::hnsw
