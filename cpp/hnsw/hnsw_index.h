// HNSW: a hierarchical navigable small-world graph (Malkov & Yashunin, 2016).
//
// Parameters and their trade-offs:
//   M                links a node keeps on the upper levels (2M on level 0). More
//                    links: higher recall at a given ef and a slower build, and
//                    4 bytes a link of memory. 16 suits 512-d embeddings; 32 gains
//                    recall above 0.99.
//   ef_construction  width of the search that picks a new node's links. Higher:
//                    a better graph and a slower build; past ~200 it rarely pays.
//   ef_search        width of the search at query time (raised to k when smaller):
//                    the knob that trades QPS for recall.
//   storage          float32 / float16 / int8 codes for the graph's distances (see
//                    vector_codec.h).
//   rerank_copies    float32 or float16 copies of the vectors beside compressed
//                    codes, to re-rank the ef candidates: the graph walks on the
//                    small codes (fewer cache lines a hop), the final order comes
//                    from the copies. float16 copies rank like float32 ones on
//                    normalised embeddings at half the bytes: int8 + float16 copies
//                    take 1536 bytes a 512-d vector against 2048 for float32 alone.
//   sketches         a 1-bit RaBitQ sketch of every vector (node_sketches.h), on
//                    by default: a filtered scan of many matches estimates them
//                    on it and reads few full vectors. 72 bytes a 512-d vector
//                    (6% of a float16 node) and a rotation per insert.
//
// Memory layout (as in hnswlib): each node's level-0 data is one block holding
// its id, link count, level, flags, its level-0 links and its vector code, so a
// hop touches one contiguous region. Upper-level links (about 1 node in M has
// any) live in a separate allocation per node.
//
// Concurrency: searches, inserts and deletes run concurrently. Links are read
// without locks (relaxed atomics: a reader may see a list mid-rewrite, but every
// entry it sees is a valid node) and written under a one-bit spin lock in the
// node's flags. save() blocks writers, not searches; compact() blocks everything.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <map>
#include <optional>
#include <random>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <span>
#include <vector>

#include "filter/row_map.h"
#include "hnsw/block_array.h"
#include "hnsw/filters.h"
#include "hnsw/group_graph.h"
#include "hnsw/search_scratch.h"
#include "hnsw/search_stop.h"
#include "hnsw/vector_codec.h"

namespace lookalike::io {
class FileWriter;
class FileReader;
}  // namespace lookalike::io

namespace lookalike::hnsw {

// An id the index does not hold (delete, get, replace of an unknown id).
class UnknownIdError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// An id added twice (already present, or twice in one batch) without replace.
class DuplicateIdError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct IndexConfig {
  size_t dim = 0;
  Metric metric = Metric::Cosine;
  distance::Scalar storage = distance::Scalar::F32;
  size_t M = 16;
  size_t ef_construction = 200;
  size_t ef_search = 64;
  // None, or the storage of re-ranking copies (F32 or F16; only beside compressed storage).
  std::optional<distance::Scalar> rerank_copies;
  uint64_t seed = 0;        // of the level draw: the same inserts in the same order give the same graph
  // Keep a 1-bit sketch of every vector (node_sketches.h) that filtered
  // searches estimate distances on before reading full vectors: 72 bytes a
  // 512-d vector.
  bool sketches = true;

  void validate() const;  // throws std::invalid_argument naming the bad field
};

// How one search went: which plan the planner chose (hnsw_filtered.cpp), what it
// expected and what it cost.
enum class Plan : uint8_t {
  Graph,           // no filter: the plain graph walk
  FilteredGraph,   // the graph walk, admitting only allowed ids, with ef raised
  ExactScan,       // every listed id (or, with exact, every vector) scored exactly
  TwoHopGraph,     // the graph walk over allowed nodes only, reaching them through
                   // rejected neighbours (two hops): distances on allowed nodes only
  GroupGraph,      // the filtered walk inside the graph of a group the filter requires
                   // (link_group): its members only
};
const char* plan_name(Plan plan);

struct SearchParams {
  size_t k = 10;
  size_t ef = 0;                    // 0: the index's ef_search; raised to k when smaller
  const Filter* filter = nullptr;   // only ids it allows are returned
  bool rerank = true;               // re-rank on the index's re-ranking copies when it keeps them
  bool exact = false;               // scan every vector instead of walking the graph
  // When set, the search throws DeadlineExceeded / SearchCancelled once the
  // token says so (search_stop.h); the token outlives the search.
  const StopToken* stop = nullptr;
  // With a filter: run this plan instead of the planner's choice (tests and
  // benchmarks compare plans with it). Graph means "let the planner choose".
  Plan plan = Plan::Graph;
  // Width of the sketches' error bound (node_sketches.h) in standard
  // deviations: 0 for the default; infinity reads every candidate's full vector.
  float bound_sigmas = 0;
};


struct SearchStats {
  Plan plan = Plan::Graph;
  size_t estimate = Filter::kUnknown;  // ids the filter was expected to allow
  size_t ef = 0;                       // width of the graph walk (0 for a scan)
  size_t distances = 0;                // distance computations on level 0 or in the scan
  bool fell_back = false;              // the walk found fewer than k, so a scan followed
  size_t matches = Filter::kUnknown;   // ids the filter allows, counted (when its match set was built)
  size_t driver = Filter::kUnknown;    // ids its cheapest clause lists (what building the set reads)
  size_t tested = 0;                   // filter tests (bits of the match set, or predicate checks) in the walk
  size_t expansions = 0;               // nodes the level-0 walk expanded (their links read), one after another
  size_t estimates = 0;                // distances estimated on sketches (node_sketches.h)
  size_t group_size = 0;               // members of the group graph walked (GroupGraph plan)
};

struct MemoryUsage {
  size_t node_bytes = 0;        // level-0 blocks: ids, links, vector codes
  size_t upper_link_bytes = 0;  // links of the levels above 0
  size_t rerank_vector_bytes = 0;  // re-ranking copies
  size_t sketch_bytes = 0;      // the vectors' sketches
  size_t group_bytes = 0;       // group graphs (link_group): members' slots, links, slot -> member maps
  size_t id_map_bytes = 0;      // external id -> slot (estimated from the hash map's shape)
  size_t scratch_bytes = 0;     // pooled visited sets and heaps
  size_t total_bytes = 0;
  size_t live = 0, deleted = 0, capacity = 0;
};

class HnswIndex {
 public:
  static constexpr int64_t kNoId = -1;  // pads results when fewer than k match

  explicit HnswIndex(const IndexConfig& config);
  ~HnswIndex();
  HnswIndex(const HnswIndex&) = delete;
  HnswIndex& operator=(const HnswIndex&) = delete;

  // Adds n vectors (row-major, dim floats each) under non-negative ids, using up
  // to `threads` threads (0: every core). With replace, an id already present is
  // replaced; without, it is a DuplicateIdError. Every input is checked before
  // anything changes: a bad id or a non-finite value leaves the index untouched.
  void add(const int64_t* ids, const float* vectors, size_t n, bool replace, size_t threads = 0);

  // Deletes ids at once: they are never returned again. All-or-nothing: an
  // unknown id is an UnknownIdError and nothing is deleted. Space comes back
  // with compact().
  void remove(const int64_t* ids, size_t n);

  bool contains(int64_t id) const;
  // The stored vectors (decoded; normalised under cosine), dim floats per id.
  void get(const int64_t* ids, size_t n, float* out) const;

  // k nearest neighbours of one query: ids and distances (ascending), padded
  // with kNoId / +inf when fewer than k ids match.
  // With a filter, a planner picks an exact scan or a filtered walk (see
  // hnsw_filtered.cpp); `stats`, when given, says which and what it cost.
  void search(const float* query, const SearchParams& params, int64_t* ids, float* dists,
              SearchStats* stats = nullptr) const;
  // n queries, spread over up to `threads` threads (0: every core); stats: n of them, or null.
  void search_batch(const float* queries, size_t n, const SearchParams& params, int64_t* ids, float* dists,
                    size_t threads = 0, SearchStats* stats = nullptr) const;

  // The sketches' estimated distances of n ids to one query and their error
  // bounds (node_sketches.h), `bound_sigmas` wide (0: the default): what a
  // filtered search reads full vectors by. std::logic_error when the index
  // keeps no sketches; UnknownIdError (and nothing written) for an id it does
  // not hold.
  void sketch_estimates(const float* query, const int64_t* ids, size_t n, float bound_sigmas, float* est,
                        float* err) const;

  // Group graphs (group_graph.h): a graph over the nodes that share a value a
  // filter can require, e.g. "category=women/dresses", for searches whose
  // filter requires that value (Filter::required_values) to walk among them
  // only, when the planner finds it cheaper. link_group creates the group
  // `key` if new and links in the ids not yet members, using up to `threads`
  // threads; an unknown id is an UnknownIdError and nothing changes. The
  // caller keeps a group whole: every live node holding the value must be a
  // member (the walk finds no other), so it links each new or replaced node
  // holding it. A member that loses the value needs nothing: the filter
  // rejects it. Writers of one group are serialised; searches go on.
  void link_group(const std::string& key, const int64_t* ids, size_t n, size_t threads = 0);
  // Forgets a group; false when there was none.
  bool drop_group(const std::string& key);
  // Every group's key and members (deleted nodes included until compact()).
  std::vector<std::pair<std::string, size_t>> groups() const;

  // Removes deleted nodes for good: their neighbours are relinked through them
  // (so the graph stays connected) and the surviving nodes are renumbered into a
  // dense array. Blocks searches and writes while it runs.
  void compact();

  // Live nodes that a walk of level 0 from the entry point does not reach (no
  // search can return them). add() and compact() repair such nodes
  // (hnsw_repair.cpp): after any add that grows the index by an eighth or more
  // since the last repair (a build), and at every compaction. Blocks writers.
  size_t unreachable_count() const;

  void save(const std::string& path) const;
  static std::unique_ptr<HnswIndex> load(const std::string& path);

  // The layout of the sections save() writes; a file of kind HNSW records it as
  // its kind version. Another index that embeds an HNSW (IVF-PQ's coarse graph)
  // records it too, to hand back to read_sections.
  static constexpr uint32_t kFileLayoutVersion = 4;
  // The sections of save(), numbered first_section + 1 .. first_section + 7, in
  // a container that may hold other sections too; read_sections reads them back
  // (written under `layout_version`), with every check load() makes.
  void write_sections(io::FileWriter& out, uint32_t first_section) const;
  static std::unique_ptr<HnswIndex> read_sections(const io::FileReader& in, uint32_t first_section,
                                                  uint32_t layout_version);

  const IndexConfig& config() const { return config_; }
  // May change while other threads search: read it here, not in config().
  size_t ef_search() const {
    return std::atomic_ref<size_t>(const_cast<size_t&>(config_.ef_search)).load(std::memory_order_relaxed);
  }
  void set_ef_search(size_t ef);
  size_t size() const;  // live ids
  size_t deleted_count() const { return deleted_.load(std::memory_order_relaxed); }
  MemoryUsage memory_usage() const;
  float int8_scale() const { return codec_.int8_scale(); }

 private:
  // --- node blocks -----------------------------------------------------------
  static constexpr uint32_t kNoSlot = UINT32_MAX;
  static_assert(kNoSlot == filter::kNoRow, "slot_by_id_ answers kNoRow for an id it does not hold");
  static constexpr uint8_t kDeleted = 1;
  static constexpr uint8_t kLocked = 2;
  // The head of every level-0 block; the 2M level-0 links follow it, then the code.
  struct NodeHeader {
    int64_t id;
    uint32_t link_count;  // level-0 links in use; atomic access only
    uint8_t level;        // top level of the node
    uint8_t flags;        // kDeleted | kLocked; atomic access only
    // The first diverse_prefix level-0 links pass the neighbour heuristic among
    // themselves (a pruned list, before links were appended to it); 0 when not
    // known. Lets a full list's pruning skip those pairs (link_to).
    uint16_t diverse_prefix;
  };
  static constexpr size_t kHeaderBytes = sizeof(NodeHeader);
  static_assert(kHeaderBytes == 16);

  NodeHeader& header(uint32_t slot) const;
  const uint8_t* code(uint32_t slot) const;
  uint32_t*& upper_of(uint32_t slot) const;  // levels 1..L as [count][M slots] each
  size_t max_links(int level) const { return level == 0 ? 2 * config_.M : config_.M; }
  bool is_deleted(uint32_t slot) const;

  struct LinkList {  // a view of one node's links at one level
    std::atomic_ref<uint32_t> count;
    uint32_t* slots;
  };
  void prefetch_code(uint32_t slot) const;
  LinkList link_list(uint32_t slot, int level) const;

  void lock_node(uint32_t slot) const;
  void unlock_node(uint32_t slot) const;

  // --- graph algorithm -------------------------------------------------------
  // add() after its input's values are checked: everything but the repair.
  void add_checked(const int64_t* ids, const float* vectors, size_t n, bool replace, size_t threads);
  int draw_level();
  void insert(uint32_t slot, const uint8_t* code);
  uint32_t greedy_descend(const uint8_t* query, uint32_t entry, int from_level, int to_level) const;
  // Best-first search of one level; leaves the ef best admitted nodes in s.top.
  // A query's search steps `pace` per node it expands; an insert's has none.
  // With test_when_expanded, a node is tested by the filter (and admitted) when
  // it is expanded rather than when it is scored: the nodes are expanded in
  // order of distance, so the ef best admitted come out the same, and the
  // filter runs once per expanded node, not once per scored one (a tenth of
  // them under a selective filter; see hnsw_filtered.cpp).
  void search_level(const uint8_t* query, uint32_t entry, size_t ef, int level, const Filter* filter,
                    SearchScratch& s, Checkpoint* pace = nullptr, bool test_when_expanded = false) const;
  // The best-first search behind search_level, over a graph `view` (best_first.h):
  // the index's links on one level (nodes are slots), or a group's (nodes are
  // member numbers). Starts from every entry; s.top holds the view's nodes.
  template <class View>
  void best_first(const View& view, const uint8_t* query, std::span<const uint32_t> entries, size_t ef,
                  const Filter* filter, SearchScratch& s, Checkpoint* pace, bool test_when_expanded) const;
  struct LevelView;
  struct GroupView;
  // --- group graphs (hnsw_groups.cpp) ---
  // Links members first.. of a group (just appended) into its graph, using up to `threads` threads.
  void link_members(GroupGraph& g, uint32_t first, size_t threads) const;
  // Links a member into its group graph as insert() links a node on level 0.
  void link_member(GroupGraph& g, uint32_t member, SearchScratch& s) const;
  void link_member_to(GroupGraph& g, uint32_t from, uint32_t to) const;
  // The filtered walk of a group's graph (plan GroupGraph): leaves s.top as
  // search_level does, in slots.
  void search_group(const GroupGraph& g, const uint8_t* query, size_t ef, const Filter& allowed, SearchScratch& s,
                    Checkpoint& pace) const;
  // The smallest group among the values `filter` requires, or null.
  std::shared_ptr<const GroupGraph> group_for(const Filter& filter) const;
  // Reads the group graphs' section (hnsw_persist.cpp) into an index being loaded.
  void read_groups(const io::FileReader& in, uint32_t section);
  // The groups rebuilt over the renumbered live nodes (compact()).
  void rebuild_groups(const std::vector<uint32_t>& renumbered);
  // Keeps at most m of `candidates` (closest first), skipping a candidate that is
  // closer to an already kept one than to the base node (the paper's heuristic).
  // Pairs of the slots in `diverse` are known to pass and are not measured.
  void select_neighbours(std::vector<Candidate>& candidates, size_t m,
                         std::span<const uint32_t> diverse = {}) const;
  void link_to(uint32_t from, uint32_t to, int level);
  // --- reachability (hnsw_repair.cpp); the caller keeps inserts out ---
  // By slot: 1 when a walk of level 0 from the entry reaches it; with in_links,
  // also how many links each node has from the nodes reached.
  std::vector<uint8_t> reached_from_entry(std::vector<uint32_t>* in_links = nullptr) const;
  // Marks what a walk from `start` reaches that was not reached yet (counting the links, as above).
  void walk_from(uint32_t start, std::vector<uint8_t>& reached, std::vector<uint32_t>* in_links = nullptr) const;
  size_t unreached_live(const std::vector<uint8_t>& reached) const;
  void repair_reachability();
  // Links `slot` from a reached node: one with room if any (nearest first), else
  // the nearest that can spare a link.
  void link_from_reached(uint32_t slot, const std::vector<uint8_t>& reached, std::vector<uint32_t>& in_links);
  // Links from -> to on level 0 if from has room or, when it may replace, a link
  // to spare (one whose target has other in-links); false otherwise. Keeps in_links.
  bool add_link_keeping_reachability(uint32_t from, uint32_t to, std::vector<uint32_t>& in_links, bool may_replace);

  // Fills s.top with the k best admitted nodes of a scan of every node (on the
  // re-ranking copies when kept).
  void search_exact(SearchScratch& s, const SearchParams& p, Checkpoint& pace) const;
  // --- filtered search (hnsw_filtered.cpp) ---
  // Plans and runs a search with p.filter: fills s.top and stats.
  void search_filtered(SearchScratch& s, const SearchParams& p, uint64_t entry, SearchStats& stats,
                       Checkpoint& pace) const;
  // The walk of TwoHopGraph (hnsw_filtered.cpp). Like search_level, it leaves
  // s.candidates empty when it ran out of nodes to expand (it saw all it could reach).
  void search_two_hop(const uint8_t* query, uint32_t entry, size_t ef, const Filter& allowed, SearchScratch& s,
                      SearchStats& st, Checkpoint& pace) const;
  // Fills s.top with the k best live ids of `ids` (a filter's list), scored exactly.
  void scan_ids(const std::vector<int64_t>& ids, const SearchParams& p, SearchScratch& s, SearchStats& stats,
                Checkpoint& pace) const;
  // How many candidates a scan keeps: k, or ef for finish_results to re-rank.
  size_t scan_keep(const SearchParams& p) const;
  // scan_ids on the sketches: estimates every slot, then reads the full vectors
  // of those whose lower bound can still beat the best found (hnsw_filtered.cpp).
  void scan_sketched(const std::vector<uint32_t>& slots, size_t keep, const SearchParams& p, SearchScratch& s,
                     SearchStats& stats, Checkpoint& pace) const;
  // Sets s.sketch_query up for the query of s (sketches_ kept).
  void prepare_sketch_query(const SearchParams& p, SearchScratch& s) const;
  // Sketches of every slot from the stored codes, around the mean of the live
  // ones: for files written before sketches were kept.
  void build_sketches();
  void encode_sketch(uint32_t slot);
  // Re-ranks s.top on the re-ranking copies when asked, then writes the k best, padded.
  void finish_results(SearchScratch& s, const SearchParams& p, int64_t* ids, float* dists) const;
  void prepare_query(const float* query, SearchScratch& s) const;
  bool admitted(uint32_t slot, const Filter* filter, bool skip_deleted) const;

  // --- bookkeeping -------------------------------------------------------------
  void check_vectors(const float* vectors, size_t n) const;
  uint32_t slot_of(int64_t id) const;  // caller holds ids_mutex_; throws UnknownIdError
  // Hands out n slots with their headers and upper links set up, and points the
  // ids at them (an id already present is replaced); caller holds ids_mutex_.
  uint32_t reserve_slots(const int64_t* ids, size_t n);
  static uint64_t pack_entry(uint32_t slot, int level) { return (uint64_t(uint32_t(level)) << 32) | slot; }
  static uint32_t entry_slot(uint64_t e) { return uint32_t(e); }
  static int entry_level(uint64_t e) { return int(e >> 32); }

  IndexConfig config_;
  VectorCodec codec_;
  std::optional<VectorCodec> rerank_codec_;  // of the re-ranking copies, when kept
  size_t block_bytes_;
  size_t code_offset_;

  // Owned by pointer so compact() can swap in renumbered arrays.
  std::unique_ptr<BlockArray> nodes_;
  std::unique_ptr<BlockArray> upper_;  // one pointer a slot: that node's upper links, or null
  std::unique_ptr<BlockArray> rerank_;  // re-ranking copies, when kept
  std::unique_ptr<NodeSketches> sketches_;  // when config_.sketches
  std::atomic<size_t> upper_bytes_{0};

  std::atomic<uint32_t> slot_count_{0};  // slots handed out
  std::atomic<size_t> deleted_{0};
  std::atomic<size_t> added_since_repair_{0};
  // Entry point and top level in one word, so readers see a consistent pair.
  static constexpr uint64_t kNoEntry = UINT64_MAX;
  std::atomic<uint64_t> entry_{kNoEntry};
  std::mutex entry_mutex_;  // held by an insert that raises the top level

  mutable std::mutex ids_mutex_;
  filter::RowMap slot_by_id_;  // kNoSlot for an id not held
  std::mt19937_64 level_rng_;
  double level_mult_;

  // writes_mutex_: shared by writers, exclusive for save and compact.
  // graph_mutex_: shared by everyone, exclusive for compact.
  mutable std::shared_mutex writes_mutex_;
  mutable std::shared_mutex graph_mutex_;
  mutable ScratchPool scratch_;

  // Group graphs by key. groups_mutex_ guards the map (a search copies out the
  // pointer it walks); group_writes_mutex_ serialises link_group.
  mutable std::shared_mutex groups_mutex_;
  std::mutex group_writes_mutex_;
  std::map<std::string, std::shared_ptr<GroupGraph>> groups_;
};

}  // namespace lookalike::hnsw
