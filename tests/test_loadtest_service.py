"""The harness against a real server (in this process, with the tiny random CLIP
bundle, so every query kind works): every kind of query, filtered ones and
upserts, briefly, through `lookalike bench load`; and a short soak."""

import json
import os

import pytest

from lookalike.cli import main
from lookalike.loadtest.breakdown import format_table, measure, plot
from lookalike.client import Client
from lookalike.loadtest.runner import RunConfig
from lookalike.loadtest.soak import MemoryProbe, bursty, soak
from lookalike.loadtest.workload import ServerShape, WorkloadSpec, seed_products
from lookalike.service.config import ServiceConfig
from lookalike.service.server import Server

SCHEMA = {"category": "keyword", "price": "numeric", "in_stock": "bool"}


@pytest.fixture(scope="module")
def server(tiny_clip_bundle, tmp_path_factory):
    server = Server(ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path_factory.mktemp("loaded")),
                                  model=str(tiny_clip_bundle), schema=SCHEMA, workers=8))
    server.start()
    yield server
    server.stop(grace=1)


def test_bench_load_sends_every_kind_and_reports_them(server, tmp_path, capsys):
    code = main(["bench", "load", "--address", server.address, "--mode", "open", "--rate", "30",
                 "--duration", "2", "--processes", "2", "--mix",
                 "vector=1,text=1,image=1,hybrid=1,more_like_this=1", "--filtered", "0.3", "--upserts", "0.1",
                 "--products", "50", "--out", str(tmp_path), "--name", "mixed"])
    assert code == 0
    report = json.loads((tmp_path / "mixed.json").read_text())
    assert report["errors"] == {}
    assert report["ok"] == report["sent"] >= 50
    labels = set(report["latency_ms"]) - {"all"}
    kinds = {label.split("+")[0] for label in labels}
    assert kinds == {"vector", "text", "image", "hybrid", "more_like_this", "upsert"}
    assert any(label.endswith("+filter") for label in labels)
    image_stages = report["stages_ms"]["image"]
    assert image_stages["decode"]["mean"] > 0 and image_stages["encode"]["mean"] > 0
    vector_stages = report["stages_ms"]["vector"]
    assert vector_stages["encode"]["max"] == 0 and vector_stages["search"]["mean"] > 0
    all_ = report["latency_ms"]["all"]
    assert 0 < all_["p50"] <= all_["p90"] <= all_["p99"] <= all_["p99.9"] <= all_["max"]
    assert (tmp_path / "mixed_timeline.png").stat().st_size > 10_000
    assert "vector" in capsys.readouterr().out
    with Client(server.address) as client:  # the harness's products, and no more: upserts replaced them
        assert client.stats().products == 50


def test_a_short_soak_reports_memory_and_no_errors(server):
    with Client(server.address) as client:
        spec = WorkloadSpec(shape=ServerShape.from_stats(client.stats()), mix={"vector": 3, "more_like_this": 1},
                            upsert_share=0.2, products=50)
        seed_products(client, spec)
        arrivals = bursty(average=20, burst_factor=5, burst_every=1.0, burst_seconds=0.25)
        config = RunConfig(address=server.address, workload=spec, arrivals=arrivals, duration=2.0, processes=1)
        outcome = soak(config, MemoryProbe(client, server_pid=os.getpid()), sample_every=0.5)
    assert outcome.run.errors == {} and outcome.run.ok >= 25
    assert outcome.run.latency["upsert"].total > 0
    assert len(outcome.memory) >= 3 and all(s["rss_bytes"] > 0 and s["index_bytes"] > 0 for s in outcome.memory)
    assert set(outcome.growth()) == {"index_bytes", "products", "rss_bytes"}
    assert outcome.growth()["products"] == 0


def test_the_stage_breakdown_accounts_for_the_time_of_each_kind(server, tmp_path):
    with Client(server.address) as client:
        spec = WorkloadSpec(shape=ServerShape.from_stats(client.stats()), products=50)
    base = RunConfig(address=server.address, workload=spec, mode="closed", processes=1)
    rows = measure(base, ["vector", "image"], callers=(1,), seconds=0.7)
    vector, image = rows
    assert (vector.kind, image.kind) == ("vector", "image") and vector.calls > 5 and image.calls > 5
    assert vector.parts_ms["encode"] == 0 < vector.parts_ms["search"]
    assert image.parts_ms["decode"] > 0 and image.parts_ms["encode"] > 0
    # The parts add up to the mean end to end (the outside part is measured per call).
    for row in rows:
        assert sum(row.parts_ms.values()) == pytest.approx(row.mean_ms, rel=0.05)
    table = format_table(rows)
    assert table.count("\n| vector | 1 |") == 1 and "| image | 1 |" in table
    plot(rows, tmp_path / "latency.png")
    assert (tmp_path / "latency.png").stat().st_size > 10_000
