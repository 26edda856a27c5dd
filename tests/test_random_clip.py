"""`lookalike model export-clip --random`: a CLIP of a real checkpoint's shape
with random weights, exported through the checkpoint path. Tested on a tiny
CLIPConfig (ViT-B/32 itself takes a minute to export)."""

import numpy as np
import pytest
from transformers import CLIPConfig

from lookalike.cli import main
from lookalike.encoders import Encoder, RuntimeConfig
from lookalike.encoders.random_clip import clip_config, export_random_clip


def tiny_config() -> CLIPConfig:
    return CLIPConfig(
        text_config=dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, bos_token_id=298, eos_token_id=299,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=24)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    out = export_random_clip(tiny_config(), tmp_path_factory.mktemp("random-clip") / "bundle", "tiny-random")
    return Encoder(out, RuntimeConfig(device="cpu", intra_op_threads=1))


def test_the_bundle_has_the_configs_shape(encoder):
    manifest = encoder.bundle.manifest
    assert manifest.model_id == "tiny-random" and manifest.spaces["joint"].dim == 24
    assert manifest.towers["text"].tokenizer.max_length == 16
    assert manifest.towers["image"].preprocess.crop_size == 32
    assert manifest.weights[0].source == "random, seed 0"


def test_both_towers_encode_unit_vectors(encoder):
    texts = encoder.encode_texts(["red shoes", "a long query of seven words here"])["joint"]
    pixels = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    images = encoder.encode_pixels(pixels)["joint"]
    for vectors in (texts, images):
        assert vectors.shape == (2, 24)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert not np.allclose(vectors[0], vectors[1])


def test_texts_are_framed_by_the_configs_start_and_end_tokens(encoder):
    ids, mask = encoder.tokenize(["red shoes"])
    assert ids[0].tolist() == [298, ids[0][1], ids[0][2], 299] and mask.sum() == 4


def test_vit_b_32_is_openai_clips_shape():
    config = clip_config("vit-b-32")
    vision, text = config.vision_config, config.text_config
    assert (vision.image_size, vision.patch_size, vision.hidden_size, vision.num_hidden_layers) == (224, 32, 768, 12)
    assert (text.vocab_size, text.hidden_size, text.max_position_embeddings, config.projection_dim) == (49408, 512, 77, 512)
    with pytest.raises(ValueError, match="unknown CLIP shape 'vit-h-14'"):
        clip_config("vit-h-14")


def test_cli_wants_a_checkpoint_or_random_not_both(tmp_path):
    for args in ([], ["some/checkpoint", "--random", "vit-b-32"]):
        with pytest.raises(SystemExit, match="give a checkpoint"):
            main(["model", "export-clip", *args, "--out", str(tmp_path / "b")])
