// AVX-512 (F, BW) ADC scans. scan8: the 16 partial sums are the 16 lanes of one
// register, table entries by gather. fastscan4: four sub-spaces a step, one per
// 128-bit lane, looked up with vpshufb; a ragged last step uses masked loads
// (a zeroed table contributes nothing).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push  // GCC bug 105593, as in distance/kernels_avx512.cpp
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "pq/adc_kernels.h"
#include "pq/rabitq_estimate_kernel.h"
#include "pq/rabitq_ex_kernel.h"

namespace lookalike::pq {
namespace {

void scan8(const float* lut, const uint8_t* codes, size_t n, size_t m, float* out) {
  const size_t full = m / 16 * 16;
  const __m512i lane_offsets = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(256));
  for (size_t i = 0; i < n; ++i, codes += m) {
    __m512 acc = _mm512_setzero_ps();
    for (size_t s = 0; s < full; s += 16) {
      const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + s));
      const __m512i idx =
          _mm512_add_epi32(_mm512_add_epi32(_mm512_cvtepu8_epi32(c), lane_offsets), _mm512_set1_epi32(int(s * 256)));
      acc = _mm512_add_ps(acc, _mm512_i32gather_ps(idx, lut, 4));
    }
    alignas(64) float partial[16];
    _mm512_store_ps(partial, acc);
    for (size_t s = full; s < m; ++s) partial[s % 16] += lut[s * 256 + codes[s]];
    out[i] = sum16(partial);
  }
}

inline void accumulate(__m512i r, __m512i& even, __m512i& odd) {
  even = _mm512_add_epi16(even, _mm512_and_si512(r, _mm512_set1_epi16(0xFF)));
  odd = _mm512_add_epi16(odd, _mm512_srli_epi16(r, 8));
}

// Sums the four 128-bit lanes of each accumulator and interleaves even and odd
// words back into vector order.
inline void store_sums(__m512i even, __m512i odd, uint16_t* out) {
  const __m256i e4 = _mm256_add_epi16(_mm512_castsi512_si256(even), _mm512_extracti64x4_epi64(even, 1));
  const __m256i o4 = _mm256_add_epi16(_mm512_castsi512_si256(odd), _mm512_extracti64x4_epi64(odd, 1));
  const __m128i e = _mm_add_epi16(_mm256_castsi256_si128(e4), _mm256_extracti128_si256(e4, 1));
  const __m128i o = _mm_add_epi16(_mm256_castsi256_si128(o4), _mm256_extracti128_si256(o4, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_unpacklo_epi16(e, o));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 8), _mm_unpackhi_epi16(e, o));
}

void fastscan4(const uint8_t* qlut, const uint8_t* blocks, size_t nblocks, size_t m, uint16_t* out) {
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  for (size_t b = 0; b < nblocks; ++b, blocks += 16 * m, out += 32) {
    __m512i even_lo = _mm512_setzero_si512(), odd_lo = even_lo, even_hi = even_lo, odd_hi = even_lo;
    for (size_t s = 0; s < m; s += 4) {
      const size_t bytes = 16 * (m - s < 4 ? m - s : 4);
      const __mmask64 mask = bytes == 64 ? ~__mmask64(0) : (__mmask64(1) << bytes) - 1;
      const __m512i codes = _mm512_maskz_loadu_epi8(mask, blocks + 16 * s);
      const __m512i table = _mm512_maskz_loadu_epi8(mask, qlut + 16 * s);
      const __m512i lo = _mm512_and_si512(codes, nibble);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(codes, 4), nibble);
      accumulate(_mm512_shuffle_epi8(table, lo), even_lo, odd_lo);
      accumulate(_mm512_shuffle_epi8(table, hi), even_hi, odd_hi);
    }
    store_sums(even_lo, odd_lo, out);
    store_sums(even_hi, odd_hi, out + 16);
  }
}

// A group's 16 entries in one register; bit j of a lane's entry index selects
// v[j] by a zero-mask (+0 where clear).
void rabitq_tables(const float* v, const float* low, size_t groups, float inv_scale, uint8_t* qlut) {
  constexpr __mmask16 kSelect[4] = {0xAAAA, 0xCCCC, 0xF0F0, 0xFF00};
  const __m512 scale = _mm512_set1_ps(inv_scale);
  const __m512i zero = _mm512_setzero_si512(), top = _mm512_set1_epi32(255);
  for (size_t g = 0; g < groups; ++g, v += 4, qlut += 16) {
    __m512 t = _mm512_setzero_ps();
    for (int j = 0; j < 4; ++j) t = _mm512_add_ps(t, _mm512_maskz_mov_ps(kSelect[j], _mm512_set1_ps(v[j])));
    const __m512 y = _mm512_mul_ps(_mm512_sub_ps(t, _mm512_set1_ps(low[g])), scale);
    const __m512i q = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(y), zero), top);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qlut), _mm512_cvtepi32_epi8(q));
  }
}

// rabitq_ex_kernel.h's loop with its 16 partial sums as the lanes of one register.
float rabitq_ex_dot(const float* v, const uint8_t* planes, size_t nplanes, size_t dim, float centre) {
  if (dim % 16) return rabitq_ex_dot_loop(v, planes, nplanes, dim, centre);
  const size_t plane_bytes = dim / 8;
  const __m512 shift = _mm512_set1_ps(centre);
  __m512 acc = _mm512_setzero_ps();
  alignas(16) uint8_t code[16];
  for (size_t i0 = 0; i0 < dim; i0 += 16) {
    rabitq_ex_block_codes(planes, nplanes, plane_bytes, i0, 16, code);
    const __m128i bytes = _mm_load_si128(reinterpret_cast<const __m128i*>(code));
    const __m512 y = _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes)), shift);
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(v + i0), y));
  }
  float partial[16];
  _mm512_storeu_ps(partial, acc);
  return sum16(partial);
}

int64_t masked_sum(const uint64_t* code, const int16_t* levels, size_t words) {
  // A word of the code into a mask register, its halves picking 32 levels each
  // (a zero-masked load); pairs of levels widened into int32 lanes.
  const __m512i ones = _mm512_set1_epi16(1);
  __m512i low = _mm512_setzero_si512(), high = low;
  for (size_t w = 0; w < words; ++w, levels += 64) {
    const __mmask64 bits = _cvtu64_mask64(code[w]);
    low = _mm512_add_epi32(low, _mm512_madd_epi16(_mm512_maskz_loadu_epi16(__mmask32(bits), levels), ones));
    high = _mm512_add_epi32(
        high, _mm512_madd_epi16(_mm512_maskz_loadu_epi16(__mmask32(_kshiftri_mask64(bits, 32)), levels + 32), ones));
  }
  const __m512i lanes = _mm512_add_epi32(low, high);  // |sum| < 2^31 a lane: 2^16 a word, under 2^15 words
  return _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(lanes)),
                                                  _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(lanes, 1))));
}

constexpr AdcKernels kTable{&scan8, &fastscan4, &rabitq_tables, &rabitq_estimate_loop, &rabitq_ex_dot, &masked_sum};

}  // namespace

const AdcKernels& avx512_adc_kernels() { return kTable; }

}  // namespace lookalike::pq
