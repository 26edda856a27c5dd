"""The arguments of `lookalike bench load`, apart from the harness so that
building the command line imports nothing heavy."""

from __future__ import annotations

import argparse


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
