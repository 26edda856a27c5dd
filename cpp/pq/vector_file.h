// The full-precision vectors of an IVF-PQ index, kept out of RAM: an append-only
// file of fixed-size rows (dim float32 each; RaBitQ's extended codes use the
// same file type with rows of bytes, rabitq_ex.h), memory-mapped, read only
// for the exact re-rank of a few candidates a query. The kernel's page cache
// decides how much of it stays resident; the index's own memory holds codes,
// ids and centroids only.
//
// The file is raw rows (no header): its row count and CRC32C live in the index
// file that refers to it (ivf_pq_persist.cpp), which is what makes a damaged or
// foreign vectors file detectable. Rows are only ever appended, so an index file
// saved earlier stays valid while the live index keeps adding; loading it
// truncates the rows added after that save.
//
// Opening checks the size only, so a load costs the same for 1 GB of vectors
// as for 200 GB (checksumming 205 GB takes minutes, and would pull the whole
// file through the page cache). The checksum read from the index is kept as
// what the rows must hash to, extended by every append, and verify() compares
// the file against it: a full read, run when the caller chooses (after copying
// an index, before promoting it, on a schedule). A truncated or missing file is
// still refused at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace lookalike::pq {

class VectorFile {
 public:
  // A new, empty file of rows of row_bytes bytes at `path` (replacing any file
  // there); with an empty path, an anonymous temporary file that disappears
  // with the object. `what` names the file in errors ("vectors").
  VectorFile(const std::string& path, size_t row_bytes, std::string what = "vectors");
  // An existing file holding at least `rows` rows, cut back to exactly that
  // many; throws io::FormatError if it is shorter. `crc` is the CRC32C its rows
  // must have; only verify() reads them to check it.
  VectorFile(const std::string& path, size_t row_bytes, size_t rows, uint32_t crc, std::string what = "vectors");
  ~VectorFile();
  VectorFile(const VectorFile&) = delete;
  VectorFile& operator=(const VectorFile&) = delete;

  // Grows the file and its map (by doubling) to take n more rows: the one
  // step of an append that can fail.
  void reserve(size_t n);
  // Appends n rows (growing the file and its map first if need be).
  void append(const void* rows, size_t n) { append(rows, nullptr, n); }
  // Appends rows[order[0]], rows[order[1]], ... (n rows; order null: in order).
  void append(const void* rows, const uint32_t* order, size_t n);
  // Row i as floats (a vectors file) or as bytes.
  const float* row(size_t i) const { return reinterpret_cast<const float*>(bytes(i)); }
  const uint8_t* bytes(size_t i) const { return map_ + i * row_bytes_; }
  size_t row_bytes() const { return row_bytes_; }
  size_t rows() const { return rows_; }
  uint32_t crc() const { return crc_; }  // the CRC32C every row so far must have
  // Reads every row; throws io::FormatError if they do not hash to crc().
  void verify() const;
  const std::string& path() const { return path_; }  // empty for a temporary file

  // Writes the rows to `path` atomically (temporary file, fsync, rename), or,
  // when `path` is this file already, just flushes it to disk.
  void save_as(const std::string& path) const;

 private:
  void map_capacity(size_t capacity_rows);

  std::string path_;
  int fd_ = -1;
  std::string what_;
  size_t row_bytes_;
  size_t rows_ = 0, capacity_ = 0;
  uint8_t* map_ = nullptr;
  uint32_t crc_ = 0;
};

}  // namespace lookalike::pq
