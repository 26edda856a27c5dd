// CRC32C (Castagnoli), the checksum of lookalike's file headers and sections.
//
// Two implementations with identical results: slicing-by-8 tables (any CPU) and
// the SSE4.2 crc32 instruction (x86-64), about five times faster, which matters
// when a multi-GB index is verified on load. crc32c() picks the instruction when
// the CPU has it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lookalike::io {

// `crc` chains calls: crc32c(b, nb, crc32c(a, na)) == crc32c(a+b, na+nb).
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);

// The table-driven version, for any CPU; tests compare the two.
uint32_t crc32c_portable(const void* data, size_t size, uint32_t crc = 0);

#if defined(__x86_64__) || defined(_M_X64)
// Defined in crc32c_sse42.cpp, compiled with -msse4.2; call only where the CPU has SSE4.2.
uint32_t crc32c_sse42(const void* data, size_t size, uint32_t crc);
#endif

}  // namespace lookalike::io
