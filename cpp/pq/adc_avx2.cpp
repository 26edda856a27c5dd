// AVX2 ADC scans (compiled with -mavx2 -mfma). scan8: 16 partial sums in two
// 8-lane registers, table entries by gather. fastscan4: two sub-spaces a step,
// one per 128-bit lane, looked up with vpshufb.
#include <immintrin.h>

#include "pq/adc_kernels.h"
#include "pq/rabitq_estimate_kernel.h"
#include "pq/rabitq_ex_kernel.h"

namespace lookalike::pq {
namespace {

void scan8(const float* lut, const uint8_t* codes, size_t n, size_t m, float* out) {
  const size_t full = m / 16 * 16;
  const __m256i lane_offsets_lo = _mm256_setr_epi32(0, 256, 512, 768, 1024, 1280, 1536, 1792);
  const __m256i lane_offsets_hi = _mm256_add_epi32(lane_offsets_lo, _mm256_set1_epi32(8 * 256));
  for (size_t i = 0; i < n; ++i, codes += m) {
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (size_t s = 0; s < full; s += 16) {
      const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + s));
      const __m256i base = _mm256_set1_epi32(int(s * 256));
      const __m256i idx_lo = _mm256_add_epi32(_mm256_add_epi32(_mm256_cvtepu8_epi32(c), lane_offsets_lo), base);
      const __m256i idx_hi =
          _mm256_add_epi32(_mm256_add_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(c, 8)), lane_offsets_hi), base);
      lo = _mm256_add_ps(lo, _mm256_i32gather_ps(lut, idx_lo, 4));
      hi = _mm256_add_ps(hi, _mm256_i32gather_ps(lut, idx_hi, 4));
    }
    alignas(32) float partial[16];
    _mm256_store_ps(partial, lo);
    _mm256_store_ps(partial + 8, hi);
    for (size_t s = full; s < m; ++s) partial[s % 16] += lut[s * 256 + codes[s]];
    out[i] = sum16(partial);
  }
}

// Adds the looked-up bytes of r into 16-bit sums: even bytes into `even`, odd
// bytes into `odd` (uint8 + uint8 sums would overflow at once).
inline void accumulate(__m256i r, __m256i& even, __m256i& odd) {
  even = _mm256_add_epi16(even, _mm256_and_si256(r, _mm256_set1_epi16(0xFF)));
  odd = _mm256_add_epi16(odd, _mm256_srli_epi16(r, 8));
}

// even/odd word w of each 128-bit lane holds vector 2w / 2w+1 of one sub-space
// group; the lanes are summed and the words interleaved back into vector order.
inline void store_sums(__m256i even, __m256i odd, uint16_t* out) {
  const __m128i e = _mm_add_epi16(_mm256_castsi256_si128(even), _mm256_extracti128_si256(even, 1));
  const __m128i o = _mm_add_epi16(_mm256_castsi256_si128(odd), _mm256_extracti128_si256(odd, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_unpacklo_epi16(e, o));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 8), _mm_unpackhi_epi16(e, o));
}

void fastscan4(const uint8_t* qlut, const uint8_t* blocks, size_t nblocks, size_t m, uint16_t* out) {
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  for (size_t b = 0; b < nblocks; ++b, blocks += 16 * m, out += 32) {
    __m256i even_lo = _mm256_setzero_si256(), odd_lo = even_lo, even_hi = even_lo, odd_hi = even_lo;
    for (size_t s = 0; s < m; s += 2) {
      __m256i codes, table;
      if (s + 1 < m) {
        codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blocks + 16 * s));
        table = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qlut + 16 * s));
      } else {  // an odd last sub-space: the upper lane looks up a zero table
        codes = _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks + 16 * s)));
        table = _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qlut + 16 * s)));
      }
      const __m256i lo = _mm256_and_si256(codes, nibble);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(codes, 4), nibble);
      accumulate(_mm256_shuffle_epi8(table, lo), even_lo, odd_lo);
      accumulate(_mm256_shuffle_epi8(table, hi), even_hi, odd_hi);
    }
    store_sums(even_lo, odd_lo, out);
    store_sums(even_hi, odd_hi, out + 16);
  }
}

// Entries 0-7 and 8-15 of a group in two registers; bit j of a lane's entry
// index selects v[j] by an and-mask (+0 where clear).
void rabitq_tables(const float* v, const float* low, size_t groups, float inv_scale, uint8_t* qlut) {
  __m256 select_lo[4], select_hi[4];
  for (int j = 0; j < 4; ++j) {
    alignas(32) int32_t lo[8], hi[8];
    for (int b = 0; b < 8; ++b) {
      lo[b] = (b >> j) & 1 ? -1 : 0;
      hi[b] = ((b + 8) >> j) & 1 ? -1 : 0;
    }
    select_lo[j] = _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(lo)));
    select_hi[j] = _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(hi)));
  }
  const __m256 scale = _mm256_set1_ps(inv_scale);
  const __m256i zero = _mm256_setzero_si256(), top = _mm256_set1_epi32(255);
  for (size_t g = 0; g < groups; ++g, v += 4, qlut += 16) {
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      const __m256 x = _mm256_set1_ps(v[j]);
      lo = _mm256_add_ps(lo, _mm256_and_ps(x, select_lo[j]));
      hi = _mm256_add_ps(hi, _mm256_and_ps(x, select_hi[j]));
    }
    const __m256 shift = _mm256_set1_ps(low[g]);
    const __m256i qlo = _mm256_min_epi32(
        _mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(lo, shift), scale)), zero), top);
    const __m256i qhi = _mm256_min_epi32(
        _mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(hi, shift), scale)), zero), top);
    const __m128i words_lo = _mm_packs_epi32(_mm256_castsi256_si128(qlo), _mm256_extracti128_si256(qlo, 1));
    const __m128i words_hi = _mm_packs_epi32(_mm256_castsi256_si128(qhi), _mm256_extracti128_si256(qhi, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qlut), _mm_packus_epi16(words_lo, words_hi));
  }
}

// rabitq_ex_kernel.h's loop with its 16 partial sums in two registers.
float rabitq_ex_dot(const float* v, const uint8_t* planes, size_t nplanes, size_t dim, float centre) {
  if (dim % 16) return rabitq_ex_dot_loop(v, planes, nplanes, dim, centre);
  const size_t plane_bytes = dim / 8;
  const __m256 shift = _mm256_set1_ps(centre);
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  alignas(16) uint8_t code[16];
  for (size_t i0 = 0; i0 < dim; i0 += 16) {
    rabitq_ex_block_codes(planes, nplanes, plane_bytes, i0, 16, code);
    const __m128i bytes = _mm_load_si128(reinterpret_cast<const __m128i*>(code));
    const __m256 ylo = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)), shift);
    const __m256 yhi = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8))), shift);
    lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(v + i0), ylo));
    hi = _mm256_add_ps(hi, _mm256_mul_ps(_mm256_loadu_ps(v + i0 + 8), yhi));
  }
  float partial[16];
  _mm256_storeu_ps(partial, lo);
  _mm256_storeu_ps(partial + 8, hi);
  return sum16(partial);
}

uint64_t sum4(__m256i x) {
  const __m128i pair = _mm_add_epi64(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
  return uint64_t(_mm_cvtsi128_si64(pair)) + uint64_t(_mm_extract_epi64(pair, 1));
}

int64_t masked_sum(const uint64_t* code, const int16_t* levels, size_t words) {
  // Lane l of a group of 16 dimensions keeps its level where bit l of the
  // group's 16 bits is set; pairs of levels widened into int32 lanes.
  const __m256i lane_bit = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
                                             int16_t(-32768));
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i even = _mm256_setzero_si256(), odd = even;
  auto take = [&](uint64_t bits, const int16_t* group) {
    const __m256i set =
        _mm256_cmpeq_epi16(_mm256_and_si256(_mm256_set1_epi16(int16_t(bits & 0xffff)), lane_bit), lane_bit);
    const __m256i kept = _mm256_and_si256(set, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group)));
    return _mm256_madd_epi16(kept, ones);
  };
  for (size_t w = 0; w < words; ++w, levels += 64) {
    const uint64_t bits = code[w];
    even = _mm256_add_epi32(even, take(bits, levels));
    odd = _mm256_add_epi32(odd, take(bits >> 16, levels + 16));
    even = _mm256_add_epi32(even, take(bits >> 32, levels + 32));
    odd = _mm256_add_epi32(odd, take(bits >> 48, levels + 48));
  }
  const __m256i lanes = _mm256_add_epi32(even, odd);  // |sum| < 2^31 a lane: 2^17 a word, under 2^14 words
  const __m256i wide = _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(lanes)),
                                        _mm256_cvtepi32_epi64(_mm256_extracti128_si256(lanes, 1)));
  return int64_t(sum4(wide));
}

constexpr AdcKernels kTable{&scan8, &fastscan4, &rabitq_tables, &rabitq_estimate_loop, &rabitq_ex_dot, &masked_sum};

}  // namespace

const AdcKernels& avx2_adc_kernels() { return kTable; }

}  // namespace lookalike::pq
