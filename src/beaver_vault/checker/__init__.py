"""Beaver-Vault linearizability checker (pure: standard library only, no clock, no I/O but files).

Theory of operation
-------------------
A history (``shared/HISTORY-FORMAT.md``) is a sequence of invoke and completion events of
client processes. ``history`` pairs them into operations and rejects anything malformed
with a ``HistoryError`` naming the file and line. ``fail`` operations certainly did not
happen and are dropped; ``info`` operations (and those never completed) may have taken
effect at any point after their invoke, or never.

Every key is an independent register starting at null, so a history is linearizable iff
each key's sub-history is (linearizability is compositional). ``search`` decides one key
with the Wing & Gong search as improved by Lowe: repeatedly linearize one of the
operations that may come next in real time, memoise (set of linearized operations as a
bitset, register state) so that no configuration is explored twice, and backtrack when an
operation's completion is reached before it could be placed. ``model`` says what each
operation does (write, delete, read, cas, append) and compares values as JSON.

Each key gets its own step budget; an optional ``deadline`` callable (true when time is
up) is polled so that this package never reads a clock. Verdicts: linearizable,
not-linearizable (stops at the first such key, then shrinks that key's operations to a
small set that still cannot be ordered and explains it), unknown (budget or deadline
spent; never reported as linearizable).

Public API: ``check_history``, ``CheckResult``, ``load_history``, ``parse_events``,
``parse_lines``, ``History``, ``Op``, ``HistoryError``; command line:
``python -m beaver_vault.checker FILE... [--timeout SECONDS]``.
"""

from .check import DEFAULT_STEP_BUDGET, CheckResult, check_history, shrink_violation
from .history import History, HistoryError, JsonValue, Op, load_history, parse_events, parse_lines
from .search import LINEARIZABLE, NOT_LINEARIZABLE, UNKNOWN, check_key

__all__ = [
    "DEFAULT_STEP_BUDGET",
    "LINEARIZABLE",
    "NOT_LINEARIZABLE",
    "UNKNOWN",
    "CheckResult",
    "History",
    "HistoryError",
    "JsonValue",
    "Op",
    "check_history",
    "check_key",
    "load_history",
    "parse_events",
    "parse_lines",
    "shrink_violation",
]
