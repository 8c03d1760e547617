"""The lease workload with a classic mistake: the TTL counted from the ANSWER, not the request.

A cas answered late (slow network, a retry after a lost answer, a paused node) leaves the client
believing in a lease that, by the cluster's clock, already ran out, while another client takes
it. ``python -m sim --workload sim/examples/lease_broken.py --seeds 0..19`` finds such seeds.
"""

from __future__ import annotations

import importlib.util
import os
import random
from collections.abc import Sequence

from sim.workload_api import Client, OpRecord, Steps

_spec = importlib.util.spec_from_file_location("sim_example_lease", os.path.join(os.path.dirname(__file__), "lease.py"))
assert _spec is not None and _spec.loader is not None
lease = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lease)

CLIENTS, OPS = lease.CLIENTS, lease.OPS
state_invariant = lease.state_invariant


def client(c: Client, i: int, rng: random.Random) -> Steps:
    yield from lease.elect(c, i, rng, from_request=False)


def check(ops: Sequence[OpRecord]) -> str | None:
    found = lease.overlap(lease.believed(ops, from_request=False))
    if found is None:
        return None
    (s1, e1, h1), (s2, e2, h2) = found
    return f"two holders: client {h1} believed it held the lease {s1}..{e1} ms and client {h2} {s2}..{e2} ms"
