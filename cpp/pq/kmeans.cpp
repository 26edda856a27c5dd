#include "pq/kmeans.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>

#include "distance/distance.h"
#include "hnsw/parallel.h"

namespace lookalike::pq {

namespace {

// Below this many components a call through the kernel table costs more than
// the arithmetic, so short sub-vectors (PQ sub-spaces) take an inline loop.
constexpr size_t kKernelMinDim = 32;
constexpr size_t kInitSamplePerCentroid = 8;
// Above this many clusters the seeds are random distinct points (see kmeans.h).
constexpr size_t kPlusPlusMaxK = 1024;
constexpr size_t kChunk = 256;  // points per parallel work item
// Fewer points than this do not repay packing the centroids for the tiled path.
constexpr size_t kTiledMinPoints = 64;
constexpr float kSplitNudge = 1.0f / 1024;

double uniform01(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

float l2sq_inline(const float* a, const float* b, size_t dim) {
  float s = 0;
  for (size_t j = 0; j < dim; ++j) {
    const float d = a[j] - b[j];
    s += d * d;
  }
  return s;
}

// Squared L2 from p to each of k centroids stored component-major (ct[j * k + c]).
void l2sq_to_transposed(const float* p, const float* ct, size_t k, size_t dim, float* d) {
  std::fill_n(d, k, 0.0f);
  for (size_t j = 0; j < dim; ++j) {
    const float pj = p[j];
    const float* row = ct + j * k;
    for (size_t c = 0; c < k; ++c) {
      const float t = pj - row[c];
      d[c] += t * t;
    }
  }
}

// Copies `count` distinct points of x, drawn at random, into a new buffer.
std::vector<float> sample_points(const float* x, size_t n, size_t dim, size_t count, std::mt19937_64& rng) {
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  for (size_t i = 0; i < count; ++i) std::swap(order[i], order[i + rng() % (n - i)]);
  std::sort(order.begin(), order.begin() + count);  // reads x in order
  std::vector<float> out(count * dim);
  for (size_t i = 0; i < count; ++i) std::copy_n(x + size_t(order[i]) * dim, dim, out.data() + i * dim);
  return out;
}

std::vector<float> kmeans_plus_plus(const float* x, size_t n, size_t dim, size_t k, std::mt19937_64& rng,
                                    size_t threads) {
  std::vector<float> centroids(k * dim);
  std::vector<float> nearest(n, std::numeric_limits<float>::infinity());
  const auto many = distance::kernels().get_many(distance::Scalar::F32, distance::Kernel::L2Sq);
  size_t chosen = rng() % n;
  for (size_t c = 0;; ++c) {
    const float* centre = x + chosen * dim;
    std::copy_n(centre, dim, centroids.data() + c * dim);
    if (c + 1 == k) break;
    hnsw::parallel_for((n + kChunk - 1) / kChunk, threads, [&](size_t chunk) {
      const size_t first = chunk * kChunk, count = std::min(n, first + kChunk) - first;
      float d[kChunk];
      if (dim >= kKernelMinDim) {
        many(centre, x + first * dim, count, dim * sizeof(float), dim, d);
      } else {
        for (size_t i = 0; i < count; ++i) d[i] = l2sq_inline(x + (first + i) * dim, centre, dim);
      }
      for (size_t i = 0; i < count; ++i) nearest[first + i] = std::min(nearest[first + i], d[i]);
    });
    const double total = std::accumulate(nearest.begin(), nearest.end(), 0.0);
    if (!(total > 0)) {  // every point sits on a centroid already: any point will do
      chosen = rng() % n;
      continue;
    }
    double target = uniform01(rng) * total;
    chosen = n - 1;
    for (size_t i = 0; i < n; ++i)
      if ((target -= nearest[i]) < 0) {
        chosen = i;
        break;
      }
  }
  return centroids;
}

// Re-seeds each empty cluster by splitting the currently largest one.
void split_into_empty(std::vector<float>& centroids, std::vector<size_t>& counts, size_t dim) {
  const size_t k = counts.size();
  for (size_t e = 0; e < k; ++e) {
    if (counts[e] != 0) continue;
    const size_t big = size_t(std::max_element(counts.begin(), counts.end()) - counts.begin());
    float* ce = centroids.data() + e * dim;
    float* cb = centroids.data() + big * dim;
    for (size_t j = 0; j < dim; ++j) {
      const float sign = j % 2 ? 1.0f : -1.0f;
      ce[j] = cb[j] * (1 + sign * kSplitNudge);
      cb[j] = cb[j] * (1 - sign * kSplitNudge);
    }
    counts[e] = counts[big] / 2;
    counts[big] -= counts[e];
  }
}

// |p - c|^2 = |p|^2 + |c|^2 - 2 p.c: the p.c of a block of points times a block
// of centroids is a small matrix product (distance::dot_panels), which reuses
// each centroid loaded for many points. Scanning every centroid once per point
// instead streams all of them (4 MB for 4096 x 256-d) through the cache per
// point, and that traffic bounded the coarse k-means.
// The block sizes keep a block of points (kTiledPoints x dim floats) and a block
// of panels (kTilePanels x 32 x dim) in L2 at dim 256-1024.
constexpr size_t kTiledPoints = 48;
constexpr size_t kTilePanels = 8;

void assign_tiled(const float* x, size_t n, const float* centroids, size_t k, size_t dim, uint32_t* out,
                  float* out_dist, size_t threads) {
  const auto& kernels = distance::kernels();
  const std::vector<float> panels = distance::pack_panels(centroids, k, dim);
  const size_t panel_count = panels.size() / (dim * distance::kPanelWidth);
  // Padding centroids get an infinite norm, so they never win.
  std::vector<float> half_norm(panel_count * distance::kPanelWidth, std::numeric_limits<float>::infinity());
  for (size_t c = 0; c < k; ++c) half_norm[c] = 0.5f * kernels.get(distance::Scalar::F32, distance::Kernel::Dot)(
                                                           centroids + c * dim, centroids + c * dim, dim);
  hnsw::parallel_for((n + kTiledPoints - 1) / kTiledPoints, threads, [&](size_t block) {
    const size_t first = block * kTiledPoints, rows = std::min(n, first + kTiledPoints) - first;
    const size_t width = kTilePanels * distance::kPanelWidth;
    std::vector<float> dots(rows * width);
    // Minimising |c|^2 / 2 - p.c ranks centroids as |p - c|^2 does.
    std::vector<float> best(rows, std::numeric_limits<float>::infinity());
    std::vector<uint32_t> best_c(rows, 0);
    for (size_t p0 = 0; p0 < panel_count; p0 += kTilePanels) {
      const size_t np = std::min(kTilePanels, panel_count - p0);
      kernels.dot_panels(x + first * dim, rows, dim, panels.data() + p0 * dim * distance::kPanelWidth, np,
                         dots.data(), width);
      const size_t c0 = p0 * distance::kPanelWidth, cn = np * distance::kPanelWidth;
      for (size_t r = 0; r < rows; ++r) {
        const float* d = dots.data() + r * width;
        for (size_t c = 0; c < cn; ++c) {
          const float score = half_norm[c0 + c] - d[c];
          if (score < best[r]) {  // strictly: the first of ties wins
            best[r] = score;
            best_c[r] = uint32_t(c0 + c);
          }
        }
      }
    }
    for (size_t r = 0; r < rows; ++r) {
      out[first + r] = best_c[r];
      if (out_dist) {
        const float* p = x + (first + r) * dim;
        const float pp = kernels.get(distance::Scalar::F32, distance::Kernel::Dot)(p, p, dim);
        out_dist[first + r] = std::max(0.0f, pp + 2 * best[r]);
      }
    }
  });
}

}  // namespace

void assign_nearest(const float* x, size_t n, const float* centroids, size_t k, size_t dim, uint32_t* out,
                    float* out_dist, size_t threads) {
  if (dim >= kKernelMinDim && n >= kTiledMinPoints) return assign_tiled(x, n, centroids, k, dim, out, out_dist, threads);
  const auto many = distance::kernels().get_many(distance::Scalar::F32, distance::Kernel::L2Sq);
  // Short sub-vectors: centroids transposed (component-major), so the loop over
  // centroids is the inner one and vectorises; each distance still sums its
  // components in order, so the result is the same as a plain loop's.
  std::vector<float> by_component;
  if (dim < kKernelMinDim) {
    by_component.resize(k * dim);
    for (size_t c = 0; c < k; ++c)
      for (size_t j = 0; j < dim; ++j) by_component[j * k + c] = centroids[c * dim + j];
  }
  hnsw::parallel_for((n + kChunk - 1) / kChunk, threads, [&](size_t chunk) {
    std::vector<float> d(k);
    for (size_t i = chunk * kChunk; i < std::min(n, (chunk + 1) * kChunk); ++i) {
      const float* p = x + i * dim;
      if (dim >= kKernelMinDim) {
        many(p, centroids, k, dim * sizeof(float), dim, d.data());
      } else {
        l2sq_to_transposed(p, by_component.data(), k, dim, d.data());
      }
      const size_t best = size_t(std::min_element(d.begin(), d.end()) - d.begin());  // first of ties
      out[i] = uint32_t(best);
      if (out_dist) out_dist[i] = d[best];
    }
  });
}

std::vector<float> kmeans(const float* x, size_t n, size_t dim, const KMeansParams& params) {
  const size_t k = params.k;
  if (k == 0 || k > n)
    throw std::invalid_argument("k-means needs 1 <= k <= points, got k = " + std::to_string(k) + " for " +
                                std::to_string(n) + " points");
  std::mt19937_64 rng(params.seed);

  std::vector<float> sample;
  const size_t cap = params.max_points_per_centroid ? k * params.max_points_per_centroid : n;
  if (n > cap) {
    sample = sample_points(x, n, dim, cap, rng);
    x = sample.data();
    n = cap;
  }

  std::vector<float> centroids;
  if (k > kPlusPlusMaxK) {
    centroids = sample_points(x, n, dim, k, rng);
  } else {
    const size_t init_n = std::min(n, k * kInitSamplePerCentroid);
    if (init_n < n) {
      std::vector<float> init_points = sample_points(x, n, dim, init_n, rng);
      centroids = kmeans_plus_plus(init_points.data(), init_n, dim, k, rng, params.threads);
    } else {
      centroids = kmeans_plus_plus(x, n, dim, k, rng, params.threads);
    }
  }

  std::vector<uint32_t> assign(n);
  std::vector<double> sums(k * dim);
  std::vector<size_t> counts(k);
  for (size_t it = 0; it < params.iterations; ++it) {
    assign_nearest(x, n, centroids.data(), k, dim, assign.data(), nullptr, params.threads);
    std::fill(sums.begin(), sums.end(), 0.0);
    std::fill(counts.begin(), counts.end(), 0);
    for (size_t i = 0; i < n; ++i) {
      double* s = sums.data() + size_t(assign[i]) * dim;
      const float* p = x + i * dim;
      for (size_t j = 0; j < dim; ++j) s[j] += p[j];
      ++counts[assign[i]];
    }
    for (size_t c = 0; c < k; ++c)
      if (counts[c])
        for (size_t j = 0; j < dim; ++j) centroids[c * dim + j] = float(sums[c * dim + j] / double(counts[c]));
    split_into_empty(centroids, counts, dim);
  }
  return centroids;
}

}  // namespace lookalike::pq
