"""Bank transfers: money moves between accounts, the total never changes.

``python -m sim --workload sim/examples/bank.py --seeds 0..19``

Each account is a key ``acct/<i>`` holding a balance. ``setup`` opens every account in ONE
transaction (so a late, retried or duplicated setup cannot reset a balance). A client reads two
balances, then moves an amount with a transaction that compares both balances with what it read
and writes both new balances: if anything changed meanwhile, the failure branch runs and the
client simply tries again with fresh reads. Some clients audit: one ``list`` of every account.

Invariants:

* ``state_invariant``: on every node, after every applied batch, the balances add up to the
  total (or no account exists yet), and none is negative;
* ``check``: every successful audit saw the full total.

``bank_broken.py`` runs the same clients with ``atomic=False``, the classic bug: the transfer written
as two separate puts. Between the two, the cluster holds money that is nowhere or twice, and the
invariant catches it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from sim.workload_api import Client, OpRecord, Steps

ACCOUNTS = 5
START = 100
TOTAL = ACCOUNTS * START
CLIENTS = 4
OPS = 240


def account(i: int) -> str:
    return f"acct/{i}"


def setup(c: Client) -> Steps:
    opened = [{"op": "put", "key": account(i), "value": START} for i in range(ACCOUNTS)]
    while True:
        r = yield c.txn([{"key": account(0), "target": "exists", "op": "==", "value": False}], opened)
        if r.status != "unknown":
            return  # ok: opened now; fail: an earlier (unknown) attempt opened them
        # unknown: it may have happened; the compare makes a second attempt harmless


def client(c: Client, i: int, rng: random.Random) -> Steps:
    return transfers(c, i, rng, atomic=True)


def transfers(c: Client, i: int, rng: random.Random, atomic: bool) -> Steps:
    while True:
        if rng.random() < 0.15:
            yield c.list("acct/")  # an audit, judged in check()
            continue
        a, b = rng.sample(range(ACCOUNTS), 2)
        ra = yield c.get(account(a))
        rb = yield c.get(account(b))
        if not (ra.ok and rb.ok) or ra.value is None or rb.value is None:
            yield c.sleep(20)
            continue
        amount = rng.randint(1, 30)
        if ra.value < amount:
            continue
        if not atomic:
            yield c.put(account(a), ra.value - amount)
            yield c.put(account(b), rb.value + amount)
        else:
            yield c.txn(
                [
                    {"key": account(a), "target": "value", "op": "==", "value": ra.value},
                    {"key": account(b), "target": "value", "op": "==", "value": rb.value},
                ],
                [
                    {"op": "put", "key": account(a), "value": ra.value - amount},
                    {"op": "put", "key": account(b), "value": rb.value + amount},
                ],
            )
        yield c.sleep(rng.randint(0, 20))


def _total(balances: Mapping[str, Any]) -> str | None:
    keys = [account(i) for i in range(ACCOUNTS)]
    present = [k for k in keys if k in balances]
    if not present:
        return None  # not opened yet
    if len(present) != ACCOUNTS:
        return f"only {len(present)} of {ACCOUNTS} accounts exist: {sorted(present)}"
    total = sum(balances[k] for k in keys)
    if total != TOTAL:
        return f"balances add up to {total}, not {TOTAL}: " + ", ".join(f"{k}={balances[k]}" for k in keys)
    negative = [k for k in keys if balances[k] < 0]
    if negative:
        return f"negative balance: {negative}"
    return None


def state_invariant(state: Mapping[str, Any]) -> str | None:
    return _total({k: v for k, v in state.items() if k.startswith("acct/")})


def check(ops: Sequence[OpRecord]) -> str | None:
    for op in ops:
        if op.f == "list" and op.result.ok:
            why = _total(op.result.value)
            if why is not None:
                return f"an audit at {op.end_ms} ms by client {op.process}: {why}"
    return None
