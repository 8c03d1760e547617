"""How one HTTP exchange becomes a history completion (pure: no I/O, no clock).

The rules (``shared/HISTORY-FORMAT.md``; the server's ``api/errors.py`` table):

* 200 -> ``ok``; for a read the value is the body; for a ``cas`` or an ``append`` (both are
  transactions) ``"succeeded": true`` -> ok, ``false`` -> ``fail`` (the compare did not hold,
  nothing changed); a 200 transaction answer without a boolean ``succeeded`` -> ``info``.
* a read answered 404 with the server's own not-found body (``"key"`` and no ``"outcome"``) ->
  ``ok`` with ``null`` (every register starts at null; a delete sets it back).
* any other 4xx/5xx whose JSON body says ``"outcome": "not_applied"`` -> ``fail``.
* ``"outcome": "unknown"``, a body that is not JSON or has no outcome, any other status, a
  timeout, a dropped connection, any transport error -> ``info``. Never ``fail``: turning an
  unknown outcome into a failure makes the checker accept wrong systems.
* the one transport error that is certain: the TCP connection was refused or could not be
  established (``connect_failed``), so no byte of the request left the client -> ``fail``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

OK = "ok"
FAIL = "fail"
INFO = "info"

READ_LIKE = frozenset({"read"})
TXN_LIKE = frozenset({"cas", "append"})


@dataclass(frozen=True, slots=True)
class Exchange:
    """What the client saw: a status and body, or a transport error (status None)."""

    status: int | None
    body: str = ""
    error: str | None = None  # the transport error's class name, e.g. "ReadTimeout"
    connect_failed: bool = False  # refused / unreachable before anything was sent


@dataclass(frozen=True, slots=True)
class Completion:
    type: str  # ok | fail | info
    value: Any  # what the completion line carries (a read's value; else the invoked value)
    reason: str  # short, for logs


def _json(body: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(body)
    except ValueError:
        return False, None


def classify(f: str, key: str, invoked: Any, ex: Exchange) -> Completion:
    """Map one exchange of operation ``f`` on ``key`` (invoked with ``invoked``) to a completion."""
    if ex.status is None:
        if ex.connect_failed:
            return Completion(FAIL, invoked, f"not sent: {ex.error or 'connect failed'}")
        return Completion(INFO, invoked, f"transport: {ex.error or 'error'}")
    parsed, body = _json(ex.body)
    if ex.status == 200:
        if f in READ_LIKE:
            if not parsed:
                return Completion(INFO, invoked, "200 read with a body that is not JSON")
            return Completion(OK, body, "200")
        if f in TXN_LIKE:
            succeeded = body.get("succeeded") if parsed and isinstance(body, dict) else None
            if succeeded is True:
                return Completion(OK, invoked, "200 succeeded")
            if succeeded is False:
                return Completion(FAIL, invoked, "200 compare failed")
            return Completion(INFO, invoked, "200 txn without a boolean succeeded")
        return Completion(OK, invoked, "200")
    outcome = body.get("outcome") if parsed and isinstance(body, dict) else None
    if (
        f in READ_LIKE
        and ex.status == 404
        and isinstance(body, dict)
        and body.get("key") == key
        and outcome is None
    ):
        return Completion(OK, None, "404 absent")
    if outcome == "not_applied":
        return Completion(FAIL, invoked, f"{ex.status} not_applied")
    if outcome == "unknown":
        return Completion(INFO, invoked, f"{ex.status} unknown")
    return Completion(INFO, invoked, f"{ex.status} unclear")
