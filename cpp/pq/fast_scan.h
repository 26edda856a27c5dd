// The data layout and table quantisation of the 4-bit fast-scan (André, Kermarrec
// & Le Scouarnec, "Cache locality is not enough", 2015; FAISS's PQFastScan).
//
// Codes are stored in blocks of 32 vectors. Within a block, sub-space s owns
// 16 bytes at [16 s, 16 s + 16): byte j holds vector j's code in its low nibble
// and vector j + 16's in its high nibble. One 16-byte load thus gives a SIMD
// register the codes of 32 vectors for one sub-space, and a byte shuffle
// (pshufb) with that sub-space's 16-entry uint8 table looks all of them up at
// once. A block is 16 m bytes (m / 2 bytes a vector); a partial last block is
// zero-padded and its padding ignored.
//
// Tables are quantised to uint8 per query: each sub-space's table is shifted
// by its minimum (the shifts sum to `bias`) and all are divided by one common
// step (`scale`), so distance ~= bias + scale * (sum of uint8 entries). The
// rounding error (at most m / 2 steps) only perturbs the candidate order, which
// the exact re-rank repairs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lookalike::pq {

constexpr size_t kFastScanBlock = 32;
constexpr size_t kMaxFastScanM = 256;  // 256 * 255 < 2^16: uint16 sums cannot wrap

inline size_t fast_scan_block_bytes(size_t m) { return 16 * m; }

// Writes / reads the one-byte-per-sub-space code of vector j (< 32) of a block.
void fast_scan_put(uint8_t* block, size_t m, size_t j, const uint8_t* code);
void fast_scan_get(const uint8_t* block, size_t m, size_t j, uint8_t* code);

struct QuantizedLut {
  float bias = 0;   // distance = bias + scale * sum
  float scale = 1;
};
// lut: m * 16 floats; qlut receives m * 16 uint8 entries.
QuantizedLut quantize_lut(const float* lut, size_t m, uint8_t* qlut);

}  // namespace lookalike::pq
