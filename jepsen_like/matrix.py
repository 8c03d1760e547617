"""``python -m jepsen_like.matrix``: the full fault matrix, one harness run per cell, and a table.

Every cell is ``python -m jepsen_like`` in a subprocess (its own workdir under ``--out``) with
a seed derived from ``--seed`` and the cell; a cell's summary JSON feeds one table row: run,
nodes, faults, concurrency, operations checked, verdict, exit code, availability (mean ok
ops/s, longest window without a successful write), late unknown writes, convergence. The
table is printed as Markdown and written to ``<out>/matrix.md``; the exit status is 0 only if
every cell passed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ALL = "kill,pause,partition,skew,clock,membership,restart-all,snapshot,disk"
CELLS: tuple[tuple[int, str, int], ...] = (
    (3, "kill,pause", 1),
    (3, "partition", 1),
    (3, "membership,kill", 2),
    (3, "restart-all,snapshot", 1),
    (3, "disk,restart-all,kill", 2),
    (3, "clock,skew,partition", 2),
    (3, ALL, 3),
    (5, "kill,pause,partition", 2),
    (5, "membership,partition,clock", 2),
    (5, ALL, 3),
)


def row(i: int, nodes: int, faults: str, concurrent: int, rc: int, s: dict[str, Any], wall_s: float) -> str:
    a = s.get("availability", {})
    injected = s.get("faults_injected", {})
    return (
        f"| {i} | {nodes} | {faults} | {concurrent} | {sum(injected.values()) if injected else 0} "
        f"| {s.get('ops', '?')} | {s.get('verdict', '?')} | {rc} | {a.get('mean_ok_per_s', '?')} "
        f"| {a.get('longest_write_gap_s', '?')} | {len(s.get('late_unknown', []))} "
        f"| {'yes' if s.get('converged') else 'NO'} | {wall_s:.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jepsen_like.matrix", description=__doc__)
    p.add_argument("--seconds", type=float, default=45.0, help="workload seconds per cell")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cells", default="", help="comma list of cell numbers to run (default: all)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    pick = {int(x) for x in args.cells.split(",") if x.strip()}
    lines = [
        "| run | nodes | faults | concurrent | faults injected | ops | verdict | exit | ok ops/s | "
        "longest write gap (s) | late unknown | converged | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    worst = 0
    for i, (nodes, faults, concurrent) in enumerate(CELLS, start=1):
        if pick and i not in pick:
            continue
        work = args.out / f"cell{i}"
        summary = work / "summary.json"
        seed = args.seed * 100 + i
        argv_run = [
            sys.executable, "-m", "jepsen_like", "--nodes", str(nodes), "--time-limit", f"{args.seconds:g}",
            "--seed", str(seed), "--faults", faults, "--concurrent", str(concurrent),
            "--workdir", str(work), "--summary", str(summary),
        ]  # fmt: skip
        started = time.monotonic()
        with (args.out / f"cell{i}.log").open("w") as log:
            rc = subprocess.run(argv_run, stdout=log, stderr=subprocess.STDOUT, timeout=args.seconds + 600).returncode
        wall = time.monotonic() - started
        s = json.loads(summary.read_text()) if summary.exists() else {}
        lines.append(row(i, nodes, faults, concurrent, rc, s, wall))
        print(lines[-1], flush=True)
        worst = worst or rc
    table = "\n".join(lines)
    (args.out / "matrix.md").write_text(table + "\n")
    print(table)
    return worst


if __name__ == "__main__":
    sys.exit(main())
