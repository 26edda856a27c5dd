"""One `lookalike ingest` stream of photos against the image tower's batched
throughput, on the same server process and the same onnxruntime session.

A server with the default bundle (built offline if missing) is started on
loopback in a temporary folder; a folder of photo-sized JPEGs (800x600, decode
cost like a photo's) is sent by `lookalike.ingest.ingest`, the code behind
`lookalike ingest FOLDER`, in messages of --batch products, once to warm up and
then timed, new photos each time (the same ids), so that every round stores
its images as a real ingest does. The tower's throughput is --runners graph runs at once
(the server's batcher runs that many) on --encoder-batch already-preprocessed photos
(median), through the server's own encoder and its onnxruntime settings. The two
are measured side by side in each of --rounds rounds, since a shared machine's
load drifts between them. Each round also gives the process's CPU time a photo
(all threads: the tower's graph runs alone, then the whole stream, the client's
file reads and messages included): the tower's share of the stream's CPU is
what the stream reaches of the tower on a machine whose cores the stream
keeps busy, and it moves far less with other processes' load than the rates.
The stream's CPU is also split by thread (the tower's: the batcher and
onnxruntime's pool; the decoders; the image store's writers; the rest), which
says where a photo's CPU outside the tower goes.

    python bench/ingest.py                     # builds bench/results/default-bundle if needed
    python bench/ingest.py --photos 256 --batch 64 --encoder-batch 32
    python bench/ingest.py --encoder-spinning  # onnxruntime's threads spin while they wait
    python bench/ingest.py --encoder-threads 1 --runners 2   # two batches at once, one core each

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
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoders import RESULTS, machine, median_seconds, sample_images  # noqa: E402  (bench/encoders.py)

from lookalike.client import Client  # noqa: E402
from lookalike.ingest import ingest  # noqa: E402
from lookalike.service.config import ServiceConfig  # noqa: E402
from lookalike.service.encoding import BatchingConfig  # noqa: E402
from lookalike.service.server import Server  # noqa: E402

TOWER_CPU_RUNS = 3
# Python's threads of the stream, by name prefix, and what they do.
THREAD_ROLES = {"image-encoder": "tower", "image-decode": "decode", "blob-writer": "image store",
                "lookalike-rpc": "rpc handlers"}


def thread_cpu() -> dict[int, tuple[str, float]]:
    """Per thread of this process (by native id): its role and its CPU seconds so far.
    A thread Python does not know that still carries the process's own name is
    one of onnxruntime's pool (gRPC's own threads are named), so the tower's."""
    python_names = {t.native_id: t.name for t in threading.enumerate()}
    process_name = Path("/proc/self/comm").read_text().strip()
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended
            continue
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        tid = int(task.name)
        if tid in python_names:
            role = next((r for prefix, r in THREAD_ROLES.items() if python_names[tid].startswith(prefix)), "other")
        else:
            role = "tower" if name == process_name else "other"
        out[tid] = (role, (int(fields[11]) + int(fields[12])) / tick)  # utime + stime
    return out


def cpu_by_role(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> Counter:
    spent: Counter = Counter()
    for tid, (role, seconds) in after.items():
        spent[role] += seconds - before.get(tid, (role, 0.0))[1]
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=RESULTS / "default-bundle")
    parser.add_argument("--photos", type=int, default=256, help="photos in the timed stream")
    parser.add_argument("--batch", type=int, default=64, help="products per Upsert message (lookalike ingest's default)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encoder-batch", type=int, default=32, help="the server's micro-batch size (ONNX run)")
    parser.add_argument("--encoder-spinning", action="store_true",
                        help="onnxruntime's intra-op threads spin while they wait (the server's encoder_spinning)")
    parser.add_argument("--encoder-threads", type=int, default=0,
                        help="onnxruntime's threads per operator (the server's encoder_threads; 0 = every core)")
    parser.add_argument("--runners", type=int, default=1, help="ONNX runs at once (the server's batching.runners)")
    args = parser.parse_args()
    if not (args.bundle / "manifest.json").is_file():
        from lookalike.encoders.build_default import build_default

        print(f"building the default bundle into {args.bundle} ...", file=sys.stderr)
        build_default(args.bundle)

    with tempfile.TemporaryDirectory() as tmp:
        folders = [Path(tmp) / f"photos-{n}" for n in range(args.rounds + 1)]
        for seed, folder in enumerate(folders):  # new photos each round: each is stored as a new image blob
            folder.mkdir()
            for i, image in enumerate(sample_images(args.photos, seed=seed)):
                (folder / f"{i:05d}.jpg").write_bytes(image)
        images = sample_images(args.encoder_batch)
        config = ServiceConfig(address="127.0.0.1:0", data_dir=str(Path(tmp) / "data"), model=str(args.bundle),
                               batching=BatchingConfig(max_batch=args.encoder_batch, runners=args.runners),
                               encoder_threads=args.encoder_threads, encoder_spinning=args.encoder_spinning)
        server = Server(config)
        server.start()
        try:
            encoder = server.encoder.encoder
            pixels = encoder.preprocess_images(images)
            runners = ThreadPoolExecutor(args.runners)

            def tower_runs() -> None:  # as the server's batcher runs them when batches wait
                list(runners.map(lambda _: encoder.encode_pixels(pixels), range(args.runners)))

            rounds = []
            with Client(server.address, timeout=600) as client:
                ingest(client, folders[0], batch=args.batch, progress=io.StringIO())  # warm-up; the same ids again below
                for photos in folders[1:]:  # the tower and the stream side by side: the machine's load drifts
                    tower = args.runners * args.encoder_batch / median_seconds(tower_runs)
                    cpu = time.process_time()
                    for _ in range(TOWER_CPU_RUNS):
                        tower_runs()
                    tower_cpu = (time.process_time() - cpu) / (TOWER_CPU_RUNS * args.runners * args.encoder_batch)
                    start, cpu, threads = time.perf_counter(), time.process_time(), thread_cpu()
                    stored, failed = ingest(client, photos, batch=args.batch, progress=io.StringIO())
                    stream = stored / (time.perf_counter() - start)
                    stream_cpu = (time.process_time() - cpu) / args.photos
                    by_role = {role: seconds / args.photos * 1e3
                               for role, seconds in cpu_by_role(threads, thread_cpu()).most_common()}
                    if failed or stored != args.photos:
                        raise SystemExit(f"{stored} stored, {len(failed)} failed: {failed[:3]}")
                    rounds.append({"tower_photos_per_s": tower, "stream_photos_per_s": stream,
                                   "stream_vs_tower": stream / tower, "tower_cpu_ms_per_photo": tower_cpu * 1e3,
                                   "stream_cpu_ms_per_photo": stream_cpu * 1e3,
                                   "stream_cpu_ms_per_photo_by_thread": by_role, "load_average_1min": os.getloadavg()[0]})
                    print(f"image tower, {args.runners} x batches of {args.encoder_batch}: {tower:6.1f} photos/s; "
                          f"one ingest stream, "
                          f"{args.batch} products a message: {stream:6.1f} photos/s ({stream / tower:.0%}); "
                          f"CPU ms a photo: tower {tower_cpu * 1e3:.1f}, stream {stream_cpu * 1e3:.1f} "
                          f"({tower_cpu / stream_cpu:.0%}); load {os.getloadavg()[0]:.1f}", file=sys.stderr)
                    print("    the stream's CPU ms a photo by thread: "
                          + ", ".join(f"{role} {ms:.2f}" for role, ms in by_role.items()), file=sys.stderr)
        finally:
            runners.shutdown()
            server.stop(grace=1)
    ratio = statistics.median(r["stream_vs_tower"] for r in rounds)
    cpu_ratio = statistics.median(r["tower_cpu_ms_per_photo"] / r["stream_cpu_ms_per_photo"] for r in rounds)
    print(f"median over {len(rounds)} rounds: the stream at {ratio:.0%} of the tower; "
          f"the tower's CPU {cpu_ratio:.0%} of the stream's", file=sys.stderr)
    result = {"machine": machine(), "load_average_1min": os.getloadavg()[0], "bundle": str(args.bundle.name),
              "encoder_spinning": args.encoder_spinning, "encoder_threads": args.encoder_threads,
              "runners": args.runners,
              "photos": args.photos, "products_per_message": args.batch, "encoder_batch": args.encoder_batch,
              "rounds": rounds, "median_stream_vs_tower": ratio, "median_tower_cpu_vs_stream_cpu": cpu_ratio}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
