// Per-product attributes for filtered search: named, typed columns keyed by the
// product's external int64 id. It knows nothing of vectors or graphs; a
// CompiledFilter (predicate.h) reads it during a search.
//
// Types:
//   keyword    strings, any number per product (category path, brand, colours),
//              dictionary-encoded: 4 bytes a value, each distinct string kept once
//   numeric    one double (price, rating); NaN and infinities are refused
//   bool       one flag (in stock)
//   timestamp  one int64 (the caller picks the unit, e.g. seconds since the epoch)
//
// Layout: each id gets a dense row (free rows are reused), so a column is an
// array indexed by row: 8 bytes a row for the row's id, 4+ for the id -> row map
// (row_map.h), plus per column 8 bytes a row + 4 a keyword (keyword), 9 + 16
// for the sorted index + 1 for the value's bucket (numeric, timestamp), 1 + 4
// (bool). Estimates, enumerations and row bitmaps come from the columns'
// indexes (columns.h).
//
// Concurrency: writes take the store's lock exclusively, searches hold it shared
// (CompiledFilter::hold), so a search sees one state of the store between its
// checkpoints (hnsw/search_stop.h). The lock lets writers first
// (hnsw/writer_first_mutex.h): a writer waits until each running search reaches
// its next checkpoint, not for whole searches.
// Every write checks all of its input before it changes anything.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "filter/columns.h"
#include "filter/row_map.h"
#include "hnsw/writer_first_mutex.h"

namespace lookalike::filter {

enum class AttributeType : uint8_t { Keyword = 0, Numeric = 1, Bool = 2, Timestamp = 3 };
const char* type_name(AttributeType type);
AttributeType parse_type(const std::string& name);  // std::invalid_argument when unknown

// A name the schema does not hold (a KeyError in Python).
class UnknownAttributeError : public std::out_of_range {
 public:
  using std::out_of_range::out_of_range;
};
// A value or clause of the wrong type for its attribute (a TypeError in Python).
class AttributeTypeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct AttributeSpec {
  std::string name;
  AttributeType type;
};

// One attribute's new values for a batch of ids, in the ids' order. The
// alternative held must be the attribute's type (same order as AttributeType).
struct ColumnValues {
  std::string name;
  std::variant<std::vector<std::vector<std::string>>, std::vector<double>, std::vector<uint8_t>, std::vector<int64_t>>
      values;
  std::vector<uint8_t> present;  // empty: every value given; else 0 clears that id's value
};

// One attribute value as get() returns it.
using Value = std::variant<std::vector<std::string>, double, bool, int64_t>;

struct StoreMemory {
  size_t id_map_bytes = 0;
  std::vector<size_t> column_bytes;  // in schema order
  size_t total_bytes = 0;
  size_t ids = 0, rows = 0;  // ids with attributes; rows allocated (ids + free rows)
};

class AttributeStore {
 public:
  static constexpr uint32_t kNoRow = filter::kNoRow;

  // Names must be distinct and non-empty; at most 1024 attributes.
  explicit AttributeStore(std::vector<AttributeSpec> schema);

  const std::vector<AttributeSpec>& schema() const { return schema_; }
  // The column number of a name; UnknownAttributeError naming it otherwise.
  size_t column_of(const std::string& name) const;

  // Sets attributes of n ids (ids >= 0, distinct); other attributes keep their values.
  void set(const int64_t* ids, size_t n, const std::vector<ColumnValues>& columns);
  // Clears the named attributes of the ids, or with no names every attribute (the
  // ids are then forgotten). Ids without attributes are skipped.
  void clear(const int64_t* ids, size_t n, const std::vector<std::string>& names);
  // The attributes an id has, by name (none for an unknown id).
  std::vector<std::pair<std::string, Value>> get(int64_t id) const;
  size_t size() const;  // ids with a row
  // The ids holding `word` in the keyword attribute `name` (its posting list,
  // in row order), and their count: what keeping a group graph whole reads.
  // UnknownAttributeError / AttributeTypeError for a name that is no keyword
  // attribute; none for a word no id holds.
  std::vector<int64_t> ids_with(const std::string& name, const std::string& word) const;
  size_t count_with(const std::string& name, const std::string& word) const;
  // Every word some id holds in the keyword attribute `name`, with count_with's count.
  std::vector<std::pair<std::string, size_t>> word_counts(const std::string& name) const;
  StoreMemory memory_usage() const;

  void save(const std::string& path) const;
  static std::unique_ptr<AttributeStore> load(const std::string& path);

  // --- reading, for compiled predicates: the caller holds read_lock() ----------
  // Never taken twice by one thread (see WriterFirstMutex).
  std::shared_lock<std::shared_mutex> read_lock() const { return mutex_.read(); }
  bool writer_waiting() const { return mutex_.writer_waiting(); }
  uint32_t row_of(int64_t id) const { return row_by_id_.find(id); }
  int64_t id_of(uint32_t row) const { return id_by_row_[row]; }
  void prefetch_id(uint32_t row) const {
    if (row < id_by_row_.size()) __builtin_prefetch(&id_by_row_[row]);
  }
  size_t live_rows() const { return row_by_id_.size(); }
  size_t rows() const { return id_by_row_.size(); }  // live and free
  // Whether every live row's id is its row number (a catalog's dense ids, set
  // in order): a bitmap of rows is then one of ids.
  bool rows_are_ids() const { return moved_rows_ == 0; }
  const KeywordColumn& keyword(size_t column) const { return std::get<KeywordColumn>(columns_[column]); }
  const NumericColumn<double>& numeric(size_t column) const { return std::get<NumericColumn<double>>(columns_[column]); }
  const BoolColumn& flag(size_t column) const { return std::get<BoolColumn>(columns_[column]); }
  const NumericColumn<int64_t>& timestamp(size_t column) const {
    return std::get<NumericColumn<int64_t>>(columns_[column]);
  }

 private:
  // Alternatives in AttributeType order.
  using Column = std::variant<KeywordColumn, NumericColumn<double>, BoolColumn, NumericColumn<int64_t>>;

  void check_set(const int64_t* ids, size_t n, const std::vector<ColumnValues>& columns) const;
  // Existing or new (then the caller grows the columns); caller holds the lock exclusively.
  uint32_t row_for(int64_t id);
  // The posting list of `word` in the keyword attribute `name` (null for an
  // unknown word); caller holds the lock.
  const std::vector<uint32_t>* keyword_rows(const std::string& name, const std::string& word) const;
  // The column of the keyword attribute `name`; caller holds the lock.
  size_t keyword_column_of(const std::string& name) const;
  void clear_column(size_t column, uint32_t row, bool maintain);
  void rebuild_indexes();

  std::vector<AttributeSpec> schema_;
  std::unordered_map<std::string, size_t> column_by_name_;
  std::vector<Column> columns_;
  RowMap row_by_id_;
  std::vector<int64_t> id_by_row_;  // -1 for a free row
  std::vector<uint32_t> free_rows_;
  size_t moved_rows_ = 0;  // live rows whose id is not their row number
  mutable hnsw::WriterFirstMutex mutex_;
};

}  // namespace lookalike::filter
