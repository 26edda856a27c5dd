// The kernel code shared by the SIMD translation units (kernels_avx2.cpp,
// kernels_avx512.cpp): accumulators, the one-to-one and one-to-many loops and
// the table that collects them, written once over a "loader" type L. Private to
// cpp/distance; nothing else may include it.
//
// Included by each SIMD translation unit INSIDE its anonymous namespace (itself
// inside lookalike::distance), after it has defined:
//   - its loader structs LoadF32, LoadF16, LoadI8, each with
//       T               the stored component type (float, uint16_t, int8_t),
//       V               the register type the kernel computes in,
//       W               how many components one register holds,
//       load(p)         W components at p, widened into a V,
//       load_first(p, r) the first r < W components at p, the other lanes zero
//                       (zeros are neutral for every kernel);
//   - the arithmetic overloads mul_acc, sub, add and hsum for its register types;
//   - for dot_panels: LoadF32::splat(x) (x in every lane), LoadF32::store(p, v)
//     and LoadF32::kTileRows, the points one tile multiplies at once (its
//     accumulators, kTileRows * kPanelWidth / W registers, must fit the register
//     file with room for one panel row and a broadcast);
//   - to_f16 and from_f16, its bulk float16 conversions.
// It includes nothing itself (a standard header pulled in inside a namespace
// would be broken): the TU must already have included <immintrin.h> (for
// _mm_prefetch), <cmath> and distance/distance.h, at file scope.
//
// Why textual inclusion into an anonymous namespace, rather than ordinary
// templates in a shared header: everything here is compiled with the including
// TU's ISA flags, and must stay that TU's own. Templates and inline functions
// at namespace scope have external linkage; each TU that instantiates one emits
// a weak (COMDAT) copy, and the linker keeps ONE of them for the whole program.
// If, say, one<LoadF32, Kernel::Dot> or cosine() lived in lookalike::distance,
// the AVX2 table could end up pointing at the copy compiled with -mavx512f, and
// the program would die of SIGILL on a CPU without AVX-512 (or the scalar
// fallback pick up AVX2 code). Inside an anonymous namespace every instantiation
// has internal linkage: each TU keeps its own, built with its own flags.
//
// #pragma once is per TU, and each TU includes this file exactly once.
#pragma once

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

// One tile of dot_panels: R points (rows `dim` floats apart) times one panel,
// the R x kPanelWidth sums held in registers for the whole pass over dim.
template <size_t R>
void dot_panel_tile(const float* points, size_t dim, const float* panel, float* out, size_t out_stride) {
  using L = LoadF32;
  constexpr size_t G = kPanelWidth / L::W;  // registers per panel row
  typename L::V acc[R][G] = {};
  for (size_t j = 0; j < dim; ++j, panel += kPanelWidth) {
    typename L::V row[G];
    for (size_t g = 0; g < G; ++g) row[g] = L::load(panel + g * L::W);
    for (size_t r = 0; r < R; ++r) {
      const typename L::V x = L::splat(points[r * dim + j]);
      for (size_t g = 0; g < G; ++g) acc[r][g] = mul_acc(acc[r][g], x, row[g]);
    }
  }
  for (size_t r = 0; r < R; ++r)
    for (size_t g = 0; g < G; ++g) L::store(out + r * out_stride + g * L::W, acc[r][g]);
}

// The last rows % kTileRows points of a panel, in one tile of their number.
template <size_t R>
void dot_panel_rest(size_t rows, const float* points, size_t dim, const float* panel, float* out,
                    size_t out_stride) {
  if constexpr (R > 0) {
    if (rows == R) return dot_panel_tile<R>(points, dim, panel, out, out_stride);
    dot_panel_rest<R - 1>(rows, points, dim, panel, out, out_stride);
  }
}

// Panel by panel, so that one panel (dim * kPanelWidth floats) stays in the
// cache while every point passes it; callers keep n small enough for the points
// to stay there too.
void dot_panels(const float* points, size_t n, size_t dim, const float* panels, size_t panel_count, float* out,
                size_t out_stride) {
  constexpr size_t R = LoadF32::kTileRows;
  for (size_t p = 0; p < panel_count; ++p) {
    const float* panel = panels + p * dim * kPanelWidth;
    float* column = out + p * kPanelWidth;
    size_t i = 0;
    for (; i + R <= n; i += R) dot_panel_tile<R>(points + i * dim, dim, panel, column + i * out_stride, out_stride);
    dot_panel_rest<R - 1>(n - i, points + i * dim, dim, panel, column + i * out_stride, out_stride);
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
  t.dot_panels = &dot_panels;
  return t;
}
