// Portable kernels: the fallback where no SIMD level applies, and the reference
// the SIMD levels are tested against. Also the one-at-a-time float16
// conversions, which the float16 kernels here inline. Built without ISA flags.
#include <bit>
#include <cmath>
#include <type_traits>

#include "distance/distance.h"

namespace lookalike::distance {
namespace {

// f16_to_f32, under a name the kernels can inline: in a shared library the
// exported one may be interposed, so the compiler has to call it through the
// PLT. Selects rather than branches, so that loops over it can vectorise.
float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t em = h & 0x7fff;  // exponent and mantissa
  const uint32_t normal = (em << 13) + (112u << 23);  // rebias the exponent
  // Infinity, or NaN made quiet as F16C does.
  const uint32_t special = (em << 13) | 0x7f800000 | ((em & 0x3ff) ? 0x400000 : 0);
  const uint32_t subnormal = std::bit_cast<uint32_t>(float(int32_t(em)) * 0x1p-24f);  // exact
  return std::bit_cast<float>(sign | (em >= 0x7c00 ? special : em >= 0x400 ? normal : subnormal));
}

// Components are widened before any arithmetic: floats to float, int8 to int32
// so that integer kernels are exact.
float widen(float x) { return x; }
float widen(uint16_t h) { return half_to_float(h); }
int32_t widen(int8_t x) { return x; }

template <class T>
using Acc = std::conditional_t<std::is_same_v<T, int8_t>, int32_t, float>;

struct Product {
  template <class A>
  A operator()(A x, A y) const { return x * y; }
};

struct SquaredDifference {
  template <class A>
  A operator()(A x, A y) const { return (x - y) * (x - y); }
};

// The sum of term(a[i], b[i]). Independent partial sums: float addition is not
// associative, so without them the compiler could neither vectorise nor
// overlap the adds.
template <class T, class Term>
Acc<T> sum(const T* a, const T* b, size_t dim, Term term) {
  constexpr size_t kLanes = 8;
  Acc<T> lane[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= dim; i += kLanes)
    for (size_t j = 0; j < kLanes; ++j) lane[j] += term(widen(a[i + j]), widen(b[i + j]));
  for (; i < dim; ++i) lane[0] += term(widen(a[i]), widen(b[i]));
  Acc<T> total = 0;
  for (Acc<T> v : lane) total += v;
  return total;
}

// The same formula closes the cosine at every level, so that int8 results,
// whose sums are exact, agree bit for bit across levels.
float cosine(double ab, double aa, double bb) {
  return aa == 0 || bb == 0 ? 0.0f : float(ab / std::sqrt(aa * bb));
}

template <class T, Kernel K>
float one(const void* pa, const void* pb, size_t dim) {
  const T* a = static_cast<const T*>(pa);
  const T* b = static_cast<const T*>(pb);
  if constexpr (K == Kernel::Dot)
    return float(sum(a, b, dim, Product{}));
  else if constexpr (K == Kernel::L2Sq)
    return float(sum(a, b, dim, SquaredDifference{}));
  else  // three passes: the reference prefers the plain definition to speed
    return cosine(sum(a, b, dim, Product{}), sum(a, a, dim, Product{}), sum(b, b, dim, Product{}));
}

template <class T, Kernel K>
void many(const void* query, const void* base, size_t n, size_t stride, size_t dim, float* out) {
  const char* row = static_cast<const char*>(base);
  for (size_t i = 0; i < n; ++i, row += stride) out[i] = one<T, K>(query, row, dim);
}

void to_f16(const float* in, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = f32_to_f16(in[i]);
}

void from_f16(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = half_to_float(in[i]);
}

// The reference: each sum in component order, one point at a time.
void dot_panels(const float* points, size_t n, size_t dim, const float* panels, size_t panel_count, float* out,
                size_t out_stride) {
  for (size_t p = 0; p < panel_count; ++p) {
    const float* panel = panels + p * dim * kPanelWidth;
    for (size_t i = 0; i < n; ++i) {
      float acc[kPanelWidth] = {};
      for (size_t j = 0; j < dim; ++j)
        for (size_t l = 0; l < kPanelWidth; ++l) acc[l] += points[i * dim + j] * panel[j * kPanelWidth + l];
      for (size_t l = 0; l < kPanelWidth; ++l) out[i * out_stride + p * kPanelWidth + l] = acc[l];
    }
  }
}

template <class T>
constexpr void add_row(KernelSet& t, Scalar s) {
  t.one[int(s)][int(Kernel::Dot)] = &one<T, Kernel::Dot>;
  t.one[int(s)][int(Kernel::L2Sq)] = &one<T, Kernel::L2Sq>;
  t.one[int(s)][int(Kernel::Cosine)] = &one<T, Kernel::Cosine>;
  t.many[int(s)][int(Kernel::Dot)] = &many<T, Kernel::Dot>;
  t.many[int(s)][int(Kernel::L2Sq)] = &many<T, Kernel::L2Sq>;
  t.many[int(s)][int(Kernel::Cosine)] = &many<T, Kernel::Cosine>;
}

constexpr KernelSet make_table() {
  KernelSet t{};
  add_row<float>(t, Scalar::F32);
  add_row<uint16_t>(t, Scalar::F16);
  add_row<int8_t>(t, Scalar::I8);
  t.to_f16 = &to_f16;
  t.from_f16 = &from_f16;
  t.dot_panels = &dot_panels;
  return t;
}

// Constant-initialised: no guard on the lookup path.
constexpr KernelSet kTable = make_table();

}  // namespace

const KernelSet& scalar_kernels() { return kTable; }

// --- float16 -------------------------------------------------------------------
// Bit-level conversions matching F16C (vcvtps2ph with round-to-nearest-even,
// vcvtph2ps), so the scalar level stores exactly what the SIMD levels store.
uint16_t f32_to_f16(float x) {
  const uint32_t f = std::bit_cast<uint32_t>(x);
  const uint16_t sign = uint16_t((f >> 16) & 0x8000);
  const uint32_t abs = f & 0x7fffffff;
  if (abs >= 0x7f800000)  // inf, or NaN: quiet it and keep the top of the payload
    return sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 | ((abs >> 13) & 0x3ff) : 0);
  if (abs >= 0x477ff000) return sign | 0x7c00;  // >= 65520 rounds past 65504
  const uint32_t exp = abs >> 23;
  uint32_t mant = abs & 0x7fffff;
  uint32_t h, shift;
  if (exp >= 113) {  // normal half: rebias the exponent, drop 13 mantissa bits
    h = ((exp - 112) << 10) | (mant >> 13);
    shift = 13;
  } else {  // subnormal half (or zero): the value in units of 2^-24
    shift = 126 - exp;
    if (shift > 24) return sign;  // below 2^-25: rounds to zero
    mant |= 0x800000;
    h = mant >> shift;
  }
  const uint32_t rest = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
  // A carry out of the mantissa correctly bumps the exponent.
  if (rest > half || (rest == half && (h & 1))) ++h;
  return uint16_t(sign | h);
}

float f16_to_f32(uint16_t h) { return half_to_float(h); }

}  // namespace lookalike::distance
