"""The bank workload with the classic bug: a transfer as two separate puts (not atomic).

``python -m sim --workload sim/examples/bank_broken.py --seeds 0..4`` fails: its
``state_invariant`` sees money missing between the two puts. A test runs it.
"""

from __future__ import annotations

import importlib.util
import os
import random

from sim.workload_api import Client, Steps

_spec = importlib.util.spec_from_file_location("sim_example_bank", os.path.join(os.path.dirname(__file__), "bank.py"))
assert _spec is not None and _spec.loader is not None
bank = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bank)

CLIENTS, OPS = bank.CLIENTS, bank.OPS
setup, state_invariant, check = bank.setup, bank.state_invariant, bank.check


def client(c: Client, i: int, rng: random.Random) -> Steps:
    yield from bank.transfers(c, i, rng, atomic=False)
