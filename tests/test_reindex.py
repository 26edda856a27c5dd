"""Re-indexing with a new model while the service serves: searches never fail,
writes made during the build are in the new version, the swap survives a
restart, a rollback brings the old answers back (with the writes since), and
bad requests are refused with a clear status.

Two tiny random CLIPs (tests/tiny_clip.py) play the old model (24-d) and the
new one (16-d); their vectors mean nothing, but each finds a stored picture
from the same picture, and each gives its own vectors, which we check."""

import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest

from lookalike.client import Client, Filter, Product, packed
from lookalike.encoders import Encoder
from lookalike.index.collection import SpaceConfig
from lookalike.index.groups import GroupConfig
from lookalike.service.config import DurabilityConfig, ServiceConfig
from lookalike.service.server import Server
from lookalike.store.versions import Versions
from lookalike.v1 import admin_pb2, filter_pb2, search_pb2
from test_service_encoders import picture

N = 24
SUCCEEDED, FAILED = admin_pb2.JOB_STATE_SUCCEEDED, admin_pb2.JOB_STATE_FAILED


@pytest.fixture(scope="module")
def new_bundle(tmp_path_factory):
    """A second tiny CLIP with other weights and 16-d vectors: the new model."""
    from lookalike.encoders.export_clip import export_clip
    from tiny_clip import make_tiny_clip

    checkpoint = make_tiny_clip(tmp_path_factory.mktemp("new-clip-checkpoint"), seed=1, projection_dim=16)
    return export_clip(str(checkpoint), tmp_path_factory.mktemp("new-clip-bundle"), model_id="new-clip")


def in_models(data_dir, bundle):
    """A copy of ``bundle`` in the server's models folder, where a re-index may take it from."""
    copy = Path(data_dir) / "models" / Path(bundle).name
    shutil.copytree(bundle, copy, dirs_exist_ok=True)
    return str(copy)


def config_for(data_dir, model, **overrides):
    return ServiceConfig(address="127.0.0.1:0", data_dir=str(data_dir), model=str(model),
                         schema={"category": "keyword"}, durability=DurabilityConfig(fsync="never"), **overrides)


WRITE_KEY, READ_KEY = "a-write-key-for-the-admin-tests", "a-read-only-key-for-the-tests"


@contextmanager
def running(config):
    server = Server(config)
    server.start()
    try:
        with Client(server.address, timeout=30, api_key=WRITE_KEY if config.api_keys else None) as client:
            yield server, client
    finally:
        server.stop(grace=1)


def category(value):
    return {"category": search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=[value]))}


def top_hits(client, ids, among=None):
    """The top 3 (id, score) of a photo query per id, among some products only."""
    flt = Filter(must=[filter_pb2.Condition(has_id=filter_pb2.HasId(ids=among))]) if among else None
    return {i: [(h.id, round(h.score, 4)) for h in client.search(image=picture(i), k=3, filter=flt).hits]
            for i in ids}


def cosine(a, b):
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def reindexed(tiny_clip_bundle, new_bundle, tmp_path_factory):
    """A server on the old model with N products with photos and one with only a
    title is re-indexed to the new model while one client searches without
    pause and another upserts; what happened, for the tests below."""
    data = tmp_path_factory.mktemp("reindexed")
    config = config_for(data, tiny_clip_bundle)
    outcome = {"config": config, "errors": [], "searches": 0, "written": [], "written_while_running": 0}
    with running(config) as (server, client):
        products = [Product(id=i, image=picture(i), title=f"red dress {i}", attributes=category(f"c{i % 3}"))
                    for i in range(N)] + [Product(id=50, title="blue shoes")]
        assert [r.status_code for r in client.upsert(products).results] == [0] * (N + 1)
        outcome["before"] = top_hits(client, range(0, N, 5))

        # Small batches, each a little slower, so the build lasts long enough for writes to land in it.
        reindexer = server.reindexer
        reindexer.batch = 4
        rebuild = reindexer._rebuild
        reindexer._rebuild = lambda *args: (time.sleep(0.05), rebuild(*args))[1]
        stop = threading.Event()

        def search():
            i = 0
            while not stop.is_set() and outcome["searches"] < 5000:
                try:
                    client.search(image=picture(i % N), k=3, with_metadata=True)
                    client.search(product_id=i % N, k=3)
                    outcome["searches"] += 2
                except grpc.RpcError as e:
                    outcome["errors"].append(f"{e.code()}: {e.details()}")
                i += 1

        def write():
            n = 0
            while not stop.is_set() and n < 60:
                running_now = reindexer.job().state == "running"
                id_ = 1000 + n
                reply = client.upsert([Product(id=id_, image=picture(id_), attributes=category("late"))])
                assert reply.results[0].status_code == 0, reply.results[0].error
                outcome["written"].append(id_)
                outcome["written_while_running"] += running_now and reindexer.job().state == "running"
                n += 1
                time.sleep(0.01)

        threads = [threading.Thread(target=search), threading.Thread(target=write)]
        job = client.start_reindex(in_models(data, new_bundle))
        for t in threads:
            t.start()
        try:
            outcome["job"] = client.wait_for_job(job.job_id, poll=0.05, timeout=120)
            time.sleep(0.3)  # searches and writes go on after the swap too
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        outcome["after_swap"] = top_hits(client, range(0, N, 5))
        # The model's extras follow the swap: colour directions of the new (16-d) model.
        outcome["ignore_colour_after_swap"] = client.search(image=picture(0), k=3, ignore_colour=True)
    return outcome


def test_searches_never_fail_while_the_model_is_swapped(reindexed):
    job = reindexed["job"]
    assert job.state == SUCCEEDED, job.message
    assert job.kind == admin_pb2.JOB_KIND_REINDEX and (job.from_version, job.to_version) == (0, 1)
    assert job.done >= N + 1 and job.failed == 0 and job.elapsed_seconds > 0
    assert reindexed["errors"] == []
    assert reindexed["searches"] > 20


def test_after_the_swap_answers_come_from_the_new_model(reindexed, new_bundle):
    new = Encoder(new_bundle)
    with running(reindexed["config"]) as (server, client):  # also: a restart serves the new version
        stats = client.stats()
        assert stats.model_id.startswith("new-clip@")
        assert [(s.name, s.dim) for s in stats.spaces] == [("joint", 16)]
        assert stats.products == N + 1 + len(reindexed["written"])
        for i in (0, 7, 1003):
            expected = new.encode_images([picture(i)])["joint"][0]
            assert cosine(server.collection.vectors("joint", [i])[0], expected) > 0.999
            assert client.search(image=picture(i), k=1).hits[0].id == i
        title_only = new.encode_texts(["blue shoes"])["joint"][0]
        assert cosine(server.collection.vectors("joint", [50])[0], title_only) > 0.999
        got = {p.id: p for p in client.get([3, 1005]).products}
        assert list(got[3].metadata.attributes["category"].keywords.values) == ["c0"]
        assert list(got[1005].metadata.attributes["category"].keywords.values) == ["late"]
        assert top_hits(client, range(0, N, 5)) == reindexed["after_swap"]
        versions = {v.version: v for v in client.list_versions().versions}
        assert sorted(versions) == [0, 1] and versions[1].active and versions[0].previous
        assert versions[1].model_id.startswith("new-clip@") and versions[0].model_id.startswith("tiny-clip@")


def test_the_swap_brings_the_new_models_extras(reindexed):
    reply = reindexed["ignore_colour_after_swap"]
    assert len(reply.hits) == 3


def test_writes_made_during_the_build_are_in_the_new_version(reindexed, new_bundle):
    assert reindexed["written_while_running"] > 0
    new = Encoder(new_bundle)
    with running(reindexed["config"]) as (server, client):
        written = reindexed["written"]
        assert list(client.get(written).missing_ids) == []
        expected = new.encode_images([picture(i) for i in written])["joint"]
        stored = server.collection.vectors("joint", written)
        assert min(cosine(a, b) for a, b in zip(stored, expected)) > 0.999


def test_a_rollback_restores_the_old_answers_and_keeps_the_writes_since(reindexed, tiny_clip_bundle):
    old = Encoder(tiny_clip_bundle)
    with running(reindexed["config"]) as (server, client):
        # Writes after the swap (encoded by the new model) must survive the rollback.
        assert client.upsert([Product(id=2000, image=picture(2000), title="after the swap")]).results[0].status_code == 0
        assert client.delete([1]).deleted == 1
        job = client.wait_for_job(client.rollback().job_id, poll=0.05, timeout=60)
        assert job.state == SUCCEEDED, job.message
        assert job.kind == admin_pb2.JOB_KIND_ROLLBACK and (job.from_version, job.to_version) == (1, 0)
        assert client.stats().model_id.startswith("tiny-clip@")
        assert cosine(server.collection.vectors("joint", [2000])[0],
                      old.encode_images([picture(2000)])["joint"][0]) > 0.999
        assert list(client.get([1]).missing_ids) == [1]
        # Among the products from before the re-index, the old answers (less the deleted product).
        expected = {i: [h for h in hits if h[0] != 1][:2] for i, hits in reindexed["before"].items()}
        now = top_hits(client, expected, among=[*range(N), 50])
        assert {i: hits[:2] for i, hits in now.items()} == expected
    with running(reindexed["config"]) as (server, client):  # and the rollback is durable
        assert client.stats().model_id.startswith("tiny-clip@")
        assert client.search(image=picture(2000), k=1).hits[0].id == 2000
        assert [(v.version, v.active) for v in client.list_versions().versions] == [(0, True), (1, False)]


def test_bad_requests_are_refused_with_a_clear_status(tiny_clip_bundle, new_bundle, tmp_path):
    config = config_for(tmp_path / "data", tiny_clip_bundle, spaces=(SpaceConfig("joint", 24),),
                        api_keys={WRITE_KEY: "write", READ_KEY: "read"})
    models = tmp_path / "data" / "models"
    (models / "not-a-bundle").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (models / "a-link-out").symlink_to(tmp_path / "elsewhere")
    with running(config) as (server, client):
        client.upsert([Product(id=1, image=picture(1))])
        with Client(server.address, api_key=READ_KEY) as reader, pytest.raises(grpc.RpcError) as caught:
            reader.list_versions()
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Outside the models folder, a path that exists gets the same answer as one that does not.
        outside = [str(tmp_path / "elsewhere"), str(tmp_path / "nowhere"), str(tiny_clip_bundle), "/",
                   "../../elsewhere", "not-a-bundle/../../..", "a-link-out", "a-link-out/x", "", "."]
        for path in outside:
            with pytest.raises(grpc.RpcError) as caught:
                client.start_reindex(path)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, path
            assert caught.value.details() == (
                "model_path: a model bundle must be a folder inside the models folder of the server's data "
                "directory (data_dir/models), named relative to it or by its absolute path; neither '..' nor a "
                "symlink may lead out of it"), path
        cases = [
            (lambda: client.start_reindex("nowhere"), grpc.StatusCode.NOT_FOUND, "no model bundle folder 'nowhere'"),
            (lambda: client.start_reindex(str(models / "nowhere")), grpc.StatusCode.NOT_FOUND, "no model bundle"),
            (lambda: client.start_reindex("not-a-bundle"), grpc.StatusCode.INVALID_ARGUMENT, "manifest.json"),
            (lambda: client.start_reindex(in_models(tmp_path / "data", new_bundle)),
             grpc.StatusCode.FAILED_PRECONDITION,
             "space 'joint' is configured with dimension 24 but model new-clip@1 writes 16"),
            (lambda: client.rollback(), grpc.StatusCode.FAILED_PRECONDITION, "no previous version"),
            (lambda: client.reindex_status("nope"), grpc.StatusCode.NOT_FOUND, "no job 'nope'"),
        ]
        for call, code, words in cases:
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == code and words in caught.value.details(), caught.value.details()
        assert client.stats().model_id.startswith("tiny-clip@")
        assert not (Path(config.data_dir) / "versions" / "1").exists()
        done = subprocess.run([sys.executable, "-m", "lookalike.cli", "reindex", "--rollback", "--address",
                               server.address], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "LOOKALIKE_API_KEY": WRITE_KEY})
        assert done.returncode == 1 and "FAILED_PRECONDITION: there is no previous version" in done.stderr


def test_a_product_sent_as_vectors_only_fails_the_job_unless_carried_over(tiny_clip_bundle, new_bundle, tmp_path):
    vector = np.random.default_rng(3).normal(size=24).astype(np.float32)
    with running(config_for(tmp_path, tiny_clip_bundle)) as (server, client):
        client.upsert([Product(id=i, image=picture(i)) for i in range(4)]
                      + [Product(id=99, vectors={"joint": packed(vector)})])
        job = client.wait_for_job(client.start_reindex(in_models(tmp_path, new_bundle)).job_id, poll=0.05,
                                  timeout=60)
        assert job.state == FAILED and job.failed == 1
        assert job.failures[0].id == 99
        assert "no stored image or title to encode into space 'joint'" in job.failures[0].reason
        assert "dimension 24 -> 16" in job.failures[0].reason
        assert client.stats().model_id.startswith("tiny-clip@")  # nothing swapped
        assert [v.version for v in client.list_versions().versions] == [0]
        assert not (tmp_path / "versions" / "1").exists()

        # The same dimension (here: the same model, re-indexed) may carry the vector over when asked.
        job = client.wait_for_job(client.start_reindex(in_models(tmp_path, tiny_clip_bundle),
                                                       carry_over_unencodable=True).job_id, poll=0.05, timeout=60)
        assert job.state == SUCCEEDED, job.message
        stored = server.collection.vectors("joint", [99])[0]
        np.testing.assert_allclose(stored, vector / np.linalg.norm(vector), atol=1e-3)  # float16 copies


def test_a_build_a_crash_interrupted_is_removed_and_the_old_version_serves(tiny_clip_bundle, new_bundle, tmp_path):
    config = config_for(tmp_path, tiny_clip_bundle)
    with running(config) as (server, client):
        client.upsert([Product(id=i, image=picture(i)) for i in range(3)])
    Versions(tmp_path).create(new_bundle, "new-clip@1")  # as a build leaves its folder when killed
    with running(config) as (server, client):
        assert not (tmp_path / "versions" / "1").exists()
        assert client.stats().model_id.startswith("tiny-clip@") and client.stats().products == 3
        # The job can be run again; here from the command line, which shows progress until done.
        done = subprocess.run([sys.executable, "-m", "lookalike.cli", "reindex", "--model",
                               in_models(tmp_path, new_bundle), "--address", server.address], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "reindex 3/3 products, 0 failed" in done.stderr and "version 1 (model new-clip@1) is active" in done.stderr
        assert client.stats().model_id.startswith("new-clip@")
        listed = subprocess.run([sys.executable, "-m", "lookalike.cli", "reindex", "--versions", "--address",
                                 server.address], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert [line.split() for line in listed.stdout.splitlines()] == [["0", "tiny-clip@1", "previous"],
                                                                        ["1", "new-clip@1", "active"]]


def test_kill_9_during_a_reindex_leaves_one_whole_version_and_no_acknowledged_write_lost(
        tiny_clip_bundle, new_bundle, tmp_path):
    """A real server process is SIGKILLed at seeded moments after StartReindex
    (before, during or after the swap) while a client upserts photos; each
    restart serves one whole version (model and collection agree), holds every
    acknowledged write, and has no unfinished build left."""
    from test_service import start_server

    models = {"tiny-clip": (in_models(tmp_path / "data", tiny_clip_bundle), 24),
              "new-clip": (in_models(tmp_path / "data", new_bundle), 16)}
    config = f'model = "{tiny_clip_bundle}"\n[durability]\nfsync = "always"\nsnapshot_every_records = 5\n'
    delays = np.random.default_rng(7).permutation([0.02, 0.15, 0.3, 1.0])  # seconds from StartReindex to the kill
    acknowledged = set()
    for round_, delay in enumerate(delays):
        process, address = start_server(tmp_path, config_text=config)
        try:
            with Client(address, timeout=30) as client:
                if round_ == 0:
                    client.upsert([Product(id=i, image=picture(i)) for i in range(40)])
                    acknowledged.update(range(40))
                stats = client.stats()
                model = stats.model_id.split("@")[0]
                active = [v for v in client.list_versions().versions if v.active]
                assert [v.model_id.split("@")[0] for v in active] == [model]
                assert [s.dim for s in stats.spaces] == [models[model][1]]
                kept = {v.version for v in client.list_versions().versions}
                assert {int(p.name) for p in (tmp_path / "data" / "versions").glob("[0-9]*")} <= kept
                assert list(client.get(sorted(acknowledged)).missing_ids) == []
                assert client.search(image=picture(3), k=1).hits[0].id == 3
                other = "new-clip" if model == "tiny-clip" else "tiny-clip"
                client.start_reindex(models[other][0])
                deadline = time.monotonic() + delay
                next_id = 100 + 100 * round_
                while time.monotonic() < deadline:
                    reply = client.upsert([Product(id=next_id, image=picture(next_id))])
                    if reply.results[0].status_code == 0:
                        acknowledged.add(next_id)
                    next_id += 1
        finally:
            process.kill()
            process.wait(timeout=30)
    with running(config_for(tmp_path / "data", tiny_clip_bundle)) as (server, client):
        assert list(client.get(sorted(acknowledged)).missing_ids) == []
        model = client.stats().model_id.split("@")[0]
        other = "new-clip" if model == "tiny-clip" else "tiny-clip"
        job = client.wait_for_job(client.start_reindex(models[other][0]).job_id, poll=0.05, timeout=60)
        assert job.state == SUCCEEDED, job.message
        assert client.stats().products == len(acknowledged)


def test_the_new_version_and_a_rollback_keep_the_group_graphs(tiny_clip_bundle, new_bundle, tmp_path):
    """A re-index builds the new version with the live collection's groups; a
    rollback, to a version saved under other [groups], gets the live ones."""
    config = config_for(tmp_path, tiny_clip_bundle, groups=GroupConfig(("category",), 4))
    expected = {"category=c0": 4, "category=c1": 4, "category=c2": 4}
    with running(config) as (server, client):
        products = [Product(id=i, image=picture(i), attributes=category(f"c{i % 3}")) for i in range(12)]
        assert [r.status_code for r in client.upsert(products).results] == [0] * 12
        assert server.store.collection.index("joint").groups == expected
        job = client.start_reindex(in_models(tmp_path, new_bundle))
        assert client.wait_for_job(job.job_id, poll=0.05, timeout=120).state == SUCCEEDED
        rebuilt = server.store.collection
        assert rebuilt.space("joint").dim == 16 and rebuilt.groups == config.groups
        assert rebuilt.index("joint").groups == expected
    fewer = replace(config, groups=GroupConfig(("category",), 3))
    with running(fewer) as (server, client):
        assert server.store.collection.groups == fewer.groups  # applied at start
        assert client.upsert([Product(id=12, image=picture(12), attributes=category("c3"))]).results[0].status_code == 0
        job = client.wait_for_job(client.rollback().job_id, poll=0.05, timeout=60)
        assert job.state == SUCCEEDED, job.message
        restored = server.store.collection
        assert restored.space("joint").dim == 24 and restored.groups == fewer.groups
        assert restored.index("joint").groups == expected  # c3's one product: below the threshold
