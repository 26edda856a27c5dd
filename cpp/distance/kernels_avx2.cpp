// AVX2 + FMA kernels, with F16C to widen float16. Compiled with
// -mavx2 -mfma -mf16c; dispatch.cpp hands this table out only on CPUs with all
// three. Everything here is in an anonymous namespace so that no function
// compiled with these flags can be picked by the linker for another TU.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "distance/distance.h"

namespace lookalike::distance {
namespace {

// A loader turns W stored components into one register of the type the kernel
// computes in: 8 floats for f32/f16, 16 int16 for int8 (whose products are
// summed exactly in int32 lanes by madd).
struct LoadF32 {
  using T = float;
  using V = __m256;
  static constexpr size_t W = 8;
  static __m256 load(const T* p) { return _mm256_loadu_ps(p); }
};

struct LoadF16 {
  using T = uint16_t;
  using V = __m256;
  static constexpr size_t W = 8;
  static __m256 load(const T* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
};

struct LoadI8 {
  using T = int8_t;
  using V = __m256i;
  static constexpr size_t W = 16;
  static __m256i load(const T* p) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
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
  if (i < dim) {
    // AVX2 has no masked load for 8/16-bit lanes: widen the tail from a
    // zero-padded copy, zeros being neutral for every kernel.
    T ta[W] = {}, tb[W] = {};
    std::memcpy(ta, a + i, (dim - i) * sizeof(T));
    std::memcpy(tb, b + i, (dim - i) * sizeof(T));
    acc[1].step(L::load(ta), L::load(tb));
  }
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

const KernelSet& avx2_kernels() { return kTable; }

}  // namespace lookalike::distance
