#include "pq/vector_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "io/file_format.h"

namespace lookalike::pq {

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw std::runtime_error("lookalike: " + what + " " + path + ": " + std::strerror(errno));
}

constexpr size_t kMinCapacityRows = 1024;

}  // namespace

VectorFile::VectorFile(const std::string& path, size_t dim) : path_(path), dim_(dim) {
  if (path.empty()) {
    const char* dir = std::getenv("TMPDIR");
    std::string tmpl = std::string(dir && *dir ? dir : "/tmp") + "/lookalike-vectors-XXXXXX";
    fd_ = ::mkstemp(tmpl.data());
    if (fd_ < 0) fail("cannot create a temporary vectors file in", tmpl);
    ::unlink(tmpl.c_str());  // lives as long as the descriptor
  } else {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot create vectors file", path);
  }
}

VectorFile::VectorFile(const std::string& path, size_t dim, size_t rows, uint32_t crc) : path_(path), dim_(dim) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd_ < 0) {
    if (errno == ENOENT) throw io::FormatError("lookalike: " + path + ": the index's vectors file is missing");
    fail("cannot open vectors file", path);
  }
  struct stat st;
  if (::fstat(fd_, &st) != 0) fail("cannot stat", path);
  const size_t bytes = rows * dim * sizeof(float);
  if (size_t(st.st_size) < bytes) {
    ::close(fd_);
    throw io::FormatError("lookalike: " + path + ": vectors file is truncated (" + std::to_string(st.st_size) +
                          " bytes, the index needs " + std::to_string(bytes) + ")");
  }
  if (::ftruncate(fd_, off_t(bytes)) != 0) fail("cannot resize", path);
  map_capacity(rows);
  rows_ = rows;
  crc_ = crc;
}

void VectorFile::verify() const {
  const uint32_t actual = rows_ ? io::crc32c(map_, rows_ * dim_ * sizeof(float)) : 0;
  if (actual != crc_)
    throw io::FormatError("lookalike: " + (path_.empty() ? std::string("temporary vectors file") : path_) +
                          ": vectors file does not match its index (checksum)");
}

VectorFile::~VectorFile() {
  if (map_) ::munmap(map_, capacity_ * dim_ * sizeof(float));
  if (fd_ >= 0) {
    // A file ends at its last row, not at the reserved capacity; should this
    // fail, the file only keeps some zero rows past the end, which loads ignore.
    if (!path_.empty()) [[maybe_unused]] int rc = ::ftruncate(fd_, off_t(rows_ * dim_ * sizeof(float)));
    ::close(fd_);
  }
}

void VectorFile::map_capacity(size_t capacity_rows) {
  capacity_rows = std::max(capacity_rows, kMinCapacityRows);
  const size_t bytes = capacity_rows * dim_ * sizeof(float);
  struct stat st;
  if (::fstat(fd_, &st) != 0) fail("cannot stat", path_);
  if (size_t(st.st_size) < bytes && ::ftruncate(fd_, off_t(bytes)) != 0) fail("cannot grow vectors file", path_);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) fail("cannot map vectors file", path_);
  if (map_) ::munmap(map_, capacity_ * dim_ * sizeof(float));
  map_ = static_cast<float*>(p);
  capacity_ = capacity_rows;
}

void VectorFile::append(const float* rows, const uint32_t* order, size_t n) {
  if (rows_ + n > capacity_) map_capacity(std::max(rows_ + n, 2 * capacity_));
  float* out = map_ + rows_ * dim_;
  if (order) {
    for (size_t i = 0; i < n; ++i) std::memcpy(out + i * dim_, rows + size_t(order[i]) * dim_, dim_ * sizeof(float));
  } else {
    std::memcpy(out, rows, n * dim_ * sizeof(float));
  }
  crc_ = io::crc32c(out, n * dim_ * sizeof(float), crc_);
  rows_ += n;
}

void VectorFile::save_as(const std::string& path) const {
  const size_t bytes = rows_ * dim_ * sizeof(float);
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
