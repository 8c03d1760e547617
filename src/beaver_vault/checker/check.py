"""Whole-history verdicts: split by key, search each key, shrink a violation, explain it."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from .history import History, JsonValue, Op, parse_events
from .model import freeze
from .search import LINEARIZABLE, NOT_LINEARIZABLE, UNKNOWN, KeyVerdict, check_key, relevant

DEFAULT_STEP_BUDGET = 2_000_000  # per key; about a second or two of search in CPython
DEFAULT_SHRINK_BUDGET = 2_000_000  # in total, for making a violation small


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict on a history.

    ``verdict`` is exactly ``linearizable``, ``not-linearizable`` or ``unknown``; ``key`` is the
    offending key (not-linearizable) or the first undecided one (unknown); ``detail`` is one
    line; ``explanation`` is zero or more lines (the operations that cannot be ordered).
    """

    verdict: str
    key: str | None
    detail: str
    ops_checked: int  # operations (ok and info) on the keys that were searched
    ops_total: int  # every operation of the history, fails included
    keys_checked: int
    keys_total: int
    steps: int  # search steps spent, shrinking included
    culprits: tuple[Op, ...] = ()  # a small set of operations of ``key`` that cannot be ordered
    minimal: bool = False  # whether shrinking finished (no single operation can be dropped)
    explanation: str = ""
    unknown_keys: tuple[str, ...] = field(default=())

    @property
    def linearizable(self) -> bool:
        return self.verdict == LINEARIZABLE


HistoryInput = History | Iterable[Op] | Iterable[Mapping[str, object]]


def _as_ops(history: HistoryInput) -> tuple[Op, ...]:
    if isinstance(history, History):
        return history.ops
    items = list(history)
    if all(isinstance(item, Op) for item in items):
        return tuple(item for item in items if isinstance(item, Op))
    if all(isinstance(item, Mapping) for item in items):
        return parse_events([item for item in items if isinstance(item, Mapping)]).ops
    raise TypeError("check_history takes a History, a list of Op, or a list of event dicts")


def check_history(
    history: HistoryInput,
    *,
    step_budget: int = DEFAULT_STEP_BUDGET,
    deadline: Callable[[], bool] | None = None,
    shrink: bool = True,
    shrink_budget: int = DEFAULT_SHRINK_BUDGET,
) -> CheckResult:
    """Decide whether ``history`` is linearizable, key by key.

    Each key gets its own ``step_budget``; ``deadline()`` (true when time is up) is polled
    during the search. Keys are searched smallest first and the search stops at the first
    key that is not linearizable. A key that runs out of budget makes the verdict unknown
    unless another key is not linearizable.
    """
    ops = _as_ops(history)
    by_key: dict[str, list[Op]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    order = sorted(by_key, key=lambda k: (len(relevant(by_key[k])), k))
    steps = 0
    checked_ops = 0
    keys_checked = 0
    unknown: list[tuple[str, KeyVerdict]] = []
    timed_out = False
    for key in order:
        if deadline is not None and deadline():
            timed_out = True
            break
        key_ops = relevant(by_key[key])
        outcome = check_key(key_ops, step_budget=step_budget, deadline=deadline)
        steps += outcome.steps
        checked_ops += len(key_ops)
        keys_checked += 1
        if outcome.verdict == NOT_LINEARIZABLE:
            core, minimal, shrink_steps = (
                shrink_violation(key_ops, step_budget=min(step_budget, shrink_budget),
                                 total_budget=shrink_budget, deadline=deadline)
                if shrink
                else (list(key_ops), False, 0)
            )
            size = "operations" if len(core) != 1 else "operation"
            return CheckResult(
                verdict=NOT_LINEARIZABLE,
                key=key,
                detail=(
                    f"key {key!r}: {len(core)} {size} cannot be ordered"
                    f"{'' if minimal else ' (not fully shrunk)'}"
                    f" (of {len(key_ops)} on this key)"
                ),
                ops_checked=checked_ops,
                ops_total=len(ops),
                keys_checked=keys_checked,
                keys_total=len(by_key),
                steps=steps + shrink_steps,
                culprits=tuple(core),
                minimal=minimal,
                explanation=explain(core, by_key[key]),
            )
        if outcome.verdict == UNKNOWN:
            unknown.append((key, outcome))
            if outcome.reason == "deadline":
                timed_out = True
                break
    if unknown or timed_out:
        undecided = [k for k, _ in unknown]
        unchecked = len(by_key) - keys_checked
        parts = []
        budget_keys = [k for k, v in unknown if v.reason == "budget"]
        if budget_keys:
            parts.append(f"search budget ({step_budget} steps) spent on key(s) {_key_list(budget_keys)}")
        if timed_out:
            parts.append(f"timeout; {unchecked + sum(1 for _, v in unknown if v.reason == 'deadline')} key(s) undecided")
        return CheckResult(
            verdict=UNKNOWN,
            key=undecided[0] if undecided else (order[keys_checked] if keys_checked < len(order) else None),
            detail="; ".join(parts),
            ops_checked=checked_ops,
            ops_total=len(ops),
            keys_checked=keys_checked,
            keys_total=len(by_key),
            steps=steps,
            unknown_keys=tuple(undecided),
        )
    return CheckResult(
        verdict=LINEARIZABLE,
        key=None,
        detail=f"{checked_ops} operations on {len(by_key)} key(s), {steps} search steps",
        ops_checked=checked_ops,
        ops_total=len(ops),
        keys_checked=keys_checked,
        keys_total=len(by_key),
        steps=steps,
    )


def _key_list(keys: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(repr(k) for k in keys[:most])
    return shown + (f" and {len(keys) - most} more" if len(keys) > most else "")


def shrink_violation(
    ops: Sequence[Op],
    *,
    step_budget: int,
    total_budget: int,
    deadline: Callable[[], bool] | None = None,
) -> tuple[list[Op], bool, int]:
    """Make a non-linearizable set of one key's operations small: ``(core, minimal, steps)``.

    First the shortest prefix of the history that is not linearizable is found (binary
    search); the operation whose completion ends it is where things first go wrong, and it
    stays in the core. Then chunks of decreasing size are dropped while the rest stays not
    linearizable (a light delta debugging, ending with single-operation passes until one
    drops nothing). A read or cas keeps at least one operation that could have written what
    it saw (if the history had one), so the core shows "the write, the overwrite, the stale
    read" rather than a lone read. Info operations that write nothing seen go first, all at
    once: dropping one only removes options, so the violation stays. ``minimal`` is true
    when shrinking finished within the budget.
    """
    ops, culprit, spent = _first_violation(ops, step_budget=step_budget, deadline=deadline)
    groups = _support_groups(ops)
    needed = {i for per_read in groups.values() for group in per_read for i in group}
    core = [op for op in ops if op.outcome == "ok" or op.id in needed]

    def acceptable(candidate: list[Op]) -> bool:
        nonlocal spent
        ids = {op.id for op in candidate}
        if culprit is not None and culprit not in ids:
            return False
        for op in candidate:
            for group in groups.get(op.id, ()):
                if not ids & group:
                    return False
        outcome = check_key(candidate, step_budget=min(step_budget, total_budget - spent), deadline=deadline)
        spent += outcome.steps
        return outcome.verdict == NOT_LINEARIZABLE

    if not acceptable(core):
        core = list(ops)  # cannot happen in theory; keep the honest input if it does
    chunk = max(1, len(core) // 2)
    while True:
        i = 0
        dropped = False
        while i < len(core):
            if spent >= total_budget or (deadline is not None and deadline()):
                return core, False, spent
            candidate = core[:i] + core[i + chunk :]
            if acceptable(candidate):
                core = candidate
                dropped = True
            else:
                i += chunk
        if chunk == 1 and not dropped:
            return core, True, spent  # one whole pass dropped nothing: 1-minimal
        chunk = max(1, chunk // 2)


def _truncate(ops: Sequence[Op], end: int) -> list[Op]:
    """The history as it stood after event ``end``: later invokes vanish, operations that
    complete later are still open (info)."""
    out = []
    for op in ops:
        if op.invoke_index > end:
            continue
        if op.complete_index is not None and op.complete_index > end:
            op = replace(op, outcome="info", complete_index=None, complete_line=None, complete_time=None)
        out.append(op)
    return out


def _first_violation(
    ops: Sequence[Op], *, step_budget: int, deadline: Callable[[], bool] | None
) -> tuple[list[Op], int | None, int]:
    """Binary search for the shortest prefix that is not linearizable: ``(prefix ops, id of the
    op whose completion ends it, steps)``. Its last completion is where things first go wrong,
    so the explanation is built around it. Gives up (full ops, None) if the budget runs out."""
    spent = 0
    ends = sorted(op.complete_index for op in ops if op.outcome == "ok" and op.complete_index is not None)
    lo, hi = 0, len(ends) - 1  # invariant: the prefix ending at ends[hi] is not linearizable
    while lo < hi:
        mid = (lo + hi) // 2
        outcome = check_key(_truncate(ops, ends[mid]), step_budget=step_budget, deadline=deadline)
        spent += outcome.steps
        if outcome.verdict == NOT_LINEARIZABLE:
            hi = mid
        elif outcome.verdict == LINEARIZABLE:
            lo = mid + 1
        else:
            return list(ops), None, spent
    if not ends:
        return list(ops), None, spent
    culprit = next(op.id for op in ops if op.complete_index == ends[hi])
    return _truncate(ops, ends[hi]), culprit, spent


def _support_groups(ops: Sequence[Op]) -> dict[int, list[frozenset[int]]]:
    """For each ok read (and ok cas): groups of op ids; one op of each group could have written
    (part of) what it saw. A list needs, per element, one of the appends of that element."""
    writers: dict[Hashable, set[int]] = {}
    appenders: dict[Hashable, set[int]] = {}
    for op in ops:
        if op.f == "write":
            writers.setdefault(freeze(op.value), set()).add(op.id)
        elif op.f == "cas" and isinstance(op.value, list) and len(op.value) == 2:
            writers.setdefault(freeze(op.value[1]), set()).add(op.id)
        elif op.f == "append":
            appenders.setdefault(freeze(op.value), set()).add(op.id)
    groups: dict[int, list[frozenset[int]]] = {}
    for op in ops:
        if op.outcome != "ok":
            continue
        seen: JsonValue
        if op.f == "read":
            seen = op.result
        elif op.f == "cas" and isinstance(op.value, list) and len(op.value) == 2:
            seen = op.value[0]
        else:
            continue
        if seen is None:
            continue
        found: list[frozenset[int]] = []
        if isinstance(seen, list):
            for element in {freeze(e) for e in seen}:
                if element in appenders:
                    found.append(frozenset(appenders[element] - {op.id}))
        if not found and freeze(seen) in writers:
            found.append(frozenset(writers[freeze(seen)] - {op.id}))
        found = [group for group in found if group]
        if found:
            groups[op.id] = found
    return groups


def _same(a: JsonValue, b: JsonValue) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def explain(core: Sequence[Op], key_ops: Sequence[Op]) -> str:
    """Readable lines: the core operations, then, for a read of a value no core operation
    writes, where that value was written in the full history."""
    lines = [op.describe() for op in sorted(core, key=lambda op: op.invoke_index)]
    writers_in_core = {json.dumps(_written(op), sort_keys=True) for op in core if _written(op) is not _NOTHING}
    for op in core:
        if op.f != "read" or op.outcome != "ok":
            continue
        if json.dumps(op.result, sort_keys=True) in writers_in_core or op.result is None:
            continue
        sources = [w for w in key_ops if w.outcome != "fail" and _written(w) is not _NOTHING
                   and _same(_written(w), op.result)]
        if not sources:
            lines.append(f"note: no operation on this key writes the value read by process {op.process} "
                         f"on line {op.complete_line}")
        else:
            for w in sources[:3]:
                lines.append(f"note: the value read on line {op.complete_line} is written by {w.describe()}")
    return "\n".join(lines)


_NOTHING: JsonValue = {"<nothing>": None}


def _written(op: Op) -> JsonValue:
    if op.f == "write":
        return op.value
    if op.f == "cas" and isinstance(op.value, list) and len(op.value) == 2:
        return op.value[1]
    return _NOTHING
