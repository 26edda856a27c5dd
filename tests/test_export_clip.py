"""The CLIP exporter: ONNX towers equal the torch model to 1e-4, for batches
and for sequence lengths other than the one traced at export."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPModel

from lookalike.encoders import Encoder, RuntimeConfig
from tiny_clip import IMAGE_SIZE


@pytest.fixture(scope="module")
def torch_clip(tiny_clip_checkpoint):
    return CLIPModel.from_pretrained(tiny_clip_checkpoint, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def encoder(tiny_clip_bundle):
    return Encoder(tiny_clip_bundle, RuntimeConfig(device="cpu", intra_op_threads=1))


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_image_tower_matches_torch(torch_clip, encoder, batch):
    pixels = np.random.default_rng(batch).standard_normal((batch, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    with torch.no_grad():
        expected = F.normalize(torch_clip.get_image_features(pixel_values=torch.from_numpy(pixels)).pooler_output, dim=-1)
    session = encoder.session("image")
    (got,) = session.run(None, {"pixel_values": pixels})
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("texts", [["red"], ["a photo of a shoe", "bag"], ["the small red leather running shoes"] * 2 + ["blue"]])
def test_text_tower_matches_torch_across_lengths(torch_clip, encoder, texts):
    ids, mask = encoder.tokenize(texts)
    with torch.no_grad():
        features = torch_clip.get_text_features(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        expected = F.normalize(features.pooler_output, dim=-1).numpy()
    np.testing.assert_allclose(encoder.encode_texts(texts)["joint"], expected, atol=1e-4, rtol=0)


def test_sequence_lengths_differ_from_the_traced_one(encoder):
    lengths = {encoder.tokenize([t])[0].shape[1] for t in ["red", "a photo of a shoe", "the small red leather running shoes"]}
    assert lengths == {3, 7, 8}  # traced with 3


def test_preprocessing_comes_from_the_checkpoint(tiny_clip_bundle):
    spec = Encoder(tiny_clip_bundle, RuntimeConfig(device="cpu")).bundle.manifest.towers["image"].preprocess
    assert (spec.size, spec.crop_size, spec.resize_filter) == (IMAGE_SIZE, IMAGE_SIZE, "bicubic")
    assert spec.mean == (0.48, 0.46, 0.41) and spec.std == (0.27, 0.26, 0.28)


def test_cli_exports_a_checkpoint_folder(tiny_clip_checkpoint, tmp_path, capsys):
    from lookalike.cli import main

    assert main(["model", "export-clip", str(tiny_clip_checkpoint), "--out", str(tmp_path / "b"), "--model-id", "t"]) == 0
    assert main(["model", "check", str(tmp_path / "b")]) == 0
    assert "spaces {'joint': 24}" in capsys.readouterr().out
    assert main(["model", "export-clip", str(tmp_path / "missing"), "--out", str(tmp_path / "c")]) == 1
    assert "not a checkpoint folder" in capsys.readouterr().err


@pytest.mark.parametrize("shape", [(300, 451), (517, 263), (224, 224), (100, 80)])
def test_preprocessing_equals_hugging_face_clip_processor(shape):
    """Our resize (shorter side, long side rounded down), centre crop and
    normalisation give exactly the tensor of transformers' Pillow CLIP processor."""
    from PIL import Image
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from lookalike.encoders.bundle import ImagePreprocess
    from lookalike.encoders.preprocess import image_to_tensor

    reference = CLIPImageProcessorPil()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8))
    spec = ImagePreprocess(size=224, crop_size=224, mean=tuple(reference.image_mean), std=tuple(reference.image_std))
    expected = reference(images=image, return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(image_to_tensor(image, spec), expected, atol=1e-6, rtol=0)
