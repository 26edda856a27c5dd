#include "pq/product_quantizer.h"

#include <stdexcept>
#include <string>

#include "hnsw/parallel.h"
#include "pq/kmeans.h"

namespace lookalike::pq {

ProductQuantizer::ProductQuantizer(size_t dim, size_t m, size_t nbits) : dim_(dim), m_(m), nbits_(nbits) {
  if (nbits != 4 && nbits != 8) throw std::invalid_argument("nbits must be 4 or 8, got " + std::to_string(nbits));
  if (m == 0 || dim == 0 || m > dim)
    throw std::invalid_argument("m (" + std::to_string(m) + ") must be between 1 and dim (" + std::to_string(dim) +
                                ")");
}

void ProductQuantizer::require_trained() const {
  if (!trained()) throw std::logic_error("the product quantizer is not trained");
}

void ProductQuantizer::train(const float* x, size_t n, uint64_t seed, size_t threads, size_t iterations,
                             size_t max_points_per_centroid) {
  if (n < ksub())
    throw std::invalid_argument("training a " + std::to_string(nbits_) + "-bit product quantizer needs at least " +
                                std::to_string(ksub()) + " vectors, got " + std::to_string(n));
  const size_t k = ksub();
  std::vector<float> books(k * dim_);
  // One sub-space a task; each k-means runs on one thread.
  hnsw::parallel_for(m_, threads, [&](size_t s) {
    const size_t ds = sub_dim(s), at = sub_begin(s);
    std::vector<float> sub(n * ds);
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < ds; ++j) sub[i * ds + j] = x[i * dim_ + at + j];
    KMeansParams p;
    p.k = k;
    p.iterations = iterations;
    p.max_points_per_centroid = max_points_per_centroid;
    p.seed = seed + s;
    p.threads = 1;
    std::vector<float> c = kmeans(sub.data(), n, ds, p);
    std::copy(c.begin(), c.end(), books.begin() + k * at);
  });
  centroids_ = std::move(books);
}

void ProductQuantizer::encode(const float* x, size_t n, uint8_t* codes, size_t threads) const {
  require_trained();
  const size_t k = ksub();
  hnsw::parallel_for(m_, threads, [&](size_t s) {
    const size_t ds = sub_dim(s), at = sub_begin(s);
    std::vector<float> sub(n * ds);
    std::vector<uint32_t> nearest(n);
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < ds; ++j) sub[i * ds + j] = x[i * dim_ + at + j];
    assign_nearest(sub.data(), n, sub_centroids(s), k, ds, nearest.data(), nullptr, 1);
    for (size_t i = 0; i < n; ++i) codes[i * m_ + s] = uint8_t(nearest[i]);
  });
}

void ProductQuantizer::decode(const uint8_t* codes, size_t n, float* out) const {
  require_trained();
  for (size_t i = 0; i < n; ++i)
    for (size_t s = 0; s < m_; ++s) {
      const size_t ds = sub_dim(s);
      const float* c = sub_centroids(s) + size_t(codes[i * m_ + s]) * ds;
      std::copy(c, c + ds, out + i * dim_ + sub_begin(s));
    }
}

void ProductQuantizer::compute_lut(const float* query, LutKind kind, float* lut) const {
  require_trained();
  const size_t k = ksub();
  for (size_t s = 0; s < m_; ++s) {
    const size_t ds = sub_dim(s);
    const float* q = query + sub_begin(s);
    const float* c = sub_centroids(s);
    for (size_t j = 0; j < k; ++j, c += ds) {
      float acc = 0;
      if (kind == LutKind::L2) {
        for (size_t t = 0; t < ds; ++t) acc += (q[t] - c[t]) * (q[t] - c[t]);
      } else {
        for (size_t t = 0; t < ds; ++t) acc -= q[t] * c[t];
      }
      lut[s * k + j] = acc;
    }
  }
}

float ProductQuantizer::adc(const float* lut, const uint8_t* code) const {
  float d = 0;
  for (size_t s = 0; s < m_; ++s) d += lut[s * ksub() + code[s]];
  return d;
}

void ProductQuantizer::set_centroids(std::vector<float> centroids) {
  if (centroids.size() != ksub() * dim_)
    throw std::invalid_argument("expected " + std::to_string(ksub() * dim_) + " codebook floats, got " +
                                std::to_string(centroids.size()));
  centroids_ = std::move(centroids);
}

}  // namespace lookalike::pq
