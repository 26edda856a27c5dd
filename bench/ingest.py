"""One `lookalike ingest` stream of photos against the image tower's batched
throughput, on the same server process and the same onnxruntime session.

A server with the default bundle (built offline if missing) is started on
loopback in a temporary folder; a folder of photo-sized JPEGs (800x600, decode
cost like a photo's) is sent by `lookalike.ingest.ingest`, the code behind
`lookalike ingest FOLDER`, in messages of --batch products, once to warm up and
once timed. The tower's throughput is one graph run on --encoder-batch
already-preprocessed photos (median), through the server's own encoder. The two
are measured side by side in each of --rounds rounds, since a shared machine's
load drifts between them.

    python bench/ingest.py                     # builds bench/results/default-bundle if needed
    python bench/ingest.py --photos 256 --batch 64 --encoder-batch 32

Writes bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoders import RESULTS, machine, median_seconds, sample_images  # noqa: E402  (bench/encoders.py)

from lookalike.client import Client  # noqa: E402
from lookalike.ingest import ingest  # noqa: E402
from lookalike.service.config import ServiceConfig  # noqa: E402
from lookalike.service.encoding import BatchingConfig  # noqa: E402
from lookalike.service.server import Server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=RESULTS / "default-bundle")
    parser.add_argument("--photos", type=int, default=256, help="photos in the timed stream")
    parser.add_argument("--batch", type=int, default=64, help="products per Upsert message (lookalike ingest's default)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encoder-batch", type=int, default=32, help="the server's micro-batch size (ONNX run)")
    args = parser.parse_args()
    if not (args.bundle / "manifest.json").is_file():
        from lookalike.encoders.build_default import build_default

        print(f"building the default bundle into {args.bundle} ...", file=sys.stderr)
        build_default(args.bundle)

    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        images = sample_images(args.photos)
        for i, image in enumerate(images):
            (photos / f"{i:05d}.jpg").write_bytes(image)
        config = ServiceConfig(address="127.0.0.1:0", data_dir=str(Path(tmp) / "data"), model=str(args.bundle),
                               batching=BatchingConfig(max_batch=args.encoder_batch))
        server = Server(config)
        server.start()
        try:
            encoder = server.encoder.encoder
            pixels = encoder.preprocess_images((images * args.encoder_batch)[:args.encoder_batch])
            rounds = []
            with Client(server.address, timeout=600) as client:
                ingest(client, photos, batch=args.batch, progress=io.StringIO())  # warm-up; the same ids again below
                for _ in range(args.rounds):  # the tower and the stream side by side: the machine's load drifts
                    tower = args.encoder_batch / median_seconds(lambda: encoder.encode_pixels(pixels))
                    start = time.perf_counter()
                    stored, failed = ingest(client, photos, batch=args.batch, progress=io.StringIO())
                    stream = stored / (time.perf_counter() - start)
                    if failed or stored != args.photos:
                        raise SystemExit(f"{stored} stored, {len(failed)} failed: {failed[:3]}")
                    rounds.append({"tower_photos_per_s": tower, "stream_photos_per_s": stream,
                                   "stream_vs_tower": stream / tower})
                    print(f"image tower, batches of {args.encoder_batch}: {tower:6.1f} photos/s; one ingest stream, "
                          f"{args.batch} products a message: {stream:6.1f} photos/s ({stream / tower:.0%})",
                          file=sys.stderr)
        finally:
            server.stop(grace=1)
    ratio = statistics.median(r["stream_vs_tower"] for r in rounds)
    print(f"median over {len(rounds)} rounds: the stream at {ratio:.0%} of the tower", file=sys.stderr)
    result = {"machine": machine(), "load_average_1min": os.getloadavg()[0], "bundle": str(args.bundle.name),
              "photos": args.photos, "products_per_message": args.batch, "encoder_batch": args.encoder_batch,
              "rounds": rounds, "median_stream_vs_tower": ratio}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
