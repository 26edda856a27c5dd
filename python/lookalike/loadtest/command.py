"""`lookalike bench load` and bench/load.py: arguments, then one of the open,
closed, ramp and soak runs, its table on stdout, JSON and PNGs in --out."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lookalike.client import Client
from lookalike.loadtest import report
from lookalike.loadtest.ramp import Slo, ramp
from lookalike.loadtest.runner import Arrivals, RunConfig, check_address, run
from lookalike.loadtest.soak import SEED_AVERAGE_RATE, MemoryProbe, bursty, soak
from lookalike.loadtest.workload import ServerShape, WorkloadSpec, parse_mix, seed_products

DEFAULT_RATES = {"open": 50.0, "closed": 0.0, "ramp": 10.0, "soak": SEED_AVERAGE_RATE}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--allow-remote", action="store_true", help="allow an address that is not loopback")
    parser.add_argument("--mode", choices=("open", "closed", "ramp", "soak"), default="open")
    parser.add_argument("--rate", type=float,
                        help="open: calls/s (default 50); ramp: the first rate (default 10); "
                             "soak: the average (default the seed's ~116/s)")
    parser.add_argument("--poisson", action="store_true", help="open and ramp: Poisson arrivals, not evenly spaced")
    parser.add_argument("--concurrency", type=int, default=4, help="closed: calls in flight")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending (ramp: per step)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="at most this many calls (per step)")
    parser.add_argument("--processes", type=int, default=2, help="client worker processes")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of each call, seconds")
    parser.add_argument("--mix", default="vector=1",
                        help="query kinds by weight: vector, text, image, hybrid, more_like_this, e.g. vector=3,text=1")
    parser.add_argument("--filtered", type=float, default=0.0, help="share of searches with a filter")
    parser.add_argument("--upserts", type=float, default=None, help="share of calls that upsert (soak: 0.05)")
    parser.add_argument("--products", type=int, default=200,
                        help="the harness's own products, stored first (more-like-this, filters, upserts)")
    parser.add_argument("--slo-ms", type=float, default=10.0, help="ramp: the p99 to stay under")
    parser.add_argument("--max-rate", type=float, default=5000.0, help="ramp: stop here")
    parser.add_argument("--factor", type=float, default=1.5, help="ramp: rate growth per step")
    parser.add_argument("--burst-factor", type=float, default=5.0, help="soak: burst rate / base rate")
    parser.add_argument("--burst-every", type=float, default=60.0, help="soak: seconds between bursts")
    parser.add_argument("--burst-seconds", type=float, default=6.0, help="soak: length of a burst")
    parser.add_argument("--server-pid", type=int, help="soak: the server's pid on this machine, for its RSS")
    parser.add_argument("--out", default="bench/results/load", help="folder for the JSON and PNGs")
    parser.add_argument("--name", default="", help="file name prefix (default: the mode)")


def prepare(args: argparse.Namespace, upsert_share: float) -> RunConfig:
    """The run's config, after asking the server its shape and storing the
    harness's products when the workload needs them."""
    check_address(args.address, args.allow_remote)
    mix = parse_mix(args.mix)
    api_key = os.environ.get("LOOKALIKE_API_KEY")
    with Client(args.address, timeout=args.timeout, api_key=api_key) as client:
        shape = ServerShape.from_stats(client.stats())
        shape.check_mix(mix)
        spec = WorkloadSpec(shape=shape, mix=mix, filtered_share=args.filtered, upsert_share=upsert_share,
                            products=args.products)
        if args.products and (mix.get("more_like_this") or args.filtered or upsert_share):
            seed_products(client, spec)
        elif mix.get("more_like_this"):
            raise ValueError("more-like-this queries need the harness's products: --products > 0")
    rate = args.rate or DEFAULT_RATES[args.mode]
    if args.mode == "soak":
        arrivals = bursty(rate, args.burst_factor, args.burst_every, args.burst_seconds)
    else:
        arrivals = Arrivals(rate=rate, poisson=args.poisson) if args.mode != "closed" else None
    return RunConfig(address=args.address, workload=spec, mode="closed" if args.mode == "closed" else "open",
                     arrivals=arrivals, concurrency=args.concurrency, duration=args.duration,
                     max_requests=args.max_requests, processes=args.processes, timeout=args.timeout,
                     api_key=api_key, allow_remote=args.allow_remote,
                     timeline_step=max(1.0, args.duration / 200))


def run_command(args: argparse.Namespace) -> int:
    upserts = args.upserts if args.upserts is not None else (0.05 if args.mode == "soak" else 0.0)
    config = prepare(args, upserts)
    out, name = Path(args.out), args.name or args.mode
    progress = report.progress_printer()
    if args.mode == "ramp":
        def on_step(rate, result, verdict):
            print(f"\n-- {rate:.1f}/s offered: {verdict or 'within the SLO'}\n{report.format_run(result)}",
                  flush=True)

        outcome = ramp(config, Slo(args.slo_ms), start_rate=config.arrivals.rate, max_rate=args.max_rate, factor=args.factor,
                       step_seconds=args.duration, on_step=on_step, progress=progress)
        best = f"{outcome.best_rate:.1f}/s" if outcome.best_rate else "none (the first step failed)"
        print(f"\nhighest rate with p99 < {args.slo_ms:g} ms: {best}")
        report.write_json(report.ramp_summary(outcome), out / f"{name}.json")
        report.plot_ramp(outcome, out / f"{name}_rate.png")
        report.plot_timeline(outcome.steps[-1][1], out / f"{name}_last_step_timeline.png")
    elif args.mode == "soak":
        with Client(args.address, timeout=args.timeout, api_key=config.api_key) as client:
            outcome = soak(config, MemoryProbe(client, args.server_pid), progress=progress)
        print("\n" + report.format_run(outcome.run))
        print(f"memory growth: {outcome.growth()}")
        report.write_json(report.soak_summary(outcome), out / f"{name}.json")
        report.plot_timeline(outcome.run, out / f"{name}_timeline.png", title="soak: latency over time")
    else:
        result = run(config, progress)
        print("\n" + report.format_run(result))
        report.write_json(report.run_summary(result), out / f"{name}.json")
        report.plot_timeline(result, out / f"{name}_timeline.png")
    print(f"results in {out}/{name}*", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load a lookalike server over gRPC.")
    add_arguments(parser)
    return run_command(parser.parse_args(argv))
