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
| ``PreconditionFailed``              | 412    | not_applied | ``key``, ``current_revision`` |
| a typed refusal (``REFUSAL_STATUS``)| 400-410, 503 | not_applied | (see the table below)   |
| ``Rejected(detail, status)``        | status | not_applied | the API's own refusals        |
| ``Overloaded``                      | 503    | not_applied | ``Retry-After: 1``            |
| ``NoLeader``                        | 503    | not_applied | ``Retry-After: 1``            |
| ``NotLeader`` (not forwardable)     | 503    | not_applied | ``leader_id``, ``Retry-After``|
| ``Unknown`` (timed out)             | 504    | unknown     |                               |
| ``Unknown`` (anything else)         | 503    | unknown     |                               |
| ``ChangeInFlight``                  | 409    | not_applied | ``in_flight``, ``Retry-After``|
| ``QuorumAtRisk``                    | 409    | not_applied | ``analysis`` (the what-if)    |
| ``ChangeRolledBack``                | 409    | not_applied | ``node_id``, ``rolled_back``  |
| ``WritesSuspended`` (disk full)     | 507    | either      | ``storage``, ``Retry-After``  |
| ``WritesSuspended`` (I/O error)     | 503    | either      | ``storage``, ``Retry-After``  |

``PreconditionFailed`` is the API's own: a conditional write (``If-Match``, ``If-None-Match``)
whose condition did not hold. The command went through the log but changed nothing, so it is
``not_applied`` and the body says which revision the key is at (0: absent). It is an
exception here, like every other error, so that the mapping stays in this table; ``headers``
carries e.g. ``Idempotency-Replayed`` when the answer is a replay.

The typed refusals of the Raft core and the driver carry facts, not statuses; this module
alone decides the status of each (``REFUSAL_STATUS``, looked up along the class hierarchy):
400 for a request that can never succeed as sent, 404 for an unknown member, 409 for a
conflict with the cluster's state (another change in flight, an address in use, a node that
refused to join, ...), 410 for a watch history no longer kept, 503 for a proposal another
leader's entry superseded and a transfer that timed out (retry). The ``error`` text is the
exception's message, unchanged.

``InvariantViolation`` is deliberately absent: it is a bug, not an operating error, and
propagates (Quart answers with the generic JSON 500 of ``app.py``).
"""

from __future__ import annotations

from typing import Any

from quart import Response
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from beaver_vault.errors import (
    AddressInUse,
    AddressUpdateNotRequested,
    BeaverVaultError,
    ChangeInFlight,
    ChangeRolledBack,
    ConfigBusy,
    HistoryCompacted,
    IncompleteJoin,
    JoinRefused,
    LastVoter,
    NoLeader,
    NoReachableQuorum,
    NotAMember,
    NotAVoter,
    NotLeader,
    NoTransferTarget,
    OtherLeaderElected,
    Overloaded,
    QuorumAtRisk,
    Rejected,
    SupersededByLeader,
    TooManyVoterChanges,
    TransferTimedOut,
    Unknown,
    WritesSuspended,
)
from beaver_vault.jsontext import compact_encoder

RETRY_AFTER_S = "1"

# A 413 leaves (part of) the request body unread. Hypercorn (0.18, h11) then neither answers a
# next request on that connection nor closes it (the unread body stalls the connection), so a
# keep-alive client hangs until its read timeout. Telling the client to close it avoids that.
CLOSE_AFTER_UNREAD_BODY = {"Connection": "close"}


# The HTTP status of each typed refusal (``Rejected`` subclasses raised by the core and the
# driver). A subclass not listed takes its nearest listed base's status.
REFUSAL_STATUS: dict[type[Rejected], int] = {
    IncompleteJoin: 400,
    NotAVoter: 400,
    NotAMember: 404,
    ConfigBusy: 409,
    TooManyVoterChanges: 409,
    AddressInUse: 409,
    AddressUpdateNotRequested: 409,
    LastVoter: 409,
    NoReachableQuorum: 409,
    JoinRefused: 409,  # IdentityMismatch, RetiredNodeId, ForeignClusterData
    NoTransferTarget: 409,
    OtherLeaderElected: 409,
    HistoryCompacted: 410,
    SupersededByLeader: 503,
    TransferTimedOut: 503,
}


def refusal_status(exc: Rejected) -> int:
    """The status of a refusal: the API's explicit one, else the table's, else 400."""
    if exc.status is not None:
        return exc.status
    for cls in type(exc).__mro__:
        status = REFUSAL_STATUS.get(cls)
        if status is not None:
            return status
    return 400


class PreconditionFailed(Rejected):
    """A conditional write whose condition did not hold; nothing changed."""

    def __init__(self, key: str, current_revision: int, *, headers: dict[str, str] | None = None) -> None:
        state = "does not exist" if current_revision == 0 else f"is at revision {current_revision}"
        super().__init__(f"precondition failed: key {key!r} {state}", status=412)
        self.key = key
        self.current_revision = current_revision
        self.headers = dict(headers or {})


JSON_MIMETYPE = "application/json"


_TEXT = compact_encoder(allow_nan=True)


def json_text(body: Any) -> str:
    """The compact JSON text of every response body (non-ASCII kept as UTF-8)."""
    return _TEXT(body)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response (non-ASCII kept as UTF-8)."""
    return Response(json_text(body), status=status, headers=headers, mimetype=JSON_MIMETYPE)


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


def error_parts(exc: BeaverVaultError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Map one operating error to ``(status, body, headers)`` (see the module table)."""
    message = str(exc)
    body: dict[str, Any] = {"error": message, "outcome": "not_applied"}
    retry = {"Retry-After": RETRY_AFTER_S}
    match exc:
        case PreconditionFailed():
            body.update(key=exc.key, current_revision=exc.current_revision)
            return 412, body, dict(exc.headers)
        case Rejected():
            return refusal_status(exc), body, {}
        case ChangeInFlight():
            body["in_flight"] = exc.change
            return 409, body, retry
        case QuorumAtRisk():
            body["analysis"] = exc.analysis
            return 409, body, {}
        case ChangeRolledBack():
            body.update(node_id=exc.node_id, rolled_back=True)
            return 409, body, {}
        case Overloaded() | NoLeader():
            return 503, body, retry
        case NotLeader():
            body["leader_id"] = exc.leader_id
            return 503, body, retry
        case WritesSuspended():
            # 507 Insufficient Storage when the disk is full, 503 for an I/O error; either
            # way the node retries by itself (GET /api/v1/status says why and since when).
            body.update(outcome=exc.outcome, storage=exc.reason)
            return (507 if exc.reason == "disk_full" else 503), body, {"Retry-After": "5"}
        case Unknown():
            body["outcome"] = "unknown"
            return (504 if _is_timeout(exc) else 503), body, {}
        case _:
            # A BeaverVaultError subclass this table does not know: trust its declared outcome.
            body["outcome"] = exc.outcome
            return 503, body, {}


def error_response(exc: BeaverVaultError) -> Response:
    """Map one operating error to its HTTP response (see the module table)."""
    status, body, headers = error_parts(exc)
    return json_response(body, status=status, headers=headers)


def too_large_message(max_body_bytes: int) -> str:
    return f"request body is larger than {max_body_bytes} bytes"


def http_error_response(exc: HTTPException, *, method: str, path: str, max_body_bytes: int) -> Response:
    """Routing and protocol errors (404, 405, 408, 413, ...) and unexpected exceptions (500)."""
    code = exc.code or 500
    headers: dict[str, str] = {}
    if code >= 500:
        # An unexpected exception (a bug, InvariantViolation, ...): a write may have been
        # proposed before it happened, so its outcome is unknown.
        outcome = "unknown" if method not in ("GET", "HEAD") else "not_applied"
        return json_error(500, "internal error", outcome=outcome)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    if code in (408, 413):
        headers.update(CLOSE_AFTER_UNREAD_BODY)
    message = {
        404: "no such route",
        405: f"method {method} is not allowed here",
        408: "the request body did not arrive in time",
        413: too_large_message(max_body_bytes),
    }.get(code, exc.description or exc.name)
    extra = {"path": path} if code in (404, 405) else {}
    return json_error(code, message, outcome="not_applied", headers=headers, **extra)


# WebSocket watches report errors as a last JSON message ``{"error", "status", ...}`` (the full
# text: a close frame's reason is limited to 123 bytes) and then close with an application
# code 4000 + the HTTP status (4400 bad input, 4410 history gone, 4503 overloaded). A watcher
# closed by the server (it fell behind, the state was replaced) closes with 1013 "try again
# later": reconnect from the last revision seen.
WS_CLOSE_FELL_BEHIND = 1013
WS_CLOSE_NORMAL = 1000
WS_REASON_MAX_BYTES = 123


def websocket_close_code(status: int) -> int:
    return 4000 + status if 100 <= status <= 999 else 4500


def websocket_reason(text: str) -> str:
    """Truncate ``text`` to fit a close frame (at most 123 bytes of UTF-8)."""
    data = text.encode("utf-8")
    if len(data) <= WS_REASON_MAX_BYTES:
        return text
    return data[: WS_REASON_MAX_BYTES - 3].decode("utf-8", errors="ignore") + "..."
