"""How far the image tower's input and output move when a JPEG is decoded at a
reduced DCT scale (``decode_for_tower``) instead of at full size, and what each
costs per photo.

Photos: the real JPEGs of lookalike.sample_photos (a portrait, a temple, a
flower), random crops of them saved as 800x600 and 1600x1200 JPEGs (1/2 and 1/4
scale), and the 800x600 JPEGs of bench/ingest.py. For each, the normalised
tensor from the full-size decode against the reduced one (max and mean absolute
difference, in normalised units: the default bundle's unit is 2/255 a level) and
the cosine of each output space's vectors on the given bundles.

    python bench/preprocess_shift.py                     # the default bundle (built if missing)
    python bench/preprocess_shift.py --bundle DIR --bundle DIR2

Writes bench/results/preprocess_shift.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoders import RESULTS, machine, sample_images  # noqa: E402  (bench/encoders.py)

from lookalike.encoders import Encoder, load_bundle  # noqa: E402
from lookalike.encoders.preprocess import decode_for_tower, decode_image, image_to_tensor  # noqa: E402
from lookalike.sample_photos import open_photos, random_crop, sample_photos  # noqa: E402


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_photos(crops: int) -> dict[str, list[bytes]]:
    paths = [p for p in sample_photos() if p.suffix == ".jpg"]
    rng = np.random.default_rng(0)
    photos = open_photos(paths)
    return {
        "real JPEGs (512x600, 640x427)": [p.read_bytes() for p in paths],
        "crops as 800x600 JPEGs": [jpeg(random_crop(photos[i % len(photos)], rng, 600).resize((800, 600), Image.Resampling.BICUBIC))
                                   for i in range(crops)],
        "crops as 1600x1200 JPEGs": [jpeg(random_crop(photos[i % len(photos)], rng, 1200).resize((1600, 1200), Image.Resampling.BICUBIC))
                                     for i in range(crops)],
        "bench/ingest.py's 800x600 JPEGs": sample_images(crops),
    }


def per_photo_ms(decode, photos: list[bytes], spec) -> float:
    start = time.perf_counter()
    for data in photos:
        image_to_tensor(decode(data), spec)
    return (time.perf_counter() - start) / len(photos) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, action="append", help="repeatable; default: the default bundle")
    parser.add_argument("--crops", type=int, default=24, help="photos per synthetic set")
    args = parser.parse_args()
    bundles = args.bundle or [RESULTS / "default-bundle"]
    if bundles == [RESULTS / "default-bundle"] and not (bundles[0] / "manifest.json").is_file():
        from lookalike.encoders.build_default import build_default

        build_default(bundles[0])
    sets = test_photos(args.crops)
    result: dict = {"machine": machine(), "load_average_1min": os.getloadavg()[0], "bundles": {}}
    for bundle_dir in bundles:
        encoder = Encoder(load_bundle(bundle_dir))
        spec = encoder.bundle.manifest.towers["image"].preprocess
        rows = {}
        for name, photos in sets.items():
            full = np.stack([image_to_tensor(decode_image(p), spec) for p in photos])
            reduced = np.stack([image_to_tensor(decode_for_tower(p, spec), spec) for p in photos])
            difference = np.abs(full - reduced)
            before, after = encoder.encode_pixels(full), encoder.encode_pixels(reduced)
            cosines = {space: (before[space] * after[space]).sum(1) / (np.linalg.norm(before[space], axis=1)
                                                                      * np.linalg.norm(after[space], axis=1))
                       for space in before}
            rows[name] = {
                "photos": len(photos),
                "tensor_max_abs_difference": float(difference.max()),
                "tensor_mean_abs_difference": float(difference.mean()),
                "cosine": {space: {"mean": float(c.mean()), "min": float(c.min())} for space, c in cosines.items()},
                "ms_per_photo_full_decode": per_photo_ms(decode_image, photos, spec),
                "ms_per_photo_reduced_decode": per_photo_ms(lambda p: decode_for_tower(p, spec), photos, spec),
            }
            cos = ", ".join(f"{space} mean {c['mean']:.4f} min {c['min']:.4f}" for space, c in rows[name]["cosine"].items())
            print(f"{bundle_dir.name}, {name}: tensor |diff| max {difference.max():.3f} mean {difference.mean():.4f}; "
                  f"cosine {cos}; decode+preprocess {rows[name]['ms_per_photo_full_decode']:.1f} -> "
                  f"{rows[name]['ms_per_photo_reduced_decode']:.1f} ms", file=sys.stderr)
        result["bundles"][bundle_dir.name] = rows
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "preprocess_shift.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
