// IVF-PQ: an inverted-file index over product-quantised residuals (Jegou et al.
// 2011), with an exact re-rank from full vectors kept in a memory-mapped file.
//
// A coarse k-means splits the space into nlist cells; each vector is stored in
// its nearest cell's inverted list as the PQ code of its residual (the vector
// minus the cell's centroid), beside its slot number. A query visits the nprobe
// cells whose centroids are nearest, scores every code there by ADC (8-bit: float
// tables and a gather scan; 4-bit: uint8 tables in registers, fast-scan), keeps
// the rerank_k best, and re-ranks those by their exact float32 distance read from
// the vectors file (vector_file.h). RAM holds codes, slot numbers, ids and
// centroids; the float vectors stay on disk and in the page cache.
//
// Parameters and their trade-offs:
//   nlist     cells. More: shorter lists (a faster scan at a given nprobe) but a
//             costlier coarse search and a worse residual fit per cell; ~4 sqrt(n)
//             to 16 sqrt(n) is the usual range (1024 at 200k, 16k-65k at 100M).
//   m, nbits  the PQ code (product_quantizer.h): m * nbits / 8 bytes a vector.
//             Besides the code, RAM holds ~9-10 bytes a vector (list slots
//             ~0.25 after a bulk load, 2 for a trickle of adds, list_slots.h;
//             a 4-byte id while ids fit in 32 bits, slot_ids.h; a 4.7-byte id
//             map, id_map.h) and the centroids; under an 80-byte budget that
//             leaves ~60 bytes of code: nbits=4, m=88 at 256 dims (m need
//             not divide dim), scanned several times faster than 8-bit codes
//             of the same size. Longer codes rank better, so the same recall
//             needs fewer re-rank reads (bench/compressed.py, README).
//   nprobe    cells visited per query (default; a search may override): recall
//             against time, linearly.
//   rerank_k  candidates re-ranked exactly (default; a search may override).
//             Each costs one random read of dim * 4 bytes from the vectors file:
//             cheap while it is in the page cache, a disk read when it is not.
//   metric    cosine (vectors normalised on the way in, distance 1 - cos), ip
//             (negative inner product) or l2 (squared). Smaller is closer, as in
//             the HNSW index. Cells are always chosen by L2 to the centroids.
//   seed      training (samples, k-means++ draws) is a function of seed and data.
//   coarse_graph_min_nlist
//             from this many cells on, train() builds an HNSW over the centroids
//             to find a query's cells (and an added vector's cell) instead of
//             scanning all of them (coarse_quantizer.h; default 4096). A loaded
//             index keeps the coarse search it was saved with.
//
// Codes: product quantisation as above (code = Pq), or RaBitQ (code = RaBitQ,
// rabitq.h): the vectors are rotated on the way in (cells and codes live in the
// rotated space; the vectors file keeps them unrotated), each residual costs
// padded_dim / 8 bytes of sign bits and 3 bytes of factors, m and nbits are
// derived (padded_dim / 4 groups of 4 bits, scanned by the 4-bit fast-scan),
// and the re-rank is driven by the error bound: a candidate is read from the
// vectors file only while its lower bound can still beat the current k-th
// exact distance, and never when it cannot beat the k-th smallest upper bound
// seen in the scan. bound_sigmas sets the bound's width (recall against
// reads); rerank_k caps the reads.
//
// Extended RaBitQ (ex_bits > 0, rabitq_ex.h): each residual also gets a code
// of 1 + ex_bits bits a dimension, kept beside the vectors file (in a second
// memory-mapped file, a row a slot, not in RAM: the RAM budget is the 1-bit
// index's). It is a middle stage of the re-rank: the candidates the 1-bit
// bounds leave, in order of their 1-bit estimates, read their ex-code row
// (padded_dim (1 + ex_bits) / 8 + 12 bytes) for an estimate with a narrower
// bound, while their 1-bit lower bound can still beat the k-th smallest
// multi-bit upper bound; only those whose multi-bit lower bound can still
// beat the k-th exact distance are then read as floats (dim * 4 bytes). A
// search without re-rank answers from the multi-bit estimates.
//
// Writes after training: add appends; delete marks the slot deleted at once
// (tombstone) and compact() drops deleted entries from the lists; upsert is
// delete + add. Rows of the vectors file are never rewritten (deleted rows
// stay as dead space on disk until the index is rebuilt), which keeps every
// saved index file valid while the live index goes on writing.
//
// Concurrency: searches run in parallel with each other; train, add, delete and
// compact take the index exclusively; save() excludes writers only. A writer
// waits for running searches only until their next checkpoint (hnsw/search_stop.h),
// and a search sees the index as the writes before its latest checkpoint left it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "hnsw/filters.h"
#include "hnsw/hnsw_index.h"
#include "hnsw/vector_codec.h"
#include "pq/coarse_quantizer.h"
#include "pq/id_map.h"
#include "pq/list_slots.h"
#include "pq/product_quantizer.h"
#include "pq/rabitq.h"
#include "pq/rabitq_ex.h"
#include "pq/slot_ids.h"
#include "pq/vector_file.h"

namespace lookalike::pq {

using hnsw::Metric;

enum class IvfCode : uint32_t { Pq = 0, RaBitQ = 1 };

struct IvfPqConfig {
  size_t dim = 0;
  Metric metric = Metric::Cosine;
  size_t nlist = 1024;
  size_t m = 64;
  size_t nbits = 4;
  size_t nprobe = 16;
  size_t rerank_k = 100;
  uint64_t seed = 0;
  size_t coarse_graph_min_nlist = CoarseQuantizer::kGraphMinNlist;
  IvfCode code = IvfCode::Pq;
  float bound_sigmas = 2.0f;  // RaBitQ: width of the error bound, in standard deviations
  size_t ex_bits = 0;         // RaBitQ: extra bits a dimension in the ex-codes file (0: none)

  void validate() const;  // throws std::invalid_argument naming the bad field
};

struct IvfSearchParams {
  size_t k = 10;
  size_t nprobe = 0;                 // 0: the index's nprobe (capped at nlist)
  size_t rerank_k = 0;               // 0: the index's rerank_k; raised to k when smaller
  const hnsw::Filter* filter = nullptr;
  float bound_sigmas = 0;            // RaBitQ: 0 for the index's; infinity re-ranks every candidate
  bool rerank = true;                // false: ADC (or multi-bit RaBitQ) distances, no vectors file read
  const hnsw::StopToken* stop = nullptr;  // as in hnsw::SearchParams: checked per cell and while re-ranking
};

struct IvfMemoryUsage {
  size_t code_bytes = 0;       // PQ or RaBitQ codes in the inverted lists
  size_t factor_bytes = 0;     // RaBitQ's per-vector factors
  size_t list_slot_bytes = 0;  // slot numbers beside the codes
  size_t list_header_bytes = 0;  // the lists themselves (their vectors' pointers and sizes): ~150 B a cell
  size_t id_bytes = 0;         // slot -> id
  size_t id_map_bytes = 0;     // id -> slot
  size_t deleted_bytes = 0;    // tombstone bitmap
  size_t centroid_bytes = 0;   // coarse centroids, PQ codebooks, RaBitQ rotation
  size_t coarse_graph_bytes = 0;  // the HNSW over the centroids, when there is one
  size_t total_bytes = 0;
  size_t vector_file_bytes = 0;  // on disk / in page cache, not in total_bytes
  size_t ex_code_file_bytes = 0;  // extended RaBitQ codes, on disk likewise
  size_t live = 0, deleted = 0, slots = 0;
};

class IvfPqIndex {
 public:
  static constexpr int64_t kNoId = -1;

  // vectors_path: where the full vectors go (a new file, replacing any there);
  // empty for an anonymous temporary file (save() then copies it).
  IvfPqIndex(const IvfPqConfig& config, const std::string& vectors_path = "");
  ~IvfPqIndex();
  IvfPqIndex(const IvfPqIndex&) = delete;
  IvfPqIndex& operator=(const IvfPqIndex&) = delete;

  // Learns the coarse centroids and the PQ codebooks from n finite vectors
  // (n >= nlist and n >= 2^nbits). Only on an empty index.
  void train(const float* vectors, size_t n, size_t threads = 0);
  bool trained() const { return !lists_.empty(); }

  // Same contract as HnswIndex::add: all checks first, then all or nothing.
  void add(const int64_t* ids, const float* vectors, size_t n, bool replace, size_t threads = 0);
  // All-or-nothing: an unknown id is an hnsw::UnknownIdError and nothing changes.
  void remove(const int64_t* ids, size_t n);
  bool contains(int64_t id) const;
  // The stored vectors of n ids (normalised under cosine), read from the
  // vectors file into out (n x dim); an unknown id is an hnsw::UnknownIdError.
  void get(const int64_t* ids, size_t n, float* out) const;

  void search(const float* query, const IvfSearchParams& params, int64_t* ids, float* dists) const;
  void search_batch(const float* queries, size_t n, const IvfSearchParams& params, int64_t* ids, float* dists,
                    size_t threads = 0) const;
  // The cells a search with this nprobe visits (nearest first), into cells;
  // returns their number.
  size_t probes(const float* query, size_t nprobe, uint32_t* cells) const;
  bool has_coarse_graph() const { return coarse_.graph() != nullptr; }

  // Drops deleted entries from the inverted lists (their RAM comes back).
  void compact();

  // Writes the index to `path`, its vectors to `path` + ".vectors" and its
  // extended RaBitQ codes, if any, to `path` + ".excodes".
  void save(const std::string& path) const;
  // Loads both; later writes append to `path` + ".vectors". The vectors file's
  // size is checked, its contents are not (see vector_file.h): call verify().
  static std::unique_ptr<IvfPqIndex> load(const std::string& path);
  // Reads the whole vectors file (and ex-codes file) and throws io::FormatError
  // if it is not what the index wrote. Searches go on meanwhile; writers wait.
  void verify() const;

  const IvfPqConfig& config() const { return config_; }
  void set_nprobe(size_t nprobe);
  void set_rerank_k(size_t rerank_k);
  size_t size() const;
  size_t deleted_count() const;
  IvfMemoryUsage memory_usage() const;
  // Rows read from the vectors file by searches since the index was made or
  // loaded: the re-rank's cost (a random read each when the file is not cached).
  uint64_t rows_read() const { return rows_read_.load(std::memory_order_relaxed); }
  // Rows read from the ex-codes file likewise (extended RaBitQ's middle stage).
  uint64_t ex_rows_read() const { return ex_rows_read_.load(std::memory_order_relaxed); }

 private:
  struct InvertedList {
    ListSlots slots;
    std::vector<uint8_t> codes;  // 8-bit: m bytes a vector; 4-bit and RaBitQ: fast-scan blocks
    std::vector<uint16_t> norms;    // RaBitQ: |residual| a vector, float16
    std::vector<uint8_t> cosines;   // RaBitQ: <code, residual direction> a vector (rabitq.h)
  };
  struct Candidate {
    float dist;
    uint32_t slot;
    bool operator<(const Candidate& o) const { return dist < o.dist; }
  };
  class Scan;        // per-query state of a PQ search, in ivf_pq.cpp
  class BoundScan;   // per-query state of a RaBitQ search, in ivf_rabitq_search.cpp
  struct Encoded;    // a batch's cells and codes, on its way into the lists

  void require_trained() const;
  void check_vectors(const float* vectors, size_t n) const;
  // Normalised copies under cosine; `vectors` itself otherwise.
  const float* prepared(const float* vectors, size_t n, std::vector<float>& buffer) const;
  // Grows the lists that the cells of a batch will extend, before appending.
  void reserve_lists(const std::vector<uint32_t>& cells);
  // The vectors as the coarse quantizer sees them: rotated under RaBitQ (into
  // buffer), `vectors` itself under PQ.
  const float* coarse_space(const float* vectors, size_t n, std::vector<float>& buffer, size_t threads) const;
  size_t coarse_dim() const { return config_.code == IvfCode::RaBitQ ? rotation_.padded_dim() : config_.dim; }
  Encoded encode(const float* x, size_t n, size_t threads) const;
  void train_codebooks(const CoarseQuantizer& quantizer, const float* x, size_t n, size_t threads);
  void append_code(InvertedList& list, uint32_t slot, const uint8_t* code, const uint16_t* norm = nullptr,
                   const uint8_t* cosine = nullptr);
  std::vector<Candidate> search_pq(const float* q, const uint32_t* cells, size_t nprobe, const IvfSearchParams& p,
                                   hnsw::Checkpoint& pace) const;
  std::vector<Candidate> search_rabitq(const float* q, const float* rotated, const uint32_t* cells, size_t nprobe,
                                       const IvfSearchParams& p, hnsw::Checkpoint& pace) const;
  // Exact distance of the query to a stored vector, in the index's internal units.
  float exact_distance(const float* q, uint32_t slot) const;
  // Asks for a stored row ahead of its exact distance: the rows are random
  // reads of a file far larger than the caches.
  void prefetch_row(uint32_t slot) const;
  void prefetch_ex_row(uint32_t slot) const;
  size_t ex_row_bytes() const { return rabitq_ex_row_bytes(rotation_.padded_dim(), config_.ex_bits); }
  bool is_deleted(uint32_t slot) const { return (deleted_[slot >> 6] >> (slot & 63)) & 1; }
  void mark_deleted(uint32_t slot);
  // Replaces the candidates' estimated distances by exact ones from the vectors file.
  void rerank(const float* query, std::vector<Candidate>& found, hnsw::Checkpoint& pace) const;
  friend struct IvfPqPersist;

  IvfPqConfig config_;
  ProductQuantizer pq_;
  HadamardRotation rotation_;  // RaBitQ only
  CoarseQuantizer coarse_;  // the nlist centroids, after training (rotated under RaBitQ)
  std::vector<InvertedList> lists_;
  SlotIds slot_ids_;               // slot -> external id
  std::vector<uint64_t> deleted_;  // one bit a slot
  size_t deleted_count_ = 0;       // deleted slots (forever)
  size_t deleted_in_lists_ = 0;    // deleted slots still in a list (until compact)
  IdMap slot_by_id_{slot_ids_};  // keyed through slot_ids_
  std::unique_ptr<VectorFile> vectors_;
  std::unique_ptr<VectorFile> ex_codes_;  // extended RaBitQ's rows, a slot each; null without ex_bits
  mutable std::atomic<uint64_t> rows_read_{0}, ex_rows_read_{0};
  mutable hnsw::WriterFirstMutex mutex_;  // a long search lets a waiting writer in at its checkpoints
};

}  // namespace lookalike::pq
