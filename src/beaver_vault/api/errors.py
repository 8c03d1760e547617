"""The ONE place where domain errors become HTTP responses.

Theory of operation: handlers and the runtime raise the typed operating errors of
``beaver_vault.errors``; :func:`error_response` turns each into a status code and a JSON
body ``{"error": "<human message>", "outcome": ..., ...}``. ``outcome`` tells a client
whether a write may have happened:

* ``not_applied``: certainly not in the log (bad input, no leader, overloaded, refused);
  retrying is safe.
* ``unknown``: it may or may not have happened (timeout, lost leadership, a forwarded
  request whose connection dropped); a client must read before retrying a non-idempotent
  operation. Never reported as a plain failure.

| error                               | status | outcome     | extra                         |
|-------------------------------------|--------|-------------|-------------------------------|
| ``Rejected(detail, status)``        | status | not_applied |                               |
| ``Overloaded``                      | 503    | not_applied | ``Retry-After: 1``            |
| ``NoLeader``                        | 503    | not_applied | ``Retry-After: 1``            |
| ``NotLeader`` (not forwardable)     | 503    | not_applied | ``leader_id``, ``Retry-After``|
| ``Unknown`` (timed out)             | 504    | unknown     |                               |
| ``Unknown`` (anything else)         | 503    | unknown     |                               |

``InvariantViolation`` is deliberately absent: it is a bug, not an operating error, and
propagates (Quart answers with the generic JSON 500 of ``app.py``).
"""

from __future__ import annotations

import json
from typing import Any

from quart import Response

from beaver_vault.errors import (
    BeaverVaultError,
    NoLeader,
    NotLeader,
    Overloaded,
    Rejected,
    Unknown,
)

RETRY_AFTER_S = "1"

JSON_MIMETYPE = "application/json"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response (non-ASCII kept as UTF-8)."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(text, status=status, headers=headers, mimetype=JSON_MIMETYPE)


def json_error(
    status: int,
    message: str,
    *,
    outcome: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """The shape of every error body: ``{"error": message, "outcome"?: ..., **extra}``."""
    body: dict[str, Any] = {"error": message}
    if outcome is not None:
        body["outcome"] = outcome
    body.update(extra)
    return json_response(body, status=status, headers=headers)


def _is_timeout(exc: Unknown) -> bool:
    # ``Unknown`` carries no structured reason yet; honour an explicit attribute if the runtime
    # adds one, else recognise the wording of a timeout.
    flag = getattr(exc, "timed_out", None)
    if isinstance(flag, bool):
        return flag
    text = str(exc).lower()
    return "timeout" in text or "timed out" in text


def error_response(exc: BeaverVaultError) -> Response:
    """Map one operating error to its HTTP response (see the module table)."""
    message = str(exc)
    match exc:
        case Rejected():
            return json_error(exc.status, message, outcome="not_applied")
        case Overloaded():
            return json_error(503, message, outcome="not_applied", headers={"Retry-After": RETRY_AFTER_S})
        case NoLeader():
            return json_error(503, message, outcome="not_applied", headers={"Retry-After": RETRY_AFTER_S})
        case NotLeader():
            return json_error(
                503,
                message,
                outcome="not_applied",
                headers={"Retry-After": RETRY_AFTER_S},
                leader_id=exc.leader_id,
            )
        case Unknown():
            return json_error(504 if _is_timeout(exc) else 503, message, outcome="unknown")
        case _:
            # A BeaverVaultError subclass this table does not know: trust its declared outcome.
            return json_error(503, message, outcome=exc.outcome)
