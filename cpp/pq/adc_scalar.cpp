// Scalar reference of the ADC scans: the definition every SIMD level must match
// bit for bit (see adc_kernels.h for the summation order).
#include <algorithm>
#include <cmath>

#include "pq/adc_kernels.h"
#include "pq/rabitq_estimate_kernel.h"
#include "pq/rabitq_ex_kernel.h"

namespace lookalike::pq {
namespace {

void scan8(const float* lut, const uint8_t* codes, size_t n, size_t m, float* out) {
  for (size_t i = 0; i < n; ++i, codes += m) {
    float partial[16] = {};
    for (size_t s = 0; s < m; ++s) partial[s % 16] += lut[s * 256 + codes[s]];
    out[i] = sum16(partial);
  }
}

void fastscan4(const uint8_t* qlut, const uint8_t* blocks, size_t nblocks, size_t m, uint16_t* out) {
  for (size_t b = 0; b < nblocks; ++b, blocks += 16 * m, out += 32) {
    for (size_t j = 0; j < 32; ++j) out[j] = 0;
    for (size_t s = 0; s < m; ++s)
      for (size_t j = 0; j < 16; ++j) {
        const uint8_t byte = blocks[16 * s + j];
        out[j] = uint16_t(out[j] + qlut[16 * s + (byte & 0x0F)]);
        out[j + 16] = uint16_t(out[j + 16] + qlut[16 * s + (byte >> 4)]);
      }
  }
}

void rabitq_tables(const float* v, const float* low, size_t groups, float inv_scale, uint8_t* qlut) {
  for (size_t g = 0; g < groups; ++g, v += 4, qlut += 16)
    for (unsigned b = 0; b < 16; ++b) {
      float t = 0;
      for (unsigned j = 0; j < 4; ++j) t += (b >> j) & 1 ? v[j] : 0.0f;
      const float y = (t - low[g]) * inv_scale;
      qlut[b] = uint8_t(std::clamp(std::lrint(y), 0l, 255l));
    }
}

int64_t masked_sum(const uint64_t* code, const int16_t* levels, size_t words) {
  int64_t sum = 0;
  for (size_t w = 0; w < words; ++w)
    for (uint64_t bits = code[w]; bits; bits &= bits - 1) sum += levels[64 * w + size_t(__builtin_ctzll(bits))];
  return sum;
}

constexpr AdcKernels kTable{&scan8,         &fastscan4,         &rabitq_tables, &rabitq_estimate_loop,
                            &rabitq_ex_dot_loop, &masked_sum};

}  // namespace

const AdcKernels& scalar_adc_kernels() { return kTable; }

}  // namespace lookalike::pq
