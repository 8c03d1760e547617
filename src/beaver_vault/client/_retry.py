"""The retry engine of the clients, sans I/O: endpoints, the actions a client performs and
the outcomes it reports, and :func:`run_call`, the one retry policy (see ``_core`` for the
theory of operation and the retry rules).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from beaver_vault.client.errors import ClusterError, Unavailable, UnknownOutcome, error_from_reply

T = TypeVar("T")

API = "/api/v1"
IDEMPOTENCY_HEADER = "Idempotency-Key"
CLIENT_HEADER = "X-Beaver-Vault-Client"
RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})


# --- who is asking ---------------------------------------------------------------------------------


class _ProcessIdentity:
    """The name this process's writes carry as ``X-Beaver-Vault-Client`` (random, renewed in a
    forked child) and the counter of their idempotency keys. The cluster remembers the last
    1,000 requests of each client name: with a name of its own, no other process's writes can
    push this one's out of that window. Keys that count up (rather than random ones) make
    the cluster's table of remembered requests grow at one end, which costs every node fewer
    pages per write."""

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.name = "py-" + secrets.token_hex(8)
        self.ids = itertools.count(1)


IDENTITY = _ProcessIdentity()
os.register_at_fork(after_in_child=IDENTITY.renew)


def new_idempotency_key() -> str:
    """A key no other write of this client name carries (fixed width: they sort as they count)."""
    return f"{next(IDENTITY.ids):012x}"


# --- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard a call tries before giving up. Every number is finite, so every call ends."""

    max_attempts: int = 8  # HTTP attempts per call, over all endpoints
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 1.0
    timeout_s: float = 15.0  # per attempt: read/write/pool (longer than the server's own bounds)
    connect_timeout_s: float = 1.0  # per attempt: opening the TCP connection
    watch_max_reconnects: int = 20  # consecutive failed (re)connections of a watch before Unavailable

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.watch_max_reconnects < 1:
            raise ValueError("max_attempts and watch_max_reconnects must be at least 1")
        if not (0 <= self.backoff_initial_s <= self.backoff_max_s):
            raise ValueError("need 0 <= backoff_initial_s <= backoff_max_s")
        if not (self.timeout_s > 0 and self.connect_timeout_s > 0):
            raise ValueError("timeouts must be positive")

    def httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s)


def normalize_endpoints(endpoints: str | Sequence[str]) -> tuple[str, ...]:
    """``"http://a:1, http://b:2/"`` or a list of URLs -> ``("http://a:1", "http://b:2")``."""
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out: list[str] = []
    for item in items:
        url = item.strip().rstrip("/")
        if not url:
            continue
        if "://" not in url:
            url = "http://" + url
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint {item!r} must be an http:// or https:// URL")
        if url not in out:
            out.append(url)
    if not out:
        raise ValueError("at least one endpoint URL is needed")
    return tuple(out)


class Endpoints:
    """The node URLs and which one to try first: the last one that answered (sticky), moving
    on to the next after a failure."""

    def __init__(self, urls: str | Sequence[str]) -> None:
        self.urls = normalize_endpoints(urls)
        self._current = 0

    def __len__(self) -> int:
        return len(self.urls)

    def current(self) -> str:
        return self.urls[self._current]

    def failed(self, url: str) -> None:
        if self.urls[self._current] == url:
            self._current = (self._current + 1) % len(self.urls)

    def succeeded(self, url: str) -> None:
        if url in self.urls:
            self._current = self.urls.index(url)


# --- actions and outcomes -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer, read in full. ``headers`` has lower-case names."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    endpoint: str

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except ValueError:
            raise ClusterError(
                f"{self.endpoint} answered HTTP {self.status} with a body that is not JSON: {self.content[:200]!r}",
                status=self.status,
                endpoint=self.endpoint,
            ) from None


@dataclass(frozen=True, slots=True)
class Failed:
    """A transport failure. ``sent``: the request may have reached the server."""

    error: Exception
    sent: bool


@dataclass(frozen=True, slots=True)
class Send:
    endpoint: str


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


Action = Send | Sleep
Outcome = Reply | Failed


def failed_from(exc: Exception) -> Failed:
    """Classify an httpx exception: could the request have been sent?"""
    not_sent = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
    return Failed(exc, sent=not isinstance(exc, not_sent))


def reply_from(response: httpx.Response, endpoint: str) -> Reply:
    headers = {k.lower(): v for k, v in response.headers.items()}
    return Reply(response.status_code, headers, response.content, endpoint)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One logical operation: what to send and how to read the answer."""

    method: str
    path: str
    parse: Callable[[Reply], T]
    params: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    write: bool = False
    idempotency_key: str | None = None
    pinned: str | None = None  # ask this endpoint only (e.g. one node's own status)
    # The same operation in the pipelined protocol (docs/protocol.md): its op and key; None:
    # HTTP only (cluster management, status).
    op: str | None = None
    key: str | None = None

    def all_headers(self) -> dict[str, str]:
        out = dict(self.headers)
        if self.idempotency_key is not None:
            out[IDEMPOTENCY_HEADER] = self.idempotency_key
            out[CLIENT_HEADER] = IDENTITY.name
        return out


def backoff(policy: RetryPolicy, rng: random.Random, step: int) -> float:
    base = min(policy.backoff_max_s, policy.backoff_initial_s * float(2 ** min(step, 30)))
    return base * rng.uniform(0.5, 1.0)


def _retry_after(reply: Reply, cap_s: float) -> float | None:
    raw = reply.headers.get("retry-after")
    try:
        return min(cap_s, max(0.0, float(raw))) if raw is not None else None
    except ValueError:
        return None


def run_call(
    call: Call[T], endpoints: Endpoints, policy: RetryPolicy, rng: random.Random
) -> Generator[Action, Outcome | None, T]:
    """The retry policy of one call (see the module docstring). Drive it with ``send``."""
    maybe_applied = False
    failures_in_a_row = 0  # connection failures since the last answer, for immediate failover
    backoff_step = 0
    last: Outcome | None = None
    for attempt in range(policy.max_attempts):
        endpoint = call.pinned or endpoints.current()
        outcome = yield Send(endpoint)
        if outcome is None:
            raise RuntimeError("run_call expects an outcome after Send")
        last = outcome
        if isinstance(outcome, Reply):
            if 200 <= outcome.status < 300:
                endpoints.succeeded(endpoint)
                return call.parse(outcome)
            body = json_or_none(outcome.content)
            if outcome.status not in RETRYABLE_STATUSES:
                raise error_from_reply(
                    outcome.status,
                    body,
                    etag=outcome.headers.get("etag"),
                    endpoint=endpoint,
                    write=call.write,
                    maybe_applied=maybe_applied,
                )
            if call.write and (not isinstance(body, dict) or body.get("outcome") != "not_applied"):
                if call.idempotency_key is None:
                    raise error_from_reply(outcome.status, body, endpoint=endpoint, write=True)
                maybe_applied = True
            failures_in_a_row = 0
            endpoints.failed(endpoint)  # another node may have a leader (or be less busy)
            delay = _retry_after(outcome, policy.backoff_max_s)
        else:
            if outcome.sent and call.write:
                if call.idempotency_key is None:
                    raise UnknownOutcome(
                        f"{endpoint}: {type(outcome.error).__name__}: {outcome.error} (write without an idempotency key)",
                        outcome="unknown",
                        endpoint=endpoint,
                    )
                maybe_applied = True
            endpoints.failed(endpoint)
            failures_in_a_row += 1
            delay = None
            if not outcome.sent and failures_in_a_row < len(endpoints) and call.pinned is None:
                continue  # nothing was sent: try the next node at once
            failures_in_a_row = 0
        if attempt + 1 < policy.max_attempts:
            yield Sleep(delay if delay is not None else backoff(policy, rng, backoff_step))
            backoff_step += 1
    raise _exhausted(call, last, maybe_applied, policy)


def _exhausted(call: Call[Any], last: Outcome | None, maybe_applied: bool, policy: RetryPolicy) -> ClusterError:
    where = f"{call.method} {call.path}"
    if isinstance(last, Reply):
        return error_from_reply(
            last.status,
            json_or_none(last.content),
            etag=last.headers.get("etag"),
            endpoint=last.endpoint,
            write=call.write,
            maybe_applied=maybe_applied,
        )
    detail = f"{type(last.error).__name__}: {last.error}" if isinstance(last, Failed) else "no attempt made"
    message = f"{where}: no node answered after {policy.max_attempts} attempts (last: {detail})"
    if maybe_applied:
        return UnknownOutcome(message, outcome="unknown")
    return Unavailable(message, outcome="not_applied")


def json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None
