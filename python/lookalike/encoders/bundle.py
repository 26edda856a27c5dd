"""The model bundle: a folder holding ``manifest.json``, one ONNX file per tower
and, for a text tower, a ``tokenizer.json``.

The manifest says everything the runtime needs and nothing it has to guess:

- ``model``: an id and a version (``{"id": "clip-vit-b-32", "version": "1"}``).
- ``weights``: where each part of the weights came from and under which licence.
- ``spaces``: the vector spaces the towers write into, each with a dimension
  and a metric. Two towers that write into the same space are comparable
  (a text query against image vectors, say).
- ``towers``: ``image`` and/or ``text``. Each names its ONNX file, its inputs
  (name, dtype, shape; a string in a shape is a dynamic axis) and which graph
  output holds which space. An image tower has a ``preprocess`` block; a text
  tower a ``tokenizer`` block.
- ``image_query``: optional weights of the spaces an image query is searched
  in (a fused score when it names several).
- ``extras``: optional files trained for this model, by role:
  ``duplicates`` (the duplicate classifier, ``lookalike train duplicates``;
  lookalike.duplicates reads it) and ``colour_directions`` (per space, the
  directions a recolouring moves a vector along, ``lookalike train
  colour-directions``; encoders/colour.py reads it).

``load_bundle`` validates all of it and raises ``BundleError`` naming the field
and the problem; ``save_manifest`` validates before writing, so an exporter
cannot write a bundle that the loader would refuse.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

from lookalike.encoders.errors import BundleError

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "lookalike-model-bundle"
FORMAT_VERSION = 1

# Space names shared by every exporter, so that the service needs no per-model
# knowledge: text and image vectors that can be compared live in JOINT_SPACE;
# an image-only space for photo-to-photo similarity is VISUAL_SPACE.
JOINT_SPACE = "joint"
VISUAL_SPACE = "visual"

METRICS = ("cosine", "ip", "l2")
RESIZE_FILTERS = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")
RESIZE_MODES = ("shorter_side", "stretch")
CROPS = ("center", "none")
NORMALIZATIONS = ("mean_std", "in_graph")
COLOR_ORDERS = ("RGB", "BGR")
INPUT_DTYPES = ("float32", "int64")
TOWER_KINDS = ("image", "text")
EXTRA_ROLES = ("duplicates", "colour_directions")


@dataclass(frozen=True)
class Space:
    """A vector space a tower writes into. Vectors leave the graphs L2-normalised
    when ``metric`` is cosine."""

    dim: int
    metric: str = "cosine"


@dataclass(frozen=True)
class TensorSpec:
    """A graph input. ``shape`` entries are ints (fixed) or names (dynamic axes)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class ImagePreprocess:
    """How a decoded RGB image becomes the image tower's input tensor.

    - ``resize``: ``shorter_side`` scales the shorter side to ``size`` keeping
      the aspect ratio; ``stretch`` scales to ``size`` x ``size``.
    - ``resize_filter``: a Pillow filter name; Pillow's resampling is
      antialiased (its kernel widens when downscaling).
    - ``crop``: ``center`` cuts a ``crop_size`` square from the middle; ``none``.
    - ``normalization``: ``mean_std`` feeds ``(x / 255 - mean) / std`` per
      channel; ``in_graph`` feeds ``x / 255`` and the graph normalises.
    - ``color_order``: channel order of the tensor (``RGB`` or ``BGR``).
    The tensor is NCHW float32. Transparent pixels are composited on white.
    """

    size: int
    crop_size: int
    resize: str = "shorter_side"
    resize_filter: str = "bicubic"
    crop: str = "center"
    normalization: str = "mean_std"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color_order: str = "RGB"


@dataclass(frozen=True)
class TokenizerSpec:
    """A Hugging Face ``tokenizers`` file. Batches are padded to their longest
    text with ``pad_token`` and truncated to ``max_length`` tokens."""

    file: str
    max_length: int
    pad_token: str


@dataclass(frozen=True)
class Tower:
    """One ONNX graph. ``outputs`` maps graph output names to space names."""

    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: dict[str, str]
    preprocess: ImagePreprocess | None = None
    tokenizer: TokenizerSpec | None = None


@dataclass(frozen=True)
class WeightsSource:
    """Where (part of) the weights came from, and their licence."""

    component: str
    source: str
    license: str


@dataclass(frozen=True)
class Manifest:
    model_id: str
    model_version: str
    spaces: dict[str, Space]
    towers: dict[str, Tower]
    weights: tuple[WeightsSource, ...]
    image_query: dict[str, float] = field(default_factory=dict)
    notes: str = ""
    extras: dict[str, str] = field(default_factory=dict)  # role (EXTRA_ROLES) -> file in the bundle

    def to_json(self) -> dict[str, Any]:
        """The manifest as written to ``manifest.json``."""
        towers = {}
        for kind, tower in self.towers.items():
            t: dict[str, Any] = {
                "file": tower.file,
                "inputs": [{"name": i.name, "dtype": i.dtype, "shape": list(i.shape)} for i in tower.inputs],
                "outputs": dict(tower.outputs),
            }
            if tower.preprocess is not None:
                p = dataclasses.asdict(tower.preprocess)
                p["mean"], p["std"] = list(p["mean"]), list(p["std"])
                t["preprocess"] = p
            if tower.tokenizer is not None:
                t["tokenizer"] = dataclasses.asdict(tower.tokenizer)
            towers[kind] = t
        doc: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "model": {"id": self.model_id, "version": self.model_version},
            "weights": [dataclasses.asdict(w) for w in self.weights],
            "spaces": {name: dataclasses.asdict(s) for name, s in self.spaces.items()},
            "towers": towers,
        }
        if self.image_query:
            doc["image_query"] = dict(self.image_query)
        if self.notes:
            doc["notes"] = self.notes
        if self.extras:
            doc["extras"] = dict(self.extras)
        return doc

    @property
    def image_query_space(self) -> str | None:
        """Where an image query goes when it names no space: the space of the
        largest ``image_query`` weight, else the first image space by name."""
        image = self.towers.get("image")
        weights = self.image_query or ({s: 1.0 for s in sorted(image.outputs.values())} if image else {})
        return max(weights, key=lambda s: weights[s]) if weights else None


@dataclass(frozen=True)
class Bundle:
    """A validated bundle on disk: its folder and its manifest."""

    path: Path
    manifest: Manifest

    def file(self, name: str) -> Path:
        return self.path / name

    def extra(self, role: str) -> Path | None:
        """The file of an extra (EXTRA_ROLES), or None when the bundle has none."""
        name = self.manifest.extras.get(role)
        return self.file(name) if name else None

    def with_extra(self, role: str, name: str, write: Callable[[Path], None]) -> Bundle:
        """Writes an extra's file (``write`` gets a temporary path, renamed into
        place once written), then names it in the manifest: the manifest never
        names a missing or half-written file. Returns the updated bundle."""
        if role not in EXTRA_ROLES:
            raise ValueError(f"unknown extra role {role!r} (expected one of {', '.join(EXTRA_ROLES)})")
        path = self.file(name)
        tmp = path.with_name(path.name + ".tmp")
        write(tmp)
        os.replace(tmp, path)
        manifest = dataclasses.replace(self.manifest, extras={**self.manifest.extras, role: name})
        save_manifest(manifest, self.path)
        return Bundle(self.path, manifest)


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Reads and validates a bundle folder. Raises ``BundleError`` naming the
    first problem: no folder, no manifest, bad JSON, a missing or mistyped
    field, an unknown value, a file the manifest names but the folder lacks."""
    folder = Path(path)
    if not folder.is_dir():
        raise BundleError(f"{folder}: not a model bundle folder (no such directory)")
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{folder}: no {MANIFEST_NAME} in the bundle folder")
    try:
        doc = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{manifest_path}: not valid JSON ({e})") from None
    manifest = parse_manifest(doc, where=str(manifest_path))
    for kind, tower in manifest.towers.items():
        files = [("file", tower.file)] + ([("tokenizer.file", tower.tokenizer.file)] if tower.tokenizer else [])
        for field_name, name in files:
            if not (folder / name).is_file():
                raise BundleError(f"{manifest_path}: towers.{kind}.{field_name}: file {name!r} is not in the bundle")
    for role, name in manifest.extras.items():
        if not (folder / name).is_file():
            raise BundleError(f"{manifest_path}: extras.{role}: file {name!r} is not in the bundle")
    return Bundle(folder, manifest)


def save_manifest(manifest: Manifest, folder: str | os.PathLike[str]) -> Path:
    """Validates ``manifest`` (as the loader would) and writes it into ``folder``
    atomically. Returns the manifest's path."""
    doc = manifest.to_json()
    parse_manifest(json.loads(json.dumps(doc)), where="manifest to save")
    path = Path(folder) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def parse_manifest(doc: Any, where: str = "manifest") -> Manifest:
    """Validates a decoded manifest document; ``where`` prefixes the errors."""
    r = _Reader(where)
    root = r.obj(doc, "")
    fmt = r.get(root, "", "format", str)
    if fmt != FORMAT_NAME:
        r.fail("format", f"expected {FORMAT_NAME!r}, got {fmt!r}")
    version = r.get(root, "", "format_version", int)
    if version != FORMAT_VERSION:
        r.fail("format_version", f"version {version} is not supported (this build reads {FORMAT_VERSION})")
    model = r.obj(r.get(root, "", "model", dict), "model")
    weights_doc = r.get(root, "", "weights", list)
    weights = tuple(_weights_source(r, w, f"weights[{i}]") for i, w in enumerate(weights_doc))

    spaces_doc = r.obj(r.get(root, "", "spaces", dict), "spaces")
    if not spaces_doc:
        r.fail("spaces", "at least one vector space is required")
    spaces = {name: _space(r, s, f"spaces.{name}") for name, s in spaces_doc.items()}

    towers_doc = r.obj(r.get(root, "", "towers", dict), "towers")
    if not towers_doc:
        r.fail("towers", "at least one tower (image or text) is required")
    towers = {}
    for kind, t in towers_doc.items():
        if kind not in TOWER_KINDS:
            r.fail(f"towers.{kind}", f"unknown tower kind (expected one of {', '.join(TOWER_KINDS)})")
        towers[kind] = _tower(r, kind, t, spaces)

    image_query = {}
    if "image_query" in root:
        iq = r.obj(root["image_query"], "image_query")
        for name, weight in iq.items():
            if name not in spaces:
                r.fail(f"image_query.{name}", "names no space of the bundle")
            if "image" not in towers or name not in towers["image"].outputs.values():
                r.fail(f"image_query.{name}", "the image tower writes no vector into this space")
            image_query[name] = float(r.number(weight, f"image_query.{name}", minimum=0.0))
    extras = {}
    if "extras" in root:
        doc_extras = r.obj(root["extras"], "extras")
        for role in doc_extras:
            if role not in EXTRA_ROLES:
                r.fail(f"extras.{role}", f"unknown role (expected one of {', '.join(EXTRA_ROLES)})")
            name = r.get(doc_extras, "extras", role, str)
            if "/" in name or "\\" in name or name.startswith("."):
                r.fail(f"extras.{role}", f"a file name inside the bundle folder, got {name!r}")
            extras[role] = name
    return Manifest(
        model_id=r.get(model, "model", "id", str),
        model_version=r.get(model, "model", "version", str),
        spaces=spaces,
        towers=towers,
        weights=weights,
        image_query=image_query,
        notes=r.get(root, "", "notes", str, default=""),
        extras=extras,
    )


class _Reader:
    """Typed field access that raises BundleError with the dotted field path."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, problem: str) -> None:
        raise BundleError(f"{self.where}: {path or 'top level'}: {problem}")

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"expected a JSON object, got {_kind(value)}")
        return value

    _MISSING = object()

    def get(self, d: dict[str, Any], path: str, key: str, typ: type, default: Any = _MISSING) -> Any:
        full = f"{path}.{key}" if path else key
        if key not in d:
            if default is not self._MISSING:
                return default
            self.fail(full, "missing")
        value = d[key]
        # bool is an int in Python; a manifest that says true where a number belongs is wrong.
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            self.fail(full, f"expected {_TYPE_NAMES.get(typ, typ.__name__)}, got {_kind(value)}")
        if typ is str and not value:
            self.fail(full, "must not be empty")
        return value

    def choice(self, d: dict[str, Any], path: str, key: str, choices: tuple[str, ...], default: Any = _MISSING) -> str:
        value = self.get(d, path, key, str, default)
        if value not in choices:
            self.fail(f"{path}.{key}", f"{value!r} is not one of {', '.join(choices)}")
        return value

    def number(self, value: Any, path: str, minimum: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, f"expected a number, got {_kind(value)}")
        if minimum is not None and value < minimum:
            self.fail(path, f"must be >= {minimum}, got {value}")
        return float(value)

    def positive_int(self, d: dict[str, Any], path: str, key: str) -> int:
        value = self.get(d, path, key, int)
        if value <= 0:
            self.fail(f"{path}.{key}", f"must be a positive integer, got {value}")
        return value

    def triple(self, d: dict[str, Any], path: str, key: str, default: tuple[float, ...]) -> tuple[float, float, float]:
        value = self.get(d, path, key, list, default=list(default))
        if len(value) != 3:
            self.fail(f"{path}.{key}", f"expected 3 numbers (one per channel), got {len(value)}")
        return tuple(self.number(v, f"{path}.{key}[{i}]") for i, v in enumerate(value))  # type: ignore[return-value]


_TYPE_NAMES = {str: "a string", int: "an integer", dict: "a JSON object", list: "a JSON array"}


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), f"{type(value).__name__} {value!r}"
    )


def _weights_source(r: _Reader, doc: Any, path: str) -> WeightsSource:
    d = r.obj(doc, path)
    return WeightsSource(
        component=r.get(d, path, "component", str), source=r.get(d, path, "source", str), license=r.get(d, path, "license", str)
    )


def _space(r: _Reader, doc: Any, path: str) -> Space:
    d = r.obj(doc, path)
    return Space(dim=r.positive_int(d, path, "dim"), metric=r.choice(d, path, "metric", METRICS))


def _tensor(r: _Reader, doc: Any, path: str) -> TensorSpec:
    d = r.obj(doc, path)
    shape = r.get(d, path, "shape", list)
    for i, axis in enumerate(shape):
        if isinstance(axis, bool) or not (isinstance(axis, str) and axis or isinstance(axis, int) and axis > 0):
            r.fail(f"{path}.shape[{i}]", f"expected a positive size or a dynamic axis name, got {axis!r}")
    return TensorSpec(name=r.get(d, path, "name", str), dtype=r.choice(d, path, "dtype", INPUT_DTYPES), shape=tuple(shape))


def _tower(r: _Reader, kind: str, doc: Any, spaces: dict[str, Space]) -> Tower:
    path = f"towers.{kind}"
    d = r.obj(doc, path)
    inputs = tuple(_tensor(r, t, f"{path}.inputs[{i}]") for i, t in enumerate(r.get(d, path, "inputs", list)))
    if not inputs:
        r.fail(f"{path}.inputs", "at least one input is required")
    outputs = r.obj(r.get(d, path, "outputs", dict), f"{path}.outputs")
    if not outputs:
        r.fail(f"{path}.outputs", "at least one output is required")
    for out, space in outputs.items():
        if space not in spaces:
            r.fail(f"{path}.outputs.{out}", f"names space {space!r}, which is not in spaces ({', '.join(spaces)})")
    preprocess = tokenizer = None
    if kind == "image":
        preprocess = _preprocess(r, r.get(d, path, "preprocess", dict), f"{path}.preprocess")
        pixel = inputs[0]
        if len(inputs) != 1 or pixel.dtype != "float32" or len(pixel.shape) != 4:
            r.fail(f"{path}.inputs", "an image tower takes one float32 NCHW input")
        if pixel.shape[1:] != (3, preprocess.crop_size, preprocess.crop_size):
            r.fail(
                f"{path}.inputs[0].shape",
                f"{list(pixel.shape)} does not match the preprocessed size [N, 3, {preprocess.crop_size}, {preprocess.crop_size}]",
            )
    else:
        tokenizer = _tokenizer(r, r.get(d, path, "tokenizer", dict), f"{path}.tokenizer")
        names = {t.name for t in inputs}
        if "input_ids" not in names or not names <= {"input_ids", "attention_mask"}:
            r.fail(f"{path}.inputs", f"a text tower takes input_ids and optionally attention_mask, got {sorted(names)}")
        if any(t.dtype != "int64" or len(t.shape) != 2 for t in inputs):
            r.fail(f"{path}.inputs", "text inputs are int64 of shape [batch, sequence]")
    return Tower(
        file=r.get(d, path, "file", str), inputs=inputs, outputs=dict(outputs), preprocess=preprocess, tokenizer=tokenizer
    )


def _preprocess(r: _Reader, d: dict[str, Any], path: str) -> ImagePreprocess:
    size = r.positive_int(d, path, "size")
    crop = r.choice(d, path, "crop", CROPS, default="center")
    crop_size = r.positive_int(d, path, "crop_size") if crop == "center" else size
    if crop == "center" and crop_size > size:
        r.fail(f"{path}.crop_size", f"{crop_size} is larger than the resized image ({size})")
    resize = r.choice(d, path, "resize", RESIZE_MODES, default="shorter_side")
    if crop == "none" and resize != "stretch":
        r.fail(f"{path}.crop", "without a crop the resize must be 'stretch' so that every image has the same shape")
    normalization = r.choice(d, path, "normalization", NORMALIZATIONS, default="mean_std")
    mean = r.triple(d, path, "mean", (0.0, 0.0, 0.0))
    std = r.triple(d, path, "std", (1.0, 1.0, 1.0))
    if any(s <= 0 for s in std):
        r.fail(f"{path}.std", f"every std must be > 0, got {list(std)}")
    return ImagePreprocess(
        size=size,
        crop_size=crop_size,
        resize=resize,
        resize_filter=r.choice(d, path, "resize_filter", RESIZE_FILTERS, default="bicubic"),
        crop=crop,
        normalization=normalization,
        mean=mean,
        std=std,
        color_order=r.choice(d, path, "color_order", COLOR_ORDERS, default="RGB"),
    )


def _tokenizer(r: _Reader, d: dict[str, Any], path: str) -> TokenizerSpec:
    return TokenizerSpec(
        file=r.get(d, path, "file", str), max_length=r.positive_int(d, path, "max_length"), pad_token=r.get(d, path, "pad_token", str)
    )
