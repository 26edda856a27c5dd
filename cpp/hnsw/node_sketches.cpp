#include "hnsw/node_sketches.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "distance/distance.h"
#include "pq/rabitq_estimate_kernel.h"

namespace lookalike::hnsw {

namespace {
// The rotation is drawn from a fixed seed: a file then needs to keep only the centre.
constexpr uint64_t kRotationSeed = 0x534B45544348ull;  // "SKETCH"

// rabitq_cosine_terms of every cosine code: a division and a square root
// fewer per estimate.
const pq::CosineTerms* cosine_terms() {
  static const std::array<pq::CosineTerms, 256> table = [] {
    std::array<pq::CosineTerms, 256> t{};
    for (size_t c = 0; c < t.size(); ++c) t[c] = pq::rabitq_cosine_terms(uint8_t(c));
    return t;
  }();
  return table.data();
}
}  // namespace

NodeSketches::NodeSketches(size_t dim, Metric metric)
    : dim_(dim),
      metric_(metric),
      rotation_(dim, kRotationSeed),
      words_((rotation_.padded_dim() + 63) / 64),
      bits_(std::make_unique<BlockArray>(words_ * sizeof(uint64_t), /*huge_pages=*/true)),
      factors_(std::make_unique<BlockArray>(sizeof(Factors), /*huge_pages=*/true)) {}

void NodeSketches::set_centre(const float* centre) {
  centre_.assign(centre, centre + dim_);
  rotated_centre_.resize(rotation_.padded_dim());
  rotation_.apply(centre_.data(), rotated_centre_.data());
}

void NodeSketches::set_centre_to_mean(const float* vectors, size_t n) {
  std::vector<double> sum(dim_, 0.0);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < dim_; ++j) sum[j] += vectors[i * dim_ + j];
  std::vector<float> mean(dim_, 0.0f);
  if (n > 0)
    for (size_t j = 0; j < dim_; ++j) mean[j] = float(sum[j] / double(n));
  set_centre(mean.data());
}

void NodeSketches::encode(uint32_t slot, const float* vector) {
  const size_t padded = rotation_.padded_dim();
  thread_local std::vector<float> rotated;
  thread_local std::vector<uint8_t> groups;
  rotated.resize(padded);
  groups.resize(pq::rabitq_groups(padded));
  rotation_.apply(vector, rotated.data());
  for (size_t i = 0; i < padded; ++i) rotated[i] -= rotated_centre_[i];
  Factors f{};
  uint16_t norm = 0;
  pq::rabitq_encode(rotated.data(), padded, groups.data(), norm, f.cosine);
  f.norm = distance::f16_to_f32(norm);
  auto* words = reinterpret_cast<uint64_t*>(bits_->at(slot));
  std::fill(words, words + words_, 0);
  for (size_t g = 0; g < groups.size(); ++g) words[g / 16] |= uint64_t(groups[g]) << (4 * (g % 16));
  std::memcpy(factors_->at(slot), &f, sizeof(f));
}

void NodeSketches::copy_slot(const NodeSketches& from, uint32_t from_slot, uint32_t to_slot) {
  std::memcpy(bits_->at(to_slot), from.bits_->at(from_slot), bits_->block_bytes());
  std::memcpy(factors_->at(to_slot), from.factors_->at(from_slot), factors_->block_bytes());
}

void NodeSketches::prepare(const float* query, float sigmas, Query& q) const {
  const size_t padded = rotation_.padded_dim();
  q.rotated.resize(padded);
  rotation_.apply(query, q.rotated.data());
  // <q, c> (ip, cosine) before v is formed: the rotation keeps inner products.
  double qc = 0;
  for (size_t i = 0; i < padded; ++i) qc += double(q.rotated[i]) * rotated_centre_[i];
  if (metric_ == Metric::L2)
    for (size_t i = 0; i < padded; ++i) q.rotated[i] -= rotated_centre_[i];
  const float* v = q.rotated.data();

  double sum = 0, norm2 = 0;
  float low = v[0], high = v[0];
  for (size_t i = 0; i < padded; ++i) {
    sum += v[i];
    norm2 += double(v[i]) * v[i];
    low = std::min(low, v[i]);
    high = std::max(high, v[i]);
  }
  constexpr float kLevels = float((1u << kQueryBits) - 1);
  q.low = low;
  q.step = high > low ? (high - low) / kLevels : 1.0f;
  q.v_sum = float(sum);
  q.inv_sqrt_dim = float(1.0 / std::sqrt(double(padded)));
  // Levels first (round to nearest: v - low >= 0), then the planes without branches.
  q.levels.resize(padded);
  const float inv_step = 1.0f / q.step;
  for (size_t i = 0; i < padded; ++i) {
    const float level = (v[i] - low) * inv_step + 0.5f;
    q.levels[i] = uint8_t(std::min(level, kLevels));
  }
  q.planes.assign(kQueryBits * words_, 0);
  for (size_t w = 0; w < words_; ++w) {
    const uint8_t* run = q.levels.data() + 64 * w;
    const size_t n = std::min<size_t>(64, padded - 64 * w);
    for (size_t p = 0; p < kQueryBits; ++p) {
      uint64_t word = 0;
      for (size_t i = 0; i < n; ++i) word |= uint64_t((run[i] >> p) & 1) << i;
      q.planes[p * words_ + w] = word;
    }
  }

  const float v_norm = float(std::sqrt(norm2));
  q.dot = pq::adc_kernels().bitplane_dot;
  q.k = {};
  q.k.spread = std::isinf(sigmas) ? std::numeric_limits<float>::infinity()
                                  : sigmas * v_norm * float(1.0 / std::sqrt(double(padded - 1)));
  switch (metric_) {
    case Metric::L2:
      q.k.offset = v_norm * v_norm;
      q.k.square_weight = 1;
      q.k.linear_weight = 2;
      break;
    case Metric::InnerProduct:
      q.k.offset = -float(qc);
      q.k.linear_weight = 1;
      break;
    case Metric::Cosine:
      q.k.offset = 1.0f - float(qc);
      q.k.linear_weight = 1;
      break;
  }
}

void NodeSketches::estimate(const Query& q, uint32_t slot, float& est, float& err) const {
  uint32_t ones = 0;
  const uint32_t weighted = q.dot(reinterpret_cast<const uint64_t*>(bits_->at(slot)), q.planes.data(), words_,
                                 kQueryBits, &ones);
  // <b, v> ~= low ones + step weighted, within step / 2 a set bit (plus a hair
  // for the float rounding of the quantisation itself);
  // <x, v> = (2 <b, v> - sum v) / sqrt(D).
  const float bv = q.low * float(ones) + q.step * float(weighted);
  const float dot = (2 * bv - q.v_sum) * q.inv_sqrt_dim;
  const float dot_error = q.step * 1.001f * float(ones) * q.inv_sqrt_dim;
  Factors f;
  std::memcpy(&f, factors_->at(slot), sizeof(f));
  pq::rabitq_estimate_one(q.k, dot, dot_error, f.norm, cosine_terms()[f.cosine], est, err);
}

}  // namespace lookalike::hnsw
