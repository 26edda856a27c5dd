// How the index stores a vector and measures distances between stored vectors.
//
// The graph never touches vector components: it asks the codec for a code size,
// to encode a float vector, and for the distance between two codes. Distances
// are "smaller is closer" for every metric:
//   l2      squared Euclidean distance
//   ip      negative inner product
//   cosine  1 - cosine similarity (vectors are normalised on the way in, so this
//           is 1 - dot on the stored codes)
//
// Storage kinds, and their trade-off at 512 dimensions:
//   float32  2048 bytes a vector, exact
//   float16  1024 bytes, relative error ~1e-3 per component: recall at equal ef
//            is indistinguishable from float32 on normalised embeddings
//   int8      512 bytes, one symmetric scale for all components, taken from the
//            first batch added (max |x|); values beyond it saturate. Loses a few
//            points of recall unless candidates are re-ranked on float32 copies.
#pragma once

#include <cstddef>
#include <cstdint>

#include "distance/distance.h"

namespace lookalike::hnsw {

enum class Metric : uint8_t { L2 = 0, InnerProduct = 1, Cosine = 2 };

const char* metric_name(Metric m);
const char* storage_name(distance::Scalar s);

class VectorCodec {
 public:
  VectorCodec(size_t dim, Metric metric, distance::Scalar storage, float int8_scale = 0.0f);

  size_t dim() const { return dim_; }
  Metric metric() const { return metric_; }
  distance::Scalar storage() const { return storage_; }
  size_t code_bytes() const { return code_bytes_; }

  // int8 only: the value of one quantisation step; 0 until chosen.
  float int8_scale() const { return int8_scale_; }
  bool needs_int8_scale() const { return storage_ == distance::Scalar::I8 && int8_scale_ == 0.0f; }
  // Picks the int8 scale from a sample of (already prepared) vectors.
  void choose_int8_scale(const float* prepared, size_t n);

  // The vector as the index sees it: normalised for cosine, unchanged otherwise.
  // Throws std::invalid_argument for a zero vector under cosine.
  void prepare(const float* in, float* out) const;
  // A prepared vector to its code.
  void encode(const float* prepared, uint8_t* code) const;
  // A code back to (approximately) the prepared vector.
  void decode(const uint8_t* code, float* out) const;

  float distance(const uint8_t* a, const uint8_t* b) const { return bias_ + scale_ * kernel_(a, b, dim_); }
  // Distances from one code to n codes laid out `stride` bytes apart.
  void distance_many(const uint8_t* query, const uint8_t* base, size_t n, size_t stride, float* out) const;

 private:
  void bind_kernels();

  size_t dim_;
  Metric metric_;
  distance::Scalar storage_;
  size_t code_bytes_;
  float int8_scale_;
  // distance = bias_ + scale_ * kernel(a, b): folds the metric's sign and the
  // int8 step into one multiply-add.
  float bias_ = 0.0f;
  float scale_ = 1.0f;
  distance::OneToOneFn kernel_ = nullptr;
  distance::OneToManyFn kernel_many_ = nullptr;
};

}  // namespace lookalike::hnsw
