// Bindings of the attribute store and its compiled filters. The Python face
// (lookalike.index.attributes / .filter) checks and shapes the input; here it
// is converted to the native types with the GIL held, and the store's work runs
// without it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "bindings/bindings.h"
#include "filter/attribute_store.h"
#include "filter/predicate.h"
#include "hnsw/search_stop.h"

namespace py = pybind11;

namespace lookalike::bindings {

using filter::AttributeStore;
using filter::AttributeType;
using filter::CompiledFilter;
using filter::FilterSpec;

namespace {

template <class T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <class T>
std::vector<T> to_vector(const py::handle& values) {
  CArray<T> a = py::cast<CArray<T>>(values);
  return std::vector<T>(a.data(), a.data() + a.size());
}

// (name, values, present or None) -> ColumnValues, with values of the attribute's type.
filter::ColumnValues column_values(const AttributeStore& store, const py::handle& item) {
  auto t = py::cast<py::tuple>(item);
  filter::ColumnValues c;
  c.name = py::cast<std::string>(t[0]);
  switch (store.schema()[store.column_of(c.name)].type) {
    case AttributeType::Keyword: c.values = py::cast<std::vector<std::vector<std::string>>>(t[1]); break;
    case AttributeType::Numeric: c.values = to_vector<double>(t[1]); break;
    case AttributeType::Bool: c.values = to_vector<uint8_t>(t[1]); break;
    case AttributeType::Timestamp: c.values = to_vector<int64_t>(t[1]); break;
  }
  if (!t[2].is_none()) c.present = to_vector<uint8_t>(t[2]);
  return c;
}

std::optional<FilterSpec::Number> bound(const py::handle& b) {
  if (b.is_none()) return std::nullopt;
  if (py::isinstance<py::int_>(b)) return FilterSpec::Number(py::cast<int64_t>(b));
  return FilterSpec::Number(py::cast<double>(b));
}

// The nested tuples of lookalike.index.filter (Filter._native) -> FilterSpec.
FilterSpec to_spec(const py::handle& node) {
  auto t = py::cast<py::tuple>(node);
  const std::string kind = py::cast<std::string>(t[0]);
  FilterSpec s;
  if (kind == "must" || kind == "should" || kind == "must_not") {
    s.kind = kind == "must" ? FilterSpec::Kind::Must
             : kind == "should" ? FilterSpec::Kind::Should
                                : FilterSpec::Kind::MustNot;
    for (const py::handle& child : py::cast<py::sequence>(t[1])) s.children.push_back(to_spec(child));
  } else if (kind == "match") {
    s.kind = FilterSpec::Kind::Match;
    s.attribute = py::cast<std::string>(t[1]);
    s.values = py::cast<std::vector<std::string>>(t[2]);
  } else if (kind == "range") {
    s.kind = FilterSpec::Kind::Range;
    s.attribute = py::cast<std::string>(t[1]);
    s.gt = bound(t[2]);
    s.gte = bound(t[3]);
    s.lt = bound(t[4]);
    s.lte = bound(t[5]);
  } else if (kind == "is") {
    s.kind = FilterSpec::Kind::Is;
    s.attribute = py::cast<std::string>(t[1]);
    s.flag = py::cast<bool>(t[2]);
  } else if (kind == "has_id") {
    s.kind = FilterSpec::Kind::HasId;
    s.ids = to_vector<int64_t>(t[1]);
  } else {
    throw std::invalid_argument("unknown filter clause '" + kind + "'");
  }
  return s;
}

}  // namespace

void bind_filter(py::module_& m) {
  py::register_exception<filter::UnknownAttributeError>(m, "UnknownAttributeError", PyExc_KeyError);
  py::register_exception<filter::AttributeTypeError>(m, "AttributeTypeError", PyExc_TypeError);

  py::class_<CompiledFilter, hnsw::Filter>(m, "CompiledFilter",
                                           "A filter compiled against an attribute store (AttributeStore.compile).")
      .def("allows",
           [](const CompiledFilter& f, int64_t id) {
             py::gil_scoped_release nogil;
             auto held = f.hold();
             return f.allows(id);
           })
      .def("estimate",
           [](const CompiledFilter& f) {
             py::gil_scoped_release nogil;
             auto held = f.hold();
             return f.estimate();
           })
      .def(
          "candidates",
          [](const CompiledFilter& f, size_t limit) -> std::optional<std::vector<int64_t>> {
            std::vector<int64_t> ids;
            py::gil_scoped_release nogil;
            auto held = f.hold();
            if (!f.candidates(limit, ids)) return std::nullopt;
            return ids;
          },
          py::arg("limit"),
          "The ids the filter allows (repeats possible), or None when it cannot list them within `limit` "
          "looked at.")
      .def(
          "plan",
          [](const CompiledFilter& f, size_t build_limit, const hnsw::StopToken* stop, bool with_matches) {
            hnsw::MatchSet set;
            hnsw::FilterPlan plan;
            {
              py::gil_scoped_release nogil;
              auto held = f.hold();
              plan = f.plan(build_limit, set, stop);
            }
            auto known = [](size_t n) -> py::object {
              return n == hnsw::FilterPlan::kUnknown ? py::object(py::none()) : py::object(py::int_(n));
            };
            py::dict out;
            out["estimate"] = known(plan.estimate);
            out["driver"] = known(plan.driver);
            out["build"] = known(plan.build);
            out["built_by"] = plan.built ? py::object(py::str(plan.as_bitmaps ? "bitmaps" : "listing")) : py::none();
            out["form"] = plan.built ? py::object(py::str(set.is_bitmap() ? "bitmap" : "sorted")) : py::none();
            out["matches"] = py::none();
            if (plan.built && with_matches) {
              std::vector<int64_t> ids;
              set.for_each([&](int64_t id) { ids.push_back(id); });
              out["matches"] = py::array_t<int64_t>(py::ssize_t(ids.size()), ids.data());
            }
            return out;
          },
          py::arg("build_limit"), py::arg("stop") = nullptr, py::arg("with_matches") = true,
          "What a search's planner reads: {'estimate', 'driver', 'build', 'built_by', 'matches', 'form'}. "
          "driver: the ids the cheapest clause lists; build: what building the match set costs, in ids of "
          "the driver listed; when that is no more than build_limit, the set is built (built_by: 'listing' "
          "or 'bitmaps', whichever costs less), matches holds the allowed ids in increasing order (form: "
          "'bitmap' or 'sorted', by density; None with with_matches=False, which skips copying them out) "
          "and estimate their count; else matches is None and estimate is measured on a sample of the "
          "driver. stop (a StopToken): raises as a search does once it is cancelled or past its deadline, "
          "also while listing.");

  py::class_<AttributeStore, std::shared_ptr<AttributeStore>>(m, "AttributeStore")
      .def(py::init([](const std::vector<std::pair<std::string, std::string>>& schema) {
             std::vector<filter::AttributeSpec> specs;
             for (const auto& [name, type] : schema) specs.push_back({name, filter::parse_type(type)});
             return std::make_shared<AttributeStore>(std::move(specs));
           }),
           py::arg("schema"))
      .def_property_readonly("schema",
                             [](const AttributeStore& s) {
                               std::vector<std::pair<std::string, std::string>> out;
                               for (const auto& a : s.schema()) out.emplace_back(a.name, filter::type_name(a.type));
                               return out;
                             })
      .def(
          "set",
          [](AttributeStore& s, const CArray<int64_t>& ids, const py::list& columns) {
            std::vector<filter::ColumnValues> values;
            for (const py::handle& c : columns) values.push_back(column_values(s, c));
            py::gil_scoped_release nogil;
            s.set(ids.data(), size_t(ids.size()), values);
          },
          py::arg("ids"), py::arg("columns"))
      .def(
          "clear",
          [](AttributeStore& s, const CArray<int64_t>& ids, const std::vector<std::string>& names) {
            py::gil_scoped_release nogil;
            s.clear(ids.data(), size_t(ids.size()), names);
          },
          py::arg("ids"), py::arg("names"))
      .def("get", &AttributeStore::get, py::arg("id"), py::call_guard<py::gil_scoped_release>())
      .def(
          "ids_with",
          [](const AttributeStore& s, const std::string& name, const std::string& word) {
            std::vector<int64_t> ids = without_gil([&] { return s.ids_with(name, word); });
            return py::array_t<int64_t>(py::ssize_t(ids.size()), ids.data());
          },
          py::arg("name"), py::arg("word"))
      .def("count_with", &AttributeStore::count_with, py::arg("name"), py::arg("word"),
           py::call_guard<py::gil_scoped_release>())
      .def("word_counts", &AttributeStore::word_counts, py::arg("name"), py::call_guard<py::gil_scoped_release>())
      .def(
          "compile",
          [](std::shared_ptr<AttributeStore> s, const py::handle& spec) {
            FilterSpec native = to_spec(spec);
            py::gil_scoped_release nogil;
            return std::make_unique<CompiledFilter>(std::move(s), native);
          },
          py::arg("spec"))
      .def("memory_usage",
           [](const AttributeStore& s) {
             const filter::StoreMemory mem = without_gil([&] { return s.memory_usage(); });
             py::dict columns;
             for (size_t i = 0; i < mem.column_bytes.size(); ++i) columns[py::str(s.schema()[i].name)] = mem.column_bytes[i];
             py::dict d;
             d["id_map_bytes"] = mem.id_map_bytes;
             d["column_bytes"] = columns;
             d["total_bytes"] = mem.total_bytes;
             d["ids"] = mem.ids;
             d["rows"] = mem.rows;
             return d;
           })
      .def("save", &AttributeStore::save, py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def_static(
          "load", [](const std::string& path) { return std::shared_ptr<AttributeStore>(AttributeStore::load(path)); },
          py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def("__len__", &AttributeStore::size, py::call_guard<py::gil_scoped_release>());
}

}  // namespace lookalike::bindings
