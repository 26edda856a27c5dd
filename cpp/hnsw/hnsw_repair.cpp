// Reachability: every live node can be reached from the entry point on level 0.
//
// Inserts link a new node from its neighbours, but a neighbour whose list is
// full keeps only the most useful links (select_neighbours), and parallel
// inserts prune each other's lists while they link: now and then a node ends
// up with no in-link left, or a small group links only among itself. No search
// can return such a node. The repair walks level 0 from the entry point, and
// links each node the walk missed from the nearest reached node that can take
// one more link without stranding another, then walks on from it.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "hnsw/hnsw_index.h"

namespace lookalike::hnsw {

std::vector<uint8_t> HnswIndex::reached_from_entry(std::vector<uint32_t>* in_links) const {
  const uint32_t count = slot_count_.load(std::memory_order_acquire);
  std::vector<uint8_t> reached(count, 0);
  if (in_links) in_links->assign(count, 0);
  const uint64_t entry = entry_.load(std::memory_order_acquire);
  if (entry != kNoEntry) walk_from(entry_slot(entry), reached, in_links);
  return reached;
}

void HnswIndex::walk_from(uint32_t start, std::vector<uint8_t>& reached, std::vector<uint32_t>* in_links) const {
  std::vector<uint32_t> frontier{start};
  reached[start] = 1;
  while (!frontier.empty()) {
    const uint32_t slot = frontier.back();
    frontier.pop_back();
    LinkList list = link_list(slot, 0);
    const uint32_t n = std::min<uint32_t>(list.count.load(std::memory_order_acquire), max_links(0));
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t next = std::atomic_ref<uint32_t>(list.slots[i]).load(std::memory_order_acquire);
      if (next >= reached.size()) continue;
      if (in_links) ++(*in_links)[next];
      if (!reached[next]) {
        reached[next] = 1;
        frontier.push_back(next);
      }
    }
  }
}

size_t HnswIndex::unreached_live(const std::vector<uint8_t>& reached) const {
  size_t missed = 0;
  for (uint32_t s = 0; s < reached.size(); ++s) missed += !reached[s] && !is_deleted(s);
  return missed;
}

size_t HnswIndex::unreachable_count() const {
  std::unique_lock<std::shared_mutex> writes(writes_mutex_);
  std::shared_lock<std::shared_mutex> graph(graph_mutex_);
  return unreached_live(reached_from_entry());
}

void HnswIndex::repair_reachability() {
  // A link given up for a repair leaves its target another in-link from a
  // reached node, but that node may have been reached only through the link
  // given up (a cycle): walk again and repeat while that leaves fewer unreached.
  constexpr int kMaxRounds = 8;
  size_t before = SIZE_MAX;
  for (int round = 0; round < kMaxRounds; ++round) {
    std::vector<uint32_t> in_links;  // from reached nodes only: only those keep a target reachable
    std::vector<uint8_t> reached = reached_from_entry(&in_links);
    const size_t missed = unreached_live(reached);
    if (missed == 0 || missed >= before) return;
    before = missed;
    for (uint32_t s = 0; s < reached.size(); ++s) {
      if (reached[s] || is_deleted(s)) continue;
      link_from_reached(s, reached, in_links);
      walk_from(s, reached, &in_links);
    }
  }
}

void HnswIndex::link_from_reached(uint32_t slot, const std::vector<uint8_t>& reached,
                                  std::vector<uint32_t>& in_links) {
  // A link into a list with room strands nobody. Giving up a link can: its
  // target's other in-link may come from a node reached only through it (a
  // cycle the counts cannot see), and on near-duplicate data such give-ups
  // once left 950 of 1,000 nodes unreached after a round that began with 320.
  // So every list with room is tried first: the reached nodes nearest to
  // `slot` that its walk met, then up to kRoomSample others spread over the
  // graph (nearest first); links are given up only when none has room.
  constexpr size_t kRoomSample = 4096;
  const uint64_t entry = entry_.load(std::memory_order_acquire);
  auto s = scratch_.acquire();
  const uint32_t start = greedy_descend(code(slot), entry_slot(entry), entry_level(entry), 0);
  search_level(code(slot), start, config_.ef_construction, 0, nullptr, *s);
  auto by_distance = [](const Candidate& a, const Candidate& b) { return a.dist < b.dist; };
  std::vector<Candidate> near;
  for (const Candidate& c : s->top)
    if (reached[c.slot]) near.push_back(c);
  std::sort(near.begin(), near.end(), by_distance);
  auto link_from_one_of = [&](const std::vector<Candidate>& from, bool may_replace) {
    for (const Candidate& c : from)
      if (add_link_keeping_reachability(c.slot, slot, in_links, may_replace)) return true;
    return false;
  };
  if (link_from_one_of(near, false)) return;
  // The walk stayed among unreached nodes (a group that links only among
  // itself), or no reached node near it has room. Once per such group: the
  // walk on from `slot` reaches the rest.
  std::vector<Candidate> spread;
  const size_t stride = std::max<size_t>(1, reached.size() / kRoomSample);
  for (uint32_t r = 0; r < reached.size(); r += uint32_t(stride))
    if (reached[r]) spread.push_back({codec_.distance(code(slot), code(r)), r});
  std::sort(spread.begin(), spread.end(), by_distance);
  if (link_from_one_of(spread, false) || link_from_one_of(near, true)) return;
  // Every list full: every reached node, nearest first, may give up a link.
  spread.clear();
  for (uint32_t r = 0; r < reached.size(); ++r)
    if (reached[r]) spread.push_back({codec_.distance(code(slot), code(r)), r});
  std::sort(spread.begin(), spread.end(), by_distance);
  link_from_one_of(spread, true);
}

bool HnswIndex::add_link_keeping_reachability(uint32_t from, uint32_t to, std::vector<uint32_t>& in_links,
                                              bool may_replace) {
  // Room left: the link is added. A full list (when it may) gives up its
  // farthest link whose target another node links to as well, so no node loses
  // its last in-link (the neighbour heuristic of link_to could drop any, and a
  // repair could undo another).
  lock_node(from);
  LinkList list = link_list(from, 0);
  const uint32_t n = list.count.load(std::memory_order_relaxed);
  int at = -1;
  if (std::find(list.slots, list.slots + n, to) != list.slots + n) {
    unlock_node(from);
    return true;
  }
  if (n < max_links(0)) {
    at = int(n);
  } else if (may_replace) {
    float farthest = -1.0f;
    for (uint32_t i = 0; i < n; ++i) {
      const float d = codec_.distance(code(from), code(list.slots[i]));
      if (in_links[list.slots[i]] > 1 && d > farthest) {
        farthest = d;
        at = int(i);
      }
    }
  }
  if (at >= 0) {
    if (uint32_t(at) < n) --in_links[list.slots[at]];
    ++in_links[to];
    std::atomic_ref<uint32_t>(list.slots[at]).store(to, std::memory_order_release);
    NodeHeader& head = header(from);  // the replaced link's pairs with the others were never measured
    head.diverse_prefix = std::min<uint16_t>(head.diverse_prefix, uint16_t(at));
    if (uint32_t(at) == n) list.count.store(n + 1, std::memory_order_release);
  }
  unlock_node(from);
  return at >= 0;
}

}  // namespace lookalike::hnsw
