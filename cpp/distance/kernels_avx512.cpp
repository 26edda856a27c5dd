// AVX-512 (F, BW, VL, DQ) kernels. Compiled with those flags plus the AVX2 ones;
// dispatch.cpp hands this table out only on CPUs with all of them. int8 goes
// through sign extension and madd_epi16, so VNNI is not required. Everything here
// is in an anonymous namespace so that no function compiled with these flags can
// be picked by the linker for another TU.
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

// Same formula as the scalar reference (see kernels_scalar.cpp).
float cosine(double ab, double aa, double bb) {
  return aa == 0 || bb == 0 ? 0.0f : float(ab / std::sqrt(aa * bb));
}

// Accumulators for each kernel. Register zero-initialisation ({}) is all-zero
// bits for both kinds. Parametrised by the loader, not the register type: a
// register type as template argument would lose its attributes.
template <Kernel K, class L>
struct Op;

template <class L>
struct Op<Kernel::Dot, L> {
  using V = typename L::V;
  V s{};
  void step(V x, V y) { s = mul_acc(s, x, y); }
  void merge(const Op& o) { s = add(s, o.s); }
  float result() const { return float(hsum(s)); }
};

template <class L>
struct Op<Kernel::L2Sq, L> {
  using V = typename L::V;
  V s{};
  void step(V x, V y) {
    V d = sub(x, y);
    s = mul_acc(s, d, d);
  }
  void merge(const Op& o) { s = add(s, o.s); }
  float result() const { return float(hsum(s)); }
};

template <class L>
struct Op<Kernel::Cosine, L> {
  using V = typename L::V;
  V ab{}, aa{}, bb{};
  void step(V x, V y) {
    ab = mul_acc(ab, x, y);
    aa = mul_acc(aa, x, x);
    bb = mul_acc(bb, y, y);
  }
  void merge(const Op& o) {
    ab = add(ab, o.ab);
    aa = add(aa, o.aa);
    bb = add(bb, o.bb);
  }
  float result() const { return cosine(hsum(ab), hsum(aa), hsum(bb)); }
};

template <class L, Kernel K>
float one(const void* pa, const void* pb, size_t dim) {
  using T = typename L::T;
  constexpr size_t W = L::W;
  const T* a = static_cast<const T*>(pa);
  const T* b = static_cast<const T*>(pb);
  // Four independent accumulator sets cover the FMA latency.
  Op<K, L> acc[4]{};
  size_t i = 0;
  for (; i + 4 * W <= dim; i += 4 * W)
    for (size_t u = 0; u < 4; ++u) acc[u].step(L::load(a + i + u * W), L::load(b + i + u * W));
  for (; i + W <= dim; i += W) acc[0].step(L::load(a + i), L::load(b + i));
  if (i < dim) acc[1].step(L::load_first(a + i, dim - i), L::load_first(b + i, dim - i));
  acc[0].merge(acc[1]);
  acc[2].merge(acc[3]);
  acc[0].merge(acc[2]);
  return acc[0].result();
}

template <class L, Kernel K>
void many(const void* query, const void* base, size_t n, size_t stride, size_t dim, float* out) {
  const char* row = static_cast<const char*>(base);
  const size_t row_bytes = dim * sizeof(typename L::T);
  for (size_t i = 0; i < n; ++i, row += stride) {
    if (i + 1 < n)
      for (size_t off = 0; off < row_bytes; off += 64) _mm_prefetch(row + stride + off, _MM_HINT_T0);
    out[i] = one<L, K>(query, row, dim);
  }
}

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

template <class L>
constexpr void add_row(KernelSet& t, Scalar s) {
  t.one[int(s)][int(Kernel::Dot)] = &one<L, Kernel::Dot>;
  t.one[int(s)][int(Kernel::L2Sq)] = &one<L, Kernel::L2Sq>;
  t.one[int(s)][int(Kernel::Cosine)] = &one<L, Kernel::Cosine>;
  t.many[int(s)][int(Kernel::Dot)] = &many<L, Kernel::Dot>;
  t.many[int(s)][int(Kernel::L2Sq)] = &many<L, Kernel::L2Sq>;
  t.many[int(s)][int(Kernel::Cosine)] = &many<L, Kernel::Cosine>;
}

constexpr KernelSet make_table() {
  KernelSet t{};
  add_row<LoadF32>(t, Scalar::F32);
  add_row<LoadF16>(t, Scalar::F16);
  add_row<LoadI8>(t, Scalar::I8);
  t.to_f16 = &to_f16;
  t.from_f16 = &from_f16;
  return t;
}

constexpr KernelSet kTable = make_table();

}  // namespace

const KernelSet& avx512_kernels() { return kTable; }

}  // namespace lookalike::distance
