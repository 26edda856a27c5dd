#include "pq/fast_scan.h"

#include <algorithm>
#include <cmath>

namespace lookalike::pq {

void fast_scan_put(uint8_t* block, size_t m, size_t j, const uint8_t* code) {
  const size_t byte = j % 16;
  const int shift = j < 16 ? 0 : 4;
  const uint8_t keep = j < 16 ? 0xF0 : 0x0F;
  for (size_t s = 0; s < m; ++s) {
    uint8_t& b = block[16 * s + byte];
    b = uint8_t((b & keep) | ((code[s] & 0x0F) << shift));
  }
}

void fast_scan_get(const uint8_t* block, size_t m, size_t j, uint8_t* code) {
  const int shift = j < 16 ? 0 : 4;
  for (size_t s = 0; s < m; ++s) code[s] = (block[16 * s + j % 16] >> shift) & 0x0F;
}

QuantizedLut quantize_lut(const float* lut, size_t m, uint8_t* qlut) {
  QuantizedLut q;
  float widest = 0;
  for (size_t s = 0; s < m; ++s) {
    const float* t = lut + 16 * s;
    const auto [lo, hi] = std::minmax_element(t, t + 16);
    q.bias += *lo;
    widest = std::max(widest, *hi - *lo);
  }
  q.scale = widest > 0 ? widest / 255.0f : 1.0f;
  for (size_t s = 0; s < m; ++s) {
    const float* t = lut + 16 * s;
    const float lo = *std::min_element(t, t + 16);
    for (size_t c = 0; c < 16; ++c)
      qlut[16 * s + c] = uint8_t(std::min(255.0f, std::nearbyint((t[c] - lo) / q.scale)));
  }
  return q;
}

}  // namespace lookalike::pq
