#include "filter/predicate.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "filter/bitmap_kernels.h"
#include "hnsw/search_stop.h"

namespace lookalike::filter {

namespace {

using Kind = FilterSpec::Kind;
constexpr size_t kUnknown = hnsw::Filter::kUnknown;
constexpr double kNoBits = std::numeric_limits<double>::infinity();

// What building a match set costs, in ns (the planner weighs the two ways by
// them: CompiledFilter::plan, and reports the cheaper in ids listed,
// FilterPlan::build). Measured with plan() alone (CPU time, a loaded 2-core
// machine) on bench/filters.py's conjunctions (200k rows) and on a store of 1M
// rows (a category of half of them, a price window, in stock):
//   kListedRowNs   listing: a row of the driver (listed, narrowed by the other
//                  clauses, a match's id looked up and set): 2.7-5.6 ns at
//                  200k for a filter shared by all queries, 6-11 for one per
//                  query (colder lists), 7-10 at 1M. Taken low in that range:
//                  a filter repeated while its rows are in cache (0.1% L3: a
//                  leaf category of 2,919 rows listed in ~8 us, as bitmaps ~11)
//                  keeps its listing, one per query (1% near: a level-2
//                  category of ~5,000 rows, ~29 us listed, ~17 as bitmaps)
//                  takes the bitmaps
//   kAndWordNs     ANDing a word of a dense posting list's bitmap (or zeroing
//                  and ANDing the union of sparse ones): ~0.5
//   kBucketWordNs  a range: scanning 64 rows' buckets into a word: ~1.2 at
//                  200k (the column's bytes in cache), ~3 at 1M (from memory)
//   kRowBitNs      setting or clearing one listed row's bit (a sparse posting
//                  list's rows, a range's end buckets): ~1, in order
//   kCheckRowNs    checking a row left in the bitmap against a clause without
//                  one (a must_not of a has_id: 9.3)
//   kWordNs        a word's upkeep: filled, counted, handed to the set: ~0.7
//   kRowIdNs       a match's id, where the rows are not the ids
// So a broad conjunction at 200k costs ~9-11 us as bitmaps where listing its
// driver cost 30-220 us, and a driver of a few thousand rows is still listed.
constexpr double kListedRowNs = 4.5;
constexpr double kAndWordNs = 0.5;
constexpr double kBucketWordNs = 2.5;
constexpr double kRowBitNs = 1.0;
constexpr double kCheckRowNs = 10.0;
constexpr double kWordNs = 0.7;
constexpr double kRowIdNs = 3.0;

size_t words_for(size_t rows) { return (rows + 63) / 64; }

size_t add_bounded(size_t a, size_t b) { return (a == kUnknown || b == kUnknown) ? kUnknown : a + b; }

// --- boolean combinations ------------------------------------------------------------

class Combination : public Node {
 public:
  Combination(uint32_t number, const AttributeStore& store, std::vector<std::unique_ptr<Node>> children)
      : Node(number), store_(store), children_(std::move(children)) {}

 protected:
  // The ids an estimate is a fraction of: those with attributes (at least 1).
  double universe() const { return double(std::max<size_t>(store_.live_rows(), 1)); }
  size_t estimate_sum() const {
    double sum = 0;
    for (const auto& c : children_) sum += double(c->estimate());
    return size_t(std::min(sum, universe()));
  }

  const AttributeStore& store_;
  std::vector<std::unique_ptr<Node>> children_;
};

// Keeps the candidates of out[first..] that keep(candidate) allows, in order,
// calling prefetch(row) for the one kAhead places on: the rows of a long list
// lie far apart, and a read started early overlaps the checks before it. The
// outcome decides no branch (it is close to random: half mispredicted with
// one): each candidate is copied, and the write position moves on by the
// outcome. Checks `stop` (when not null) every kChecksPerStop candidates.
template <class Prefetch, class Keep>
void keep_if(std::vector<Listed>& out, size_t first, const hnsw::StopToken* stop, Prefetch&& prefetch, Keep&& keep) {
  constexpr size_t kAhead = 16;
  const size_t n = out.size();
  size_t kept = first;
  for (size_t at = first; at < n;) {
    if (stop && at > first) stop->check();
    for (const size_t end = std::min(n, at + CompiledFilter::kChecksPerStop); at < end; ++at) {
      if (at + kAhead < n) prefetch(out[at + kAhead].row);
      const Listed l = out[at];
      out[kept] = l;
      kept += size_t(keep(l));
    }
  }
  out.resize(kept);
}

void no_prefetch(uint32_t) {}

// A posting list of a code: its rows, and their bitmap when dense (columns.h).
struct Posting {
  const std::vector<uint64_t>* bits;
  const std::vector<uint32_t>* rows;
};

// ANDs into words[0 .. n) (rows from 64 first on) the union of the lists.
void and_postings(const std::vector<Posting>& lists, uint64_t* words, size_t first, size_t n) {
  auto word_of = [](const std::vector<uint64_t>& bits, size_t w) { return w < bits.size() ? bits[w] : 0; };
  if (lists.size() == 1 && lists[0].bits) {
    for (size_t w = 0; w < n; ++w) words[w] &= word_of(*lists[0].bits, first + w);
    return;
  }
  thread_local std::vector<uint64_t> any;
  any.assign(n, 0);
  const uint64_t begin = 64 * uint64_t(first), end = begin + 64 * uint64_t(n);
  for (const Posting& p : lists) {
    if (p.bits) {
      for (size_t w = 0; w < n; ++w) any[w] |= word_of(*p.bits, first + w);
      continue;
    }
    for (auto it = std::lower_bound(p.rows->begin(), p.rows->end(), begin); it != p.rows->end() && *it < end; ++it) {
      const uint64_t at = *it - begin;
      any[at / 64] |= uint64_t(1) << (at % 64);
    }
  }
  for (size_t w = 0; w < n; ++w) words[w] &= any[w];
}

// What and_postings costs over `rows` rows.
double postings_cost(const std::vector<Posting>& lists, size_t rows) {
  const double words = double(words_for(rows));
  if (lists.size() == 1 && lists[0].bits) return words * kAndWordNs;
  double cost = 2 * words * kAndWordNs;  // the union zeroed, then ANDed
  for (const Posting& p : lists) cost += p.bits ? words * kAndWordNs : double(p.rows->size()) * kRowBitNs;
  return cost;
}

bool has_row(const std::vector<uint64_t>& bits, uint32_t row) {
  return row / 64 < bits.size() && (bits[row / 64] >> (row % 64)) & 1;
}

// Drops from out[first..] each candidate whose row is not in `bits`, the rows
// `child` matches (one without a row is checked by id instead).
void keep_in_bits(const Node& child, const std::vector<uint64_t>& bits, std::vector<Listed>& out, size_t first,
                  const hnsw::StopToken* stop) {
  const uint64_t* words = bits.data();
  const size_t rows = bits.size() * 64;
  keep_if(out, first, stop, no_prefetch, [&](const Listed& l) {
    if (l.row < rows) return bool((words[l.row >> 6] >> (l.row & 63)) & 1);
    return l.row == kNoRow && child.matches(l.row, l.id);
  });
}

class AllOf final : public Combination {
 public:
  // Checks the narrowest child first: a walk tests mostly rejected nodes, and
  // most of them then fail at the first check.
  AllOf(uint32_t number, const AttributeStore& store, std::vector<std::unique_ptr<Node>> children)
      : Combination(number, store, std::move(children)) {
    std::vector<std::pair<size_t, std::unique_ptr<Node>>> by_size;  // each child estimated once
    for (auto& c : children_) by_size.emplace_back(c->estimate(), std::move(c));
    std::stable_sort(by_size.begin(), by_size.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 0; i < by_size.size(); ++i) children_[i] = std::move(by_size[i].second);
  }
  bool matches(uint32_t row, int64_t id) const override {
    for (const auto& c : children_)
      if (!c->matches(row, id)) return false;
    return true;
  }
  // As if the children were independent: attributes that go together (a category
  // and its price band) make this an underestimate, which at worst picks an
  // exact scan of the narrowest child's list (still exact, a little slower).
  size_t estimate() const override {
    const double n = universe();
    double fraction = 1.0;
    for (const auto& c : children_) fraction *= std::min(1.0, double(c->estimate()) / n);
    return size_t(std::ceil(fraction * n));
  }
  void collect(const ListSizes& sizes, std::vector<Listed>& out, size_t stride) const override {
    narrowest(sizes)->collect(sizes, out, stride);
  }
  // The narrowest child's matches, narrowed by each other child in turn: by the
  // bitmap of its rows the store keeps (a dense posting list), if any, else by
  // a check of each candidate's row (keep(): a leaf reads its column without a
  // call per row, prefetched ahead, without a branch on the outcome). The
  // bitmaps go first: a bit test (in a bitmap of rows / 8 bytes, mostly in
  // cache) costs less than reading a row's value, which then happens only for
  // the candidates left. The rest in increasing estimate order. The driver's
  // own clause is never checked again.
  //
  // Why not narrow by a bitmap built from the other child's list when that is
  // short (a sequential read and a bit set a listed row)? Measured on
  // bench/filters.py's conjunctions (200k x 512 and 100k x 256, two seeds; a
  // 1% filter lists a price window or a category of 3-15k rows, the other
  // clause up to 8 times as long), median listing time a query with the other
  // clause listed at up to 8 / 4 / 2 / 1 ids a candidate, else rows checked:
  // 1% L2 140-148 / 102-162 / 67 / 66-104 us (200k), 54-73 / 68-78 / 54-81 /
  // 37-54 (100k); 10% L1 460-500 / 410-520 / 224-328 / 224-277 (200k),
  // 186-241 / 223 / 149-153 / 118-170 (100k); no workload was faster for
  // listing more. The driver is the narrowest list, so the others are never
  // shorter than the candidates: listing them would not pay.
  void list(const ListSizes& sizes, std::vector<Listed>& out, const hnsw::StopToken* stop) const override {
    const Node* driver = narrowest(sizes);
    const size_t first = out.size();
    driver->list(sizes, out, stop);
    for (const auto& c : children_)
      if (c.get() != driver)
        if (const std::vector<uint64_t>* bits = c->row_bits()) keep_in_bits(*c, *bits, out, first, stop);
    for (const auto& c : children_)
      if (c.get() != driver && !c->row_bits()) c->keep(out, first, stop);
  }
  void conjuncts(std::vector<const Node*>& anded, std::vector<const Node*>& checked) const override {
    for (const auto& c : children_) c->conjuncts(anded, checked);
  }

 protected:
  // The narrowest listable child's count (each child counted once).
  size_t count_listable(ListSizes& sizes) const override {
    size_t narrowest = kUnknown;
    for (const auto& c : children_) narrowest = std::min(narrowest, c->listable(sizes));
    return narrowest;
  }

 private:
  const Node* narrowest(const ListSizes& sizes) const {
    const Node* found = children_.front().get();
    for (const auto& c : children_)
      if (sizes[c->number()] < sizes[found->number()]) found = c.get();
    return found;
  }
};

class AnyOf final : public Combination {
 public:
  using Combination::Combination;
  bool matches(uint32_t row, int64_t id) const override {
    for (const auto& c : children_)
      if (c->matches(row, id)) return true;
    return false;
  }
  size_t estimate() const override { return estimate_sum(); }
  void collect(const ListSizes& sizes, std::vector<Listed>& out, size_t stride) const override {
    for (const auto& c : children_) c->collect(sizes, out, stride);
  }

 protected:
  size_t count_listable(ListSizes& sizes) const override {
    size_t total = 0;
    for (const auto& c : children_) total = add_bounded(total, c->listable(sizes));
    return total;
  }
};

class NoneOf final : public Combination {
 public:
  using Combination::Combination;
  bool matches(uint32_t row, int64_t id) const override {
    for (const auto& c : children_)
      if (c->matches(row, id)) return false;
    return true;
  }
  // Ids without any attribute match too, and the store cannot count them: a floor.
  size_t estimate() const override { return size_t(universe()) - estimate_sum(); }
};

// --- leaves --------------------------------------------------------------------------

// A leaf whose candidates are exactly its matches: listing them checks nothing.
class ExactLeaf : public Node {
 public:
  using Node::Node;
  void list(const ListSizes& sizes, std::vector<Listed>& out, const hnsw::StopToken*) const override {
    collect(sizes, out, 1);
  }
};

void collect_rows(const std::vector<uint32_t>& rows, std::vector<Listed>& out, size_t stride) {
  for (size_t i = 0; i < rows.size(); i += stride) out.push_back({rows[i], 0});
}

class KeywordMatch final : public ExactLeaf {
 public:
  KeywordMatch(uint32_t number, const AttributeStore& store, size_t column, std::vector<uint32_t> codes)
      : ExactLeaf(number), store_(store), column_(store.keyword(column)), codes_(std::move(codes)) {}
  bool matches(uint32_t row, int64_t) const override {
    if (row == AttributeStore::kNoRow) return false;
    for (uint32_t code : codes_) {
      const std::vector<uint64_t>* bits = column_.dense_rows_with(code);
      if (bits ? has_row(*bits, row) : column_.has(row, code)) return true;
    }
    return false;
  }
  size_t estimate() const override { return std::min(postings(), store_.live_rows()); }
  void collect(const ListSizes&, std::vector<Listed>& out, size_t stride) const override {
    for (uint32_t code : codes_) collect_rows(column_.rows_with(code), out, stride);
  }
  const std::vector<uint64_t>* row_bits() const override {
    return codes_.size() == 1 ? column_.dense_rows_with(codes_.front()) : nullptr;
  }
  void and_rows(uint64_t* words, size_t first_word, size_t n_words) const override {
    and_postings(postings_of(), words, first_word, n_words);
  }
  double bits_cost() const override { return postings_cost(postings_of(), store_.rows()); }

 protected:
  size_t count_listable(ListSizes&) const override { return postings(); }

 private:
  size_t postings() const {
    size_t n = 0;
    for (uint32_t code : codes_) n += column_.rows_with(code).size();
    return n;
  }
  std::vector<Posting> postings_of() const {
    std::vector<Posting> lists;
    for (uint32_t code : codes_) lists.push_back({column_.dense_rows_with(code), &column_.rows_with(code)});
    return lists;
  }

  const AttributeStore& store_;
  const KeywordColumn& column_;
  std::vector<uint32_t> codes_;  // values the dictionary knows; an unknown word matches nothing
};

template <class T>
class RangeMatch final : public ExactLeaf {
 public:
  using Column = NumericColumn<T>;
  RangeMatch(uint32_t number, const Column& column, typename Column::Range range)
      : ExactLeaf(number), column_(column), range_(range) {}
  bool matches(uint32_t row, int64_t) const override { return column_.holds(row, range_); }
  void keep(std::vector<Listed>& out, size_t first, const hnsw::StopToken* stop) const override {
    keep_if(out, first, stop, [&](uint32_t row) { column_.prefetch(row); },
            [&](const Listed& l) { return column_.holds(l.row, range_); });
  }
  size_t estimate() const override { return entries(); }
  void and_rows(uint64_t* words, size_t first_word, size_t n_words) const override {
    column_.and_rows_in(range_, words, first_word, n_words);
  }
  double bits_cost() const override {
    return double(words_for(column_.rows())) * kBucketWordNs + double(column_.edge_rows(range_)) * kRowBitNs;
  }
  void collect(const ListSizes&, std::vector<Listed>& out, size_t stride) const override {
    auto [first, last] = column_.entries_in(range_);
    for (auto* e = first; e < last; e += stride) out.push_back({e->row, 0});
  }

 protected:
  size_t count_listable(ListSizes&) const override { return entries(); }

 private:
  size_t entries() const {
    auto [first, last] = column_.entries_in(range_);
    return size_t(last - first);
  }

  const Column& column_;
  typename Column::Range range_;
};

class FlagIs final : public ExactLeaf {
 public:
  FlagIs(uint32_t number, const AttributeStore& store, size_t column, bool value)
      : ExactLeaf(number), store_(store), column_(store.flag(column)), value_(value) {}
  bool matches(uint32_t row, int64_t) const override { return column_.holds(row, value_); }
  void keep(std::vector<Listed>& out, size_t first, const hnsw::StopToken* stop) const override {
    keep_if(out, first, stop, no_prefetch, [&](const Listed& l) { return column_.holds(l.row, value_); });
  }
  size_t estimate() const override { return column_.rows_with(value_).size(); }
  void collect(const ListSizes&, std::vector<Listed>& out, size_t stride) const override {
    collect_rows(column_.rows_with(value_), out, stride);
  }
  const std::vector<uint64_t>* row_bits() const override { return column_.dense_rows_with(value_); }
  void and_rows(uint64_t* words, size_t first_word, size_t n_words) const override {
    and_postings(postings_of(), words, first_word, n_words);
  }
  double bits_cost() const override { return postings_cost(postings_of(), store_.rows()); }

 protected:
  size_t count_listable(ListSizes&) const override { return estimate(); }

 private:
  std::vector<Posting> postings_of() const { return {{column_.dense_rows_with(value_), &column_.rows_with(value_)}}; }

  const AttributeStore& store_;
  const BoolColumn& column_;
  bool value_;
};

class HasId final : public ExactLeaf {
 public:
  HasId(uint32_t number, const AttributeStore& store, std::vector<int64_t> ids)
      : ExactLeaf(number), store_(store), ids_(std::move(ids)) {
    std::sort(ids_.begin(), ids_.end());
    ids_.erase(std::unique(ids_.begin(), ids_.end()), ids_.end());
  }
  bool matches(uint32_t row, int64_t id) const override {
    const int64_t key = row == AttributeStore::kNoRow ? id : store_.id_of(row);  // a listed row carries no id
    return std::binary_search(ids_.begin(), ids_.end(), key);
  }
  size_t estimate() const override { return ids_.size(); }
  void collect(const ListSizes&, std::vector<Listed>& out, size_t stride) const override {
    for (size_t i = 0; i < ids_.size(); i += stride) out.push_back({store_.row_of(ids_[i]), ids_[i]});
  }

 protected:
  size_t count_listable(ListSizes&) const override { return ids_.size(); }

 private:
  const AttributeStore& store_;
  std::vector<int64_t> ids_;  // sorted, distinct
};

// --- compiling -----------------------------------------------------------------------

const char* clause_name(Kind kind) {
  switch (kind) {
    case Kind::Must: return "must";
    case Kind::Should: return "should";
    case Kind::MustNot: return "must_not";
    case Kind::Match: return "match";
    case Kind::Range: return "range";
    case Kind::Is: return "is";
    case Kind::HasId: return "has_id";
  }
  return "?";
}

// The column of a leaf's attribute, checked to be one of the types the clause takes.
size_t column_for(const AttributeStore& store, const FilterSpec& spec, std::initializer_list<AttributeType> types,
                  const char* expected) {
  const char* clause = clause_name(spec.kind);
  size_t column;
  try {
    column = store.column_of(spec.attribute);
  } catch (const UnknownAttributeError&) {
    std::string known;
    for (const AttributeSpec& a : store.schema()) known += (known.empty() ? "" : ", ") + a.name;
    throw UnknownAttributeError(std::string(clause) + " clause: unknown attribute '" + spec.attribute +
                                "' (the schema has: " + (known.empty() ? "nothing" : known) + ")");
  }
  const AttributeType type = store.schema()[column].type;
  if (std::find(types.begin(), types.end(), type) == types.end())
    throw AttributeTypeError(std::string(clause) + " clause on '" + spec.attribute + "': it is a " + type_name(type) +
                             " attribute; " + clause + " needs " + expected);
  return column;
}

template <class T>
T bound_value(const FilterSpec& spec, const FilterSpec::Number& n) {
  if constexpr (std::is_same_v<T, int64_t>) {
    if (const double* d = std::get_if<double>(&n))
      throw AttributeTypeError("range clause on '" + spec.attribute +
                               "': a timestamp's bounds must be integers, got " + std::to_string(*d));
    return std::get<int64_t>(n);
  } else {
    const double v = std::visit([](auto x) { return double(x); }, n);
    if (std::isnan(v)) throw std::invalid_argument("range clause on '" + spec.attribute + "': a bound is NaN");
    return v;
  }
}

template <class T>
typename NumericColumn<T>::Range range_of(const FilterSpec& spec) {
  typename NumericColumn<T>::Range r;
  if (spec.gt || spec.gte) {
    r.has_lo = true;
    r.lo_inclusive = bool(spec.gte);
    r.lo = bound_value<T>(spec, spec.gt ? *spec.gt : *spec.gte);
  }
  if (spec.lt || spec.lte) {
    r.has_hi = true;
    r.hi_inclusive = bool(spec.lte);
    r.hi = bound_value<T>(spec, spec.lt ? *spec.lt : *spec.lte);
  }
  return r;
}

// What compiling counts: clauses numbered so far (preorder), and the checks one
// evaluation of the whole filter may make (a clause each, a match one per value).
struct Tally {
  uint32_t clauses = 0;
  size_t checks = 0;
};

std::unique_ptr<Node> compile(const AttributeStore& store, const FilterSpec& spec, Tally& tally) {
  const uint32_t number = tally.clauses++;
  tally.checks += spec.kind == Kind::Match ? std::max<size_t>(spec.values.size(), 1) : 1;
  switch (spec.kind) {
    case Kind::Must:
    case Kind::Should:
    case Kind::MustNot: {
      if (spec.children.empty())
        throw std::invalid_argument(std::string(clause_name(spec.kind)) + " clause needs at least one clause");
      std::vector<std::unique_ptr<Node>> children;
      for (const FilterSpec& c : spec.children) children.push_back(compile(store, c, tally));
      if (spec.kind == Kind::Must) return std::make_unique<AllOf>(number, store, std::move(children));
      if (spec.kind == Kind::Should) return std::make_unique<AnyOf>(number, store, std::move(children));
      return std::make_unique<NoneOf>(number, store, std::move(children));
    }
    case Kind::Match: {
      const size_t column = column_for(store, spec, {AttributeType::Keyword}, "a keyword attribute");
      if (spec.values.empty())
        throw std::invalid_argument("match clause on '" + spec.attribute + "' needs at least one value");
      std::vector<uint32_t> codes;
      for (const std::string& v : spec.values)
        if (uint32_t code = store.keyword(column).code(v); code != kNoCode) codes.push_back(code);
      std::sort(codes.begin(), codes.end());
      codes.erase(std::unique(codes.begin(), codes.end()), codes.end());
      return std::make_unique<KeywordMatch>(number, store, column, std::move(codes));
    }
    case Kind::Range: {
      const size_t column = column_for(store, spec, {AttributeType::Numeric, AttributeType::Timestamp},
                                       "a numeric or timestamp attribute");
      if (!(spec.gt || spec.gte || spec.lt || spec.lte))
        throw std::invalid_argument("range clause on '" + spec.attribute + "' needs at least one bound");
      if ((spec.gt && spec.gte) || (spec.lt && spec.lte))
        throw std::invalid_argument("range clause on '" + spec.attribute +
                                    "': give gt or gte, and lt or lte, not both of a pair");
      if (store.schema()[column].type == AttributeType::Numeric)
        return std::make_unique<RangeMatch<double>>(number, store.numeric(column), range_of<double>(spec));
      return std::make_unique<RangeMatch<int64_t>>(number, store.timestamp(column),
                                                   range_of<int64_t>(spec));
    }
    case Kind::Is:
      return std::make_unique<FlagIs>(number, store,
                                      column_for(store, spec, {AttributeType::Bool}, "a bool attribute"), spec.flag);
    case Kind::HasId:
      return std::make_unique<HasId>(number, store, spec.ids);
  }
  throw std::invalid_argument("unknown clause kind");
}

}  // namespace

void Node::collect(const ListSizes&, std::vector<Listed>&, size_t) const {}

void Node::list(const ListSizes& sizes, std::vector<Listed>& out, const hnsw::StopToken* stop) const {
  const size_t first = out.size();
  collect(sizes, out, 1);
  keep(out, first, stop);
}

void Node::keep(std::vector<Listed>& out, size_t first, const hnsw::StopToken* stop) const {
  keep_if(out, first, stop, no_prefetch, [&](const Listed& l) { return matches(l.row, l.id); });
}

double Node::bits_cost() const { return kNoBits; }

void Node::conjuncts(std::vector<const Node*>& anded, std::vector<const Node*>& checked) const {
  (bits_cost() < kNoBits ? anded : checked).push_back(this);
}

CompiledFilter::CompiledFilter(std::shared_ptr<const AttributeStore> store, const FilterSpec& spec)
    : store_(std::move(store)) {
  // Dictionary lookups read the store: hold it still while compiling.
  auto lock = store_->read_lock();
  Tally tally;
  root_ = compile(*store_, spec, tally);
  clauses_ = tally.clauses;
  cost_ = tally.checks;
  collect_required(spec);
}

void CompiledFilter::collect_required(const FilterSpec& spec) {
  if (spec.kind == FilterSpec::Kind::Match && spec.values.size() == 1)
    required_.push_back(spec.attribute + "=" + spec.values.front());
  if (spec.kind == FilterSpec::Kind::Must)
    for (const FilterSpec& child : spec.children) collect_required(child);
}

void CompiledFilter::ids_of(const std::vector<Listed>& listed, std::vector<int64_t>& out) const {
  // The rows lie anywhere in the id column: each read is started kAhead rows early.
  constexpr size_t kAhead = 16;
  out.reserve(out.size() + listed.size());
  for (size_t i = 0; i < listed.size(); ++i) {
    if (i + kAhead < listed.size()) store_->prefetch_id(listed[i + kAhead].row);
    out.push_back(id_of(listed[i]));
  }
}

bool CompiledFilter::candidates(size_t limit, std::vector<int64_t>& out) const {
  thread_local ListSizes sizes;
  sizes.assign(clauses_, kUnknown);
  const size_t n = root_->listable(sizes);
  if (n == kUnknown || n > limit) return false;
  thread_local std::vector<Listed> listed;
  listed.clear();
  root_->list(sizes, listed, nullptr);
  ids_of(listed, out);
  return true;
}

hnsw::FilterPlan CompiledFilter::plan(size_t build_limit, hnsw::MatchSet& set, const hnsw::StopToken* stop) const {
  thread_local ListSizes sizes;
  sizes.assign(clauses_, kUnknown);
  hnsw::FilterPlan out;
  out.driver = root_->listable(sizes);
  if (out.driver == kUnknown) {  // nothing to list from (a must_not at the root): independence only
    out.estimate = root_->estimate();
    return out;
  }
  // The two ways to build the set, by their costs: listing the driver, or the
  // conjunction's bitmaps, where at least one clause has one (then no row
  // without attributes can match: the bitmap never holds a free row).
  thread_local std::vector<const Node*> anded, checked;
  anded.clear();
  checked.clear();
  root_->conjuncts(anded, checked);
  // Either way the clauses without a bitmap form are checked by row: on every
  // candidate the driver lists, or on the rows the bitmaps leave.
  // (Without bitmaps the driver itself is among them, and listed unchecked.)
  const double listing = double(out.driver) * (kListedRowNs + double(anded.empty() ? 0 : checked.size()) * kCheckRowNs);
  double bits = kNoBits;
  if (!anded.empty()) {
    const double rows = double(std::max<size_t>(store_->live_rows(), 1));
    double kept = rows;  // rows left for the checked clauses: as if independent
    bits = double(words_for(store_->rows())) * kWordNs;
    for (const Node* n : anded) {
      bits += n->bits_cost();
      kept *= std::min(1.0, double(n->estimate()) / rows);
    }
    bits += kept * double(checked.size()) * kCheckRowNs;
    if (!store_->rows_are_ids()) bits += kept * kRowIdNs;
  }
  out.build = size_t(std::ceil(std::min(listing, bits) / kListedRowNs));

  thread_local std::vector<Listed> listed;
  listed.clear();
  thread_local std::vector<int64_t> ids;
  ids.clear();
  if (stop) stop->check();
  if (out.build <= build_limit) {  // cheap enough to build: the set, and its true count
    out.as_bitmaps = bits < listing;
    if (out.as_bitmaps) {
      build_bits(anded, checked, set, stop);
    } else {
      root_->list(sizes, listed, stop);
      ids_of(listed, ids);
      set.assign(ids);
    }
    out.estimate = set.size();
    out.built = true;
    return out;
  }
  // Else an even sample of the driver's list: the share of it that matches the
  // whole filter measures how the clauses go together (a category and its
  // price band), which independence would miss.
  const size_t stride = std::max<size_t>(1, out.driver / kPlanSample);
  root_->collect(sizes, listed, stride);
  for (const Listed& l : listed)
    if (root_->matches(l.row, l.id)) ids.push_back(id_of(l));
  out.estimate = size_t(std::ceil(double(ids.size()) * double(out.driver) / double(std::max<size_t>(listed.size(), 1))));
  return out;
}

void CompiledFilter::build_bits(const std::vector<const Node*>& anded, const std::vector<const Node*>& checked,
                                hnsw::MatchSet& set, const hnsw::StopToken* stop) const {
  const size_t n_words = words_for(store_->rows());
  thread_local std::vector<uint64_t> words;
  words.assign(n_words, ~uint64_t(0));
  const auto& kernels = bitmap_kernels();
  size_t count = 0;
  for (size_t first = 0; first < n_words; first += kBlockWords) {
    if (stop && first > 0) stop->check();
    const size_t n = std::min(kBlockWords, n_words - first);
    uint64_t* block = words.data() + first;
    for (const Node* a : anded) a->and_rows(block, first, n);
    if (!checked.empty())
      for (size_t w = 0; w < n; ++w)
        for (uint64_t word = block[w]; word; word &= word - 1) {
          const uint32_t row = uint32_t(64 * (first + w) + size_t(__builtin_ctzll(word)));
          for (const Node* c : checked)
            if (!c->matches(row, 0)) {
              block[w] &= ~(uint64_t(1) << (row % 64));
              break;
            }
        }
    count += kernels.count_bits(block, n);
  }
  if (store_->rows_are_ids()) {
    set.assign_bits(words, count);
    return;
  }
  thread_local std::vector<int64_t> ids;
  ids.clear();
  for (size_t w = 0; w < n_words; ++w)
    for (uint64_t word = words[w]; word; word &= word - 1)
      ids.push_back(store_->id_of(uint32_t(64 * w + size_t(__builtin_ctzll(word)))));
  set.assign(ids);
}

}  // namespace lookalike::filter
