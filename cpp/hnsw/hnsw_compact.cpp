// Compaction: removes deleted nodes for good and renumbers the survivors.
#include <algorithm>
#include <cstring>

#include "hnsw/hnsw_index.h"

namespace lookalike::hnsw {

void HnswIndex::compact() {
  std::unique_lock<std::shared_mutex> writes(writes_mutex_);
  std::unique_lock<std::shared_mutex> graph(graph_mutex_);
  if (deleted_.load() == 0) return;

  const uint32_t count = slot_count_.load();
  std::vector<uint32_t> renumbered(count, kNoSlot);
  uint32_t live = 0;
  for (uint32_t s = 0; s < count; ++s)
    if (!is_deleted(s)) renumbered[s] = live++;

  auto nodes = std::make_unique<BlockArray>(block_bytes_);
  auto upper = std::make_unique<BlockArray>(sizeof(uint32_t*));
  nodes->reserve(live);
  upper->reserve(live);
  std::unique_ptr<BlockArray> rerank;
  if (rerank_) {
    rerank = std::make_unique<BlockArray>(rerank_->block_bytes());
    rerank->reserve(live);
  }

  std::unique_ptr<NodeSketches> sketches;
  if (sketches_) {
    sketches = std::make_unique<NodeSketches>(config_.dim, config_.metric);
    sketches->set_centre(sketches_->centre().data());
    sketches->reserve(live);
  }

  // New links are computed from the old graph, which stays untouched until the
  // swap: a node that lost neighbours is offered its deleted neighbours' live
  // neighbours instead, and keeps the best by the usual heuristic.
  std::vector<Candidate> pool;
  size_t upper_bytes = 0;
  for (uint32_t s = 0; s < count; ++s) {
    const uint32_t to = renumbered[s];
    if (to == kNoSlot) continue;
    uint8_t* block = nodes->at(to);
    std::memcpy(block, nodes_->at(s), block_bytes_);
    auto& head = *reinterpret_cast<NodeHeader*>(block);
    head.flags = 0;
    head.diverse_prefix = 0;  // its links are rebuilt below
    if (head.level > 0) {
      size_t words = size_t(head.level) * (config_.M + 1);
      *reinterpret_cast<uint32_t**>(upper->at(to)) = new uint32_t[words]();
      upper_bytes += words * sizeof(uint32_t);
    }
    if (rerank) std::memcpy(rerank->at(to), rerank_->at(s), rerank_->block_bytes());
    if (sketches) sketches->copy_slot(*sketches_, s, to);

    for (int level = 0; level <= head.level; ++level) {
      LinkList old_list = link_list(s, level);
      const uint32_t n = old_list.count.load();
      pool.clear();
      bool lost_any = false;
      for (uint32_t i = 0; i < n; ++i) {
        const uint32_t next = old_list.slots[i];
        if (!is_deleted(next)) {
          pool.push_back({0.0f, next});
          continue;
        }
        lost_any = true;
        LinkList through = link_list(next, level);
        for (uint32_t j = 0, m = through.count.load(); j < m; ++j) {
          const uint32_t second = through.slots[j];
          if (second != s && !is_deleted(second)) pool.push_back({0.0f, second});
        }
      }
      if (lost_any) {
        std::sort(pool.begin(), pool.end(), [](const Candidate& a, const Candidate& b) { return a.slot < b.slot; });
        pool.erase(std::unique(pool.begin(), pool.end(),
                               [](const Candidate& a, const Candidate& b) { return a.slot == b.slot; }),
                   pool.end());
        for (Candidate& c : pool) c.dist = codec_.distance(code(s), code(c.slot));
        select_neighbours(pool, max_links(level));
      }
      uint32_t* new_count;
      uint32_t* new_slots;
      if (level == 0) {
        new_count = &head.link_count;
        new_slots = reinterpret_cast<uint32_t*>(block + kHeaderBytes);
      } else {
        uint32_t* list = *reinterpret_cast<uint32_t**>(upper->at(to)) + size_t(level - 1) * (config_.M + 1);
        new_count = list;
        new_slots = list + 1;
      }
      *new_count = uint32_t(pool.size());
      for (size_t i = 0; i < pool.size(); ++i) new_slots[i] = renumbered[pool[i].slot];
    }
  }

  // The entry point survives if it is live; otherwise the highest live node takes over.
  uint64_t entry = kNoEntry;
  const uint64_t old_entry = entry_.load();
  if (old_entry != kNoEntry && renumbered[entry_slot(old_entry)] != kNoSlot) {
    entry = pack_entry(renumbered[entry_slot(old_entry)], entry_level(old_entry));
  } else {
    for (uint32_t s = 0; s < count; ++s)
      if (renumbered[s] != kNoSlot && (entry == kNoEntry || header(s).level > entry_level(entry)))
        entry = pack_entry(renumbered[s], header(s).level);
  }

  for (uint32_t s = 0; s < count; ++s) delete[] upper_of(s);
  nodes_ = std::move(nodes);
  upper_ = std::move(upper);
  rerank_ = std::move(rerank);
  sketches_ = std::move(sketches);
  upper_bytes_.store(upper_bytes);
  entry_.store(entry);
  slot_count_.store(live);
  deleted_.store(0);
  {
    std::lock_guard<std::mutex> lock(ids_mutex_);
    slot_by_id_.clear();
    for (uint32_t s = 0; s < live; ++s) slot_by_id_.insert(header(s).id, s);
  }

  rebuild_groups(renumbered);

  // A node whose neighbourhood was mostly deleted kept few links, and one hop
  // through the deleted nodes did not make up for it: link it again by
  // searching the compacted graph, as a new node would be.
  if (live < 2) return;
  const uint32_t few = std::min<uint32_t>(uint32_t(config_.M / 2), live - 1);
  for (uint32_t s = 0; s < live; ++s)
    if (link_list(s, 0).count.load() < few) insert(s, code(s));
  // Dropping nodes can also leave others with no in-link left.
  repair_reachability();
  added_since_repair_.store(0);
}

}  // namespace lookalike::hnsw
