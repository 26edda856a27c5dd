// AVX-512 (F, BW, VL, DQ) kernels. Compiled with those flags plus the AVX2 ones;
// dispatch.cpp hands this table out only on CPUs with all of them. int8 goes
// through sign extension and madd_epi16, so VNNI is not required. Everything here
// is in an anonymous namespace so that no function compiled with these flags can
// be picked by the linker for another TU; the kernels themselves are in
// kernel_templates.h, included into that namespace.
// GCC 12.0-12.2's AVX-512 headers trip -Wuninitialized on their own placeholder
// operands (GCC bug 105593); silence it for the header only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <cmath>

#include "distance/distance.h"

namespace lookalike::distance {
namespace {

// A loader turns W stored components into one register of the type the kernel
// computes in: 16 floats for f32/f16, 32 int16 for int8 (whose products are
// summed exactly in int32 lanes by madd). load_first(p, r) loads the first r < W
// components and zeros the rest, zeros being neutral for every kernel.
struct LoadF32 {
  using T = float;
  using V = __m512;
  static constexpr size_t W = 16;
  static __m512 load(const T* p) { return _mm512_loadu_ps(p); }
  static __m512 load_first(const T* p, size_t r) {
    return _mm512_maskz_loadu_ps(__mmask16((1u << r) - 1), p);
  }
  static __m512 splat(float x) { return _mm512_set1_ps(x); }
  static void store(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
  static constexpr size_t kTileRows = 12;  // 24 accumulators of 32 registers
};

struct LoadF16 {
  using T = uint16_t;
  using V = __m512;
  static constexpr size_t W = 16;
  static __m512 load(const T* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static __m512 load_first(const T* p, size_t r) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(__mmask16((1u << r) - 1), p));
  }
};

struct LoadI8 {
  using T = int8_t;
  using V = __m512i;
  static constexpr size_t W = 32;
  static __m512i load(const T* p) {
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static __m512i load_first(const T* p, size_t r) {
    return _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(__mmask32((1u << r) - 1), p));
  }
};

// The arithmetic the kernels need, for both register kinds, so each kernel is
// written once. Integer accumulators hold int32 lanes.
__m512 mul_acc(__m512 acc, __m512 x, __m512 y) { return _mm512_fmadd_ps(x, y, acc); }
__m512i mul_acc(__m512i acc, __m512i x, __m512i y) {
  return _mm512_add_epi32(acc, _mm512_madd_epi16(x, y));
}
__m512 sub(__m512 x, __m512 y) { return _mm512_sub_ps(x, y); }
__m512i sub(__m512i x, __m512i y) { return _mm512_sub_epi16(x, y); }  // |x - y| <= 255
__m512 add(__m512 x, __m512 y) { return _mm512_add_ps(x, y); }
__m512i add(__m512i x, __m512i y) { return _mm512_add_epi32(x, y); }
float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }
int32_t hsum(__m512i v) { return _mm512_reduce_add_epi32(v); }

void to_f16(const float* in, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; i += 16) {
    const size_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = __mmask16((1u << r) - 1);
    __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, in + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_mask_storeu_epi16(out + i, m, h);
  }
}

void from_f16(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; i += 16) {
    const size_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = __mmask16((1u << r) - 1);
    _mm512_mask_storeu_ps(out + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, in + i)));
  }
}

#include "distance/kernel_templates.h"  // Op, one, many, make_table: see there

constexpr KernelSet kTable = make_table();

}  // namespace

const KernelSet& avx512_kernels() { return kTable; }

}  // namespace lookalike::distance
