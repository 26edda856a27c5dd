// The per-code RaBitQ estimate and bound (rabitq.h), included by each ADC
// translation unit (adc_scalar.cpp, adc_avx2.cpp, adc_avx512.cpp): static, so
// each unit keeps its own copy compiled with its own flags, and free of inline
// functions shared with other units (see adc_kernels.h's sum16 for why).
#pragma once

#include <cstddef>
#include <cstdint>

#include "pq/adc_kernels.h"

namespace lookalike::pq {

// What an estimate needs of a code's cosine factor (8-bit fixed point): a
// function of its 256 values, so a caller estimating one code at a time can
// keep them in a table (node_sketches.cpp) and get the same bits.
struct CosineTerms {
  float inv_cosine;  // 1 / cosine
  float sine;        // sqrt(1 - cosine^2)
  float rounding;    // how far the 8-bit cosine moves <o, v>, relative to |<o, v>| (besides the norm's share)
};

static inline CosineTerms rabitq_cosine_terms(uint8_t cosine_code) {
  // The cosine, 8-bit fixed point, is within half a step (and a little more:
  // a cosine converted from a 16-bit one of an older file is within half a
  // step of each, ivf_pq_persist.cpp).
  constexpr float kCosineStep = 1.0f / 255.0f, kCosineAbsolute = 0.51f / 255.0f;
  const float cosine = float(cosine_code) * kCosineStep;
  const float sine_sq = 1.0f - cosine * cosine;
  return {1.0f / cosine, __builtin_sqrtf(sine_sq > 0 ? sine_sq : 0.0f), kCosineAbsolute / (cosine - kCosineAbsolute)};
}

// One code's estimate and bound from its ~<x, v> (`dot`), the most that `dot`
// can be off by its computation (`dot_error`: the tables' rounding, or the
// query's quantisation), and its factors.
static inline void rabitq_estimate_one(const RabitqScanConstants& k, float dot, float dot_error, float nr,
                                       const CosineTerms& c, float& est, float& err) {
  // The stored norm's rounding: a float16 norm is within 2^-11 of the true one
  // relatively (2^-10 here, relative to the stored value, with margin) or 2^-25
  // absolutely (subnormals).
  constexpr float kNormRelative = 1.0f / 1024, kNormAbsolute = 1.0f / (1 << 25);
  const float ip = dot * c.inv_cosine;  // ~<o, v>
  const float norm_error = nr * kNormRelative + kNormAbsolute;
  const float factor_error = k.square_weight * norm_error * (2 * nr + norm_error) +
                             k.linear_weight * __builtin_fabsf(ip) * (norm_error + (nr + norm_error) * c.rounding);
  // (An infinite bound stays infinite, not NaN, for a zero sine or norm.)
  const float spread_term = c.sine > 0 ? k.spread * c.sine : 0.0f;
  const float estimate_error = nr > 0 ? k.linear_weight * nr * (spread_term + dot_error) * c.inv_cosine : 0.0f;
  est = k.offset + k.square_weight * nr * nr - k.linear_weight * nr * ip;
  err = estimate_error + factor_error;
}

static inline void rabitq_estimate_loop(const RabitqScanConstants& k, const uint16_t* sums, const float* norms,
                                        const uint8_t* cosines, size_t n, float* est, float* err) {
  for (size_t i = 0; i < n; ++i)
    rabitq_estimate_one(k, k.dot_scale * float(sums[i]) + k.dot_offset, k.table_error, norms[i],
                        rabitq_cosine_terms(cosines[i]), est[i], err[i]);
}

}  // namespace lookalike::pq
