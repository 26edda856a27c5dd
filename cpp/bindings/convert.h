// Conversions the index bindings share: numpy arrays in (checked against the
// index's dimension) and out (allocated before the GIL is released, filled in
// place), and the metric's name.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "hnsw/hnsw_index.h"
#include "hnsw/vector_codec.h"

namespace lookalike::bindings {

template <class T>
using CArray = pybind11::array_t<T, pybind11::array::c_style>;

// Rows of a (n, width) array; with allow_1d, a (width,) array is one row.
inline size_t rows_of(const pybind11::array& a, size_t width, const char* what, bool allow_1d = false) {
  if (allow_1d && a.ndim() == 1 && size_t(a.shape(0)) == width) return 1;
  if (a.ndim() != 2 || size_t(a.shape(1)) != width)
    throw std::invalid_argument(std::string("expected ") + what + " of shape (n, " + std::to_string(width) + ")");
  return size_t(a.shape(0));
}

inline void check_id_count(const CArray<int64_t>& ids, size_t n) {
  if (size_t(ids.size()) != n)
    throw std::invalid_argument("got " + std::to_string(ids.size()) + " ids for " + std::to_string(n) + " vectors");
}

// The ids and distances of a k-NN search: shape (k,) for one query given as a
// 1-D array, (n, k) otherwise.
struct KnnArrays {
  CArray<int64_t> ids;
  CArray<float> dists;

  KnnArrays(bool single, size_t n, size_t k)
      : ids(shape(single, n, k)), dists(shape(single, n, k)) {}

 private:
  static std::vector<pybind11::ssize_t> shape(bool single, size_t n, size_t k) {
    if (single) return {pybind11::ssize_t(k)};
    return {pybind11::ssize_t(n), pybind11::ssize_t(k)};
  }
};

// The writes and reads by id every index offers alike (add with replace, remove,
// contains, get), bound on `cls` for an index type with those methods and config().dim.
template <class Index, class Class>
void def_id_methods(Class& cls) {
  namespace py = pybind11;
  cls.def(
         "add",
         [](Index& ix, const CArray<int64_t>& ids, const CArray<float>& vectors, bool replace, size_t threads) {
           const size_t n = rows_of(vectors, ix.config().dim, "vectors");
           check_id_count(ids, n);
           py::gil_scoped_release nogil;
           ix.add(ids.data(), vectors.data(), n, replace, threads);
         },
         py::arg("ids"), py::arg("vectors"), py::arg("replace"), py::arg("threads"))
      .def(
          "remove",
          [](Index& ix, const CArray<int64_t>& ids) {
            py::gil_scoped_release nogil;
            ix.remove(ids.data(), size_t(ids.size()));
          },
          py::arg("ids"))
      .def("contains", &Index::contains, py::arg("id"), py::call_guard<py::gil_scoped_release>())
      .def(
          "get",
          [](const Index& ix, const CArray<int64_t>& ids) {
            CArray<float> out({size_t(ids.size()), ix.config().dim});
            float* dst = out.mutable_data();
            {
              py::gil_scoped_release nogil;
              ix.get(ids.data(), size_t(ids.size()), dst);
            }
            return out;
          },
          py::arg("ids"));
}

inline hnsw::Metric parse_metric(const std::string& name) {
  if (name == "l2") return hnsw::Metric::L2;
  if (name == "ip") return hnsw::Metric::InnerProduct;
  if (name == "cosine") return hnsw::Metric::Cosine;
  throw std::invalid_argument("metric must be 'cosine', 'ip' or 'l2', got '" + name + "'");
}

// A filtered search's plan as the caller forces it: "" lets the planner choose.
inline hnsw::Plan parse_plan(const std::string& name) {
  if (name.empty()) return hnsw::Plan::Graph;
  for (hnsw::Plan plan :
       {hnsw::Plan::ExactScan, hnsw::Plan::FilteredGraph, hnsw::Plan::TwoHopGraph, hnsw::Plan::GroupGraph})
    if (name == hnsw::plan_name(plan)) return plan;
  throw std::invalid_argument("plan must be 'exact_scan', 'filtered_graph', 'two_hop_graph' or 'group_graph', got '" +
                              name + "'");
}

}  // namespace lookalike::bindings
