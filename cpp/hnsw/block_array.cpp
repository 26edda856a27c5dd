#include "hnsw/block_array.h"

#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace lookalike::hnsw {

BlockArray::BlockArray(size_t block_bytes, bool huge_pages) : block_bytes_(block_bytes), huge_pages_(huge_pages) {}

BlockArray::~BlockArray() {
  for (void* chunk : chunks_) std::free(chunk);
  if (tables_.empty() || huge_pages_) return;
  uint8_t** table = tables_.back().get();
  for (size_t s = 0; s < segments_; ++s) std::free(table[s]);
}

void* BlockArray::huge_page_segment(size_t bytes) {
  // Segments are carved from 2 MB chunks the kernel is asked to back with huge
  // pages (where transparent huge pages are on "madvise").
  constexpr size_t kHugePage = size_t(2) << 20;
  if (chunks_.empty() || chunk_used_ + bytes > chunk_bytes_) {
    const size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* chunk = std::aligned_alloc(kHugePage, size);
    if (!chunk) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
    madvise(chunk, size, MADV_HUGEPAGE);  // advice only: small pages still work
#endif
    chunks_.push_back(chunk);
    chunk_bytes_ = size;
    chunk_used_ = 0;
  }
  void* segment = static_cast<uint8_t*>(chunks_.back()) + chunk_used_;
  chunk_used_ += bytes;
  return segment;
}

void BlockArray::reserve(size_t n) {
  std::lock_guard<std::mutex> lock(grow_mutex_);
  while (segments_ * kSegmentBlocks < n) {
    if (segments_ == table_slots_) {
      // Publish a larger table; the old one stays alive for readers holding it.
      size_t slots = table_slots_ ? table_slots_ * 2 : 16;
      std::unique_ptr<uint8_t*[]> bigger(new uint8_t*[slots]());
      if (!tables_.empty()) std::memcpy(bigger.get(), tables_.back().get(), segments_ * sizeof(uint8_t*));
      tables_.push_back(std::move(bigger));
      table_slots_ = slots;
      table_.store(tables_.back().get(), std::memory_order_release);
    }
    size_t bytes = (kSegmentBlocks * block_bytes_ + 63) / 64 * 64;
    void* segment = huge_pages_ ? huge_page_segment(bytes) : std::aligned_alloc(64, bytes);
    if (!segment) throw std::bad_alloc();
    std::memset(segment, 0, bytes);
    tables_.back()[segments_] = static_cast<uint8_t*>(segment);
    ++segments_;
    capacity_.store(segments_ * kSegmentBlocks, std::memory_order_release);
  }
}

size_t BlockArray::allocated_bytes() const {
  size_t tables = 0;
  for (size_t i = 0, slots = 16; i < tables_.size(); ++i, slots *= 2) tables += slots * sizeof(uint8_t*);
  return capacity() * block_bytes_ + tables;
}

}  // namespace lookalike::hnsw
