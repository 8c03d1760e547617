"""Typed errors of the Beaver-Vault client.

Theory of operation: the server answers every failure with a JSON body
``{"error": "<message>", "outcome": "unknown" | "not_applied", ...}`` and a 4xx/5xx status.
:func:`error_from_reply` is the one place that turns such an answer (or a transport failure
that exhausted the retries) into one of these exceptions. What a caller most needs to know
is whether a write may have happened:

* :class:`UnknownOutcome`: it may or may not have taken effect. Read before acting again,
  or retry with the same idempotency key (the client already did, as often as it was allowed).
* :class:`Unavailable`: it certainly did not happen (no node answered, no leader, overloaded).
* Everything else (:class:`NotFound`, :class:`PreconditionFailed`, :class:`BadRequest`,
  :class:`Conflict`, :class:`WatchCompacted`) is a definite answer from the cluster.

Every error is a :class:`ClusterError`, so ``except ClusterError`` catches them all.
"""

from __future__ import annotations

from typing import Any


class ClusterError(Exception):
    """Base of every client error.

    ``status`` is the HTTP status (``None`` when no node answered), ``outcome`` the server's
    ``"unknown"``/``"not_applied"`` (or the client's own judgement), ``body`` the decoded
    JSON answer when there was one, ``endpoint`` the node that gave it.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        outcome: str | None = None,
        body: Any = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.outcome = outcome
        self.body = body
        self.endpoint = endpoint


class NotFound(ClusterError):
    """The key does not exist (404)."""


class PreconditionFailed(ClusterError):
    """A conditional write (``if_revision`` / ``if_absent``) found the key elsewhere (412).

    ``current_revision`` is the key's modification revision as the server reported it
    (``None`` or ``0`` when the key does not exist or the server did not say).
    """

    def __init__(self, message: str, *, current_revision: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.current_revision = current_revision


class UnknownOutcome(ClusterError):
    """A write may or may not have been applied (timeout, lost leader, dropped connection)."""


class Unavailable(ClusterError):
    """No node could serve the request within the retry budget; nothing was applied."""


class BadRequest(ClusterError):
    """The request is invalid (4xx other than 404/409/412), e.g. a bad key or an oversized body."""


class Conflict(ClusterError):
    """The cluster refused the request as it stands (409), e.g. a join of a non-pristine node."""


class Unauthorized(ClusterError):
    """No credentials, or bad ones (401): an unknown user, a wrong password, an unknown or
    expired token."""


class Forbidden(ClusterError):
    """The credentials are good but the user's roles do not allow this (403)."""


class WatchCompacted(ClusterError):
    """A watch asked for a revision older than the history the server keeps (re-list, then
    watch from the listing's revision)."""


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip().strip('"').removeprefix("W/").strip('"')
        if text.isdigit():
            return int(text)
    return None


def current_revision_of(body: Any, etag: str | None) -> int | None:
    """The current revision a 412 reports: in the body (``current_revision``, ``mod_revision``
    or ``revision``) or, failing that, in the ``ETag`` header."""
    if isinstance(body, dict):
        for name in ("current_revision", "mod_revision", "revision"):
            found = _int_or_none(body.get(name))
            if found is not None:
                return found
    return _int_or_none(etag) if etag else None


def error_from_reply(
    status: int,
    body: Any,
    *,
    etag: str | None = None,
    endpoint: str | None = None,
    write: bool,
    maybe_applied: bool = False,
) -> ClusterError:
    """The exception for a final (non-retried) error answer.

    ``maybe_applied``: an earlier attempt of this same call may have taken effect, so a
    "certainly not applied" answer to a later attempt does not make the whole call
    "not applied" (it is reported as :class:`UnknownOutcome`).
    """
    message = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None
    text = f"HTTP {status}: {message or 'no error message'}"
    outcome = body.get("outcome") if isinstance(body, dict) and isinstance(body.get("outcome"), str) else None
    common: dict[str, Any] = {"status": status, "outcome": outcome, "body": body, "endpoint": endpoint}
    if status == 404:
        if isinstance(body, dict) and "path" in body and "key" not in body:
            return BadRequest(f"{text} (this server does not offer that route)", **common)
        return NotFound(text, **common)
    if status == 412:
        return PreconditionFailed(text, current_revision=current_revision_of(body, etag), **common)
    if status == 409:
        return Conflict(text, **common)
    if status == 410:
        return WatchCompacted(text, **common)
    if status == 401:
        return Unauthorized(text, **common)
    if status == 403:
        return Forbidden(text, **common)
    if 400 <= status < 500 and status not in (408, 429):
        return BadRequest(text, **common)
    # 5xx, 408, 429: the cluster could not do it now.
    if outcome == "unknown" or (write and outcome is None and status >= 500) or maybe_applied:
        common["outcome"] = "unknown"
        return UnknownOutcome(text, **common)
    return Unavailable(text, **common)
