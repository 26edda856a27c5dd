"""A tiny labelled catalog drawn at test time, in the format of
lookalike.eval.relevance: each category has its colour, each product is one
shape in that colour on a random background, at a random size and place, and
each product's image query a second such drawing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Category names are words of tests/tiny_clip.py's vocabulary, so text queries tokenize.
CATEGORIES = ("shoe", "bag", "dress", "shirt")
COLOURS = ("red", "blue", "green")


# Each category's shapes are drawn in its own colour (jittered); the background,
# a random colour over most of the picture, is the nuisance that dominates a
# random encoder's vectors.
FILLS = {"shoe": (220, 40, 40), "bag": (40, 200, 40), "dress": (40, 40, 220), "shirt": (230, 230, 40)}
SHAPE_KINDS = ("ellipse", "square", "triangle", "cross")


def _draw(category: str, rng: np.random.Generator, size: int = 64) -> Image.Image:
    background = tuple(int(v) for v in rng.integers(0, 256, 3))
    fill = tuple(int(np.clip(v + rng.integers(-20, 21), 0, 255)) for v in FILLS[category])
    shape = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    r = int(rng.integers(size // 4, size // 2 - 2))
    cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
    if shape == "ellipse":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    else:
        w = max(2, r // 3)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    return image


def make_synthetic_catalog(folder: Path, per_category: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (folder / "catalog").mkdir(parents=True, exist_ok=True)
    (folder / "queries").mkdir(exist_ok=True)
    queries = []
    with open(folder / "catalog.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "image", "title", "category"])
        for id in range(per_category * len(CATEGORIES)):
            shape = CATEGORIES[id % len(CATEGORIES)]
            _draw(shape, rng).save(folder / f"catalog/{id}.png")
            _draw(shape, rng).save(folder / f"queries/{id}.png")
            title = f"{COLOURS[id % len(COLOURS)]} {shape}"
            writer.writerow([id, f"catalog/{id}.png", title, shape])
            queries.append({"id": f"i{id}", "image": f"queries/{id}.png", "relevant_category": shape, "item": id})
            queries.append({"id": f"t{id}", "text": title, "relevant_category": shape, "item": id})
    with open(folder / "queries.jsonl", "w") as f:
        f.writelines(json.dumps(q) + "\n" for q in queries)
    return folder


def make_tiny_conv_bundle(folder: Path, seed: int = 0, dim: int = 32) -> Path:
    """An image-only bundle whose tower is a seeded random convolution, ReLU
    and global average pooling: a tiny model whose vectors hold colour and
    texture statistics of the whole picture, background included."""
    import torch

    from lookalike.encoders.bundle import ImagePreprocess, Manifest, Space, TensorSpec, Tower, WeightsSource, save_manifest
    from lookalike.encoders.onnx_export import export_onnx

    class Tower_(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.conv = torch.nn.Conv2d(3, dim, 5, stride=2)

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            pooled = torch.relu(self.conv(pixels)).mean(dim=(2, 3))
            return torch.nn.functional.normalize(pooled, dim=-1)

    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(Tower_(), (torch.zeros(2, 3, 32, 32),), folder / "image.onnx", ["pixel_values"], ["visual"],
                {"pixel_values": {0: "batch"}, "visual": {0: "batch"}})
    save_manifest(Manifest(
        model_id="tiny-conv", model_version="1", spaces={"visual": Space(dim)},
        towers={"image": Tower("image.onnx", (TensorSpec("pixel_values", "float32", ("batch", 3, 32, 32)),),
                               {"visual": "visual"}, preprocess=ImagePreprocess(size=32, crop_size=32, mean=(0.5,) * 3,
                                                                                std=(0.5,) * 3))},
        weights=(WeightsSource("image tower", "random, seeded (tests)", "none"),)), folder)
    return folder


def make_tiny_two_space_bundle(folder: Path, seed: int = 0, dim: int = 32, text_dim: int = 16) -> Path:
    """A bundle shaped like the default one, tiny and random: the image tower
    writes ``visual`` (a seeded random convolution, ReLU and global average
    pooling) and ``joint`` (a fixed random projection of those features,
    standing in for ConSE); the text tower writes ``joint`` (the mean of seeded
    random word vectors over the attention mask) with tests/tiny_clip.py's
    word-level tokenizer."""
    import torch

    from lookalike.encoders.bundle import (
        ImagePreprocess,
        Manifest,
        Space,
        TensorSpec,
        Tower,
        TokenizerSpec,
        WeightsSource,
        save_manifest,
    )
    from lookalike.encoders.onnx_export import export_onnx
    from tiny_clip import EOS, make_tokenizer

    tokenizer, vocab = make_tokenizer()
    torch.manual_seed(seed)

    class ImageTower_(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, dim, 5, stride=2)
            self.register_buffer("to_joint", torch.randn(dim, text_dim))

        def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pooled = torch.relu(self.conv(pixels)).mean(dim=(2, 3))
            normalize = torch.nn.functional.normalize
            return normalize(pooled @ self.to_joint, dim=-1), normalize(pooled, dim=-1)

    class TextTower_(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.words = torch.nn.Embedding(len(vocab), text_dim)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            mask = attention_mask.unsqueeze(-1).to(torch.float32)
            return torch.nn.functional.normalize((self.words(input_ids) * mask).sum(1), dim=-1)

    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(ImageTower_(), (torch.zeros(2, 3, 32, 32),), folder / "image.onnx", ["pixel_values"],
                ["joint", "visual"], {"pixel_values": {0: "batch"}, "joint": {0: "batch"}, "visual": {0: "batch"}})
    ids = torch.tensor([[1, 5, 2]] * 2)
    export_onnx(TextTower_(), (ids, torch.ones_like(ids)), folder / "text.onnx", ["input_ids", "attention_mask"],
                ["joint"], {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                            "joint": {0: "batch"}})
    tokenizer.save(str(folder / "tokenizer.json"))
    sequence = ("batch", "sequence")
    save_manifest(Manifest(
        model_id="tiny-two-space", model_version="1", spaces={"joint": Space(text_dim), "visual": Space(dim)},
        towers={
            "image": Tower("image.onnx", (TensorSpec("pixel_values", "float32", ("batch", 3, 32, 32)),),
                           {"joint": "joint", "visual": "visual"},
                           preprocess=ImagePreprocess(size=32, crop_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)),
            "text": Tower("text.onnx", (TensorSpec("input_ids", "int64", sequence),
                                        TensorSpec("attention_mask", "int64", sequence)),
                          {"joint": "joint"}, tokenizer=TokenizerSpec("tokenizer.json", 16, EOS)),
        },
        weights=(WeightsSource("both towers", "random, seeded (tests)", "none"),),
        image_query={"visual": 1.0}), folder)
    return folder
