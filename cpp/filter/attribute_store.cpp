// The store's writes and reads. Saving and loading are in attribute_persist.cpp.
#include "filter/attribute_store.h"

#include <cmath>
#include <mutex>
#include <unordered_set>

namespace lookalike::filter {

namespace {
// A batch of more ids than this rebuilds the columns' indexes once at the end
// instead of updating them id by id: an update shifts up to a whole sorted
// array (O(rows)), a rebuild sorts it (O(rows log rows)), so past a few dozen
// ids the rebuild is the cheaper of the two.
constexpr size_t kMaintainLimit = 32;
constexpr size_t kMaxAttributes = 1024;

std::string id_text(int64_t id) { return std::to_string(id); }
}  // namespace

const char* type_name(AttributeType type) {
  switch (type) {
    case AttributeType::Keyword: return "keyword";
    case AttributeType::Numeric: return "numeric";
    case AttributeType::Bool: return "bool";
    case AttributeType::Timestamp: return "timestamp";
  }
  return "unknown";
}

AttributeType parse_type(const std::string& name) {
  for (auto t : {AttributeType::Keyword, AttributeType::Numeric, AttributeType::Bool, AttributeType::Timestamp})
    if (name == type_name(t)) return t;
  throw std::invalid_argument("unknown attribute type '" + name + "' (expected keyword, numeric, bool or timestamp)");
}

AttributeStore::AttributeStore(std::vector<AttributeSpec> schema) : schema_(std::move(schema)) {
  if (schema_.size() > kMaxAttributes)
    throw std::invalid_argument("at most " + std::to_string(kMaxAttributes) + " attributes, got " +
                                std::to_string(schema_.size()));
  for (size_t i = 0; i < schema_.size(); ++i) {
    const AttributeSpec& a = schema_[i];
    if (a.name.empty()) throw std::invalid_argument("attribute names must not be empty");
    if (uint8_t(a.type) > uint8_t(AttributeType::Timestamp))
      throw std::invalid_argument("attribute '" + a.name + "' has an unknown type");
    if (!column_by_name_.try_emplace(a.name, i).second)
      throw std::invalid_argument("attribute '" + a.name + "' is declared twice");
    switch (a.type) {
      case AttributeType::Keyword: columns_.emplace_back(std::in_place_type<KeywordColumn>); break;
      case AttributeType::Numeric: columns_.emplace_back(std::in_place_type<NumericColumn<double>>); break;
      case AttributeType::Bool: columns_.emplace_back(std::in_place_type<BoolColumn>); break;
      case AttributeType::Timestamp: columns_.emplace_back(std::in_place_type<NumericColumn<int64_t>>); break;
    }
  }
}

size_t AttributeStore::column_of(const std::string& name) const {
  auto it = column_by_name_.find(name);
  if (it == column_by_name_.end()) throw UnknownAttributeError("unknown attribute '" + name + "'");
  return it->second;
}

// --- writes ------------------------------------------------------------------------

void AttributeStore::check_set(const int64_t* ids, size_t n, const std::vector<ColumnValues>& columns) const {
  std::unordered_set<int64_t> seen;
  seen.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0) throw std::invalid_argument("ids must be >= 0, got " + id_text(ids[i]));
    if (!seen.insert(ids[i]).second) throw std::invalid_argument("id " + id_text(ids[i]) + " appears twice in the batch");
  }
  std::unordered_set<size_t> named;
  for (const ColumnValues& c : columns) {
    const size_t col = column_of(c.name);
    const AttributeType type = schema_[col].type;
    if (!named.insert(col).second) throw std::invalid_argument("attribute '" + c.name + "' is given twice");
    if (c.values.index() != size_t(type))
      throw AttributeTypeError("attribute '" + c.name + "' is " + type_name(type) + ", got " +
                               type_name(AttributeType(c.values.index())) + " values");
    const size_t count = std::visit([](const auto& v) { return v.size(); }, c.values);
    if (count != n || (!c.present.empty() && c.present.size() != n))
      throw std::invalid_argument("attribute '" + c.name + "': got " + std::to_string(count) + " values for " +
                                  std::to_string(n) + " ids");
    if (const auto* numbers = std::get_if<std::vector<double>>(&c.values))
      for (size_t i = 0; i < n; ++i)
        if ((c.present.empty() || c.present[i]) && !std::isfinite((*numbers)[i]))
          throw std::invalid_argument("attribute '" + c.name + "': value " + std::to_string((*numbers)[i]) +
                                      " of id " + id_text(ids[i]) + " is not a finite number");
    if (const auto* flags = std::get_if<std::vector<uint8_t>>(&c.values))
      for (size_t i = 0; i < n; ++i)
        if ((*flags)[i] > 1) throw std::invalid_argument("attribute '" + c.name + "': flags must be 0 or 1");
  }
}

uint32_t AttributeStore::row_for(int64_t id) {
  if (uint32_t row = row_by_id_.find(id); row != kNoRow) return row;
  uint32_t row;
  if (!free_rows_.empty()) {
    row = free_rows_.back();
    free_rows_.pop_back();
    id_by_row_[row] = id;
  } else {
    if (id_by_row_.size() >= kNoRow) throw std::length_error("the attribute store is full (2^32 - 1 ids)");
    row = uint32_t(id_by_row_.size());
    id_by_row_.push_back(id);
  }
  row_by_id_.insert(id, row);
  moved_rows_ += uint64_t(id) != row;
  return row;
}

void AttributeStore::clear_column(size_t column, uint32_t row, bool maintain) {
  std::visit(
      [&](auto& col) {
        using C = std::decay_t<decltype(col)>;
        if constexpr (std::is_same_v<C, BoolColumn>)
          col.set(row, BoolColumn::kAbsent, maintain);
        else
          col.clear(row, maintain);
      },
      columns_[column]);
}

void AttributeStore::set(const int64_t* ids, size_t n, const std::vector<ColumnValues>& columns) {
  std::unique_lock<std::shared_mutex> lock = mutex_.write();
  check_set(ids, n, columns);
  if (n == 0 || columns.empty()) return;
  const bool maintain = n <= kMaintainLimit;
  std::vector<uint32_t> rows(n);
  for (size_t i = 0; i < n; ++i) rows[i] = row_for(ids[i]);
  // Columns grow once a batch, so a bulk load allocates them at their exact size.
  for (Column& c : columns_) std::visit([&](auto& col) { col.grow(id_by_row_.size()); }, c);
  for (const ColumnValues& c : columns) {
    const size_t col = column_of(c.name);
    for (size_t i = 0; i < n; ++i) {
      if (!c.present.empty() && !c.present[i]) {
        clear_column(col, rows[i], maintain);
        continue;
      }
      switch (schema_[col].type) {
        case AttributeType::Keyword:
          std::get<KeywordColumn>(columns_[col]).set(rows[i], std::get<0>(c.values)[i], maintain);
          break;
        case AttributeType::Numeric:
          std::get<NumericColumn<double>>(columns_[col]).set(rows[i], std::get<1>(c.values)[i], maintain);
          break;
        case AttributeType::Bool:
          std::get<BoolColumn>(columns_[col]).set(rows[i], std::get<2>(c.values)[i], maintain);
          break;
        case AttributeType::Timestamp:
          std::get<NumericColumn<int64_t>>(columns_[col]).set(rows[i], std::get<3>(c.values)[i], maintain);
          break;
      }
    }
  }
  if (!maintain) rebuild_indexes();
}

void AttributeStore::clear(const int64_t* ids, size_t n, const std::vector<std::string>& names) {
  std::unique_lock<std::shared_mutex> lock = mutex_.write();
  std::vector<size_t> cols;
  for (const std::string& name : names) cols.push_back(column_of(name));
  const bool forget = names.empty();
  if (forget)
    for (size_t c = 0; c < columns_.size(); ++c) cols.push_back(c);
  const bool maintain = n <= kMaintainLimit;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t row = row_by_id_.find(ids[i]);
    if (row == kNoRow) continue;
    for (size_t c : cols) clear_column(c, row, maintain);
    if (forget) {
      row_by_id_.erase(ids[i]);
      moved_rows_ -= uint64_t(ids[i]) != row;
      id_by_row_[row] = -1;
      free_rows_.push_back(row);
    }
  }
  if (!maintain) rebuild_indexes();
}

void AttributeStore::rebuild_indexes() {
  for (Column& c : columns_) std::visit([](auto& col) { col.rebuild_index(); }, c);
}

// --- reads -------------------------------------------------------------------------

std::vector<std::pair<std::string, Value>> AttributeStore::get(int64_t id) const {
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  std::vector<std::pair<std::string, Value>> out;
  const uint32_t row = row_of(id);
  if (row == kNoRow) return out;
  for (size_t c = 0; c < columns_.size(); ++c) {
    const std::string& name = schema_[c].name;
    switch (schema_[c].type) {
      case AttributeType::Keyword:
        if (keyword(c).count(row)) out.emplace_back(name, keyword(c).get(row));
        break;
      case AttributeType::Numeric:
        if (numeric(c).present(row)) out.emplace_back(name, numeric(c).get(row));
        break;
      case AttributeType::Bool:
        if (flag(c).get(row) != BoolColumn::kAbsent) out.emplace_back(name, flag(c).get(row) == 1);
        break;
      case AttributeType::Timestamp:
        if (timestamp(c).present(row)) out.emplace_back(name, timestamp(c).get(row));
        break;
    }
  }
  return out;
}

size_t AttributeStore::keyword_column_of(const std::string& name) const {
  const size_t c = column_of(name);
  if (schema_[c].type != AttributeType::Keyword)
    throw AttributeTypeError("attribute '" + name + "' is " + type_name(schema_[c].type) + ", not keyword");
  return c;
}

const std::vector<uint32_t>* AttributeStore::keyword_rows(const std::string& name, const std::string& word) const {
  const size_t c = keyword_column_of(name);
  const uint32_t code = keyword(c).code(word);
  return code == kNoCode ? nullptr : &keyword(c).rows_with(code);
}

std::vector<int64_t> AttributeStore::ids_with(const std::string& name, const std::string& word) const {
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  std::vector<int64_t> ids;
  if (const std::vector<uint32_t>* rows = keyword_rows(name, word)) {
    ids.reserve(rows->size());
    for (uint32_t row : *rows) ids.push_back(id_by_row_[row]);
  }
  return ids;
}

size_t AttributeStore::count_with(const std::string& name, const std::string& word) const {
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  const std::vector<uint32_t>* rows = keyword_rows(name, word);
  return rows ? rows->size() : 0;
}

std::vector<std::pair<std::string, size_t>> AttributeStore::word_counts(const std::string& name) const {
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  const KeywordColumn& column = keyword(keyword_column_of(name));
  std::vector<std::pair<std::string, size_t>> out;
  for (uint32_t code = 0; code < column.dictionary_size(); ++code)
    if (const size_t n = column.rows_with(code).size()) out.emplace_back(column.word(code), n);
  return out;
}

size_t AttributeStore::size() const {
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  return row_by_id_.size();
}

StoreMemory AttributeStore::memory_usage() const {
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  StoreMemory m;
  m.id_map_bytes = row_by_id_.bytes() + id_by_row_.capacity() * sizeof(int64_t) + free_rows_.capacity() * sizeof(uint32_t);
  m.total_bytes = m.id_map_bytes;
  for (const Column& c : columns_) {
    m.column_bytes.push_back(std::visit([](const auto& col) { return col.bytes(); }, c));
    m.total_bytes += m.column_bytes.back();
  }
  m.ids = row_by_id_.size();
  m.rows = id_by_row_.size();
  return m;
}

}  // namespace lookalike::filter
