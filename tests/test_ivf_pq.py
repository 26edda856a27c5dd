"""IvfPqIndex: recall with re-rank, writes after training, filters, persistence,
damaged files and bad input."""

import os

import numpy as np
import pytest

from conftest import clustered, exact_knn, recall
from lookalike.index import (
    DuplicateIdError,
    HnswIndex,
    IdFilter,
    IndexFileError,
    IvfPqIndex,
    UnknownIdError,
    choose_index,
    estimate_memory,
)

DIM = 64


@pytest.fixture(scope="module")
def data():
    x = clustered(6200, DIM, seed=11)
    return x[:6000], x[6000:]


def build(base, nbits=4, metric="cosine", m=None, **kw):
    m = m or (16 if nbits == 8 else 32)
    index = IvfPqIndex(DIM, metric, nlist=32, m=m, nbits=nbits, nprobe=8, **kw)
    index.train(base)
    index.add(np.arange(len(base)), base)
    return index


@pytest.fixture(scope="module")
def index4(data):
    return build(data[0])


@pytest.mark.parametrize("nbits", [4, 8])
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_recall_with_rerank(data, nbits, metric):
    base, queries = data
    if metric == "l2":
        base, queries = base * 3.0, queries * 3.0
    index = build(base, nbits, metric)
    truth = exact_knn(base, queries, 10, metric)
    found = index.search(queries, 10, rerank_k=100)
    assert recall(found.ids, truth) >= 0.95
    assert recall(index.search(queries, 10, rerank=False).ids, truth) < recall(found.ids, truth)
    # Re-ranked distances are the exact ones, ascending.
    q, ids, d = queries[0], found.ids[0], found.distances[0]
    exact = {"cosine": 1 - base[ids] @ q, "ip": -(base[ids] @ q), "l2": ((base[ids] - q) ** 2).sum(1)}[metric]
    np.testing.assert_allclose(d, exact, rtol=1e-4, atol=1e-4)
    assert (np.diff(d) >= 0).all()


def test_uneven_sub_spaces_search_and_round_trip(tmp_path, data):
    # m = 24 does not divide 64: 4-bit codes of 12 bytes, sub-spaces 2 or 3 wide.
    base, queries = data
    index = build(base, m=24)
    truth = exact_knn(base, queries, 10, "cosine")
    assert recall(index.search(queries, 10, rerank_k=100).ids, truth) >= 0.95
    index.save(tmp_path / "uneven.ivf")
    loaded = IvfPqIndex.load(tmp_path / "uneven.ivf")
    assert loaded.m == 24
    np.testing.assert_array_equal(loaded.search(queries, 10, rerank=False).ids, index.search(queries, 10, rerank=False).ids)


def test_single_query_shape_and_padding(index4, data):
    res = index4.search(data[1][0], k=5)
    assert res.ids.shape == (5,) and res.distances.shape == (5,)
    few = index4.search(data[1][0], k=5, filter=IdFilter([3, 4]), nprobe=32)
    assert set(few.ids[:2]) == {3, 4} and (few.ids[2:] == -1).all() and np.isinf(few.distances[2:]).all()


def test_filter_only_returns_allowed_ids(index4, data):
    allowed = np.arange(0, 6000, 3)
    res = index4.search(data[1], 10, filter=IdFilter(allowed))
    assert np.isin(res.ids, allowed).all()
    res = index4.search(data[1], 10, filter=IdFilter(allowed, exclude=True))
    assert not np.isin(res.ids, allowed).any()


def test_delete_upsert_and_compact(data):
    base, queries = data
    index = build(base[:3000])
    top = index.search(queries[:20], 1).ids[:, 0]
    index.delete(np.unique(top))
    assert not np.isin(index.search(queries[:20], 10).ids, top).any()
    assert len(index) == 3000 - len(np.unique(top)) and index.deleted_count == len(np.unique(top))
    with pytest.raises(UnknownIdError):
        index.delete([top[0], 1])  # all or nothing
    assert 1 in index
    index.upsert([1], queries[0])
    assert index.search(queries[0], 1).ids[0] == 1
    before = index.memory_usage()["code_bytes"]
    index.compact()
    assert index.deleted_count == 0 and index.memory_usage()["code_bytes"] <= before
    assert index.search(queries[0], 1).ids[0] == 1
    assert not np.isin(index.search(queries[:20], 10).ids, top).any()


def test_ids_survive_churn_and_reload(tmp_path, data):
    # The id map keys its buckets through the slot -> id table: deletes,
    # re-adds, upserts and table rebuilds must keep it equal to a plain dict.
    base, _ = data
    rng = np.random.default_rng(3)
    index = build(base[:500])
    live = set(range(500))
    for step in range(30):
        gone = rng.choice(sorted(live), 40, replace=False)
        index.delete(gone)
        live -= set(gone.tolist())
        fresh = np.arange(1000 + 100 * step, 1000 + 100 * step + 100)
        index.add(fresh, base[rng.integers(0, len(base), 100)])
        again = rng.choice(sorted(live), 30, replace=False)
        index.upsert(again, base[rng.integers(0, len(base), 30)])
        live |= set(fresh.tolist())
    probe = np.arange(5000)
    assert [int(i) in index for i in probe] == [int(i) in live for i in probe]
    assert len(index) == len(live)
    index.save(tmp_path / "churn.ivf")
    loaded = IvfPqIndex.load(tmp_path / "churn.ivf")
    assert [int(i) in loaded for i in probe] == [int(i) in live for i in probe]
    with pytest.raises(DuplicateIdError):
        loaded.add([sorted(live)[0]], base[:1])


def test_round_trip_and_later_writes(tmp_path, data):
    base, queries = data
    index = build(base[:3000], nbits=8)
    index.delete([5, 6])
    path = tmp_path / "ivf.lkl"
    index.save(path)
    assert os.path.exists(str(path) + ".vectors")
    loaded = IvfPqIndex.load(path)
    assert (len(loaded), loaded.nbits, loaded.nlist, loaded.nprobe) == (len(index), 8, 32, 8)
    for a, b in zip(index.search(queries, 10), loaded.search(queries, 10)):
        np.testing.assert_array_equal(a, b)
    loaded.add([10_000], queries[0])
    assert loaded.search(queries[0], 1).ids[0] == 10_000
    # The earlier save is still valid: rows appended since are dropped on load.
    again = IvfPqIndex.load(path)
    assert 10_000 not in again and len(again) == len(index)


def test_coarse_graph_finds_the_cells_a_scan_finds(tmp_path, data):
    base, queries = data
    flat = build(base)
    graph = build(base, coarse_graph_min_nlist=32)  # nlist is 32: the graph is built
    assert graph.has_coarse_graph and not flat.has_coarse_graph
    assert graph.memory_usage()["coarse_graph_bytes"] > 32 * DIM * 4
    assert flat.memory_usage()["coarse_graph_bytes"] == 0
    for q in queries:
        np.testing.assert_array_equal(graph.probes(q, 8), flat.probes(q, 8))
    assert len(graph.probes(queries[0], 100)) == 32  # nprobe is capped at nlist
    for a, b in zip(graph.search(queries, 10), flat.search(queries, 10)):
        np.testing.assert_array_equal(a, b)
    # The graph is saved with the index and comes back with it.
    graph.save(tmp_path / "g.lkl")
    loaded = IvfPqIndex.load(tmp_path / "g.lkl")
    assert loaded.has_coarse_graph
    np.testing.assert_array_equal(loaded.search(queries, 10).ids, graph.search(queries, 10).ids)


def test_damaged_files_are_refused(tmp_path, data):
    index = build(data[0][:2000])
    path = str(tmp_path / "ivf.lkl")
    index.save(path)
    raw = open(path, "rb").read()
    for name, blob in (("truncated", raw[: len(raw) // 2]), ("flipped", raw[:3000] + bytes([raw[3000] ^ 1]) + raw[3001:])):
        bad = str(tmp_path / f"{name}.lkl")
        open(bad, "wb").write(blob)
        os.link(path + ".vectors", bad + ".vectors")
        with pytest.raises(IndexFileError):
            IvfPqIndex.load(bad)
    IvfPqIndex.load(path).verify()  # an intact pair passes
    vec = bytearray(open(path + ".vectors", "rb").read())
    open(path + ".vectors", "wb").write(bytes(vec[:-4]))
    with pytest.raises(IndexFileError, match="truncated"):
        IvfPqIndex.load(path)  # the size is checked at load
    vec[100] ^= 0xFF
    open(path + ".vectors", "wb").write(bytes(vec))
    damaged = IvfPqIndex.load(path)  # the contents are not: load does not read them
    with pytest.raises(IndexFileError, match="checksum"):
        damaged.verify()
    # Rows appended and saved later do not hide the damage.
    damaged.add([50_000], data[1][0])
    damaged.save(path)
    with pytest.raises(IndexFileError, match="checksum"):
        IvfPqIndex.load(path).verify()
    os.remove(path + ".vectors")
    with pytest.raises(IndexFileError, match="missing"):
        IvfPqIndex.load(path)
    with pytest.raises(FileNotFoundError):
        IvfPqIndex.load(tmp_path / "nothing.lkl")


def test_index_verify_command(tmp_path, data, capsys):
    from lookalike import cli

    path = str(tmp_path / "v.lkl")
    build(data[0][:1000]).save(path)
    assert cli.main(["index", "verify", path]) == 0
    assert "ok (1000 vectors" in capsys.readouterr().out
    vec = bytearray(open(path + ".vectors", "rb").read())
    vec[-1] ^= 0x10
    open(path + ".vectors", "wb").write(bytes(vec))
    assert cli.main(["index", "verify", path]) == 1
    assert "checksum" in capsys.readouterr().err


def test_bad_input_changes_nothing(index4, data):
    base, queries = data
    n = len(index4)
    with pytest.raises(ValueError, match="dimension"):
        index4.add([99_999], np.ones((1, DIM + 1)))
    bad = base[:2].copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        index4.add([99_998, 99_999], bad)
    with pytest.raises(DuplicateIdError):
        index4.add([0], base[0])
    with pytest.raises(ValueError, match=">= 0"):
        index4.add([-1], base[0])
    assert len(index4) == n and 99_998 not in index4
    with pytest.raises(ValueError, match="k must"):
        index4.search(queries[0], k=0)
    with pytest.raises(ValueError, match="non-finite"):
        index4.search(np.full(DIM, np.inf), k=1)
    with pytest.raises(TypeError, match="filter"):
        index4.search(queries[0], filter=lambda i: True)


def test_untrained_and_bad_parameters(data):
    index = IvfPqIndex(DIM, nlist=32, m=32)
    with pytest.raises(RuntimeError, match="not trained"):
        index.add([1], data[0][0])
    with pytest.raises(RuntimeError, match="not trained"):
        index.search(data[1][0])
    with pytest.raises(ValueError, match="at least"):
        index.train(data[0][:10])
    with pytest.raises(ValueError, match="at most dim"):
        IvfPqIndex(DIM, m=65)
    with pytest.raises(ValueError, match="nbits"):
        IvfPqIndex(DIM, m=16, nbits=5)
    with pytest.raises(ValueError, match="metric"):
        IvfPqIndex(DIM, "hamming", m=16)
    with pytest.raises(ValueError, match="coarse_graph_min_nlist"):
        IvfPqIndex(DIM, m=16, coarse_graph_min_nlist=0)
    with pytest.raises(ValueError, match="nprobe"):
        index.probes(data[1][0], 0)


def test_memory_stays_near_the_code_size(index4):
    use = index4.memory_usage()
    per_vector = (use["total_bytes"] - use["centroid_bytes"]) / use["live"]
    assert use["code_bytes"] >= use["live"] * 16  # m=32 4-bit codes: 16 bytes a vector
    # The id map holds 4-byte slots in a table rebuilt 0.85 full by a bulk load.
    assert use["id_map_bytes"] <= 4 * (use["live"] / 0.85 + 2)
    # codes (with list slack) + slot runs + 4-byte id + id map
    assert per_vector < 16 * 2 + 1 + 4 + 4.8
    assert use["vector_file_bytes"] == use["live"] * DIM * 4


def test_rows_read_is_rerank_k_a_query(index4, data):
    queries = data[1][:10]
    before = index4.rows_read
    index4.search(queries, 10, rerank_k=150)
    assert index4.rows_read - before == 10 * 150
    index4.search(queries, 10, rerank=False)
    assert index4.rows_read - before == 10 * 150


def test_choose_index_by_size_and_budget():
    small = choose_index(5_000, 512)
    assert small.kind == "flat" and small.index_class == "HnswIndex" and small.search_params == {"exact": True}
    assert small.memory_bytes == estimate_memory("hnsw", 5_000, 512)
    assert choose_index(5_000, 512, memory_budget=10**8).kind == "flat"
    assert choose_index(5_000, 512, memory_budget=10**6).kind == "ivf_rabitq"
    assert choose_index(5_000, 512, memory_budget=9 * 10**5).kind == "ivf_pq"
    assert choose_index(50_000, 512).kind == "hnsw" and choose_index(50_000, 512).search_params == {}
    assert choose_index(1_000_000, 512).kind == "hnsw"
    big = choose_index(100_000_000, 512)
    assert big.kind == "ivf_rabitq" and big.index_class == "IvfPqIndex" and big.params["code"] == "rabitq"
    assert 75 < big.memory_bytes / 1e8 < 80  # 64 bytes of bits, 3 of factors, ids, centroids
    assert choose_index(100_000_000, 2048).kind == "ivf_pq"  # past RaBitQ's 1024 dimensions
    assert choose_index(100_000_000, 512, memory_budget=80 * 10**8).kind == "ivf_rabitq"
    lean = choose_index(100_000_000, 512, memory_budget=60 * 10**8)
    assert lean.kind == "ivf_pq" and lean.params["m"] == 64 and lean.memory_bytes / 1e8 < 60
    assert choose_index(5_000_000, 512, memory_budget=6 * 2**30).kind == "hnsw-float16"
    assert choose_index(5_000_000, 512, memory_budget=1 * 2**30).kind == "ivf_rabitq"
    assert choose_index(5_000_000, 512, memory_budget=300 * 2**20).kind == "ivf_pq"
    assert estimate_memory("hnsw", 1000, 512) > estimate_memory("hnsw-int8", 1000, 512)
    with pytest.raises(ValueError, match="no index fits"):
        choose_index(100_000_000, 512, memory_budget=10**6)
    with pytest.raises(ValueError, match="unknown index kind"):
        estimate_memory("ivf", 10, 8)


def test_a_flat_choice_searches_exactly(data):
    base, queries = data
    choice = choose_index(2000, DIM)
    index = HnswIndex(DIM, **choice.params)
    index.add(np.arange(2000), base[:2000])
    found = index.search(queries, 10, **choice.search_params).ids
    np.testing.assert_array_equal(found, exact_knn(base[:2000], queries, 10, "cosine"))
