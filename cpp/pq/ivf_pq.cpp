#include "pq/ivf_pq.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <string>
#include <unordered_set>

#include "distance/distance.h"
#include "hnsw/parallel.h"
#include "pq/adc_kernels.h"
#include "pq/fast_scan.h"
#include "pq/kmeans.h"

namespace lookalike::pq {

namespace {

constexpr size_t kCoarseIterations = 10;
// 64 points a cell place the coarse centroids about as well as 256 do (the
// partition only has to be balanced), at a quarter of the training time.
constexpr size_t kCoarsePointsPerCentroid = 64;
constexpr uint32_t kMaxSlots = UINT32_MAX - 1;

std::string id_text(int64_t id) { return std::to_string(id); }

template <class C>
bool by_distance_then_slot(const C& a, const C& b) {
  return a.dist < b.dist || (a.dist == b.dist && a.slot < b.slot);
}

}  // namespace

void IvfPqConfig::validate() const {
  auto positive = [](const char* name, size_t v) {
    if (v == 0) throw std::invalid_argument(std::string(name) + " must be a positive integer");
  };
  positive("dim", dim);
  positive("nlist", nlist);
  positive("nprobe", nprobe);
  positive("rerank_k", rerank_k);
  if (code == IvfCode::RaBitQ) {
    // m and nbits are derived from dim (with_derived_code); the groups must fit the fast-scan.
    if (rabitq_groups(rabitq_padded_dim(dim)) > kMaxFastScanM)
      throw std::invalid_argument("RaBitQ codes allow dim <= " + std::to_string(4 * kMaxFastScanM) + ", got " +
                                  std::to_string(dim));
    if (!(bound_sigmas >= 0)) throw std::invalid_argument("bound_sigmas must be >= 0");
    if (ex_bits > kMaxExBits)
      throw std::invalid_argument("ex_bits must be 0 to " + std::to_string(kMaxExBits) + ", got " +
                                  std::to_string(ex_bits));
  } else {
    if (ex_bits != 0) throw std::invalid_argument("ex_bits applies to RaBitQ codes only");
    positive("m", m);
    if (nbits != 4 && nbits != 8) throw std::invalid_argument("nbits must be 4 or 8, got " + std::to_string(nbits));
    if (m > dim)
      throw std::invalid_argument("m (" + std::to_string(m) + ") must be at most dim (" + std::to_string(dim) + ")");
    if (nbits == 4 && m > kMaxFastScanM)
      throw std::invalid_argument("4-bit codes allow m <= " + std::to_string(kMaxFastScanM) + ", got " +
                                  std::to_string(m));
  }
  if (code != IvfCode::Pq && code != IvfCode::RaBitQ) throw std::invalid_argument("unknown code type");
  if (nlist > kMaxSlots) throw std::invalid_argument("nlist is too large");
  positive("coarse_graph_min_nlist", coarse_graph_min_nlist);
}

namespace {

// RaBitQ's groups of 4 bits are laid out as 4-bit fast-scan codes.
IvfPqConfig with_derived_code(IvfPqConfig c) {
  c.validate();
  if (c.code == IvfCode::RaBitQ) {
    c.m = rabitq_groups(rabitq_padded_dim(c.dim));
    c.nbits = 4;
  }
  return c;
}

}  // namespace

IvfPqIndex::IvfPqIndex(const IvfPqConfig& config, const std::string& vectors_path)
    : config_(with_derived_code(config)),
      pq_(config_.dim, config_.m, config_.nbits),
      vectors_(std::make_unique<VectorFile>(vectors_path, config.dim * sizeof(float))) {
  if (config_.code == IvfCode::RaBitQ) rotation_ = HadamardRotation(config_.dim, config_.seed);
  if (config_.ex_bits)
    ex_codes_ = std::make_unique<VectorFile>(vectors_path.empty() ? vectors_path : vectors_path + ".excodes",
                                             ex_row_bytes(), "ex-codes");
}

IvfPqIndex::~IvfPqIndex() = default;

void IvfPqIndex::require_trained() const {
  if (!trained()) throw std::logic_error("the IVF-PQ index is not trained: call train() first");
}

void IvfPqIndex::check_vectors(const float* vectors, size_t n) const {
  for (size_t i = 0; i < n; ++i) {
    const float* v = vectors + i * config_.dim;
    double norm2 = 0;
    for (size_t j = 0; j < config_.dim; ++j) {
      if (!std::isfinite(v[j]))
        throw std::invalid_argument("vector " + std::to_string(i) + " has a non-finite value (" +
                                    std::to_string(v[j]) + ") at component " + std::to_string(j));
      norm2 += double(v[j]) * v[j];
    }
    if (config_.metric == Metric::Cosine && norm2 == 0)
      throw std::invalid_argument("vector " + std::to_string(i) + " is all zeros: cosine distance is undefined for it");
  }
}

const float* IvfPqIndex::prepared(const float* vectors, size_t n, std::vector<float>& buffer) const {
  if (config_.metric != Metric::Cosine) return vectors;
  const size_t dim = config_.dim;
  buffer.resize(n * dim);
  for (size_t i = 0; i < n; ++i) {
    const float* v = vectors + i * dim;
    double norm2 = 0;
    for (size_t j = 0; j < dim; ++j) norm2 += double(v[j]) * v[j];
    const float inv = float(1.0 / std::sqrt(norm2));
    for (size_t j = 0; j < dim; ++j) buffer[i * dim + j] = v[j] * inv;
  }
  return buffer.data();
}

const float* IvfPqIndex::coarse_space(const float* vectors, size_t n, std::vector<float>& buffer,
                                      size_t threads) const {
  if (config_.code != IvfCode::RaBitQ) return vectors;
  const size_t padded = rotation_.padded_dim();
  buffer.resize(n * padded);
  hnsw::parallel_for(n, threads, [&](size_t i) {
    rotation_.apply(vectors + i * config_.dim, buffer.data() + i * padded);
  });
  return buffer.data();
}

struct IvfPqIndex::Encoded {
  std::vector<uint32_t> cells;
  std::vector<uint8_t> codes;     // m a vector
  std::vector<uint16_t> norms;    // RaBitQ's factors
  std::vector<uint8_t> cosines;
  std::vector<uint8_t> ex_rows;   // extended RaBitQ: ex_row_bytes() a vector
};

IvfPqIndex::Encoded IvfPqIndex::encode(const float* x, size_t n, size_t threads) const {
  Encoded e;
  std::vector<float> rotated;
  const float* cx = coarse_space(x, n, rotated, threads);
  const size_t dim = coarse_dim();
  e.cells.resize(n);
  coarse_.assign(cx, n, e.cells.data(), threads);
  std::vector<float> residuals(n * dim);
  for (size_t i = 0; i < n; ++i) {
    const float* centroid = coarse_.centroid(e.cells[i]);
    for (size_t j = 0; j < dim; ++j) residuals[i * dim + j] = cx[i * dim + j] - centroid[j];
  }
  e.codes.resize(n * config_.m);
  if (config_.code == IvfCode::Pq) {
    pq_.encode(residuals.data(), n, e.codes.data(), threads);
    return e;
  }
  e.norms.resize(n);
  e.cosines.resize(n);
  const size_t ex_bytes = config_.ex_bits ? ex_row_bytes() : 0;
  e.ex_rows.resize(n * ex_bytes);
  hnsw::parallel_for(n, threads, [&](size_t i) {
    rabitq_encode(residuals.data() + i * dim, dim, e.codes.data() + i * config_.m, e.norms[i], e.cosines[i]);
    if (ex_bytes) rabitq_ex_encode(residuals.data() + i * dim, dim, config_.ex_bits, e.ex_rows.data() + i * ex_bytes);
  });
  return e;
}

// --- training and writes -------------------------------------------------------

void IvfPqIndex::train(const float* vectors, size_t n, size_t threads) {
  check_vectors(vectors, n);
  std::unique_lock<std::shared_mutex> lock = mutex_.write();
  if (!slot_ids_.empty()) throw std::logic_error("train() needs an empty index");
  const bool pq = config_.code == IvfCode::Pq;
  const size_t need = pq ? std::max(config_.nlist, pq_.ksub()) : config_.nlist;
  if (n < need)
    throw std::invalid_argument("training needs at least " + std::to_string(need) + " vectors (nlist = " +
                                std::to_string(config_.nlist) +
                                (pq ? ", 2^nbits = " + std::to_string(pq_.ksub()) : std::string()) + "), got " +
                                std::to_string(n));
  std::vector<float> buffer, rotated;
  const float* x = coarse_space(prepared(vectors, n, buffer), n, rotated, threads);
  const size_t dim = coarse_dim();

  KMeansParams coarse;
  coarse.k = config_.nlist;
  coarse.iterations = kCoarseIterations;
  coarse.max_points_per_centroid = kCoarsePointsPerCentroid;
  coarse.seed = config_.seed;
  coarse.threads = threads;
  CoarseQuantizer quantizer(kmeans(x, n, dim, coarse), dim, config_.nlist >= config_.coarse_graph_min_nlist);
  if (pq) train_codebooks(quantizer, x, n, threads);
  coarse_ = std::move(quantizer);
  lists_.assign(config_.nlist, InvertedList{});
}

void IvfPqIndex::train_codebooks(const CoarseQuantizer& quantizer, const float* x, size_t n, size_t threads) {
  const size_t dim = config_.dim;

  // A pool of residuals twice what one sub-quantizer trains on: each draws its
  // own sample from it. (Larger pools cost coarse assignments, nlist distances
  // of dim floats a point, for little: the sub-spaces are low-dimensional.)
  const size_t pq_n = std::min(n, pq_.ksub() * kTrainPointsPerCentroid * 2);
  const size_t step = n / pq_n;
  std::vector<float> residuals(pq_n * dim);
  for (size_t i = 0; i < pq_n; ++i) std::copy_n(x + i * step * dim, dim, residuals.data() + i * dim);
  std::vector<uint32_t> cell(pq_n);
  quantizer.assign(residuals.data(), pq_n, cell.data(), threads);
  for (size_t i = 0; i < pq_n; ++i)
    for (size_t j = 0; j < dim; ++j) residuals[i * dim + j] -= quantizer.centroid(cell[i])[j];
  pq_.train(residuals.data(), pq_n, config_.seed + 1, threads);
}

void IvfPqIndex::append_code(InvertedList& list, uint32_t slot, const uint8_t* code, const uint16_t* norm,
                             const uint8_t* cosine) {
  const size_t at = list.slots.size();
  list.slots.push_back(slot);
  if (norm) {
    list.norms.push_back(*norm);
    list.cosines.push_back(*cosine);
  }
  if (config_.nbits == 8) {
    list.codes.insert(list.codes.end(), code, code + config_.m);
    return;
  }
  const size_t block_bytes = fast_scan_block_bytes(config_.m);
  if (at % kFastScanBlock == 0) list.codes.resize(list.codes.size() + block_bytes, 0);
  fast_scan_put(list.codes.data() + (at / kFastScanBlock) * block_bytes, config_.m, at % kFastScanBlock, code);
}

void IvfPqIndex::reserve_lists(const std::vector<uint32_t>& cells) {
  std::vector<size_t> incoming(config_.nlist, 0);
  for (uint32_t c : cells) ++incoming[c];
  for (size_t c = 0; c < config_.nlist; ++c) {
    InvertedList& list = lists_[c];
    if (incoming[c] == 0) continue;
    // Exactly what a bulk load needs; 1/8 more than the list for a trickle of
    // small batches, so that they do not reallocate every time (and stay
    // amortised). A reserve that is already met costs nothing.
    const size_t size = list.slots.size();
    const size_t target = std::max(size + incoming[c], size + size / 8);
    list.slots.reserve(target);
    if (config_.code == IvfCode::RaBitQ) {
      list.norms.reserve(target);
      list.cosines.reserve(target);
    }
    list.codes.reserve(config_.nbits == 8 ? target * config_.m
                                          : (target + kFastScanBlock - 1) / kFastScanBlock *
                                                fast_scan_block_bytes(config_.m));
  }
}

void IvfPqIndex::mark_deleted(uint32_t slot) {
  deleted_[slot >> 6] |= uint64_t(1) << (slot & 63);
  ++deleted_count_;
  ++deleted_in_lists_;
}

void IvfPqIndex::add(const int64_t* ids, const float* vectors, size_t n, bool replace, size_t threads) {
  check_vectors(vectors, n);
  std::unique_lock<std::shared_mutex> lock = mutex_.write();
  require_trained();
  std::unordered_set<int64_t> batch;
  batch.reserve(n);
  size_t fresh = 0;  // ids not in the index yet: what the id map must make room for
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0) throw std::invalid_argument("ids must be >= 0, got " + id_text(ids[i]));
    if (!batch.insert(ids[i]).second)
      throw hnsw::DuplicateIdError("id " + id_text(ids[i]) + " appears twice in the batch");
    const bool known = slot_by_id_.find(ids[i]) != IdMap::kAbsent;
    if (known && !replace)
      throw hnsw::DuplicateIdError("id " + id_text(ids[i]) + " is already in the index (use upsert to replace it)");
    fresh += !known;
  }
  if (slot_ids_.size() + n > kMaxSlots) throw std::length_error("the index is full (2^32 - 2 slots)");
  if (n == 0) return;

  std::vector<float> buffer;
  const float* x = prepared(vectors, n, buffer);
  const Encoded e = encode(x, n, threads);
  const bool factors = config_.code == IvfCode::RaBitQ;

  // Slots are numbered cell by cell (batch order within a cell): a cell's new
  // entries are then consecutive slots, which its list stores as runs
  // (list_slots.h), and consecutive rows of the vectors file, which a query
  // re-ranks from a few cells, so that its reads share pages.
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return e.cells[a] < e.cells[b]; });

  // Nothing has changed so far; from here on nothing throws but the files'
  // growth (disk full), which comes first, before either file takes a row.
  vectors_->reserve(n);
  if (ex_codes_) ex_codes_->reserve(n);
  vectors_->append(x, order.data(), n);
  if (ex_codes_) ex_codes_->append(e.ex_rows.data(), order.data(), n);
  reserve_lists(e.cells);
  const uint32_t first = uint32_t(slot_ids_.size());
  std::vector<int64_t> ordered_ids(n);
  for (size_t r = 0; r < n; ++r) ordered_ids[r] = ids[order[r]];
  slot_ids_.append(ordered_ids.data(), n);
  deleted_.resize((slot_ids_.size() + 63) / 64, 0);
  slot_by_id_.reserve(fresh);
  for (size_t r = 0; r < n; ++r) {
    const size_t i = order[r];
    const uint32_t slot = first + uint32_t(r);
    const uint32_t old = slot_by_id_.find(ids[i]);
    if (old != IdMap::kAbsent) mark_deleted(old);
    slot_by_id_.set(ids[i], slot);
    append_code(lists_[e.cells[i]], slot, e.codes.data() + i * config_.m, factors ? &e.norms[i] : nullptr,
                factors ? &e.cosines[i] : nullptr);
  }
}

void IvfPqIndex::remove(const int64_t* ids, size_t n) {
  std::unique_lock<std::shared_mutex> lock = mutex_.write();
  for (size_t i = 0; i < n; ++i)
    if (slot_by_id_.find(ids[i]) == IdMap::kAbsent)
      throw hnsw::UnknownIdError("id " + id_text(ids[i]) + " is not in the index");
  for (size_t i = 0; i < n; ++i) {
    const uint32_t slot = slot_by_id_.find(ids[i]);
    if (slot == IdMap::kAbsent) continue;  // listed twice in the batch
    mark_deleted(slot);
    slot_by_id_.erase(ids[i]);
  }
}

bool IvfPqIndex::contains(int64_t id) const {
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  return slot_by_id_.find(id) != IdMap::kAbsent;
}

void IvfPqIndex::get(const int64_t* ids, size_t n, float* out) const {
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  for (size_t i = 0; i < n; ++i)
    if (slot_by_id_.find(ids[i]) == IdMap::kAbsent)
      throw hnsw::UnknownIdError("id " + id_text(ids[i]) + " is not in the index");
  for (size_t i = 0; i < n; ++i)
    std::copy_n(vectors_->row(slot_by_id_.find(ids[i])), config_.dim, out + i * config_.dim);
}

void IvfPqIndex::compact() {
  std::unique_lock<std::shared_mutex> lock = mutex_.write();
  if (deleted_in_lists_ == 0) return;
  std::vector<uint8_t> code(config_.m);
  for (InvertedList& list : lists_) {
    InvertedList kept;
    for (size_t i = 0; i < list.slots.size(); ++i) {
      if (is_deleted(list.slots[i])) continue;
      const uint8_t* c;
      if (config_.nbits == 8) {
        c = list.codes.data() + i * config_.m;
      } else {
        fast_scan_get(list.codes.data() + (i / kFastScanBlock) * fast_scan_block_bytes(config_.m), config_.m,
                      i % kFastScanBlock, code.data());
        c = code.data();
      }
      if (config_.code == IvfCode::RaBitQ)
        append_code(kept, list.slots[i], c, &list.norms[i], &list.cosines[i]);
      else
        append_code(kept, list.slots[i], c);
    }
    kept.slots.shrink_to_fit();
    kept.codes.shrink_to_fit();
    kept.norms.shrink_to_fit();
    kept.cosines.shrink_to_fit();
    list = std::move(kept);
  }
  deleted_in_lists_ = 0;
}

// --- search --------------------------------------------------------------------

// The state of one query: its lookup tables and the rerank_k best candidates.
// Candidates go to a pool of up to 2 keep entries; a full pool is cut to its
// keep best by nth_element, whose keep-th distance becomes the bar a new
// candidate must not exceed. Per candidate that is one comparison and an
// append, where a max-heap of keep entries (1600 at recall 0.95) paid a sift
// of ~11 levels for each of the many early entrants. The survivors are exactly
// the keep smallest by (distance, slot), whatever order the cells come in.
class IvfPqIndex::Scan {
 public:
  Scan(const IvfPqIndex& ix, const float* query, const IvfSearchParams& p, size_t keep)
      : ix_(ix), q_(query), filter_(p.filter), keep_(keep) {
    const size_t m = ix.config_.m, ksub = ix.pq_.ksub();
    lut_.resize(m * ksub);
    if (ix.config_.nbits == 4) qlut_.resize(m * 16);
    // Under ip/cosine the tables do not depend on the cell: q.(c + r) = q.c + q.r.
    if (ix.config_.metric != Metric::L2) {
      ix.pq_.compute_lut(q_, LutKind::NegInnerProduct, lut_.data());
      if (ix.config_.nbits == 4) qlut_params_ = quantize_lut(lut_.data(), m, qlut_.data());
    }
    pool_.reserve(2 * keep_);
  }

  void scan_cell(size_t cell) {
    const InvertedList& list = ix_.lists_[cell];
    const size_t n = list.slots.size();
    if (n == 0) return;
    const IvfPqConfig& c = ix_.config_;
    const float* centroid = ix_.coarse_.centroid(cell);
    float offset = 0;  // the cell's share of the distance, outside the tables
    if (c.metric == Metric::L2) {
      residual_.resize(c.dim);
      for (size_t j = 0; j < c.dim; ++j) residual_[j] = q_[j] - centroid[j];
      ix_.pq_.compute_lut(residual_.data(), LutKind::L2, lut_.data());
      if (c.nbits == 4) qlut_params_ = quantize_lut(lut_.data(), c.m, qlut_.data());
    } else {
      offset = -distance::kernels().get(distance::Scalar::F32, distance::Kernel::Dot)(q_, centroid, c.dim);
    }
    const AdcKernels& k = adc_kernels();
    if (c.nbits == 8) {
      est_.resize(n);
      k.scan8(lut_.data(), list.codes.data(), n, c.m, est_.data());
      for (size_t i = 0; i < n; ++i) consider(offset + est_[i], list, i);
    } else {
      const size_t blocks = (n + kFastScanBlock - 1) / kFastScanBlock;
      sums_.resize(blocks * kFastScanBlock);
      k.fastscan4(qlut_.data(), list.codes.data(), blocks, c.m, sums_.data());
      const float base = offset + qlut_params_.bias, scale = qlut_params_.scale;
      for (size_t i = 0; i < n; ++i) consider(base + scale * float(sums_[i]), list, i);
    }
  }

  // The keep best candidates, in no particular order.
  std::vector<Candidate>& candidates() {
    if (pool_.size() > keep_) cut();
    return pool_;
  }

 private:
  // Entry i of a list: its slot is looked up (list_slots.h) only once its
  // distance has passed the bar, as most do not.
  void consider(float dist, const InvertedList& list, size_t i) {
    if (dist > bar_) return;
    const uint32_t slot = list.slots[i];
    if (ix_.is_deleted(slot)) return;
    if (filter_ && !filter_->allows(ix_.slot_ids_[slot])) return;
    pool_.push_back({dist, slot});
    if (pool_.size() == 2 * keep_) cut();
  }

  void cut() {
    std::nth_element(pool_.begin(), pool_.begin() + ptrdiff_t(keep_ - 1), pool_.end(), by_distance_then_slot<Candidate>);
    bar_ = pool_[keep_ - 1].dist;
    pool_.resize(keep_);
  }

  const IvfPqIndex& ix_;
  const float* q_;
  const hnsw::Filter* filter_;
  size_t keep_;
  std::vector<float> lut_, residual_, est_;
  std::vector<uint8_t> qlut_;
  std::vector<uint16_t> sums_;
  QuantizedLut qlut_params_;
  std::vector<Candidate> pool_;
  float bar_ = std::numeric_limits<float>::infinity();
};

void IvfPqIndex::search_batch(const float* queries, size_t n, const IvfSearchParams& params, int64_t* ids,
                              float* dists, size_t threads) const {
  hnsw::parallel_for(n, threads, [&](size_t i) {
    search(queries + i * config_.dim, params, ids + i * params.k, dists + i * params.k);
  });
}

void IvfPqIndex::search(const float* query, const IvfSearchParams& p, int64_t* ids, float* dists) const {
  if (p.k == 0) throw std::invalid_argument("k must be a positive integer");
  // Held between checkpoints, where a waiting writer goes first (WriterFirstMutex).
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  check_vectors(query, 1);
  require_trained();
  std::vector<float> buffer, rotated;
  const float* q = prepared(query, 1, buffer);
  const float* cq = coarse_space(q, 1, rotated, 1);

  std::vector<uint32_t> cells(std::min(p.nprobe ? p.nprobe : config_.nprobe, config_.nlist));
  const size_t nprobe = coarse_.nearest(cq, cells.size(), cells.data());

  // The filter's data stays still between checkpoints too (see hnsw::Filter::hold).
  auto held = p.filter ? p.filter->hold() : std::shared_lock<std::shared_mutex>();
  hnsw::Checkpoint pace(p.stop, p.filter, &held, &mutex_, &lock);
  std::vector<Candidate> found = config_.code == IvfCode::RaBitQ
                                     ? search_rabitq(q, cq, cells.data(), nprobe, p, pace)
                                     : search_pq(q, cells.data(), nprobe, p, pace);
  // A write let in at a checkpoint may have deleted a candidate found before it.
  std::erase_if(found, [&](const Candidate& c) { return is_deleted(c.slot); });
  std::sort(found.begin(), found.end(), by_distance_then_slot<Candidate>);
  // Estimated and exact distances alike are -q.x under ip/cosine so far.
  const float shift = config_.metric == Metric::Cosine ? 1.0f : 0.0f;
  for (size_t i = 0; i < p.k; ++i) {
    if (i < found.size()) {
      ids[i] = slot_ids_[found[i].slot];
      dists[i] = shift + found[i].dist;
    } else {
      ids[i] = kNoId;
      dists[i] = std::numeric_limits<float>::infinity();
    }
  }
}

std::vector<IvfPqIndex::Candidate> IvfPqIndex::search_pq(const float* q, const uint32_t* cells, size_t nprobe,
                                                         const IvfSearchParams& p, hnsw::Checkpoint& pace) const {
  const size_t keep = p.rerank ? std::max(p.k, p.rerank_k ? p.rerank_k : config_.rerank_k) : p.k;
  Scan scan(*this, q, p, keep);
  for (size_t i = 0; i < nprobe; ++i) {
    pace.step(lists_[cells[i]].slots.size() + 1);
    scan.scan_cell(cells[i]);
  }
  std::vector<Candidate> found = std::move(scan.candidates());
  if (p.rerank) {
    rerank(q, found, pace);
    rows_read_.fetch_add(found.size(), std::memory_order_relaxed);
  }
  return found;
}

float IvfPqIndex::exact_distance(const float* q, uint32_t slot) const {
  const bool l2 = config_.metric == Metric::L2;
  const float d = distance::kernels().get(distance::Scalar::F32, l2 ? distance::Kernel::L2Sq : distance::Kernel::Dot)(
      q, vectors_->row(slot), config_.dim);
  return l2 ? d : -d;  // -q.x under ip / cosine (search adds cosine's 1)
}

namespace {

void prefetch_bytes(const uint8_t* p, size_t n) {
  for (size_t off = 0; off < n; off += 64) __builtin_prefetch(p + off);
}

}  // namespace

void IvfPqIndex::prefetch_row(uint32_t slot) const { prefetch_bytes(vectors_->bytes(slot), vectors_->row_bytes()); }

void IvfPqIndex::prefetch_ex_row(uint32_t slot) const {
  prefetch_bytes(ex_codes_->bytes(slot), ex_codes_->row_bytes());
}

void IvfPqIndex::rerank(const float* q, std::vector<Candidate>& found, hnsw::Checkpoint& pace) const {
  // Rows in file order (neighbours may share a page), each fetched kAhead rows
  // before its turn.
  std::sort(found.begin(), found.end(), [](const Candidate& a, const Candidate& b) { return a.slot < b.slot; });
  constexpr size_t kAhead = 4;
  for (size_t i = 0; i < std::min(kAhead, found.size()); ++i) prefetch_row(found[i].slot);
  for (size_t i = 0; i < found.size(); ++i) {
    if (i + kAhead < found.size()) prefetch_row(found[i + kAhead].slot);
    pace.work(1);
    found[i].dist = exact_distance(q, found[i].slot);
  }
}

size_t IvfPqIndex::probes(const float* query, size_t nprobe, uint32_t* cells) const {
  check_vectors(query, 1);
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  require_trained();
  std::vector<float> buffer;
  std::vector<float> rotated;
  return coarse_.nearest(coarse_space(prepared(query, 1, buffer), 1, rotated, 1), std::min(nprobe, config_.nlist),
                         cells);
}

// --- bookkeeping -------------------------------------------------------------

void IvfPqIndex::set_nprobe(size_t nprobe) {
  if (nprobe == 0) throw std::invalid_argument("nprobe must be a positive integer");
  std::unique_lock<std::shared_mutex> lock = mutex_.write();
  config_.nprobe = nprobe;
}

void IvfPqIndex::set_rerank_k(size_t rerank_k) {
  if (rerank_k == 0) throw std::invalid_argument("rerank_k must be a positive integer");
  std::unique_lock<std::shared_mutex> lock = mutex_.write();
  config_.rerank_k = rerank_k;
}

size_t IvfPqIndex::size() const {
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  return slot_by_id_.size();
}

size_t IvfPqIndex::deleted_count() const {
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  return deleted_in_lists_;
}

IvfMemoryUsage IvfPqIndex::memory_usage() const {
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  IvfMemoryUsage u;
  for (const InvertedList& list : lists_) {
    u.code_bytes += list.codes.capacity();
    u.factor_bytes += list.norms.capacity() * sizeof(uint16_t) + list.cosines.capacity();
    u.list_slot_bytes += list.slots.memory_bytes();
  }
  u.list_header_bytes = lists_.capacity() * sizeof(InvertedList);
  u.id_bytes = slot_ids_.memory_bytes();
  u.id_map_bytes = slot_by_id_.memory_bytes();
  u.deleted_bytes = deleted_.capacity() * sizeof(uint64_t);
  u.centroid_bytes =
      (coarse_.centroids().capacity() + pq_.centroids().capacity()) * sizeof(float) + rotation_.signs().capacity();
  u.coarse_graph_bytes = coarse_.graph_bytes();
  u.total_bytes = u.code_bytes + u.factor_bytes + u.list_slot_bytes + u.list_header_bytes + u.id_bytes +
                  u.id_map_bytes + u.deleted_bytes + u.centroid_bytes + u.coarse_graph_bytes;
  u.vector_file_bytes = vectors_->rows() * config_.dim * sizeof(float);
  u.ex_code_file_bytes = ex_codes_ ? ex_codes_->rows() * ex_codes_->row_bytes() : 0;
  u.live = slot_by_id_.size();
  u.deleted = deleted_in_lists_;
  u.slots = slot_ids_.size();
  return u;
}

}  // namespace lookalike::pq
