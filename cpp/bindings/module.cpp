// The Python module lookalike._core. Each component registers its own bindings;
// this file only wires them together and maps C++ errors to Python exceptions.
#include <pybind11/pybind11.h>

#include <string_view>

#include "bindings/bindings.h"
#include "io/crc32c.h"
#include "io/file_format.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "lookalike native core: SIMD distance kernels and ANN indexes";
  // std::invalid_argument -> ValueError, std::out_of_range -> IndexError and
  // std::runtime_error -> RuntimeError come from pybind11's defaults.
  py::register_exception<lookalike::io::FormatError>(m, "IndexFileError", PyExc_ValueError);
  lookalike::bindings::bind_distance(m);
  lookalike::bindings::bind_hnsw(m);
  lookalike::bindings::bind_filter(m);
  lookalike::bindings::bind_pq(m);
  m.def(
      "crc32c",
      [](const py::bytes& data, uint32_t crc, bool portable) {
        const std::string_view b = data;
        py::gil_scoped_release nogil;
        return portable ? lookalike::io::crc32c_portable(b.data(), b.size(), crc)
                        : lookalike::io::crc32c(b.data(), b.size(), crc);
      },
      py::arg("data"), py::arg("crc") = 0, py::arg("portable") = false,
      "CRC32C of bytes, the checksum of lookalike files; `crc` chains calls. portable=True forces the table-driven "
      "version (tests compare the two).");
}
