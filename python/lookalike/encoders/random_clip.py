"""A CLIP checkpoint of a real model's shape with random weights, built offline:
what a real CLIP costs per query on this machine (its graph, its sizes, its
sequence length) before anyone downloads one. The vectors mean nothing.

``lookalike model export-clip --random vit-b-32 --out DIR`` writes the
checkpoint folder this module makes and exports it through the same path as
a downloaded one (export_clip.py), so the ONNX graphs are the real model's.
The tokenizer is word-level over a vocabulary of the checkpoint's size: a
query's token count is about what CLIP's BPE gives for plain English words.

Build time only (the ``build`` extra: torch, transformers).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

BOS, EOS = "<|startoftext|>", "<|endoftext|>"

# transformers' CLIPConfig defaults are openai/clip-vit-base-patch32's shape
# (ViT-B/32 image tower 224 px, 12 x 768; text 12 x 512 over 77 tokens; 512-d).
SHAPES: dict[str, dict[str, Any]] = {"vit-b-32": {}}


def clip_config(shape: str) -> Any:
    """The transformers CLIPConfig of a named shape (see SHAPES)."""
    from transformers import CLIPConfig

    if shape not in SHAPES:
        raise ValueError(f"unknown CLIP shape {shape!r}; known: {', '.join(SHAPES)}")
    return CLIPConfig(**SHAPES[shape])


def export_random_clip(config: Any, out: str | Path, model_id: str, seed: int = 0) -> Path:
    """A bundle in ``out`` of a CLIP of ``config`` (a CLIPConfig, e.g. clip_config
    of a shape) with seeded random weights."""
    from lookalike.encoders.export_clip import export_clip

    with tempfile.TemporaryDirectory(prefix="random-clip-") as tmp:
        folder = write_random_checkpoint(config, Path(tmp) / "checkpoint", seed)
        return export_clip(str(folder), out, model_id=model_id, model_version=str(seed),
                           license="random weights: no licence applies", weights_source=f"random, seed {seed}")


def write_random_checkpoint(config: Any, folder: Path, seed: int = 0) -> Path:
    """A CLIPModel of ``config`` with seeded random weights, saved in the Hugging
    Face folder layout export_clip reads, with a tokenizer and preprocessing
    config of the same shape. The text config's bos/eos ids are kept: CLIP pools
    the text at its end-of-text token."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPModel

    text = config.text_config
    vocab = {f"w{i}": i for i in range(text.vocab_size)}
    for token, id_ in ((BOS, text.bos_token_id), (EOS, text.eos_token_id)):
        vocab.pop(f"w{id_}")
        vocab[token] = id_
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=f"w{_unknown_id(text)}"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, text.bos_token_id), (EOS, text.eos_token_id)])

    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"pad_token": EOS, "eos_token": EOS, "bos_token": BOS}))
    size = config.vision_config.image_size
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"shortest_edge": size}, "crop_size": {"height": size, "width": size}, "resample": 3,
         "do_center_crop": True}))
    return folder


def _unknown_id(text_config: Any) -> int:
    """A plain word's id for words outside the vocabulary (every real word: the
    ids index random embeddings, so any id costs the same)."""
    return next(i for i in range(text_config.vocab_size) if i not in (text_config.bos_token_id,
                                                                     text_config.eos_token_id))
