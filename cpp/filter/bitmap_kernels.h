// The SIMD kernels of row bitmaps (a filter's match set built word by word:
// predicate.h): a range's rows from one byte a row (the row's value bucket,
// columns.h), 64 rows a bitmap word, and counting set bits. One translation
// unit per instruction set (bitmap_kernels_scalar.cpp, _avx2.cpp,
// _avx512.cpp), chosen at run time by the distance kernels' level
// (distance::active_isa(): LOOKALIKE_SIMD and ScopedIsa apply), as the PQ
// scans are (pq/adc_dispatch.cpp). Every level gives the same results.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lookalike::filter {

struct BitmapKernels {
  // words[w] &= the mask of the 64 buckets buckets[64 w .. 64 w + 63] that lie
  // in [lo, lo + width] (bit i for buckets[64 w + i]), for w < n_words.
  void (*and_buckets)(const uint8_t* buckets, size_t n_words, uint8_t lo, uint8_t width, uint64_t* words);
  // The set bits of words[0 .. n_words).
  size_t (*count_bits)(const uint64_t* words, size_t n_words);
};

const BitmapKernels& scalar_bitmap_kernels();
const BitmapKernels& avx2_bitmap_kernels();
const BitmapKernels& avx512_bitmap_kernels();
// The active level's.
const BitmapKernels& bitmap_kernels();

}  // namespace lookalike::filter
