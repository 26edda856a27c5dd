"""Uploaded image bytes -> an RGB picture -> the tensor an image tower expects.

``decode_image`` accepts whatever a shopper's phone or a catalogue feed sends and
never crashes on it: EXIF orientation is applied; palette, greyscale, CMYK,
16-bit and float images become 8-bit RGB; transparency is composited on white
(product shots on a transparent background should look like product shots on a
white one); an animated image gives its first frame. Bytes that are not an
image, or are truncated, raise ``ImageDecodeError``; an image over the pixel
limit or the aspect-ratio limit raises ``ImageTooLargeError`` before its pixels
are decoded.

``image_to_tensor`` resizes, crops and normalises exactly as a bundle's
``ImagePreprocess`` says, with Pillow's antialiased resampling (the same
numbers as Hugging Face's Pillow CLIP processor; tested).

``decode_for_tower`` is what every path into an image tower uses (queries,
products, batch builds): a JPEG is decoded at the smallest DCT scale (1/2, 1/4,
1/8) whose sides are still at least the resize's size, which is most of the
decode and the resize saved (an 800x600 photo for a 224 input: 2.5x less time);
the model input moves a little (docs/encoders-and-relevance.md, "Ingest
throughput").
"""

from __future__ import annotations

import functools
import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lookalike.encoders.bundle import ImagePreprocess
from lookalike.encoders.errors import ImageDecodeError, ImageTooLargeError

# 64 megapixels: above a 48 MP phone photo, far below what exhausts memory
# (a 64 MP RGB image is 192 MB decoded).
DEFAULT_MAX_PIXELS = 64_000_000
# Long side / short side. The resize scales the short side to the model's input
# size, so the resized image is that many times longer: a 102-byte 1x4000 PNG
# became a 224 x 896,000 intermediate (~800 MB). Within the ratio and the pixel
# limit, no step of image_to_tensor holds more than about 32 MB (a 64 MP image
# of ratio 20 resized for a 224 input); outputs are unchanged.
DEFAULT_MAX_ASPECT_RATIO = 20.0

_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_WHITE = (255, 255, 255, 255)


def decode_image(
    data: bytes | bytearray | memoryview | str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO, reduce_to: int | None = None,
) -> Image.Image:
    """Decodes image bytes (or a file path) into an 8-bit RGB ``PIL.Image``.

    ``max_pixels`` bounds width x height and ``max_aspect_ratio`` the long side
    over the short one; both are checked from the header, before the pixel data
    is decoded, so a decompression bomb or a sliver that the resize would
    stretch into gigabytes costs nothing. ``reduce_to``: a JPEG is decoded at
    the smallest DCT scale whose width and height stay at least that many
    pixels (libjpeg's scaled decoding; other formats at full size).
    """
    if isinstance(data, (str, os.PathLike)):
        with open(data, "rb") as f:
            data = f.read()
    if len(data) == 0:
        raise ImageDecodeError("empty input: no image bytes")
    try:
        # Pillow's own bomb check is a process-wide setting with a warning below
        # its hard limit; ours is per call and exact, so silence Pillow's warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"image too large: {e}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not an image of a known format ({len(data)} bytes)") from None
    except (OSError, ValueError, SyntaxError) as e:  # broken headers surface as any of these
        raise ImageDecodeError(f"unreadable image header: {e}") from None

    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image has {width}x{height} = {width * height} pixels, the limit is {max_pixels}")
    if width == 0 or height == 0:
        raise ImageDecodeError(f"image has no pixels ({width}x{height})")
    if max(width, height) > max_aspect_ratio * min(width, height):
        raise ImageTooLargeError(f"image is {width}x{height}: its long side is {max(width, height) / min(width, height):g} "
                                 f"times its short side, the limit is {max_aspect_ratio:g}")
    if reduce_to is not None and image.format == "JPEG":
        image.draft(None, (reduce_to, reduce_to))  # the limits above hold for the full size, as they must
    try:
        image.seek(0)  # animated GIF/WebP/APNG: the first frame
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageDecodeError(f"{image.format or 'image'} data is truncated or corrupt: {e}") from None
    return to_rgb(_apply_exif_orientation(image))


def decode_for_tower(data: bytes | bytearray | memoryview, spec: ImagePreprocess, max_pixels: int = DEFAULT_MAX_PIXELS,
                     max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO) -> Image.Image:
    """``decode_image`` for an image tower of ``spec``: a JPEG at the smallest
    scale its resize still shrinks from. Every path into a tower decodes with
    this, so a query and a product of the same photo get the same tensor."""
    return decode_image(data, max_pixels, max_aspect_ratio, reduce_to=spec.size)


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError, ZeroDivisionError):
        # A damaged EXIF block must not lose the upload: use the pixels as stored.
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB, transparency composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":
        return _high_depth_to_rgb(image)
    if image.mode == "P":
        # Palette images may carry transparency in the palette or a tRNS chunk.
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
    elif image.mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    elif image.mode == "L" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, _WHITE)
        return Image.alpha_composite(background, image).convert("RGB")
    # L, 1, CMYK, YCbCr, LAB, HSV, I;16 variants handled above.
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit integer greyscale scales 0..65535 to 0..255 (Pillow's own convert
    clips at 255, which turns most 16-bit photos white); float images are taken
    as 0..1 when they fit that range and as 0..255 otherwise."""
    pixels = np.asarray(image)
    if image.mode == "F":
        pixels = pixels.astype(np.float64)
        if np.nanmax(pixels, initial=0.0) <= 1.0:
            pixels = pixels * 255.0
    else:
        pixels = pixels.astype(np.float64) * (255.0 / 65535.0)
    grey = np.clip(np.nan_to_num(pixels), 0, 255).round().astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def resize_and_crop(image: Image.Image, spec: ImagePreprocess) -> Image.Image:
    """Resizes (antialiased) and crops an RGB image as ``spec`` says."""
    width, height = image.size
    # The long side is rounded down and the crop offset too, as torchvision's
    # Resize/CenterCrop and Hugging Face's CLIP processor do: a pixel either way
    # would shift the crop against the numbers the model was trained with.
    if spec.resize == "stretch":
        target = (spec.size, spec.size)
    elif width <= height:
        target = (spec.size, max(spec.size, int(height * spec.size / width)))
    else:
        target = (max(spec.size, int(width * spec.size / height)), spec.size)
    if target != image.size:
        image = image.resize(target, _FILTERS[spec.resize_filter])
    if spec.crop == "center":
        left = (image.width - spec.crop_size) // 2
        top = (image.height - spec.crop_size) // 2
        image = image.crop((left, top, left + spec.crop_size, top + spec.crop_size))
    return image


def image_to_tensor(image: Image.Image, spec: ImagePreprocess) -> np.ndarray:
    """An RGB image -> a float32 (3, crop_size, crop_size) array, normalised and
    in the channel order of ``spec``."""
    if image.mode != "RGB":
        image = to_rgb(image)
    pixels = np.asarray(resize_and_crop(image, spec)).transpose(2, 0, 1)  # uint8, channels first (a view)
    values = _channel_values(spec.normalization, tuple(spec.mean), tuple(spec.std))
    tensor = np.empty(pixels.shape, np.float32)
    for channel, source in enumerate((2, 1, 0) if spec.color_order == "BGR" else (0, 1, 2)):
        # mode="clip" keeps numpy from buffering the output; uint8 indices never need it.
        np.take(values[source], pixels[source], out=tensor[channel], mode="clip")
    return tensor


@functools.lru_cache(maxsize=16)
def _channel_values(normalization: str, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: per RGB channel, the normalised value of each 8-bit
    level, computed in float32 as (x / 255 - mean) / std; a lookup of these is
    the same numbers at a fraction of the arithmetic."""
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
    if normalization != "mean_std":
        return np.stack([levels] * 3)
    return np.stack([(levels - np.float32(m)) / np.float32(s) for m, s in zip(mean, std)])
