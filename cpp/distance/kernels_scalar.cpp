// Portable kernels: the fallback where no SIMD level applies, and the reference
// the SIMD levels are tested against. Built without ISA flags.
#include <cmath>
#include <type_traits>

#include "distance/distance.h"

namespace lookalike::distance {
namespace {

// Components are widened before any arithmetic: floats to float, int8 to int32
// so that integer kernels are exact.
float widen(float x) { return x; }
float widen(uint16_t h) { return f16_to_f32(h); }
int32_t widen(int8_t x) { return x; }

template <class T>
using Acc = std::conditional_t<std::is_same_v<T, int8_t>, int32_t, float>;

// The same formula closes the cosine at every level, so that int8 results,
// whose sums are exact, agree bit for bit across levels.
float cosine(double ab, double aa, double bb) {
  return aa == 0 || bb == 0 ? 0.0f : float(ab / std::sqrt(aa * bb));
}

template <Kernel K, class A>
struct Op;

template <class A>
struct Op<Kernel::Dot, A> {
  A s = 0;
  void step(A x, A y) { s += x * y; }
  void merge(const Op& o) { s += o.s; }
  float result() const { return float(s); }
};

template <class A>
struct Op<Kernel::L2Sq, A> {
  A s = 0;
  void step(A x, A y) { s += (x - y) * (x - y); }
  void merge(const Op& o) { s += o.s; }
  float result() const { return float(s); }
};

template <class A>
struct Op<Kernel::Cosine, A> {
  A ab = 0, aa = 0, bb = 0;
  void step(A x, A y) {
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  void merge(const Op& o) {
    ab += o.ab;
    aa += o.aa;
    bb += o.bb;
  }
  float result() const { return cosine(ab, aa, bb); }
};

template <class T, Kernel K>
float one(const void* pa, const void* pb, size_t dim) {
  const T* a = static_cast<const T*>(pa);
  const T* b = static_cast<const T*>(pb);
  // Independent partial sums: float addition is not associative, so without
  // them the compiler could neither vectorise nor overlap the adds.
  constexpr size_t kLanes = 8;
  Op<K, Acc<T>> lane[kLanes]{};
  size_t i = 0;
  for (; i + kLanes <= dim; i += kLanes)
    for (size_t j = 0; j < kLanes; ++j) lane[j].step(widen(a[i + j]), widen(b[i + j]));
  for (; i < dim; ++i) lane[0].step(widen(a[i]), widen(b[i]));
  for (size_t j = 1; j < kLanes; ++j) lane[0].merge(lane[j]);
  return lane[0].result();
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
  for (size_t i = 0; i < n; ++i) out[i] = f16_to_f32(in[i]);
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
  return t;
}

// Constant-initialised: no guard on the lookup path.
constexpr KernelSet kTable = make_table();

}  // namespace

const KernelSet& scalar_kernels() { return kTable; }

}  // namespace lookalike::distance
