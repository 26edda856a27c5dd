#include <immintrin.h>

#include "filter/bitmap_kernels.h"

namespace lookalike::filter {

namespace {
// A word's 64 buckets in one compare, whose mask is the word.
void and_buckets(const uint8_t* buckets, size_t n_words, uint8_t lo, uint8_t width, uint64_t* words) {
  const __m512i vlo = _mm512_set1_epi8(char(lo)), vwidth = _mm512_set1_epi8(char(width));
  for (size_t w = 0; w < n_words; ++w) {
    const __m512i x = _mm512_sub_epi8(_mm512_loadu_si512(buckets + 64 * w), vlo);
    words[w] &= uint64_t(_mm512_cmple_epu8_mask(x, vwidth));
  }
}
}  // namespace

const BitmapKernels& avx512_bitmap_kernels() {
  // Counting is the AVX2 level's popcnt: a word a cycle, already faster than the rest of a build.
  static const BitmapKernels kernels{and_buckets, avx2_bitmap_kernels().count_bits};
  return kernels;
}

}  // namespace lookalike::filter
