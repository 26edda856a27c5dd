// Built without ISA flags: __builtin_popcountll is then a libgcc call per word,
// which the SIMD levels (built with -mpopcnt) replace by the instruction.
#include "distance/distance.h"
#include "filter/bitmap_kernels.h"

namespace lookalike::filter {

namespace {
void and_buckets(const uint8_t* buckets, size_t n_words, uint8_t lo, uint8_t width, uint64_t* words) {
  for (size_t w = 0; w < n_words; ++w) {
    uint64_t mask = 0;
    for (size_t i = 0; i < 64; ++i) mask |= uint64_t(uint8_t(buckets[64 * w + i] - lo) <= width) << i;
    words[w] &= mask;
  }
}

size_t count_bits(const uint64_t* words, size_t n_words) {
  size_t n = 0;
  for (size_t w = 0; w < n_words; ++w) n += size_t(__builtin_popcountll(words[w]));
  return n;
}
}  // namespace

const BitmapKernels& scalar_bitmap_kernels() {
  static const BitmapKernels kernels{and_buckets, count_bits};
  return kernels;
}

// Follows the distance kernels' level, so one switch governs all SIMD code.
const BitmapKernels& bitmap_kernels() {
#if defined(__x86_64__) || defined(_M_X64)
  switch (distance::active_isa()) {
    case distance::Isa::Avx512: return avx512_bitmap_kernels();
    case distance::Isa::Avx2: return avx2_bitmap_kernels();
    default: break;
  }
#endif
  return scalar_bitmap_kernels();
}

}  // namespace lookalike::filter
