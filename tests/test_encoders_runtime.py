"""The onnxruntime towers: provider choice, thread config, batching, and the
same vector for the same input whatever the batch."""

import io
import sys

import numpy as np
import pytest
from PIL import Image

from lookalike.encoders import Encoder, RuntimeConfig
from lookalike.encoders.errors import BundleError, ImageDecodeError
from lookalike.encoders.runtime import CPU, CUDA, choose_providers, open_session


def photos(n, seed=0):
    """n random-noise images of varied sizes, as PNG bytes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = rng.integers(20, 90, 2)
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


TEXTS = ["red shoe", "a photo of a small leather bag", "blue", "the large green running shoes of the shirt", "dress"]


@pytest.fixture(scope="module")
def encoder(tiny_clip_bundle):
    return Encoder(tiny_clip_bundle, RuntimeConfig(device="cpu", intra_op_threads=1, max_batch=3))


def test_provider_choice():
    assert choose_providers("auto", [CPU]) == [CPU]
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]
    assert choose_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]
    with pytest.raises(RuntimeError, match="install the 'gpu' extra"):
        choose_providers("cuda", [CPU])


class FakeSession:
    def __init__(self, providers):
        self.providers = providers

    def get_providers(self):
        return self.providers


def test_cuda_that_fails_to_start_falls_back_to_cpu(tmp_path, caplog):
    asked = []

    def factory(path, options, providers):
        asked.append(providers)
        if CUDA in providers:
            raise RuntimeError("CUDA driver version is insufficient")
        return FakeSession(providers)

    session = open_session(tmp_path / "g.onnx", RuntimeConfig(device="auto"), available=[CUDA, CPU], factory=factory)
    assert asked == [[CUDA, CPU], [CPU]] and session.get_providers() == [CPU]
    assert "using the CPU" in caplog.text
    with pytest.raises(RuntimeError, match="CUDA provider failed to start"):
        open_session(tmp_path / "g.onnx", RuntimeConfig(device="cuda"), available=[CUDA, CPU], factory=factory)


def test_cuda_dropped_silently_by_onnxruntime_is_noticed(tmp_path):
    factory = lambda path, options, providers: FakeSession([CPU])  # noqa: E731 - onnxruntime's behaviour without a GPU
    assert open_session(tmp_path / "g.onnx", RuntimeConfig(), available=[CUDA, CPU], factory=factory).get_providers() == [CPU]
    with pytest.raises(RuntimeError, match="did not start"):
        open_session(tmp_path / "g.onnx", RuntimeConfig(device="cuda"), available=[CUDA, CPU], factory=factory)


def test_thread_settings_reach_the_session_options(tmp_path):
    seen = {}

    def factory(path, options, providers):
        seen.update(intra=options.intra_op_num_threads, inter=options.inter_op_num_threads,
                    spinning=options.get_session_config_entry("session.intra_op.allow_spinning"))
        return FakeSession(providers)

    open_session(tmp_path / "g.onnx", RuntimeConfig(intra_op_threads=2, inter_op_threads=1), available=[CPU], factory=factory)
    assert seen == {"intra": 2, "inter": 1, "spinning": "0"}  # threads sleep while they wait, by default
    open_session(tmp_path / "g.onnx", RuntimeConfig(spinning=True), available=[CPU], factory=factory)
    assert seen["spinning"] == "1"


@pytest.mark.parametrize(
    ("field", "value"), [("device", "tpu"), ("intra_op_threads", -1), ("max_batch", 0), ("max_pixels", 0)]
)
def test_bad_runtime_config(field, value):
    with pytest.raises(ValueError, match=field if field != "device" else "tpu"):
        RuntimeConfig(**{field: value})


def test_runs_on_the_cpu_here(encoder):
    assert encoder.providers == {"image": [CPU], "text": [CPU]}
    assert encoder.spaces == {"joint": 24}


def test_image_vectors_are_unit_length_and_batch_invariant(encoder):
    images = photos(7)
    together = encoder.encode_images(images)["joint"]  # chunks of 3, 3, 1
    assert together.shape == (7, 24) and together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    alone = np.concatenate([encoder.encode_images([image])["joint"] for image in images])
    np.testing.assert_allclose(together, alone, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(encoder.encode_images(images)["joint"], together)  # deterministic


def test_text_vectors_are_batch_invariant_despite_padding(encoder):
    together = encoder.encode_texts(TEXTS)["joint"]
    alone = np.concatenate([encoder.encode_texts([t])["joint"] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(together[0], together[1])


def test_pil_images_and_bytes_give_the_same_vector(encoder):
    data = photos(1)[0]
    from_bytes = encoder.encode_images([data])["joint"]
    np.testing.assert_array_equal(encoder.encode_images([Image.open(io.BytesIO(data))])["joint"], from_bytes)


def test_empty_batches(encoder):
    assert encoder.encode_images([])["joint"].shape == (0, 24)
    assert encoder.encode_texts([])["joint"].shape == (0, 24)


def test_long_text_is_truncated_to_max_length(encoder):
    long = " ".join(["shoe"] * 100)
    assert encoder.encode_texts([long])["joint"].shape == (1, 24)


def test_bad_inputs_are_clear_errors(encoder):
    with pytest.raises(ImageDecodeError):
        encoder.encode_images([b"not an image"])
    with pytest.raises(TypeError, match="bytes or a PIL.Image"):
        encoder.encode_images(["photo.jpg"])
    with pytest.raises(TypeError, match="not one str"):
        encoder.encode_texts("red shoe")
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        encoder.encode_texts(["ok", 3])


def test_graph_that_does_not_match_the_manifest(tiny_clip_bundle, tmp_path):
    import json
    import shutil

    bundle = shutil.copytree(tiny_clip_bundle, tmp_path / "b")
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["spaces"]["joint"]["dim"] = 25
    (bundle / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="output 'joint' has 24 dimensions, space 'joint' has 25"):
        Encoder(bundle, RuntimeConfig(device="cpu"))


def test_pad_token_not_in_vocabulary(tiny_clip_bundle, tmp_path):
    import json
    import shutil

    bundle = shutil.copytree(tiny_clip_bundle, tmp_path / "b")
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["towers"]["text"]["tokenizer"]["pad_token"] = "<nope>"
    (bundle / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="pad_token '<nope>' is not in the tokenizer's vocabulary"):
        Encoder(bundle, RuntimeConfig(device="cpu"))


def test_serving_path_does_not_import_torch():
    import subprocess

    code = (
        "import sys, lookalike.encoders, lookalike.encoders.runtime;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')]; print(bad); sys.exit(bool(bad))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
