#include "io/crc32c.h"

#include <array>
#include <cstring>

namespace lookalike::io {

namespace {

// Slicing-by-8: table k maps a byte to its CRC contribution k bytes further on,
// so eight bytes are folded per step with eight independent lookups.
using CrcTables = std::array<std::array<uint32_t, 256>, 8>;
constexpr CrcTables make_crc_tables() {
  CrcTables t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int b = 0; b < 8; ++b) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    t[0][i] = c;
  }
  for (size_t k = 1; k < 8; ++k)
    for (size_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
  return t;
}
constexpr CrcTables kCrc = make_crc_tables();

using CrcFn = uint32_t (*)(const void*, size_t, uint32_t);

CrcFn choose() {
#if defined(__x86_64__) || defined(_M_X64)
  if (__builtin_cpu_supports("sse4.2")) return &crc32c_sse42;
#endif
  return &crc32c_portable;
}

}  // namespace

uint32_t crc32c_portable(const void* data, size_t size, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  for (; size >= 8; p += 8, size -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    w ^= c;
    c = kCrc[7][w & 0xFF] ^ kCrc[6][(w >> 8) & 0xFF] ^ kCrc[5][(w >> 16) & 0xFF] ^ kCrc[4][(w >> 24) & 0xFF] ^
        kCrc[3][(w >> 32) & 0xFF] ^ kCrc[2][(w >> 40) & 0xFF] ^ kCrc[1][(w >> 48) & 0xFF] ^ kCrc[0][w >> 56];
  }
  for (; size > 0; ++p, --size) c = (c >> 8) ^ kCrc[0][(c ^ *p) & 0xFF];
  return ~c;
}

uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
  static const CrcFn impl = choose();
  return impl(data, size, crc);
}

}  // namespace lookalike::io
