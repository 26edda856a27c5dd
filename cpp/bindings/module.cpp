// The Python module lookalike._core. Each component registers its own bindings;
// this file only wires them together and maps C++ errors to Python exceptions.
#include <pybind11/pybind11.h>

#include "bindings/bindings.h"
#include "io/file_format.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "lookalike native core: SIMD distance kernels and ANN indexes";
  // std::invalid_argument -> ValueError, std::out_of_range -> IndexError and
  // std::runtime_error -> RuntimeError come from pybind11's defaults.
  py::register_exception<lookalike::io::FormatError>(m, "IndexFileError", PyExc_ValueError);
  lookalike::bindings::bind_distance(m);
  lookalike::bindings::bind_hnsw(m);
  lookalike::bindings::bind_pq(m);
}
