"""Exports a CLIP checkpoint (Hugging Face ``transformers`` CLIPModel) into a
model bundle: ``image.onnx`` and ``text.onnx`` with the projection and the L2
normalisation inside the graphs, both writing into the ``joint`` space, plus
``tokenizer.json`` and a manifest with the checkpoint's own preprocessing.

Build time only (the ``build`` extra: torch, transformers). A checkpoint is a
local folder (``save_pretrained`` layout) or, where there is internet, a hub id
such as ``openai/clip-vit-base-patch32``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lookalike.encoders.bundle import (
    JOINT_SPACE as SPACE,
    ImagePreprocess,
    Manifest,
    Space,
    TensorSpec,
    TokenizerSpec,
    Tower,
    WeightsSource,
    save_manifest,
)
from lookalike.encoders.onnx_export import export_onnx

# OpenAI CLIP's pixel statistics, used when a checkpoint has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Pillow's resample numbers, as saved in preprocessor_config.json.
_PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


class ImageTower(torch.nn.Module):
    """pixel_values (N, 3, S, S) -> L2-normalised projected image embeddings."""

    def __init__(self, clip: Any) -> None:
        super().__init__()
        self.vision_model = clip.vision_model
        self.projection = clip.visual_projection

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output
        return F.normalize(self.projection(pooled), dim=-1)


class TextTower(torch.nn.Module):
    """input_ids, attention_mask (N, L) -> L2-normalised projected text embeddings."""

    def __init__(self, clip: Any) -> None:
        super().__init__()
        self.text_model = clip.text_model
        self.projection = clip.text_projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return F.normalize(self.projection(pooled), dim=-1)


def export_clip(
    source: str,
    out: str | Path,
    *,
    model_id: str | None = None,
    model_version: str | None = None,
    license: str = "see the checkpoint's model card",
    weights_source: str | None = None,
) -> Path:
    """Exports the checkpoint at ``source`` (a folder, or a hub id to download)
    into the bundle folder ``out``; returns ``out``. ``weights_source``: where
    the manifest says the weights came from (default: ``source``)."""
    from transformers import CLIPModel

    folder = _resolve_checkpoint(source)
    # Eager attention traces into plain MatMul/Softmax nodes that every
    # onnxruntime build runs; SDPA kernels add nothing after export.
    model = CLIPModel.from_pretrained(folder, attn_implementation="eager").eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer_file, pad_token = _tokenizer_files(folder, out)
    preprocess = _preprocess_spec(folder, model.config.vision_config.image_size)
    write_clip_bundle(
        model,
        out,
        preprocess=preprocess,
        tokenizer=TokenizerSpec(tokenizer_file, model.config.text_config.max_position_embeddings, pad_token),
        model_id=model_id or source.rstrip("/").split("/")[-1],
        model_version=model_version or "1",
        weights=(WeightsSource("image and text towers", weights_source or source, license),),
    )
    return out


def write_clip_bundle(
    model: Any,
    out: Path,
    *,
    preprocess: ImagePreprocess,
    tokenizer: TokenizerSpec,
    model_id: str,
    model_version: str,
    weights: tuple[WeightsSource, ...],
) -> Manifest:
    """Exports both towers of a loaded CLIPModel into ``out`` (which must already
    hold the tokenizer file) and writes the manifest."""
    size = preprocess.crop_size
    pixels = torch.zeros(2, 3, size, size)
    export_onnx(
        ImageTower(model), (pixels,), out / "image.onnx", ["pixel_values"], [SPACE], {"pixel_values": {0: "batch"}, SPACE: {0: "batch"}}
    )
    # Example text of length 3 (bos, a token, eos); the sequence axis is dynamic.
    config = model.config.text_config
    ids = torch.tensor([[config.bos_token_id, 5, config.eos_token_id]] * 2)
    export_onnx(
        TextTower(model),
        (ids, torch.ones_like(ids)),
        out / "text.onnx",
        ["input_ids", "attention_mask"],
        [SPACE],
        {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}, SPACE: {0: "batch"}},
    )
    manifest = Manifest(
        model_id=model_id,
        model_version=model_version,
        spaces={SPACE: Space(dim=model.config.projection_dim, metric="cosine")},
        towers={
            "image": Tower(
                file="image.onnx",
                inputs=(TensorSpec("pixel_values", "float32", ("batch", 3, size, size)),),
                outputs={SPACE: SPACE},
                preprocess=preprocess,
            ),
            "text": Tower(
                file="text.onnx",
                inputs=(
                    TensorSpec("input_ids", "int64", ("batch", "sequence")),
                    TensorSpec("attention_mask", "int64", ("batch", "sequence")),
                ),
                outputs={SPACE: SPACE},
                tokenizer=tokenizer,
            ),
        },
        weights=weights,
        image_query={SPACE: 1.0},
        notes="CLIP exported by lookalike model export-clip; projection and L2 normalisation are in the graphs.",
    )
    save_manifest(manifest, out)
    return manifest


def _resolve_checkpoint(source: str) -> Path:
    path = Path(source)
    if path.is_dir():
        return path
    if path.exists() or source.startswith((".", "/")):
        raise FileNotFoundError(f"{source}: not a checkpoint folder")
    from huggingface_hub import snapshot_download  # a dependency of transformers

    # Configs, tokenizer files and safetensors weights; not the duplicate
    # PyTorch/TF/Flax weight files that many CLIP repositories also hold.
    patterns = ["*.json", "*.txt", "*.safetensors"]
    return Path(snapshot_download(source, allow_patterns=patterns))


def _tokenizer_files(folder: Path, out: Path) -> tuple[str, str]:
    """Copies (or converts) the checkpoint's tokenizer into ``out/tokenizer.json``;
    returns the file name and the pad token."""
    config = _read_json(folder / "tokenizer_config.json") | _read_json(folder / "special_tokens_map.json")
    if (folder / "tokenizer.json").is_file():
        shutil.copyfile(folder / "tokenizer.json", out / "tokenizer.json")
    else:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(folder).backend_tokenizer.save(str(out / "tokenizer.json"))
    pad = config.get("pad_token") or config.get("eos_token") or "<|endoftext|>"
    return "tokenizer.json", pad["content"] if isinstance(pad, dict) else pad


def _preprocess_spec(folder: Path, image_size: int) -> ImagePreprocess:
    """The checkpoint's preprocessor_config.json as an ImagePreprocess (CLIP's
    defaults where it has none)."""
    config = _read_json(folder / "preprocessor_config.json")
    size = config.get("size", image_size)
    size = size.get("shortest_edge", image_size) if isinstance(size, dict) else size
    crop = config.get("crop_size", image_size)
    crop = crop.get("height", image_size) if isinstance(crop, dict) else crop
    center_crop = config.get("do_center_crop", True)
    return ImagePreprocess(
        size=int(size),
        crop_size=int(crop) if center_crop else int(size),
        resize="shorter_side" if center_crop else "stretch",
        resize_filter=_PIL_FILTERS.get(config.get("resample", 3), "bicubic"),
        crop="center" if center_crop else "none",
        normalization="mean_std",
        mean=tuple(config.get("image_mean", CLIP_MEAN)),
        std=tuple(config.get("image_std", CLIP_STD)),
    )


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
