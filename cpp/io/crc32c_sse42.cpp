// CRC32C with the SSE4.2 crc32 instruction, eight bytes a step. Compiled with
// -msse4.2 (CMakeLists.txt); crc32c.cpp calls it only on CPUs that have it.
#include <nmmintrin.h>

#include <cstring>

#include "io/crc32c.h"

namespace lookalike::io {

uint32_t crc32c_sse42(const void* data, size_t size, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t c = ~crc;
  for (; size >= 8; p += 8, size -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    c = _mm_crc32_u64(c, w);
  }
  uint32_t c32 = uint32_t(c);
  for (; size > 0; ++p, --size) c32 = _mm_crc32_u8(c32, *p);
  return ~c32;
}

}  // namespace lookalike::io
