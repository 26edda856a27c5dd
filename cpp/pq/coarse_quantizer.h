// The coarse quantizer of IVF-PQ: nlist centroids, and the search for the cells
// nearest a vector (squared L2).
//
// Up to a few thousand cells an exact scan of the centroids is cheap next to the
// scan of the cells themselves. From kGraphMinNlist cells on (16k-65k at 100M
// vectors) it is not: 65k x 512 floats are 128 MB of centroids read per query,
// and every added vector pays the same. There an HNSW graph over the centroids
// (hnsw::HnswIndex, float32, ids = cell numbers) finds the nearest cells in about
// a thousand distances. Its cells are approximate: a probe may miss a true
// nearest cell when the graph walk does (the ef below keeps that rare), and an
// added vector may land in its second-nearest cell, which costs a little recall
// at a given nprobe and nothing in correctness (the re-rank is exact).
//
// Memory: the graph keeps its own copy of the centroids plus 2 * kGraphM links a
// cell: ~2.3 KB a 512-d cell, 150 MB at 65k cells (1.5 bytes a vector at 100M).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "hnsw/hnsw_index.h"

namespace lookalike::pq {

class CoarseQuantizer {
 public:
  // The default nlist from which train() builds a graph (IvfPqConfig::coarse_graph_min_nlist).
  static constexpr size_t kGraphMinNlist = 4096;

  CoarseQuantizer() = default;
  // Takes nlist * dim centroids; builds the graph when use_graph, on one thread:
  // deterministic, and measured safe (HnswIndex's concurrent inserts into a
  // graph this small left a few of 128 centroids unreachable in about 1 build
  // in 6). 4096 x 256 centroids take about a second.
  CoarseQuantizer(std::vector<float> centroids, size_t dim, bool use_graph);
  // Centroids and a graph loaded from a file (graph may be null).
  CoarseQuantizer(std::vector<float> centroids, size_t dim, std::unique_ptr<hnsw::HnswIndex> graph);

  size_t nlist() const { return dim_ ? centroids_.size() / dim_ : 0; }
  const float* centroid(size_t cell) const { return centroids_.data() + cell * dim_; }
  const std::vector<float>& centroids() const { return centroids_; }
  const hnsw::HnswIndex* graph() const { return graph_.get(); }

  // The nprobe (<= nlist) cells nearest `query`, nearest first, into cells;
  // returns how many it found (nprobe, short only if the graph walk comes short).
  size_t nearest(const float* query, size_t nprobe, uint32_t* cells) const;
  // The nearest cell of each of n vectors, on up to `threads` threads.
  void assign(const float* x, size_t n, uint32_t* cells, size_t threads) const;

  size_t graph_bytes() const;

 private:
  std::vector<float> centroids_;
  size_t dim_ = 0;
  std::unique_ptr<hnsw::HnswIndex> graph_;
};

}  // namespace lookalike::pq
