"""Image decoding never crashes on real uploads, and resizing gives the numbers
of an independent implementation of Pillow's antialiased resampling."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lookalike.encoders.bundle import ImagePreprocess
from lookalike.encoders.errors import ImageDecodeError, ImageTooLargeError
from lookalike.encoders.preprocess import decode_for_tower, decode_image, image_to_tensor, resize_and_crop

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def pixel(image: Image.Image, xy=(0, 0)) -> np.ndarray:
    return np.asarray(image)[xy[1], xy[0]].astype(int)


def test_rgb_jpeg_decodes_as_is():
    decoded = decode_image(encode(Image.new("RGB", (8, 6), RED), "JPEG", quality=95))
    assert decoded.mode == "RGB" and decoded.size == (8, 6)
    assert np.abs(pixel(decoded) - RED).max() <= 3


def test_exif_orientation_is_applied():
    # Left half red, right half blue, stored landscape; orientation 6 means "rotate
    # 90 degrees clockwise to display", so the displayed image is portrait with red on top.
    stored = Image.new("RGB", (20, 10), RED)
    stored.paste(BLUE, (10, 0, 20, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert decoded.size == (10, 20)
    assert np.abs(pixel(decoded, (5, 2)) - RED).max() <= 8
    assert np.abs(pixel(decoded, (5, 17)) - BLUE).max() <= 8


def test_palette_image_becomes_rgb():
    decoded = decode_image(encode(Image.new("RGB", (4, 4), BLUE).convert("P"), "PNG"))
    assert decoded.mode == "RGB" and tuple(pixel(decoded)) == BLUE


def test_palette_transparency_is_composited_on_white():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([255, 0, 0, 0, 0, 255])
    image.putpixel((1, 1), 1)
    decoded = decode_image(encode(image, "GIF", transparency=0))
    assert tuple(pixel(decoded, (0, 0))) == WHITE
    assert tuple(pixel(decoded, (1, 1))) == BLUE


@pytest.mark.parametrize("mode", ["L", "1"])
def test_greyscale_and_bilevel_become_rgb(mode):
    decoded = decode_image(encode(Image.new(mode, (4, 4), 255), "PNG"))
    assert decoded.mode == "RGB" and tuple(pixel(decoded)) == WHITE


def test_cmyk_jpeg_becomes_rgb():
    decoded = decode_image(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95))
    assert decoded.mode == "RGB"
    assert np.abs(pixel(decoded) - RED).max() <= 8


@pytest.mark.parametrize(("mode", "fmt"), [("I;16", "PNG"), ("I;16B", "TIFF")])
def test_16_bit_greyscale_is_scaled_not_clipped(mode, fmt):
    values = np.array([[0, 32768, 65535]], dtype=">u2" if mode.endswith("B") else "<u2")
    decoded = decode_image(encode(Image.frombytes(mode, (3, 1), values.tobytes()), fmt))
    assert decoded.mode == "RGB"
    assert [int(v) for v in np.asarray(decoded)[0, :, 0]] == [0, 128, 255]


def test_float_image_in_unit_range_becomes_rgb():
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    decoded = decode_image(encode(image, "TIFF"))
    assert [int(v) for v in np.asarray(decoded)[0, :, 1]] == [0, 128, 255]


def test_alpha_is_composited_on_white():
    image = Image.new("RGBA", (2, 1), (255, 0, 0, 0))
    image.putpixel((1, 0), (255, 0, 0, 128))
    decoded = decode_image(encode(image, "PNG"))
    assert tuple(pixel(decoded, (0, 0))) == WHITE
    assert np.abs(pixel(decoded, (1, 0)) - (255, 127, 127)).max() <= 1


def test_greyscale_with_alpha_is_composited_on_white():
    decoded = decode_image(encode(Image.new("LA", (2, 2), (0, 0)), "PNG"))
    assert tuple(pixel(decoded)) == WHITE


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_image_gives_its_first_frame(fmt):
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **({"lossless": True} if fmt == "WEBP" else {}))
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert np.abs(pixel(decode_image(data)) - RED).max() <= 3


def test_pixel_limit_is_checked_before_decoding():
    data = encode(Image.new("RGB", (100, 60)), "PNG")
    assert decode_image(data, max_pixels=6000).size == (100, 60)
    with pytest.raises(ImageTooLargeError, match="100x60 = 6000 pixels, the limit is 5999"):
        decode_image(data, max_pixels=5999)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels and holds almost no data: the
    shape of a decompression bomb, with nothing to decode."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [9_000, 100_000])  # under and over Pillow's own hard limit
def test_decompression_bomb_is_refused_cheaply(side):
    with pytest.raises(ImageTooLargeError):
        decode_image(png_header_only(side, side))


@pytest.mark.parametrize("size", [(1, 4000), (200_000, 1), (2100, 100)])
def test_a_sliver_is_refused_from_its_header(size):
    # The resize scales the short side to the model's input: a 1x4000 sliver would
    # become 224 x 896,000 pixels. The header says so before anything is decoded.
    with pytest.raises(ImageTooLargeError, match=f"image is {size[0]}x{size[1]}: its long side is .* the limit is 20"):
        decode_image(png_header_only(*size))


def test_an_image_within_the_aspect_ratio_limit_decodes():
    assert decode_image(encode(Image.new("RGB", (200, 10)), "PNG")).size == (200, 10)
    assert decode_image(encode(Image.new("RGB", (10, 60)), "PNG"), max_aspect_ratio=6).size == (10, 60)
    with pytest.raises(ImageTooLargeError, match="the limit is 5.5"):
        decode_image(encode(Image.new("RGB", (10, 60)), "PNG"), max_aspect_ratio=5.5)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image_is_a_clear_error(fmt):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), fmt)
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"\xff\xd8\xff"])
def test_non_image_bytes_are_a_clear_error(data):
    with pytest.raises(ImageDecodeError):
        decode_image(data)


def test_image_decode_error_is_a_value_error():
    assert issubclass(ImageDecodeError, ValueError) and issubclass(ImageTooLargeError, ImageDecodeError)


# --- resize and crop -------------------------------------------------------


def _bicubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1, np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _resample_axis(pixels: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """One pass of Pillow's convolution resampling (libImaging/Resample.c):
    the kernel widens by the downscale factor, which is what antialiases."""
    in_size = pixels.shape[axis]
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 2.0 * filter_scale
    weights = np.zeros((out_size, in_size))
    for i in range(out_size):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), in_size)
        w = _bicubic((np.arange(lo, hi) - centre + 0.5) / filter_scale)
        weights[i, lo:hi] = w / w.sum()
    return np.moveaxis(np.tensordot(weights, np.moveaxis(pixels, axis, 0), axes=1), 0, axis)


def reference_bicubic(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.float64)
    # Pillow rounds to 8 bits between the horizontal and the vertical pass.
    horizontal = np.clip(np.round(_resample_axis(pixels, size[0], axis=1)), 0, 255)
    return np.clip(np.round(_resample_axis(horizontal, size[1], axis=0)), 0, 255)


@pytest.mark.parametrize(("source", "target"), [((300, 200), (336, 224)), ((301, 201), (335, 224)), ((97, 150), (64, 98)), ((40, 40), (224, 224))])
def test_bicubic_resize_matches_the_reference_resampling(source, target):
    noise = np.random.default_rng(1).integers(0, 256, (source[1], source[0], 3), dtype=np.uint8)
    image = Image.fromarray(noise)
    # A shorter-side resize of `source` to min(target) gives exactly `target`.
    spec = ImagePreprocess(size=min(target), crop_size=min(target))
    ours = np.asarray(image.resize(target, Image.Resampling.BICUBIC), dtype=np.float64)
    reference = reference_bicubic(image, target)
    assert np.abs(ours - reference).max() <= 1
    # Our resize_and_crop is that resize followed by the centre crop.
    out = np.asarray(resize_and_crop(image, spec), dtype=np.float64)
    left, top = (target[0] - spec.crop_size) // 2, (target[1] - spec.crop_size) // 2
    assert np.abs(out - reference[top : top + spec.crop_size, left : left + spec.crop_size]).max() <= 1


def test_downscaling_is_antialiased():
    # A one-pixel checkerboard scaled down 8x must become flat grey, not keep
    # sampling black or white pixels (what a resize without antialiasing does).
    board = (np.indices((256, 256)).sum(0) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(board).convert("RGB")
    out = np.asarray(resize_and_crop(image, ImagePreprocess(size=32, crop_size=32)), dtype=float)
    assert np.abs(out - 127.5).max() < 2


def test_shorter_side_resize_then_centre_crop_keeps_the_middle():
    image = Image.new("RGB", (300, 100), RED)
    image.paste(BLUE, (100, 0, 200, 100))  # the middle third is blue
    out = resize_and_crop(image, ImagePreprocess(size=50, crop_size=50, resize_filter="nearest"))
    assert out.size == (50, 50) and (np.asarray(out) == BLUE).all()


def test_tensor_normalisation_and_channel_order():
    image = Image.new("RGB", (4, 4), (255, 128, 0))
    spec = ImagePreprocess(size=4, crop_size=4, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5))
    tensor = image_to_tensor(image, spec)
    assert tensor.shape == (3, 4, 4) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[:, 0, 0], [1.0, (128 / 255 - 0.5) / 0.25, -1.0], atol=1e-6)
    bgr = image_to_tensor(image, ImagePreprocess(size=4, crop_size=4, mean=spec.mean, std=spec.std, color_order="BGR"))
    # The std of the green channel stays with green; only the order changes.
    np.testing.assert_array_equal(bgr[[0, 2]], tensor[[2, 0]])
    in_graph = image_to_tensor(image, ImagePreprocess(size=4, crop_size=4, normalization="in_graph"))
    np.testing.assert_allclose(in_graph[:, 0, 0], [1.0, 128 / 255, 0.0], atol=1e-6)


def test_tensor_values_are_the_normalisation_formula_in_float32():
    pixels = np.random.default_rng(2).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    spec = ImagePreprocess(size=6, crop_size=6, mean=(0.48, 0.46, 0.41), std=(0.27, 0.26, 0.28), color_order="BGR")
    expected = (pixels.astype(np.float32) / np.float32(255.0) - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    np.testing.assert_array_equal(image_to_tensor(Image.fromarray(pixels), spec), expected[:, :, ::-1].transpose(2, 0, 1))


# --- decoding for a tower: JPEGs at a reduced scale ------------------------


def smooth_photo(width: int, height: int) -> Image.Image:
    small = np.random.default_rng(3).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)


@pytest.mark.parametrize(("size", "decoded"), [((800, 600), (400, 300)), ((1800, 1000), (450, 250)), ((400, 300), (400, 300))])
def test_a_jpeg_for_a_tower_decodes_at_the_smallest_scale_the_resize_still_shrinks_from(size, decoded):
    spec = ImagePreprocess(size=224, crop_size=224)
    assert decode_for_tower(encode(smooth_photo(*size), "JPEG", quality=90), spec).size == decoded
    assert decode_for_tower(encode(smooth_photo(*size), "PNG"), spec).size == size  # not a JPEG: full size


def test_reduced_decoding_keeps_the_limits_of_the_full_size_and_the_orientation():
    data = encode(smooth_photo(800, 600), "JPEG", quality=90)
    with pytest.raises(ImageTooLargeError, match="800x600"):
        decode_image(data, max_pixels=400 * 300, reduce_to=224)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated a quarter turn
    rotated = decode_for_tower(encode(smooth_photo(800, 600), "JPEG", quality=90, exif=exif.tobytes()),
                               ImagePreprocess(size=224, crop_size=224))
    assert rotated.size == (300, 400)


def test_reduced_decoding_moves_the_tensor_little():
    # bench/preprocess_shift.py measures it on real photos and the models; here
    # a smooth 800x600 photo's tensor moves a fraction of a level on average.
    data = encode(smooth_photo(800, 600), "JPEG", quality=90)
    spec = ImagePreprocess(size=224, crop_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    full, reduced = image_to_tensor(decode_image(data), spec), image_to_tensor(decode_for_tower(data, spec), spec)
    level = 2 / 255
    assert 0 < np.abs(full - reduced).mean() < 0.5 * level and np.abs(full - reduced).max() < 8 * level
