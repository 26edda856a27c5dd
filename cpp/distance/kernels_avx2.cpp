// AVX2 + FMA kernels, with F16C to widen float16. Compiled with
// -mavx2 -mfma -mf16c; dispatch.cpp hands this table out only on CPUs with all
// three. Everything here is in an anonymous namespace so that no function
// compiled with these flags can be picked by the linker for another TU; the
// kernels themselves are in kernel_templates.h, included into that namespace.
#include <immintrin.h>

#include <cmath>

#include "distance/distance.h"

namespace lookalike::distance {
namespace {

// The first n < 16 bytes at p in the low lanes, zeros above. AVX2 masks loads
// only in 32-bit lanes: the whole dwords come from a masked load (masked-out
// lanes are not read, so cannot fault), the last n % 4 bytes from byte loads.
// Built in registers on purpose: a zero-padded copy on the stack, read back at
// once, stalls on store forwarding (for 100 int8 components, that stall took
// most of the kernel's time).
__m128i load_first_bytes(const void* p, size_t n) {
  const __m128i lane = _mm_setr_epi32(0, 1, 2, 3);
  const __m128i whole = _mm_set1_epi32(int(n / 4));
  const __m128i v = _mm_maskload_epi32(static_cast<const int*>(p), _mm_cmpgt_epi32(whole, lane));
  const uint8_t* rest = static_cast<const uint8_t*>(p) + n / 4 * 4;
  uint32_t last = 0;
  for (size_t j = 0; j < n % 4; ++j) last |= uint32_t(rest[j]) << (8 * j);
  return _mm_or_si128(v, _mm_and_si128(_mm_set1_epi32(int(last)), _mm_cmpeq_epi32(whole, lane)));
}

// A loader turns W stored components into one register of the type the kernel
// computes in: 8 floats for f32/f16, 16 int16 for int8 (whose products are
// summed exactly in int32 lanes by madd). load_first(p, r) loads the first r < W
// components and zeros the rest, zeros being neutral for every kernel.
struct LoadF32 {
  using T = float;
  using V = __m256;
  static constexpr size_t W = 8;
  static __m256 load(const T* p) { return _mm256_loadu_ps(p); }
  static __m256 load_first(const T* p, size_t r) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(int(r)), lane));
  }
  static __m256 splat(float x) { return _mm256_set1_ps(x); }
  static void store(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
  static constexpr size_t kTileRows = 3;  // 12 accumulators of 16 registers
};

struct LoadF16 {
  using T = uint16_t;
  using V = __m256;
  static constexpr size_t W = 8;
  static __m256 load(const T* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static __m256 load_first(const T* p, size_t r) { return _mm256_cvtph_ps(load_first_bytes(p, 2 * r)); }
};

struct LoadI8 {
  using T = int8_t;
  using V = __m256i;
  static constexpr size_t W = 16;
  static __m256i load(const T* p) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static __m256i load_first(const T* p, size_t r) { return _mm256_cvtepi8_epi16(load_first_bytes(p, r)); }
};

// The arithmetic the kernels need, for both register kinds, so each kernel is
// written once. Integer accumulators hold int32 lanes.
__m256 mul_acc(__m256 acc, __m256 x, __m256 y) { return _mm256_fmadd_ps(x, y, acc); }
__m256i mul_acc(__m256i acc, __m256i x, __m256i y) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(x, y));
}
__m256 sub(__m256 x, __m256 y) { return _mm256_sub_ps(x, y); }
__m256i sub(__m256i x, __m256i y) { return _mm256_sub_epi16(x, y); }  // |x - y| <= 255
__m256 add(__m256 x, __m256 y) { return _mm256_add_ps(x, y); }
__m256i add(__m256i x, __m256i y) { return _mm256_add_epi32(x, y); }

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

int32_t hsum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 1, 1, 1)));
  return _mm_cvtsi128_si32(s);
}

void to_f16(const float* in, uint16_t* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) out[i] = f32_to_f16(in[i]);
}

void from_f16(const uint16_t* in, float* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, LoadF16::load(in + i));
  for (; i < n; ++i) out[i] = f16_to_f32(in[i]);
}

#include "distance/kernel_templates.h"  // Op, one, many, make_table: see there

constexpr KernelSet kTable = make_table();

}  // namespace

const KernelSet& avx2_kernels() { return kTable; }

}  // namespace lookalike::distance
