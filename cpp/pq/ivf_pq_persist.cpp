// Saving and loading an IVF-PQ index: the container of io/file_format.h at
// `path`, and the full vectors as raw float32 rows in `path` + ".vectors" (a
// second file, memory-mapped on load; its row count and CRC32C are in the meta
// section: a missing or short vectors file is refused at load, a damaged or
// foreign one by verify(), which load leaves to the caller so that loading
// costs the same whatever the size of the vectors file - vector_file.h).
// Extended RaBitQ codes go to `path` + ".excodes" (rabitq_ex.h's rows, a slot
// each), checked the same way against the ex-codes section.
//
// Sections (kind 3, kind version 5):
//   1 meta       IvfMeta below
//   2 centroids  nlist * dim float32 (trained indexes only, as are 3-6)
//   3 codebooks  2^nbits * dim float32 (product_quantizer.h's layout; PQ codes only)
//   4 list sizes nlist uint64
//   5 slots      the lists' slot numbers, uint32, list after list
//   6 codes      the lists' codes, list after list, in their in-memory layout
//   7 ids        slot -> external id, int64
//   8 deleted    tombstone bitmap, one uint64 per 64 slots
//   9 code       CodeMeta below: the code type and RaBitQ's bound width
//   10 rotation  RaBitQ: the rotation's signs, kRotationRounds * padded_dim int8
//   11 norms     RaBitQ: the lists' residual norms, float16, list after list
//   12 cosines   RaBitQ: the lists' cosine factors, uint8 (kind version 3: uint16), list after list
//   13 ex-codes  ExCodesMeta below: ex_bits and the ex-codes file's CRC32C (kind version 5 on)
//   17-20        the coarse graph over the centroids, when there is one: the
//                sections of an HNSW file (hnsw_persist.cpp) from 17 on, in the
//                HNSW layout version IvfMeta::coarse_graph_layout names
//
// Kind versions: 1 had no coarse graph (its IvfMeta::coarse_graph_layout, then
// "reserved", is 0); 2 adds it; 3 adds the code section (and RaBitQ codes); 4
// keeps RaBitQ's cosine factors in 8 bits, not 16 (rabitq.h); 5 adds the
// ex-codes section (earlier versions have no ex-codes: ex_bits 0). All load; a
// version-1 index scans its centroids, versions 1-2 hold PQ codes, version 3's
// cosines are rounded to 8 bits on the way in (the estimate's bound allows for
// both roundings).
// Under RaBitQ the centroids (and the coarse graph) have padded_dim components.
//
// Like the HNSW loader, this one checks every count, slot and id against the
// others before the index is handed out.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "distance/distance.h"
#include "io/file_format.h"
#include "pq/fast_scan.h"
#include "pq/ivf_pq.h"

namespace lookalike::pq {

namespace {

constexpr uint32_t kFileKind = 3;  // IVF-PQ (1 is HNSW)
constexpr uint32_t kKindVersion = 5;
constexpr uint32_t kCoarseGraphSections = 16;
constexpr size_t kIdChunk = 1 << 16;  // ids copied between the file and the slot table at a time  // the graph's sections are 17, 18, ...
enum Section : uint32_t {
  kMeta = 1, kCentroids = 2, kCodebooks = 3, kListSizes = 4, kSlots = 5, kCodes = 6, kIds = 7, kDeleted = 8,
  kCode = 9, kRotation = 10, kNorms = 11, kCosines = 12, kExCodes = 13,
};

struct IvfMeta {
  uint64_t dim, nlist, m, nbits, nprobe, rerank_k, seed;
  uint64_t slots, deleted, deleted_in_lists;
  uint32_t metric, trained;
  uint32_t vectors_crc;
  uint32_t coarse_graph_layout;  // 0: no coarse graph; else its HNSW layout version
};
static_assert(sizeof(IvfMeta) == 96);

struct CodeMeta {
  uint32_t code;
  float bound_sigmas;
};
static_assert(sizeof(CodeMeta) == 8);

struct ExCodesMeta {
  uint32_t ex_bits;
  uint32_t crc;  // of the ex-codes file's rows (0 without ex-codes)
};
static_assert(sizeof(ExCodesMeta) == 8);

[[noreturn]] void damaged(const std::string& path, const std::string& what) {
  throw io::FormatError("lookalike: " + path + ": damaged index: " + what);
}

size_t list_code_bytes(const IvfPqConfig& c, size_t n) {
  if (c.nbits == 8) return n * c.m;
  return (n + kFastScanBlock - 1) / kFastScanBlock * fast_scan_block_bytes(c.m);
}

}  // namespace

struct IvfPqPersist {
  static void save(const IvfPqIndex& ix, const std::string& path);
  static std::unique_ptr<IvfPqIndex> load(const std::string& path);
};

void IvfPqPersist::save(const IvfPqIndex& ix, const std::string& path) {
  const IvfPqConfig& c = ix.config_;
  IvfMeta meta{};
  meta.dim = c.dim;
  meta.nlist = c.nlist;
  meta.m = c.m;
  meta.nbits = c.nbits;
  meta.nprobe = c.nprobe;
  meta.rerank_k = c.rerank_k;
  meta.seed = c.seed;
  meta.slots = ix.slot_ids_.size();
  meta.deleted = ix.deleted_count_;
  meta.deleted_in_lists = ix.deleted_in_lists_;
  meta.metric = uint32_t(c.metric);
  meta.trained = ix.trained();
  meta.vectors_crc = ix.vectors_->crc();
  const hnsw::HnswIndex* graph = ix.coarse_.graph();
  meta.coarse_graph_layout = graph ? hnsw::HnswIndex::kFileLayoutVersion : 0;

  // The vectors first: an index file never refers to rows that are not on disk.
  ix.vectors_->save_as(path + ".vectors");
  if (ix.ex_codes_) ix.ex_codes_->save_as(path + ".excodes");
  io::FileWriter out(path, kFileKind, kKindVersion);
  out.write_section(kMeta, &meta, sizeof(meta));
  const CodeMeta code{uint32_t(c.code), c.bound_sigmas};
  out.write_section(kCode, &code, sizeof(code));
  const ExCodesMeta ex{uint32_t(c.ex_bits), ix.ex_codes_ ? ix.ex_codes_->crc() : 0};
  out.write_section(kExCodes, &ex, sizeof(ex));
  const bool rabitq = c.code == IvfCode::RaBitQ;
  if (rabitq) out.write_section(kRotation, ix.rotation_.signs().data(), ix.rotation_.signs().size());
  if (ix.trained()) {
    const std::vector<float>& centroids = ix.coarse_.centroids();
    out.write_section(kCentroids, centroids.data(), centroids.size() * sizeof(float));
    if (graph) graph->write_sections(out, kCoarseGraphSections);
    if (!rabitq)
      out.write_section(kCodebooks, ix.pq_.centroids().data(), ix.pq_.centroids().size() * sizeof(float));
    std::vector<uint64_t> sizes;
    for (const auto& list : ix.lists_) sizes.push_back(list.slots.size());
    out.write_section(kListSizes, sizes.data(), sizes.size() * sizeof(uint64_t));
    out.begin_section(kSlots);  // 4 bytes a slot on disk, whatever form the list keeps them in
    std::vector<uint32_t> slots;
    for (const auto& list : ix.lists_) {
      slots.resize(list.slots.size());
      for (size_t i = 0; i < slots.size(); ++i) slots[i] = list.slots[i];
      out.append(slots.data(), slots.size() * sizeof(uint32_t));
    }
    out.end_section();
    out.begin_section(kCodes);
    for (const auto& list : ix.lists_) out.append(list.codes.data(), list.codes.size());
    out.end_section();
    if (rabitq) {
      out.begin_section(kNorms);
      for (const auto& list : ix.lists_) out.append(list.norms.data(), list.norms.size() * sizeof(uint16_t));
      out.end_section();
      out.begin_section(kCosines);
      for (const auto& list : ix.lists_) out.append(list.cosines.data(), list.cosines.size());
      out.end_section();
    }
  }
  // 8 bytes an id on disk whatever the table holds in RAM (slot_ids.h).
  out.begin_section(kIds);
  std::vector<int64_t> chunk;
  for (size_t s = 0; s < ix.slot_ids_.size(); s += kIdChunk) {
    chunk.clear();
    for (size_t i = s; i < std::min(ix.slot_ids_.size(), s + kIdChunk); ++i) chunk.push_back(ix.slot_ids_[i]);
    out.append(chunk.data(), chunk.size() * sizeof(int64_t));
  }
  out.end_section();
  out.write_section(kDeleted, ix.deleted_.data(), ix.deleted_.size() * sizeof(uint64_t));
  out.commit();
}

std::unique_ptr<IvfPqIndex> IvfPqPersist::load(const std::string& path) {
  io::FileReader in(path, kFileKind, kKindVersion);
  IvfMeta meta;
  std::memcpy(&meta, in.section(kMeta, sizeof(IvfMeta)).data, sizeof(meta));
  IvfPqConfig c;
  c.dim = meta.dim;
  c.nlist = meta.nlist;
  c.m = meta.m;
  c.nbits = meta.nbits;
  c.nprobe = meta.nprobe;
  c.rerank_k = meta.rerank_k;
  c.seed = meta.seed;
  if (meta.metric > 2 || meta.trained > 1) damaged(path, "unknown metric or state code");
  c.metric = Metric(meta.metric);
  if (in.kind_version() >= 3) {
    CodeMeta code;
    std::memcpy(&code, in.section(kCode, sizeof(CodeMeta)).data, sizeof(code));
    if (code.code > uint32_t(IvfCode::RaBitQ)) damaged(path, "unknown code type " + std::to_string(code.code));
    c.code = IvfCode(code.code);
    c.bound_sigmas = code.bound_sigmas;
  }
  ExCodesMeta ex{};
  if (in.kind_version() >= 5) std::memcpy(&ex, in.section(kExCodes, sizeof(ExCodesMeta)).data, sizeof(ex));
  c.ex_bits = ex.ex_bits;
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    damaged(path, e.what());
  }
  if (meta.dim > (1u << 16) || meta.nlist > (1u << 24)) damaged(path, "dimensions out of range");
  const uint64_t slots = meta.slots;
  if (slots > UINT32_MAX - 1) damaged(path, "slot count out of range");
  if (!meta.trained && slots) damaged(path, "vectors in an untrained index");
  if (meta.coarse_graph_layout && (!meta.trained || in.kind_version() < 2))
    damaged(path, "a coarse graph where there can be none");

  // Built without a file of its own; the saved vectors file is attached below.
  auto index = std::unique_ptr<IvfPqIndex>(new IvfPqIndex(c, ""));
  IvfPqIndex& ix = *index;
  const bool rabitq = c.code == IvfCode::RaBitQ;
  if (rabitq) {
    if (ix.config_.m != c.m || ix.config_.nbits != c.nbits) damaged(path, "RaBitQ code size does not match dim");
    auto signs = in.section(kRotation, kRotationRounds * rabitq_padded_dim(c.dim));
    try {
      ix.rotation_ = HadamardRotation(c.dim, std::vector<int8_t>(signs.data, signs.data + signs.size));
    } catch (const std::invalid_argument& e) {
      damaged(path, e.what());
    }
  }
  const size_t coarse_dim = ix.coarse_dim();

  auto ids = in.section(kIds, slots * sizeof(int64_t));
  ix.slot_ids_.reserve(slots);
  for (uint64_t s = 0; s < slots; s += kIdChunk) {
    std::vector<int64_t> chunk(std::min<uint64_t>(kIdChunk, slots - s));
    std::memcpy(chunk.data(), ids.data + s * sizeof(int64_t), chunk.size() * sizeof(int64_t));
    for (size_t i = 0; i < chunk.size(); ++i)
      if (chunk[i] < 0) damaged(path, "slot " + std::to_string(s + i) + " has negative id " + std::to_string(chunk[i]));
    ix.slot_ids_.append(chunk.data(), chunk.size());
  }
  auto deleted = in.section(kDeleted, (slots + 63) / 64 * sizeof(uint64_t));
  ix.deleted_.resize((slots + 63) / 64);
  std::memcpy(ix.deleted_.data(), deleted.data, deleted.size);
  if (slots % 64 && ix.deleted_.back() >> (slots % 64)) damaged(path, "tombstones past the last slot");
  uint64_t deleted_count = 0;
  for (uint64_t w : ix.deleted_) deleted_count += uint64_t(__builtin_popcountll(w));
  if (deleted_count != meta.deleted) damaged(path, "deleted count does not match the tombstones");
  ix.slot_by_id_.reserve(slots - deleted_count);
  for (uint32_t s = 0; s < slots; ++s) {
    if (ix.is_deleted(s)) continue;
    const int64_t id = ix.slot_ids_[s];
    if (ix.slot_by_id_.find(id) != IdMap::kAbsent) damaged(path, "id " + std::to_string(id) + " appears twice");
    ix.slot_by_id_.set(id, s);
  }

  if (meta.trained) {
    auto centroids = in.section(kCentroids, c.nlist * coarse_dim * sizeof(float));
    std::vector<float> cell_centroids(c.nlist * coarse_dim);
    std::memcpy(cell_centroids.data(), centroids.data, centroids.size);
    std::unique_ptr<hnsw::HnswIndex> graph;
    if (meta.coarse_graph_layout) {
      graph = hnsw::HnswIndex::read_sections(in, kCoarseGraphSections, meta.coarse_graph_layout);
      const hnsw::IndexConfig& g = graph->config();
      if (g.dim != coarse_dim || g.metric != Metric::L2 || graph->size() != c.nlist)
        damaged(path, "the coarse graph does not match the centroids");
      for (size_t cell = 0; cell < c.nlist; ++cell)
        if (!graph->contains(int64_t(cell))) damaged(path, "the coarse graph lacks cell " + std::to_string(cell));
    }
    ix.coarse_ = CoarseQuantizer(std::move(cell_centroids), coarse_dim, std::move(graph));
    if (!rabitq) {
      const size_t book_floats = (size_t(1) << c.nbits) * c.dim;
      auto books = in.section(kCodebooks, book_floats * sizeof(float));
      std::vector<float> codebooks(book_floats);
      std::memcpy(codebooks.data(), books.data, books.size);
      ix.pq_.set_centroids(std::move(codebooks));
    }

    auto sizes_bytes = in.section(kListSizes, c.nlist * sizeof(uint64_t));
    std::vector<uint64_t> sizes(c.nlist);
    std::memcpy(sizes.data(), sizes_bytes.data, sizes_bytes.size);
    uint64_t entries = 0, code_bytes = 0;
    for (uint64_t n : sizes) {
      if (n > slots) damaged(path, "an inverted list longer than the index");
      entries += n;
      code_bytes += list_code_bytes(c, n);
    }
    if (entries > slots) damaged(path, "more list entries than slots");
    auto slot_bytes = in.section(kSlots, entries * sizeof(uint32_t));
    auto codes = in.section(kCodes, code_bytes);
    const uint32_t* slot_at = reinterpret_cast<const uint32_t*>(slot_bytes.data);
    const uint16_t* norm_at = nullptr;
    const uint8_t* cosine_at = nullptr;
    const size_t cosine_bytes = in.kind_version() >= 4 ? 1 : 2;
    if (rabitq) {
      norm_at = reinterpret_cast<const uint16_t*>(in.section(kNorms, entries * sizeof(uint16_t)).data);
      cosine_at = in.section(kCosines, entries * cosine_bytes).data;
    }
    const uint8_t* code_at = codes.data;
    std::vector<uint8_t> seen(slots, 0);
    uint64_t deleted_listed = 0;
    ix.lists_.assign(c.nlist, {});
    for (size_t l = 0; l < c.nlist; ++l) {
      auto& list = ix.lists_[l];
      list.slots.reserve(sizes[l]);
      for (size_t i = 0; i < sizes[l]; ++i) list.slots.push_back(slot_at[i]);
      slot_at += sizes[l];
      const size_t nb = list_code_bytes(c, sizes[l]);
      list.codes.assign(code_at, code_at + nb);
      code_at += nb;
      if (rabitq) {
        list.norms.assign(norm_at, norm_at + sizes[l]);
        norm_at += sizes[l];
        list.cosines.resize(sizes[l]);
        for (size_t i = 0; i < sizes[l]; ++i) {
          uint16_t stored = cosine_at[i];
          if (cosine_bytes == 2) std::memcpy(&stored, cosine_at + 2 * i, 2);
          if (!std::isfinite(distance::f16_to_f32(list.norms[i])) || (list.norms[i] & 0x8000) || stored == 0)
            damaged(path, "list " + std::to_string(l) + " has an invalid RaBitQ factor");
          // 65535 / 257 = 255: a 16-bit cosine to the nearest 8-bit one.
          list.cosines[i] = cosine_bytes == 1 ? uint8_t(stored) : uint8_t(std::max(1l, std::lround(stored / 257.0)));
        }
        cosine_at += sizes[l] * cosine_bytes;
      }
      for (size_t i = 0; i < sizes[l]; ++i) {
        const uint32_t s = list.slots[i];
        if (s >= slots) damaged(path, "list " + std::to_string(l) + " refers to missing slot " + std::to_string(s));
        if (seen[s]++) damaged(path, "slot " + std::to_string(s) + " is listed twice");
        deleted_listed += ix.is_deleted(s);
      }
    }
    for (uint32_t s = 0; s < slots; ++s)
      if (!seen[s] && !ix.is_deleted(s)) damaged(path, "live slot " + std::to_string(s) + " is in no list");
    if (deleted_listed != meta.deleted_in_lists) damaged(path, "deleted entry count does not match the lists");
  }
  ix.deleted_count_ = deleted_count;
  ix.deleted_in_lists_ = meta.deleted_in_lists;
  ix.vectors_ = std::make_unique<VectorFile>(path + ".vectors", c.dim * sizeof(float), slots, meta.vectors_crc);
  if (c.ex_bits)
    ix.ex_codes_ = std::make_unique<VectorFile>(path + ".excodes", ix.ex_row_bytes(), slots, ex.crc, "ex-codes");
  return index;
}

void IvfPqIndex::save(const std::string& path) const {
  // Writers wait (the files must be one consistent state); searches go on.
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  IvfPqPersist::save(*this, path);
}

std::unique_ptr<IvfPqIndex> IvfPqIndex::load(const std::string& path) { return IvfPqPersist::load(path); }

void IvfPqIndex::verify() const {
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  vectors_->verify();
  if (ex_codes_) ex_codes_->verify();
}

}  // namespace lookalike::pq
