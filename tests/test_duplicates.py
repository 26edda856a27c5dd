"""Duplicate detection: pair features, the numpy logistic classifier and its
file in the model bundle, the threshold range search, and training on
generated near-duplicates (crops, JPEG recompression, colour jitter, retitled
copies) against distinct products."""

import json
import shutil

import numpy as np
import pytest

from lookalike.duplicates import PairFeatures, ProductView, load_classifier, neighbours_above, save_classifier
from lookalike.duplicates.classifier import fit, precision_recall
from lookalike.duplicates.features import title_jaccard
from lookalike.duplicates.synthetic import make_catalog, write_pairs
from lookalike.duplicates.train import train_duplicates
from lookalike.encoders import BundleError, load_bundle
from lookalike.index.collection import Collection, SpaceConfig


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_features_of_a_pair_by_hand():
    a = ProductView(1, {"visual": unit([1, 0])}, "Red floral dress", unit([1, 0, 0]),
                    {"price": 40.0, "brand": ["acme"], "category": ["dresses"]})
    b = ProductView(2, {"visual": unit([1, 1])}, "floral dress, new", unit([1, 1, 0]),
                    {"price": 50.0, "brand": ["acme"]})
    f = PairFeatures(("visual",))
    row = dict(zip(f.feature_names, f(a, b)))
    assert row["image_cos_visual"] == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert row["title_cos"] == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert row["title_jaccard"] == pytest.approx(2 / 4)            # {floral, dress} of {red, floral, dress, new}
    assert (row["price_ratio"], row["price_known"]) == (0.8, 1.0)
    assert (row["brand_equal"], row["brand_known"]) == (1.0, 1.0)
    assert (row["category_equal"], row["category_known"]) == (0.0, 0.0)  # b has no category
    assert title_jaccard("", "dress") == 0.0


def test_logistic_regression_learns_a_planted_rule():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (2 * x[:, 0] - x[:, 2] + 0.3 * rng.normal(size=400) > 0).astype(float)
    model = fit(x[:300], y[:300], ["a", "b", "c"])
    assert model.weights[0] > 0 > model.weights[2] and abs(model.weights[1]) < 0.5 * model.weights[0]
    report = precision_recall(model.probability(x[300:]), y[300:])
    assert report["precision"] > 0.9 and report["recall"] > 0.9
    with pytest.raises(ValueError, match="both duplicate"):
        fit(x, np.ones(400), ["a", "b", "c"])


def test_the_classifier_lives_in_the_bundle_and_is_validated(tiny_clip_bundle, tmp_path):
    bundle = shutil.copytree(tiny_clip_bundle, tmp_path / "bundle")
    assert load_classifier(bundle) is None
    x = np.array([[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.2]])
    model = fit(x, np.array([0, 1, 0, 1]), ["image_cos_visual", "title_cos"])
    save_classifier(model, bundle)
    assert load_bundle(bundle).manifest.extras == {"duplicates": "duplicates.json"}
    loaded = load_classifier(bundle)
    assert np.allclose(loaded.probability(x), model.probability(x))

    doc = json.loads((bundle / "duplicates.json").read_text())
    doc["weights"] = [1.0]
    (bundle / "duplicates.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="weights: expected 2 finite numbers"):
        load_classifier(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["extras"]["labels"] = "labels.json"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="extras.labels: unknown role"):
        load_bundle(bundle)
    del manifest["extras"]["labels"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    (bundle / "duplicates.json").unlink()
    with pytest.raises(BundleError, match="extras.duplicates: file 'duplicates.json' is not in the bundle"):
        load_bundle(bundle)


def test_range_search_finds_every_product_above_the_threshold():
    rng = np.random.default_rng(1)
    dim = 32
    base = unit(rng.normal(size=dim))
    near = np.stack([unit(base + 0.12 * rng.normal(size=dim)) for _ in range(70)])  # more than the first k
    far = np.stack([unit(v) for v in rng.normal(size=(300, dim))])
    vectors = np.vstack([near, far])
    collection = Collection([SpaceConfig("visual", dim, storage="float32", rerank=None)])
    collection.upsert(np.arange(len(vectors)), {"visual": vectors})
    for threshold in (0.95, 0.9, 0.5):
        ids, scores = neighbours_above(collection, "visual", base, threshold, max_results=1000)
        truth = set(np.flatnonzero(vectors @ base >= threshold).tolist())
        assert set(ids.tolist()) == truth and (scores >= threshold).all()
        assert list(scores) == sorted(scores, reverse=True)
    ids, _ = neighbours_above(collection, "visual", base, 0.5, max_results=20, exclude=0)
    assert len(ids) == 20 and 0 not in ids.tolist()


@pytest.fixture(scope="module")
def generated_pairs(tmp_path_factory):
    products, pairs = make_catalog(48, seed=3, size=96)
    return write_pairs(tmp_path_factory.mktemp("pairs"), products, pairs), pairs


def test_training_separates_near_duplicates_from_distinct_products(generated_pairs, tiny_clip_bundle, tmp_path):
    path, pairs = generated_pairs
    assert {p.kind for p in pairs if p.duplicate} == {"crop", "jpeg", "jitter", "retitled"}
    bundle = shutil.copytree(tiny_clip_bundle, tmp_path / "bundle")
    report = train_duplicates(path, bundle, held_out=0.3, seed=0)
    # 144 pairs (48 duplicates), 43 held out; measured 1.00 / 1.00 with the tiny random CLIP
    assert report.held_out["pairs"] == 43
    assert report.held_out["precision"] >= 0.9 and report.held_out["recall"] >= 0.9
    saved = load_classifier(bundle)
    assert saved.training["held_out"] == report.held_out
    assert saved.features == tuple(PairFeatures(("joint",)).feature_names)


def test_a_bad_pairs_file_is_named(tmp_path, tiny_clip_bundle):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"a": {"image": "x.jpg"}, "b": {"image": "y.jpg"}, "duplicate": "yes"}\n')
    with pytest.raises(ValueError, match="pairs.jsonl:1: duplicate must be true or false"):
        train_duplicates(path, tiny_clip_bundle, save=False)


def test_the_train_command_reports_and_saves(generated_pairs, tiny_clip_bundle, tmp_path, capsys):
    from lookalike.cli import main

    bundle = shutil.copytree(tiny_clip_bundle, tmp_path / "bundle")
    assert main(["train", "duplicates", "--pairs", str(generated_pairs[0]), "--model", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "held-out: 36 pairs, precision" in out and "saved the duplicate classifier" in out
    assert load_classifier(bundle) is not None
