#include "hnsw/vector_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace lookalike::hnsw {

using distance::Kernel;
using distance::Scalar;

const char* metric_name(Metric m) {
  switch (m) {
    case Metric::L2: return "l2";
    case Metric::InnerProduct: return "ip";
    case Metric::Cosine: return "cosine";
  }
  return "?";
}

const char* storage_name(Scalar s) {
  switch (s) {
    case Scalar::F32: return "float32";
    case Scalar::F16: return "float16";
    case Scalar::I8: return "int8";
  }
  return "?";
}

static size_t component_bytes(Scalar s) {
  return s == Scalar::F32 ? 4 : s == Scalar::F16 ? 2 : 1;
}

VectorCodec::VectorCodec(size_t dim, Metric metric, Scalar storage, float int8_scale)
    : dim_(dim), metric_(metric), storage_(storage), code_bytes_(dim * component_bytes(storage)),
      int8_scale_(storage == Scalar::I8 ? int8_scale : 0.0f) {
  bind_kernels();
}

void VectorCodec::bind_kernels() {
  const auto& k = distance::kernels();
  Kernel kernel = metric_ == Metric::L2 ? Kernel::L2Sq : Kernel::Dot;
  kernel_ = k.get(storage_, kernel);
  kernel_many_ = k.get_many(storage_, kernel);
  float unit = storage_ == Scalar::I8 ? int8_scale_ * int8_scale_ : 1.0f;
  switch (metric_) {
    case Metric::L2: bias_ = 0.0f; scale_ = unit; break;
    case Metric::InnerProduct: bias_ = 0.0f; scale_ = -unit; break;
    case Metric::Cosine: bias_ = 1.0f; scale_ = -unit; break;
  }
}

void VectorCodec::choose_int8_scale(const float* prepared, size_t n) {
  float max_abs = 0.0f;
  for (size_t i = 0; i < n * dim_; ++i) max_abs = std::max(max_abs, std::fabs(prepared[i]));
  int8_scale_ = max_abs > 0.0f ? max_abs / 127.0f : 1.0f;
  bind_kernels();
}

void VectorCodec::prepare(const float* in, float* out) const {
  if (metric_ != Metric::Cosine) {
    std::memcpy(out, in, dim_ * sizeof(float));
    return;
  }
  double norm2 = 0.0;
  for (size_t i = 0; i < dim_; ++i) norm2 += double(in[i]) * in[i];
  if (norm2 == 0.0) throw std::invalid_argument("a zero vector has no direction: cosine distance is undefined for it");
  float inv = float(1.0 / std::sqrt(norm2));
  for (size_t i = 0; i < dim_; ++i) out[i] = in[i] * inv;
}

void VectorCodec::encode(const float* x, uint8_t* code) const {
  switch (storage_) {
    case Scalar::F32:
      std::memcpy(code, x, code_bytes_);
      break;
    case Scalar::F16:
      distance::f32_to_f16_n(x, reinterpret_cast<uint16_t*>(code), dim_);
      break;
    case Scalar::I8: {
      float inv = 1.0f / int8_scale_;
      auto* q = reinterpret_cast<int8_t*>(code);
      for (size_t i = 0; i < dim_; ++i) q[i] = int8_t(std::clamp(std::lround(x[i] * inv), -127L, 127L));
      break;
    }
  }
}

void VectorCodec::decode(const uint8_t* code, float* out) const {
  switch (storage_) {
    case Scalar::F32:
      std::memcpy(out, code, code_bytes_);
      break;
    case Scalar::F16:
      distance::f16_to_f32_n(reinterpret_cast<const uint16_t*>(code), out, dim_);
      break;
    case Scalar::I8: {
      const auto* q = reinterpret_cast<const int8_t*>(code);
      for (size_t i = 0; i < dim_; ++i) out[i] = q[i] * int8_scale_;
      break;
    }
  }
}

void VectorCodec::distance_many(const uint8_t* query, const uint8_t* base, size_t n, size_t stride,
                                float* out) const {
  kernel_many_(query, base, n, stride, dim_, out);
  for (size_t i = 0; i < n; ++i) out[i] = bias_ + scale_ * out[i];
}

}  // namespace lookalike::hnsw
