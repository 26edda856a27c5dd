// The inner product of a query-side vector with an extended RaBitQ code
// (rabitq_ex.h), included by each ADC translation unit (adc_scalar.cpp,
// adc_avx2.cpp, adc_avx512.cpp) like rabitq_estimate_kernel.h: static, so each
// unit compiles its own copy with its own flags. The scalar level runs the
// loop below; AVX2 and AVX-512 take the same 16 dimensions a step into the
// same 16 partial sums (two registers of 8 lanes, or one of 16), built without
// fused multiply-adds: every level returns the scalar level's bits.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "pq/adc_kernels.h"

namespace lookalike::pq {

// Byte l of kSpreadBits[b] is bit l of b: one table lookup turns a byte of a
// bit plane into its 8 dimensions' bits, one byte each, and the planes then
// add up, shifted, in a 64-bit word (no byte exceeds 2^B - 1 <= 255).
static constexpr std::array<uint64_t, 256> spread_bits_table() {
  std::array<uint64_t, 256> t{};
  for (uint64_t b = 0; b < 256; ++b)
    for (uint64_t l = 0; l < 8; ++l) t[b] |= ((b >> l) & 1) << (8 * l);
  return t;
}
static constexpr std::array<uint64_t, 256> kSpreadBits = spread_bits_table();

// The codes of dimensions i0 .. i0 + 15 (fewer when dim is 4 or 8), a byte
// each, in code[0..15].
static inline void rabitq_ex_block_codes(const uint8_t* planes, size_t nplanes, size_t plane_bytes, size_t i0,
                                         size_t width, uint8_t code[16]) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "code bytes are read from words in memory order");
  uint64_t low = 0, high = 0;  // the codes of dimensions i0.. and i0 + 8..
  for (size_t p = 0; p < nplanes; ++p) {
    const uint8_t* plane = planes + p * plane_bytes + i0 / 8;
    low |= kSpreadBits[plane[0]] << p;
    if (width > 8) high |= kSpreadBits[plane[1]] << p;
  }
  std::memcpy(code, &low, 8);
  std::memcpy(code + 8, &high, 8);
}

// sum over i of v[i] * (c_i - centre), c_i the B-bit code of dimension i from
// its B bit planes: 16 partial sums, partial l taking the dimensions i = l mod
// 16 in increasing i, then sum16's fixed tree (as scan8).
static float rabitq_ex_dot_loop(const float* v, const uint8_t* planes, size_t nplanes, size_t dim, float centre) {
  const size_t plane_bytes = (dim + 7) / 8;
  float partial[16] = {};
  for (size_t i0 = 0; i0 < dim; i0 += 16) {
    const size_t width = dim - i0 < 16 ? dim - i0 : 16;  // 16 but for dim 4 and 8
    uint8_t code[16];
    rabitq_ex_block_codes(planes, nplanes, plane_bytes, i0, width, code);
    if (width == 16) {
      for (size_t l = 0; l < 16; ++l) partial[l] += v[i0 + l] * (float(code[l]) - centre);
    } else {
      for (size_t l = 0; l < width; ++l) partial[l] += v[i0 + l] * (float(code[l]) - centre);
    }
  }
  return sum16(partial);
}

}  // namespace lookalike::pq
