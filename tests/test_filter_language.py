"""The filter language: clause shapes, the dict form, compile-time errors, and
the native evaluation of every clause against a plain-Python reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import reference_matches
from lookalike.index import (AttributeStore, AttributeTypeError, Filter, HasId, Is, Match, Must, MustNot, Range,
                             Should, UnknownAttributeError)

SCHEMA = {"category": "keyword", "colour": "keyword", "price": "numeric", "in_stock": "bool", "listed_at": "timestamp"}
WORDS = ["red", "blue", "green", "black"]
CATEGORIES = ["women", "women/dresses", "women/shoes", "men", "men/shirts"]


@pytest.fixture(scope="module")
def catalog():
    """200 products with every attribute type, some values missing."""
    rng = np.random.default_rng(5)
    n = 200
    ids = np.arange(n) * 3 + 1
    colours = [list(rng.choice(WORDS, rng.integers(0, 3), replace=False)) for _ in range(n)]
    store = AttributeStore(SCHEMA)
    store.set(ids, {
        "category": [None if i % 11 == 0 else [c.split("/")[0], c] for i, c in enumerate(rng.choice(CATEGORIES, n))],
        "colour": colours,
        "price": [None if i % 13 == 0 else round(float(p), 1) for i, p in enumerate(rng.lognormal(3, 1, n))],
        "in_stock": [None if i % 17 == 0 else bool(b) for i, b in enumerate(rng.random(n) < 0.8)],
        "listed_at": [int(t) for t in rng.integers(1_600_000_000, 1_700_000_000, n)],
    })
    return store, ids, {int(i): store.get(int(i)) for i in ids}


# --- shapes ----------------------------------------------------------------------


@pytest.mark.parametrize("build, error, message", [
    (lambda: Must(), ValueError, "at least one clause"),
    (lambda: Should("price"), TypeError, "filter clauses"),
    (lambda: Match("colour"), ValueError, "exactly one of value or values"),
    (lambda: Match("colour", "red", values=["blue"]), ValueError, "exactly one"),
    (lambda: Match("colour", values=[]), ValueError, "must not be empty"),
    (lambda: Match("colour", values="red"), TypeError, "list of strings"),
    (lambda: Match("colour", 3), TypeError, "strings"),
    (lambda: Match("", "red"), TypeError, "non-empty string"),
    (lambda: Range("price"), ValueError, "at least one of gt"),
    (lambda: Range("price", gt=1, gte=2), ValueError, "gt or gte"),
    (lambda: Range("price", lt="10"), TypeError, "number or a datetime"),
    (lambda: Range("price", lt=True), TypeError, "number"),
    (lambda: Range("price", lt=float("nan")), ValueError, "NaN"),
    (lambda: Is("in_stock", 1), TypeError, "True or False"),
    (lambda: HasId([]), ValueError, "at least one id"),
    (lambda: HasId([1.5]), TypeError, "integers"),
])
def test_malformed_clauses_are_refused(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_dict_form_round_trips():
    clause = Must(
        Match("category", "women/dresses"),
        Should(Match("colour", values=["red", "blue"]), MustNot(Range("price", gte=10, lt=50.5))),
        Is("in_stock", True),
        Range("listed_at", gt=1_650_000_000),
        HasId([4, 7]),
    )
    d = clause.to_dict()
    assert d["must"][1]["should"][1] == {"must_not": [{"range": {"attr": "price", "gte": 10, "lt": 50.5}}]}
    assert Filter.from_dict(d) == clause
    assert hash(Filter.from_dict(d)) == hash(clause)


def test_a_dict_may_combine_must_should_and_must_not():
    parsed = Filter.from_dict({"must": [{"is": {"attr": "in_stock", "value": True}}],
                               "must_not": [{"has_id": [3]}]})
    assert parsed == Must(Must(Is("in_stock", True)), MustNot(HasId([3])))


@pytest.mark.parametrize("data, error, message", [
    ({"must": [{"mach": {"attr": "colour", "value": "red"}}]}, ValueError, r"filter\.must\[0\]: unknown key 'mach'"),
    ({"range": {"attr": "price", "below": 3}}, ValueError, r"filter\.range: unknown field 'below'"),
    ({"range": {"lt": 3}}, ValueError, "missing field 'attr'"),
    ({"is": {"attr": "in_stock"}}, ValueError, "missing field 'value'"),
    ({"must": {"is": {}}}, TypeError, "list of clauses"),
    ({"match": {"attr": "colour", "value": "red"}, "is": {"attr": "x", "value": True}}, ValueError, "one clause"),
    ({}, TypeError, "non-empty dict"),
    ("colour = red", TypeError, "non-empty dict"),
])
def test_bad_dicts_name_the_problem_and_where(data, error, message):
    with pytest.raises(error, match=message):
        Filter.from_dict(data)


# --- compiling -------------------------------------------------------------------


@pytest.mark.parametrize("clause, error, message", [
    (Match("brand", "acme"), UnknownAttributeError, "unknown attribute 'brand'.*category, colour"),
    (Must(Is("in_stock", True), Should(Range("weight", lt=3))), UnknownAttributeError, "range clause: unknown attribute 'weight'"),
    (Match("price", "10"), AttributeTypeError, "'price': it is a numeric attribute; match needs a keyword"),
    (Range("colour", lt=3), AttributeTypeError, "'colour': it is a keyword attribute; range needs a numeric or timestamp"),
    (Is("category", True), AttributeTypeError, "'category': it is a keyword attribute; is needs a bool"),
    (MustNot(Range("listed_at", gt=1.5)), AttributeTypeError, "timestamp's bounds must be integers"),
])
def test_compile_errors_name_the_attribute_and_the_expected_type(catalog, clause, error, message):
    store, _, _ = catalog
    with pytest.raises(error, match=message):
        store.compile(clause)
    assert issubclass(UnknownAttributeError, KeyError) and issubclass(AttributeTypeError, TypeError)


def test_compile_takes_the_dict_form(catalog):
    store, ids, attrs = catalog
    f = store.compile({"match": {"attr": "colour", "value": "red"}})
    assert [i for i in ids if f.allows(i)] == [i for i in ids if "red" in attrs[i].get("colour", [])]


def test_unknown_keyword_values_match_nothing(catalog):
    store, ids, _ = catalog
    f = store.compile(Match("colour", "ultraviolet"))
    assert f.estimate() == 0 and not any(f.allows(i) for i in ids)


# --- every clause, nested, against the reference -----------------------------------


LEAVES = st.one_of(
    st.builds(lambda w: Match("colour", w), st.sampled_from(WORDS + ["purple"])),
    st.builds(lambda ws: Match("category", values=ws), st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=3)),
    st.builds(lambda lo, hi, a, b: Range("price", **{("gte" if a else "gt"): lo, ("lte" if b else "lt"): hi}),
              st.floats(0, 60), st.floats(10, 200), st.booleans(), st.booleans()),
    st.builds(lambda lo: Range("listed_at", gte=lo), st.integers(1_600_000_000, 1_700_000_000)),
    st.builds(Is, st.just("in_stock"), st.booleans()),
    st.builds(HasId, st.lists(st.integers(0, 700), min_size=1, max_size=40)),
)
CLAUSES = st.recursive(LEAVES, lambda inner: st.one_of(
    st.builds(lambda cs: Must(*cs), st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda cs: Should(*cs), st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda cs: MustNot(*cs), st.lists(inner, min_size=1, max_size=3)),
), max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(clause=CLAUSES)
def test_native_evaluation_matches_the_reference(catalog, clause):
    store, ids, attrs = catalog
    f = store.compile(clause)
    probe = list(ids) + [0, 2, 1000]  # ids without attributes too
    assert [i for i in probe if f.allows(i)] == [i for i in probe if reference_matches(clause, attrs.get(i, {}), i)]


@settings(max_examples=60, deadline=None)
@given(clause=LEAVES)
def test_leaf_estimates_count_the_matches(catalog, clause):
    """Exact for one value; a product holding several of a match's values
    (a category and its parent) is counted once per value."""
    store, ids, attrs = catalog
    expected = sum(reference_matches(clause, attrs[i], i) for i in ids)
    estimate = store.compile(clause).estimate()
    if isinstance(clause, HasId):
        assert estimate == len(set(clause.ids))
    elif isinstance(clause, Match):
        per_value = sum(reference_matches(Match(clause.attr, v), attrs[i], i) for v in set(clause.values) for i in ids)
        assert expected <= estimate <= per_value
    else:
        assert estimate == expected
