// Extended RaBitQ (Gao et al., SIGMOD 2025, "Practical and Asymptotically
// Optimal Quantization of High-Dimensional Vectors in Multi-Bit"): B = 1 +
// ex_bits bits a dimension of a rotated residual's direction, a finer code
// than rabitq.h's sign bits, with an estimator of the same form and a bound
// several times narrower.
//
// Encoding a rotated residual r (o = r / |r|): each dimension takes the grid
// value y_i = sign(o_i) (u_i + 1/2), u_i in [0, 2^ex_bits), u_i = min(floor(t |o_i|),
// 2^ex_bits - 1) for the rescaling factor t that maximises the cosine
// <y, o> / |y| (the paper's search: t only matters where some t |o_i| crosses
// an integer, so those critical values are visited in order, each moving one
// u_i up by one and the cosine's numerator and |y|^2 by known amounts). Its
// sign is the 1-bit code's bit (o_i > 0), so y_i = c_i - (2^B - 1) / 2 for the
// unsigned B-bit code c_i whose top bit is that sign bit.
//
// Estimating <o, v> for a query-side vector v (as in rabitq.h):
//   <o, v> ~= <y, v> / (|y| cosine),  cosine = <y, o> / |y|
// unbiased over the random rotation, its error ~normal with standard
// deviation at most |v| sqrt(1 - cosine^2) / (cosine sqrt(D - 1)), the 1-bit
// code's formula with a cosine much nearer 1 (~0.8 at one bit, 0.982 at 3,
// 0.998 at 5, at D = 512): the bound, `sigmas` of those, is ~4x narrower at
// B = 3 and ~14x at B = 5 (sqrt(1 - cosine^2) / cosine).
//
// The codes live in a file beside the vectors file (ivf_pq.h), a row a slot:
//   float32 norm |r|, float32 1 / cosine, float32 1 / |y|, then B bit planes
//   of ceil(D / 8) bytes (plane p holds bit p of every c_i, dimension i at bit
//   i % 8 of byte i / 8; plane ex_bits is the sign).
// The factors are kept in float32: 12 bytes a row on disk, against the 3-byte
// RAM factors of the 1-bit code whose rounding the 1-bit bound has to carry.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lookalike::pq {

constexpr size_t kMaxExBits = 7;

inline size_t rabitq_ex_plane_bytes(size_t padded_dim) { return (padded_dim + 7) / 8; }
inline size_t rabitq_ex_row_bytes(size_t padded_dim, size_t ex_bits) {
  return 3 * sizeof(float) + (ex_bits + 1) * rabitq_ex_plane_bytes(padded_dim);
}

// The row (rabitq_ex_row_bytes) of one rotated residual of padded_dim floats.
void rabitq_ex_encode(const float* residual, size_t padded_dim, size_t ex_bits, uint8_t* row);

struct RabitqExFactors {
  float norm, inv_cosine, inv_code_norm;
};
RabitqExFactors rabitq_ex_factors(const uint8_t* row);

// The estimate and bound of one row under one query-side vector v, with the
// weights of rabitq.h's RabitqWeights:
//   distance ~= offset + square_weight * norm^2 - linear_weight * norm * <o, v>.
struct RabitqExQuery {
  const float* v = nullptr;  // padded_dim floats
  size_t padded_dim = 0, ex_bits = 0;
  float v_norm = 0;
  float offset = 0, square_weight = 0, linear_weight = 0, sigmas = 0;
};
// est, err of a row: the true distance lies in [est - err, est + err] but for
// a share of about 2 exp(-sigmas^2 / 2). The bound adds the float rounding of
// <y, v> (at most D 2^-22 |y| |v|), so a code that happens to equal its
// residual's direction (cosine 1) still gets a bound that holds.
void rabitq_ex_estimate(const RabitqExQuery& q, const uint8_t* row, float& est, float& err);

}  // namespace lookalike::pq
