"""The bundle loader accepts a good manifest and names the field and the
problem of a broken one."""

import copy
import json
import shutil

import pytest

from lookalike.encoders.bundle import MANIFEST_NAME, load_bundle, parse_manifest, save_manifest
from lookalike.encoders.errors import BundleError


@pytest.fixture()
def manifest_doc(tiny_clip_bundle):
    return json.loads((tiny_clip_bundle / MANIFEST_NAME).read_text())


def test_exported_bundle_loads(tiny_clip_bundle, tiny_clip_checkpoint):
    bundle = load_bundle(tiny_clip_bundle)
    m = bundle.manifest
    assert m.model_id == "tiny-clip" and m.spaces["joint"].dim == 24 and m.spaces["joint"].metric == "cosine"
    assert set(m.towers) == {"image", "text"}
    assert m.towers["image"].preprocess.crop_size == 32 and m.towers["image"].preprocess.resize_filter == "bicubic"
    assert m.towers["text"].tokenizer.max_length == 16
    assert m.weights[0].source == str(tiny_clip_checkpoint)


def test_manifest_round_trips(tiny_clip_bundle, tmp_path):
    manifest = load_bundle(tiny_clip_bundle).manifest
    save_manifest(manifest, tmp_path)
    assert parse_manifest(json.loads((tmp_path / MANIFEST_NAME).read_text())) == manifest


def broken(doc, path, value):
    """A copy of doc with the field at dotted `path` set to value (or removed if value is ...)."""
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    target = doc
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is ...:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("format", "something-else", r"format: expected 'lookalike-model-bundle'"),
        ("format_version", 99, r"format_version: version 99 is not supported"),
        ("model.id", ..., r"model\.id: missing"),
        ("model.version", 3, r"model\.version: expected a string, got int 3"),
        ("spaces", {}, r"spaces: at least one vector space"),
        ("spaces.joint.dim", 0, r"spaces\.joint\.dim: must be a positive integer, got 0"),
        ("spaces.joint.dim", True, r"spaces\.joint\.dim: expected an integer, got a boolean"),
        ("spaces.joint.metric", "hamming", r"spaces\.joint\.metric: 'hamming' is not one of cosine, ip, l2"),
        ("towers.audio", {}, r"towers\.audio: unknown tower kind"),
        ("towers.image.file", ..., r"towers\.image\.file: missing"),
        ("towers.image.outputs.joint", "nowhere", r"towers\.image\.outputs\.joint: names space 'nowhere'"),
        ("towers.image.preprocess.resize_filter", "magic", r"resize_filter: 'magic' is not one of"),
        ("towers.image.preprocess.crop_size", 64, r"crop_size: 64 is larger than the resized image \(32\)"),
        ("towers.image.preprocess.std", [1, 0, 1], r"preprocess\.std: every std must be > 0"),
        ("towers.image.preprocess.mean", [0.5, 0.5], r"preprocess\.mean: expected 3 numbers"),
        ("towers.image.inputs.0.shape", ["batch", 3, 64, 64], r"inputs\[0\]\.shape: .* does not match"),
        ("towers.image.inputs.0.shape", ["batch", 3, -1, 32], r"inputs\[0\]\.shape\[2\]: expected a positive size"),
        ("towers.text.tokenizer.max_length", -5, r"tokenizer\.max_length: must be a positive integer"),
        ("towers.text.inputs.0.dtype", "float32", r"text inputs are int64"),
        ("towers.text.inputs.0.name", "tokens", r"a text tower takes input_ids"),
        ("weights.0.license", ..., r"weights\[0\]\.license: missing"),
        ("image_query", {"visual": 1.0}, r"image_query\.visual: names no space"),
        ("image_query.joint", -1, r"image_query\.joint: must be >= 0"),
    ],
)
def test_broken_manifest_names_field_and_problem(manifest_doc, path, value, message):
    with pytest.raises(BundleError, match=message):
        parse_manifest(broken(manifest_doc, path, value))


def test_manifest_that_is_not_an_object(manifest_doc):
    with pytest.raises(BundleError, match="top level: expected a JSON object, got an array"):
        parse_manifest([manifest_doc])


def copy_bundle(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_folder_and_manifest(tmp_path):
    with pytest.raises(BundleError, match="no such directory"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path)


def test_manifest_that_is_not_json(tiny_clip_bundle, tmp_path):
    bundle = copy_bundle(tiny_clip_bundle, tmp_path / "b")
    (bundle / MANIFEST_NAME).write_text("{ not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle)


@pytest.mark.parametrize(("name", "field"), [("image.onnx", "towers.image.file"), ("tokenizer.json", "towers.text.tokenizer.file")])
def test_file_named_by_manifest_but_missing(tiny_clip_bundle, tmp_path, name, field):
    bundle = copy_bundle(tiny_clip_bundle, tmp_path / "b")
    (bundle / name).unlink()
    with pytest.raises(BundleError, match=f"{field}: file '{name}' is not in the bundle"):
        load_bundle(bundle)


def test_save_refuses_an_invalid_manifest(tiny_clip_bundle, tmp_path):
    import dataclasses

    manifest = load_bundle(tiny_clip_bundle).manifest
    bad = dataclasses.replace(manifest, image_query={"elsewhere": 1.0})
    with pytest.raises(BundleError, match="image_query.elsewhere"):
        save_manifest(bad, tmp_path)
    assert not (tmp_path / MANIFEST_NAME).exists()
