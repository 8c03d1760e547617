"""Command line: one seed (``--seed``) or a swarm (``--seeds A..B``). See ``sim/__init__``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from sim.failures import EXIT_BY_KIND, EXIT_OK
from sim.params import BUGS, STORAGES, Params, draw, parse_faults, reproduce
from sim.run import Outcome, run
from sim.swarm import swarm


def _seed_range(text: str) -> range:
    if ".." in text:
        a, b = text.split("..", 1)
        lo, hi = int(a), int(b)
    else:
        lo, hi = 0, int(text) - 1
    if hi < lo:
        raise argparse.ArgumentTypeError(f"empty seed range {text!r}")
    return range(lo, hi + 1)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m sim",
        description="Deterministic simulation of a Beaver-Vault cluster (production driver, simulated world).",
        epilog="exit status: 0 ok, 10 crash (exception), 11 safety, 12 linearizability, 13 liveness, "
        "14 undecided history, 2 usage",
    )
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--seed", type=int, help="run one seed")
    group.add_argument("--seeds", type=_seed_range, help="run a swarm: A..B (inclusive) or N (0..N-1)")
    ap.add_argument("--nodes", type=int, choices=range(3, 8), metavar="N", help="3..7 (default: drawn from the seed)")
    ap.add_argument(
        "--faults", default="all", help="all, none, or a comma list of: net,partition,crash,pause,skew,disk,churn,hostile"
    )
    ap.add_argument("--bug", choices=BUGS, help="plant a known bug through an injected seam")
    ap.add_argument("--clients", type=int, metavar="N", help="client processes (default: drawn from the seed)")
    ap.add_argument("--ops", type=int, metavar="N", help="client operations (default: drawn from the seed)")
    ap.add_argument(
        "--storage", choices=STORAGES, help="memory or sqlite (default: drawn from the seed, sqlite in one in four)"
    )
    ap.add_argument("--workload", metavar="FILE", help="run your own workload module (see sim/workload_api.py)")
    ap.add_argument(
        "--timeline",
        metavar="PATH",
        help="--seed: write an HTML timeline of the run to PATH; --workload: the directory for the pictures of "
        "failing runs (default sim-timelines)",
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="one trace line per event")
    ap.add_argument("--history", metavar="FILE", help="write the client history (JSON lines) to FILE")
    ap.add_argument("--max-seconds", type=float, help="swarm: stop starting new seeds after this much wall time")
    ap.add_argument("--stop-on-failure", action="store_true", help="swarm: stop at the first failing seed")
    return ap


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, commit: str = "unknown") -> int:
    """Run the command line. ``commit`` is only printed (``__main__`` finds it)."""
    out = out if out is not None else sys.stdout
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        faults = parse_faults(args.faults)
    except ValueError as e:
        ap.error(str(e))
    for name in ("clients", "ops"):
        value = getattr(args, name)
        if value is not None and not 1 <= value <= 100_000:
            ap.error(f"--{name} must be between 1 and 100000")
    if args.timeline and args.seeds is not None and args.workload is None:
        ap.error("--timeline with a swarm needs --workload (or use --seed S --timeline FILE)")
    kw = {"clients": args.clients, "ops": args.ops, "storage": args.storage}
    if args.workload is not None:
        from sim.product import run_workload_cli

        return run_workload_cli(args, faults, kw, commit, out)
    if args.seed is not None:
        return run_one(
            args.seed, args.nodes, faults, args.bug, commit, args.verbose, args.history, out, kw, args.timeline
        )
    return swarm(
        args.seeds, args.nodes, faults, args.bug, commit, args.max_seconds, args.stop_on_failure, out, draw_kw=kw
    )


def run_one(
    seed: int,
    nodes: int | None,
    faults: tuple[str, ...],
    bug: str | None,
    commit: str,
    verbose: bool,
    history: str | None,
    out: TextIO,
    draw_kw: dict[str, Any] | None = None,
    timeline: str | None = None,
) -> int:
    p = draw(seed, nodes, faults, bug, **(draw_kw or {}))
    out.write(f"sim seed={seed} commit={commit}\n")
    out.write("params " + " ".join(p.describe()) + "\n")
    out.flush()
    outcome = run(p, out, verbose, history, timeline)
    report(p, outcome, out)
    return EXIT_BY_KIND[outcome.kind]


def report(p: Params, outcome: Outcome, out: TextIO) -> None:
    out.write(f"summary {outcome.summary}\n")
    if outcome.kind == "ok":
        out.write("result: ok\n")
    else:
        out.write(f"result: FAILED ({outcome.kind}, exit {EXIT_BY_KIND[outcome.kind]})\n")
        for line in outcome.detail.splitlines():
            out.write(f"  {line}\n")
        out.write(reproduce(p) + "\n")
    out.flush()


__all__ = ["main", "reproduce", "EXIT_OK"]
