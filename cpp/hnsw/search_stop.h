// Stopping a search that has run out of time or lost its caller, and letting
// writers past a long one.
//
// A StopToken carries a deadline on the steady clock and a cancelled flag that
// another thread may set at any time (the service sets it when the call is
// cancelled). The long loops of a search (the graph walk, the exact scans, the
// IVF-PQ cells) step a Checkpoint as they go, a step per node or vector, each
// weighted by what the filter costs on it; every kWorkPerCheck units of work
// (about a distance computation each) it reads the flag and the clock (not a
// system call per node: a few hundred nodes apart without a filter, every
// node under a filter of thousands of values) and throws
// SearchCancelled or DeadlineExceeded, which unwind the search through its
// RAII locks and pooled scratch. A search also checks once before it starts, so
// an expired token never runs one.
//
// The same checkpoint lets writers past: a search holds the filter's data
// shared for as long as it runs (Filter::hold), and an IVF-PQ search its index
// too, so a writer would otherwise wait for the whole search. When a writer
// waits for either, the search gives up both holds and takes them again (in the
// order it first took them) after the write.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <stdexcept>

#include "hnsw/filters.h"
#include "hnsw/writer_first_mutex.h"

namespace lookalike::hnsw {

// A search stopped before it finished (TimeoutError / a CancelledError-like
// error in Python, by the subclass).
class SearchStopped : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class DeadlineExceeded final : public SearchStopped {
 public:
  using SearchStopped::SearchStopped;
};
class SearchCancelled final : public SearchStopped {
 public:
  using SearchStopped::SearchStopped;
};

class StopToken {
 public:
  using Clock = std::chrono::steady_clock;

  StopToken() = default;  // no deadline; stops only when cancelled
  explicit StopToken(Clock::time_point deadline) : deadline_(deadline) {}

  void cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  const std::optional<Clock::time_point>& deadline() const { return deadline_; }

  // Throws SearchCancelled or DeadlineExceeded when the search must stop.
  void check() const {
    if (cancelled()) throw SearchCancelled("the search was cancelled");
    if (deadline_ && Clock::now() >= *deadline_) throw DeadlineExceeded("the search passed its deadline");
  }

 private:
  std::optional<Clock::time_point> deadline_;
  std::atomic<bool> cancelled_{false};
};

// The per-search counter that paces the checks. `stop` may be null (no
// deadline, never cancelled); `held` is the search's hold of the filter's data
// (Filter::hold), or null when it holds none; `index` and `index_held` the
// index's own lock and the search's read of it, when the search holds one.
class Checkpoint {
 public:
  static constexpr ptrdiff_t kWorkPerCheck = 4096;

  Checkpoint(const StopToken* stop, const Filter* filter, std::shared_lock<std::shared_mutex>* held,
             const WriterFirstMutex* index = nullptr, std::shared_lock<std::shared_mutex>* index_held = nullptr)
      : stop_(stop),
        filter_(filter),
        held_(held && held->owns_lock() ? held : nullptr),
        index_(index),
        index_held_(index_held),
        work_per_step_(ptrdiff_t(1 + (filter ? std::min<size_t>(filter->cost(), kWorkPerCheck) : 0))) {
    if (stop_) stop_->check();
  }

  // n more nodes or vectors looked at, each maybe checked by the filter.
  void step(size_t n = 1) { work(n * size_t(work_per_step_)); }
  // Work without the filter: n distance computations, say.
  void work(size_t n) {
    if ((left_ -= ptrdiff_t(n)) > 0) return;
    left_ = kWorkPerCheck;
    if (stop_) stop_->check();
    const bool index_wanted = index_held_ && index_->writer_waiting();
    if (!index_wanted && !(held_ && filter_->writer_waiting())) return;
    if (held_) held_->unlock();
    if (index_wanted) {
      index_held_->unlock();
      *index_held_ = index_->read();
    }
    if (held_) *held_ = filter_->hold();
  }

 private:
  const StopToken* stop_;
  const Filter* filter_;
  std::shared_lock<std::shared_mutex>* held_;
  const WriterFirstMutex* index_;
  std::shared_lock<std::shared_mutex>* index_held_;
  ptrdiff_t work_per_step_;
  ptrdiff_t left_ = kWorkPerCheck;
};

}  // namespace lookalike::hnsw
