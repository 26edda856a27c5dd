// The container of file_format.h on POSIX: buffered, checksummed, atomically
// renamed writes; memory-mapped, fully verified reads.
#include "io/file_format.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace lookalike::io {

// The structs below are written and read as raw bytes; a big-endian host would
// need byte swapping that this file does not do.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "lookalike files are little-endian");

namespace {

constexpr char kMagic[8] = {'L', 'K', 'A', 'L', 'I', 'K', 'E', '\0'};
constexpr uint64_t kAlign = 64;  // a section's offset, so mapped data can be used in place

// Every field is naturally aligned, so there is no padding and no need for
// #pragma pack; the static_asserts keep it that way.
struct FileHeader {
  char magic[8];
  uint32_t format_version;
  uint32_t kind;
  uint32_t kind_version;
  uint32_t section_count;
  uint32_t table_crc;   // CRC32C of the section_count entries of the table
  uint32_t header_crc;  // CRC32C of these 64 bytes with this field zero
  uint8_t reserved[32];
};
static_assert(sizeof(FileHeader) == 64);

struct SectionEntry {
  uint32_t id;
  uint32_t flags;  // reserved, zero
  uint64_t offset;
  uint64_t size;
  uint32_t crc;
  uint32_t reserved;
};
static_assert(sizeof(SectionEntry) == 32);

// The writer streams section bytes before it knows how many sections there will
// be, so it reserves room for a table of kMaxSections entries up front. This is a
// limit of the writer only: a reader takes any table that fits in the file.
constexpr uint32_t kMaxSections = 64;
constexpr uint64_t kDataStart = sizeof(FileHeader) + kMaxSections * sizeof(SectionEntry);
static_assert(kDataStart % kAlign == 0);

constexpr size_t kBufferBytes = size_t(1) << 20;


// Call right after the failing call: errno is read before anything can change it.
std::string sys_message(const char* what, const std::string& path) {
  const int err = errno;
  return std::string("lookalike: cannot ") + what + " " + path + ": " + std::strerror(err);
}

[[noreturn]] void bad_file(const std::string& path, const std::string& problem) {
  throw FormatError("lookalike: " + path + ": " + problem);
}

std::string num(uint64_t v) { return std::to_string(v); }

// Closes on every exit path; close errors only matter for the written file,
// which commit() closes by hand.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

// ---------------------------------------------------------------------------
// FileWriter

struct FileWriter::Impl {
  std::string path, tmp;
  uint32_t kind = 0, kind_version = 0;
  int fd = -1;
  bool created = false, committed = false, failed = false;
  std::vector<uint8_t> buf;
  size_t used = 0;   // bytes of buf not yet written
  uint64_t pos = 0;  // file offset of the next byte appended, buffered or not
  std::vector<SectionEntry> sections;
  bool in_section = false;
  SectionEntry current{};

  ~Impl() {
    // Best effort, never throws: a writer that did not commit leaves no trace.
    if (fd >= 0) ::close(fd);
    if (created && !committed) ::unlink(tmp.c_str());
  }

  [[noreturn]] void io_error(const char* what, const std::string& where) {
    std::string msg = sys_message(what, where);
    failed = true;
    throw std::runtime_error(msg);
  }

  void check_usable(const char* op) const {
    if (committed) throw std::logic_error(std::string("lookalike: FileWriter::") + op + " after commit");
    if (failed) throw std::logic_error(std::string("lookalike: FileWriter::") + op + " after a failed write");
  }

  void write_all(const uint8_t* p, size_t n) {
    while (n > 0) {
      ssize_t w = ::write(fd, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) io_error("write", tmp);  // write() returning 0 for n > 0 is treated as an error
      p += w;
      n -= size_t(w);
    }
  }

  void flush() {
    write_all(buf.data(), used);
    used = 0;
  }

  void put(const void* data, size_t n) {
    if (used + n > buf.size()) {
      flush();
      if (n >= buf.size()) {  // large pieces skip the copy
        write_all(static_cast<const uint8_t*>(data), n);
        pos += n;
        return;
      }
    }
    std::memcpy(buf.data() + used, data, n);
    used += n;
    pos += n;
  }
};

FileWriter::FileWriter(std::string path, uint32_t kind, uint32_t kind_version) : impl_(std::make_unique<Impl>()) {
  if (kind_version == 0) throw std::invalid_argument("lookalike: kind version 0 is reserved");
  Impl& w = *impl_;
  w.path = std::move(path);
  w.tmp = w.path + ".tmp";
  w.kind = kind;
  w.kind_version = kind_version;
  w.fd = ::open(w.tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (w.fd < 0) w.io_error("create", w.tmp);
  w.created = true;
  w.buf.resize(kBufferBytes);
  // Room for the header and the table, filled in by commit().
  std::memset(w.buf.data(), 0, kDataStart);
  w.used = w.pos = kDataStart;
}

FileWriter::~FileWriter() = default;

void FileWriter::begin_section(uint32_t id) {
  Impl& w = *impl_;
  w.check_usable("begin_section");
  if (w.in_section) throw std::logic_error("lookalike: begin_section inside section " + num(w.current.id));
  for (const SectionEntry& s : w.sections)
    if (s.id == id) throw std::logic_error("lookalike: section " + num(id) + " written twice");
  if (w.sections.size() >= kMaxSections)
    throw std::logic_error("lookalike: more than " + num(kMaxSections) + " sections in one file");
  static const uint8_t zeros[kAlign] = {};
  w.put(zeros, (kAlign - w.pos % kAlign) % kAlign);
  w.current = SectionEntry{};
  w.current.id = id;
  w.current.offset = w.pos;
  w.in_section = true;
}

void FileWriter::append(const void* data, size_t size) {
  Impl& w = *impl_;
  w.check_usable("append");
  if (!w.in_section) throw std::logic_error("lookalike: append outside a section");
  if (size == 0) return;
  w.current.crc = crc32c(data, size, w.current.crc);
  w.current.size += size;
  w.put(data, size);
}

void FileWriter::end_section() {
  Impl& w = *impl_;
  w.check_usable("end_section");
  if (!w.in_section) throw std::logic_error("lookalike: end_section without begin_section");
  w.sections.push_back(w.current);
  w.in_section = false;
}

void FileWriter::write_section(uint32_t id, const void* data, size_t size) {
  begin_section(id);
  append(data, size);
  end_section();
}

void FileWriter::commit() {
  Impl& w = *impl_;
  w.check_usable("commit");
  if (w.in_section) throw std::logic_error("lookalike: commit inside section " + num(w.current.id));
  w.flush();

  FileHeader h{};
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.format_version = kFormatVersion;
  h.kind = w.kind;
  h.kind_version = w.kind_version;
  h.section_count = uint32_t(w.sections.size());
  h.table_crc = crc32c(w.sections.data(), w.sections.size() * sizeof(SectionEntry));
  h.header_crc = crc32c(&h, sizeof(h));
  std::vector<uint8_t> head(sizeof(h) + w.sections.size() * sizeof(SectionEntry));
  std::memcpy(head.data(), &h, sizeof(h));
  if (!w.sections.empty())
    std::memcpy(head.data() + sizeof(h), w.sections.data(), w.sections.size() * sizeof(SectionEntry));
  if (::lseek(w.fd, 0, SEEK_SET) != 0) w.io_error("write", w.tmp);
  w.write_all(head.data(), head.size());

  // The data must be on disk before the rename makes it visible under <path>,
  // and the directory entry must be on disk before we report success.
  if (::fsync(w.fd) != 0) w.io_error("sync", w.tmp);
  int fd = w.fd;
  w.fd = -1;
  if (::close(fd) != 0) w.io_error("write", w.tmp);  // NFS and friends report late write errors here
  if (::rename(w.tmp.c_str(), w.path.c_str()) != 0) {
    const int err = errno;
    w.failed = true;
    throw std::runtime_error("lookalike: cannot rename " + w.tmp + " to " + w.path + ": " + std::strerror(err));
  }
  w.committed = true;  // from here on the tmp name is no longer ours to unlink

  size_t slash = w.path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : w.path.substr(0, slash);
  Fd d{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (d.fd < 0 || ::fsync(d.fd) != 0) throw std::runtime_error(sys_message("sync directory", dir));
}

// ---------------------------------------------------------------------------
// FileReader

struct FileReader::Impl {
  std::string path;
  const uint8_t* base = nullptr;
  size_t size = 0;
  uint32_t kind_version = 0;
  std::vector<SectionEntry> sections;

  ~Impl() {
    if (base) ::munmap(const_cast<uint8_t*>(base), size);
  }
};

FileReader::FileReader(const std::string& path, uint32_t kind, uint32_t max_kind_version)
    : impl_(std::make_unique<Impl>()) {
  Impl& r = *impl_;
  r.path = path;

  {
    Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};  // the mapping outlives it
    if (f.fd < 0) throw std::runtime_error(sys_message("open", path));
    struct stat st;
    if (::fstat(f.fd, &st) != 0) throw std::runtime_error(sys_message("stat", path));
    if (!S_ISREG(st.st_mode)) throw std::runtime_error("lookalike: cannot open " + path + ": not a regular file");
    if (uint64_t(st.st_size) < sizeof(FileHeader))
      bad_file(path, "file is truncated (" + num(uint64_t(st.st_size)) + " bytes, shorter than the " +
                         num(sizeof(FileHeader)) + "-byte header)");
    int flags = MAP_PRIVATE;
#ifdef MAP_POPULATE
    flags |= MAP_POPULATE;  // every byte is read below to verify it: fault it all in at once
#endif
    void* map = ::mmap(nullptr, size_t(st.st_size), PROT_READ, flags, f.fd, 0);
    if (map == MAP_FAILED) throw std::runtime_error(sys_message("map", path));
    r.base = static_cast<const uint8_t*>(map);
    r.size = size_t(st.st_size);
  }
  const uint64_t file_size = r.size;

  FileHeader h;
  std::memcpy(&h, r.base, sizeof(h));
  if (std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0) bad_file(path, "not a lookalike file (bad magic)");
  FileHeader zeroed = h;
  zeroed.header_crc = 0;
  if (crc32c(&zeroed, sizeof(zeroed)) != h.header_crc) bad_file(path, "header checksum mismatch (damaged file)");
  if (h.format_version > kFormatVersion)
    bad_file(path, "file format version " + num(h.format_version) + " is newer than this build of lookalike reads (" +
                       num(kFormatVersion) + "); upgrade lookalike");
  if (h.format_version != kFormatVersion) bad_file(path, "unsupported file format version " + num(h.format_version));
  if (h.kind != kind) bad_file(path, "holds kind " + num(h.kind) + ", expected kind " + num(kind));
  if (h.kind_version > max_kind_version)
    bad_file(path, "written by a newer version of lookalike (kind " + num(kind) + " version " + num(h.kind_version) +
                       ", this build reads up to version " + num(max_kind_version) + "); upgrade lookalike");
  if (h.kind_version == 0) bad_file(path, "invalid kind version 0");

  // section_count is 32-bit, so table_end cannot overflow 64 bits.
  const uint64_t table_end = sizeof(FileHeader) + uint64_t(h.section_count) * sizeof(SectionEntry);
  if (table_end > file_size)
    bad_file(path, "file is truncated (the section table ends at byte " + num(table_end) + ", the file has " +
                       num(file_size) + " bytes)");
  const uint8_t* table = r.base + sizeof(FileHeader);
  if (crc32c(table, table_end - sizeof(FileHeader)) != h.table_crc)
    bad_file(path, "section table checksum mismatch (damaged file)");

  r.sections.resize(h.section_count);
  if (h.section_count > 0) std::memcpy(r.sections.data(), table, r.sections.size() * sizeof(SectionEntry));
  for (const SectionEntry& s : r.sections) {
    if (s.offset > file_size || s.size > file_size - s.offset)
      bad_file(path, "file is truncated (section " + num(s.id) + " ends at byte " + num(s.offset) + " + " +
                         num(s.size) + ", the file has " + num(file_size) + " bytes)");
    // A misaligned section, or one over the table, can only come from a broken
    // writer (the table's checksum is good), but callers rely on both.
    if (s.offset < table_end || s.offset % kAlign != 0)
      bad_file(path, "section " + num(s.id) + " has an invalid offset " + num(s.offset) + " (damaged file)");
  }
  // Sorted copies keep these checks O(n log n) for any table, and refusing
  // overlaps bounds the checksum work below by the file size.
  std::vector<SectionEntry> sorted = r.sections;
  auto by = [&](auto key) {
    std::sort(sorted.begin(), sorted.end(), [&](const auto& a, const auto& b) { return key(a) < key(b); });
  };
  by([](const SectionEntry& s) { return s.id; });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i].id == sorted[i - 1].id)
      bad_file(path, "duplicate section id " + num(sorted[i].id) + " (damaged file)");
  by([](const SectionEntry& s) { return std::make_pair(s.offset, s.size); });  // empty ones first at a tie
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i].offset - sorted[i - 1].offset < sorted[i - 1].size)
      bad_file(path, "sections " + num(sorted[i - 1].id) + " and " + num(sorted[i].id) + " overlap (damaged file)");
  for (const SectionEntry& s : r.sections)
    if (crc32c(r.base + s.offset, size_t(s.size)) != s.crc)
      bad_file(path, "section " + num(s.id) + " checksum mismatch (damaged file)");
  r.kind_version = h.kind_version;
}

FileReader::~FileReader() = default;

uint32_t FileReader::kind_version() const { return impl_->kind_version; }

bool FileReader::has_section(uint32_t id) const {
  for (const SectionEntry& s : impl_->sections)
    if (s.id == id) return true;
  return false;
}

FileReader::Bytes FileReader::section(uint32_t id) const {
  for (const SectionEntry& s : impl_->sections)
    if (s.id == id) return Bytes{impl_->base + s.offset, size_t(s.size)};
  bad_file(impl_->path, "missing section " + num(id));
}

FileReader::Bytes FileReader::section(uint32_t id, size_t expected) const {
  Bytes b = section(id);
  if (b.size != expected)
    bad_file(impl_->path, "section " + num(id) + " has " + num(b.size) + " bytes, expected " + num(expected) +
                              " (damaged file)");
  return b;
}

const std::string& FileReader::path() const { return impl_->path; }

}  // namespace lookalike::io
