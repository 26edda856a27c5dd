#include "pq/vector_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "io/file_format.h"

namespace lookalike::pq {

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw std::runtime_error("lookalike: " + what + " " + path + ": " + std::strerror(errno));
}

constexpr size_t kMinCapacityRows = 1024;

}  // namespace

VectorFile::VectorFile(const std::string& path, size_t row_bytes, std::string what)
    : path_(path), what_(std::move(what)), row_bytes_(row_bytes) {
  if (path.empty()) {
    const char* dir = std::getenv("TMPDIR");
    std::string tmpl = std::string(dir && *dir ? dir : "/tmp") + "/lookalike-" + what_ + "-XXXXXX";
    fd_ = ::mkstemp(tmpl.data());
    if (fd_ < 0) fail("cannot create a temporary " + what_ + " file in", tmpl);
    ::unlink(tmpl.c_str());  // lives as long as the descriptor
  } else {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot create " + what_ + " file", path);
  }
}

VectorFile::VectorFile(const std::string& path, size_t row_bytes, size_t rows, uint32_t crc, std::string what)
    : path_(path), what_(std::move(what)), row_bytes_(row_bytes) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd_ < 0) {
    if (errno == ENOENT) throw io::FormatError("lookalike: " + path + ": the index's " + what_ + " file is missing");
    fail("cannot open " + what_ + " file", path);
  }
  struct stat st;
  if (::fstat(fd_, &st) != 0) fail("cannot stat", path);
  const size_t bytes = rows * row_bytes_;
  if (size_t(st.st_size) < bytes) {
    ::close(fd_);
    throw io::FormatError("lookalike: " + path + ": " + what_ + " file is truncated (" + std::to_string(st.st_size) +
                          " bytes, the index needs " + std::to_string(bytes) + ")");
  }
  if (::ftruncate(fd_, off_t(bytes)) != 0) fail("cannot resize", path);
  map_capacity(rows);
  rows_ = rows;
  crc_ = crc;
}

void VectorFile::verify() const {
  const uint32_t actual = rows_ ? io::crc32c(map_, rows_ * row_bytes_) : 0;
  if (actual != crc_)
    throw io::FormatError("lookalike: " + (path_.empty() ? "temporary " + what_ + " file" : path_) + ": " + what_ +
                          " file does not match its index (checksum)");
}

VectorFile::~VectorFile() {
  if (map_) ::munmap(map_, capacity_ * row_bytes_);
  if (fd_ >= 0) {
    // A file ends at its last row, not at the reserved capacity; should this
    // fail, the file only keeps some zero rows past the end, which loads ignore.
    if (!path_.empty()) [[maybe_unused]] int rc = ::ftruncate(fd_, off_t(rows_ * row_bytes_));
    ::close(fd_);
  }
}

void VectorFile::map_capacity(size_t capacity_rows) {
  capacity_rows = std::max(capacity_rows, kMinCapacityRows);
  const size_t bytes = capacity_rows * row_bytes_;
  struct stat st;
  if (::fstat(fd_, &st) != 0) fail("cannot stat", path_);
  if (size_t(st.st_size) < bytes && ::ftruncate(fd_, off_t(bytes)) != 0) fail("cannot grow " + what_ + " file", path_);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) fail("cannot map " + what_ + " file", path_);
  if (map_) ::munmap(map_, capacity_ * row_bytes_);
  map_ = static_cast<uint8_t*>(p);
  capacity_ = capacity_rows;
}

void VectorFile::reserve(size_t n) {
  if (rows_ + n > capacity_) map_capacity(std::max(rows_ + n, 2 * capacity_));
}

void VectorFile::append(const void* rows, const uint32_t* order, size_t n) {
  reserve(n);
  uint8_t* out = map_ + rows_ * row_bytes_;
  const uint8_t* in = static_cast<const uint8_t*>(rows);
  if (order) {
    for (size_t i = 0; i < n; ++i) std::memcpy(out + i * row_bytes_, in + size_t(order[i]) * row_bytes_, row_bytes_);
  } else {
    std::memcpy(out, in, n * row_bytes_);
  }
  crc_ = io::crc32c(out, n * row_bytes_, crc_);
  rows_ += n;
}

void VectorFile::save_as(const std::string& path) const {
  const size_t bytes = rows_ * row_bytes_;
  if (path == path_) {
    if (bytes && ::msync(map_, bytes, MS_SYNC) != 0) fail("cannot flush", path);
    return;
  }
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create", tmp);
  const char* p = reinterpret_cast<const char*>(map_);
  for (size_t done = 0; done < bytes;) {
    const ssize_t w = ::write(fd, p + done, std::min<size_t>(bytes - done, size_t(1) << 26));
    if (w < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("cannot write", tmp);
    }
    done += size_t(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    fail("cannot flush", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename onto", path);
}

}  // namespace lookalike::pq
