// A compact sketch of every node's vector, by slot: its 1-bit RaBitQ code
// (pq/rabitq.h) around one centre fixed for the index's life, so that a
// filtered search can estimate a distance, with an error bound, from one cache
// line instead of reading the full vector (1 KB at 512-d float16).
//
// What a slot holds: the code's bits packed into uint64 words (bit i of the
// rotated residual at bit i % 64 of word i / 64: 64 bytes, one cache line, at
// 512-d) in one array, and its factors (norm as float16, cosine as 8-bit fixed
// point) in another (8 bytes: the norm kept decoded): 72 bytes a vector at
// 512-d, against 1,168 for the level-0 block of a float16 index. Both arrays
// sit on huge pages where the system allows: a scan reads them at random
// across their whole length.
//
// The sketch is of the vector as the graph's codec stores it (decoded), so the
// estimate bounds the distance the codec computes, the one the graph ranks by:
//   l2         |q - c|^2 + |r|^2 - 2 |r| <o, v>,  v = rot(q) - rot(c)
//   ip         -<q, c> - |r| <o, v>,              v = rot(q)
//   cosine     1 - <q, c> - |r| <o, v>,           v = rot(q)
// with r = x - c and o = rot(r) / |r| (rabitq.h's notation).
//
// The centre is the mean of the first batch added (or, for an index loaded
// from a file written before sketches, of its live vectors): CLIP-like
// vectors share a strong common direction, and centring on their mean
// shrinks |r| and with it the bound. Measured on bench/datasets.py's CLIP-like
// vectors (20k x 512, float16, a scan of 2,000 matches at k 10): the median
// bound 0.069 around the mean against 0.083 around zero, and 142 full
// vectors read a query against 208.
//
// <x, v> per code (random access, one code at a time): v is rounded to int16
// levels, v_i ~= step s_i with step = max |v_i| / kQueryLevel, and <b, v> ~=
// step (sum of s_i over the code's set bits) (the dispatched
// pq::AdcKernels::masked_sum: integer, so the same at every SIMD level); the
// rounding moves <b, v> by at most step / 2 per set bit, which the bound adds:
// with the factors' own rounding, under 0.5% of the estimator's 2-sigma width
// at 128-512 dimensions. The rest of the
// estimate and its bound is RaBitQ's (pq/rabitq_estimate_kernel.h), computed
// here once for every level.
//
// Why int16 levels summed under the bits, not 8-bit levels in bit planes (a
// popcount per plane, as before): the 8-bit rounding's worst case added ~18%
// to the bound (measured on bench/filters.py's 1% near filter, 200k x 512
// float16, A/B in one process: mean bound 0.070 against 0.057), slack the
// scan paid for in full vectors read: 408 a query against 315 (far: 159
// against 113), at recall@10 0.998 against 0.994 (far 0.999 against 0.997:
// the 2-sigma bound alone fails as often as it promises, no longer hidden by
// the slack). The kernel is also cheaper: 2 loads and 2 operations per 32
// dimensions under AVX-512 against 8 planes of popcounts per 64 (the sketch
// pass over 2,000 matches 14% faster).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "hnsw/block_array.h"
#include "hnsw/vector_codec.h"
#include "pq/adc_kernels.h"
#include "pq/rabitq.h"
#include "pq/rabitq_estimate_kernel.h"

namespace lookalike::hnsw {

class NodeSketches {
 public:
  // The largest level of the rounded query: int16, and a pair of levels summed
  // in an int32 lane of masked_sum.
  static constexpr float kQueryLevel = 32767.0f;
  // The bound's default width in standard deviations (pq/rabitq.h): 2, as the
  // IVF-RaBitQ index uses.
  static constexpr float kDefaultSigmas = 2.0f;

  NodeSketches(size_t dim, Metric metric);

  size_t dim() const { return dim_; }
  size_t words() const { return words_; }
  // Bytes a vector: the bits and the factors.
  size_t bytes_per_vector() const { return bits_->block_bytes() + factors_->block_bytes(); }
  size_t allocated_bytes() const { return bits_->allocated_bytes() + factors_->allocated_bytes(); }

  bool has_centre() const { return !centre_.empty(); }
  // dim floats (the mean of n vectors, or a saved centre); set once, before any encode.
  void set_centre(const float* centre);
  void set_centre_to_mean(const float* vectors, size_t n);
  const std::vector<float>& centre() const { return centre_; }

  void reserve(size_t slots) {
    bits_->reserve(slots);
    factors_->reserve(slots);
  }
  // The sketch of `vector` (dim floats, as the codec decodes it) into `slot`.
  void encode(uint32_t slot, const float* vector);
  void copy_slot(const NodeSketches& from, uint32_t from_slot, uint32_t to_slot);

  BlockArray& bits() { return *bits_; }
  BlockArray& factors() { return *factors_; }
  const BlockArray& bits() const { return *bits_; }
  const BlockArray& factors() const { return *factors_; }

  // One query's side of the estimates.
  struct Query {
    std::vector<float> rotated;   // padded_dim floats: v
    std::vector<int16_t> levels;  // v rounded, 64 words() of them (zeros past padded_dim)
    pq::RabitqScanConstants k{};
    pq::MaskedSumFn sum = nullptr;  // the active SIMD level's kernel
    float step = 0, v_sum = 0, inv_sqrt_dim = 0;
    float dot_error = 0;  // the most the rounding moves <x, v>
    const pq::CosineTerms* cosine_terms = nullptr;  // rabitq_cosine_terms of every cosine code
  };
  // Sets q up for `query` (dim floats, as the codec decodes the query's code),
  // with a bound `sigmas` wide (infinite: every bound is infinite).
  void prepare(const float* query, float sigmas, Query& q) const;

  void prefetch(uint32_t slot) const {
    __builtin_prefetch(bits_->at(slot));
    __builtin_prefetch(factors_->at(slot));
  }
  // The estimated distance of `slot` and the bound: the codec's distance lies
  // in [est - err, est + err] but for a share of about 2 exp(-sigmas^2 / 2).
  // Inline: a scan calls it for each of its matches, and out of line the
  // calls cost ~6% of the estimate pass (2,000 matches, 200k x 512 float16,
  // A/B in one process). No unit built with ISA flags includes this header,
  // so every caller computes it with the same (scalar) arithmetic.
  void estimate(const Query& q, uint32_t slot, float& est, float& err) const {
    // <x, v> = (2 <b, v> - sum v) / sqrt(D).
    const int64_t level_sum = q.sum(reinterpret_cast<const uint64_t*>(bits_->at(slot)), q.levels.data(), words_);
    const float dot = (2 * q.step * float(level_sum) - q.v_sum) * q.inv_sqrt_dim;
    Factors f;
    std::memcpy(&f, factors_->at(slot), sizeof(f));
    pq::rabitq_estimate_one(q.k, dot, q.dot_error, f.norm, q.cosine_terms[f.cosine], est, err);
  }

 private:
  struct Factors {
    float norm;      // |r|, rounded to float16 (rabitq_encode) and kept decoded: no conversion per estimate
    uint8_t cosine;  // <x, o>, 8-bit fixed point (pq::decode_cosine)
    uint8_t unused[3];
  };
  static_assert(sizeof(Factors) == 8);

  size_t dim_;
  Metric metric_;
  pq::HadamardRotation rotation_;
  size_t words_;
  std::vector<float> centre_;          // dim floats
  std::vector<float> rotated_centre_;  // padded_dim floats
  std::unique_ptr<BlockArray> bits_;
  std::unique_ptr<BlockArray> factors_;
};

}  // namespace lookalike::hnsw
