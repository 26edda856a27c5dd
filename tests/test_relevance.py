"""The labelled catalog (its reader and the emoji builder) and the relevance
report over a local Collection."""

import json

import numpy as np
import pytest
from PIL import Image

from lookalike.encoders import Encoder, RuntimeConfig
from lookalike.eval.catalogs import build_emoji_catalog
from lookalike.eval.relevance import (
    embed_catalog,
    exact_rankings,
    load_labelled_catalog,
    query_spaces,
    relevance_report,
    score,
)
from synthetic_catalog import make_synthetic_catalog


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return load_labelled_catalog(make_synthetic_catalog(tmp_path_factory.mktemp("synthetic"), per_category=6))


def test_the_reader_resolves_categories_and_listed_ids(synthetic):
    assert len(synthetic.ids) == 24 and len(synthetic.of_kind("image")) == 24 and len(synthetic.of_kind("text")) == 24
    query = synthetic.of_kind("image")[0]
    assert synthetic.relevant(query) == {int(i) for i, c in zip(synthetic.ids, synthetic.categories) if c == "shoe"}
    subset = synthetic.subset([0, 1, 2])
    assert list(subset.ids) == [0, 1, 2] and {q.item for q in subset.queries} == {0, 1, 2}


def test_a_bad_query_line_is_named(tmp_path):
    folder = make_synthetic_catalog(tmp_path, per_category=2)
    with open(folder / "queries.jsonl", "a") as f:
        f.write(json.dumps({"id": "x", "text": "hat", "relevant_category": "hats"}) + "\n")
    with pytest.raises(ValueError, match=r"queries.jsonl, line 17: query 'x': its relevant_category 'hats' is no product's category"):
        load_labelled_catalog(folder)
    lines = (folder / "queries.jsonl").read_text().splitlines()
    (folder / "queries.jsonl").write_text("\n".join(lines[:16] + lines[:1]) + "\n")
    with pytest.raises(ValueError, match="line 17: id 'i0' repeats the query of line 1"):
        load_labelled_catalog(folder)


def test_the_report_scores_what_the_collection_returns(synthetic, tiny_clip_bundle):
    encoder = Encoder(tiny_clip_bundle, RuntimeConfig(device="cpu", intra_op_threads=1))
    report = relevance_report(synthetic, encoder)
    assert set(report) == {"image", "text"}
    # The collection's search (int8 codes re-ranked on float16 copies, as the
    # server stores them) must score as exact float32 search does, up to the
    # order of near-ties: the random tiny CLIP puts its vectors close together.
    embeddings = embed_catalog(encoder, synthetic)
    space = query_spaces(encoder.bundle.manifest)["image"]
    exact = exact_rankings(embeddings.image_queries[space], embeddings.products[space], synthetic.ids, 10)
    assert report["image"] == pytest.approx(score(synthetic, "image", exact), abs=0.01)
    for metrics in report.values():
        assert metrics["queries"] == 24
        assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if k != "queries")


def test_the_emoji_catalog_pairs_two_designs_of_each_item(tmp_path):
    products, queries = build_emoji_catalog(tmp_path, ["musical-instrument", "computer"])
    catalog = load_labelled_catalog(tmp_path)
    assert products == len(catalog.ids) >= 20 and queries == len(catalog.queries)
    assert set(catalog.categories) == {"musical-instrument", "computer"}
    assert len(catalog.of_kind("text")) == products and len(catalog.of_kind("image")) >= products - 2
    guitar = next(q for q in catalog.of_kind("text") if q.text == "guitar")
    assert catalog.categories[list(catalog.ids).index(guitar.item)] == "musical-instrument"
    # The image query is another drawing, not the catalog's picture resized.
    image_query = next(q for q in catalog.of_kind("image") if q.item == guitar.item)
    ours = Image.open(tmp_path / catalog.images[guitar.item]).convert("RGBA").resize((64, 64))
    theirs = Image.open(image_query.image).convert("RGBA").resize((64, 64))
    assert np.abs(np.asarray(ours, float) - np.asarray(theirs, float)).mean() > 10
    assert "CC-BY 4.0" in (tmp_path / "LICENSES.txt").read_text()
    with pytest.raises(ValueError, match="unknown subgroup"):
        build_emoji_catalog(tmp_path, ["flags"])


def test_the_report_command_of_an_image_only_bundle(synthetic, tmp_path, capsys):
    from lookalike.eval.relevance import main
    from synthetic_catalog import make_tiny_conv_bundle

    out = tmp_path / "report.json"
    assert main(["--catalog", str(synthetic.folder), "--bundle", str(make_tiny_conv_bundle(tmp_path / "b")),
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"image"} and report["image"]["queries"] == 24  # no text tower: no text queries
    assert "precision@5" in capsys.readouterr().out
