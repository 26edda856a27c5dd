#include <immintrin.h>

#include "filter/bitmap_kernels.h"

namespace lookalike::filter {

namespace {
// Unsigned bucket - lo <= width as min(x, width) == x: 32 rows a compare.
uint32_t inside32(const uint8_t* at, __m256i lo, __m256i width) {
  const __m256i x = _mm256_sub_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(at)), lo);
  return uint32_t(_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_min_epu8(x, width), x)));
}

void and_buckets(const uint8_t* buckets, size_t n_words, uint8_t lo, uint8_t width, uint64_t* words) {
  const __m256i vlo = _mm256_set1_epi8(char(lo)), vwidth = _mm256_set1_epi8(char(width));
  for (size_t w = 0; w < n_words; ++w) {
    const uint8_t* at = buckets + 64 * w;
    words[w] &= uint64_t(inside32(at, vlo, vwidth)) | uint64_t(inside32(at + 32, vlo, vwidth)) << 32;
  }
}

size_t count_bits(const uint64_t* words, size_t n_words) {
  size_t n = 0;
  for (size_t w = 0; w < n_words; ++w) n += size_t(_mm_popcnt_u64(words[w]));
  return n;
}
}  // namespace

const BitmapKernels& avx2_bitmap_kernels() {
  static const BitmapKernels kernels{and_buckets, count_bits};
  return kernels;
}

}  // namespace lookalike::filter
