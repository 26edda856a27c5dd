// Building and searching the graph. Persistence is in hnsw_persist.cpp,
// compaction in hnsw_compact.cpp.
#include "hnsw/hnsw_index.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <unordered_set>

#include "hnsw/best_first.h"
#include "hnsw/parallel.h"

namespace lookalike::hnsw {


namespace {
constexpr int kMaxLevel = 31;
constexpr float kInf = std::numeric_limits<float>::infinity();

size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

std::string id_text(int64_t id) { return std::to_string(id); }
}  // namespace

void IndexConfig::validate() const {
  if (dim == 0 || dim > 65536) throw std::invalid_argument("dim must be in [1, 65536], got " + std::to_string(dim));
  if (M < 2 || M > 256) throw std::invalid_argument("M must be in [2, 256], got " + std::to_string(M));
  if (ef_construction < 1) throw std::invalid_argument("ef_construction must be >= 1");
  if (ef_search < 1) throw std::invalid_argument("ef_search must be >= 1");
  if (int(metric) > 2) throw std::invalid_argument("unknown metric");
  if (int(storage) > 2) throw std::invalid_argument("unknown storage");
  if (rerank_copies && *rerank_copies == distance::Scalar::I8)
    throw std::invalid_argument("re-ranking copies must be float32 or float16");
}

HnswIndex::HnswIndex(const IndexConfig& config)
    : config_((config.validate(), config)),
      codec_(config.dim, config.metric, config.storage),
      block_bytes_(round_up(kHeaderBytes + 2 * config.M * sizeof(uint32_t) + codec_.code_bytes(), 8)),
      code_offset_(kHeaderBytes + 2 * config.M * sizeof(uint32_t)),
      nodes_(std::make_unique<BlockArray>(block_bytes_)),
      upper_(std::make_unique<BlockArray>(sizeof(uint32_t*))),
      level_rng_(config.seed),
      level_mult_(1.0 / std::log(double(config.M))) {
  // Copies only help when they are more precise than the graph's codes.
  if (config_.rerank_copies && *config_.rerank_copies >= config_.storage) config_.rerank_copies.reset();
  if (config_.rerank_copies) {
    rerank_codec_.emplace(config_.dim, config_.metric, *config_.rerank_copies);
    rerank_ = std::make_unique<BlockArray>(rerank_codec_->code_bytes());
  }
  if (config_.sketches) sketches_ = std::make_unique<NodeSketches>(config_.dim, config_.metric);
}

HnswIndex::~HnswIndex() {
  for (uint32_t s = 0, n = slot_count_.load(); s < n; ++s) delete[] upper_of(s);
}

// --- node access ---------------------------------------------------------------

HnswIndex::NodeHeader& HnswIndex::header(uint32_t slot) const {
  return *reinterpret_cast<NodeHeader*>(nodes_->at(slot));
}

const uint8_t* HnswIndex::code(uint32_t slot) const { return nodes_->at(slot) + code_offset_; }

void HnswIndex::prefetch_code(uint32_t slot) const {
  // The whole block: its head (flags, id), its links (read when the node is
  // expanded) and its code. A walk asks for every new neighbour's block before
  // scoring the first, so all of them are in flight at once; prefetching only
  // the head and the code's first 256 bytes left the rest to the hardware
  // prefetcher, which followed too late: measured at 200k x 512 float16 (A/B in
  // one process, CPU time), the whole block made the unfiltered walk 1.5x as
  // fast (ef 48: 158 -> 106 us), the filtered walks likewise (50%: 283 -> 181
  // us; 10%: 1,108 -> 718 us), and a build ~10% faster.
  const uint8_t* block = nodes_->at(slot);
  for (size_t off = 0; off < block_bytes_; off += 64) __builtin_prefetch(block + off);
}

uint32_t*& HnswIndex::upper_of(uint32_t slot) const { return *reinterpret_cast<uint32_t**>(upper_->at(slot)); }

HnswIndex::LinkList HnswIndex::link_list(uint32_t slot, int level) const {
  if (level == 0) {
    uint8_t* block = nodes_->at(slot);
    return {std::atomic_ref<uint32_t>(reinterpret_cast<NodeHeader*>(block)->link_count),
            reinterpret_cast<uint32_t*>(block + kHeaderBytes)};
  }
  uint32_t* list = upper_of(slot) + size_t(level - 1) * (config_.M + 1);
  return {std::atomic_ref<uint32_t>(list[0]), list + 1};
}

bool HnswIndex::is_deleted(uint32_t slot) const {
  return std::atomic_ref<uint8_t>(header(slot).flags).load(std::memory_order_relaxed) & kDeleted;
}

void HnswIndex::lock_node(uint32_t slot) const {
  std::atomic_ref<uint8_t> flags(header(slot).flags);
  while (flags.fetch_or(kLocked, std::memory_order_acquire) & kLocked) std::this_thread::yield();
}

void HnswIndex::unlock_node(uint32_t slot) const {
  std::atomic_ref<uint8_t>(header(slot).flags).fetch_and(uint8_t(~kLocked), std::memory_order_release);
}

bool HnswIndex::admitted(uint32_t slot, const Filter* filter, bool skip_deleted) const {
  if (skip_deleted && is_deleted(slot)) return false;
  return !filter || filter->allows(header(slot).id);
}

// --- the graph algorithm ---------------------------------------------------------

int HnswIndex::draw_level() {
  double u = std::uniform_real_distribution<double>(0.0, 1.0)(level_rng_);
  double level = -std::log(1.0 - u) * level_mult_;  // 1 - u lies in (0, 1]
  return int(std::min<double>(level, kMaxLevel));
}

uint32_t HnswIndex::greedy_descend(const uint8_t* query, uint32_t entry, int from_level, int to_level) const {
  float best = codec_.distance(query, code(entry));
  for (int level = from_level; level > to_level; --level) {
    for (bool moved = true; moved;) {
      moved = false;
      LinkList list = link_list(entry, level);
      uint32_t n = std::min<uint32_t>(list.count.load(std::memory_order_acquire), max_links(level));
      for (uint32_t i = 0; i < n; ++i) {
        uint32_t next = std::atomic_ref<uint32_t>(list.slots[i]).load(std::memory_order_acquire);
        float d = codec_.distance(query, code(next));
        if (d < best) {
          best = d;
          entry = next;
          moved = true;
        }
      }
    }
  }
  return entry;
}

void HnswIndex::search_level(const uint8_t* query, uint32_t entry, size_t ef, int level, const Filter* filter,
                             SearchScratch& s, Checkpoint* pace, bool test_when_expanded) const {
  // Nodes reserved after this point may get linked while we walk; skipping
  // them keeps the visited set in bounds and costs nothing a later search won't see.
  const LevelView view{*this, level, slot_count_.load(std::memory_order_acquire)};
  best_first(view, query, {&entry, 1}, ef, filter, s, pace, test_when_expanded);
}

void HnswIndex::select_neighbours(std::vector<Candidate>& candidates, size_t m,
                                  std::span<const uint32_t> diverse) const {
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) { return a.dist < b.dist; });
  if (candidates.size() <= m) return;
  auto known = [&](uint32_t slot) { return std::find(diverse.begin(), diverse.end(), slot) != diverse.end(); };
  thread_local std::vector<uint8_t> kept_known;  // by kept position: a slot of `diverse`
  kept_known.clear();
  size_t kept = 0;
  for (size_t i = 0; i < candidates.size() && kept < m; ++i) {
    const Candidate c = candidates[i];
    const bool c_known = !diverse.empty() && known(c.slot);
    bool passes = true;
    for (size_t j = 0; j < kept && passes; ++j)
      passes = (c_known && kept_known[j]) || codec_.distance(code(c.slot), code(candidates[j].slot)) >= c.dist;
    if (passes) {
      candidates[kept++] = c;
      kept_known.push_back(c_known);
    }
  }
  candidates.resize(kept);
}

void HnswIndex::link_to(uint32_t from, uint32_t to, int level) {
  lock_node(from);
  LinkList list = link_list(from, level);
  uint32_t n = list.count.load(std::memory_order_relaxed);
  for (uint32_t i = 0; i < n; ++i) {
    if (list.slots[i] == to) {  // already linked (it linked to us while we were being inserted)
      unlock_node(from);
      return;
    }
  }
  if (n < max_links(level)) {
    std::atomic_ref<uint32_t>(list.slots[n]).store(to, std::memory_order_release);
    list.count.store(n + 1, std::memory_order_release);
  } else {
    // Full: keep the most useful max_links of the old links plus the new one.
    // The links kept by the last pruning pass the heuristic among themselves,
    // so only pairs with a link appended since (or the new one) are measured:
    // pruning was 40% of an insert's distances at 512-d.
    thread_local std::vector<Candidate> pool;
    pool.clear();
    const uint8_t* base = code(from);
    for (uint32_t i = 0; i < n; ++i) prefetch_code(list.slots[i]);
    pool.push_back({codec_.distance(base, code(to)), to});
    for (uint32_t i = 0; i < n; ++i) pool.push_back({codec_.distance(base, code(list.slots[i])), list.slots[i]});
    const size_t prefix = level == 0 ? std::min<size_t>(header(from).diverse_prefix, n) : 0;
    select_neighbours(pool, max_links(level), {list.slots, prefix});
    for (size_t i = 0; i < pool.size(); ++i)
      std::atomic_ref<uint32_t>(list.slots[i]).store(pool[i].slot, std::memory_order_release);
    list.count.store(uint32_t(pool.size()), std::memory_order_release);
    if (level == 0) header(from).diverse_prefix = uint16_t(pool.size());
  }
  unlock_node(from);
}

void HnswIndex::insert(uint32_t slot, const uint8_t* query) {
  const int level = header(slot).level;
  uint64_t entry = entry_.load(std::memory_order_acquire);
  // A node that becomes the new top holds entry_mutex_ for its whole insert, so
  // two new tops cannot both take over the entry point.
  std::unique_lock<std::mutex> top_lock(entry_mutex_, std::defer_lock);
  if (entry == kNoEntry || level > entry_level(entry)) {
    top_lock.lock();
    entry = entry_.load(std::memory_order_acquire);
    if (entry == kNoEntry) {
      entry_.store(pack_entry(slot, level), std::memory_order_release);
      return;
    }
    if (level <= entry_level(entry)) top_lock.unlock();
  }
  const int top = entry_level(entry);
  uint32_t nearest = greedy_descend(query, entry_slot(entry), top, level);

  auto s = scratch_.acquire();
  std::vector<Candidate> chosen, back_links;
  for (int l = std::min(level, top); l >= 0; --l) {
    search_level(query, nearest, config_.ef_construction, l, nullptr, *s);
    chosen.clear();
    for (const Candidate& c : s->top)
      if (c.slot != slot) chosen.push_back(c);  // a node re-linked by compact() can find itself
    if (chosen.empty()) continue;
    const bool tested = chosen.size() > config_.M;  // fewer are all kept, untested by the heuristic
    select_neighbours(chosen, config_.M);
    const size_t diverse = tested ? chosen.size() : 0;
    nearest = chosen.front().slot;
    back_links.assign(chosen.begin(), chosen.end());

    lock_node(slot);
    LinkList own = link_list(slot, l);
    // Once this node is linked on a higher level, concurrent inserts can reach it
    // and link themselves to it on this level before it gets here: keep those
    // links (overwriting them would leave such a node unreachable) and prune the
    // union if it overflows.
    for (uint32_t i = 0, had = own.count.load(std::memory_order_relaxed); i < had; ++i) {
      const uint32_t other = own.slots[i];
      if (std::none_of(chosen.begin(), chosen.end(), [&](const Candidate& c) { return c.slot == other; }))
        chosen.push_back({codec_.distance(query, code(other)), other});
    }
    const bool pruned = chosen.size() > max_links(l);
    if (pruned) select_neighbours(chosen, max_links(l));
    if (l == 0) header(slot).diverse_prefix = uint16_t(pruned ? chosen.size() : diverse);
    for (size_t i = 0; i < chosen.size(); ++i)
      std::atomic_ref<uint32_t>(own.slots[i]).store(chosen[i].slot, std::memory_order_release);
    own.count.store(uint32_t(chosen.size()), std::memory_order_release);
    unlock_node(slot);
    for (const Candidate& c : back_links) link_to(c.slot, slot, l);
  }
  if (top_lock.owns_lock()) entry_.store(pack_entry(slot, level), std::memory_order_release);
}

// --- writes ----------------------------------------------------------------------

void HnswIndex::check_vectors(const float* vectors, size_t n) const {
  const size_t dim = config_.dim;
  for (size_t i = 0; i < n; ++i) {
    const float* v = vectors + i * dim;
    double norm2 = 0.0;
    for (size_t j = 0; j < dim; ++j) {
      if (!std::isfinite(v[j]))
        throw std::invalid_argument("vector " + std::to_string(i) + " has a non-finite value (" +
                                    std::to_string(v[j]) + ") at component " + std::to_string(j));
      norm2 += double(v[j]) * v[j];
    }
    if (config_.metric == Metric::Cosine && norm2 == 0.0)
      throw std::invalid_argument("vector " + std::to_string(i) +
                                  " is all zeros: cosine distance is undefined for it");
  }
}

uint32_t HnswIndex::slot_of(int64_t id) const {
  const uint32_t slot = slot_by_id_.find(id);
  if (slot == kNoSlot) throw UnknownIdError("id " + id_text(id) + " is not in the index");
  return slot;
}

uint32_t HnswIndex::reserve_slots(const int64_t* ids, size_t n) {
  const uint32_t first = slot_count_.load(std::memory_order_relaxed);
  if (size_t(first) + n >= kNoSlot) throw std::length_error("the index is full (2^32 - 1 slots)");
  nodes_->reserve(first + n);
  upper_->reserve(first + n);
  if (rerank_) rerank_->reserve(first + n);
  if (sketches_) sketches_->reserve(first + n);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t slot = first + uint32_t(i);
    NodeHeader& h = header(slot);
    h.id = ids[i];
    h.level = uint8_t(draw_level());
    if (h.level > 0) {
      size_t words = size_t(h.level) * (config_.M + 1);
      upper_of(slot) = new uint32_t[words]();
      upper_bytes_ += words * sizeof(uint32_t);
    }
    if (const uint32_t old = slot_by_id_.find(ids[i]); old != kNoSlot) {
      // replace: the old node stays in the graph as a tombstone
      std::atomic_ref<uint8_t>(header(old).flags).fetch_or(kDeleted);
      deleted_.fetch_add(1);
      slot_by_id_.erase(ids[i]);
    }
    slot_by_id_.insert(ids[i], slot);
  }
  slot_count_.store(first + uint32_t(n), std::memory_order_release);
  return first;
}

void HnswIndex::add(const int64_t* ids, const float* vectors, size_t n, bool replace, size_t threads) {
  if (n == 0) return;
  check_vectors(vectors, n);
  add_checked(ids, vectors, n, replace, threads);
  // A repair walks the whole graph: once per eighth of growth keeps it cheap
  // per vector, and a build (one large add) always ends with one.
  const size_t added = added_since_repair_.fetch_add(n) + n;
  if (added * 8 < size()) return;
  std::unique_lock<std::shared_mutex> writes(writes_mutex_);  // no insert runs meanwhile
  std::shared_lock<std::shared_mutex> graph(graph_mutex_);
  if (added_since_repair_.load() == 0) return;  // another add repaired it meanwhile
  repair_reachability();
  added_since_repair_.store(0);
}

void HnswIndex::add_checked(const int64_t* ids, const float* vectors, size_t n, bool replace, size_t threads) {
  std::shared_lock<std::shared_mutex> writes(writes_mutex_);
  std::shared_lock<std::shared_mutex> graph(graph_mutex_);

  uint32_t first;
  {
    std::lock_guard<std::mutex> lock(ids_mutex_);
    std::unordered_set<int64_t> batch;
    batch.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      if (ids[i] < 0) throw std::invalid_argument("ids must be >= 0, got " + id_text(ids[i]));
      if (!batch.insert(ids[i]).second) throw DuplicateIdError("id " + id_text(ids[i]) + " appears twice in the batch");
      if (!replace && slot_by_id_.find(ids[i]) != kNoSlot)
        throw DuplicateIdError("id " + id_text(ids[i]) + " is already in the index (use upsert to replace it)");
    }
    // The first batch fixes the int8 scale and the sketches' centre.
    const bool sketch_centre = sketches_ && !sketches_->has_centre();
    if (codec_.needs_int8_scale() || sketch_centre) {
      std::vector<float> prepared(n * config_.dim);
      for (size_t i = 0; i < n; ++i) codec_.prepare(vectors + i * config_.dim, prepared.data() + i * config_.dim);
      if (codec_.needs_int8_scale()) codec_.choose_int8_scale(prepared.data(), n);
      if (sketch_centre) sketches_->set_centre_to_mean(prepared.data(), n);
    }
    first = reserve_slots(ids, n);
  }

  parallel_for(n, threads, [&](size_t i) {
    thread_local std::vector<float> prepared;
    prepared.resize(config_.dim);
    const uint32_t slot = first + uint32_t(i);
    codec_.prepare(vectors + i * config_.dim, prepared.data());
    codec_.encode(prepared.data(), nodes_->at(slot) + code_offset_);
    if (rerank_) rerank_codec_->encode(prepared.data(), rerank_->at(slot));
    if (sketches_) encode_sketch(slot);
    insert(slot, code(slot));
  });
}

void HnswIndex::encode_sketch(uint32_t slot) {
  // The sketch of the vector as stored: its estimates then bound the codec's distances.
  thread_local std::vector<float> decoded;
  decoded.resize(config_.dim);
  codec_.decode(code(slot), decoded.data());
  sketches_->encode(slot, decoded.data());
}

void HnswIndex::build_sketches() {
  const uint32_t count = slot_count_.load();
  sketches_ = std::make_unique<NodeSketches>(config_.dim, config_.metric);
  std::vector<double> sum(config_.dim, 0.0);
  std::vector<float> decoded(config_.dim);
  size_t live = 0;
  for (uint32_t s = 0; s < count; ++s) {
    if (is_deleted(s)) continue;
    codec_.decode(code(s), decoded.data());
    for (size_t j = 0; j < config_.dim; ++j) sum[j] += decoded[j];
    ++live;
  }
  for (size_t j = 0; j < config_.dim; ++j) decoded[j] = live ? float(sum[j] / double(live)) : 0.0f;
  sketches_->set_centre(decoded.data());
  sketches_->reserve(count);
  parallel_for(count, 0, [&](size_t s) { encode_sketch(uint32_t(s)); });
}

void HnswIndex::remove(const int64_t* ids, size_t n) {
  std::shared_lock<std::shared_mutex> writes(writes_mutex_);
  std::shared_lock<std::shared_mutex> graph(graph_mutex_);
  std::lock_guard<std::mutex> lock(ids_mutex_);
  for (size_t i = 0; i < n; ++i) slot_of(ids[i]);  // all-or-nothing: check every id first
  for (size_t i = 0; i < n; ++i) {
    const uint32_t slot = slot_by_id_.find(ids[i]);
    if (slot == kNoSlot) continue;  // listed twice
    std::atomic_ref<uint8_t>(header(slot).flags).fetch_or(kDeleted);
    deleted_.fetch_add(1);
    slot_by_id_.erase(ids[i]);
  }
}

bool HnswIndex::contains(int64_t id) const {
  std::lock_guard<std::mutex> lock(ids_mutex_);
  return slot_by_id_.find(id) != kNoSlot;
}

void HnswIndex::get(const int64_t* ids, size_t n, float* out) const {
  std::shared_lock<std::shared_mutex> graph(graph_mutex_);
  std::lock_guard<std::mutex> lock(ids_mutex_);
  for (size_t i = 0; i < n; ++i) slot_of(ids[i]);
  for (size_t i = 0; i < n; ++i) {
    uint32_t slot = slot_of(ids[i]);
    float* v = out + i * config_.dim;
    if (rerank_)
      rerank_codec_->decode(rerank_->at(slot), v);
    else
      codec_.decode(code(slot), v);
  }
}

// --- search ----------------------------------------------------------------------

void HnswIndex::prepare_query(const float* query, SearchScratch& s) const {
  check_vectors(query, 1);
  s.query.resize(config_.dim);
  codec_.prepare(query, s.query.data());
  s.query_code.resize(codec_.code_bytes());
  codec_.encode(s.query.data(), s.query_code.data());
  if (rerank_codec_) {
    s.rerank_query.resize(rerank_codec_->code_bytes());
    rerank_codec_->encode(s.query.data(), s.rerank_query.data());
  }
}

void HnswIndex::prepare_sketch_query(const SearchParams& p, SearchScratch& s) const {
  s.decoded_query.resize(config_.dim);
  codec_.decode(s.query_code.data(), s.decoded_query.data());
  sketches_->prepare(s.decoded_query.data(), p.bound_sigmas > 0 ? p.bound_sigmas : NodeSketches::kDefaultSigmas,
                     s.sketch_query);
}

void HnswIndex::search_exact(SearchScratch& s, const SearchParams& p, Checkpoint& pace) const {
  const uint32_t count = slot_count_.load(std::memory_order_acquire);
  const bool skip_deleted = deleted_.load(std::memory_order_relaxed) > 0;
  s.top.clear();
  s.dists.resize(BlockArray::kSegmentBlocks);
  for (size_t seg = 0; seg * BlockArray::kSegmentBlocks < count; ++seg) {
    const size_t begin = seg * BlockArray::kSegmentBlocks;
    const size_t n = std::min<size_t>(BlockArray::kSegmentBlocks, count - begin);
    pace.work(n);
    if (rerank_)
      rerank_codec_->distance_many(s.rerank_query.data(), rerank_->segment(seg), n, rerank_->block_bytes(),
                                   s.dists.data());
    else
      codec_.distance_many(s.query_code.data(), nodes_->segment(seg) + code_offset_, n, block_bytes_,
                           s.dists.data());
    for (size_t i = 0; i < n; ++i) {
      const float d = s.dists[i];
      if (s.top.size() >= p.k && d >= s.top.front().dist) continue;
      if (p.filter) pace.step();
      if (!admitted(uint32_t(begin + i), p.filter, skip_deleted)) continue;
      keep_closest(s.top, {d, uint32_t(begin + i)}, p.k);
    }
  }
}

void HnswIndex::finish_results(SearchScratch& s, const SearchParams& p, int64_t* ids, float* dists) const {
  if (rerank_ && p.rerank && !p.exact)
    for (Candidate& c : s.top) c.dist = rerank_codec_->distance(s.rerank_query.data(), rerank_->at(c.slot));
  const size_t found = std::min(p.k, s.top.size());
  std::partial_sort(s.top.begin(), s.top.begin() + found, s.top.end(),
                    [](const Candidate& a, const Candidate& b) { return a.dist < b.dist; });
  for (size_t i = 0; i < found; ++i) {
    ids[i] = header(s.top[i].slot).id;
    dists[i] = s.top[i].dist;
  }
  std::fill(ids + found, ids + p.k, kNoId);
  std::fill(dists + found, dists + p.k, kInf);
}

void HnswIndex::search(const float* query, const SearchParams& p, int64_t* ids, float* dists,
                       SearchStats* stats) const {
  if (p.k == 0) throw std::invalid_argument("k must be >= 1");
  std::shared_lock<std::shared_mutex> graph(graph_mutex_);
  // The filter's data stays still between checkpoints (see Filter::hold).
  auto held = p.filter ? p.filter->hold() : std::shared_lock<std::shared_mutex>();
  Checkpoint pace(p.stop, p.filter, &held);
  auto s = scratch_.acquire();
  prepare_query(query, *s);
  s->top.clear();
  s->distance_count = 0;
  s->filter_tests = 0;
  s->expansions = 0;
  SearchStats st;
  const uint64_t entry = entry_.load(std::memory_order_acquire);
  if (entry != kNoEntry) {
    if (p.exact) {
      search_exact(*s, p, pace);
      st.plan = Plan::ExactScan;
      st.distances = slot_count_.load(std::memory_order_relaxed);
    } else if (p.filter) {
      search_filtered(*s, p, entry, st, pace);
    } else {
      const size_t ef = std::max(p.ef ? p.ef : ef_search(), p.k);
      uint32_t start = greedy_descend(s->query_code.data(), entry_slot(entry), entry_level(entry), 0);
      search_level(s->query_code.data(), start, ef, 0, p.filter, *s, &pace);
      st.ef = ef;
      st.distances = s->distance_count;
      st.expansions = s->expansions;
    }
  }
  finish_results(*s, p, ids, dists);
  if (stats) *stats = st;
}

void HnswIndex::sketch_estimates(const float* query, const int64_t* ids, size_t n, float bound_sigmas, float* est,
                                 float* err) const {
  if (!sketches_) throw std::logic_error("this index keeps no sketches (it was built with sketches off)");
  std::shared_lock<std::shared_mutex> graph(graph_mutex_);
  auto s = scratch_.acquire();
  prepare_query(query, *s);
  SearchParams p;
  p.bound_sigmas = bound_sigmas;
  prepare_sketch_query(p, *s);
  std::lock_guard<std::mutex> lock(ids_mutex_);
  for (size_t i = 0; i < n; ++i) slot_of(ids[i]);
  for (size_t i = 0; i < n; ++i) sketches_->estimate(s->sketch_query, slot_of(ids[i]), est[i], err[i]);
}

void HnswIndex::search_batch(const float* queries, size_t n, const SearchParams& p, int64_t* ids, float* dists,
                             size_t threads, SearchStats* stats) const {
  if (p.k == 0) throw std::invalid_argument("k must be >= 1");
  parallel_for(n, threads, [&](size_t i) {
    search(queries + i * config_.dim, p, ids + i * p.k, dists + i * p.k, stats ? stats + i : nullptr);
  });
}

// --- introspection ---------------------------------------------------------------

void HnswIndex::set_ef_search(size_t ef) {
  if (ef < 1) throw std::invalid_argument("ef_search must be >= 1");
  std::atomic_ref<size_t>(config_.ef_search).store(ef, std::memory_order_relaxed);
}

size_t HnswIndex::size() const {
  std::lock_guard<std::mutex> lock(ids_mutex_);
  return slot_by_id_.size();
}

MemoryUsage HnswIndex::memory_usage() const {
  std::shared_lock<std::shared_mutex> graph(graph_mutex_);
  MemoryUsage m;
  m.node_bytes = nodes_->allocated_bytes();
  m.upper_link_bytes = upper_->allocated_bytes() + upper_bytes_.load();
  m.rerank_vector_bytes = rerank_ ? rerank_->allocated_bytes() : 0;
  m.sketch_bytes = sketches_ ? sketches_->allocated_bytes() : 0;
  {
    std::shared_lock<std::shared_mutex> groups(groups_mutex_);
    for (const auto& entry : groups_) m.group_bytes += entry.second->bytes();
  }
  {
    std::lock_guard<std::mutex> lock(ids_mutex_);
    m.id_map_bytes = slot_by_id_.bytes();
    m.live = slot_by_id_.size();
  }
  m.scratch_bytes = scratch_.bytes();
  m.total_bytes = m.node_bytes + m.upper_link_bytes + m.rerank_vector_bytes + m.sketch_bytes + m.group_bytes +
                  m.id_map_bytes + m.scratch_bytes;
  m.deleted = deleted_.load();
  m.capacity = nodes_->capacity();
  return m;
}

}  // namespace lookalike::hnsw
