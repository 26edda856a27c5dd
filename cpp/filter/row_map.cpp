#include "filter/row_map.h"

#include <algorithm>

namespace lookalike::filter {

bool RowMap::insert(int64_t id, uint32_t row) {
  if (find(id) != kNoRow) return false;
  const uint64_t bound = 4 * uint64_t(size_ + 1) + (1u << 16);
  if (id >= 0 && uint64_t(id) >= direct_.size() && uint64_t(id) < bound) {
    // Grow geometrically, and move the hashed ids the array now covers.
    direct_.resize(size_t(std::min<uint64_t>(bound, std::max<uint64_t>(uint64_t(id) + 1, 2 * direct_.size()))), kNoRow);
    for (auto it = sparse_.begin(); it != sparse_.end();) {
      if (uint64_t(it->first) < direct_.size()) {
        direct_[size_t(it->first)] = it->second;
        it = sparse_.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (id >= 0 && uint64_t(id) < direct_.size())
    direct_[size_t(id)] = row;
  else
    sparse_.emplace(id, row);
  ++size_;
  return true;
}

void RowMap::erase(int64_t id) {
  if (find(id) == kNoRow) return;
  if (id >= 0 && uint64_t(id) < direct_.size())
    direct_[size_t(id)] = kNoRow;
  else
    sparse_.erase(id);
  --size_;
}

}  // namespace lookalike::filter
