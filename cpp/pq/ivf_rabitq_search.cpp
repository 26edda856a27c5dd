// The search of an IVF index with RaBitQ codes (ivf_pq.h, rabitq.h): every
// code of the probed cells gets an estimate and an error bound; a code whose
// lower bound is not below the k-th smallest upper bound seen so far cannot be
// among the k nearest (while the bounds hold) and is dropped at once. The
// survivors are read from the vectors file in order of their estimates, each
// only while its lower bound is below the k-th exact distance found so far, so
// the number of reads follows the bounds, not a fixed rerank_k (which only caps
// it). With an infinite bound every allowed code of the probed cells is read:
// the exact search of those cells.
//
// With extended RaBitQ codes (rabitq_ex.h) a stage comes between the two:
// the survivors, in order of their 1-bit estimates, read their multi-bit
// row while their 1-bit lower bound is below the k-th smallest multi-bit
// upper bound so far, and take its estimate and narrower bound; the float
// reads then follow those. (Under an infinite bound the stage is left out:
// every candidate is read as floats anyway.)
#include <algorithm>
#include <cmath>
#include <limits>
#include <queue>

#include "distance/distance.h"
#include "pq/adc_kernels.h"
#include "pq/ivf_pq.h"
#include "pq/rabitq_ex.h"

namespace lookalike::pq {

namespace {

struct Bounded {
  float est, lower;
  uint32_t slot;
  uint32_t probe;  // which of the query's cells it is in (BoundScan::cells_)
};

constexpr size_t kRerankAhead = 4;
constexpr float kUnread = std::numeric_limits<float>::quiet_NaN();

}  // namespace

class IvfPqIndex::BoundScan {
 public:
  BoundScan(const IvfPqIndex& ix, const float* rotated, const IvfSearchParams& p)
      : ix_(ix), q_(rotated), filter_(p.filter), k_(p.k) {
    w_.sigmas = p.bound_sigmas > 0 ? p.bound_sigmas : ix.config_.bound_sigmas;
    const size_t padded = ix.rotation_.padded_dim();
    if (ix.config_.metric == Metric::InnerProduct) {
      // <q, x> = <q, c> + |r| <o, q>: the tables are the query's, for every cell.
      tables_.build(q_, padded);
      w_.linear_weight = 1;
    } else {
      w_.square_weight = ix.config_.metric == Metric::L2 ? 1.0f : 0.5f;
      w_.linear_weight = 2 * w_.square_weight;
    }
  }

  void scan_cell(size_t cell) {
    const InvertedList& list = ix_.lists_[cell];
    const size_t n = list.slots.size();
    if (n == 0) return;
    const uint32_t probe = uint32_t(cells_.size());
    const size_t padded = ix_.rotation_.padded_dim();
    const float* centroid = ix_.coarse_.centroid(cell);
    if (ix_.config_.metric == Metric::InnerProduct) {
      w_.offset = -distance::kernels().get(distance::Scalar::F32, distance::Kernel::Dot)(q_, centroid, padded);
    } else {
      // |q - x|^2 = |r|^2 + |v|^2 - 2 |r| <o, v>, v = q - c; cosine's -<q, x> is half of it less 1.
      v_.resize(padded);
      for (size_t j = 0; j < padded; ++j) v_[j] = q_[j] - centroid[j];
      tables_.build(v_.data(), padded);
      const float v2 = tables_.v_norm * tables_.v_norm;
      w_.offset = ix_.config_.metric == Metric::L2 ? v2 : v2 / 2 - 1;
      if (ix_.ex_codes_) cell_vs_.insert(cell_vs_.end(), v_.begin(), v_.end());
    }
    cells_.push_back({w_.offset, tables_.v_norm});
    const size_t blocks = (n + kFastScanBlock - 1) / kFastScanBlock;
    sums_.resize(blocks * kFastScanBlock);
    adc_kernels().fastscan4(tables_.qlut.data(), list.codes.data(), blocks, ix_.config_.m, sums_.data());
    est_.resize(n);
    err_.resize(n);
    norms_.resize(n);
    distance::f16_to_f32_n(list.norms.data(), norms_.data(), n);
    rabitq_estimate(tables_, w_, sums_.data(), norms_.data(), list.cosines.data(), n, est_.data(), err_.data());
    // Most codes fail the first test once the bar has settled: it stays in this
    // tight loop, the rest of consider() out of it.
    const float* est = est_.data();
    const float* err = err_.data();
    for (size_t i = 0; i < n; ++i)
      if (est[i] - err[i] < upper_bar_) consider(est[i], err[i], list.slots[i], probe);
  }

  // Extended RaBitQ's middle stage (above): the candidates get the estimates
  // and bounds of their multi-bit codes, or are dropped.
  void refine(hnsw::Checkpoint& pace) {
    prune();
    std::sort(pool_.begin(), pool_.end(), by_estimate);
    RabitqExQuery q;
    q.padded_dim = ix_.rotation_.padded_dim();
    q.ex_bits = ix_.config_.ex_bits;
    q.square_weight = w_.square_weight;
    q.linear_weight = w_.linear_weight;
    q.sigmas = w_.sigmas;
    std::priority_queue<float> uppers;  // the k smallest multi-bit upper bounds, largest on top
    float bar = std::numeric_limits<float>::infinity();
    constexpr float kDropped = std::numeric_limits<float>::infinity();
    // Rows are fetched ahead as in reranked(), against today's bar.
    auto fetch = [&](size_t i) {
      if (i < pool_.size() && pool_[i].lower < bar) ix_.prefetch_ex_row(pool_[i].slot);
    };
    for (size_t i = 0; i < kRerankAhead; ++i) fetch(i);
    for (size_t i = 0; i < pool_.size(); ++i) {
      Bounded& b = pool_[i];
      if (b.lower >= bar) {
        b.lower = kDropped;
        continue;
      }
      pace.work(1);  // may let a writer in: the row is looked up after it
      fetch(i + kRerankAhead);
      const ProbedCell& cell = cells_[b.probe];
      q.v = cell_vs_.empty() ? q_ : cell_vs_.data() + size_t(b.probe) * q.padded_dim;
      q.v_norm = cell.v_norm;
      q.offset = cell.offset;
      float err;
      rabitq_ex_estimate(q, ix_.ex_codes_->bytes(b.slot), b.est, err);
      ++ex_reads_;
      b.lower = b.est - err;
      uppers.push(b.est + err);
      if (uppers.size() > k_) uppers.pop();
      if (uppers.size() == k_) bar = uppers.top();
    }
    std::erase_if(pool_, [&](const Bounded& b) { return b.lower >= bar; });
  }

  // The k nearest by estimate, without reading the vectors file.
  std::vector<Candidate> estimated() {
    prune();
    const size_t keep = std::min(k_, pool_.size());
    std::partial_sort(pool_.begin(), pool_.begin() + ptrdiff_t(keep), pool_.end(), by_estimate);
    std::vector<Candidate> out;
    for (size_t i = 0; i < keep; ++i) out.push_back({pool_[i].est, pool_[i].slot});
    return out;
  }

  // The k nearest by exact distance among the candidates the bounds leave,
  // reading at most max_reads rows.
  std::vector<Candidate> reranked(const float* q, size_t max_reads, hnsw::Checkpoint& pace) {
    prune();
    std::sort(pool_.begin(), pool_.end(), by_estimate);
    std::priority_queue<Candidate> best;  // the k best exact distances, worst on top
    auto keep = [&](const Candidate& c) {
      if (best.size() < k_) {
        best.push(c);
      } else if (c.dist < best.top().dist) {
        best.pop();
        best.push(c);
      }
    };
    std::vector<float> exact(pool_.size(), kUnread);
    size_t& reads = reads_;
    // A row is fetched ahead when it would be read against today's k-th
    // distance (which only falls, so a few fetched rows go unread).
    auto fetch = [&](size_t i) {
      if (i < pool_.size() && std::isnan(exact[i]) && (best.size() < k_ || pool_[i].lower < best.top().dist))
        ix_.prefetch_row(pool_[i].slot);
    };
    for (;;) {
      for (size_t i = 0; i < kRerankAhead; ++i) fetch(i);
      for (size_t i = 0; i < pool_.size() && reads < max_reads; ++i) {
        fetch(i + kRerankAhead);
        if (!std::isnan(exact[i]) || (best.size() == k_ && pool_[i].lower >= best.top().dist)) continue;
        pace.work(1);  // may let a writer in
        ++reads;
        exact[i] = ix_.exact_distance(q, pool_[i].slot);
        if (!ix_.is_deleted(pool_[i].slot)) keep({exact[i], pool_[i].slot});
      }
      // A write let in at a checkpoint may have deleted rows kept before it:
      // the k best of the live rows read so far take their places, and the
      // unread candidates are gone over again against the new k-th distance.
      if (!holds_deleted(best)) break;
      best = {};
      for (size_t i = 0; i < pool_.size(); ++i)
        if (!std::isnan(exact[i]) && !ix_.is_deleted(pool_[i].slot)) keep({exact[i], pool_[i].slot});
    }
    std::vector<Candidate> out;
    for (; !best.empty(); best.pop()) out.push_back(best.top());
    return out;
  }

  size_t reads() const { return reads_; }
  size_t ex_reads() const { return ex_reads_; }

 private:
  static bool by_estimate(const Bounded& a, const Bounded& b) {
    return a.est < b.est || (a.est == b.est && a.slot < b.slot);
  }

  void consider(float est, float err, uint32_t slot, uint32_t probe) {
    const float lower = est - err;
    if (lower >= upper_bar_) return;  // k codes are surely nearer
    if (ix_.is_deleted(slot)) return;
    if (filter_ && !filter_->allows(ix_.slot_ids_[slot])) return;
    pool_.push_back({est, lower, slot, probe});
    if (pool_.size() >= prune_at_) {
      prune();
      prune_at_ = std::max(prune_at_, 2 * pool_.size());
    }
    const float upper = est + err;
    if (upper >= upper_bar_) return;
    uppers_.push(upper);
    if (uppers_.size() > k_) uppers_.pop();
    if (uppers_.size() == k_) upper_bar_ = uppers_.top();
  }

  bool holds_deleted(std::priority_queue<Candidate> best) const {
    for (; !best.empty(); best.pop())
      if (ix_.is_deleted(best.top().slot)) return true;
    return false;
  }

  // Drops the candidates that the bar has overtaken since they came in.
  void prune() {
    std::erase_if(pool_, [&](const Bounded& b) { return b.lower >= upper_bar_; });
  }

  // A scanned cell's share of the distance and its query-side vector's norm,
  // for the multi-bit stage; that vector itself is q_ under ip, else in cell_vs_.
  struct ProbedCell {
    float offset, v_norm;
  };

  const IvfPqIndex& ix_;
  const float* q_;  // rotated
  const hnsw::Filter* filter_;
  size_t k_;
  RabitqQueryTables tables_;
  RabitqWeights w_;
  std::vector<float> v_, norms_, est_, err_;
  std::vector<uint16_t> sums_;
  std::vector<Bounded> pool_;
  size_t prune_at_ = 1024;
  size_t reads_ = 0;  // rows read by reranked()
  size_t ex_reads_ = 0;  // ex-code rows read by refine()
  std::vector<ProbedCell> cells_;  // the non-empty cells scanned, in order
  std::vector<float> cell_vs_;     // their query-side vectors (l2, cosine) when there are ex-codes
  std::priority_queue<float> uppers_;  // the k smallest upper bounds, largest on top
  float upper_bar_ = std::numeric_limits<float>::infinity();
};

std::vector<IvfPqIndex::Candidate> IvfPqIndex::search_rabitq(const float* q, const float* rotated,
                                                             const uint32_t* cells, size_t nprobe,
                                                             const IvfSearchParams& p,
                                                             hnsw::Checkpoint& pace) const {
  BoundScan scan(*this, rotated, p);
  for (size_t i = 0; i < nprobe; ++i) {
    pace.step(lists_[cells[i]].slots.size() + 1);
    scan.scan_cell(cells[i]);
  }
  const float sigmas = p.bound_sigmas > 0 ? p.bound_sigmas : config_.bound_sigmas;
  if (ex_codes_ && (!p.rerank || std::isfinite(sigmas))) {
    scan.refine(pace);
    ex_rows_read_.fetch_add(scan.ex_reads(), std::memory_order_relaxed);
  }
  if (!p.rerank) return scan.estimated();
  std::vector<Candidate> found = scan.reranked(q, p.rerank_k ? p.rerank_k : config_.rerank_k, pace);
  rows_read_.fetch_add(scan.reads(), std::memory_order_relaxed);
  return found;
}

}  // namespace lookalike::pq
