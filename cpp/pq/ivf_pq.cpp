#include "pq/ivf_pq.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
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
  positive("m", m);
  positive("nprobe", nprobe);
  positive("rerank_k", rerank_k);
  if (nbits != 4 && nbits != 8) throw std::invalid_argument("nbits must be 4 or 8, got " + std::to_string(nbits));
  if (m > dim)
    throw std::invalid_argument("m (" + std::to_string(m) + ") must be at most dim (" + std::to_string(dim) + ")");
  if (nbits == 4 && m > kMaxFastScanM)
    throw std::invalid_argument("4-bit codes allow m <= " + std::to_string(kMaxFastScanM) + ", got " +
                                std::to_string(m));
  if (nlist > kMaxSlots) throw std::invalid_argument("nlist is too large");
  positive("coarse_graph_min_nlist", coarse_graph_min_nlist);
}

IvfPqIndex::IvfPqIndex(const IvfPqConfig& config, const std::string& vectors_path)
    : config_((config.validate(), config)),
      pq_(config.dim, config.m, config.nbits),
      vectors_(std::make_unique<VectorFile>(vectors_path, config.dim)) {}

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

// --- training and writes -------------------------------------------------------

void IvfPqIndex::train(const float* vectors, size_t n, size_t threads) {
  check_vectors(vectors, n);
  std::unique_lock<std::shared_mutex> lock = mutex_.write();
  if (!slot_ids_.empty()) throw std::logic_error("train() needs an empty index");
  const size_t need = std::max(config_.nlist, pq_.ksub());
  if (n < need)
    throw std::invalid_argument("training needs at least " + std::to_string(need) + " vectors (nlist = " +
                                std::to_string(config_.nlist) + ", 2^nbits = " + std::to_string(pq_.ksub()) +
                                "), got " + std::to_string(n));
  std::vector<float> buffer;
  const float* x = prepared(vectors, n, buffer);
  const size_t dim = config_.dim;

  KMeansParams coarse;
  coarse.k = config_.nlist;
  coarse.iterations = kCoarseIterations;
  coarse.max_points_per_centroid = kCoarsePointsPerCentroid;
  coarse.seed = config_.seed;
  coarse.threads = threads;
  CoarseQuantizer quantizer(kmeans(x, n, dim, coarse), dim, config_.nlist >= config_.coarse_graph_min_nlist);

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

  coarse_ = std::move(quantizer);
  lists_.assign(config_.nlist, InvertedList{});
}

void IvfPqIndex::append_code(InvertedList& list, uint32_t slot, const uint8_t* code) {
  const size_t at = list.slots.size();
  list.slots.push_back(slot);
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
    const size_t want = list.slots.size() + incoming[c];
    if (incoming[c] == 0 || want <= list.slots.capacity()) continue;
    // Exactly what a bulk load needs; 1/8 more than that for a trickle of small
    // batches, so that they do not reallocate every time (and stay amortised).
    const size_t target = std::max(want, list.slots.capacity() + list.slots.capacity() / 8);
    list.slots.reserve(target);
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
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0) throw std::invalid_argument("ids must be >= 0, got " + id_text(ids[i]));
    if (!batch.insert(ids[i]).second)
      throw hnsw::DuplicateIdError("id " + id_text(ids[i]) + " appears twice in the batch");
    if (!replace && slot_by_id_.find(ids[i]) != IdMap::kAbsent)
      throw hnsw::DuplicateIdError("id " + id_text(ids[i]) + " is already in the index (use upsert to replace it)");
  }
  if (slot_ids_.size() + n > kMaxSlots) throw std::length_error("the index is full (2^32 - 2 slots)");
  if (n == 0) return;

  const size_t dim = config_.dim, m = config_.m;
  std::vector<float> buffer;
  const float* x = prepared(vectors, n, buffer);
  std::vector<uint32_t> cell(n);
  coarse_.assign(x, n, cell.data(), threads);
  std::vector<float> residuals(n * dim);
  for (size_t i = 0; i < n; ++i) {
    const float* centroid = coarse_.centroid(cell[i]);
    for (size_t j = 0; j < dim; ++j) residuals[i * dim + j] = x[i * dim + j] - centroid[j];
  }
  std::vector<uint8_t> codes(n * m);
  pq_.encode(residuals.data(), n, codes.data(), threads);

  // Nothing has changed so far; from here on nothing throws but the file append
  // (disk full), which comes first.
  vectors_->append(x, n);
  reserve_lists(cell);
  const uint32_t first = uint32_t(slot_ids_.size());
  slot_ids_.insert(slot_ids_.end(), ids, ids + n);
  deleted_.resize((slot_ids_.size() + 63) / 64, 0);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t slot = first + uint32_t(i);
    const uint32_t old = slot_by_id_.find(ids[i]);
    if (old != IdMap::kAbsent) mark_deleted(old);
    slot_by_id_.set(ids[i], slot);
    append_code(lists_[cell[i]], slot, codes.data() + i * m);
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
      append_code(kept, list.slots[i], c);
    }
    kept.slots.shrink_to_fit();
    kept.codes.shrink_to_fit();
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
      for (size_t i = 0; i < n; ++i) consider(offset + est_[i], list.slots[i]);
    } else {
      const size_t blocks = (n + kFastScanBlock - 1) / kFastScanBlock;
      sums_.resize(blocks * kFastScanBlock);
      k.fastscan4(qlut_.data(), list.codes.data(), blocks, c.m, sums_.data());
      const float base = offset + qlut_params_.bias, scale = qlut_params_.scale;
      for (size_t i = 0; i < n; ++i) consider(base + scale * float(sums_[i]), list.slots[i]);
    }
  }

  // The keep best candidates, in no particular order.
  std::vector<Candidate>& candidates() {
    if (pool_.size() > keep_) cut();
    return pool_;
  }

 private:
  void consider(float dist, uint32_t slot) {
    if (dist > bar_) return;
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
  std::vector<float> buffer;
  const float* q = prepared(query, 1, buffer);

  std::vector<uint32_t> cells(std::min(p.nprobe ? p.nprobe : config_.nprobe, config_.nlist));
  const size_t nprobe = coarse_.nearest(q, cells.size(), cells.data());

  // The filter's data stays still between checkpoints too (see hnsw::Filter::hold).
  auto held = p.filter ? p.filter->hold() : std::shared_lock<std::shared_mutex>();
  hnsw::Checkpoint pace(p.stop, p.filter, &held, &mutex_, &lock);
  const size_t keep = p.rerank ? std::max(p.k, p.rerank_k ? p.rerank_k : config_.rerank_k) : p.k;
  Scan scan(*this, q, p, keep);
  for (size_t i = 0; i < nprobe; ++i) {
    pace.step(lists_[cells[i]].slots.size() + 1);
    scan.scan_cell(cells[i]);
  }
  std::vector<Candidate>& found = scan.candidates();

  if (p.rerank) rerank(q, found, pace);
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

void IvfPqIndex::rerank(const float* q, std::vector<Candidate>& found, hnsw::Checkpoint& pace) const {
  const size_t dim = config_.dim, row_bytes = dim * sizeof(float);
  const auto kernel = distance::kernels().get(
      distance::Scalar::F32, config_.metric == Metric::L2 ? distance::Kernel::L2Sq : distance::Kernel::Dot);
  // Rows in file order (neighbours may share a page), each fetched kAhead rows
  // before its turn: the reads are random rows of a file far larger than the
  // caches, and the kernel would otherwise wait on every one of them.
  std::sort(found.begin(), found.end(), [](const Candidate& a, const Candidate& b) { return a.slot < b.slot; });
  constexpr size_t kAhead = 4;
  auto fetch = [&](size_t i) {
    const char* row = reinterpret_cast<const char*>(vectors_->row(found[i].slot));
    for (size_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(row + off);
  };
  for (size_t i = 0; i < std::min(kAhead, found.size()); ++i) fetch(i);
  for (size_t i = 0; i < found.size(); ++i) {
    if (i + kAhead < found.size()) fetch(i + kAhead);
    pace.work(1);
    const float exact = kernel(q, vectors_->row(found[i].slot), dim);
    found[i].dist = config_.metric == Metric::L2 ? exact : -exact;
  }
}

size_t IvfPqIndex::probes(const float* query, size_t nprobe, uint32_t* cells) const {
  check_vectors(query, 1);
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  require_trained();
  std::vector<float> buffer;
  return coarse_.nearest(prepared(query, 1, buffer), std::min(nprobe, config_.nlist), cells);
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
    u.list_slot_bytes += list.slots.capacity() * sizeof(uint32_t);
  }
  u.id_bytes = slot_ids_.capacity() * sizeof(int64_t);
  u.id_map_bytes = slot_by_id_.memory_bytes();
  u.deleted_bytes = deleted_.capacity() * sizeof(uint64_t);
  u.centroid_bytes = (coarse_.centroids().capacity() + pq_.centroids().capacity()) * sizeof(float);
  u.coarse_graph_bytes = coarse_.graph_bytes();
  u.total_bytes = u.code_bytes + u.list_slot_bytes + u.id_bytes + u.id_map_bytes + u.deleted_bytes +
                  u.centroid_bytes + u.coarse_graph_bytes;
  u.vector_file_bytes = vectors_->rows() * config_.dim * sizeof(float);
  u.live = slot_by_id_.size();
  u.deleted = deleted_in_lists_;
  u.slots = slot_ids_.size();
  return u;
}

}  // namespace lookalike::pq
