// The versioned container format every lookalike index file uses.
//
// Layout (all integers little-endian):
//
//   offset 0   FileHeader (64 bytes)
//                magic "LKALIKE\0", format version, file kind (which index wrote it),
//                kind version (the layout version of that index's sections),
//                section count, CRC32C of the header and of the section table
//   offset 64  SectionEntry[section_count] (32 bytes each)
//                section id, byte offset, byte size, CRC32C of the section's bytes
//   then       the sections' bytes, each starting at a 64-byte aligned offset so
//              that a memory-mapped reader can use them in place; sections do
//              not overlap, and the gaps between them are zero padding
//
// FileWriter reserves room for 64 table entries before the first section (so
// its sections start at byte 2112); readers accept any table that fits the file.
//
// Writes are atomic: everything goes to "<path>.tmp", is fsync'ed, renamed over
// <path>, and the directory is fsync'ed, so a crash leaves either the old file or
// the new one, never a mix. Reads are bounded: every offset and size is checked
// against the file size before it is used, and every checksum is verified, so a
// truncated or damaged file is refused with a FormatError naming the problem.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/crc32c.h"

namespace lookalike::io {

// A file that is not a valid lookalike file: wrong magic, unsupported version,
// wrong kind, truncated, or a checksum mismatch. The message names the file and
// what is wrong with it.
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

constexpr uint32_t kFormatVersion = 1;  // version of the container itself

// Streams sections into "<path>.tmp"; commit() makes it <path> atomically. If the
// writer is destroyed without commit(), the temporary file is removed and <path>
// is untouched. Errors (disk full, permissions) throw std::runtime_error with the
// path and the system's message, and the writer can then only be destroyed.
// Misuse (append outside a section, a section id twice, begin or commit inside a
// section, more than 64 sections, kind_version 0) throws std::logic_error.
class FileWriter {
 public:
  FileWriter(std::string path, uint32_t kind, uint32_t kind_version);
  ~FileWriter();
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;

  // Sections are written one at a time: begin, any number of appends, end.
  void begin_section(uint32_t id);
  void append(const void* data, size_t size);
  void end_section();

  // Convenience: a whole section from one buffer.
  void write_section(uint32_t id, const void* data, size_t size);

  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Opens and validates a whole file (magic, versions, kind, bounds, every
// checksum) before handing out any section. Sections are views into a read-only
// memory map that lives as long as the reader.
class FileReader {
 public:
  // Throws FormatError if the file is not a valid file of `kind` with a kind
  // version in [1, max_kind_version]; std::runtime_error if it cannot be opened.
  FileReader(const std::string& path, uint32_t kind, uint32_t max_kind_version);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  uint32_t kind_version() const;
  bool has_section(uint32_t id) const;

  struct Bytes {
    const uint8_t* data;
    size_t size;
  };
  // Throws FormatError if the section is absent.
  Bytes section(uint32_t id) const;
  // Like section(), and also checks the size is exactly `expected` bytes.
  Bytes section(uint32_t id, size_t expected) const;

  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lookalike::io
