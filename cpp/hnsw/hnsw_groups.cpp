// Group graphs (group_graph.h): building one, and the filtered walk inside it.
//
// A member is linked as insert() links a node on level 0: a search of the
// group's graph with ef_construction from its seeds, the neighbour heuristic
// choosing up to 2M of the nodes found, and links back from each (pruned by the
// same heuristic past 2M). A group has no upper levels: its walk starts from
// GroupGraph::kSeeds members spread over the joining order, scored first.
// Measured on bench/filters.py's 10% conjunction (200k x 512 float16, a
// 41,575-member top category): 16, 64 or 128 seeds gave the same recall@10
// (0.952, 0.946, 0.947: the spread between builds of one group is ~0.01) and
// the same nodes expanded; 16 cost the fewest distances. Linking the members in
// a shuffled order instead of the ids' made no difference either.
#include <algorithm>

#include "hnsw/best_first.h"
#include "hnsw/hnsw_index.h"
#include "hnsw/parallel.h"

namespace lookalike::hnsw {

void HnswIndex::link_group(const std::string& key, const int64_t* ids, size_t n, size_t threads) {
  std::shared_lock<std::shared_mutex> writes(writes_mutex_);
  std::shared_lock<std::shared_mutex> graph(graph_mutex_);
  std::lock_guard<std::mutex> group_writes(group_writes_mutex_);
  std::vector<uint32_t> slots(n);
  {
    std::lock_guard<std::mutex> lock(ids_mutex_);
    for (size_t i = 0; i < n; ++i) slots[i] = slot_of(ids[i]);  // all or nothing: throws before any change
  }
  std::sort(slots.begin(), slots.end());  // storage order; repeats dropped
  slots.erase(std::unique(slots.begin(), slots.end()), slots.end());
  std::shared_ptr<GroupGraph> group;
  {
    std::unique_lock<std::shared_mutex> lock(groups_mutex_);
    auto& entry = groups_[key];
    if (!entry) entry = std::make_shared<GroupGraph>(max_links(0));
    group = entry;
  }
  link_members(*group, group->append(slots), threads);
}

void HnswIndex::link_members(GroupGraph& g, uint32_t first, size_t threads) const {
  g.publish();
  // The first members of a new group link one after another: in parallel,
  // each would search a graph of unlinked seeds.
  const uint32_t end = g.size();
  const uint32_t serial = first == 0 ? std::min<uint32_t>(end, 4 * GroupGraph::kSeeds) : first;
  {
    auto s = scratch_.acquire();
    for (uint32_t m = first; m < serial; ++m) link_member(g, m, *s);
  }
  parallel_for(end - serial, threads, [&](size_t i) {
    auto s = scratch_.acquire();
    link_member(g, serial + uint32_t(i), *s);
  });
}

bool HnswIndex::drop_group(const std::string& key) {
  std::unique_lock<std::shared_mutex> lock(groups_mutex_);
  return groups_.erase(key) > 0;
}

std::vector<std::pair<std::string, size_t>> HnswIndex::groups() const {
  std::shared_lock<std::shared_mutex> lock(groups_mutex_);
  std::vector<std::pair<std::string, size_t>> out;
  for (const auto& [key, g] : groups_) out.emplace_back(key, g->size());
  return out;
}

std::shared_ptr<const GroupGraph> HnswIndex::group_for(const Filter& filter) const {
  const std::vector<std::string>& values = filter.required_values();
  if (values.empty()) return nullptr;
  std::shared_lock<std::shared_mutex> lock(groups_mutex_);
  std::shared_ptr<const GroupGraph> best;
  for (const std::string& value : values) {
    const auto it = groups_.find(value);
    if (it != groups_.end() && (!best || it->second->size() < best->size())) best = it->second;
  }
  return best;
}

void HnswIndex::link_member(GroupGraph& g, uint32_t member, SearchScratch& s) const {
  const uint8_t* query = code(g.slot(member));
  std::vector<uint32_t>& seeds = s.hops;
  g.seeds(GroupGraph::kSeeds, seeds);
  best_first(GroupView{g, g.size()}, query, seeds, config_.ef_construction, nullptr, s, nullptr, false);

  // The heuristic measures slots: the chosen members' slots are mapped back through the group.
  std::vector<Candidate> chosen;
  for (const Candidate& c : s.top)
    if (c.slot != member) chosen.push_back({c.dist, g.slot(c.slot)});
  if (chosen.empty()) return;
  // Up to 2M links from the start, not M as insert() chooses on level 0:
  // measured on bench/filters.py's 10% conjunction (200k x 512, a 41,575-member
  // group), recall@10 0.952 with M, 0.962 with 2M, for the same ~1,110
  // distances a query; one query in 100 went from 0.1 to 1.0.
  select_neighbours(chosen, g.max_links());
  for (Candidate& c : chosen) c.slot = g.member_of(c.slot);
  const std::vector<Candidate> back_links = chosen;

  g.lock(member);
  GroupGraph::Links own = g.links(member);
  // Members linked to this one while it searched keep their links (as insert() does).
  for (uint32_t i = 0, had = own.count.load(std::memory_order_relaxed); i < had; ++i) {
    const uint32_t other = own.members[i];
    if (std::none_of(chosen.begin(), chosen.end(), [&](const Candidate& c) { return c.slot == other; }))
      chosen.push_back({codec_.distance(query, code(g.slot(other))), other});
  }
  if (chosen.size() > g.max_links()) {
    for (Candidate& c : chosen) c.slot = g.slot(c.slot);
    select_neighbours(chosen, g.max_links());
    for (Candidate& c : chosen) c.slot = g.member_of(c.slot);
  }
  for (size_t i = 0; i < chosen.size(); ++i)
    std::atomic_ref<uint32_t>(own.members[i]).store(chosen[i].slot, std::memory_order_release);
  own.count.store(uint32_t(chosen.size()), std::memory_order_release);
  g.unlock(member);
  for (const Candidate& c : back_links) link_member_to(g, c.slot, member);
}

void HnswIndex::link_member_to(GroupGraph& g, uint32_t from, uint32_t to) const {
  g.lock(from);
  GroupGraph::Links list = g.links(from);
  const uint32_t n = list.count.load(std::memory_order_relaxed);
  if (std::find(list.members, list.members + n, to) != list.members + n) {
    g.unlock(from);
    return;
  }
  if (n < g.max_links()) {
    std::atomic_ref<uint32_t>(list.members[n]).store(to, std::memory_order_release);
    list.count.store(n + 1, std::memory_order_release);
  } else {
    // Full: the heuristic keeps the most useful of the old links and the new one.
    thread_local std::vector<Candidate> pool;
    pool.clear();
    const uint8_t* base = code(g.slot(from));
    for (uint32_t i = 0; i < n; ++i) prefetch_code(g.slot(list.members[i]));
    for (uint32_t i = 0; i <= n; ++i) {
      const uint32_t slot = g.slot(i < n ? list.members[i] : to);
      pool.push_back({codec_.distance(base, code(slot)), slot});
    }
    select_neighbours(pool, g.max_links());
    for (size_t i = 0; i < pool.size(); ++i)
      std::atomic_ref<uint32_t>(list.members[i]).store(g.member_of(pool[i].slot), std::memory_order_release);
    list.count.store(uint32_t(pool.size()), std::memory_order_release);
  }
  g.unlock(from);
}

void HnswIndex::search_group(const GroupGraph& g, const uint8_t* query, size_t ef, const Filter& allowed,
                             SearchScratch& s, Checkpoint& pace) const {
  std::vector<uint32_t>& seeds = s.hops;
  g.seeds(GroupGraph::kSeeds, seeds);
  best_first(GroupView{g, g.size()}, query, seeds, ef, &allowed, s, &pace, /*test_when_expanded=*/true);
  s.distance_count += seeds.size();
  for (Candidate& c : s.top) c.slot = g.slot(c.slot);
}

void HnswIndex::rebuild_groups(const std::vector<uint32_t>& renumbered) {
  std::unique_lock<std::shared_mutex> lock(groups_mutex_);
  for (auto& [key, old] : groups_) {
    std::vector<uint32_t> live;
    for (uint32_t m = 0; m < old->size(); ++m)
      if (const uint32_t to = renumbered[old->slot(m)]; to != kNoSlot) live.push_back(to);
    auto group = std::make_shared<GroupGraph>(old->max_links());
    link_members(*group, group->append(live), 0);
    old = std::move(group);
  }
}

}  // namespace lookalike::hnsw
