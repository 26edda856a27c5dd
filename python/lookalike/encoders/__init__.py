"""Encoders: model bundles, image preprocessing and the onnxruntime towers.

The exporters (``export_clip``, ``build_default``) need the ``build`` extra
(torch and friends) and are imported only by the ``lookalike model`` commands;
nothing here imports torch.
"""

from lookalike.encoders.bundle import Bundle, Manifest, load_bundle, save_manifest
from lookalike.encoders.errors import BundleError, ImageDecodeError, ImageTooLargeError
from lookalike.encoders.preprocess import decode_for_tower, decode_image, image_to_tensor
from lookalike.encoders.runtime import Encoder, RuntimeConfig

__all__ = [
    "Bundle",
    "BundleError",
    "Encoder",
    "ImageDecodeError",
    "ImageTooLargeError",
    "Manifest",
    "RuntimeConfig",
    "decode_for_tower",
    "decode_image",
    "image_to_tensor",
    "load_bundle",
    "save_manifest",
]
