// Filters over an AttributeStore: a FilterSpec tree (what the caller asked,
// with names and strings) compiled once per query into a CompiledFilter (names
// resolved to columns, keywords to dictionary codes, types checked), which a
// search evaluates natively through the hnsw::Filter interface.
//
// Clauses:
//   must      every child matches          should    at least one child matches
//   must_not  no child matches             match     a keyword attribute holds one of the values
//   range     a numeric / timestamp attribute lies within gt / gte / lt / lte bounds
//   is        a bool attribute has the given value
//   has_id    the id is one of the listed ids
// An id without a value for an attribute matches no match / range / is clause on
// it (and so does match a must_not of one).
//
// For the planner the compiled filter also estimates how many ids match
// (exact for one leaf, independence across must, a sum across should; plan()
// measures it instead on a sample of the narrowest clause's list) and lists
// the matching ids: it gathers candidates (a leaf's postings or sorted range; the
// narrowest listable child of a must; every child of a should; never a
// must_not, which would list nearly everything) and keeps those the whole
// filter matches (list()): a leaf's candidates are its matches; a must keeps
// its driver's matches that every other child matches, by the bitmap of that
// child's rows the store keeps (a dense posting list), else checked by row
// (keep()). Rows are listed, not ids: only the matches left at the end are
// looked up.
//
// A conjunction can also be evaluated as row bitmaps, a block of 64k rows at a
// time (CompiledFilter::plan picks whichever way costs less, by the costs
// below): each clause that has a bitmap form ANDs its rows into the block (a
// dense posting list its bitmap, a sparse one its rows set in a zeroed block,
// a range a SIMD scan of its column's value buckets: columns.h), the rest are
// checked on the rows left. Listing costs time per row of the driver, this
// per word of 64 rows of the store, whatever the clauses hold: it wins when
// the narrowest clause is broad (a category of a quarter of the catalog AND a
// price window AND in stock). Where the store's rows are its ids
// (AttributeStore::rows_are_ids) the block is already the id bitmap the match
// set keeps, and the set takes it whole.
//
// Planning costs time linear in the filter's size, however deep it nests: the
// sizes of the clauses' lists are counted once per plan, bottom up, into a
// table indexed by clause number (ListSizes), which collect() then reads to
// follow the narrowest child of each must.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "filter/attribute_store.h"
#include "hnsw/filters.h"

namespace lookalike::filter {

struct FilterSpec {
  enum class Kind { Must, Should, MustNot, Match, Range, Is, HasId };
  using Number = std::variant<int64_t, double>;  // a range bound as the caller wrote it

  Kind kind = Kind::Must;
  std::vector<FilterSpec> children;            // must / should / must_not: at least one
  std::string attribute;                       // match / range / is
  std::vector<std::string> values;             // match: any of these (at least one)
  std::optional<Number> gt, gte, lt, lte;      // range: at least one; not gt with gte, nor lt with lte
  bool flag = false;                           // is
  std::vector<int64_t> ids;                    // has_id
};

// A listed row of the store, or an id the store has no row for (row is then
// AttributeStore::kNoRow: a has_id clause's). A row's id is not read while
// listing (the store's id_of(row), a read at random per row): only the matches
// left at the end need theirs (CompiledFilter::id_of).
struct Listed {
  uint32_t row;
  int64_t id;  // only when row is kNoRow
};

// What listable() counted for each clause of one filter, by clause number.
using ListSizes = std::vector<size_t>;

// One clause of a compiled filter, numbered in its filter (0 for the root).
class Node {
 public:
  explicit Node(uint32_t number) : number_(number) {}
  virtual ~Node() = default;
  virtual bool matches(uint32_t row, int64_t id) const = 0;
  virtual size_t estimate() const = 0;
  // How many ids collect() would list (an upper bound), or hnsw::Filter::kUnknown;
  // also recorded in sizes[number()] for this clause and each clause below it.
  size_t listable(ListSizes& sizes) const { return sizes[number_] = count_listable(sizes); }
  // Appends the candidates: every id this clause matches, and maybe more.
  // `sizes` holds what listable() counted for this clause and those below it.
  // With a stride s > 1 it appends about one in s of them instead (a sample).
  virtual void collect(const ListSizes& sizes, std::vector<Listed>& out, size_t stride) const;
  // Appends exactly the ids this clause matches (repeats possible), checking
  // `stop` (when not null) as it goes. By default, each candidate collect()
  // lists, checked by row; a leaf's candidates need no check, and a must
  // narrows its driver's by the other children (predicate.cpp).
  virtual void list(const ListSizes& sizes, std::vector<Listed>& out, const hnsw::StopToken* stop) const;
  // Drops from out[first..] each candidate this clause does not match, checking
  // `stop` (when not null) as it goes: by default matches() on each candidate's
  // row; a leaf reads its column directly, without a call per candidate.
  virtual void keep(std::vector<Listed>& out, size_t first, const hnsw::StopToken* stop) const;
  // The rows this clause matches as a bitmap the store keeps (a dense posting
  // list: columns.h), or null. Valid while the store is read-locked.
  virtual const std::vector<uint64_t>* row_bits() const { return nullptr; }
  // Row bitmaps: ANDs into words[0 .. n_words) the rows this clause matches
  // among rows [64 first_word, 64 (first_word + n_words)), bit r % 64 of word
  // r / 64 - first_word; only when bits_cost() is finite.
  virtual void and_rows(uint64_t* /*words*/, size_t /*first_word*/, size_t /*n_words*/) const {}
  // What and_rows costs over all the store's rows, in ns; infinite for a
  // clause without a bitmap form.
  virtual double bits_cost() const;
  // Sorts the clauses of the conjunction this clause is (itself, or a must's
  // children, nested musts flattened) into those that AND their bitmaps and
  // those checked by row on the rows left.
  virtual void conjuncts(std::vector<const Node*>& anded, std::vector<const Node*>& checked) const;
  uint32_t number() const { return number_; }

 protected:
  virtual size_t count_listable(ListSizes&) const { return hnsw::Filter::kUnknown; }

 private:
  uint32_t number_;
};

class CompiledFilter final : public hnsw::Filter {
 public:
  // Throws UnknownAttributeError / AttributeTypeError / std::invalid_argument
  // naming the clause's attribute and what is wrong with it.
  CompiledFilter(std::shared_ptr<const AttributeStore> store, const FilterSpec& spec);

  bool allows(int64_t id) const override { return root_->matches(store_->row_of(id), id); }
  size_t estimate() const override { return root_->estimate(); }
  bool candidates(size_t limit, std::vector<int64_t>& out) const override;
  std::shared_lock<std::shared_mutex> hold() const override { return store_->read_lock(); }
  bool writer_waiting() const override { return store_->writer_waiting(); }
  size_t cost() const override { return cost_; }
  // Its single-valued keyword matches under must clauses (and at its root).
  const std::vector<std::string>& required_values() const override { return required_; }
  int64_t id_of(const Listed& l) const { return l.row == AttributeStore::kNoRow ? l.id : store_->id_of(l.row); }
  // Appends the id of each listed row, in order.
  void ids_of(const std::vector<Listed>& listed, std::vector<int64_t>& out) const;
  // The driver is the narrowest listable clause (listable()); its count is
  // measured on a sample of kPlanSample of its ids when it is too long to build.
  hnsw::FilterPlan plan(size_t build_limit, hnsw::MatchSet& set, const hnsw::StopToken* stop) const override;
  static constexpr size_t kPlanSample = 256;
  // Rows of a block of the row-bitmap evaluation: 8 KB of words, which stay in
  // cache while each clause ANDs into them; the stop token is checked per block.
  static constexpr size_t kBlockWords = 1024;
  // Candidates checked between two looks at the stop token.
  static constexpr size_t kChecksPerStop = 4096;

 private:
  // Builds the match set as row bitmaps (the header): `anded` non-empty.
  void build_bits(const std::vector<const Node*>& anded, const std::vector<const Node*>& checked, hnsw::MatchSet& set,
                  const hnsw::StopToken* stop) const;

  void collect_required(const FilterSpec& spec);

  std::shared_ptr<const AttributeStore> store_;
  std::unique_ptr<Node> root_;
  std::vector<std::string> required_;
  size_t clauses_ = 0;  // nodes in the tree, numbered 0 .. clauses_ - 1
  size_t cost_ = 0;     // checks one allows() may make: a clause each, a match one per value
};

}  // namespace lookalike::filter
