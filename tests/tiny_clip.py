"""A tiny CLIP checkpoint made at test time: random weights from a small
CLIPConfig and a word-level tokenizer built with ``tokenizers``, saved in the
Hugging Face folder layout that ``lookalike model export-clip`` reads."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = "a photo of red blue green shoe shoes bag dress shirt running leather small large the".split()
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
IMAGE_SIZE = 32


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate(["<unk>", BOS, EOS, *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    return tokenizer, vocab


def make_tiny_clip(folder: Path, seed: int = 0, projection_dim: int = 24) -> Path:
    """Writes config, weights, tokenizer and preprocessor config into ``folder``."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    tokenizer, vocab = make_tokenizer()
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=16,
            bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], pad_token_id=vocab[EOS],
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            image_size=IMAGE_SIZE, patch_size=8,
        ),
        projection_dim=projection_dim,
    )
    model = CLIPModel(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"pad_token": EOS, "eos_token": EOS, "bos_token": BOS}))
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"size": {"shortest_edge": IMAGE_SIZE}, "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                    "resample": 3, "do_center_crop": True, "image_mean": [0.48, 0.46, 0.41], "image_std": [0.27, 0.26, 0.28]})
    )
    return folder
