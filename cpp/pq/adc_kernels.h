// SIMD scans of PQ codes against a query's lookup tables, one translation unit
// per instruction set (adc_scalar.cpp, adc_avx2.cpp, adc_avx512.cpp), chosen at
// run time by the same level as the distance kernels (distance::active_isa(), so
// LOOKALIKE_SIMD and ScopedIsa apply to both). Index code never sees an intrinsic.
//
// Every level returns bit-identical results to the scalar one:
//   scan8     sums each code's m float table entries in a fixed order (16
//             partial sums, partial j taking the sub-spaces s = j mod 16 in
//             increasing s, then the pairwise tree of sum16 below), which is
//             exactly what 16 SIMD lanes do; AVX2 keeps the 16 lanes in two
//             registers. Table entries are fetched with gathers.
//   fastscan4 works on uint8 tables and uint16 sums: integer arithmetic, exact
//             in any order.
//   rabitq_tables
//             adds each entry's terms in one fixed order (j = 0..3 onto +0, an
//             absent term adding +0), then one subtraction, one multiplication
//             (never fused) and a round to nearest even: the same float
//             operations in every lane.
//   rabitq_estimate
//             one loop (rabitq_estimate_kernel.h) that each unit's compiler
//             vectorises to its width; the units are built without fused
//             multiply-adds (-ffp-contract=off), so each lane rounds as scalar code.
//   rabitq_ex_dot
//             16 partial sums (partial l takes the dimensions i = l mod 16)
//             reduced by sum16, as scan8: a loop at the scalar level
//             (rabitq_ex_kernel.h), two 8-lane registers under AVX2, one of
//             16 under AVX-512, without fused multiply-adds.
//   masked_sum
//             the levels loaded under the code's bits as masks (AVX-512) or
//             masks made from them (AVX2), each set bit's level at the scalar
//             level, summed in int32 lanes: integer, exact in any order.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lookalike::pq {

// out[i] = the ADC distance of code i, for n codes of m bytes each (8-bit PQ,
// row-major): the sum over s of lut[s * 256 + codes[i * m + s]].
using Scan8Fn = void (*)(const float* lut, const uint8_t* codes, size_t n, size_t m, float* out);

// Fast-scan of 4-bit codes in fast_scan.h's block layout: out[32 b + j] = the
// sum over s of qlut[s * 16 + code_s(vector j of block b)], for nblocks blocks.
// m <= kMaxFastScanM keeps every sum within uint16.
using FastScan4Fn = void (*)(const uint8_t* qlut, const uint8_t* blocks, size_t nblocks, size_t m, uint16_t* out);

// RaBitQ's uint8 fast-scan tables (rabitq.h) for `groups` groups of 4 floats of
// v: qlut[16 g + b] = clamp(round((sum over the set bits j of b of v[4 g + j]
// - low[g]) * inv_scale), 0, 255).
using RabitqTablesFn = void (*)(const float* v, const float* low, size_t groups, float inv_scale, uint8_t* qlut);

// What one list's RaBitQ estimates need besides the codes' sums and factors
// (rabitq.cpp fills it in; rabitq_estimate_kernel.h says what each means).
struct RabitqScanConstants {
  float dot_scale, dot_offset;  // <x, v> ~= dot_scale * sum + dot_offset
  float table_error;            // the tables' rounding, on <x, v>
  float spread;                 // sigmas * |v| / sqrt(D - 1)
  float offset, square_weight, linear_weight;
};
// est[i], err[i] of n codes from their fast-scan sums and factors (rabitq.h).
using RabitqEstimateFn = void (*)(const RabitqScanConstants& k, const uint16_t* sums, const float* norms,
                                  const uint8_t* cosines, size_t n, float* est, float* err);

// Extended RaBitQ (rabitq_ex.h): sum over i < dim of v[i] * (c_i - centre),
// c_i the code of dimension i, bit p of it at bit i % 8 of byte
// p * ceil(dim / 8) + i / 8 of planes (nplanes planes).
using RabitqExDotFn = float (*)(const float* v, const uint8_t* planes, size_t nplanes, size_t dim, float centre);

// One 1-bit code against a query rounded to int16 levels (the hnsw sketches,
// node_sketches.h): the sum of levels[i] over the set bits i of the code,
// `words` uint64 words with bit i at bit i % 64 of word i / 64, against 64 *
// words levels.
using MaskedSumFn = int64_t (*)(const uint64_t* code, const int16_t* levels, size_t words);

struct AdcKernels {
  Scan8Fn scan8;
  FastScan4Fn fastscan4;
  RabitqTablesFn rabitq_tables;
  RabitqEstimateFn rabitq_estimate;
  RabitqExDotFn rabitq_ex_dot;
  MaskedSumFn masked_sum;
};

const AdcKernels& scalar_adc_kernels();
#if defined(__x86_64__) || defined(_M_X64)
const AdcKernels& avx2_adc_kernels();
const AdcKernels& avx512_adc_kernels();
#endif

// The kernels of the active SIMD level.
const AdcKernels& adc_kernels();

// The fixed summation order of scan8's 16 partial sums. static: every
// translation unit gets its own copy, compiled with its own flags (see
// distance/kernel_templates.h for why a shared inline copy would be unsafe).
static inline float sum16(float p[16]) {
  for (int j = 0; j < 8; ++j) p[j] += p[j + 8];
  for (int j = 0; j < 4; ++j) p[j] += p[j + 4];
  for (int j = 0; j < 2; ++j) p[j] += p[j + 2];
  return p[0] + p[1];
}

}  // namespace lookalike::pq
