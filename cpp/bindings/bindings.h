// One registration function per component of the native core.
#pragma once

#include <pybind11/pybind11.h>

namespace lookalike::bindings {

void bind_distance(pybind11::module_& m);
void bind_hnsw(pybind11::module_& m);
void bind_filter(pybind11::module_& m);  // after bind_hnsw: its filters derive from hnsw.Filter
void bind_pq(pybind11::module_& m);  // after bind_hnsw: uses its Filter and errors

}  // namespace lookalike::bindings
