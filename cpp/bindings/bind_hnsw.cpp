// Bindings of the HNSW index. Arrays come in with their exact dtype (the Python
// face in lookalike.index converts and checks them), results go out as numpy
// arrays allocated before the GIL is released and filled in place, and every
// call into the index runs without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "bindings/convert.h"
#include "hnsw/hnsw_index.h"

namespace py = pybind11;

namespace lookalike::bindings {

using hnsw::HnswIndex;
using hnsw::Metric;
using distance::Scalar;

namespace {

Scalar parse_storage(const std::string& name) {
  if (name == "float32") return Scalar::F32;
  if (name == "float16") return Scalar::F16;
  if (name == "int8") return Scalar::I8;
  throw std::invalid_argument("storage must be 'float32', 'float16' or 'int8', got '" + name + "'");
}

py::dict memory_dict(const hnsw::MemoryUsage& m) {
  py::dict d;
  d["node_bytes"] = m.node_bytes;
  d["upper_link_bytes"] = m.upper_link_bytes;
  d["rerank_vector_bytes"] = m.rerank_vector_bytes;
  d["sketch_bytes"] = m.sketch_bytes;
  d["group_bytes"] = m.group_bytes;
  d["id_map_bytes"] = m.id_map_bytes;
  d["scratch_bytes"] = m.scratch_bytes;
  d["total_bytes"] = m.total_bytes;
  d["live"] = m.live;
  d["deleted"] = m.deleted;
  d["capacity"] = m.capacity;
  return d;
}

}  // namespace

void bind_hnsw(py::module_& m) {
  py::register_exception<hnsw::UnknownIdError>(m, "UnknownIdError", PyExc_KeyError);
  py::register_exception<hnsw::DuplicateIdError>(m, "DuplicateIdError", PyExc_ValueError);

  auto stopped = py::register_exception<hnsw::SearchStopped>(m, "SearchStopped", PyExc_RuntimeError);
  py::register_exception<hnsw::DeadlineExceeded>(m, "DeadlineExceeded", stopped);
  py::register_exception<hnsw::SearchCancelled>(m, "SearchCancelled", stopped);
  py::class_<hnsw::StopToken>(m, "StopToken",
                              "Stops the searches it is passed to once cancelled or past its deadline.")
      .def(py::init([](std::optional<double> timeout) {
             if (!timeout) return std::make_unique<hnsw::StopToken>();
             if (std::isnan(*timeout)) throw std::invalid_argument("timeout is NaN");
             // Clamped so that a huge timeout cannot overflow the clock.
             const auto wait = std::chrono::duration<double>(std::clamp(*timeout, -1.0, 1e9));
             return std::make_unique<hnsw::StopToken>(
                 hnsw::StopToken::Clock::now() + std::chrono::duration_cast<hnsw::StopToken::Clock::duration>(wait));
           }),
           py::arg("timeout") = std::nullopt)
      .def("cancel", &hnsw::StopToken::cancel)
      .def_property_readonly("cancelled", &hnsw::StopToken::cancelled)
      .def_property_readonly("remaining", [](const hnsw::StopToken& t) -> std::optional<double> {
        if (!t.deadline()) return std::nullopt;
        return std::chrono::duration<double>(*t.deadline() - hnsw::StopToken::Clock::now()).count();
      });

  py::class_<hnsw::Filter>(m, "Filter", "A native predicate over ids, evaluated inside the search.");
  py::class_<hnsw::IdFilter, hnsw::Filter>(m, "IdFilter")
      .def(py::init([](const CArray<int64_t>& ids, bool exclude) {
             return std::make_unique<hnsw::IdFilter>(ids.data(), size_t(ids.size()), exclude);
           }),
           py::arg("ids"), py::arg("exclude") = false)
      .def("__len__", &hnsw::IdFilter::size)
      .def_property_readonly("exclude", &hnsw::IdFilter::exclude);

  py::class_<hnsw::SearchStats>(m, "SearchStats", "How one search went: the plan chosen, its estimate, its cost.")
      .def_property_readonly("plan", [](const hnsw::SearchStats& s) { return hnsw::plan_name(s.plan); })
      .def_property_readonly("estimate",
                             [](const hnsw::SearchStats& s) -> std::optional<size_t> {
                               if (s.estimate == hnsw::Filter::kUnknown) return std::nullopt;
                               return s.estimate;
                             })
      .def_readonly("ef", &hnsw::SearchStats::ef)
      .def_readonly("distances", &hnsw::SearchStats::distances)
      .def_readonly("fell_back", &hnsw::SearchStats::fell_back)
      .def_property_readonly("matches",
                             [](const hnsw::SearchStats& s) -> std::optional<size_t> {
                               if (s.matches == hnsw::Filter::kUnknown) return std::nullopt;
                               return s.matches;
                             })
      .def_property_readonly("driver",
                             [](const hnsw::SearchStats& s) -> std::optional<size_t> {
                               if (s.driver == hnsw::Filter::kUnknown) return std::nullopt;
                               return s.driver;
                             })
      .def_readonly("tested", &hnsw::SearchStats::tested)
      .def_readonly("estimates", &hnsw::SearchStats::estimates)
      .def_readonly("expansions", &hnsw::SearchStats::expansions)
      .def_readonly("group_size", &hnsw::SearchStats::group_size)
      .def("__repr__", [](const hnsw::SearchStats& s) {
        return std::string("SearchStats(plan='") + hnsw::plan_name(s.plan) + "', estimate=" +
               (s.estimate == hnsw::Filter::kUnknown ? "None" : std::to_string(s.estimate)) +
               ", ef=" + std::to_string(s.ef) + ", distances=" + std::to_string(s.distances) +
               ", fell_back=" + (s.fell_back ? "True" : "False") + ")";
      });

  py::class_<HnswIndex> index_class(m, "HnswIndex");
  def_id_methods<HnswIndex>(index_class);
  index_class
      .def(py::init([](size_t dim, const std::string& metric, const std::string& storage, size_t M,
                       size_t ef_construction, size_t ef_search, const std::string& rerank_copies,
                       uint64_t seed, bool sketches) {
             hnsw::IndexConfig c;
             c.dim = dim;
             c.metric = parse_metric(metric);
             c.storage = parse_storage(storage);
             c.M = M;
             c.ef_construction = ef_construction;
             c.ef_search = ef_search;
             if (!rerank_copies.empty()) c.rerank_copies = parse_storage(rerank_copies);
             c.seed = seed;
             c.sketches = sketches;
             return std::make_unique<HnswIndex>(c);
           }),
           py::arg("dim"), py::arg("metric"), py::arg("storage"), py::arg("M"), py::arg("ef_construction"),
           py::arg("ef_search"), py::arg("rerank_copies"), py::arg("seed"), py::arg("sketches") = true)
      .def(
          "search",
          [](const HnswIndex& ix, const CArray<float>& queries, size_t k, size_t ef, const hnsw::Filter* filter,
             bool rerank, bool exact, size_t threads, bool return_stats, const hnsw::StopToken* stop,
             const std::string& plan, float bound_sigmas) -> py::tuple {
            // One query (dim,) gives results of shape (k,); n queries, (n, k).
            const bool single = queries.ndim() == 1;
            const size_t n = rows_of(queries, ix.config().dim, "queries", true);
            hnsw::SearchParams p;
            p.k = k;
            p.ef = ef;
            p.filter = filter;
            p.rerank = rerank;
            p.exact = exact;
            p.stop = stop;
            p.plan = parse_plan(plan);
            if (!(bound_sigmas >= 0)) throw std::invalid_argument("bound_sigmas must be >= 0");
            p.bound_sigmas = bound_sigmas;
            KnnArrays out(single, n, k);
            int64_t* id_out = out.ids.mutable_data();
            float* dist_out = out.dists.mutable_data();
            std::vector<hnsw::SearchStats> stats(return_stats ? n : 0);
            hnsw::SearchStats* stats_out = return_stats ? stats.data() : nullptr;
            {
              py::gil_scoped_release nogil;
              if (n == 1)
                ix.search(queries.data(), p, id_out, dist_out, stats_out);
              else
                ix.search_batch(queries.data(), n, p, id_out, dist_out, threads, stats_out);
            }
            if (!return_stats) return py::make_tuple(out.ids, out.dists);
            if (single) return py::make_tuple(out.ids, out.dists, py::cast(stats[0]));
            return py::make_tuple(out.ids, out.dists, py::cast(stats));
          },
          py::arg("queries"), py::arg("k"), py::arg("ef"), py::arg("filter"), py::arg("rerank"), py::arg("exact"),
          py::arg("threads"), py::arg("return_stats") = false, py::arg("stop") = nullptr, py::arg("plan") = "",
          py::arg("bound_sigmas") = 0.0f)
      .def(
          "sketch_estimates",
          [](const HnswIndex& ix, const CArray<float>& query, const CArray<int64_t>& ids, float bound_sigmas) {
            rows_of(query, ix.config().dim, "query", true);
            if (query.ndim() != 1) throw std::invalid_argument("sketch_estimates takes one query");
            if (!(bound_sigmas >= 0)) throw std::invalid_argument("bound_sigmas must be >= 0");
            const size_t n = size_t(ids.size());
            py::array_t<float> est(n), err(n);
            float* e = est.mutable_data();
            float* b = err.mutable_data();
            {
              py::gil_scoped_release nogil;
              ix.sketch_estimates(query.data(), ids.data(), n, bound_sigmas, e, b);
            }
            return py::make_tuple(est, err);
          },
          py::arg("query"), py::arg("ids"), py::arg("bound_sigmas") = 0.0f,
          "The sketches' estimated distances of ids to one query, and their error bounds.")
      .def(
          "link_group",
          [](HnswIndex& ix, const std::string& key, const CArray<int64_t>& ids, size_t threads) {
            py::gil_scoped_release nogil;
            ix.link_group(key, ids.data(), size_t(ids.size()), threads);
          },
          py::arg("key"), py::arg("ids"), py::arg("threads") = 0)
      .def("drop_group", &HnswIndex::drop_group, py::arg("key"), py::call_guard<py::gil_scoped_release>())
      .def("groups", &HnswIndex::groups, py::call_guard<py::gil_scoped_release>())
      .def("compact", &HnswIndex::compact, py::call_guard<py::gil_scoped_release>())
      .def("unreachable_count", &HnswIndex::unreachable_count, py::call_guard<py::gil_scoped_release>(),
           "Live nodes a walk of level 0 from the entry point does not reach.")
      .def("save", &HnswIndex::save, py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def_static("load", &HnswIndex::load, py::arg("path"), py::call_guard<py::gil_scoped_release>())
      // compact() holds the graph's lock for long: wait for it without the GIL.
      .def("memory_usage",
           [](const HnswIndex& ix) { return memory_dict(without_gil([&] { return ix.memory_usage(); })); })
      .def("__len__", &HnswIndex::size, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("deleted_count", &HnswIndex::deleted_count)
      .def_property_readonly("dim", [](const HnswIndex& ix) { return ix.config().dim; })
      .def_property_readonly("metric", [](const HnswIndex& ix) { return hnsw::metric_name(ix.config().metric); })
      .def_property_readonly("storage", [](const HnswIndex& ix) { return hnsw::storage_name(ix.config().storage); })
      .def_property_readonly("M", [](const HnswIndex& ix) { return ix.config().M; })
      .def_property_readonly("ef_construction", [](const HnswIndex& ix) { return ix.config().ef_construction; })
      .def_property("ef_search", &HnswIndex::ef_search, &HnswIndex::set_ef_search)
      .def_property_readonly("rerank_copies",
                             [](const HnswIndex& ix) -> std::optional<std::string> {
                               if (!ix.config().rerank_copies) return std::nullopt;
                               return hnsw::storage_name(*ix.config().rerank_copies);
                             })
      .def_property_readonly("seed", [](const HnswIndex& ix) { return ix.config().seed; })
      .def_property_readonly("sketches", [](const HnswIndex& ix) { return ix.config().sketches; })
      .def_property_readonly("int8_scale", &HnswIndex::int8_scale);
}

}  // namespace lookalike::bindings
