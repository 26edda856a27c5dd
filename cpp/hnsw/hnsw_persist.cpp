// Saving and loading an HNSW index in the container of io/file_format.h.
//
// Sections (kind 1, kind version 3):
//   1 meta    IndexMeta below
//   2 nodes   slot_count level-0 blocks, exactly as they are in memory
//   3 upper   the upper links of every node with level > 0, in slot order,
//             level * (M + 1) uint32 each
//   4 rerank  slot_count re-ranking copies (only when the index keeps them), in
//             the storage IndexMeta::rerank_copies names
//   5 sketch centre   the sketches' centre, dim float32 (only when the index
//             keeps sketches, node_sketches.h; their rotation is drawn from a
//             fixed seed and not stored)
//   6 sketch bits     slot_count blocks of the sketches' packed bits
//   7 sketch factors  slot_count blocks of their factors (norm, cosine)
//   8 groups  the group graphs (group_graph.h), only when there are any, as
//             uint32 words: their count, then per group its key's length in
//             bytes, the key padded to whole words, max_links, its members,
//             each member's slot, then each member's link count and max_links
//             links (member numbers)
//
// The same sections, numbered from an offset, can sit inside another index's
// file (write_sections / read_sections): IVF-PQ keeps its coarse graph so.
//
// Kind versions: 1 knew float32 re-ranking copies only (rerank_copies 0 or 1);
// 2 adds float16 copies (2); 3 adds sketches (sections 5-7); 4 adds group
// graphs (section 8). All load: an
// HNSW file of version 1 or 2 gets its sketches computed at load (load());
// sections of an older layout read into another container (read_sections)
// get none, as an index that never keeps them (IVF-PQ's coarse graph).
//
// A loader trusts nothing it has not checked: beyond the container's checksums,
// every link, level and count is bounds-checked, so a file that is valid but
// inconsistent (a bug, or a hand-made file) is refused instead of crashing a search.
#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "hnsw/hnsw_index.h"
#include "io/file_format.h"

namespace lookalike::hnsw {

namespace {

constexpr uint32_t kFileKind = 1;  // HNSW
constexpr uint32_t kKindVersion = HnswIndex::kFileLayoutVersion;
enum Section : uint32_t {
  kMeta = 1, kNodes = 2, kUpper = 3, kRerank = 4, kSketchCentre = 5, kSketchBits = 6, kSketchFactors = 7,
  kGroups = 8,
};

struct IndexMeta {
  uint64_t dim, M, ef_construction, ef_search, seed;
  uint64_t slot_count, deleted, entry, block_bytes;
  uint32_t metric, storage;
  uint32_t rerank_copies;  // 0: none; else 1 + the copies' distance::Scalar (1 float32, 2 float16)
  float int8_scale;
};
static_assert(sizeof(IndexMeta) == 88);

[[noreturn]] void damaged(const std::string& path, const std::string& what) {
  throw io::FormatError("lookalike: " + path + ": damaged index: " + what);
}

}  // namespace

void HnswIndex::save(const std::string& path) const {
  io::FileWriter out(path, kFileKind, kKindVersion);
  write_sections(out, 0);
  out.commit();
}

std::unique_ptr<HnswIndex> HnswIndex::load(const std::string& path) {
  io::FileReader in(path, kFileKind, kKindVersion);
  std::unique_ptr<HnswIndex> index = read_sections(in, 0, in.kind_version());
  if (in.kind_version() < 3) {
    index->config_.sketches = true;
    index->build_sketches();
  }
  return index;
}

void HnswIndex::write_sections(io::FileWriter& out, uint32_t first_section) const {
  // Writers wait (the file must be one consistent state); searches go on.
  std::unique_lock<std::shared_mutex> writes(writes_mutex_);
  std::shared_lock<std::shared_mutex> graph(graph_mutex_);
  const uint32_t count = slot_count_.load();

  IndexMeta meta{};
  meta.dim = config_.dim;
  meta.M = config_.M;
  meta.ef_construction = config_.ef_construction;
  meta.ef_search = ef_search();
  meta.seed = config_.seed;
  meta.slot_count = count;
  meta.deleted = deleted_.load();
  meta.entry = entry_.load();
  meta.block_bytes = block_bytes_;
  meta.metric = uint32_t(config_.metric);
  meta.storage = uint32_t(config_.storage);
  meta.rerank_copies = config_.rerank_copies ? 1 + uint32_t(*config_.rerank_copies) : 0;
  meta.int8_scale = codec_.int8_scale();

  out.write_section(first_section + kMeta, &meta, sizeof(meta));

  // Blocks of a segment are contiguous: write them a segment at a time.
  auto write_blocks = [&](uint32_t id, const BlockArray& blocks) {
    out.begin_section(first_section + id);
    for (size_t seg = 0; seg * BlockArray::kSegmentBlocks < count; ++seg) {
      size_t n = std::min<size_t>(BlockArray::kSegmentBlocks, count - seg * BlockArray::kSegmentBlocks);
      out.append(blocks.segment(seg), n * blocks.block_bytes());
    }
    out.end_section();
  };
  write_blocks(kNodes, *nodes_);

  out.begin_section(first_section + kUpper);
  for (uint32_t s = 0; s < count; ++s)
    if (header(s).level > 0) out.append(upper_of(s), size_t(header(s).level) * (config_.M + 1) * sizeof(uint32_t));
  out.end_section();

  if (rerank_) write_blocks(kRerank, *rerank_);
  if (sketches_) {
    const std::vector<float>& centre = sketches_->centre();
    if (centre.empty()) {  // nothing added yet: the first batch will choose it
      out.begin_section(first_section + kSketchCentre);
      out.end_section();
    } else {
      out.write_section(first_section + kSketchCentre, centre.data(), centre.size() * sizeof(float));
    }
    write_blocks(kSketchBits, sketches_->bits());
    write_blocks(kSketchFactors, sketches_->factors());
  }

  std::shared_lock<std::shared_mutex> groups(groups_mutex_);
  if (groups_.empty()) return;
  std::vector<uint32_t> words{uint32_t(groups_.size())};
  for (const auto& [key, g] : groups_) {
    words.push_back(uint32_t(key.size()));
    const size_t at = words.size();
    words.resize(at + (key.size() + 3) / 4);
    std::memcpy(words.data() + at, key.data(), key.size());
    const uint32_t members = g->size();
    words.push_back(uint32_t(g->max_links()));
    words.push_back(members);
    for (uint32_t m = 0; m < members; ++m) words.push_back(g->slot(m));
    for (uint32_t m = 0; m < members; ++m) {
      const GroupGraph::Links links = g->links(m);
      const uint32_t n = std::min<uint32_t>(links.count.load(std::memory_order_acquire), uint32_t(g->max_links()));
      words.push_back(n);
      for (uint32_t i = 0; i < g->max_links(); ++i)
        words.push_back(i < n ? std::atomic_ref<uint32_t>(links.members[i]).load(std::memory_order_acquire) : 0);
    }
  }
  out.write_section(first_section + kGroups, words.data(), words.size() * sizeof(uint32_t));
}

void HnswIndex::read_groups(const io::FileReader& in, uint32_t section) {
  const std::string& path = in.path();
  const io::FileReader::Bytes bytes = in.section(section);
  if (bytes.size % sizeof(uint32_t)) damaged(path, "group section of a partial word");
  std::vector<uint32_t> words(bytes.size / sizeof(uint32_t));
  std::memcpy(words.data(), bytes.data, bytes.size);
  size_t at = 0;
  auto next = [&](size_t n) {  // the next n words, bounds-checked
    if (words.size() - at < n) damaged(path, "group section ends early");
    at += n;
    return words.data() + at - n;
  };
  const uint32_t slots = slot_count_.load();
  for (uint32_t groups = *next(1), gi = 0; gi < groups; ++gi) {
    const uint32_t key_bytes = *next(1);
    const uint32_t* key_words = next((size_t(key_bytes) + 3) / 4);
    const std::string key(reinterpret_cast<const char*>(key_words), key_bytes);
    const uint32_t links = *next(1);
    const uint32_t members = *next(1);
    if (links != max_links(0)) damaged(path, "group '" + key + "' keeps " + std::to_string(links) + " links a member");
    if (groups_.count(key)) damaged(path, "group '" + key + "' appears twice");
    const uint32_t* member_slots = next(members);
    for (uint32_t m = 0; m < members; ++m)
      if (member_slots[m] >= slots) damaged(path, "group '" + key + "' holds missing node " + std::to_string(member_slots[m]));
    std::vector<uint32_t> sorted(member_slots, member_slots + members);
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
      damaged(path, "group '" + key + "' holds a node twice");
    auto g = std::make_shared<GroupGraph>(links);
    g->append({member_slots, members});
    g->publish();
    for (uint32_t m = 0; m < members; ++m) {
      const uint32_t* list = next(1 + size_t(links));
      if (list[0] > links) damaged(path, "group '" + key + "' member " + std::to_string(m) + " has too many links");
      for (uint32_t i = 0; i < list[0]; ++i)
        if (list[1 + i] >= members) damaged(path, "group '" + key + "' links to missing member " + std::to_string(list[1 + i]));
      GroupGraph::Links own = g->links(m);
      std::memcpy(own.members, list + 1, size_t(list[0]) * sizeof(uint32_t));
      own.count.store(list[0]);
    }
    groups_.emplace(key, std::move(g));
  }
  if (at != words.size()) damaged(path, "group section has trailing words");
}

std::unique_ptr<HnswIndex> HnswIndex::read_sections(const io::FileReader& in, uint32_t first_section,
                                                    uint32_t layout_version) {
  const std::string& path = in.path();
  if (layout_version < 1 || layout_version > kKindVersion)
    damaged(path, "unknown HNSW layout version " + std::to_string(layout_version));
  IndexMeta meta;
  std::memcpy(&meta, in.section(first_section + kMeta, sizeof(IndexMeta)).data, sizeof(meta));

  IndexConfig config;
  config.dim = meta.dim;
  config.M = meta.M;
  config.ef_construction = meta.ef_construction;
  config.ef_search = meta.ef_search;
  config.seed = meta.seed;
  config.metric = Metric(meta.metric);
  config.storage = distance::Scalar(meta.storage);
  const uint32_t max_rerank_code = layout_version == 1 ? 1 : 2;
  if (meta.metric > 2 || meta.storage > 2 || meta.rerank_copies > max_rerank_code)
    damaged(path, "unknown metric or storage code");
  if (meta.rerank_copies) config.rerank_copies = distance::Scalar(meta.rerank_copies - 1);
  config.sketches = layout_version >= 3 && in.has_section(first_section + kSketchCentre);
  try {
    config.validate();
  } catch (const std::invalid_argument& e) {
    damaged(path, e.what());
  }

  auto index = std::make_unique<HnswIndex>(config);
  HnswIndex& ix = *index;
  const uint64_t count = meta.slot_count;
  if (meta.block_bytes != ix.block_bytes_) damaged(path, "node size does not match its parameters");
  if (count >= kNoSlot) damaged(path, "slot count out of range");
  if (meta.deleted > count) damaged(path, "more deleted nodes than nodes");
  if (config.storage == distance::Scalar::I8 && count > 0 && !(meta.int8_scale > 0.0f))
    damaged(path, "int8 index without a scale");
  ix.codec_ = VectorCodec(config.dim, config.metric, config.storage, meta.int8_scale);

  // Level-0 blocks, then a check of every header and link in them.
  io::FileReader::Bytes nodes = in.section(first_section + kNodes, count * ix.block_bytes_);
  ix.nodes_->reserve(count);
  ix.upper_->reserve(count);
  for (size_t seg = 0; seg * BlockArray::kSegmentBlocks < count; ++seg) {
    size_t first = seg * BlockArray::kSegmentBlocks;
    size_t n = std::min<size_t>(BlockArray::kSegmentBlocks, count - first);
    std::memcpy(ix.nodes_->segment(seg), nodes.data + first * ix.block_bytes_, n * ix.block_bytes_);
  }
  int top_level = -1;
  uint64_t deleted = 0, upper_words = 0;
  auto check_links = [&](uint32_t s, int level, uint32_t n, const uint32_t* links) {
    if (n > ix.max_links(level))
      damaged(path, "node " + std::to_string(s) + " has " + std::to_string(n) + " links at level " +
                        std::to_string(level) + ", more than " + std::to_string(ix.max_links(level)));
    for (uint32_t i = 0; i < n; ++i)
      if (links[i] >= count) damaged(path, "node " + std::to_string(s) + " links to missing node " +
                                               std::to_string(links[i]));
  };
  for (uint32_t s = 0; s < count; ++s) {
    NodeHeader& h = ix.header(s);
    h.flags &= kDeleted;  // a lock bit cannot be held across a save
    if (h.level > 31) damaged(path, "node " + std::to_string(s) + " has level " + std::to_string(h.level));
    check_links(s, 0, h.link_count, reinterpret_cast<const uint32_t*>(ix.nodes_->at(s) + kHeaderBytes));
    top_level = std::max<int>(top_level, h.level);
    upper_words += uint64_t(h.level) * (config.M + 1);
    deleted += h.flags & kDeleted;
  }
  if (deleted != meta.deleted) damaged(path, "deleted count does not match the nodes' flags");

  // Upper links: exactly the size the node levels call for.
  io::FileReader::Bytes upper = in.section(first_section + kUpper, upper_words * sizeof(uint32_t));
  const auto* words = reinterpret_cast<const uint32_t*>(upper.data);
  for (uint32_t s = 0; s < count; ++s) {
    const int level = ix.header(s).level;
    if (level == 0) continue;
    size_t n = size_t(level) * (config.M + 1);
    uint32_t* list = new uint32_t[n];
    std::memcpy(list, words, n * sizeof(uint32_t));
    ix.upper_of(s) = list;
    ix.upper_bytes_ += n * sizeof(uint32_t);
    words += n;
    for (int l = 1; l <= level; ++l) {
      const uint32_t* at = list + size_t(l - 1) * (config.M + 1);
      check_links(s, l, at[0], at + 1);
    }
  }

  if (bool(ix.rerank_) != bool(meta.rerank_copies)) damaged(path, "re-ranking copies that its storage rules out");
  auto read_blocks = [&](uint32_t id, BlockArray& blocks) {
    const size_t bytes = blocks.block_bytes();
    io::FileReader::Bytes stored = in.section(first_section + id, count * bytes);
    blocks.reserve(count);
    for (size_t seg = 0; seg * BlockArray::kSegmentBlocks < count; ++seg) {
      size_t first = seg * BlockArray::kSegmentBlocks;
      size_t n = std::min<size_t>(BlockArray::kSegmentBlocks, count - first);
      std::memcpy(blocks.segment(seg), stored.data + first * bytes, n * bytes);
    }
  };
  if (ix.rerank_) read_blocks(kRerank, *ix.rerank_);
  if (ix.sketches_) {
    io::FileReader::Bytes centre = in.section(first_section + kSketchCentre);
    if (centre.size == config.dim * sizeof(float)) {
      std::vector<float> values(config.dim);
      std::memcpy(values.data(), centre.data, centre.size);
      ix.sketches_->set_centre(values.data());
    } else if (centre.size != 0 || count > 0) {
      damaged(path, "sketch centre of " + std::to_string(centre.size) + " bytes for " + std::to_string(config.dim) +
                        " dimensions");
    }
    read_blocks(kSketchBits, ix.sketches_->bits());
    read_blocks(kSketchFactors, ix.sketches_->factors());
  }

  if (count == 0 ? meta.entry != kNoEntry
                 : (entry_slot(meta.entry) >= count || entry_level(meta.entry) != top_level ||
                    ix.header(entry_slot(meta.entry)).level != top_level))
    damaged(path, "entry point is not a node of the top level");

  for (uint32_t s = 0; s < count; ++s) {
    const NodeHeader& h = ix.header(s);
    if (h.flags & kDeleted) continue;
    if (h.id < 0) damaged(path, "node " + std::to_string(s) + " has negative id " + std::to_string(h.id));
    if (!ix.slot_by_id_.insert(h.id, s)) damaged(path, "id " + std::to_string(h.id) + " appears twice");
  }
  ix.entry_.store(meta.entry);
  ix.slot_count_.store(uint32_t(count));
  ix.deleted_.store(deleted);
  if (layout_version >= 4 && in.has_section(first_section + kGroups)) ix.read_groups(in, first_section + kGroups);
  // Levels drawn after a load continue from a stream of their own, so that a
  // reloaded index still builds deterministically.
  ix.level_rng_.seed(config.seed + count);
  return index;
}

}  // namespace lookalike::hnsw
