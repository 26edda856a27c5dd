// Python access to the distance kernels: one-to-one and one-to-many distances on
// numpy arrays, and the SIMD level (to inspect it, and to force one in tests).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "distance/distance.h"

namespace py = pybind11;

namespace lookalike::bindings {
namespace {

using distance::Isa;
using distance::Kernel;
using distance::Scalar;

// The dtype is checked, never cast: a float64 array silently rounded to float32
// would hide a caller's mistake.
Scalar scalar_of(const py::array& a, const char* what) {
  const py::dtype dt = a.dtype();
  if (dt.equal(py::dtype::of<float>())) return Scalar::F32;
  if (dt.equal(py::dtype("float16"))) return Scalar::F16;
  if (dt.equal(py::dtype::of<int8_t>())) return Scalar::I8;
  throw py::type_error(std::string(what) + " has dtype " + py::str(dt).cast<std::string>() +
                       "; expected float32, float16 or int8");
}

Kernel parse_kernel(const std::string& name) {
  if (name == "dot") return Kernel::Dot;
  if (name == "l2sq") return Kernel::L2Sq;
  if (name == "cosine") return Kernel::Cosine;
  throw py::value_error("unknown kernel '" + name + "' (expected dot, l2sq or cosine)");
}

// A C-contiguous view of `a` with `ndim` dimensions, copied only if it is not
// contiguous already. The dtype is left alone.
py::array contiguous(const py::array& a, py::ssize_t ndim, const char* what) {
  if (a.ndim() != ndim)
    throw py::value_error(std::string(what) + " must be " + std::to_string(ndim) + "-D, got " +
                          std::to_string(a.ndim()) + "-D");
  return py::array::ensure(a, py::array::c_style);
}

Scalar common_scalar(const py::array& a, const char* a_name, const py::array& b, const char* b_name) {
  const Scalar s = scalar_of(a, a_name);
  if (scalar_of(b, b_name) != s)
    throw py::type_error(std::string("dtype mismatch: ") + a_name + " is " + py::str(a.dtype()).cast<std::string>() +
                         ", " + b_name + " is " + py::str(b.dtype()).cast<std::string>());
  return s;
}

float distance_one(const py::array& a_in, const py::array& b_in, const std::string& kernel) {
  const Kernel k = parse_kernel(kernel);
  const Scalar s = common_scalar(a_in, "a", b_in, "b");
  const py::array a = contiguous(a_in, 1, "a"), b = contiguous(b_in, 1, "b");
  const size_t dim = size_t(a.shape(0));
  if (size_t(b.shape(0)) != dim)
    throw py::value_error("length mismatch: a has " + std::to_string(dim) + " components, b has " +
                          std::to_string(b.shape(0)));
  if (dim == 0) throw py::value_error("vectors must not be empty");
  return distance::kernels().get(s, k)(a.data(), b.data(), dim);
}

py::array_t<float> distance_many(const py::array& q_in, const py::array& base_in, const std::string& kernel) {
  const Kernel k = parse_kernel(kernel);
  const Scalar s = common_scalar(q_in, "query", base_in, "base");
  const py::array q = contiguous(q_in, 1, "query"), base = contiguous(base_in, 2, "base");
  const size_t dim = size_t(q.shape(0)), n = size_t(base.shape(0));
  if (size_t(base.shape(1)) != dim)
    throw py::value_error("dimension mismatch: query has " + std::to_string(dim) + " components, base rows have " +
                          std::to_string(base.shape(1)));
  if (dim == 0) throw py::value_error("vectors must not be empty");
  auto out = py::array_t<float>(py::ssize_t(n));
  const auto fn = distance::kernels().get_many(s, k);
  const void* qp = q.data();
  const void* bp = base.data();
  const size_t stride = dim * size_t(base.itemsize());
  float* op = out.mutable_data();
  {
    py::gil_scoped_release unlocked;
    fn(qp, bp, n, stride, dim, op);
  }
  return out;
}

// points @ vectors.T by pack_panels + dot_panels, float32 only (the k-means kernel).
py::array_t<float> dot_matrix(const py::array& points_in, const py::array& vectors_in) {
  if (common_scalar(points_in, "points", vectors_in, "vectors") != Scalar::F32)
    throw py::type_error("dot_matrix takes float32 arrays");
  const py::array points = contiguous(points_in, 2, "points"), vectors = contiguous(vectors_in, 2, "vectors");
  const size_t n = size_t(points.shape(0)), m = size_t(vectors.shape(0)), dim = size_t(points.shape(1));
  if (size_t(vectors.shape(1)) != dim)
    throw py::value_error("dimension mismatch: points have " + std::to_string(dim) + " components, vectors have " +
                          std::to_string(vectors.shape(1)));
  const size_t panels = (m + distance::kPanelWidth - 1) / distance::kPanelWidth;
  std::vector<float> wide(n * panels * distance::kPanelWidth);
  const float* pp = static_cast<const float*>(points.data());
  const float* vp = static_cast<const float*>(vectors.data());
  {
    py::gil_scoped_release unlocked;
    const std::vector<float> packed = distance::pack_panels(vp, m, dim);
    distance::kernels().dot_panels(pp, n, dim, packed.data(), panels, wide.data(), panels * distance::kPanelWidth);
  }
  auto out = py::array_t<float>({py::ssize_t(n), py::ssize_t(m)});
  float* op = out.mutable_data();
  for (size_t i = 0; i < n; ++i) std::copy_n(wide.data() + i * panels * distance::kPanelWidth, m, op + i * m);
  return out;
}

// `with simd_level("scalar"): ...` runs the block with that level's kernels.
class SimdLevel {
 public:
  explicit SimdLevel(const std::string& name) : isa_(distance::parse_isa(name)) {
    distance::kernels_for(isa_);  // unsupported -> std::invalid_argument -> ValueError
  }
  void enter() {
    if (scope_) throw std::runtime_error("this simd_level context is already active");
    scope_ = std::make_unique<distance::ScopedIsa>(isa_);
  }
  void exit() { scope_.reset(); }
  std::string name() const { return distance::isa_name(isa_); }

 private:
  Isa isa_;
  std::unique_ptr<distance::ScopedIsa> scope_;  // a pointer keeps SimdLevel movable
};

}  // namespace

void bind_distance(py::module_& m) {
  m.def("hardware_acceleration", [] { return std::string(distance::isa_name(distance::active_isa())); },
        "Name of the SIMD level the distance kernels use: scalar, avx2 or avx512.");

  m.def(
      "simd_levels",
      [] {
        std::vector<std::string> names;
        for (Isa isa : distance::supported_isas()) names.emplace_back(distance::isa_name(isa));
        return names;
      },
      "SIMD levels this CPU supports, lowest first.");

  py::class_<SimdLevel>(m, "SimdLevel",
                        "Context manager forcing a SIMD level for its block (for tests and benchmarks; "
                        "not while other threads search).")
      .def(py::init<const std::string&>(), py::arg("name"))
      .def("__enter__", [](SimdLevel& s) -> SimdLevel& { s.enter(); return s; }, py::return_value_policy::reference)
      .def("__exit__", [](SimdLevel& s, const py::args&) { s.exit(); return false; })
      .def_property_readonly("name", &SimdLevel::name);

  m.def(
      "simd_level", [](const std::string& name) { return SimdLevel(name); }, py::arg("name"),
      "A context manager that runs its block with the named SIMD level; ValueError if the CPU lacks it.");

  m.def("distance", &distance_one, py::arg("a"), py::arg("b"), py::arg("kernel"),
        "kernel(a, b) for two 1-D arrays of the same dtype (float32, float16 or int8) and length.\n"
        "kernel is 'dot', 'l2sq' or 'cosine' (a similarity, 0 if either vector is zero).");

  m.def("distance_many", &distance_many, py::arg("query"), py::arg("base"), py::arg("kernel"),
        "kernel(query, row) for every row of the 2-D array base, as a float32 array.");

  m.def("dot_matrix", &dot_matrix, py::arg("points"), py::arg("vectors"),
        "points @ vectors.T for two 2-D float32 arrays, by the tiled kernel k-means assigns with.");
}

}  // namespace lookalike::bindings
