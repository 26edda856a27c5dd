// The native filter hook of a search: a predicate the graph traversal asks about
// each candidate, evaluated in C++ with the GIL released (never a Python
// callback per node). A node that fails the filter is still walked through, so
// the graph stays connected, but never returned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "hnsw/match_set.h"

namespace lookalike::hnsw {

// What a filter tells the planner at the start of a search (Filter::plan).
class StopToken;  // search_stop.h

struct FilterPlan {
  static constexpr size_t kUnknown = std::numeric_limits<size_t>::max();
  size_t estimate = kUnknown;  // ids expected to match (their true count when built)
  size_t driver = kUnknown;    // ids the filter's cheapest clause lists
  // What building the set costs, in ids of the driver listed (a filter that
  // builds it another way, as a bitmap, says what that costs in the same
  // unit): what plan()'s build_limit is compared with.
  size_t build = kUnknown;
  bool built = false;  // the match set holds exactly the ids the filter allows
  bool as_bitmaps = false;  // built by evaluating the filter as bitmaps, not by listing the driver
};

//
// Beyond allows(), a filter may offer two capabilities that let the search
// planner (hnsw_filtered.cpp) choose between an exact scan of the matching ids
// and a graph walk; the defaults mean "cannot tell", which leads to the walk.
// A search calls all three methods while it holds hold().
class Filter {
 public:
  static constexpr size_t kUnknown = std::numeric_limits<size_t>::max();

  virtual ~Filter() = default;
  virtual bool allows(int64_t id) const = 0;

  // Roughly how many ids the filter allows, or kUnknown.
  virtual size_t estimate() const { return kUnknown; }

  // Appends to `out` the ids the filter allows (repeats are fine) and returns
  // true; returns false, leaving `out` as it was, when the filter cannot list
  // its ids or would have to look at more than `limit` of them to do so.
  virtual bool candidates(size_t /*limit*/, std::vector<int64_t>& /*out*/) const { return false; }

  // What the planner needs, measured now: the count of matches (estimated from
  // the cheapest clause, or exact) and, when building them costs no more than
  // listing `build_limit` ids (FilterPlan::build), the matches themselves in
  // `set` (built = true).
  // Listing a long driver takes a while: it checks `stop` (when not null) as
  // it goes, throwing as StopToken::check does. This default lists
  // candidates() and counts them.
  virtual FilterPlan plan(size_t build_limit, MatchSet& set, const StopToken* stop) const;

  // Held for one whole search: a filter over data that changes under it (an
  // attribute store) locks that data shared here, so allows() takes no lock per call.
  virtual std::shared_lock<std::shared_mutex> hold() const { return {}; }
  // Whether a writer waits for the data hold() locks: a long search then lets it
  // in at its next checkpoint (search_stop.h), giving up its hold and taking a
  // new one, so a write never waits for a whole search.
  virtual bool writer_waiting() const { return false; }
  // Values every allowed id holds, as "attribute=value" (a keyword match the
  // filter requires): the keys of group graphs (HnswIndex::link_group) a
  // search may walk instead of the whole graph.
  virtual const std::vector<std::string>& required_values() const {
    static const std::vector<std::string> none;
    return none;
  }
  // Roughly how much work one allows() is, in units of a clause check (about a
  // distance computation): a search paces its checkpoints by it.
  virtual size_t cost() const { return 1; }
};

// The filter a search walks with once its match set is built: a bit test per node.
class MatchSetFilter final : public Filter {
 public:
  explicit MatchSetFilter(const MatchSet& set) : set_(set) {}
  bool allows(int64_t id) const override { return set_.contains(id); }
  size_t estimate() const override { return set_.size(); }

 private:
  const MatchSet& set_;
};

// Allows (or, with exclude, rejects) a set of external ids. Dense id ranges are
// held as a bitset (one bit an id up to the largest), sparse ones as a hash set.
class IdFilter final : public Filter {
 public:
  IdFilter(const int64_t* ids, size_t n, bool exclude);
  bool allows(int64_t id) const override {
    bool listed = dense_ ? in_bitset(id) : set_.count(id) != 0;
    return listed != exclude_;
  }
  size_t estimate() const override { return exclude_ ? kUnknown : size_; }
  bool candidates(size_t limit, std::vector<int64_t>& out) const override;
  size_t size() const { return size_; }
  bool exclude() const { return exclude_; }

 private:
  bool in_bitset(int64_t id) const {
    return id >= 0 && uint64_t(id) < bits_.size() * 64 && (bits_[uint64_t(id) >> 6] >> (id & 63)) & 1;
  }

  std::vector<uint64_t> bits_;
  std::unordered_set<int64_t> set_;
  bool dense_ = false;
  size_t size_ = 0;  // distinct ids listed
  bool exclude_;
};

}  // namespace lookalike::hnsw
