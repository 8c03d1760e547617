"""Linearizability of one key: the Wing & Gong search with Lowe's memoisation.

The key's operations become a doubly linked list of call and return entries in real-time
order. At each point the candidates to linearize next are the calls that come before the
first remaining return (an operation cannot be ordered after one that completed before it
was invoked). Linearizing a candidate that the model allows "lifts" its call and return out
of the list and pushes a frame; reaching a return entry means nothing can be ordered before
that operation completes, so the search backtracks. It succeeds when every ``ok`` operation
is linearized.

``info`` operations have no return entry: they may take effect at any point after their
invoke, or never, so they are always candidates and never required.

Memoisation: a configuration is (linearized ok ops, linearized info ops, state). A
configuration that was already visited fails again, and so does one whose info set is a
superset of a visited one with the same ok set and state, because leaving an info operation
unlinearized only keeps more options open (info ops never constrain real time). To make
that pruning bite, each configuration tries ``ok`` candidates before ``info`` ones.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from .history import Op
from .model import APPEND, CAS, LIST_TAG, READ, WRITE, Step, compile_op

LINEARIZABLE = "linearizable"
NOT_LINEARIZABLE = "not-linearizable"
UNKNOWN = "unknown"

_DEADLINE_EVERY = 1024  # steps between two calls of the deadline callable


@dataclass(frozen=True, slots=True)
class KeyVerdict:
    verdict: str
    steps: int
    reason: str = ""  # for unknown: "budget" or "deadline"


def relevant(ops: Sequence[Op]) -> list[Op]:
    """The operations that constrain a key: fails did not happen, info reads observe nothing."""
    return [op for op in ops if op.outcome == "ok" or (op.outcome == "info" and op.f != "read")]


def check_key(
    ops: Sequence[Op],
    *,
    step_budget: int,
    deadline: Callable[[], bool] | None = None,
) -> KeyVerdict:
    """Decide whether the operations of ONE key (ok and info; others are ignored) linearize."""
    ops = relevant(ops)
    remaining_ok = sum(1 for op in ops if op.outcome == "ok")
    if remaining_ok == 0:
        return KeyVerdict(LINEARIZABLE, 0)
    ops = _drop_unobservable(ops)
    n = len(ops)
    steps_of = [compile_op(op) for op in ops]
    code = [s.code for s in steps_of]
    arg_a = [s.a for s in steps_of]
    arg_b = [s.b for s in steps_of]
    is_info = [op.outcome != "ok" for op in ops]
    has_info = any(is_info)
    # Append-only pruning: a pending ok read that no pending reset (write, delete, cas) can be
    # ordered before (each was invoked after the read returned, or is linearized already) will
    # be linearized at a state that only appends have changed since now, so the current list
    # must be a prefix of what it returned. Without this, k concurrent appends cost k! orders:
    # checking only once no reset was left at all let seed 5064's 92 appends between 6 deletes
    # spend 20M steps; checking only the reads in the candidate window let wrong orders of
    # info appends live on until a read far ahead (seed 541's 51 operations spent 20M steps).
    is_reset = [c in (WRITE, CAS) for c in code]
    reset_bits = sum(1 << i for i in range(n) if is_reset[i])
    # Per ok read: its bit, the value it returned, and the resets that may be ordered before it
    # (invoked before it returned): a prefix of the resets in invoke order.
    resets = sorted((ops[j].invoke_index, j) for j in range(n) if is_reset[j])
    reset_invokes = [t for t, _ in resets]
    invoked_by = [0]  # invoked_by[k]: the bits of the first k resets to be invoked
    for _, j in resets:
        invoked_by.append(invoked_by[-1] | (1 << j))
    ok_reads = [
        (1 << i, arg_a[i], invoked_by[bisect_left(reset_invokes, _completed(ops[i]))])
        for i in range(n)
        if code[i] == READ and not is_info[i]
    ]

    # Entries: 1..n are calls of ops 0..n-1, n+1..2n returns; 0 is the head; -1 ends the list.
    timeline: list[tuple[int, int]] = []
    for i, op in enumerate(ops):
        timeline.append((op.invoke_index, 1 + i))
        if not is_info[i]:
            if op.complete_index is None:
                raise ValueError("an ok operation without a completion")
            timeline.append((op.complete_index, 1 + n + i))
    timeline.sort()
    nxt = [-1] * (2 * n + 1)
    prv = [-1] * (2 * n + 1)
    last = 0
    for _, entry in timeline:
        nxt[last] = entry
        prv[entry] = last
        last = entry

    def lift(call: int) -> None:
        p, q = prv[call], nxt[call]
        nxt[p] = q
        if q >= 0:
            prv[q] = p
        ret = call + n
        if not is_info[call - 1]:
            p, q = prv[ret], nxt[ret]
            nxt[p] = q
            if q >= 0:
                prv[q] = p

    def unlift(call: int) -> None:
        ret = call + n
        if not is_info[call - 1]:
            p, q = prv[ret], nxt[ret]
            nxt[p] = ret
            if q >= 0:
                prv[q] = ret
        p, q = prv[call], nxt[call]
        nxt[p] = call
        if q >= 0:
            prv[q] = call

    ok_bits = 0
    info_bits = 0
    state: Hashable = None
    seen_plain: set[tuple[int, Hashable]] = set()
    seen_info: dict[tuple[int, Hashable], list[int]] = {}
    stack: list[tuple[int, int, Hashable]] = []
    entry = nxt[0]
    phase = 0  # 0: try ok candidates; 1: then info candidates
    steps = 0
    while True:
        steps += 1
        if steps > step_budget:
            return KeyVerdict(UNKNOWN, steps - 1, "budget")
        if deadline is not None and steps % _DEADLINE_EVERY == 0 and deadline():
            return KeyVerdict(UNKNOWN, steps, "deadline")
        if entry < 0 or entry > n:
            # A return entry (or the end): no more candidates in this phase.
            if phase == 0 and has_info:
                phase = 1
                entry = nxt[0]
                continue
            if not stack:
                return KeyVerdict(NOT_LINEARIZABLE, steps)
            entry, phase, state = stack.pop()
            i = entry - 1
            unlift(entry)
            if is_info[i]:
                info_bits &= ~(1 << i)
            else:
                ok_bits &= ~(1 << i)
                remaining_ok += 1
            entry = nxt[entry]
            continue
        i = entry - 1
        if is_info[i] != (phase == 1):
            entry = nxt[entry]
            continue
        c = code[i]
        if c == WRITE:
            new_state = arg_a[i]
        elif c == READ:
            if state != arg_a[i]:
                entry = nxt[entry]
                continue
            new_state = state
        elif c == CAS:
            if state != arg_a[i]:
                entry = nxt[entry]
                continue
            new_state = arg_b[i]
        elif c == APPEND:
            if state is None:
                new_state = (LIST_TAG, arg_a[i])
            elif isinstance(state, tuple) and state[0] == LIST_TAG:
                new_state = (*state, arg_a[i])
            else:
                entry = nxt[entry]
                continue
            if not _reads_reachable(new_state, ok_reads, ok_bits, reset_bits & ~(ok_bits | info_bits)):
                entry = nxt[entry]
                continue
        else:
            raise ValueError(f"unknown operation code {c}")
        if is_info[i]:
            new_ok, new_info = ok_bits, info_bits | (1 << i)
        else:
            new_ok, new_info = ok_bits | (1 << i), info_bits
        config = (new_ok, new_state)
        if has_info:
            visited = seen_info.get(config)
            if visited is None:
                seen_info[config] = [new_info]
            elif any(v & new_info == v for v in visited):
                entry = nxt[entry]
                continue
            else:
                visited.append(new_info)
        else:
            if config in seen_plain:
                entry = nxt[entry]
                continue
            seen_plain.add(config)
        stack.append((entry, phase, state))
        lift(entry)
        state = new_state
        ok_bits, info_bits = new_ok, new_info
        if not is_info[i]:
            remaining_ok -= 1
            if remaining_ok == 0:
                return KeyVerdict(LINEARIZABLE, steps)
        entry = nxt[0]
        phase = 0


def _completed(op: Op) -> int:
    if op.complete_index is None:
        raise ValueError("an ok operation without a completion")
    return op.complete_index


def _reads_reachable(
    state: tuple[Hashable, ...], ok_reads: list[tuple[int, Hashable, int]], ok_bits: int, pending_resets: int
) -> bool:
    """Can every ok read not yet linearized, that no pending reset can precede, still be
    satisfied by appending to the list ``state``?"""
    size = len(state)
    for bit, wanted, resets_before in ok_reads:
        if ok_bits & bit or resets_before & pending_resets:
            continue
        if not (isinstance(wanted, tuple) and len(wanted) >= size and wanted[:size] == state):
            return False
    return True


def _drop_unobservable(ops: list[Op]) -> list[Op]:
    """Drop info operations whose effect no read or cas could ever see.

    An info write (or cas) of a value that no ok read returned and no cas expects, and that
    is not null or a list, can only be followed by an unconditional overwrite before anything
    else succeeds; an info append of an element that no read or cas list contains is stuck the
    same way. Taking such an operation into the order never helps, so it may as well never
    have happened, and leaving it in only multiplies the configurations to explore.
    """
    compiled = [compile_op(op) for op in ops]
    seen: set[Hashable] = set()
    elements: set[Hashable] = set()
    for op, step in zip(ops, compiled, strict=True):
        observed: Hashable
        if step.code == READ and op.outcome == "ok":
            observed = step.a
        elif step.code == CAS:
            observed = step.a
        else:
            continue
        seen.add(observed)
        if isinstance(observed, tuple) and observed and observed[0] == LIST_TAG:
            elements.update(observed[1:])
    return [op for op, step in zip(ops, compiled, strict=True) if op.outcome == "ok" or not _invisible(step, seen, elements)]


def _invisible(step: Step, seen: set[Hashable], elements: set[Hashable]) -> bool:
    if step.code == WRITE or step.code == CAS:
        written = step.a if step.code == WRITE else step.b
        is_list = isinstance(written, tuple) and bool(written) and written[0] == LIST_TAG
        return written is not None and not is_list and written not in seen
    if step.code == APPEND:
        return step.a not in elements
    return False
