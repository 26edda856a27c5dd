"""Batch (re-)indexing: a catalog built into shard data directories on a local
Ray equals the in-process build and what a server makes of the same catalog
(same ids per shard, same vectors, same search results), IVF-PQ shards are
trained and agree too, and a shard server starts from a published directory.

One Ray session serves the module (ray.init takes seconds)."""

import io
import json

import numpy as np
import pytest
import ray
from PIL import Image

from conftest import clustered
from lookalike.batch import build_shards
from lookalike.cli import main
from lookalike.client import Client
from lookalike.encoders import load_bundle
from lookalike.index.collection import Collection, SpaceConfig
from lookalike.index.ivf_space import IvfPqSpace
from lookalike.index.sharding import shard_of
from lookalike.ingest import ingest
from lookalike.service.config import ServiceConfig
from lookalike.service.server import Server
from lookalike.store.catalog import Catalog
from lookalike.store.snapshots import Snapshots

SHARDS = 3
SCHEMA = {"category": "keyword", "price": "numeric"}


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def picture(i: int) -> bytes:
    """A distinct little photo: stripes whose colour and width depend on i."""
    rng = np.random.default_rng(i)
    pixels = np.zeros((40, 56, 3), dtype=np.uint8)
    width = 2 + i % 5
    for x in range(0, 56, 2 * width):
        pixels[:, x:x + width] = rng.integers(0, 256, 3)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def photo_catalog(tmp_path_factory):
    """A CSV of 14 photos with attributes (ids spread so that every shard gets
    some) and one product whose photo is broken."""
    folder = tmp_path_factory.mktemp("catalog")
    lines = ["id,image,title,category,price"]
    for i in range(14):
        (folder / f"p{i}.png").write_bytes(picture(i))
        lines.append(f"{100 + 37 * i},p{i}.png,product {i},{'bags' if i % 2 else 'shoes'},{10 + i}")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    lines.append("999,broken.png,broken,bags,1")
    (folder / "catalog.csv").write_text("\n".join(lines) + "\n")
    return folder / "catalog.csv"


def load_shard(directory):
    collection, seq = Snapshots(directory / "snapshots").load_newest(Collection.load)
    assert seq == 0
    return collection


def all_ids(collection):
    return sorted(i for i in range(2000) if i in collection)


def merged_search(shards, space, query, k):
    """The top k over every shard: what a router's merge gives."""
    hits = [(float(s), int(i)) for c in shards for i, s in zip(*c.search(space, query, k)[:2])]
    hits.sort(key=lambda h: (-h[0], h[1]))
    return [i for _, i in hits[:k]], np.array([s for s, _ in hits[:k]])


def test_a_ray_build_equals_the_in_process_build_and_the_server(ray_session, photo_catalog, tiny_clip_bundle,
                                                                tmp_path):
    # float32 spaces on the server: what choose_index gives shards this small (auto_index).
    spaces = [SpaceConfig(name, s.dim, s.metric, storage="float32", rerank="")
              for name, s in load_bundle(tiny_clip_bundle).manifest.spaces.items()]
    server = Server(ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path / "served"),
                                  model=str(tiny_clip_bundle), schema=SCHEMA, spaces=tuple(spaces)))
    server.start()
    try:
        with Client(server.address) as client:
            stored, failed = ingest(client, photo_catalog, progress=io.StringIO())
        assert stored == 14 and [f.id for f in failed] == [999]
        served = server.collection
        builds = {}
        for runner in ("local", "ray"):
            report = build_shards(photo_catalog, tmp_path / runner, n_shards=SHARDS, spaces=spaces, schema=SCHEMA,
                                  bundle=tiny_clip_bundle, runner=runner, auto_index=True)
            assert list(report.failed) == [999] and "image" in report.failed[999]
            builds[runner] = [load_shard(d) for d in report.shards]
            assert report.products == [len(c) for c in builds[runner]] and sum(report.products) == 14

        ids = all_ids(served)
        for shard in range(SHARDS):
            mine = [i for i in ids if shard_of(i, SHARDS) == shard]
            assert mine, "the catalog's ids should reach every shard"
            for runner in ("local", "ray"):
                built = builds[runner][shard]
                assert all_ids(built) == mine
                for space in built.spaces:
                    np.testing.assert_allclose(built.vectors(space, mine), served.vectors(space, mine), atol=1e-5)
                assert built.attributes(mine[0]) == served.attributes(mine[0])
        for space in served.spaces:
            for query in served.vectors(space, ids[:5]):
                want = served.search(space, query, 5)
                for runner in ("local", "ray"):
                    got_ids, got_scores = merged_search(builds[runner], space, query, 5)
                    assert got_ids == want.ids.tolist()
                    np.testing.assert_allclose(got_scores, want.scores, atol=1e-5)
    finally:
        server.stop(grace=1)

    # A shard server starts from a published directory: products, titles, search.
    shard_dir = tmp_path / "ray" / "shard-001"
    assert json.loads((shard_dir / "SHARD.json").read_text())["shard"] == 1
    shard_server = Server(ServiceConfig(address="127.0.0.1:0", data_dir=str(shard_dir)))
    shard_server.start()
    try:
        with Client(shard_server.address) as client:
            mine = [i for i in ids if shard_of(i, SHARDS) == 1]
            assert client.stats().products == len(mine)
            space = next(iter(served.spaces))
            reply = client.search(vector=builds["ray"][1].vectors(space, [mine[0]])[0], using=space, k=1,
                                  with_metadata=True)
            assert reply.hits[0].id == mine[0]
            assert reply.hits[0].metadata.title == f"product {(mine[0] - 100) // 37}"
    finally:
        shard_server.stop(grace=1)


def test_ivf_pq_shards_train_on_a_sample_and_agree_across_runners(ray_session, tmp_path):
    vectors = clustered(1200, 32, seed=8)
    manifest = tmp_path / "vectors.jsonl"
    manifest.write_text("".join(json.dumps({"id": 5 * i, "title": f"v{i}", "vectors": {"v": vectors[i].tolist()},
                                            "attributes": {"price": float(i)}}) + "\n" for i in range(1200)))
    spaces = [SpaceConfig("v", 32, index="ivf_pq", nlist=16, pq_m=8, nprobe=16, rerank_k=100)]
    shards = {}
    for runner in ("local", "ray"):
        report = build_shards(manifest, tmp_path / runner, n_shards=2, spaces=spaces, schema={"price": "numeric"},
                              auto_index=False, runner=runner)
        assert not report.failed and sum(report.products) == 1200
        shards[runner] = [load_shard(d) for d in report.shards]
    for local, distributed in zip(shards["local"], shards["ray"]):
        assert isinstance(distributed.index("v"), IvfPqSpace) and distributed.index("v").trained
        for q in vectors[:20]:
            a, b = local.search("v", q, 10), distributed.search("v", q, 10)
            np.testing.assert_array_equal(a.ids, b.ids)
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    found = [merged_search(shards["ray"], "v", q, 1)[0][0] for q in vectors[:50]]
    assert found == [5 * i for i in range(50)]  # every product finds itself across the shards


def test_the_command_line_builds_shards_and_refuses_to_overwrite(tmp_path, capsys):
    """reindex runs the in-process build (the Ray runner is the tests above);
    ingest --ray takes the same arguments."""
    manifest = tmp_path / "c.jsonl"
    rng = np.random.default_rng(1)
    manifest.write_text("".join(json.dumps({"id": i, "vectors": {"v": rng.normal(size=8).tolist()}}) + "\n"
                                for i in range(20)))
    config = tmp_path / "lookalike.toml"
    config.write_text('[[spaces]]\nname = "v"\ndim = 8\n')
    args = [str(manifest), "--out", str(tmp_path / "out"), "--shards", "2", "--config", str(config)]
    assert main(["build-shards", *args]) == 0
    assert "20 products indexed in 2 shard(s), 0 failed" in capsys.readouterr().err
    catalog = Catalog(tmp_path / "out" / "shard-000" / "catalog.sqlite3")
    try:
        assert len(catalog) == sum(shard_of(i, 2) == 0 for i in range(20))
    finally:
        catalog.close()
    assert main(["ingest", "--ray", *args]) == 1
    assert "shard-000 exists: build into a fresh output directory" in capsys.readouterr().err
    assert main(["ingest", "--ray", str(manifest)]) == 1
    assert "a batch build needs --out DIR" in capsys.readouterr().err


def test_shards_are_built_with_the_configured_group_graphs(tmp_path):
    manifest = tmp_path / "c.jsonl"
    vectors = clustered(60, 8, seed=2)
    manifest.write_text("".join(json.dumps({"id": i, "vectors": {"v": vectors[i].tolist()},
                                            "attributes": {"category": f"c{i % 3}"}}) + "\n" for i in range(60)))
    config = tmp_path / "lookalike.toml"
    config.write_text('[schema]\ncategory = "keyword"\n[[spaces]]\nname = "v"\ndim = 8\n'
                      '[groups]\nattributes = ["category"]\nmin_members = 5\n')
    assert main(["build-shards", str(manifest), "--out", str(tmp_path / "out"), "--shards", "2",
                 "--config", str(config)]) == 0
    for shard in range(2):
        collection = load_shard(tmp_path / "out" / f"shard-00{shard}")
        mine = [i for i in range(60) if shard_of(i, 2) == shard]
        assert collection.groups.attributes == ("category",)
        assert collection.index("v").groups == {f"category=c{c}": sum(i % 3 == c for i in mine) for c in range(3)}
