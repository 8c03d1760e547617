"""The swarm: many seeds in one process, each drawing its own world.

Output: a progress line every few seeds (to stderr, so stdout stays a clean log), the
``REPRODUCE:`` line of each failure flushed the moment it is found, and a summary with the
seeds per minute. ``--max-seconds`` bounds a CI run: no new seed starts after the budget.
Wall time is read with ``os.times()`` here only, for the budget and the figures: it never
reaches a run, whose every number comes from its seed.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from sim.failures import EXIT_BY_KIND, EXIT_OK
from sim.params import draw, reproduce
from sim.run import run


def _wall() -> float:
    return os.times().elapsed


def swarm(
    seeds: range,
    nodes: int | None,
    faults: tuple[str, ...],
    bug: str | None,
    commit: str,
    max_seconds: float | None,
    stop_on_failure: bool,
    out: TextIO,
    progress: TextIO | None = None,
    draw_kw: dict[str, Any] | None = None,
) -> int:
    progress = progress if progress is not None else sys.stderr
    out.write(f"sim swarm seeds={seeds.start}..{seeds.stop - 1} commit={commit} bug={bug or 'none'}\n")
    out.flush()
    t0 = _wall()
    done = 0
    failures: list[tuple[int, str]] = []
    unknown = 0
    rechecked = 0
    kinds: dict[str, int] = {}
    for seed in seeds:
        if max_seconds is not None and _wall() - t0 >= max_seconds:
            break
        p = draw(seed, nodes, faults, bug, **(draw_kw or {}))
        outcome = run(p)
        done += 1
        if outcome.verdict == "unknown":
            unknown += 1
        rechecked += outcome.rechecked
        if outcome.kind != "ok":
            failures.append((seed, outcome.kind))
            kinds[outcome.kind] = kinds.get(outcome.kind, 0) + 1
            first = outcome.detail.splitlines()[0] if outcome.detail else ""
            out.write(f"FAIL seed={seed} {outcome.kind}: {first}\n")
            out.write(reproduce(p) + "\n")
            out.flush()
            if stop_on_failure:
                break
        if done % 10 == 0:
            elapsed = _wall() - t0
            progress.write(f"\r[{done}/{len(seeds)}] failures={len(failures)} {elapsed:.0f}s ")
            progress.flush()
    elapsed = max(_wall() - t0, 1e-9)
    progress.write("\n")
    rate = done / elapsed * 60
    kinds_text = " ".join(f"{k}={v}" for k, v in sorted(kinds.items())) or "none"
    out.write(
        f"swarm: {done} seeds in {elapsed:.1f}s ({rate:.0f} seeds/min), {len(failures)} failed ({kinds_text}), "
        f"{rechecked} rechecked with a larger budget, {unknown} undecided even then\n"
    )
    out.flush()
    if failures:
        return EXIT_BY_KIND[failures[0][1]]
    return EXIT_OK
