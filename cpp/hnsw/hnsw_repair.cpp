// Reachability: every live node can be reached from the entry point on level 0.
//
// Inserts link a new node from its neighbours, but a neighbour whose list is
// full keeps only the most useful links (select_neighbours), and parallel
// inserts prune each other's lists while they link: now and then a node ends
// up with no in-link left, or a small group links only among itself. No search
// can return such a node. The repair walks level 0 from the entry point, and
// links each node the walk missed from its nearest reached nodes (as an insert
// would, by the usual heuristic), then walks on from it.
#include <algorithm>

#include "hnsw/hnsw_index.h"

namespace lookalike::hnsw {

std::vector<uint8_t> HnswIndex::reached_from_entry() const {
  const uint32_t count = slot_count_.load(std::memory_order_acquire);
  std::vector<uint8_t> reached(count, 0);
  const uint64_t entry = entry_.load(std::memory_order_acquire);
  if (entry != kNoEntry) walk_from(entry_slot(entry), reached);
  return reached;
}

void HnswIndex::walk_from(uint32_t start, std::vector<uint8_t>& reached) const {
  std::vector<uint32_t> frontier{start};
  reached[start] = 1;
  while (!frontier.empty()) {
    const uint32_t slot = frontier.back();
    frontier.pop_back();
    LinkList list = link_list(slot, 0);
    const uint32_t n = std::min<uint32_t>(list.count.load(std::memory_order_acquire), max_links(0));
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t next = std::atomic_ref<uint32_t>(list.slots[i]).load(std::memory_order_acquire);
      if (next < reached.size() && !reached[next]) {
        reached[next] = 1;
        frontier.push_back(next);
      }
    }
  }
}

size_t HnswIndex::unreachable_count() const {
  std::unique_lock<std::shared_mutex> writes(writes_mutex_);
  std::shared_lock<std::shared_mutex> graph(graph_mutex_);
  const std::vector<uint8_t> reached = reached_from_entry();
  size_t missed = 0;
  for (uint32_t s = 0; s < reached.size(); ++s) missed += !reached[s] && !is_deleted(s);
  return missed;
}

void HnswIndex::repair_reachability() {
  std::vector<uint8_t> reached = reached_from_entry();
  for (uint32_t s = 0; s < reached.size(); ++s) {
    if (reached[s] || is_deleted(s)) continue;
    link_from_reached(s, reached);
    walk_from(s, reached);
  }
}

void HnswIndex::link_from_reached(uint32_t slot, const std::vector<uint8_t>& reached) {
  const uint64_t entry = entry_.load(std::memory_order_acquire);
  auto s = scratch_.acquire();
  const uint32_t start = greedy_descend(code(slot), entry_slot(entry), entry_level(entry), 0);
  search_level(code(slot), start, config_.ef_construction, 0, nullptr, *s);
  std::vector<Candidate> near;
  for (const Candidate& c : s->top)
    if (c.slot != slot && reached[c.slot]) near.push_back(c);
  if (near.empty()) near.push_back({codec_.distance(code(slot), code(entry_slot(entry))), entry_slot(entry)});
  select_neighbours(near, config_.M);

  auto links_to_slot = [&](uint32_t from) {
    LinkList list = link_list(from, 0);
    const uint32_t* begin = list.slots;
    const uint32_t* end = begin + list.count.load(std::memory_order_relaxed);
    return std::find(begin, end, slot) != end;
  };
  bool linked = false;
  for (const Candidate& c : near) {
    link_to(c.slot, slot, 0);  // the heuristic may turn it down when c's list is full
    linked = linked || links_to_slot(c.slot);
  }
  for (size_t i = 0; i < near.size() && !linked; ++i) linked = replace_spare_link(near[i].slot, slot);
}

bool HnswIndex::replace_spare_link(uint32_t from, uint32_t to) {
  // The farthest link of `from` whose target another node links to too: taking
  // it away leaves that target reachable.
  const uint32_t count = slot_count_.load(std::memory_order_acquire);
  std::vector<uint32_t> in_links(count, 0);
  for (uint32_t s = 0; s < count; ++s) {
    LinkList list = link_list(s, 0);
    for (uint32_t i = 0, n = list.count.load(std::memory_order_relaxed); i < n; ++i) ++in_links[list.slots[i]];
  }
  lock_node(from);
  LinkList list = link_list(from, 0);
  const uint32_t n = list.count.load(std::memory_order_relaxed);
  int spare = -1;
  float farthest = -1.0f;
  for (uint32_t i = 0; i < n; ++i) {
    const float d = codec_.distance(code(from), code(list.slots[i]));
    if (in_links[list.slots[i]] > 1 && d > farthest) {
      farthest = d;
      spare = int(i);
    }
  }
  if (spare >= 0) std::atomic_ref<uint32_t>(list.slots[spare]).store(to, std::memory_order_release);
  unlock_node(from);
  return spare >= 0;
}

}  // namespace lookalike::hnsw
