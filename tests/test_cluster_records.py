"""The cluster's log records and its [cluster] config: round trips, and a clear
error for what is not a record or not a valid setting."""

import numpy as np
import pytest

from lookalike.cluster import log_records
from lookalike.cluster.config import ClusterConfig
from lookalike.cluster.log_records import FilterDelete, RecordError
from lookalike.index.filter import Filter
from lookalike.service.config import ServiceConfig
from lookalike.store.records import DeleteBatch, UpsertBatch


def upsert():
    return UpsertBatch(ids=np.array([7, 3], dtype=np.int64),
                       vectors={"v": np.arange(8, dtype=np.float32).reshape(2, 4)},
                       attributes={"price": [1.5, None]}, titles=["a", "b"], image_uris=["u1", ""],
                       image_sha256=["ab" * 32, ""])


def test_records_round_trip():
    back = log_records.decode(log_records.encode(upsert()))
    assert back.ids.tolist() == [7, 3] and back.vectors["v"].tobytes() == upsert().vectors["v"].tobytes()
    assert back.attributes == {"price": [1.5, None]} and back.image_sha256 == ["ab" * 32, ""]
    assert log_records.decode(log_records.encode(DeleteBatch(np.array([5], dtype=np.int64)))).ids.tolist() == [5]
    clause = Filter.from_dict({"must": [{"range": {"attr": "price", "lt": 10}}]})
    back = log_records.decode(log_records.encode(FilterDelete(clause)))
    assert isinstance(back, FilterDelete) and back.filter.to_dict() == clause.to_dict()


@pytest.mark.parametrize("message, says", [
    (b"", "too short"),
    (b"XYZ\x01\x01", "not a log record"),
    (b"LKR\x09\x01", "format version 9"),
    (b"LKR\x01\x07\x00\x00\x00\x00", "unknown record kind 7"),
    (log_records.encode(upsert())[:-3], "ends inside an array"),
    (b"LKR\x01\x03{not json", "bad filter"),
])
def test_a_malformed_record_is_named(message, says):
    with pytest.raises(RecordError, match=says):
        log_records.decode(message)


def test_cluster_config_from_toml(tmp_path):
    path = tmp_path / "lookalike.toml"
    path.write_text('[cluster]\nurls = ["nats://127.0.0.1:4222"]\ncollection = "shop"\nshards = 4\n'
                    'stream_replicas = 3\nuser = "lk"\npassword = "secret"\n')
    cluster = ServiceConfig.load(path).cluster
    assert cluster.enabled and cluster.stream == "LK_shop" and cluster.subject(3) == "shop.3"
    assert cluster.connect_options() == {"servers": ["nats://127.0.0.1:4222"], "user": "lk", "password": "secret"}
    assert not ServiceConfig().cluster.enabled  # the default: one server, no NATS


@pytest.mark.parametrize("table, says", [
    ({"urls": "nats://x:4222"}, "a list"),
    ({"collection": "a.b"}, "letters, digits"),
    ({"shards": 0}, "shards must be >= 1"),
    ({"stream_replicas": 7}, "1..5"),
    ({"heartbeat_s": 2, "live_after_s": 1}, "live_after_s"),
    ({"tls_cert": "c.pem"}, "tls_cert and tls_key"),
])
def test_a_bad_cluster_setting_is_named(table, says):
    with pytest.raises(ValueError, match=says):
        ClusterConfig(**table)


def test_an_unknown_cluster_key_is_named(tmp_path):
    path = tmp_path / "lookalike.toml"
    path.write_text('[cluster]\nurl = ["nats://127.0.0.1:4222"]\n')
    with pytest.raises(ValueError, match="unexpected keyword argument 'url'"):
        ServiceConfig.load(path)
