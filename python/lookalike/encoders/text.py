"""Texts -> token id and attention-mask arrays, with the ``tokenizers`` library
and a bundle's ``tokenizer.json``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from lookalike.encoders.bundle import TokenizerSpec
from lookalike.encoders.errors import BundleError


class TextTokenizer:
    """Tokenises a batch of texts, truncated to ``max_length`` tokens and padded
    to the longest text of the batch (not to a fixed length: a short query then
    costs a short sequence). The padding and truncation saved inside
    tokenizer.json are replaced by the manifest's."""

    def __init__(self, path: str | Path, spec: TokenizerSpec) -> None:
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception for a bad file
            raise BundleError(f"{path}: not a valid tokenizer.json ({e})") from None
        pad_id = self._tokenizer.token_to_id(spec.pad_token)
        if pad_id is None:
            raise BundleError(f"{path}: tokenizer.pad_token {spec.pad_token!r} is not in the tokenizer's vocabulary")
        self._tokenizer.enable_truncation(max_length=spec.max_length)
        self._tokenizer.enable_padding(pad_id=pad_id, pad_token=spec.pad_token)
        self.max_length = spec.max_length

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Returns (input_ids, attention_mask), both int64 of shape (len(texts), longest)."""
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, not str")
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask
