// The inner product of a query-side vector with an extended RaBitQ code
// (rabitq_ex.h), included by each ADC translation unit (adc_scalar.cpp,
// adc_avx2.cpp, adc_avx512.cpp) like rabitq_estimate_kernel.h: static, one
// loop each unit's compiler vectorises to its width, built without fused
// multiply-adds, so every level returns the scalar level's bits.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pq/adc_kernels.h"

namespace lookalike::pq {

// sum over i of v[i] * (c_i - centre), c_i the B-bit code of dimension i from
// its B bit planes: 16 partial sums, partial l taking the dimensions i = l mod
// 16 in increasing i, then sum16's fixed tree (as scan8).
static float rabitq_ex_dot_loop(const float* v, const uint8_t* planes, size_t nplanes, size_t dim, float centre) {
  const size_t plane_bytes = (dim + 7) / 8;
  float partial[16] = {};
  for (size_t i0 = 0; i0 < dim; i0 += 16) {
    const size_t width = dim - i0 < 16 ? dim - i0 : 16;  // 16 but for dim 4 and 8
    uint32_t code[16] = {};
    for (size_t p = 0; p < nplanes; ++p) {
      const uint8_t* plane = planes + p * plane_bytes + i0 / 8;
      const uint32_t bits = width > 8 ? uint32_t(plane[0]) | uint32_t(plane[1]) << 8 : plane[0];
      for (size_t l = 0; l < 16; ++l) code[l] |= ((bits >> l) & 1u) << p;
    }
    for (size_t l = 0; l < width; ++l) partial[l] += v[i0 + l] * (float(code[l]) - centre);
  }
  return sum16(partial);
}

}  // namespace lookalike::pq
