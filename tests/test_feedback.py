"""Shoppers' feedback: the event store, the online metrics of a scripted session
(rates worked out by hand below), retention, and the FeedbackService over gRPC
with search ids from real searches."""

import json
import re

import grpc
import numpy as np
import pytest

from lookalike.client import Client, Product, packed
from lookalike.eval.online import online_metrics, parse_time_ms
from lookalike.index.collection import SpaceConfig
from lookalike.service.config import Limits, ServiceConfig
from lookalike.service.feedback_servicer import FeedbackServicer
from lookalike.service.relevance_feedback import FeedbackConfig, SearchFeedback
from lookalike.service.server import Server
from lookalike.store.feedback import BoostClick, Event, FeedbackStore
from lookalike.v1 import feedback_pb2

DAY_MS = 86_400_000
T0 = 1_800_000_000_000  # a fixed "now" in ms

# s1: three shown, the second clicked, carted and bought.
# s2: two shown, nothing clicked (abandoned).
# s3: two shown, both clicked, one carted.
# s4: shown before the window: outside it.
# s5: a click in the window whose impression was before it: a click, not a search.
SESSION = [
    ("s1", 1, 1, "impression", T0), ("s1", 2, 2, "impression", T0), ("s1", 3, 3, "impression", T0),
    ("s1", 2, 2, "click", T0 + 10), ("s1", 2, 2, "add_to_cart", T0 + 20), ("s1", 2, 2, "purchase", T0 + 30),
    ("s2", 4, 1, "impression", T0 + 100), ("s2", 5, 2, "impression", T0 + 100),
    ("s3", 1, 1, "impression", T0 + 200), ("s3", 6, 2, "impression", T0 + 200),
    ("s3", 1, 1, "click", T0 + 210), ("s3", 6, 2, "click", T0 + 220), ("s3", 6, 2, "add_to_cart", T0 + 230),
    ("s4", 7, 1, "impression", T0 - 5000),
    ("s5", 8, 1, "click", T0 + 300),
]
# In [T0, T0 + 1000): searches s1 s2 s3 = 3; impressions 3 + 2 + 2 = 7; clicks 1 + 2 + 1 (s5) = 4;
# add to cart 2; purchases 1; searches with a click: s1, s3 = 2.
EXPECTED = dict(searches=3, impressions=7, clicks=4, add_to_carts=2, purchases=1, searches_with_click=2,
                click_through_rate=4 / 7, add_to_cart_rate=2 / 7, purchase_through_rate=1 / 7, abandonment_rate=1 / 3)


def events(rows):
    return [Event(*row) for row in rows]


def test_online_metrics_of_a_scripted_session(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite3", retention_ms=30 * DAY_MS, max_events=1000)
    store.record(events(SESSION), now_ms=T0)
    counts = store.counts(T0, T0 + 1000)
    metrics = online_metrics(**vars(counts))
    assert metrics.as_dict() == pytest.approx(EXPECTED)
    # The whole history: s4 is one more search, with an impression and no click.
    everything = online_metrics(**vars(store.counts()))
    assert (everything.searches, everything.impressions, everything.abandonment_rate) == (4, 8, pytest.approx(2 / 4))


def test_events_survive_a_reopen_and_a_bad_batch_stores_nothing(tmp_path):
    path = tmp_path / "feedback.sqlite3"
    store = FeedbackStore(path, retention_ms=DAY_MS, max_events=1000)
    store.record(events(SESSION[:3]), now_ms=T0)
    with pytest.raises(ValueError, match="unknown event kind 'view'"):
        store.record(events([("s9", 1, 1, "impression", T0), ("s9", 1, 1, "view", T0)]), now_ms=T0)
    store.close()
    reopened = FeedbackStore(path, retention_ms=DAY_MS, max_events=1000)
    assert len(reopened) == 3
    assert reopened.counts().impressions == 3


def test_retention_bounds_the_store_by_age_and_by_count(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite3", retention_ms=DAY_MS, max_events=5)
    store.record(events([("old", 1, 1, "impression", T0 - 2 * DAY_MS)]), now_ms=T0 - 2 * DAY_MS)
    store.record(events([("new", i, i, "impression", T0) for i in range(3)]), now_ms=T0)
    assert len(store) == 3  # the two-day-old event is past the one-day retention
    store.record(events([("newer", i, i, "impression", T0 + 1) for i in range(4)]), now_ms=T0 + 1)
    assert len(store) == 5  # the two oldest of seven went
    counts = store.counts()
    assert (counts.searches, counts.impressions) == (2, 5)


def test_the_boosts_clicks_are_kept_under_the_same_bounds(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite3", retention_ms=DAY_MS, max_events=3)
    store.record(events([("s1", 1, 1, "click", T0)]), now_ms=T0 - 2 * DAY_MS,
                 boost_clicks=[BoostClick("clip", "old hat", 1)])
    store.record(events([("s2", i, i, "click", T0) for i in range(4)]), now_ms=T0,
                 boost_clicks=[BoostClick("clip", "red dress", i) for i in range(4)])
    assert store.boost_clicks() == [BoostClick("clip", "red dress", i) for i in (1, 2, 3)]  # oldest first
    with pytest.raises(ValueError, match="unknown event kind"):  # a bad batch stores none of its clicks either
        store.record(events([("s3", 1, 1, "view", T0)]), now_ms=T0, boost_clicks=[BoostClick("clip", "x", 9)])
    assert len(store.boost_clicks()) == 3


class Context:
    """What a servicer method needs of a gRPC context on its success path."""

    def abort(self, code, details):
        raise AssertionError(f"aborted: {code} {details}")


def test_the_click_boost_is_rebuilt_from_the_store_after_a_restart(tmp_path):
    path = tmp_path / "feedback.sqlite3"
    boost = FeedbackConfig(boost_clicks=True)
    before = SearchFeedback(boost)
    servicer = FeedbackServicer(before, Limits())
    servicer.attach(FeedbackStore(path, retention_ms=DAY_MS, max_events=100))
    worded = before.remember("clip", np.ones(4, np.float32), "Red  Dress")
    wordless = before.remember("clip", np.ones(4, np.float32), "")  # a vector query: nothing to boost
    servicer.Feedback(feedback_pb2.FeedbackRequest(events=[
        event(worded, 7, 1, "impression"), event(worded, 7, 1, "click"), event(worded, 7, 1, "click"),
        event(worded, 3, 2, "click"), event(wordless, 5, 1, "click")]), Context())
    assert before.clicks.clicks("clip", "red dress") == {7: 2, 3: 1}

    after = SearchFeedback(boost)  # a restarted server: nothing remembered, the same file
    FeedbackServicer(after, Limits()).attach(FeedbackStore(path, retention_ms=DAY_MS, max_events=100))
    assert after.clicks.clicks("clip", "red dress") == {7: 2, 3: 1}
    assert after.recent.get(worded) is None


def test_rates_with_nothing_to_divide_by_are_zero():
    m = online_metrics(0, 0, 0, 0, 0, 0)
    assert (m.click_through_rate, m.abandonment_rate) == (0.0, 0.0)


def test_window_bounds_parse():
    now = T0 / 1000
    assert parse_time_ms("24h", now) == T0 - DAY_MS
    assert parse_time_ms("now", now) == T0
    assert parse_time_ms("2027-01-15T08:00:00", now) == parse_time_ms("2027-01-15T08:00:00+00:00", now)
    with pytest.raises(ValueError, match="not a time"):
        parse_time_ms("yesterday", now)


def config(tmp_path):
    return ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path / "data"), spaces=(SpaceConfig("clip", 8),))


@pytest.fixture
def served(tmp_path):
    server = Server(config(tmp_path))
    server.start()
    try:
        with Client(server.address) as client:
            rng = np.random.default_rng(0)
            reply = client.upsert([Product(id=i, vectors={"clip": packed(rng.standard_normal(8))}) for i in range(20)])
            assert all(r.status_code == 0 for r in reply.results)
            yield server, client
    finally:
        server.stop(grace=1)


def event(search_id, product_id, position, kind, time_ms=0):
    return feedback_pb2.FeedbackEvent(search_id=search_id, product_id=product_id, position=position,
                                      kind=getattr(feedback_pb2, f"EVENT_KIND_{kind.upper()}"), time_ms=time_ms)


def test_feedback_over_grpc_on_real_search_ids(served, tmp_path):
    server, client = served
    replies = [client.search(vector=np.eye(8)[i], k=3) for i in range(3)]
    ids = [r.search_id for r in replies]
    assert all(ids) and len(set(ids)) == 3
    sent = []
    for reply, clicked in zip(replies, (0, None, 1)):  # the second search is abandoned
        for position, hit in enumerate(reply.hits, 1):
            sent.append(event(reply.search_id, hit.id, position, "impression"))
        if clicked is not None:
            sent.append(event(reply.search_id, reply.hits[clicked].id, clicked + 1, "click"))
    sent.append(event(ids[0], replies[0].hits[0].id, 1, "purchase"))
    assert client.feedback(sent).recorded == len(sent)

    stats = client.feedback_stats()
    assert (stats.searches, stats.impressions, stats.clicks, stats.purchases) == (3, 9, 2, 1)
    assert stats.click_through_rate == pytest.approx(2 / 9)
    assert stats.purchase_through_rate == pytest.approx(1 / 9)
    assert stats.abandonment_rate == pytest.approx(1 / 3)
    assert stats.events_kept == len(sent)
    future = client.feedback_stats(since_ms=T0 * 10)
    assert (future.searches, future.impressions) == (0, 0)



@pytest.mark.parametrize("bad, message", [
    (event("", 1, 1, "click"), r"events\[1\].search_id: required"),
    (event("s", -1, 1, "click"), r"events\[1\].product_id: must be >= 0"),
    (feedback_pb2.FeedbackEvent(search_id="s", product_id=1), r"events\[1\].kind: set one of"),
    (event("s", 1, 1, "click", time_ms=-5), r"events\[1\].time_ms"),
    (event("x" * 200, 1, 1, "click"), r"events\[1\].search_id: 200 characters"),
])
def test_a_bad_event_fails_the_call_and_stores_nothing(served, bad, message):
    _, client = served
    with pytest.raises(grpc.RpcError) as e:
        client.feedback([event("s", 1, 1, "impression"), bad])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, e.value.details()), e.value.details()
    assert client.feedback_stats().events_kept == 0


def test_an_empty_or_backwards_window_is_refused(served):
    _, client = served
    with pytest.raises(grpc.RpcError) as e:
        client.feedback([])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        client.feedback_stats(since_ms=T0, until_ms=T0 - 1)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "until_ms" in e.value.details()


def test_acknowledged_events_survive_a_restart(tmp_path):
    for round in range(2):
        server = Server(config(tmp_path))
        server.start()
        try:
            with Client(server.address) as client:
                if round == 0:
                    client.feedback([event("s1", 1, 1, "impression"), event("s1", 1, 1, "click")])
                else:
                    stats = client.feedback_stats()
                    assert (stats.impressions, stats.clicks, stats.events_kept) == (1, 1, 2)
        finally:
            server.stop(grace=1)
    assert (tmp_path / "data" / "feedback.sqlite3").is_file()


def test_the_feedback_service_needs_an_api_key_and_a_read_key_will_do(tmp_path):
    reader_key = "r" * 24
    server = Server(ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path / "data"),
                                  spaces=(SpaceConfig("clip", 8),), api_keys={reader_key: "read"}))
    server.start()
    try:
        with Client(server.address) as anonymous, Client(server.address, api_key=reader_key) as reader:
            for call in (lambda c: c.feedback([event("s", 1, 1, "click")]), lambda c: c.feedback_stats()):
                with pytest.raises(grpc.RpcError) as e:
                    call(anonymous)
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert reader.feedback([event("s", 1, 1, "click")]).recorded == 1
            assert reader.feedback_stats().clicks == 1
    finally:
        server.stop(grace=1)


def test_lookalike_eval_online_on_a_data_directory(tmp_path, capsys):
    from lookalike.cli import main

    server = Server(config(tmp_path))
    server.start()
    try:
        with Client(server.address) as client:
            client.feedback([event(*row[:3], row[3], row[4]) for row in SESSION])
    finally:
        server.stop(grace=1)
    toml = tmp_path / "lookalike.toml"
    toml.write_text('[[spaces]]\nname = "clip"\ndim = 8\n')
    out = tmp_path / "online.json"
    since, until = "2027-01-15T08:00:00", "2027-01-15T08:00:01"  # T0 is 2027-01-15T08:00:00 UTC
    assert parse_time_ms(since, 0) == T0
    assert main(["eval", "online", "--data-dir", str(tmp_path / "data"), "--config", str(toml),
                 "--since", since, "--until", until, "--json", str(out)]) == 0
    assert "abandonment                0.3333" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["since_ms"] == T0 and report["until_ms"] == T0 + 1000
    assert {k: report[k] for k in EXPECTED} == pytest.approx(EXPECTED)
