// A shared mutex for data that long readers (searches) hold while writers
// wait: a writer goes before readers that come after it, and says that it
// waits, so a long reader can let it in at its next checkpoint
// (search_stop.h) instead of making it wait for the whole read.
//
// A writer announces itself, then takes a turnstile that every new read()
// passes through, then the lock itself: readers that let go meanwhile take it
// again only after the write. A thread must not read() while it holds a read
// of the same mutex: a writer between the two would wait for the first read
// while the second waits for it.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <shared_mutex>

namespace lookalike::hnsw {

class WriterFirstMutex {
 public:
  std::shared_lock<std::shared_mutex> read() const {
    { std::lock_guard<std::mutex> turn(turnstile_); }
    return std::shared_lock<std::shared_mutex>(mutex_);
  }

  std::unique_lock<std::shared_mutex> write() {
    waiting_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> turn(turnstile_);
    std::unique_lock<std::shared_mutex> lock(mutex_);
    waiting_.fetch_sub(1, std::memory_order_relaxed);
    return lock;
  }

  bool writer_waiting() const { return waiting_.load(std::memory_order_relaxed) != 0; }

 private:
  mutable std::shared_mutex mutex_;
  mutable std::mutex turnstile_;
  std::atomic<uint32_t> waiting_{0};
};

}  // namespace lookalike::hnsw
