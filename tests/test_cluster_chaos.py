"""Ten seeded chaos rounds against cluster mode with real processes
(lookalike.cluster.chaos, as bench/cluster_chaos.py runs them at length): a
3-node NATS JetStream cluster (the stream with 3 copies), 2 shards x 2 replica
processes, 2 router processes. In each round 1-2 replicas, and in every other
round one NATS node, are killed -9 at random moments while a writer upserts
through one router; after it, every replica catches up, no acknowledged
product (of any round so far) is missing through the other router, and the
replicas of each shard hold the same products with bit-identical vectors."""

from __future__ import annotations

import pytest

from lookalike.cluster.chaos import ChaosCluster, run_round

ROUNDS, SEED, MESSAGES = 10, 1, 30


@pytest.fixture(scope="module")
def chaos_cluster(tmp_path_factory):
    cluster = ChaosCluster.start(tmp_path_factory.mktemp("chaos"), routers=2)
    yield cluster
    cluster.stop()


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_chaos_round_loses_no_acknowledged_write_and_replicas_converge(chaos_cluster, round_):
    outcome = run_round(chaos_cluster, round_, SEED, MESSAGES, kill_nats=round_ % 2 == 1, catch_up_timeout=60)
    replica_logs = {r.name: r.log_text().splitlines()[-10:] for r in chaos_cluster.replicas}
    assert "while writing" in outcome.events[0], outcome
    assert outcome.acknowledged > 0, outcome
    assert outcome.caught_up, (outcome, replica_logs)
    assert outcome.lost == 0, outcome
    assert not outcome.diverged, outcome
