"""Zero-shot attributes (labels read off an image vector with text prompts) and
"same style, any colour" (colour directions removed from a query), on models
whose behaviour the tests set: hand-made prompt vectors and planted colour
subspaces."""

import numpy as np
import pytest

from lookalike.encoders.colour import basis_from_variants, tinted, textures, without_directions
from lookalike.encoders.zero_shot import ZeroShotConfig, ZeroShotTagger
from lookalike.service.config import ServiceConfig

LABELS = {"colour": ["red", "green", "blue"], "pattern": ["striped", "plain"]}
PROMPT_VECTORS = {  # a toy text tower: each prompt's vector, by hand
    "a photo of a red product": [1, 0, 0, 0], "a photo of a green product": [0, 1, 0, 0],
    "a photo of a blue product": [0, 0, 1, 0], "a photo of a striped product": [0, 0, 0, 1],
    "a photo of a plain product": [0, 0, 0, -1]}


def toy_text_tower(texts):
    return np.array([PROMPT_VECTORS[t] for t in texts], dtype=np.float32)


def test_the_best_label_is_kept_with_its_confidence():
    tagger = ZeroShotTagger(ZeroShotConfig(vocabularies=LABELS, temperature=0.1, min_confidence=0.5), toy_text_tower)
    tags = tagger.tag(np.array([0.9, 0.1, 0.0, 0.4]))
    assert tags["colour"] == ["red"] and tags["pattern"] == ["striped"]
    scores = np.array([0.9, 0.1, 0.0]) / np.linalg.norm([0.9, 0.1, 0.0, 0.4]) / 0.1
    assert tags["colour_confidence"] == pytest.approx(np.exp(scores[0]) / np.exp(scores).sum(), rel=1e-5)
    # An image equally red and green: no colour is confident enough, the pattern still is.
    undecided = tagger.tag(np.array([1.0, 1.0, 0.0, 0.5]))
    assert "colour" not in undecided and "colour_confidence" not in undecided and undecided["pattern"] == ["striped"]


def test_what_the_client_sends_wins_over_the_tagger():
    tagger = ZeroShotTagger(ZeroShotConfig(vocabularies=LABELS, temperature=0.1), toy_text_tower)
    merged = tagger.merged(np.array([0.0, 0.0, 1.0, 0.0]), {"colour": ["navy"], "price": 3.0})
    assert merged["colour"] == ["navy"] and "colour_confidence" not in merged and merged["price"] == 3.0


def test_the_schema_gains_the_tagged_attributes_and_clashes_are_named():
    config = ServiceConfig(schema={"price": "numeric"},
                           zero_shot=ZeroShotConfig(enabled=True, vocabularies={"colour": ["red", "blue"]}))
    assert config.effective_schema() == {"price": "numeric", "colour": "keyword", "colour_confidence": "numeric"}
    clash = ServiceConfig(schema={"colour": "numeric"},
                          zero_shot=ZeroShotConfig(enabled=True, vocabularies={"colour": ["red", "blue"]}))
    with pytest.raises(ValueError, match="colour"):
        clash.effective_schema()
    with pytest.raises(ValueError, match="exactly one"):
        ZeroShotConfig(template="a photo")


def planted(rng, styles=20, colours=6, dim=48, colour_dims=3, colour_strength=6.0):
    """Vectors = style + colour, the colours in a planted 3-d subspace."""
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    colour_axes = q[:, :colour_dims].T
    style = rng.normal(size=(styles, dim)) @ q[:, colour_dims:] @ q[:, colour_dims:].T
    palette = rng.normal(size=(colours, colour_dims)) * colour_strength
    v = style[:, None, :] + (palette @ colour_axes)[None, :, :] + 0.05 * rng.normal(size=(styles, colours, dim))
    return v / np.linalg.norm(v, axis=-1, keepdims=True), colour_axes


def same_style_in_top(vectors, transform, top=5):
    """How often the other colourways of a style rank in the top `top` (of all others)."""
    styles, colours, dim = vectors.shape
    flat = vectors.reshape(-1, dim)
    hits = total = 0
    for i, q in enumerate(flat):
        scores = flat @ transform(q)
        scores[i] = -np.inf
        best = np.argsort(-scores)[:top]
        hits += int(sum(b // colours == i // colours for b in best))
        total += min(top, colours - 1)
    return hits / total


def test_removing_estimated_colour_directions_brings_colourways_together():
    rng = np.random.default_rng(0)
    vectors, axes = planted(rng)
    # Estimated from other "swatches": the same colours on a few other styles.
    swatches, _ = planted(np.random.default_rng(0), styles=4)
    basis = basis_from_variants(list(swatches), rank=3)
    assert np.allclose(np.linalg.svd(basis @ axes.T, compute_uv=False), 1.0, atol=0.05)  # the planted subspace
    before = same_style_in_top(vectors, lambda q: q)
    after = same_style_in_top(vectors, lambda q: without_directions(q, basis))
    assert before < 0.5 and after > 0.95


def test_a_query_made_of_colour_only_is_refused():
    basis = np.eye(4, dtype=np.float32)[:2]
    with pytest.raises(ValueError, match="entirely in the colour directions"):
        without_directions(np.array([1.0, 1.0, 0.0, 0.0]), basis)
    out = without_directions(np.array([3.0, 0.0, 4.0, 0.0]), basis)
    assert np.allclose(out, [0, 0, 1, 0])


def test_swatches_share_a_texture_and_differ_in_colour():
    texture = textures(32)[0]
    red, blue = np.asarray(tinted(texture, (200, 0, 0))), np.asarray(tinted(texture, (0, 0, 200)))
    assert red[..., 0].max() > 150 and red[..., 2].max() == 0 and blue[..., 2].max() > 150
    assert np.array_equal(red[..., 0] > 100, blue[..., 2] > 100)  # the same pattern


def test_colour_directions_are_trained_into_the_bundle_and_used_by_ignore_colour(tiny_clip_bundle, tmp_path,
                                                                                  capsys):
    import shutil

    from lookalike.cli import main
    from lookalike.encoders import BundleError, Encoder, RuntimeConfig, load_bundle
    from lookalike.encoders.colour import load_directions, save_directions
    from lookalike.service.colour_free import ColourFree, SameStyleConfig
    from lookalike.service.encoding import ModelEncoder

    bundle = shutil.copytree(tiny_clip_bundle, tmp_path / "bundle")
    assert main(["train", "colour-directions", "--model", str(bundle), "--crops", "4", "--rank", "3",
                 "--spaces", "joint"]) == 0
    assert "saved colour directions (joint 3)" in capsys.readouterr().out
    loaded = load_bundle(bundle)
    directions = load_directions(loaded)["joint"]
    assert directions.shape == (3, 24) and np.allclose(directions @ directions.T, np.eye(3), atol=1e-4)

    encoder = ModelEncoder(Encoder(bundle, RuntimeConfig(device="cpu")))
    try:
        query = np.ones(24, dtype=np.float32)
        assert np.allclose(ColourFree(encoder, SameStyleConfig(source="auto")).apply("joint", query),
                           without_directions(query, directions))
        swatches = ColourFree(encoder, SameStyleConfig(source="swatches", rank=3)).basis("joint")
        assert not np.allclose(np.abs(swatches), np.abs(directions), atol=1e-3)  # a different estimate
    finally:
        encoder.close()

    with pytest.raises(BundleError, match="not orthonormal"):
        save_directions(loaded, {"joint": np.ones((2, 24), dtype=np.float32)})
    with pytest.raises(BundleError, match="'visual' is not a space of the bundle"):
        save_directions(loaded, {"visual": np.eye(24, dtype=np.float32)[:2]})
    (bundle / "colour_directions.npz").write_bytes(b"not an npz")
    with pytest.raises(BundleError, match="colour directions are unreadable"):
        load_directions(load_bundle(bundle))
