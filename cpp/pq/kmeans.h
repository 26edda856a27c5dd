// Seeded k-means (Lloyd's algorithm under squared L2), shared by the product
// quantizer's sub-spaces and the IVF coarse quantizer.
//
// Parameters and their trade-offs:
//   k                        clusters; at least 1 and at most the number of points.
//   iterations               Lloyd rounds. 10 is usual for IVF centroids (the
//                            coarse partition only needs to be balanced and
//                            local); more rounds lower the PQ error a little.
//   max_points_per_centroid  training uses at most k * this many points, drawn
//                            at random: 256 points a centroid fix a centroid as
//                            well as a million do, and training time is linear
//                            in the points.
//   seed                     the whole run (sample, init, re-seeding) is a
//                            function of the seed and the input: same in, same out.
//   threads                  assignment runs on up to this many threads (0: every
//                            core); the result does not depend on it.
//
// Initialisation, up to 1024 clusters, is k-means++ (Arthur & Vassilvitskii
// 2007) on a sample of 8 points a cluster (plenty to spread the seeds). Its k
// passes over the sample are sequential, so their cost grows as k^2: at 4096
// clusters they took as long as several Lloyd rounds. Beyond 1024 clusters (the
// IVF coarse quantizer) the seeds are k distinct points drawn at random, as
// FAISS does; there each cluster holds a small share of the data and the Lloyd
// rounds spread the centroids. A cluster left empty by an iteration is re-seeded
// by splitting the largest cluster: the empty centroid takes the largest one's
// position, nudged apart symmetrically, so no centroid is wasted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lookalike::pq {

struct KMeansParams {
  size_t k = 256;
  size_t iterations = 10;
  size_t max_points_per_centroid = 256;
  uint64_t seed = 0;
  size_t threads = 0;
};

// Returns k * dim centroid components, row-major. x holds n points of dim
// floats, all finite. Throws std::invalid_argument if k is 0 or larger than n.
std::vector<float> kmeans(const float* x, size_t n, size_t dim, const KMeansParams& params);

// Index of the centroid nearest (squared L2) to each of the n points, in out[n];
// out_dist (optional) receives the distances. Runs on up to `threads` threads.
void assign_nearest(const float* x, size_t n, const float* centroids, size_t k, size_t dim, uint32_t* out,
                    float* out_dist, size_t threads);

}  // namespace lookalike::pq
