"""`lookalike bench load` and bench/load.py: one of the open, closed, ramp and
soak runs (arguments in arguments.py), its table on stdout, JSON and PNGs in --out."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lookalike.client import Client
from lookalike.loadtest import report
from lookalike.loadtest.arguments import add_arguments
from lookalike.loadtest.ramp import Slo, ramp
from lookalike.loadtest.runner import Arrivals, RunConfig, check_address, run
from lookalike.loadtest.soak import SEED_AVERAGE_RATE, MemoryProbe, bursty, soak
from lookalike.loadtest.workload import ServerShape, WorkloadSpec, parse_mix, seed_products

DEFAULT_RATES = {"open": 50.0, "closed": 0.0, "ramp": 10.0, "soak": SEED_AVERAGE_RATE}


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
