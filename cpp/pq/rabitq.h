// RaBitQ codes (Gao & Long, SIGMOD 2024): one bit a dimension of a vector's
// normalised residual after a random rotation, two factors a vector, and an
// unbiased estimate of its distance to a query with an error bound.
//
// The rotation is structured (HadamardRotation): kRotationRounds rounds of
// random sign flips, each followed by a normalised fast Walsh-Hadamard
// transform, on the vector zero-padded to a power of two D. O(D log D) a
// vector instead of D^2 for a dense random orthogonal matrix, and orthogonal,
// so distances in the rotated space are the original ones.
//
// Encoding a rotated residual r (the vector minus its cell's centroid, both
// rotated): o = r / |r|, bit i = (o_i > 0), and the code's unit vector
// x = (2 b - 1) / sqrt(D). The factors are norm = |r| (as float16) and
// cosine = <x, o> (>= 1 / sqrt(D), ~0.8 in practice, as 8-bit fixed point):
// 3 bytes a vector. Their rounding moves an estimate by a known amount at most,
// which the bound adds. The cosine's step, 1/255, moves <o, v> by ~0.25% of
// itself at most: ~2% of the bound's width at 512 dimensions, where a 16-bit
// cosine cost a byte a vector more (1.25% of an 80-byte budget).
//
// Estimating <o, v> for a query-side vector v (the rotated query minus the
// centroid under l2 / cosine, the rotated query itself under ip):
//   <o, v> ~= <x, v> / cosine
// is unbiased over the random rotation, and its error is ~normal with standard
// deviation at most |v| sqrt(1 - cosine^2) / (cosine sqrt(D - 1)); the bound
// below is `sigmas` of those, so that a share of about 2 exp(-sigmas^2 / 2) of
// estimates fall outside it (the paper's Theorem 3.2 with its eps0 = sigmas).
//
// <x, v> comes from the 4-bit fast-scan (fast_scan.h): the D bits are D / 4
// groups of 4, each group a 4-bit code whose 16-entry table holds the sums of
// v over the subsets of the group's 4 dimensions, quantised to uint8. The
// rounding of those tables moves the sum by at most half a step a group; that
// worst case is added to the bound, so the bound covers the tables exactly.
// The tables' step is one for all groups (the widest group's range / 255).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pq/fast_scan.h"

namespace lookalike::pq {

constexpr size_t kRotationRounds = 3;

class HadamardRotation {
 public:
  HadamardRotation() = default;
  // Signs drawn from `seed` (splitmix64, the same on every platform).
  HadamardRotation(size_t dim, uint64_t seed);
  // Signs loaded from a file: kRotationRounds * padded_dim values of +-1.
  HadamardRotation(size_t dim, std::vector<int8_t> signs);

  size_t dim() const { return dim_; }
  size_t padded_dim() const { return padded_; }
  const std::vector<int8_t>& signs() const { return signs_; }
  // out (padded_dim floats) = the rotation of x (dim floats).
  void apply(const float* x, float* out) const;

 private:
  size_t dim_ = 0, padded_ = 0;
  std::vector<int8_t> signs_;
};

// The power of two (at least 4) that dim is padded to.
size_t rabitq_padded_dim(size_t dim);
// The number of 4-dimension groups (fast-scan sub-spaces) of a padded dimension.
inline size_t rabitq_groups(size_t padded_dim) { return padded_dim / 4; }

// 8-bit fixed point of the cosine factor, in (0, 1].
constexpr float kCosineScale = 255.0f;
inline float decode_cosine(uint8_t c) { return float(c) / kCosineScale; }

// The code of one rotated residual (padded_dim floats): rabitq_groups() 4-bit
// group codes (bit j of group g is dimension 4 g + j), its norm (float16 bits)
// and cosine. Throws std::invalid_argument when the norm exceeds float16's range.
void rabitq_encode(const float* residual, size_t padded_dim, uint8_t* group_codes, uint16_t& norm,
                   uint8_t& cosine);

// The per-vector distance estimate and bound under one query-side vector v:
//   distance ~= offset + square_weight * norm^2 - linear_weight * norm * <o, v>
// (l2: |v|^2, 1, 2; cosine, whose distances are -<q, x>: |v|^2 / 2 - 1, 1/2, 1;
// ip: -<q, c>, 0, 1).
struct RabitqQueryTables {
  // groups * 16 sums of v over each group's subsets, quantised for fast-scan
  // (adc_kernels.h rabitq_tables, at the active SIMD level): <b, v> ~= bias + scale * sum.
  std::vector<uint8_t> qlut;
  QuantizedLut quantized;
  float v_sum = 0, v_norm = 0;
  float inv_sqrt_dim = 0, inv_sqrt_dim1 = 0;

  void build(const float* v, size_t padded_dim);

 private:
  std::vector<float> negative_, magnitude_;  // min(v_i, 0) and |v_i|
  std::vector<float> low_;                   // each group's smallest entry
};

struct RabitqWeights {
  float offset = 0, square_weight = 0, linear_weight = 0;
  float sigmas = 0;  // width of the bound in standard deviations
};

// est[i], err[i] for n vectors of a list: sums[i] from the fast-scan of their
// codes under tables.qlut, norms (decoded from float16) / cosines their
// factors. The true distance
// lies in [est - err, est + err] but for a share of about 2 exp(-sigmas^2 / 2).
void rabitq_estimate(const RabitqQueryTables& tables, const RabitqWeights& w, const uint16_t* sums,
                     const float* norms, const uint8_t* cosines, size_t n, float* est, float* err);

}  // namespace lookalike::pq
