"""Per-tower latency of a model bundle at batch 1, 8 and 32, fp32 and int8.

For each tower and precision: the median wall time of one graph run on
already-preprocessed inputs (images: a (B, 3, 224, 224) tensor; texts: tokens of
B short product queries), the time per item and items per second, and how far
int8 moves the vectors (mean and minimum cosine to fp32 on the same inputs).
Image decoding + preprocessing is timed apart, per image.

    python bench/encoders.py                       # builds the default bundle if needed
    python bench/encoders.py --bundle DIR --threads 2

int8 is onnxruntime's dynamic weight quantisation (per channel), made here in a
temporary folder; the bundle itself is not changed. Writes
bench/results/encoders.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from lookalike.encoders import Encoder, RuntimeConfig, load_bundle

RESULTS = Path(__file__).resolve().parent / "results"
QUERIES = [
    "red running shoes", "leather handbag", "blue denim jacket with buttons", "wooden dining table",
    "stainless steel water bottle 750 ml", "kids rain boots yellow", "wireless headphones", "floral summer dress",
]


def machine() -> dict[str, object]:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "onnxruntime": ort.__version__}


def median_seconds(run, budget: float = 1.5, min_runs: int = 5, max_runs: int = 200) -> float:
    run()  # warm-up: the first run allocates and plans
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget and len(times) < max_runs):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def sample_images(n: int, seed: int = 0) -> list[bytes]:
    """n photo-sized JPEGs of smooth random colour fields (decode cost like a photo's)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((800, 600), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def int8_copy(bundle_dir: Path, tower: str, into: Path) -> Path:
    """A copy of the bundle whose `tower` graph has int8 weights."""
    from lookalike.encoders.onnx_export import quantize_int8

    copy = into / f"{tower}-int8"
    shutil.copytree(bundle_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    source = manifest["towers"][tower]["file"]
    quantize_int8(copy / source, copy / f"{tower}.int8.onnx")
    manifest["towers"][tower]["file"] = f"{tower}.int8.onnx"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def bench_tower(encoder: Encoder, tower: str, batches: list[int], images: list[bytes]) -> dict[str, dict[str, float]]:
    session = encoder.session(tower)
    spec = encoder.bundle.manifest.towers[tower]
    rows = {}
    for batch in batches:
        if tower == "image":
            feed = {spec.inputs[0].name: encoder.preprocess_images((images * batch)[:batch])}
        else:
            ids, mask = encoder.tokenize((QUERIES * batch)[:batch])
            feed = {k: v for k, v in (("input_ids", ids), ("attention_mask", mask)) if k in {i.name for i in spec.inputs}}
        seconds = median_seconds(lambda: session.run(None, feed))
        rows[str(batch)] = {"ms_per_batch": seconds * 1e3, "ms_per_item": seconds * 1e3 / batch, "items_per_s": batch / seconds}
        print(f"  {tower:5s} batch {batch:3d}: {seconds * 1e3:8.2f} ms  {seconds * 1e3 / batch:7.2f} ms/item  {batch / seconds:8.1f}/s", file=sys.stderr)
    return rows


def agreement(fp32: dict[str, np.ndarray], int8: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    out = {}
    for space in fp32:
        cosines = (fp32[space] * int8[space]).sum(axis=1)
        out[space] = {"mean_cosine_to_fp32": float(cosines.mean()), "min_cosine_to_fp32": float(cosines.min())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=RESULTS / "default-bundle")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batches", default="1,8,32")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if not (args.bundle / "manifest.json").is_file():
        from lookalike.encoders.build_default import build_default

        print(f"building the default bundle into {args.bundle} ...", file=sys.stderr)
        build_default(args.bundle)
    bundle = load_bundle(args.bundle)
    config = RuntimeConfig(device="cpu", intra_op_threads=args.threads, max_batch=max(batches))
    images = sample_images(8)
    result: dict[str, object] = {"machine": machine(), "bundle": bundle.manifest.model_id, "threads": args.threads, "towers": {}}

    encoder = Encoder(bundle, config)
    decode = median_seconds(lambda: encoder.preprocess_images(images[:1]))
    result["decode_and_preprocess_ms_per_800x600_jpeg"] = decode * 1e3
    print(f"decode + preprocess one 800x600 JPEG: {decode * 1e3:.2f} ms", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        for tower in bundle.manifest.towers:
            print(f"{tower} tower, fp32:", file=sys.stderr)
            rows = {"fp32": bench_tower(encoder, tower, batches, images)}
            quantized = Encoder(int8_copy(args.bundle, tower, Path(tmp)), config)
            print(f"{tower} tower, int8:", file=sys.stderr)
            rows["int8"] = bench_tower(quantized, tower, batches, images)
            if tower == "image":
                rows["int8_vs_fp32"] = agreement(encoder.encode_images(images), quantized.encode_images(images))
            else:
                rows["int8_vs_fp32"] = agreement(encoder.encode_texts(QUERIES), quantized.encode_texts(QUERIES))
            print(f"  int8 vs fp32: {rows['int8_vs_fp32']}", file=sys.stderr)
            result["towers"][tower] = rows
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "encoders.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
