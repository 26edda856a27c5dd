// Bindings of cpp/pq: the IVF-PQ index, and the product quantizer, k-means and
// ADC scans on their own (for tests against numpy references and across SIMD
// levels). Same conventions as bind_hnsw.cpp: exact dtypes in (the Python face
// converts and checks), results allocated before the GIL is released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>

#include "bindings/bindings.h"
#include "bindings/convert.h"
#include "distance/distance.h"
#include "pq/adc_kernels.h"
#include "pq/fast_scan.h"
#include "pq/ivf_pq.h"
#include "pq/kmeans.h"
#include "pq/product_quantizer.h"
#include "pq/rabitq.h"
#include "pq/rabitq_ex.h"

namespace py = pybind11;

namespace lookalike::bindings {

using pq::IvfPqIndex;

namespace {

// rabitq.h's weights of a metric: distance ~= offset + square_weight |r|^2 - linear_weight |r| <o, v>.
pq::RabitqWeights weights_of(const std::string& metric, float offset, float sigmas) {
  pq::RabitqWeights w;
  w.offset = offset;
  w.sigmas = sigmas;
  if (metric == "ip") {
    w.linear_weight = 1;
  } else if (metric == "l2" || metric == "cosine") {
    w.square_weight = metric == "l2" ? 1.0f : 0.5f;
    w.linear_weight = 2 * w.square_weight;
  } else {
    throw std::invalid_argument("metric must be 'l2', 'cosine' or 'ip'");
  }
  return w;
}

void bind_building_blocks(py::module_& m) {
  m.def(
      "kmeans",
      [](const CArray<float>& x, size_t k, size_t iterations, size_t max_points_per_centroid, uint64_t seed,
         size_t threads) {
        if (x.ndim() != 2) throw std::invalid_argument("expected points of shape (n, dim)");
        const size_t n = size_t(x.shape(0)), dim = size_t(x.shape(1));
        pq::KMeansParams p{k, iterations, max_points_per_centroid, seed, threads};
        std::vector<float> c;
        {
          py::gil_scoped_release nogil;
          c = pq::kmeans(x.data(), n, dim, p);
        }
        CArray<float> out({k, dim});
        std::copy(c.begin(), c.end(), out.mutable_data());
        return out;
      },
      py::arg("x"), py::arg("k"), py::arg("iterations"), py::arg("max_points_per_centroid"), py::arg("seed"),
      py::arg("threads"));

  py::class_<pq::ProductQuantizer>(m, "ProductQuantizer")
      .def(py::init<size_t, size_t, size_t>(), py::arg("dim"), py::arg("m"), py::arg("nbits"))
      .def(
          "train",
          [](pq::ProductQuantizer& q, const CArray<float>& x, uint64_t seed, size_t threads, size_t iterations) {
            const size_t n = rows_of(x, q.dim(), "vectors");
            py::gil_scoped_release nogil;
            q.train(x.data(), n, seed, threads, iterations);
          },
          py::arg("x"), py::arg("seed"), py::arg("threads"), py::arg("iterations"))
      .def("encode",
           [](const pq::ProductQuantizer& q, const CArray<float>& x) {
             const size_t n = rows_of(x, q.dim(), "vectors");
             CArray<uint8_t> out({n, q.m()});
             uint8_t* dst = out.mutable_data();
             {
               py::gil_scoped_release nogil;
               q.encode(x.data(), n, dst, 0);
             }
             return out;
           })
      .def("decode",
           [](const pq::ProductQuantizer& q, const CArray<uint8_t>& codes) {
             const size_t n = rows_of(codes, q.m(), "codes");
             for (py::ssize_t i = 0; i < codes.size(); ++i)
               if (codes.data()[i] >= q.ksub()) throw std::invalid_argument("a code is out of range for nbits");
             CArray<float> out({n, q.dim()});
             float* dst = out.mutable_data();
             {
               py::gil_scoped_release nogil;
               q.decode(codes.data(), n, dst);
             }
             return out;
           })
      .def(
          "compute_lut",
          [](const pq::ProductQuantizer& q, const CArray<float>& query, const std::string& kind) {
            rows_of(query, q.dim(), "a query", true);
            if (kind != "l2" && kind != "ip") throw std::invalid_argument("kind must be 'l2' or 'ip'");
            CArray<float> out({q.m(), q.ksub()});
            q.compute_lut(query.data(), kind == "l2" ? pq::LutKind::L2 : pq::LutKind::NegInnerProduct,
                          out.mutable_data());
            return out;
          },
          py::arg("query"), py::arg("kind"))
      .def_property_readonly(
          "centroids",
          [](const pq::ProductQuantizer& q) -> py::object {
            // (m, ksub, dim / m) when the sub-spaces are even; else one (ksub, width) array a sub-space.
            auto block = [&](size_t s) {
              CArray<float> out({q.ksub(), q.sub_dim(s)});
              const float* from = q.centroids().data() + q.ksub() * q.sub_begin(s);
              std::copy_n(from, q.ksub() * q.sub_dim(s), out.mutable_data());
              return out;
            };
            if (q.even()) {
              CArray<float> out({q.m(), q.ksub(), q.dim() / q.m()});
              std::copy(q.centroids().begin(), q.centroids().end(), out.mutable_data());
              return std::move(out);
            }
            py::list books;
            for (size_t s = 0; s < q.m(); ++s) books.append(block(s));
            return std::move(books);
          })
      .def_property_readonly("m", &pq::ProductQuantizer::m)
      .def_property_readonly("nbits", &pq::ProductQuantizer::nbits);

  m.def(
      "pq_scan8",
      [](const CArray<float>& lut, const CArray<uint8_t>& codes) {
        if (lut.ndim() != 2 || lut.shape(1) != 256) throw std::invalid_argument("lut must have shape (m, 256)");
        const size_t mm = size_t(lut.shape(0)), n = rows_of(codes, mm, "codes");
        CArray<float> out{py::ssize_t(n)};
        pq::adc_kernels().scan8(lut.data(), codes.data(), n, mm, out.mutable_data());
        return out;
      },
      py::arg("lut"), py::arg("codes"), "8-bit ADC distances of codes (n, m) under lut (m, 256), active SIMD level.");

  m.def(
      "pq_fastscan4",
      [](const CArray<uint8_t>& qlut, const CArray<uint8_t>& codes) {
        if (qlut.ndim() != 2 || qlut.shape(1) != 16) throw std::invalid_argument("qlut must have shape (m, 16)");
        const size_t mm = size_t(qlut.shape(0)), n = rows_of(codes, mm, "codes");
        if (mm > pq::kMaxFastScanM) throw std::invalid_argument("m is too large for fast-scan");
        const size_t blocks = (n + pq::kFastScanBlock - 1) / pq::kFastScanBlock;
        std::vector<uint8_t> packed(blocks * pq::fast_scan_block_bytes(mm), 0);
        for (size_t i = 0; i < n; ++i)
          pq::fast_scan_put(packed.data() + i / 32 * pq::fast_scan_block_bytes(mm), mm, i % 32, codes.data() + i * mm);
        std::vector<uint16_t> sums(blocks * pq::kFastScanBlock);
        pq::adc_kernels().fastscan4(qlut.data(), packed.data(), blocks, mm, sums.data());
        CArray<uint16_t> out{py::ssize_t(n)};
        std::copy_n(sums.begin(), n, out.mutable_data());
        return out;
      },
      py::arg("qlut"), py::arg("codes"),
      "4-bit fast-scan sums of codes (n, m) (values < 16) under uint8 tables (m, 16), active SIMD level.");

  m.def(
      "pq_quantize_lut",
      [](const CArray<float>& lut) {
        if (lut.ndim() != 2 || lut.shape(1) != 16) throw std::invalid_argument("lut must have shape (m, 16)");
        CArray<uint8_t> out({lut.shape(0), py::ssize_t(16)});
        const pq::QuantizedLut q = pq::quantize_lut(lut.data(), size_t(lut.shape(0)), out.mutable_data());
        return py::make_tuple(out, q.bias, q.scale);
      },
      py::arg("lut"), "uint8 tables, bias and scale: distance ~= bias + scale * sum of entries.");

  m.def(
      "rabitq_rotate",
      [](const CArray<float>& x, uint64_t seed) {
        if (x.ndim() != 2) throw std::invalid_argument("expected vectors of shape (n, dim)");
        const size_t n = size_t(x.shape(0)), dim = size_t(x.shape(1));
        const pq::HadamardRotation rotation(dim, seed);
        CArray<float> out({n, rotation.padded_dim()});
        for (size_t i = 0; i < n; ++i)
          rotation.apply(x.data() + i * dim, out.mutable_data() + i * rotation.padded_dim());
        return out;
      },
      py::arg("x"), py::arg("seed"), "The structured random rotation of each row, zero-padded to a power of two.");

  m.def(
      "rabitq_tables",
      [](const CArray<float>& v) {
        if (v.ndim() != 1 || v.shape(0) < 4 || v.shape(0) % 4) throw std::invalid_argument("v must be (4 g,) floats");
        pq::RabitqQueryTables tables;
        tables.build(v.data(), size_t(v.shape(0)));
        CArray<uint8_t> out({v.shape(0) / 4, py::ssize_t(16)});
        std::copy(tables.qlut.begin(), tables.qlut.end(), out.mutable_data());
        return py::make_tuple(out, tables.quantized.bias, tables.quantized.scale);
      },
      py::arg("v"), "RaBitQ's uint8 tables of v at the active SIMD level, their bias and scale.");

  m.def(
      "rabitq_estimates",
      [](const CArray<float>& residuals, const CArray<float>& v, const std::string& metric, float offset,
         float sigmas) {
        // Codes of rotated residuals (n, D) packed for fast-scan, scanned at the
        // active SIMD level under the tables of v (D,), as the index scans a cell.
        if (residuals.ndim() != 2) throw std::invalid_argument("expected residuals of shape (n, D)");
        const size_t n = size_t(residuals.shape(0)), padded = size_t(residuals.shape(1));
        if (padded < 4 || (padded & (padded - 1))) throw std::invalid_argument("D must be a power of two >= 4");
        rows_of(v, padded, "v", true);
        const size_t groups = pq::rabitq_groups(padded);
        if (groups > pq::kMaxFastScanM) throw std::invalid_argument("D is too large for fast-scan");
        const size_t blocks = (n + pq::kFastScanBlock - 1) / pq::kFastScanBlock;
        std::vector<uint8_t> packed(blocks * pq::fast_scan_block_bytes(groups), 0), code(groups);
        std::vector<uint16_t> norms(n), sums(blocks * pq::kFastScanBlock);
        std::vector<uint8_t> cosines(n);
        std::vector<float> decoded(n);
        for (size_t i = 0; i < n; ++i) {
          pq::rabitq_encode(residuals.data() + i * padded, padded, code.data(), norms[i], cosines[i]);
          pq::fast_scan_put(packed.data() + i / 32 * pq::fast_scan_block_bytes(groups), groups, i % 32, code.data());
        }
        pq::RabitqQueryTables tables;
        tables.build(v.data(), padded);
        pq::adc_kernels().fastscan4(tables.qlut.data(), packed.data(), blocks, groups, sums.data());
        const pq::RabitqWeights w = weights_of(metric, offset, sigmas);
        CArray<float> est{py::ssize_t(n)}, err{py::ssize_t(n)};
        for (size_t i = 0; i < n; ++i) decoded[i] = distance::f16_to_f32(norms[i]);
        pq::rabitq_estimate(tables, w, sums.data(), decoded.data(), cosines.data(), n, est.mutable_data(),
                            err.mutable_data());
        return py::make_tuple(est, err);
      },
      py::arg("residuals"), py::arg("v"), py::arg("metric"), py::arg("offset"), py::arg("sigmas"),
      "RaBitQ distance estimates and error bounds of rotated residuals under the query-side vector v: "
      "offset + square_weight |r|^2 - linear_weight |r| <o, v> (rabitq.h).");

  m.def(
      "rabitq_ex_encode",
      [](const CArray<float>& residuals, size_t ex_bits) {
        if (residuals.ndim() != 2) throw std::invalid_argument("expected residuals of shape (n, D)");
        const size_t n = size_t(residuals.shape(0)), padded = size_t(residuals.shape(1));
        if (padded < 4 || (padded & (padded - 1))) throw std::invalid_argument("D must be a power of two >= 4");
        if (ex_bits < 1 || ex_bits > pq::kMaxExBits) throw std::invalid_argument("ex_bits must be 1 to 7");
        const size_t row = pq::rabitq_ex_row_bytes(padded, ex_bits);
        CArray<uint8_t> out({n, row});
        uint8_t* dst = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          for (size_t i = 0; i < n; ++i) pq::rabitq_ex_encode(residuals.data() + i * padded, padded, ex_bits, dst + i * row);
        }
        return out;
      },
      py::arg("residuals"), py::arg("ex_bits"),
      "Extended RaBitQ rows (rabitq_ex.h: 3 float32 factors, then 1 + ex_bits bit planes) of rotated residuals.");

  m.def(
      "rabitq_ex_estimates",
      [](const CArray<uint8_t>& rows, const CArray<float>& v, size_t ex_bits, const std::string& metric, float offset,
         float sigmas) {
        const size_t padded = size_t(v.ndim() == 1 ? v.shape(0) : 0);
        if (padded < 4 || (padded & (padded - 1))) throw std::invalid_argument("v must be (D,), D a power of two >= 4");
        if (ex_bits < 1 || ex_bits > pq::kMaxExBits) throw std::invalid_argument("ex_bits must be 1 to 7");
        const size_t row = pq::rabitq_ex_row_bytes(padded, ex_bits);
        const size_t n = rows_of(rows, row, "rows");
        const pq::RabitqWeights w = weights_of(metric, offset, sigmas);
        pq::RabitqExQuery q;
        q.v = v.data();
        q.padded_dim = padded;
        q.ex_bits = ex_bits;
        double norm2 = 0;
        for (size_t i = 0; i < padded; ++i) norm2 += double(v.data()[i]) * v.data()[i];
        q.v_norm = float(std::sqrt(norm2));
        q.offset = w.offset;
        q.square_weight = w.square_weight;
        q.linear_weight = w.linear_weight;
        q.sigmas = w.sigmas;
        CArray<float> est{py::ssize_t(n)}, err{py::ssize_t(n)};
        for (size_t i = 0; i < n; ++i)
          pq::rabitq_ex_estimate(q, rows.data() + i * row, est.mutable_data()[i], err.mutable_data()[i]);
        return py::make_tuple(est, err);
      },
      py::arg("rows"), py::arg("v"), py::arg("ex_bits"), py::arg("metric"), py::arg("offset"), py::arg("sigmas"),
      "Extended RaBitQ estimates and bounds of rows (rabitq_ex_encode) under v, at the active SIMD level.");

  m.def(
      "rabitq_ex_dot",
      [](const CArray<float>& v, const CArray<uint8_t>& planes, float centre) {
        if (v.ndim() != 1 || planes.ndim() != 2) throw std::invalid_argument("expected v (D,) and planes (B, D / 8)");
        const size_t dim = size_t(v.shape(0));
        if (size_t(planes.shape(1)) != (dim + 7) / 8) throw std::invalid_argument("planes must hold ceil(D / 8) bytes each");
        return pq::adc_kernels().rabitq_ex_dot(v.data(), planes.data(), size_t(planes.shape(0)), dim, centre);
      },
      py::arg("v"), py::arg("planes"), py::arg("centre"),
      "sum of v[i] * (c_i - centre), c_i the code of dimension i in bit planes, at the active SIMD level.");
}

py::dict memory_dict(const pq::IvfMemoryUsage& u) {
  py::dict d;
  d["code_bytes"] = u.code_bytes;
  d["factor_bytes"] = u.factor_bytes;
  d["list_slot_bytes"] = u.list_slot_bytes;
  d["list_header_bytes"] = u.list_header_bytes;
  d["id_bytes"] = u.id_bytes;
  d["id_map_bytes"] = u.id_map_bytes;
  d["deleted_bytes"] = u.deleted_bytes;
  d["centroid_bytes"] = u.centroid_bytes;
  d["coarse_graph_bytes"] = u.coarse_graph_bytes;
  d["total_bytes"] = u.total_bytes;
  d["vector_file_bytes"] = u.vector_file_bytes;
  d["ex_code_file_bytes"] = u.ex_code_file_bytes;
  d["live"] = u.live;
  d["deleted"] = u.deleted;
  d["slots"] = u.slots;
  return d;
}

}  // namespace

void bind_pq(py::module_& m) {
  bind_building_blocks(m);

  py::class_<IvfPqIndex> index_class(m, "IvfPqIndex");
  def_id_methods<IvfPqIndex>(index_class);
  index_class
      .def(py::init([](size_t dim, const std::string& metric, size_t nlist, size_t mm, size_t nbits, size_t nprobe,
                       size_t rerank_k, uint64_t seed, size_t coarse_graph_min_nlist,
                       const std::string& vectors_path, const std::string& code, float bound_sigmas,
                       size_t ex_bits) {
             pq::IvfPqConfig c;
             c.dim = dim;
             c.metric = parse_metric(metric);
             c.nlist = nlist;
             c.m = mm;
             c.nbits = nbits;
             c.nprobe = nprobe;
             c.rerank_k = rerank_k;
             c.seed = seed;
             c.coarse_graph_min_nlist = coarse_graph_min_nlist;
             if (code != "pq" && code != "rabitq") throw std::invalid_argument("code must be 'pq' or 'rabitq'");
             c.code = code == "pq" ? pq::IvfCode::Pq : pq::IvfCode::RaBitQ;
             c.bound_sigmas = bound_sigmas;
             c.ex_bits = ex_bits;
             return std::make_unique<IvfPqIndex>(c, vectors_path);
           }),
           py::arg("dim"), py::arg("metric"), py::arg("nlist"), py::arg("m"), py::arg("nbits"), py::arg("nprobe"),
           py::arg("rerank_k"), py::arg("seed"), py::arg("coarse_graph_min_nlist"), py::arg("vectors_path"),
           py::arg("code") = "pq", py::arg("bound_sigmas") = 2.0f, py::arg("ex_bits") = 0)
      .def(
          "train",
          [](IvfPqIndex& ix, const CArray<float>& vectors, size_t threads) {
            const size_t n = rows_of(vectors, ix.config().dim, "vectors");
            py::gil_scoped_release nogil;
            ix.train(vectors.data(), n, threads);
          },
          py::arg("vectors"), py::arg("threads"))
      .def_property_readonly("trained", &IvfPqIndex::trained)
      .def(
          "search",
          [](const IvfPqIndex& ix, const CArray<float>& queries, size_t k, size_t nprobe, size_t rerank_k,
             const hnsw::Filter* filter, bool rerank, size_t threads, const hnsw::StopToken* stop,
             float bound_sigmas) {
            const bool single = queries.ndim() == 1;
            const size_t n = rows_of(queries, ix.config().dim, "queries", true);
            pq::IvfSearchParams p;
            p.k = k;
            p.nprobe = nprobe;
            p.rerank_k = rerank_k;
            p.filter = filter;
            p.rerank = rerank;
            p.stop = stop;
            p.bound_sigmas = bound_sigmas;
            KnnArrays out(single, n, k);
            int64_t* id_out = out.ids.mutable_data();
            float* dist_out = out.dists.mutable_data();
            {
              py::gil_scoped_release nogil;
              if (n == 1)
                ix.search(queries.data(), p, id_out, dist_out);
              else
                ix.search_batch(queries.data(), n, p, id_out, dist_out, threads);
            }
            return py::make_tuple(out.ids, out.dists);
          },
          py::arg("queries"), py::arg("k"), py::arg("nprobe"), py::arg("rerank_k"), py::arg("filter"),
          py::arg("rerank"), py::arg("threads"), py::arg("stop") = nullptr, py::arg("bound_sigmas") = 0.0f)
      .def(
          "probes",
          [](const IvfPqIndex& ix, const CArray<float>& query, size_t nprobe) {
            rows_of(query, ix.config().dim, "query", true);
            if (query.ndim() != 1) throw std::invalid_argument("probes takes one query (a 1-d array)");
            std::vector<uint32_t> cells(nprobe);
            size_t found;
            {
              py::gil_scoped_release nogil;
              found = ix.probes(query.data(), nprobe, cells.data());
            }
            CArray<uint32_t> out({found});
            std::copy_n(cells.begin(), found, out.mutable_data());
            return out;
          },
          py::arg("query"), py::arg("nprobe"))
      .def_property_readonly("has_coarse_graph", &IvfPqIndex::has_coarse_graph)
      .def("compact", &IvfPqIndex::compact, py::call_guard<py::gil_scoped_release>())
      .def("save", &IvfPqIndex::save, py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def_static("load", &IvfPqIndex::load, py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def("verify", &IvfPqIndex::verify, py::call_guard<py::gil_scoped_release>())
      // These wait for the index's lock, which training and writes hold for long:
      // without the GIL, so that other Python threads run meanwhile.
      .def("memory_usage",
           [](const IvfPqIndex& ix) { return memory_dict(without_gil([&] { return ix.memory_usage(); })); })
      .def("__len__", &IvfPqIndex::size, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly(
          "deleted_count", py::cpp_function(&IvfPqIndex::deleted_count, py::call_guard<py::gil_scoped_release>()))
      .def_property_readonly("dim", [](const IvfPqIndex& ix) { return ix.config().dim; })
      .def_property_readonly("metric", [](const IvfPqIndex& ix) { return hnsw::metric_name(ix.config().metric); })
      .def_property_readonly("nlist", [](const IvfPqIndex& ix) { return ix.config().nlist; })
      .def_property_readonly("m", [](const IvfPqIndex& ix) { return ix.config().m; })
      .def_property_readonly("nbits", [](const IvfPqIndex& ix) { return ix.config().nbits; })
      .def_property_readonly(
          "code", [](const IvfPqIndex& ix) { return ix.config().code == pq::IvfCode::Pq ? "pq" : "rabitq"; })
      .def_property_readonly("bound_sigmas", [](const IvfPqIndex& ix) { return ix.config().bound_sigmas; })
      .def_property_readonly("rows_read", &IvfPqIndex::rows_read)
      .def_property_readonly("ex_rows_read", &IvfPqIndex::ex_rows_read)
      .def_property_readonly("ex_bits", [](const IvfPqIndex& ix) { return ix.config().ex_bits; })
      .def_property("nprobe", [](const IvfPqIndex& ix) { return ix.config().nprobe; },
                    py::cpp_function(&IvfPqIndex::set_nprobe, py::call_guard<py::gil_scoped_release>()))
      .def_property("rerank_k", [](const IvfPqIndex& ix) { return ix.config().rerank_k; },
                    py::cpp_function(&IvfPqIndex::set_rerank_k, py::call_guard<py::gil_scoped_release>()))
      .def_property_readonly("seed", [](const IvfPqIndex& ix) { return ix.config().seed; });
}

}  // namespace lookalike::bindings
