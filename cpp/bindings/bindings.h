// One registration function per component of the native core, and what they share.
#pragma once

#include <pybind11/pybind11.h>

namespace lookalike::bindings {

// What fn returns, computed without the GIL (which the caller holds): for
// calls that may wait for a lock a long native call holds.
template <class Fn>
auto without_gil(Fn&& fn) {
  pybind11::gil_scoped_release nogil;
  return fn();
}

void bind_distance(pybind11::module_& m);
void bind_hnsw(pybind11::module_& m);
void bind_filter(pybind11::module_& m);  // after bind_hnsw: its filters derive from hnsw.Filter
void bind_pq(pybind11::module_& m);  // after bind_hnsw: uses its Filter and errors

}  // namespace lookalike::bindings
