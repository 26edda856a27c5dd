"""Fine-tuning a projection head (lookalike.train): the losses on hand-worked
cases, the split, and the whole run on a small drawn catalog with a tiny
random convolutional encoder: Precision@5 on the held-out split rises, and the
exported bundle loads and serves the head's vectors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lookalike.encoders import Encoder, RuntimeConfig
from lookalike.encoders.bundle import load_bundle
from lookalike.eval.relevance import load_labelled_catalog
from lookalike.train.finetune import finetune, split_items
from lookalike.train.head import HeadConfig, apply_head, contrastive_loss, semi_hard_triplet_loss, train_head
from lookalike.train.align import AlignConfig, train_alignment
from synthetic_catalog import make_synthetic_catalog, make_tiny_conv_bundle, make_tiny_two_space_bundle


def unit(*rows):
    z = torch.tensor(rows, dtype=torch.float32)
    return torch.nn.functional.normalize(z, dim=1)


def test_semi_hard_triplet_picks_the_closest_negative_farther_than_the_positive():
    # Points on a circle at 0 and 60 deg (label 0), 90 and 180 deg (label 1);
    # d = 2 - 2 cos(angle between), margin 1.5. Per anchor-positive pair:
    # (0, 60): d_ap 1; negatives at d 2 and 4, both farther: the closer, 2 -> 1 - 2 + 1.5 = 0.5
    # (60, 0): d_ap 1; negatives at d 0.27 and 3: only 3 is farther -> max(0, 1 - 3 + 1.5) = 0
    # (90, 180): d_ap 2; negatives at d 2 and 0.27: none farther, the farthest, 2 -> 1.5
    # (180, 90): d_ap 2; negatives at d 4 and 3, both farther: the closer, 3 -> 0.5
    angles = np.radians([0, 60, 90, 180])
    z = unit(*[[np.cos(t), np.sin(t)] for t in angles])
    loss = semi_hard_triplet_loss(z, torch.tensor([0, 0, 1, 1]), margin=1.5)
    assert loss.item() == pytest.approx((0.5 + 0.0 + 1.5 + 0.5) / 4, abs=1e-5)


def test_contrastive_loss_pulls_positives_and_pushes_negatives_inside_the_margin():
    z = unit([1, 0], [1, 0], [0, 1])  # two equal positives, a negative at d = 2 from both
    labels = torch.tensor([0, 0, 1])
    assert contrastive_loss(z, labels, margin=1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert contrastive_loss(z, labels, margin=3.0).item() == pytest.approx(1.0, abs=1e-5)  # 3 - 2 on each negative pair


def test_a_batch_without_a_positive_pair_is_refused():
    with pytest.raises(ValueError, match="two labels"):
        semi_hard_triplet_loss(unit([1, 0], [0, 1]), torch.tensor([0, 1]), 0.2)


def test_training_is_seeded_and_starts_from_the_identity():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.arange(40) % 4
    config = HeadConfig(steps=20, classes_per_batch=4, per_class=4)
    w1, w2 = train_head(x, y, config), train_head(x, y, config)
    np.testing.assert_array_equal(w1, w2)
    assert not np.allclose(w1, np.eye(6))  # it moved
    np.testing.assert_allclose(apply_head(np.eye(6, dtype=np.float32), x), x, atol=1e-6)


def test_bad_head_configs_are_refused():
    with pytest.raises(ValueError, match="loss"):
        HeadConfig(loss="hinge")
    with pytest.raises(ValueError, match="margin"):
        HeadConfig(margin=0)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return load_labelled_catalog(make_synthetic_catalog(tmp_path_factory.mktemp("synthetic"), per_category=30))


def test_the_split_keeps_every_category_on_both_sides(synthetic):
    split = split_items(synthetic, 0.5, seed=3)
    assert not set(split.train) & set(split.held_out)
    assert sorted(split.train + split.held_out) == sorted(int(i) for i in synthetic.ids)
    category = dict(zip((int(i) for i in synthetic.ids), synthetic.categories))
    for side in (split.train, split.held_out):
        assert sorted({category[i] for i in side}) == sorted(set(synthetic.categories))
    assert split_items(synthetic, 0.5, seed=3) == split
    with pytest.raises(ValueError, match="held_out_fraction"):
        split_items(synthetic, 1.0, seed=0)


def add_category_words(folder):
    """Four shopper's words per category of the synthetic catalog, made from no product."""
    with open(folder / "queries.jsonl", "a") as f:
        for category in ("shoe", "bag", "dress", "shirt"):
            for n, colour in enumerate(("red", "blue", "green", "big")):
                f.write(json.dumps({"id": f"w-{category}-{n}", "text": f"{colour} {category}",
                                    "relevant_category": category}) + "\n")
    return folder


def test_queries_made_from_no_product_are_split_on_their_own(tmp_path):
    # Each of the words goes to one side only, and every category has some on both sides.
    catalog = load_labelled_catalog(add_category_words(make_synthetic_catalog(tmp_path, per_category=4)))
    split = split_items(catalog, 0.5, seed=1)
    words = {q.id for q in catalog.queries if q.item is None}
    assert len(words) == 16 and not set(split.train_queries) & set(split.held_out_queries)
    assert set(split.train_queries) | set(split.held_out_queries) == words
    for side in (split.train_queries, split.held_out_queries):
        assert {q.split("-")[1] for q in side} == {"shoe", "bag", "dress", "shirt"}
    held_out = catalog.subset(split.held_out, split.held_out_queries)
    assert {q.id for q in held_out.queries if q.item is None} == set(split.held_out_queries)
    assert {q.item for q in held_out.queries if q.item is not None} == set(split.held_out)


@pytest.mark.parametrize("loss", ["triplet", "contrastive"])
def test_finetuning_raises_held_out_precision_and_exports_a_serving_bundle(synthetic, loss, tmp_path):
    bundle_path = make_tiny_conv_bundle(tmp_path / "tiny-conv", dim=64)
    encoder = Encoder(bundle_path, RuntimeConfig(device="cpu", intra_op_threads=1))
    config = HeadConfig(loss=loss, steps=200, lr=1e-2, margin=0.5 if loss == "triplet" else 1.0,
                        classes_per_batch=4, per_class=8, seed=0)
    result = finetune(synthetic, encoder, tmp_path / "tuned", config=config, held_out_fraction=0.5)

    held_out = set(result.split.held_out)
    assert result.before["image"]["queries"] == len(held_out)
    before, after = result.before["image"]["precision@5"], result.after["image"]["precision@5"]
    assert after >= before + 0.08, (before, after)

    # The tuned bundle passes the loader's validation, records its tuning, and
    # its graph gives the head's vectors for images it was not trained on.
    bundle = load_bundle(result.bundle)
    assert bundle.manifest.model_id == "tiny-conv-tuned" and bundle.manifest.spaces["visual"].dim == 64
    assert any("projection head of space visual" in w.component for w in bundle.manifest.weights)
    record = json.loads(bundle.manifest.notes.split("Tuned by lookalike train: ", 1)[1])
    assert record["held_out_items"] == len(held_out) and record["held_out_after"]["image"]["precision@5"] == after
    tuned = Encoder(bundle, RuntimeConfig(device="cpu", intra_op_threads=1))
    rows = [list(synthetic.ids).index(i) for i in sorted(held_out)[:5]]
    images = [(synthetic.folder / synthetic.images[r]).read_bytes() for r in rows]
    weight = _head_weight(result.bundle / "image.onnx", "visual")
    np.testing.assert_allclose(tuned.encode_images(images)["visual"],
                               apply_head(weight, encoder.encode_images(images)["visual"]), atol=1e-5)


def test_a_head_on_a_shared_space_is_folded_into_both_towers(tiny_clip_bundle, tmp_path):
    from lookalike.train.export import export_tuned_bundle

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((24, 16)).astype(np.float32)
    tuned = export_tuned_bundle(tiny_clip_bundle, {"joint": weight}, tmp_path / "tuned", trained_on="a test",
                                license="none", record="{}")
    assert tuned.manifest.spaces["joint"].dim == 16
    before = Encoder(tiny_clip_bundle, RuntimeConfig(device="cpu", intra_op_threads=1))
    after = Encoder(tuned, RuntimeConfig(device="cpu", intra_op_threads=1))
    images = [Image.fromarray(np.full((40, 30, 3), v, np.uint8)) for v in (10, 120, 250)]
    texts = ["red shoe", "a small leather bag"]
    np.testing.assert_allclose(after.encode_images(images)["joint"],
                               apply_head(weight, before.encode_images(images)["joint"]), atol=1e-5)
    np.testing.assert_allclose(after.encode_texts(texts)["joint"],
                               apply_head(weight, before.encode_texts(texts)["joint"]), atol=1e-5)


def _head_weight(onnx_path, space):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == f"{space}__head_weight")


def test_aligning_the_text_space_lets_words_find_held_out_images(synthetic, tmp_path):
    # The tiny bundle's text vectors and image "joint" vectors are unrelated
    # random projections: text queries find their category by chance (1/4).
    # Aligned from the visual features, an image lands by its category's words.
    bundle_path = make_tiny_two_space_bundle(tmp_path / "two-space")
    encoder = Encoder(bundle_path, RuntimeConfig(device="cpu", intra_op_threads=1))
    result = finetune(synthetic, encoder, tmp_path / "aligned", align_from="visual",
                      align_config=AlignConfig(steps=200))
    assert result.spaces == () and result.aligned == ("joint",)
    before, after = result.before["text"]["precision@5"], result.after["text"]["precision@5"]
    assert before < 0.35 and after >= before + 0.4, (before, after)
    assert result.after["image"] == result.before["image"]  # image queries search visual, left untuned
    assert result.known_queries == {}  # every query of this catalog is made from a product

    tuned = Encoder(result.bundle, RuntimeConfig(device="cpu", intra_op_threads=1))
    assert any("alignment of space joint from visual" in w.component for w in tuned.bundle.manifest.weights)
    rows = [list(synthetic.ids).index(i) for i in result.split.held_out[:5]]
    images = [(synthetic.folder / synthetic.images[r]).read_bytes() for r in rows]
    weight = _head_weight(result.bundle / "image.onnx", "joint")
    untuned = encoder.encode_images(images)
    got = tuned.encode_images(images)
    np.testing.assert_allclose(got["joint"], apply_head(weight, untuned["visual"]), atol=1e-5)
    np.testing.assert_allclose(got["visual"], untuned["visual"], atol=1e-6)
    texts = ["red shoe", "a small bag"]
    np.testing.assert_allclose(tuned.encode_texts(texts)["joint"], encoder.encode_texts(texts)["joint"], atol=1e-6)
    # What computed the old image "joint" is gone from the graph, not left to run.
    import onnx

    graph = onnx.load(str(result.bundle / "image.onnx")).graph
    assert not any("joint__untuned" in node.output for node in graph.node)
    with pytest.raises(ValueError, match="cannot have a projection head and be aligned"):
        finetune(synthetic, encoder, tmp_path / "x", spaces=["joint"], align_from="visual")
    with pytest.raises(ValueError, match="another space to align it from"):
        finetune(synthetic, encoder, tmp_path / "x", align_from="joint")


def test_the_trained_words_are_also_measured_among_the_held_out_products(tmp_path):
    # Known words finding new products: what the alignment learnt of the
    # words, apart from whether it carries over to words it never saw.
    catalog = load_labelled_catalog(add_category_words(make_synthetic_catalog(tmp_path / "catalog")))
    encoder = Encoder(make_tiny_two_space_bundle(tmp_path / "two-space"), RuntimeConfig(device="cpu", intra_op_threads=1))
    result = finetune(catalog, encoder, tmp_path / "aligned", align_from="visual", align_config=AlignConfig(steps=200))
    trained_words = [q for q in result.split.train_queries if q.startswith("w-")]
    known = result.known_queries["text"]
    assert known["queries"] == len(trained_words) == 8 and set(result.known_queries) == {"text"}
    # Untuned, a word finds its category by chance (1/4, as the untuned held-out text queries do).
    assert known["precision@5"] >= result.before["text"]["precision@5"] + 0.25, (result.before["text"], known)


def test_alignment_needs_words_for_every_trained_category():
    rng = np.random.default_rng(0)
    images, texts = rng.standard_normal((12, 8)).astype(np.float32), rng.standard_normal((4, 5)).astype(np.float32)
    with pytest.raises(ValueError, match=r"no text names the categories \['hat'\]"):
        train_alignment(images, np.array(["shoe", "bag", "hat"] * 4), texts, np.array(["shoe", "bag"] * 2))
    w1 = train_alignment(images, np.array(["shoe", "bag"] * 6), texts, np.array(["shoe", "bag"] * 2),
                         AlignConfig(steps=5, batch=4))
    w2 = train_alignment(images, np.array(["shoe", "bag"] * 6), texts, np.array(["shoe", "bag"] * 2),
                         AlignConfig(steps=5, batch=4))
    assert w1.shape == (8, 5) and np.array_equal(w1, w2)  # seeded
    with pytest.raises(ValueError, match="temperature"):
        AlignConfig(temperature=0)


def test_a_tuned_bundle_must_not_overwrite_its_source(tiny_clip_bundle):
    from lookalike.train.export import export_tuned_bundle

    with pytest.raises(ValueError, match="new folder"):
        export_tuned_bundle(tiny_clip_bundle, {"joint": np.eye(24, dtype=np.float32)}, tiny_clip_bundle,
                            trained_on="x", license="x")
    with pytest.raises(ValueError, match="shape"):
        export_tuned_bundle(tiny_clip_bundle, {"joint": np.eye(5, dtype=np.float32)}, "unused",
                            trained_on="x", license="x")


def test_the_train_command_writes_a_bundle_and_a_report(synthetic, tmp_path, capsys):
    from lookalike.cli import main

    bundle = make_tiny_conv_bundle(tmp_path / "tiny-conv")
    report = tmp_path / "report.json"
    code = main(["train", "head", "--catalog", str(synthetic.folder), "--bundle", str(bundle), "--out",
                 str(tmp_path / "tuned"), "--steps", "20", "--dim", "16", "--report", str(report)])
    assert code == 0
    assert load_bundle(tmp_path / "tuned").manifest.spaces["visual"].dim == 16
    assert set(json.loads(report.read_text())) == {"before", "after", "training_half_after"}
    assert "held-out split: 60 products (trained on 60)" in capsys.readouterr().out
    # A space the image tower does not write is named.
    code = main(["train", "head", "--catalog", str(synthetic.folder), "--bundle", str(bundle), "--out",
                 str(tmp_path / "other"), "--spaces", "joint"])
    assert code == 1 and "space 'joint' is not written by the bundle's image tower" in capsys.readouterr().err
