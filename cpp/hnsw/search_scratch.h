// Per-search working memory, pooled so that a query allocates nothing once the
// pool is warm: the visited set (reset by bumping an epoch, not by clearing) and
// the two heaps of the best-first search.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "hnsw/match_set.h"
#include "hnsw/node_sketches.h"

namespace lookalike::hnsw {

struct Candidate {
  float dist;
  uint32_t slot;
};

// Orders a std heap as a max-heap on distance (the worst result on top).
struct FartherFirst {
  bool operator()(const Candidate& a, const Candidate& b) const { return a.dist < b.dist; }
};
// Orders a std heap as a min-heap on distance (the next node to expand on top).
struct CloserFirst {
  bool operator()(const Candidate& a, const Candidate& b) const { return a.dist > b.dist; }
};

// Adds c to `top`, a FartherFirst heap, keeping only its `limit` closest.
inline void keep_closest(std::vector<Candidate>& top, Candidate c, size_t limit) {
  top.push_back(c);
  std::push_heap(top.begin(), top.end(), FartherFirst());
  if (top.size() > limit) {
    std::pop_heap(top.begin(), top.end(), FartherFirst());
    top.pop_back();
  }
}

class VisitedSet {
 public:
  // Forgets every mark and makes room for slots < n.
  void reset(size_t n) {
    if (marks_.size() < n) marks_.resize(n + n / 8, 0);
    if (++epoch_ == 0) {  // wrapped: old marks could alias the new epoch
      std::fill(marks_.begin(), marks_.end(), 0);
      epoch_ = 1;
    }
  }
  // Marks slot; returns whether it was marked already.
  bool test_and_set(uint32_t slot) {
    if (marks_[slot] == epoch_) return true;
    marks_[slot] = epoch_;
    return false;
  }
  bool marked(uint32_t slot) const { return marks_[slot] == epoch_; }
  void mark(uint32_t slot) { marks_[slot] = epoch_; }
  const uint16_t* mark_address(uint32_t slot) const { return &marks_[slot]; }
  size_t bytes() const { return marks_.capacity() * sizeof(uint16_t); }

 private:
  std::vector<uint16_t> marks_;
  uint16_t epoch_ = 0;
};

struct SearchScratch {
  VisitedSet visited;
  std::vector<Candidate> candidates;  // min-heap (CloserFirst)
  std::vector<Candidate> top;         // max-heap (FartherFirst)
  std::vector<uint32_t> batch;        // unvisited neighbours of the node being expanded
  std::vector<uint32_t> hops;         // its neighbours a filter rejects, to reach through (two-hop walk)
  MatchSet matches;                   // the ids a filtered search may return, when built
  std::vector<uint8_t> query_code;    // the query encoded like the stored vectors
  std::vector<float> query;           // the query as float32 (normalised for cosine)
  std::vector<uint8_t> rerank_query;  // the query encoded like the re-ranking copies
  std::vector<float> dists;           // one-to-many results of the exact scan
  std::vector<float> decoded_query;   // the query's code decoded: what the sketches estimate against
  NodeSketches::Query sketch_query;
  std::vector<Candidate> bounded;     // a scan's matches under the lower bounds of their sketch estimates
  std::vector<float> uppers;          // their upper bounds
  size_t distance_count = 0;          // computed by search_level, for SearchStats
  size_t filter_tests = 0;            // filter checks search_level made, for SearchStats
  size_t expansions = 0;              // nodes search_level expanded, for SearchStats

  size_t bytes() const {
    return visited.bytes() + (candidates.capacity() + top.capacity()) * sizeof(Candidate) +
           (batch.capacity() + hops.capacity()) * sizeof(uint32_t) + matches.bytes() + query_code.capacity() + rerank_query.capacity() +
           (query.capacity() + dists.capacity() + decoded_query.capacity() + uppers.capacity() +
            sketch_query.rotated.capacity()) * sizeof(float) +
           sketch_query.levels.capacity() * sizeof(int16_t) + bounded.capacity() * sizeof(Candidate);
  }
};

class ScratchPool {
 public:
  // Returns the scratch to the pool when it goes out of scope.
  class Lease {
   public:
    Lease(ScratchPool& pool, std::unique_ptr<SearchScratch> s) : pool_(pool), s_(std::move(s)) {}
    ~Lease() { pool_.give_back(std::move(s_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    SearchScratch& operator*() const { return *s_; }
    SearchScratch* operator->() const { return s_.get(); }

   private:
    ScratchPool& pool_;
    std::unique_ptr<SearchScratch> s_;
  };

  Lease acquire() {
    std::unique_ptr<SearchScratch> s;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        s = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (!s) s = std::make_unique<SearchScratch>();
    return Lease(*this, std::move(s));
  }

  size_t bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t total = 0;
    for (const auto& s : free_) total += sizeof(SearchScratch) + s->bytes();
    return total;
  }

 private:
  void give_back(std::unique_ptr<SearchScratch> s) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(s));
  }

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<SearchScratch>> free_;
};

}  // namespace lookalike::hnsw
