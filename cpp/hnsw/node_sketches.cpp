#include "hnsw/node_sketches.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "distance/distance.h"

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

  double sum = 0, norm2 = 0, abs_sum = 0;
  float top = 0;
  for (size_t i = 0; i < padded; ++i) {
    sum += v[i];
    norm2 += double(v[i]) * v[i];
    abs_sum += std::fabs(v[i]);
    top = std::max(top, std::fabs(v[i]));
  }
  q.step = top > 0 ? top / kQueryLevel : 1.0f;
  q.v_sum = float(sum);
  q.inv_sqrt_dim = float(1.0 / std::sqrt(double(padded)));
  q.levels.assign(64 * words_, 0);
  const float inv_step = 1.0f / q.step;
  for (size_t i = 0; i < padded; ++i) q.levels[i] = int16_t(std::lrint(v[i] * inv_step));
  // 2 <b, v> moves by at most a step per set bit (half a step of rounding, and
  // a hair for the float rounding of v_i / step), at most padded_dim of them;
  // the float arithmetic of an estimate's dot (a few roundings of terms no
  // larger than sum |v_i|) by less than 2^-20 sum |v_i|.
  q.dot_error = float((1.01 * q.step * double(padded) + 0x1p-20 * abs_sum) / std::sqrt(double(padded)));

  const float v_norm = float(std::sqrt(norm2));
  q.sum = pq::adc_kernels().masked_sum;
  q.cosine_terms = cosine_terms();
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

}  // namespace lookalike::hnsw
