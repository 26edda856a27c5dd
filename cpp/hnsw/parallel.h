// A minimal parallel loop for batch adds and searches: items are handed out one
// by one from a shared counter (their costs vary a lot), and the first exception
// thrown by any worker stops the others and is rethrown to the caller.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace lookalike::hnsw {

inline size_t resolve_threads(size_t requested, size_t items) {
  size_t threads = requested ? requested : std::max(1u, std::thread::hardware_concurrency());
  return std::max<size_t>(1, std::min(threads, items));
}

template <class Fn>
void parallel_for(size_t n, size_t threads, Fn&& fn) {
  threads = resolve_threads(threads, n);
  if (threads == 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next.store(n);
      }
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace lookalike::hnsw
