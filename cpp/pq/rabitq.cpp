#include "pq/rabitq.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "distance/distance.h"
#include "pq/adc_kernels.h"

namespace lookalike::pq {

namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// In place, unnormalised: the caller scales once for all rounds. The first
// three levels run within each group of 8 (unrolled by the compiler: the
// generic loop's short inner runs do not vectorise); every butterfly is the
// same a + b, a - b on the same pair, so the result is the same either way.
void walsh_hadamard(float* x, size_t n) {
  size_t first = 1;
  if (n >= 8) {
    for (size_t i = 0; i < n; i += 8) {
      float* y = x + i;
      for (size_t h = 1; h < 8; h *= 2)
        for (size_t k = 0; k < 8; k += 2 * h)
          for (size_t j = k; j < k + h; ++j) {
            const float a = y[j], b = y[j + h];
            y[j] = a + b;
            y[j + h] = a - b;
          }
    }
    first = 8;
  }
  for (size_t h = first; h < n; h *= 2)
    for (size_t i = 0; i < n; i += 2 * h)
      for (size_t j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
}

}  // namespace

size_t rabitq_padded_dim(size_t dim) {
  size_t p = 4;  // at least one 4-dimension group
  while (p < dim) p *= 2;
  return p;
}

HadamardRotation::HadamardRotation(size_t dim, uint64_t seed) : dim_(dim), padded_(rabitq_padded_dim(dim)) {
  signs_.resize(kRotationRounds * padded_);
  uint64_t state = seed ^ 0x5241424954510000ull;  // "RABITQ"
  for (size_t i = 0; i < signs_.size(); i += 64) {
    const uint64_t bits = splitmix64(state);
    for (size_t j = 0; j < 64 && i + j < signs_.size(); ++j) signs_[i + j] = (bits >> j) & 1 ? 1 : -1;
  }
}

HadamardRotation::HadamardRotation(size_t dim, std::vector<int8_t> signs)
    : dim_(dim), padded_(rabitq_padded_dim(dim)), signs_(std::move(signs)) {
  if (signs_.size() != kRotationRounds * padded_)
    throw std::invalid_argument("a rotation of " + std::to_string(dim) + " dimensions needs " +
                                std::to_string(kRotationRounds * padded_) + " signs, got " +
                                std::to_string(signs_.size()));
  for (int8_t s : signs_)
    if (s != 1 && s != -1) throw std::invalid_argument("rotation signs must be +1 or -1");
}

void HadamardRotation::apply(const float* x, float* out) const {
  for (size_t i = 0; i < dim_; ++i) out[i] = x[i];
  for (size_t i = dim_; i < padded_; ++i) out[i] = 0;
  for (size_t r = 0; r < kRotationRounds; ++r) {
    const int8_t* s = signs_.data() + r * padded_;
    for (size_t i = 0; i < padded_; ++i) out[i] *= float(s[i]);
    walsh_hadamard(out, padded_);
  }
  // Each unnormalised transform scales by sqrt(padded); undo all rounds at once.
  const float scale = float(std::pow(double(padded_), -0.5 * double(kRotationRounds)));
  for (size_t i = 0; i < padded_; ++i) out[i] *= scale;
}

void rabitq_encode(const float* residual, size_t padded_dim, uint8_t* group_codes, uint16_t& norm,
                   uint8_t& cosine) {
  double norm2 = 0, abs_sum = 0;
  for (size_t i = 0; i < padded_dim; ++i) {
    norm2 += double(residual[i]) * residual[i];
    abs_sum += std::fabs(double(residual[i]));
  }
  for (size_t g = 0; g < rabitq_groups(padded_dim); ++g) {
    uint8_t code = 0;
    for (size_t j = 0; j < 4; ++j) code = uint8_t(code | (residual[4 * g + j] > 0 ? 1u << j : 0u));
    group_codes[g] = code;
  }
  norm = distance::f32_to_f16(float(std::sqrt(norm2)));
  if (!std::isfinite(distance::f16_to_f32(norm)))
    throw std::invalid_argument("a residual norm of " + std::to_string(std::sqrt(norm2)) +
                                " is past float16's range (65504), where RaBitQ keeps it: scale the vectors down");
  // <x, o> = sum |o_i| / sqrt(D); a zero residual has no direction, and its
  // estimate is multiplied by its zero norm whatever the cosine.
  const double c = norm2 > 0 ? abs_sum / std::sqrt(norm2 * double(padded_dim)) : 1.0;
  cosine = uint8_t(std::clamp(std::lround(c * kCosineScale), 1l, long(kCosineScale)));
}

void RabitqQueryTables::build(const float* v, size_t padded_dim) {
  const size_t groups = rabitq_groups(padded_dim);
  qlut.resize(groups * 16);
  // Each group's smallest entry is the sum of its negative components, its
  // range the sum of their magnitudes; one step for all groups, as in
  // quantize_lut (fast_scan.h).
  // (In passes the compiler vectorises: a branch on each component's sign
  // would be mispredicted half the time.)
  negative_.resize(padded_dim);
  magnitude_.resize(padded_dim);
  for (size_t i = 0; i < padded_dim; ++i) {
    negative_[i] = v[i] < 0 ? v[i] : 0.0f;
    magnitude_[i] = std::fabs(v[i]);
  }
  low_.resize(groups);
  float widest = 0;
  quantized.bias = 0;
  for (size_t g = 0; g < groups; ++g) {
    const float* n = negative_.data() + 4 * g;
    const float* a = magnitude_.data() + 4 * g;
    low_[g] = n[0] + n[1] + n[2] + n[3];
    quantized.bias += low_[g];
    widest = std::max(widest, a[0] + a[1] + a[2] + a[3]);
  }
  quantized.scale = widest > 0 ? widest / 255.0f : 1.0f;
  adc_kernels().rabitq_tables(v, low_.data(), groups, 1.0f / quantized.scale, qlut.data());
  double sum = 0, norm2 = 0;
  for (size_t i = 0; i < padded_dim; ++i) {
    sum += v[i];
    norm2 += double(v[i]) * v[i];
  }
  v_sum = float(sum);
  v_norm = float(std::sqrt(norm2));
  inv_sqrt_dim = float(1.0 / std::sqrt(double(padded_dim)));
  inv_sqrt_dim1 = float(1.0 / std::sqrt(double(padded_dim - 1)));
}

void rabitq_estimate(const RabitqQueryTables& t, const RabitqWeights& w, const uint16_t* sums, const float* norms,
                     const uint8_t* cosines, size_t n, float* est, float* err) {
  const size_t groups = t.qlut.size() / 16;
  RabitqScanConstants k;
  // <x, v> = (2 <b, v> - sum v) / sqrt(D), and <b, v> = bias + scale * sum, to
  // within half a step a group.
  k.dot_scale = 2 * t.inv_sqrt_dim * t.quantized.scale;
  k.dot_offset = (2 * t.quantized.bias - t.v_sum) * t.inv_sqrt_dim;
  k.table_error = t.inv_sqrt_dim * t.quantized.scale * float(groups);
  k.spread = w.sigmas * t.v_norm * t.inv_sqrt_dim1;
  k.offset = w.offset;
  k.square_weight = w.square_weight;
  k.linear_weight = w.linear_weight;
  adc_kernels().rabitq_estimate(k, sums, norms, cosines, n, est, err);
}

}  // namespace lookalike::pq
