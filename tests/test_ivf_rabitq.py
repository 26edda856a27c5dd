"""IvfPqIndex with RaBitQ codes: exact results when every candidate is
re-ranked, recall under the bound, filters, stop tokens, writes, persistence,
damaged files, memory."""

import os

import numpy as np
import pytest

from conftest import clustered, exact_knn, recall
from lookalike.index import (
    DeadlineExceeded,
    IdFilter,
    IndexFileError,
    IvfPqIndex,
    StopToken,
    UnknownIdError,
)
from lookalike import _core

DIM = 100  # padded to 128 inside: the rotation's zero-padding is exercised


@pytest.fixture(scope="module")
def data():
    x = clustered(5200, DIM, seed=21)
    return x[:5000], x[5000:]


def build(base, metric="cosine", nlist=32, **kw):
    index = IvfPqIndex(DIM, metric, nlist=nlist, nprobe=8, code="rabitq", rerank_k=10_000, **kw)
    index.train(base)
    index.add(np.arange(len(base)), base)
    return index


@pytest.fixture(scope="module")
def index(data):
    return build(data[0])


def exact_distances(base, ids, q, metric):
    return {"cosine": 1 - base[ids] @ q, "ip": -(base[ids] @ q), "l2": ((base[ids] - q) ** 2).sum(1)}[metric]


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_every_candidate_reranked_is_exact_search(data, metric):
    base, queries = data
    if metric != "cosine":
        base, queries = base * np.linspace(0.5, 2, len(base), dtype=np.float32)[:, None], queries * 3
    index = build(base, metric)
    found = index.search(queries, 10, nprobe=32, bound_sigmas=float("inf"))
    np.testing.assert_array_equal(found.ids, exact_knn(base, queries, 10, metric))
    for q, ids, d in zip(queries, found.ids, found.distances):
        np.testing.assert_allclose(d, exact_distances(base, ids, q, metric), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_the_bound_keeps_recall_and_reads_the_vectors_file(data, metric):
    base, queries = data
    if metric == "l2":
        base, queries = base * 3.0, queries * 3.0
    index = build(base, metric)
    truth = exact_knn(base, queries, 10, metric)
    probed = index.search(queries, 10, bound_sigmas=float("inf"))  # exact within the probed cells
    found = index.search(queries, 10)
    assert recall(found.ids, truth) >= recall(probed.ids, truth) - 0.02
    assert recall(found.ids, truth) > recall(index.search(queries, 10, rerank=False).ids, truth)
    narrow = index.search(queries, 10, bound_sigmas=0.25)
    assert recall(narrow.ids, truth) <= recall(found.ids, truth)
    q, ids, d = queries[0], found.ids[0], found.distances[0]
    np.testing.assert_allclose(d, exact_distances(base, ids, q, metric), rtol=1e-4, atol=1e-4)
    assert (np.diff(d) >= 0).all()


def test_a_read_cap_limits_the_rerank(index, data):
    base, queries = data
    truth = exact_knn(base, queries, 10)
    capped = index.search(queries, 10, rerank_k=10)
    assert recall(capped.ids, truth) < recall(index.search(queries, 10).ids, truth)


def test_every_simd_level_finds_the_same(index, data):
    results = {}
    for level in _core.simd_levels():
        with _core.simd_level(level):
            results[level] = index.search(data[1], 10, rerank=False)
    for level, r in results.items():
        np.testing.assert_array_equal(r.ids, results["scalar"].ids, err_msg=level)
        np.testing.assert_array_equal(r.distances, results["scalar"].distances, err_msg=level)


def test_filter_and_stop_token(index, data):
    allowed = np.arange(0, 5000, 3)
    res = index.search(data[1], 10, filter=IdFilter(allowed))
    assert np.isin(res.ids, allowed).all() and (res.ids >= 0).all()
    res = index.search(data[1], 10, filter=IdFilter(allowed, exclude=True))
    assert not np.isin(res.ids, allowed).any()
    with pytest.raises(DeadlineExceeded):
        index.search(data[1][0], 10, stop=StopToken(0.0))


def test_delete_upsert_compact(data):
    base, queries = data
    index = build(base[:3000])
    top = np.unique(index.search(queries[:20], 1).ids[:, 0])
    index.delete(top)
    assert not np.isin(index.search(queries[:20], 10).ids, top).any()
    with pytest.raises(UnknownIdError):
        index.delete([top[0], 1])
    index.upsert([1], queries[0])
    assert index.search(queries[0], 1).ids[0] == 1
    before = index.memory_usage()
    index.compact()
    after = index.memory_usage()
    assert index.deleted_count == 0 and after["factor_bytes"] < before["factor_bytes"]
    assert index.search(queries[0], 1).ids[0] == 1
    assert not np.isin(index.search(queries[:20], 10).ids, top).any()
    np.testing.assert_allclose(index.get([1])[0], queries[0] / np.linalg.norm(queries[0]), rtol=1e-6)
    # Upserting every id again replaces them: the id map does not grow for them.
    index.upsert(np.arange(3000), base[:3000])
    assert index.memory_usage()["id_map_bytes"] == after["id_map_bytes"]


def test_round_trip_and_damaged_files(tmp_path, data):
    base, queries = data
    index = build(base[:3000], "l2", bound_sigmas=1.5)
    index.delete([5, 6])
    path = str(tmp_path / "rq.lkl")
    index.save(path)
    loaded = IvfPqIndex.load(path)
    assert (loaded.code, loaded.bound_sigmas, len(loaded), loaded.m) == ("rabitq", 1.5, 2998, 32)
    assert loaded.memory_usage()["id_bytes"] == 4 * 3000  # loaded exactly, not grown by 1/8
    for a, b in zip(index.search(queries, 10), loaded.search(queries, 10)):
        np.testing.assert_array_equal(a, b)
    loaded.verify()
    raw = open(path, "rb").read()
    for name, blob in (("truncated", raw[: len(raw) // 2]), ("flipped", raw[:-100] + bytes([raw[-100] ^ 1]) + raw[-99:])):
        bad = str(tmp_path / f"{name}.lkl")
        open(bad, "wb").write(blob)
        os.link(path + ".vectors", bad + ".vectors")
        with pytest.raises(IndexFileError):
            IvfPqIndex.load(bad)


def test_memory_is_the_bits_and_three_bytes_of_factors(index):
    u = index.memory_usage()
    assert u["factor_bytes"] == 3 * u["live"]  # a float16 norm, an 8-bit cosine
    parts = [name for name in u if name.endswith("_bytes") and name not in ("total_bytes", "vector_file_bytes", "ex_code_file_bytes")]
    assert u["total_bytes"] == sum(u[name] for name in parts) and "list_header_bytes" in parts
    # 128 padded dimensions: 16 bytes of bits a vector, plus each list's partial block of 32.
    assert 16 * u["live"] <= u["code_bytes"] <= 16 * (u["live"] + 32 * index.nlist)
    # A bulk load: each cell's entries are consecutive slots, stored as runs (8
    # bytes a block of 32); ids below 2^32 take 4 bytes; the id map is
    # rebuilt 0.85 full (4.7 bytes an id, and a 64-bucket floor).
    assert u["list_slot_bytes"] <= 8 * (u["live"] // 32 + index.nlist)
    assert u["id_bytes"] == 4 * u["slots"]
    assert u["id_map_bytes"] <= 4 * (u["live"] / 0.85 + 2)


def test_rows_read_counts_the_rerank(index, data):
    queries = data[1][:20]
    before = index.rows_read
    index.search(queries, 10, rerank=False)
    assert index.rows_read == before
    # An infinite bound re-ranks every code of the probed cells (all of them here).
    index.search(queries, 10, nprobe=index.nlist, bound_sigmas=float("inf"))
    assert index.rows_read - before == len(queries) * len(index)
    before = index.rows_read
    index.search(queries, 10)
    assert len(queries) * 10 <= index.rows_read - before < len(queries) * len(index) // 4


def test_slots_and_ids_in_every_form_stay_exact(tmp_path):
    # Slots of a bulk load (runs), single adds close to them (16-bit offsets),
    # a big batch that fills the last blocks far away (4-byte slots), ids that
    # need 8 bytes: every search that reads all candidates is still exact,
    # before and after a reload and a compaction.
    dim = 16
    x = clustered(76_000, dim, seed=9)
    index = IvfPqIndex(dim, "cosine", nlist=8, nprobe=8, code="rabitq", rerank_k=100_000)
    index.train(x[:3000])
    ids = np.arange(len(x), dtype=np.int64)
    index.add(ids[:3000], x[:3000])
    for i in range(3000, 3040):
        index.add(ids[i:i + 1], x[i:i + 1])
    assert 4 * 3040 <= index.memory_usage()["id_bytes"] <= 4 * 3040 * 1.2  # grown by 1/8, not doubled
    index.add(ids[3040:73040], x[3040:73040])
    ids[73040:] += 2**40
    for i in range(73040, 73100):
        index.add(ids[i:i + 1], x[i:i + 1])
    index.add(ids[73100:75000], x[73100:75000])
    assert 8 * 75_000 <= index.memory_usage()["id_bytes"] <= 8 * 75_000 * 1.2
    index.delete(ids[::7][:2000])
    live = np.setdiff1d(np.arange(75_000), np.arange(75_000)[::7][:2000])
    queries = x[75_000:75_020]
    truth = ids[live[exact_knn(x[live], queries, 10)]]

    def exact(ix):
        return ix.search(queries, 10, nprobe=8, bound_sigmas=float("inf")).ids

    np.testing.assert_array_equal(exact(index), truth)
    np.testing.assert_allclose(index.get(ids[[5, 3020, 60_000, 73050]]), x[[5, 3020, 60_000, 73050]], rtol=1e-5)
    index.save(tmp_path / "forms.lkl")
    loaded = IvfPqIndex.load(tmp_path / "forms.lkl")
    np.testing.assert_array_equal(exact(loaded), truth)
    assert ids[73050] in loaded and ids[0] not in loaded
    loaded.compact()
    np.testing.assert_array_equal(exact(loaded), truth)


def test_bad_parameters(data):
    with pytest.raises(ValueError, match="code"):
        IvfPqIndex(DIM, code="opq")
    with pytest.raises(ValueError, match="bound_sigmas"):
        IvfPqIndex(DIM, code="rabitq", bound_sigmas=-1)
    with pytest.raises(ValueError, match="dim <= 1024"):
        IvfPqIndex(1500, code="rabitq")
    index = IvfPqIndex(DIM, code="rabitq", nlist=8)
    index.train(data[0][:100])
    with pytest.raises(ValueError, match="bound_sigmas"):
        index.search(data[1], 10, bound_sigmas=0)


def test_a_collection_space_with_rabitq_codes(tmp_path):
    from lookalike.index.collection import Collection, SpaceConfig

    data = clustered(700, 48, seed=5)
    space = SpaceConfig("visual", 48, index="ivf_pq", code="rabitq", nlist=8, nprobe=8, rerank_k=700,
                        train_size=400)
    c = Collection([space])
    c.upsert(np.arange(700), {"visual": data})
    assert c.index("visual").trained and "rabitq" in c.describe_index("visual")
    queries = clustered(720, 48, seed=5)[700:]
    truth = exact_knn(data, queries, 10)
    assert recall(np.array([c.search("visual", q, k=10).ids for q in queries]), truth) >= 0.9
    exact = np.array([c.search("visual", q, k=10, exact=True).ids for q in queries])
    np.testing.assert_array_equal(exact, truth)
    c.save(tmp_path / "col")
    again = Collection.load(tmp_path / "col")
    np.testing.assert_array_equal(again.search("visual", queries[0], k=10).ids, c.search("visual", queries[0], k=10).ids)
    with pytest.raises(ValueError, match="code"):
        SpaceConfig("visual", 48, index="ivf_pq", code="lvq")


def test_a_native_filter_and_cancellation(index, data):
    from lookalike.index import AttributeStore, Range, SearchCancelled

    store = AttributeStore({"price": "numeric"})
    store.set(np.arange(5000), {"price": np.arange(5000.0)})
    cheap = store.compile(Range("price", lt=1000))
    res = index.search(data[1], 10, filter=cheap)
    assert ((res.ids >= 0) & (res.ids < 1000)).all()
    token = StopToken()
    token.cancel()
    with pytest.raises(SearchCancelled):
        index.search(data[1][0], 10, nprobe=32, bound_sigmas=float("inf"), stop=token)


def test_writes_interleave_with_running_searches(data):
    import threading

    base, queries = data
    index = build(base[:2000])
    done, errors = threading.Event(), []

    def search_until_done():
        try:
            while not done.is_set():
                found = index.search(queries[:4], 10, nprobe=32, bound_sigmas=float("inf"), threads=1)
                assert (found.ids >= 0).all() and np.isfinite(found.distances).all()
        except Exception as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)

    searcher = threading.Thread(target=search_until_done)
    searcher.start()
    for start in range(2000, 5000, 500):
        index.add(np.arange(start, start + 500), base[start:start + 500])
        index.delete(np.arange(start - 2000, start - 1950))
        index.compact()
    done.set()
    searcher.join(timeout=60)
    assert not searcher.is_alive() and not errors
    assert len(index) == 5000 - 6 * 50
    live = np.setdiff1d(np.arange(5000), np.concatenate([np.arange(s, s + 50) for s in range(0, 3000, 500)]))
    truth = live[exact_knn(base[live], queries, 10)]
    np.testing.assert_array_equal(index.search(queries, 10, nprobe=32, bound_sigmas=float("inf")).ids, truth)
