// Distance kernels: dot product, squared L2 and cosine similarity for float32,
// float16 and int8 vectors, one-to-one and one-to-many.
//
// Each instruction set has its own translation unit (kernels_scalar.cpp,
// kernels_avx2.cpp, kernels_avx512.cpp) compiled with its own target flags; the
// level is chosen once at run time from CPU detection (dispatch.cpp). Index code
// never sees an intrinsic: it asks for a KernelSet and calls through it.
//
// Kernels return raw quantities (a similarity for dot/cosine, a distance for L2):
// turning them into "smaller is closer" is the index's business, not theirs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lookalike::distance {

// How the components of a stored vector are represented.
enum class Scalar : uint8_t {
  F32 = 0,  // IEEE float32
  F16 = 1,  // IEEE binary16 stored as uint16_t bits
  I8 = 2,   // signed 8-bit integers (scalar quantised; the caller owns the scale)
};
constexpr int kScalarCount = 3;

enum class Kernel : uint8_t {
  Dot = 0,     // sum a[i] * b[i]
  L2Sq = 1,    // sum (a[i] - b[i])^2
  Cosine = 2,  // dot / (|a| |b|); 0 when either norm is 0
};
// int8 kernels sum in int32, so they are exact (before the final conversion to
// float) while dim * 128^2 < 2^31 for dot and cosine, dim * 255^2 < 2^31 for
// l2sq: up to 33,025 components.
constexpr int kKernelCount = 3;

// Instruction-set levels, lowest first. A level is usable when the CPU and OS
// support it and the build compiled it.
enum class Isa : uint8_t { Scalar = 0, Avx2 = 1, Avx512 = 2 };

// a, b: `dim` components each, of the kernel's scalar type. No alignment needed.
using OneToOneFn = float (*)(const void* a, const void* b, size_t dim);

// out[i] = kernel(query, base + i * stride_bytes) for i in [0, n).
using OneToManyFn = void (*)(const void* query, const void* base, size_t n,
                             size_t stride_bytes, size_t dim, float* out);

// Dot products of many float32 points with many float32 vectors at once: the
// inner loop of k-means assignment, a small matrix product. The vectors are
// packed first (pack_panels), kPanelWidth to a panel, component-major, so that
// each register of vector components loaded is multiplied by many points (the
// one-to-many kernels instead stream every vector once per point, and are
// bound by that traffic when the vectors outgrow the cache).
//   out[i * out_stride + p * kPanelWidth + l] = dot(points[i], vector p * kPanelWidth + l)
// for i < n, p < panel_count, l < kPanelWidth; points are rows of dim floats.
// Unlike the other kernels, levels differ in rounding (fused multiply-adds).
using DotPanelsFn = void (*)(const float* points, size_t n, size_t dim, const float* panels,
                             size_t panel_count, float* out, size_t out_stride);
constexpr size_t kPanelWidth = 32;

// Bulk float16 conversion, n components (behind f32_to_f16_n / f16_to_f32_n).
using ToF16Fn = void (*)(const float* in, uint16_t* out, size_t n);
using FromF16Fn = void (*)(const uint16_t* in, float* out, size_t n);

struct KernelSet {
  OneToOneFn one[kScalarCount][kKernelCount];
  OneToManyFn many[kScalarCount][kKernelCount];
  // Part of the table because the fast versions need F16C, which only the ISA
  // translation units are compiled for. Every level gives bit-identical results.
  ToF16Fn to_f16;
  FromF16Fn from_f16;
  DotPanelsFn dot_panels;

  OneToOneFn get(Scalar s, Kernel k) const { return one[int(s)][int(k)]; }
  OneToManyFn get_many(Scalar s, Kernel k) const { return many[int(s)][int(k)]; }
};

// Per-ISA tables, defined in their own translation units. The AVX tables exist
// only on x86-64 builds; dispatch.cpp never hands out a level the CPU lacks.
const KernelSet& scalar_kernels();
#if defined(__x86_64__) || defined(_M_X64)
const KernelSet& avx2_kernels();
const KernelSet& avx512_kernels();
#endif

// The kernels of the active level. Chosen once, on first use, as the best level
// the CPU supports, lowered (never raised) by the environment variable
// LOOKALIKE_SIMD=scalar|avx2|avx512.
const KernelSet& kernels();
// The kernels of one level; throws std::invalid_argument if it is not supported.
const KernelSet& kernels_for(Isa isa);

Isa active_isa();
std::vector<Isa> supported_isas();  // lowest first, always contains Scalar
const char* isa_name(Isa isa);      // "scalar", "avx2", "avx512"
Isa parse_isa(const std::string& name);  // throws std::invalid_argument

// Forces the active level for the lifetime of the object, then restores the
// previous one. For tests that compare every level with the scalar one; not
// meant to be used while other threads search.
class ScopedIsa {
 public:
  explicit ScopedIsa(Isa isa);
  ~ScopedIsa();
  ScopedIsa(const ScopedIsa&) = delete;
  ScopedIsa& operator=(const ScopedIsa&) = delete;

 private:
  Isa previous_;
};

// The n vectors of dim floats at x packed for dot_panels: ceil(n / kPanelWidth)
// panels, panel p holding vectors p * kPanelWidth.. component by component,
// (p * dim + j) * kPanelWidth + l -> component j of vector p * kPanelWidth + l;
// the last panel is padded with zero vectors.
std::vector<float> pack_panels(const float* x, size_t n, size_t dim);

// float16 <-> float32 conversion (round to nearest even), for storage encoders
// and the scalar kernels.
uint16_t f32_to_f16(float x);
float f16_to_f32(uint16_t h);

// Converts n floats at once, with the active level's instructions; same bits
// as the one-at-a-time versions.
void f32_to_f16_n(const float* in, uint16_t* out, size_t n);
void f16_to_f32_n(const uint16_t* in, float* out, size_t n);

}  // namespace lookalike::distance
