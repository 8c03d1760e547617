"""``python -m beaver_vault.checker FILE... [--timeout SECONDS]``.

One line per file on standard output: ``PATH: VERDICT DETAIL`` (explanation lines follow,
indented). Exit status: 0 all linearizable, 1 any not linearizable, 2 any unknown (and none
not linearizable), 3 any unreadable input (message on standard error; wins over 1 and 2).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from .check import DEFAULT_STEP_BUDGET, check_history
from .history import HistoryError, load_history
from .search import LINEARIZABLE, NOT_LINEARIZABLE

EXIT_OK = 0
EXIT_NOT_LINEARIZABLE = 1
EXIT_UNKNOWN = 2
EXIT_BAD_INPUT = 3


def _deadline_after(seconds: float | None) -> Callable[[], bool] | None:
    if seconds is None:
        return None
    end = time.monotonic() + seconds
    return lambda: time.monotonic() >= end


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m beaver_vault.checker",
        description="Check operation histories (JSON Lines) for per-key linearizability.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="time limit per file; past it the verdict is unknown")
    parser.add_argument("--step-budget", type=int, default=DEFAULT_STEP_BUDGET, metavar="N",
                        help=f"search steps per key (default {DEFAULT_STEP_BUDGET})")
    args = parser.parse_args(argv)
    bad = not_linearizable = unknown = False
    for path in args.files:
        try:
            history = load_history(path)
        except HistoryError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            bad = True
            continue
        result = check_history(history, step_budget=args.step_budget, deadline=_deadline_after(args.timeout))
        line = f"{path}: {result.verdict}"
        if result.detail:
            line += f" {result.detail}"
        print(line)
        for extra in result.explanation.splitlines():
            print(f"    {extra}")
        sys.stdout.flush()
        if result.verdict == NOT_LINEARIZABLE:
            not_linearizable = True
        elif result.verdict != LINEARIZABLE:
            unknown = True
    if bad:
        return EXIT_BAD_INPUT
    if not_linearizable:
        return EXIT_NOT_LINEARIZABLE
    return EXIT_UNKNOWN if unknown else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
