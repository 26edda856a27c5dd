"""The labelled catalog (its reader and the emoji builder) and the relevance
report over a local Collection."""

import json

import numpy as np
import pytest
from PIL import Image

from lookalike.encoders import Encoder, RuntimeConfig
from lookalike.eval.catalogs import build_emoji_catalog
from lookalike.eval.fashion_catalog import CATEGORIES, PHRASES, SLUGS, build_fashion_catalog
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


def write_idx(path, array, magic):
    import gzip

    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def make_fashion_files(folder, per_category=(3, 2)):
    """Fashion-MNIST's four IDX files, small: the pixels of an image of
    category c are all 20 c + its row number (so an image is recognisable)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, (images, labels) in (("train", per_category[0], ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")),
                                       ("test", per_category[1], ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))):
        y = np.repeat(np.arange(10), n)
        x = np.stack([np.full((28, 28), 20 * c + row, np.uint8) for row, c in enumerate(y)])
        write_idx(folder / images, x, 0x803)
        write_idx(folder / labels, y, 0x801)
    return folder


def test_the_fashion_catalog_keeps_queries_apart_from_products(tmp_path):
    source = make_fashion_files(tmp_path / "fashion-mnist")
    products, queries = build_fashion_catalog(tmp_path / "out", source, per_category=2, queries_per_category=1)
    catalog = load_labelled_catalog(tmp_path / "out")
    assert products == len(catalog.ids) == 20 and queries == len(catalog.queries) == 10 + 4 * 10
    assert sorted(set(catalog.categories)) == sorted(SLUGS) and catalog.titles[0] == CATEGORIES[0]
    # Products come from the training split, image queries from the test split,
    # negated back to dark on white; no query was made from a product.
    first = np.asarray(Image.open(tmp_path / "out" / catalog.images[0]))
    row = int(catalog.images[0].split("-")[1].split(".")[0])
    assert catalog.images[0].startswith("catalog/train-") and (first == 255 - (20 * 0 + row)).all()
    image_queries = catalog.of_kind("image")
    assert all(q.image.name.startswith("test-") and q.item is None for q in image_queries)
    assert [q.relevant_category for q in image_queries] == list(SLUGS)
    words = {q.text: q.relevant_category for q in catalog.of_kind("text")}
    assert words["chelsea boot"] == "ankle-boot" and len(words) == sum(len(p) for p in PHRASES)
    assert "MIT" in (tmp_path / "out" / "LICENSES.txt").read_text()
    with pytest.raises(ValueError, match="has 3 images, 4 were asked for"):
        build_fashion_catalog(tmp_path / "more", source, per_category=4)


def test_a_damaged_fashion_file_is_named(tmp_path):
    source = make_fashion_files(tmp_path / "fashion-mnist")
    write_idx(source / "t10k-labels-idx1-ubyte.gz", np.zeros((2, 2)), 0x803)  # images where labels belong
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz: not an IDX file of 1-d"):
        build_fashion_catalog(tmp_path / "out", source)
    (source / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        build_fashion_catalog(tmp_path / "out", source)
