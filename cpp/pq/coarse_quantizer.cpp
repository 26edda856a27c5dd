#include "pq/coarse_quantizer.h"

#include <algorithm>
#include <numeric>

#include "distance/distance.h"
#include "hnsw/parallel.h"
#include "pq/kmeans.h"

namespace lookalike::pq {

namespace {

// Graph parameters for centroids: they are spread out (one per cell), so a
// richer graph than a catalog's (M = 32, as faiss's IVF-HNSW quantizers) keeps
// the walk exact-like; ef at least kMinEf, and twice nprobe past that.
constexpr size_t kGraphM = 32;
constexpr size_t kGraphEfConstruction = 100;
constexpr size_t kMinEf = 64;

size_t walk_width(size_t nprobe) { return std::max(kMinEf, 2 * nprobe); }

}  // namespace

CoarseQuantizer::CoarseQuantizer(std::vector<float> centroids, size_t dim, bool use_graph)
    : centroids_(std::move(centroids)), dim_(dim) {
  if (!use_graph) return;
  hnsw::IndexConfig c;
  c.dim = dim;
  c.metric = hnsw::Metric::L2;
  c.M = kGraphM;
  c.ef_construction = kGraphEfConstruction;
  c.ef_search = kMinEf;
  c.sketches = false;  // its searches are unfiltered: sketches would go unread
  graph_ = std::make_unique<hnsw::HnswIndex>(c);
  std::vector<int64_t> ids(nlist());
  std::iota(ids.begin(), ids.end(), int64_t(0));
  graph_->add(ids.data(), centroids_.data(), ids.size(), false, 1);
}

CoarseQuantizer::CoarseQuantizer(std::vector<float> centroids, size_t dim, std::unique_ptr<hnsw::HnswIndex> graph)
    : centroids_(std::move(centroids)), dim_(dim), graph_(std::move(graph)) {}

size_t CoarseQuantizer::nearest(const float* query, size_t nprobe, uint32_t* cells) const {
  const size_t n = nlist();
  nprobe = std::min(nprobe, n);
  if (graph_) {
    hnsw::SearchParams p;
    p.k = nprobe;
    p.ef = walk_width(nprobe);
    std::vector<int64_t> ids(nprobe);
    std::vector<float> dists(nprobe);
    graph_->search(query, p, ids.data(), dists.data());
    size_t found = 0;
    for (int64_t id : ids)
      if (id != hnsw::HnswIndex::kNoId) cells[found++] = uint32_t(id);
    return found;
  }
  std::vector<float> dist(n);
  distance::kernels().get_many(distance::Scalar::F32, distance::Kernel::L2Sq)(
      query, centroids_.data(), n, dim_ * sizeof(float), dim_, dist.data());
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::partial_sort(order.begin(), order.begin() + nprobe, order.end(),
                    [&](uint32_t a, uint32_t b) { return dist[a] < dist[b] || (dist[a] == dist[b] && a < b); });
  std::copy_n(order.begin(), nprobe, cells);
  return nprobe;
}

void CoarseQuantizer::assign(const float* x, size_t n, uint32_t* cells, size_t threads) const {
  if (!graph_) {
    assign_nearest(x, n, centroids_.data(), nlist(), dim_, cells, nullptr, threads);
    return;
  }
  hnsw::parallel_for(n, threads, [&](size_t i) {
    if (nearest(x + i * dim_, 1, cells + i) == 0) {  // a walk that found nothing: scan
      assign_nearest(x + i * dim_, 1, centroids_.data(), nlist(), dim_, cells + i, nullptr, 1);
    }
  });
}

size_t CoarseQuantizer::graph_bytes() const { return graph_ ? graph_->memory_usage().total_bytes : 0; }

}  // namespace lookalike::pq
