// Saving and loading an AttributeStore in the container of io/file_format.h.
//
// Sections (kind 2, kind version 1), little-endian:
//   1 schema   u32 attribute count; per attribute: u8 type, u32 name length, name bytes
//   2 ids      i64 per row: the row's id, or -1 for a free row
//   3 columns  per attribute in schema order, over every row:
//                keyword    u32 dictionary size; per word u32 length + bytes;
//                           u32 value count per row; then all rows' u32 codes
//                numeric    u8 present per row; f64 value per row
//                bool       u8 per row: 0, 1, or 2 (absent)
//                timestamp  u8 present per row; i64 value per row
// Free rows keep no values. The indexes (postings, sorted arrays) are not saved:
// the loader rebuilds them. Every count, code and value is checked against its
// bounds, so a damaged file is refused with io::FormatError, never half-loaded.
#include <cmath>
#include <cstring>
#include <mutex>
#include <unordered_set>

#include "filter/attribute_store.h"
#include "io/file_format.h"

namespace lookalike::filter {

namespace {

constexpr uint32_t kFileKind = 2;  // attribute store (1 is HNSW)
constexpr uint32_t kKindVersion = 1;
enum Section : uint32_t { kSchema = 1, kIds = 2, kColumns = 3 };

class ByteWriter {
 public:
  template <class T>
  void put(T v) {
    bytes_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint32_t>(uint32_t(s.size()));
    bytes_ += s;
  }
  template <class T>
  void put_array(const T* data, size_t n) {
    bytes_.append(reinterpret_cast<const char*>(data), n * sizeof(T));
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// Reads a section front to back; any read past its end is a FormatError.
class ByteReader {
 public:
  ByteReader(io::FileReader::Bytes b, const std::string& path, const char* section)
      : p_(b.data), left_(b.size), path_(path), section_(section) {}
  template <class T>
  T get() {
    T v;
    std::memcpy(&v, take(sizeof(T)), sizeof(T));
    return v;
  }
  std::string get_string() {
    const uint32_t n = get<uint32_t>();
    return std::string(reinterpret_cast<const char*>(take(n)), n);
  }
  template <class T>
  const uint8_t* get_array(size_t n) {
    if (n > left_ / sizeof(T)) fail("ends early");
    return take(n * sizeof(T));
  }
  void expect_end() const {
    if (left_ != 0) fail("has " + std::to_string(left_) + " unexpected trailing bytes");
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw io::FormatError("lookalike: " + path_ + ": damaged attribute store: " + section_ + " section " + what);
  }

 private:
  const uint8_t* take(size_t n) {
    if (n > left_) fail("ends early");
    const uint8_t* at = p_;
    p_ += n;
    left_ -= n;
    return at;
  }
  const uint8_t* p_;
  size_t left_;
  const std::string& path_;
  const char* section_;
};

}  // namespace

void AttributeStore::save(const std::string& path) const {
  std::shared_lock<std::shared_mutex> lock = mutex_.read();
  const size_t rows = id_by_row_.size();

  ByteWriter schema;
  schema.put<uint32_t>(uint32_t(schema_.size()));
  for (const AttributeSpec& a : schema_) {
    schema.put<uint8_t>(uint8_t(a.type));
    schema.put_string(a.name);
  }

  ByteWriter columns;
  for (size_t c = 0; c < columns_.size(); ++c) {
    switch (schema_[c].type) {
      case AttributeType::Keyword: {
        const KeywordColumn& col = keyword(c);
        columns.put<uint32_t>(uint32_t(col.dictionary_size()));
        for (uint32_t w = 0; w < col.dictionary_size(); ++w) columns.put_string(col.word(w));
        for (uint32_t r = 0; r < rows; ++r) columns.put<uint32_t>(uint32_t(col.count(r)));
        for (uint32_t r = 0; r < rows; ++r) columns.put_array(col.codes(r), col.count(r));
        break;
      }
      case AttributeType::Numeric:
      case AttributeType::Timestamp: {
        auto write = [&](const auto& col) {
          for (uint32_t r = 0; r < rows; ++r) columns.put<uint8_t>(col.present(r));
          for (uint32_t r = 0; r < rows; ++r) columns.put(col.get(r));
        };
        if (schema_[c].type == AttributeType::Numeric)
          write(numeric(c));
        else
          write(timestamp(c));
        break;
      }
      case AttributeType::Bool:
        for (uint32_t r = 0; r < rows; ++r) columns.put<uint8_t>(flag(c).get(r));
        break;
    }
  }

  io::FileWriter out(path, kFileKind, kKindVersion);
  out.write_section(kSchema, schema.bytes().data(), schema.bytes().size());
  out.write_section(kIds, id_by_row_.data(), rows * sizeof(int64_t));
  out.write_section(kColumns, columns.bytes().data(), columns.bytes().size());
  out.commit();
}

std::unique_ptr<AttributeStore> AttributeStore::load(const std::string& path) {
  io::FileReader in(path, kFileKind, kKindVersion);

  ByteReader schema_in(in.section(kSchema), path, "schema");
  const uint32_t attributes = schema_in.get<uint32_t>();
  std::vector<AttributeSpec> schema;
  for (uint32_t i = 0; i < attributes; ++i) {
    const uint8_t type = schema_in.get<uint8_t>();
    if (type > uint8_t(AttributeType::Timestamp)) schema_in.fail("has unknown type code " + std::to_string(type));
    schema.push_back({schema_in.get_string(), AttributeType(type)});
  }
  schema_in.expect_end();
  std::unique_ptr<AttributeStore> store;
  try {
    store = std::make_unique<AttributeStore>(std::move(schema));
  } catch (const std::invalid_argument& e) {
    schema_in.fail(e.what());
  }
  AttributeStore& s = *store;

  io::FileReader::Bytes ids = in.section(kIds);
  ByteReader ids_in(ids, path, "ids");
  if (ids.size % sizeof(int64_t) != 0) ids_in.fail("is not a whole number of ids");
  const size_t rows = ids.size / sizeof(int64_t);
  if (rows >= kNoRow) ids_in.fail("holds too many rows");
  s.id_by_row_.resize(rows);
  std::memcpy(s.id_by_row_.data(), ids.data, ids.size);
  for (uint32_t r = 0; r < rows; ++r) {
    const int64_t id = s.id_by_row_[r];
    if (id == -1) {
      s.free_rows_.push_back(r);
    } else if (id < 0 || !s.row_by_id_.insert(id, r)) {
      ids_in.fail("has invalid or repeated id " + std::to_string(id));
    } else {
      s.moved_rows_ += uint64_t(id) != r;
    }
  }
  for (Column& c : s.columns_) std::visit([&](auto& col) { col.grow(rows); }, c);
  auto live = [&](uint32_t r) { return s.id_by_row_[r] != -1; };

  ByteReader col_in(in.section(kColumns), path, "columns");
  for (size_t c = 0; c < s.columns_.size(); ++c) {
    const std::string& name = s.schema_[c].name;
    switch (s.schema_[c].type) {
      case AttributeType::Keyword: {
        KeywordColumn& col = std::get<KeywordColumn>(s.columns_[c]);
        const uint32_t words = col_in.get<uint32_t>();
        for (uint32_t w = 0; w < words; ++w)
          if (col.add_word(col_in.get_string()) != w) col_in.fail("repeats a keyword of '" + name + "'");
        const auto* counts = reinterpret_cast<const uint32_t*>(col_in.get_array<uint32_t>(rows));
        std::vector<uint32_t> codes;
        for (uint32_t r = 0; r < rows; ++r) {
          uint32_t n;
          std::memcpy(&n, counts + r, sizeof(n));
          codes.resize(n);
          const uint8_t* raw = col_in.get_array<uint32_t>(n);
          if (n) std::memcpy(codes.data(), raw, n * sizeof(uint32_t));
          for (uint32_t code : codes)
            if (code >= words) col_in.fail("has keyword code " + std::to_string(code) + " of '" + name + "' out of range");
          if (live(r)) col.set_codes(r, codes.data(), n);
        }
        break;
      }
      case AttributeType::Numeric:
      case AttributeType::Timestamp: {
        auto read = [&](auto& col, auto zero) {
          using T = decltype(zero);
          const uint8_t* present = col_in.get_array<uint8_t>(rows);
          const uint8_t* values = col_in.get_array<T>(rows);
          for (uint32_t r = 0; r < rows; ++r) {
            T v;
            std::memcpy(&v, values + r * sizeof(T), sizeof(T));
            if (present[r] > 1) col_in.fail("has a bad presence flag in '" + name + "'");
            if constexpr (std::is_floating_point_v<T>)
              if (present[r] && !std::isfinite(v)) col_in.fail("has a non-finite value in '" + name + "'");
            if (present[r] && live(r)) col.set(r, v, false);
          }
        };
        if (s.schema_[c].type == AttributeType::Numeric)
          read(std::get<NumericColumn<double>>(s.columns_[c]), double{});
        else
          read(std::get<NumericColumn<int64_t>>(s.columns_[c]), int64_t{});
        break;
      }
      case AttributeType::Bool: {
        BoolColumn& col = std::get<BoolColumn>(s.columns_[c]);
        const uint8_t* values = col_in.get_array<uint8_t>(rows);
        for (uint32_t r = 0; r < rows; ++r) {
          if (values[r] > BoolColumn::kAbsent) col_in.fail("has a bad flag in '" + name + "'");
          if (live(r)) col.set(r, values[r], false);
        }
        break;
      }
    }
  }
  col_in.expect_end();
  s.rebuild_indexes();
  return store;
}

}  // namespace lookalike::filter
