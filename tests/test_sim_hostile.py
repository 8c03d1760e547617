"""The simulator's hostile peer (sim/hostile.py): safety holds with it on, and it has teeth."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim import hostile  # noqa: E402
from sim.params import FAULT_CLASSES, draw  # noqa: E402
from sim.run import run  # noqa: E402


def _hostile_counts(summary: str) -> tuple[int, int]:
    match = re.search(r"hostile=(\d+)/(\d+)", summary)
    assert match, summary
    return int(match.group(1)), int(match.group(2))


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_safety_and_liveness_hold_with_the_hostile_peer_and_every_fault(seed: int) -> None:
    assert "hostile" in FAULT_CLASSES
    outcome = run(draw(seed, None, FAULT_CLASSES, None))
    assert outcome.kind == "ok", outcome.detail
    frames, delivered = _hostile_counts(outcome.summary)
    # It struck often, and some of its messages (probes, its own name) reached the drivers.
    assert frames > 50 and delivered > 0, outcome.summary


def test_without_authenticated_senders_the_swarm_catches_the_forgeries(monkeypatch: pytest.MonkeyPatch) -> None:
    # Development mode without TLS, modelled: a connection may claim any sender. The forged
    # appends and acknowledgements then break the cluster, and the simulator says so.
    monkeypatch.setattr(hostile.Hostile, "authenticated", False)
    kinds = [run(draw(seed, 3, ("hostile",), None)).kind for seed in (1, 2, 3, 4)]
    assert any(kind != "ok" for kind in kinds), kinds
