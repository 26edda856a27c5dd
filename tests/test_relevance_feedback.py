"""Relevance feedback (Rocchio) on a constructed case: two groups of products
equally close to the query; liking one of group A and disliking one of group B
must bring group A to the top. Also search ids, remembered searches, the
response's account of what was applied, and the optional click boost."""

import grpc
import numpy as np
import pytest

from lookalike.client import Client, Product, packed
from lookalike.index.collection import SpaceConfig
from lookalike.service.config import ServiceConfig
from lookalike.service.relevance_feedback import FeedbackConfig, SearchFeedback, rocchio
from lookalike.service.server import Server
from lookalike.v1 import search_pb2

DIM = 8
GROUP_A = list(range(0, 10))    # e0 tilted toward e1
GROUP_B = list(range(10, 20))   # e0 tilted toward e2, by the same angles
OTHERS = list(range(20, 30))    # far away (e3..e7)


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def catalog():
    e = np.eye(DIM, dtype=np.float32)
    tilts = np.linspace(0.8, 1.4, 10)
    vectors = {}
    for i, t in enumerate(tilts):
        vectors[GROUP_A[i]] = unit(e[0] + t * e[1])
        vectors[GROUP_B[i]] = unit(e[0] + (t + 0.03) * e[2])  # interleaved with A in the ranking of e0
    for i, id_ in enumerate(OTHERS):
        vectors[id_] = unit(e[3 + i % 5] + 0.1 * e[0])
    return vectors


QUERY = np.eye(DIM, dtype=np.float32)[0]


@pytest.fixture
def client(tmp_path):
    server = Server(ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path / "data"),
                                  spaces=(SpaceConfig("clip", DIM),),
                                  feedback=FeedbackConfig(alpha=1.0, beta=0.75, gamma=0.25)))
    server.start()
    try:
        with Client(server.address) as c:
            reply = c.upsert([Product(id=i, vectors={"clip": packed(v)}) for i, v in catalog().items()])
            assert all(r.status_code == 0 for r in reply.results)
            yield c
    finally:
        server.stop(grace=1)


def ids(reply):
    return [h.id for h in reply.hits]


def test_rocchio_moves_toward_liked_and_away_from_disliked():
    q = np.array([1, 0, 0], np.float32)
    liked = np.array([[0, 1, 0], [0, 0.5, 0]], np.float32)
    disliked = np.array([[0, 0, 1]], np.float32)
    raw = rocchio(q, liked, disliked, 1.0, 0.8, 0.5, normalise=False)
    assert raw == pytest.approx([1.0, 0.8 * 0.75, -0.5])
    moved = rocchio(q, liked, disliked, 1.0, 0.8, 0.5, normalise=True)
    assert np.linalg.norm(moved) == pytest.approx(1.0)
    assert moved == pytest.approx(raw / np.linalg.norm(raw))
    assert rocchio(q, liked[:0], disliked[:0], 1.0, 0.8, 0.5, normalise=True) == pytest.approx(q)


def test_liking_a_and_disliking_b_brings_group_a_to_the_top(client):
    before = ids(client.search(vector=QUERY, k=10))
    assert set(before) & set(GROUP_A) and set(before) & set(GROUP_B)  # mixed without feedback

    liked, disliked = GROUP_A[5], GROUP_B[5]
    reply = client.search(vector=QUERY, k=9, relevance=search_pb2.RelevanceFeedback(
        liked_ids=[liked], disliked_ids=[disliked, 999]))
    assert set(ids(reply)) == set(GROUP_A) - {liked}  # the other nine of A, and the rated ones left out
    applied = reply.relevance
    assert (applied.alpha, applied.beta, applied.gamma) == pytest.approx((1.0, 0.75, 0.25))
    assert (applied.liked_used, applied.disliked_used, list(applied.not_found_ids)) == (1, 1, [999])
    assert applied.rated_excluded

    kept = client.search(vector=QUERY, k=10, relevance=search_pb2.RelevanceFeedback(
        liked_ids=[liked], include_rated=True))
    assert liked in ids(kept) and not kept.relevance.rated_excluded
    assert not client.search(vector=QUERY, k=10).HasField("relevance")


def test_a_previous_search_id_carries_its_query(client):
    first = client.search(vector=QUERY, k=5)
    liked = GROUP_B[0]
    by_id = client.search(k=9, relevance=search_pb2.RelevanceFeedback(search_id=first.search_id, liked_ids=[liked]))
    explicit = client.search(vector=QUERY, k=9, relevance=search_pb2.RelevanceFeedback(liked_ids=[liked]))
    assert ids(by_id) == ids(explicit)
    assert set(ids(by_id)) <= set(GROUP_B)
    assert by_id.relevance.from_search_id == first.search_id
    assert by_id.search_id not in (first.search_id, explicit.search_id)
    # Feedback on feedback: the remembered query is the moved one.
    again = client.search(k=5, relevance=search_pb2.RelevanceFeedback(search_id=by_id.search_id))
    assert set(ids(again)) <= set(GROUP_B)


def test_more_like_this_keeps_its_product_out_through_feedback_rounds(client):
    first = client.search(product_id=GROUP_A[0], k=5)
    assert GROUP_A[0] not in ids(first)
    again = client.search(k=29, relevance=search_pb2.RelevanceFeedback(search_id=first.search_id))
    assert len(ids(again)) == 29 and GROUP_A[0] not in ids(again)


@pytest.mark.parametrize("relevance, query, code, message", [
    (search_pb2.RelevanceFeedback(search_id="0" * 32), None, grpc.StatusCode.NOT_FOUND, "no remembered search"),
    (search_pb2.RelevanceFeedback(liked_ids=[1], disliked_ids=[1]), QUERY, grpc.StatusCode.INVALID_ARGUMENT,
     r"both liked and disliked: \[1\]"),
    (search_pb2.RelevanceFeedback(liked_ids=list(range(101))), QUERY, grpc.StatusCode.INVALID_ARGUMENT, "at most 100"),
])
def test_bad_feedback_is_named(client, relevance, query, code, message):
    with pytest.raises(grpc.RpcError) as e:
        client.search(vector=query, k=5, relevance=relevance)
    assert e.value.code() == code
    assert message.replace("\\", "") in e.value.details()


def test_a_search_id_with_a_query_is_refused(client):
    first = client.search(vector=QUERY, k=5)
    with pytest.raises(grpc.RpcError) as e:
        client.search(vector=QUERY, k=5, relevance=search_pb2.RelevanceFeedback(search_id=first.search_id))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "leave query and using unset" in e.value.details()


def test_remembered_searches_are_bounded():
    feedback = SearchFeedback(FeedbackConfig(remember_searches=2))
    first = feedback.remember("clip", QUERY, "")
    feedback.remember("clip", QUERY, "")
    feedback.remember("clip", QUERY, "")
    assert feedback.recent.get(first) is None


def test_a_remembered_query_is_its_own_and_holds_nothing_else():
    feedback = SearchFeedback()
    sent = np.frombuffer(packed(QUERY).data, dtype=np.float32)  # a request's vector: immutable bytes of its size
    assert feedback.recent.get(feedback.remember("clip", sent, "")).vector is sent
    writable = QUERY.copy()
    kept = feedback.recent.get(feedback.remember("clip", writable, "")).vector
    writable[:] = 0
    assert kept == pytest.approx(QUERY)
    batch = np.stack([QUERY, QUERY])  # encoder outputs: a row must not keep the whole batch alive
    row = feedback.recent.get(feedback.remember("clip", batch[0], "")).vector
    assert row.base is None and row == pytest.approx(QUERY)
    widened = feedback.recent.get(feedback.remember("clip", QUERY.astype(np.float16), "")).vector
    assert widened.dtype == np.float32 and widened == pytest.approx(QUERY)


def test_clicks_for_the_same_words_boost_later_searches():
    ids_ = np.array([1, 2, 3], dtype=np.int64)
    scores = np.array([0.90, 0.89, 0.50], dtype=np.float32)
    off = SearchFeedback()
    search = off.remember("clip", QUERY, "red dress")
    off.count(off.boost_clicks(search, [2]))
    assert off.boost("clip", "red dress", ids_, scores)[0].tolist() == [1, 2, 3]  # off by default

    on = SearchFeedback(FeedbackConfig(boost_clicks=True, boost_weight=0.02))
    search = on.remember("clip", QUERY, "Red  Dress")
    on.count(on.boost_clicks(search, [2, 2]))
    boosted_ids, boosted_scores = on.boost("clip", "red dress", ids_, scores)  # same words, other spacing and case
    assert boosted_ids.tolist() == [2, 1, 3]
    assert boosted_scores[0] == pytest.approx(0.89 + 0.02 * np.log2(3))
    assert on.boost("clip", "blue dress", ids_, scores)[0].tolist() == [1, 2, 3]
    assert on.boost("visual", "red dress", ids_, scores)[0].tolist() == [1, 2, 3]


def test_click_boost_keeps_few_products_per_query():
    feedback = SearchFeedback(FeedbackConfig(boost_clicks=True, boost_products=2, boost_queries=1))
    search = feedback.remember("clip", QUERY, "hat")
    feedback.count(feedback.boost_clicks(search, [1, 1, 2, 3]))
    assert set(feedback.clicks.clicks("clip", "hat")) == {1, 3}  # 2 was the least clicked when 3 came
    other = feedback.remember("clip", QUERY, "scarf")
    feedback.count(feedback.boost_clicks(other, [5]))
    assert feedback.clicks.clicks("clip", "hat") == {}  # one query text kept
