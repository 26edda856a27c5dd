// A product quantizer (Jegou, Douze & Schmid, 2011): a dim-float vector is cut
// into m sub-vectors of dim / m floats, and each sub-vector is replaced by the
// index of its nearest centroid among 2^nbits learned for that sub-space. When
// m does not divide dim, sub-space s covers dimensions [s dim / m, (s + 1) dim /
// m) (rounded down): widths differ by at most one. That frees the code size
// from the divisors of dim: 4-bit m=88 at 256 dims is 44 bytes, between the
// 32 of m=64 and the 64 of m=128.
//
// Parameters and their trade-offs:
//   m      sub-spaces, 1 <= m <= dim. More sub-spaces: finer codes
//          (lower error, higher recall before re-rank) and more bytes a vector.
//   nbits  8: 256 centroids a sub-space, m bytes a code, scanned with float
//          lookup tables (adc_kernels.h scan8). 4: 16 centroids, m / 2 bytes, and
//          the lookup tables fit in SIMD registers (fast-scan): about as many
//          bytes buy a coarser code but a several times faster scan, which the
//          exact re-rank then corrects. Under an 80-byte budget an IVF-PQ
//          index has room for ~44-52 bytes of code (ivf_pq.h).
//
// Codes handed in and out here are always one byte per sub-space ("unpacked");
// packing two 4-bit codes a byte, in fast-scan blocks, is fast_scan.h's job.
//
// Asymmetric distance computation (ADC): the query stays exact; a per-query
// lookup table holds its distance to every centroid of every sub-space, and the
// distance to a code is the sum of m table entries. Tables are "smaller is
// closer": squared L2 or the negative inner product.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lookalike::pq {

enum class LutKind : uint8_t { L2 = 0, NegInnerProduct = 1 };

// Training defaults. A sub-space has few dimensions (2-16), so 64 points a
// centroid and 10 Lloyd rounds reach nearly the error of 256 points and 20
// rounds (faiss's defaults) at an eighth of the time: the 8-bit codebooks of
// 1M x 256 train in seconds instead of minutes. (Measured in bench/compressed.py:
// recall after re-rank is unchanged.)
constexpr size_t kTrainIterations = 10;
constexpr size_t kTrainPointsPerCentroid = 64;

class ProductQuantizer {
 public:
  // Throws std::invalid_argument unless 1 <= m <= dim and nbits is 4 or 8.
  ProductQuantizer(size_t dim, size_t m, size_t nbits);

  size_t dim() const { return dim_; }
  size_t m() const { return m_; }
  size_t nbits() const { return nbits_; }
  size_t ksub() const { return size_t(1) << nbits_; }  // centroids a sub-space
  size_t sub_begin(size_t s) const { return s * dim_ / m_; }  // first dimension of sub-space s (s <= m)
  size_t sub_dim(size_t s) const { return sub_begin(s + 1) - sub_begin(s); }
  bool even() const { return dim_ % m_ == 0; }  // every sub-space dim / m wide
  bool trained() const { return !centroids_.empty(); }

  // Learns the codebooks from n >= ksub() finite vectors; sub-spaces are
  // trained in parallel on up to `threads` threads (0: every core), each on its
  // own random sample of at most ksub() * max_points_per_centroid of the n.
  void train(const float* x, size_t n, uint64_t seed, size_t threads, size_t iterations = kTrainIterations,
             size_t max_points_per_centroid = kTrainPointsPerCentroid);

  // n vectors to n * m one-byte codes, and back. Require a trained quantizer.
  void encode(const float* x, size_t n, uint8_t* codes, size_t threads = 1) const;
  void decode(const uint8_t* codes, size_t n, float* out) const;

  // m * ksub() entries: lut[s * ksub + c] = the distance of the query's
  // sub-vector s to centroid c of sub-space s.
  void compute_lut(const float* query, LutKind kind, float* lut) const;
  // The ADC distance of one code: the sum of its m table entries, in order.
  float adc(const float* lut, const uint8_t* code) const;

  // Codebooks: ksub * dim floats, sub-space-major (sub-space s: ksub rows of
  // sub_dim(s) floats from ksub * sub_begin(s) on). set_centroids takes exactly
  // that many (loading a saved quantizer).
  const std::vector<float>& centroids() const { return centroids_; }
  void set_centroids(std::vector<float> centroids);

 private:
  const float* sub_centroids(size_t s) const { return centroids_.data() + ksub() * sub_begin(s); }
  void require_trained() const;

  size_t dim_, m_, nbits_;
  std::vector<float> centroids_;
};

}  // namespace lookalike::pq
