"""Offline evaluation: the labelled query file (every mistake named with its
line), the per-kind metrics and ANN recall on hand-worked rankings, and
`lookalike eval` end to end on a data directory served in-process with the tiny
CLIP bundle (table, JSON and PNG)."""

import json
import math

import pytest

from lookalike.eval.offline import EvalError, ann_recall, evaluate, parse_ks
from lookalike.eval.queries import QueryFileError, load_queries


def write(tmp_path, *lines, name="queries.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("line, problem", [
    ('{"id": "q", "text": "hat", "relevant_ids": [1]', "line 2: not valid JSON"),
    ('["q"]', "line 2: a query is a JSON object"),
    ('{"id": "q", "relevant_ids": [1]}', "line 2: give 'image'"),
    ('{"id": "q", "text": "hat"}', "line 2: give exactly one of 'relevant_ids' and 'relevant_category'"),
    ('{"id": "q", "text": "hat", "relevant_ids": [1], "relevant_category": "hats"}', "line 2: give exactly one"),
    ('{"id": "q", "text": "hat", "relevant_ids": []}', "line 2: 'relevant_ids' must be a non-empty list"),
    ('{"id": "q", "text": "hat", "relevant_ids": [1, "2", -3]}', "line 2: 'relevant_ids' holds what is not"),
    ('{"id": "q", "text": "hat", "relevant_id": [1]}', "line 2: unknown key(s) ['relevant_id']"),
    ('{"id": "q", "image": "missing.jpg", "relevant_ids": [1]}', "line 2: image"),
    ('{"id": "q", "text": "  ", "relevant_ids": [1]}', "line 2: 'text' must be non-empty words"),
    ('{"text": "hat", "relevant_ids": [1]}', "line 2: 'id' is required"),
    ('{"id": "a", "text": "hat", "relevant_ids": [1]}', "line 2: id 'a' repeats the query of line 1"),
    ('{"id": "q", "text": "hat", "relevant_ids": [1], "using": 3}', "line 2: 'using' must be"),
    ('{"id": "q", "text": "hat", "relevant_ids": [1], "item": "7"}', "line 2: 'item' must be a product id"),
])
def test_a_bad_query_file_names_the_line_and_the_problem(tmp_path, line, problem):
    path = write(tmp_path, '{"id": "a", "text": "cap", "relevant_ids": [2]}', line)
    with pytest.raises(QueryFileError) as e:
        load_queries(path)
    assert f"{path}, " in str(e.value) and problem in str(e.value)


def test_query_kinds_and_paths(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"not read here")
    path = write(tmp_path, '{"id": 1, "image": "photos/a.jpg", "relevant_ids": [3]}', "",
                 '{"id": "t", "text": "hat", "relevant_category": "hats", "using": "joint", "item": 9}',
                 '{"id": "h", "image": "photos/a.jpg", "text": "red", "relevant_ids": [4, 5]}')
    queries = load_queries(path)
    assert [(q.id, q.kind, q.line) for q in queries] == [("1", "image", 1), ("t", "text", 3), ("h", "hybrid", 4)]
    assert queries[0].image == tmp_path / "photos" / "a.jpg"
    assert queries[1].using == "joint" and queries[2].relevant_ids == frozenset({4, 5})
    assert queries[1].item == 9 and queries[0].item is None
    with pytest.raises(QueryFileError, match="no queries"):
        load_queries(write(tmp_path, "", name="empty.jsonl"))


class FakeSearcher:
    def __init__(self, index, exact, categories):
        self.index, self.exact, self.categories = index, exact, categories
        self.listed = []

    def search(self, query, k, exact):
        return (self.exact if exact else self.index)[query.id][:k]

    def ids_with(self, attribute, value, using):
        self.listed.append((attribute, value))
        return self.categories.get(value, set())


def test_metrics_per_kind_and_ann_recall_on_hand_worked_rankings(tmp_path):
    path = write(tmp_path, '{"id": "q1", "text": "red", "relevant_ids": [1, 2]}',
                 '{"id": "q2", "text": "hat", "relevant_category": "hats"}',
                 '{"id": "q3", "text": "cap", "relevant_category": "hats"}')
    searcher = FakeSearcher(index={"q1": [5, 1, 7, 2, 9], "q2": [3, 4], "q3": [4, 8]},
                            exact={"q1": [1, 2, 5, 7, 9], "q2": [3, 4], "q3": [3, 4]},
                            categories={"hats": {3}})
    report = evaluate(load_queries(path), searcher, ks=(5, 1), category_attribute="kind")
    assert report.ks == (1, 5)
    assert searcher.listed == [("kind", "hats")]  # listed once, shared by both queries
    q1 = report.results[0]
    assert q1.metrics["precision@1"] == 0 and q1.metrics["precision@5"] == pytest.approx(2 / 5)
    assert q1.metrics["recall@5"] == 1 and q1.metrics["mrr"] == 0.5
    ideal = 1 + 1 / math.log2(3)
    assert q1.metrics["ndcg@5"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert q1.exact_metrics["precision@1"] == 1 and q1.exact_metrics["ndcg@5"] == pytest.approx(1)
    assert q1.ann_recall == {"ann_recall@1": 0.0, "ann_recall@5": 1.0}
    q3 = report.results[2]
    assert q3.metrics["mrr"] == 0 and q3.exact_metrics["mrr"] == 1 and q3.ann_recall["ann_recall@1"] == 0
    text = report.by_kind["text"]
    assert text.queries == 3 and set(report.by_kind) == {"text", "all"}
    assert text.metrics["precision@1"] == pytest.approx(1 / 3)      # q2 only
    assert text.exact_metrics["precision@1"] == pytest.approx(1)    # exact finds all three
    assert text.ann_recall["ann_recall@1"] == pytest.approx(1 / 3)
    assert text.metrics["mrr"] == pytest.approx((0.5 + 1 + 0) / 3)


def test_a_category_nobody_has_is_an_error_naming_the_query(tmp_path):
    path = write(tmp_path, '{"id": "q9", "text": "hat", "relevant_category": "hatz"}')
    with pytest.raises(EvalError, match=r"line 1: query 'q9': no product has category = 'hatz'"):
        evaluate(load_queries(path), FakeSearcher({}, {}, {}))


def test_ann_recall_and_k_parsing():
    assert ann_recall([1, 2, 3], [3, 4, 5], 3) == pytest.approx(1 / 3)
    assert ann_recall([], [], 5) == 1.0
    assert parse_ks("10, 1,5,5") == (1, 5, 10)
    with pytest.raises(ValueError, match="--k"):
        parse_ks("1,x")
    with pytest.raises(ValueError, match="--k"):
        parse_ks("0")


def test_lookalike_eval_on_a_data_directory(tiny_clip_bundle, tmp_path, capsys):
    from test_service_encoders import picture

    from lookalike.cli import main
    from lookalike.client import Client, Product
    from lookalike.service.config import ServiceConfig
    from lookalike.service.server import Server
    from lookalike.v1 import search_pb2

    config = tmp_path / "lookalike.toml"
    config.write_text(f'model = "{tiny_clip_bundle.as_posix()}"\n[schema]\ncategory = "keyword"\n')
    data = tmp_path / "data"
    server = Server(ServiceConfig.load(config, address="127.0.0.1:0", data_dir=str(data)))
    server.start()
    try:
        with Client(server.address) as client:
            kinds = ["dresses", "hats"]
            reply = client.upsert([Product(id=i, image=picture(i), title=f"{kinds[i % 2]} {i}", attributes={
                "category": search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=[kinds[i % 2]]))})
                for i in range(12)])
            assert all(r.status_code == 0 for r in reply.results)
    finally:
        server.stop(grace=1)

    (tmp_path / "q").mkdir()
    lines = []
    for i in range(4):
        (tmp_path / "q" / f"{i}.img").write_bytes(picture(i))
        lines.append(json.dumps({"id": f"img{i}", "image": f"{i}.img", "relevant_ids": [i]}))
    lines.append(json.dumps({"id": "txt", "text": "hats", "relevant_category": "hats"}))
    lines.append(json.dumps({"id": "hyb", "image": "1.img", "text": "hats", "relevant_category": "hats"}))
    queries = write(tmp_path / "q", *lines)
    out_json, out_png = tmp_path / "report.json", tmp_path / "report.png"
    code = main(["eval", str(queries), "--data-dir", str(data), "--config", str(config), "--k", "1,3",
                 "--json", str(out_json), "--plot", str(out_png)])
    assert code == 0
    printed = capsys.readouterr().out
    for word in ("image", "text", "hybrid", "all", "img3", "ANN recall"):
        assert word in printed
    report = json.loads(out_json.read_text())
    assert report["ks"] == [1, 3] and len(report["queries"]) == 6
    image = report["by_kind"]["image"]
    # A photo of a product is exactly its own nearest neighbour: the exact scan ranks it first.
    assert image["exact_metrics"]["precision@1"] == 1.0 and image["exact_metrics"]["recall@3"] == 1.0
    hats = next(q for q in report["queries"] if q["id"] == "txt")
    assert hats["relevant"] == 6  # the odd ids of twelve
    assert all(0.0 <= v <= 1.0 for v in report["by_kind"]["all"]["ann_recall"].values())
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    bad = write(tmp_path / "q", '{"id": "x", "text": "hats", "relevant_category": "hats", "using": "nope"}',
                name="bad.jsonl")
    assert main(["eval", str(bad), "--data-dir", str(data), "--config", str(config)]) == 1
    assert "line 1: query 'x'" in capsys.readouterr().err
