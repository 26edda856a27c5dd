// Growth of the per-vector tables of the IVF index (ids, list slots): at least
// 1/8 of the size at a time, amortised like std::vector's doubling without
// its up-to-2x slack in memory that is counted per vector (ivf_pq.h). A bulk
// load reserves exactly what it brings.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace lookalike::pq {

template <class T>
void reserve_amortised(std::vector<T>& v, size_t more) {
  if (v.size() + more > v.capacity()) v.reserve(std::max(v.size() + more, v.capacity() + v.capacity() / 8));
}

}  // namespace lookalike::pq
