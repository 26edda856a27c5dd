"""Runs a bundle's towers with onnxruntime: images and texts in, one float32
matrix per vector space out.

Imports only onnxruntime, numpy, Pillow and tokenizers: the serving path never
loads torch.

Execution provider: CUDA when onnxruntime-gpu is installed and a GPU answers,
the CPU otherwise. ``device="auto"`` falls back to the CPU cleanly when the
CUDA provider is listed but cannot start (no GPU, a missing CUDA library);
``device="cuda"`` makes that an error instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

try:
    import onnxruntime as ort
except ModuleNotFoundError as e:  # pragma: no cover - depends on the install
    raise ModuleNotFoundError(
        "onnxruntime is not installed: pip install 'lookalike[cpu]' (or 'lookalike[gpu]' for CUDA)", name="onnxruntime"
    ) from e

from lookalike.encoders.bundle import Bundle, Tower, load_bundle
from lookalike.encoders.errors import BundleError
from lookalike.encoders.preprocess import DEFAULT_MAX_ASPECT_RATIO, DEFAULT_MAX_PIXELS, decode_for_tower, image_to_tensor
from lookalike.encoders.text import TextTokenizer

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")

ImageInput = bytes | bytearray | memoryview | Image.Image


@dataclass(frozen=True)
class RuntimeConfig:
    """How the towers run.

    - ``device``: ``auto`` (CUDA if it works, else CPU), ``cpu`` or ``cuda``.
    - ``intra_op_threads``: threads inside one operator; 0 lets onnxruntime use
      every core. On a server that encodes several requests at once, fewer
      threads per session and more sessions in parallel give more throughput.
    - ``inter_op_threads``: threads across independent operators (1 is right
      for these sequential graphs).
    - ``spinning``: whether an intra-op thread spins while it waits for work
      (onnxruntime's default) instead of sleeping. Off by default: a spinning
      thread holds a core that the process's other threads (image decoding,
      gRPC, the index) or other processes need, and on a core that something
      else holds, its partner spins at every operator's barrier
      (docs/encoders-and-relevance.md, "Ingest throughput").
    - ``max_batch``: inputs per graph run; a longer list is split into chunks.
      Bigger chunks amortise per-run overhead but hold more memory.
    - ``max_pixels``: the decompression-bomb limit for image bytes.
    - ``max_aspect_ratio``: long side / short side of image bytes (see preprocess.py).
    """

    device: str = "auto"
    intra_op_threads: int = 0
    inter_op_threads: int = 1
    spinning: bool = False
    max_batch: int = 32
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device {self.device!r} is not one of {', '.join(DEVICES)}")
        for name in ("intra_op_threads", "inter_op_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_batch", "max_pixels", "max_aspect_ratio"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


def choose_providers(device: str, available: Sequence[str]) -> list[str]:
    """The providers to ask for, best first, given onnxruntime's available list."""
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if device == "cuda":
        raise RuntimeError(f"device 'cuda' asked for, but onnxruntime offers only {list(available)}; install the 'gpu' extra")
    return [CPU]


SessionFactory = Callable[[str, ort.SessionOptions, list[str]], ort.InferenceSession]


def _ort_session(path: str, options: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
    return ort.InferenceSession(path, sess_options=options, providers=providers)


def open_session(
    path: str | os.PathLike[str],
    config: RuntimeConfig,
    available: Sequence[str] | None = None,
    factory: SessionFactory = _ort_session,
) -> ort.InferenceSession:
    """Opens one ONNX graph on the best provider ``config`` allows.

    ``available`` and ``factory`` default to onnxruntime's own; tests replace
    them to exercise the CUDA-then-CPU choice on a machine without a GPU.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = config.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.spinning else "0")
    providers = choose_providers(config.device, ort.get_available_providers() if available is None else available)
    path = os.fspath(path)
    if providers[0] != CUDA:
        return factory(path, options, providers)
    try:
        session = factory(path, options, providers)
    except Exception as e:  # onnxruntime raises its own Fail/RuntimeException types
        if config.device == "cuda":
            raise RuntimeError(f"the CUDA provider failed to start for {path}: {e}") from e
        log.warning("CUDA provider failed to start for %s (%s); using the CPU", path, e)
        return factory(path, options, [CPU])
    # onnxruntime drops a provider that cannot start and goes on with the rest.
    if CUDA not in session.get_providers():
        if config.device == "cuda":
            raise RuntimeError(f"the CUDA provider did not start for {path} (no GPU?)")
        log.warning("CUDA provider listed but not started for %s; using the CPU", path)
    return session


class Encoder:
    """The towers of one bundle, ready to encode.

    >>> encoder = Encoder("data/models/default")
    >>> encoder.encode_images([jpeg_bytes])["joint"].shape   # (1, dim), L2-normalised
    >>> encoder.encode_texts(["red running shoes"])["joint"]

    Both methods return ``{space name: float32 array (n, dim)}`` in input order.
    The same input gives the same vector whatever the batch it is part of
    (up to float rounding of a few 1e-7; tested).
    """

    def __init__(
        self,
        bundle: Bundle | str | os.PathLike[str],
        config: RuntimeConfig | None = None,
        *,
        session_factory: SessionFactory = _ort_session,
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.config = config or RuntimeConfig()
        manifest = self.bundle.manifest
        self._sessions = {}
        for kind, tower in manifest.towers.items():
            session = open_session(self.bundle.file(tower.file), self.config, factory=session_factory)
            _check_session(self.bundle, kind, tower, session)
            self._sessions[kind] = session
        text = manifest.towers.get("text")
        self._tokenizer = TextTokenizer(self.bundle.file(text.tokenizer.file), text.tokenizer) if text else None

    @property
    def spaces(self) -> dict[str, int]:
        """Space name -> dimension, for every space of the bundle."""
        return {name: s.dim for name, s in self.bundle.manifest.spaces.items()}

    @property
    def providers(self) -> dict[str, list[str]]:
        """The providers each tower's session runs on."""
        return {kind: s.get_providers() for kind, s in self._sessions.items()}

    def session(self, kind: str) -> ort.InferenceSession:
        """The onnxruntime session of the ``image`` or ``text`` tower (for
        benchmarks and parity checks that feed the graph directly)."""
        self._tower(kind)
        return self._sessions[kind]

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask) for ``texts``, as the text tower gets them."""
        self._tower("text")
        assert self._tokenizer is not None
        return self._tokenizer(list(texts))

    def preprocess_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Decodes (bytes) and preprocesses images into the image tower's NCHW batch."""
        spec = self._tower("image").preprocess
        assert spec is not None  # validated by the bundle loader
        tensors = []
        for image in images:
            if not isinstance(image, Image.Image):
                if not isinstance(image, (bytes, bytearray, memoryview)):
                    raise TypeError(f"an image is bytes or a PIL.Image, not {type(image).__name__}")
                image = decode_for_tower(image, spec, self.config.max_pixels, self.config.max_aspect_ratio)
            tensors.append(image_to_tensor(image, spec))
        return np.stack(tensors) if tensors else np.empty((0, 3, spec.crop_size, spec.crop_size), np.float32)

    def encode_images(self, images: Sequence[ImageInput]) -> dict[str, np.ndarray]:
        """Image bytes (as uploaded) or PIL images -> {space: (n, dim) float32}."""
        return self.encode_pixels(self.preprocess_images(images))

    def encode_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """Preprocessed images (the NCHW batch preprocess_images makes) ->
        {space: (n, dim) float32}. The service preprocesses each upload on its own
        thread (a bad image fails alone) and batches only this step."""
        tower = self._tower("image")
        return self._run("image", tower, lambda lo, hi: {tower.inputs[0].name: pixels[lo:hi]}, len(pixels))

    def encode_texts(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Texts -> {space: (n, dim) float32}. Each chunk is padded to its own
        longest text."""
        if isinstance(texts, str):
            raise TypeError("encode_texts takes a list of texts, not one str")
        tower = self._tower("text")
        wanted = {t.name for t in tower.inputs}

        def feed(lo: int, hi: int) -> dict[str, np.ndarray]:
            ids, mask = self.tokenize(texts[lo:hi])
            return {k: v for k, v in (("input_ids", ids), ("attention_mask", mask)) if k in wanted}

        return self._run("text", tower, feed, len(texts))

    def _tower(self, kind: str) -> Tower:
        tower = self.bundle.manifest.towers.get(kind)
        if tower is None:
            raise ValueError(f"bundle {self.bundle.manifest.model_id!r} has no {kind} tower")
        return tower

    def _run(
        self, kind: str, tower: Tower, feed: Callable[[int, int], dict[str, np.ndarray]], n: int
    ) -> dict[str, np.ndarray]:
        session = self._sessions[kind]
        names = list(tower.outputs)
        chunks: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for lo in range(0, n, self.config.max_batch):
            for name, out in zip(names, session.run(names, feed(lo, min(n, lo + self.config.max_batch)))):
                chunks[name].append(out)
        spaces = self.bundle.manifest.spaces
        result = {}
        for name, space_name in tower.outputs.items():
            dim = spaces[space_name].dim
            result[space_name] = (
                np.concatenate(chunks[name]).astype(np.float32, copy=False) if n else np.empty((0, dim), np.float32)
            )
        return result


def _check_session(bundle: Bundle, kind: str, tower: Tower, session: ort.InferenceSession) -> None:
    """The graph must have the inputs and outputs the manifest promises."""
    where = f"{bundle.file(tower.file)}"
    graph_inputs = {i.name: i for i in session.get_inputs()}
    for spec in tower.inputs:
        if spec.name not in graph_inputs:
            raise BundleError(f"{where}: towers.{kind}.inputs: the graph has no input {spec.name!r} (it has {sorted(graph_inputs)})")
        graph_shape = graph_inputs[spec.name].shape
        for axis, (want, got) in enumerate(zip(spec.shape, graph_shape)):
            if isinstance(want, int) and isinstance(got, int) and want != got:
                raise BundleError(f"{where}: input {spec.name!r} axis {axis} is {got} in the graph, {want} in the manifest")
    graph_outputs = {o.name: o for o in session.get_outputs()}
    for out, space in tower.outputs.items():
        if out not in graph_outputs:
            raise BundleError(f"{where}: towers.{kind}.outputs: the graph has no output {out!r} (it has {sorted(graph_outputs)})")
        dim = graph_outputs[out].shape[-1]
        want = bundle.manifest.spaces[space].dim
        if isinstance(dim, int) and dim != want:
            raise BundleError(f"{where}: output {out!r} has {dim} dimensions, space {space!r} has {want}")
