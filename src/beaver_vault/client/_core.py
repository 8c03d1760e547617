"""The sans-I/O core shared by :class:`~beaver_vault.client.Client` and
:class:`~beaver_vault.client.AsyncClient`.

Theory of operation
-------------------
Nothing here touches a socket, a clock or a sleep. An operation is described by a
:class:`Call`: the HTTP method, path, query, body and headers to send, whether it is a write,
and a ``parse`` function turning a 2xx :class:`Reply` into the typed result. The retry policy
is one generator, :func:`run_call`, that *yields actions* (:class:`Send` to one endpoint,
:class:`Sleep` for a backoff) and *receives outcomes* (a :class:`Reply`, or a :class:`Failed`
transport error). The sync and the async client each own a tiny loop that performs those
actions with ``httpx.Client`` / ``httpx.AsyncClient`` and ``time.sleep`` / ``anyio.sleep``;
every decision (which node, whether to retry, how long to wait, which error to raise) is made
here, once.

Retry rules (bounded by :attr:`RetryPolicy.max_attempts`):

* The connection could not be opened (refused, connect timeout): nothing was sent, so any
  call moves on to the next endpoint at once; only after every endpoint failed in a row does
  it back off.
* The request may have been sent (read timeout, connection reset, ...): a read is retried; a
  write is retried only because it carries an ``Idempotency-Key`` (every write built here
  does, one fresh key per call, reused by every attempt of that call), so the cluster applies
  it at most once. If the budget runs out, the call raises ``UnknownOutcome``.
* 503/504/408/429 answers are retried after a backoff (``Retry-After`` honoured, capped).
  An ``outcome: unknown`` answer marks the call "maybe applied": should the budget run out,
  even a later "not applied" answer is reported as ``UnknownOutcome``.
* Any other answer is final: 2xx is parsed, 4xx becomes its typed error at once.

Watches use :class:`WatchSession`: it picks the endpoint and ``from_revision`` for each
(re)connection, decodes Server-Sent Events line by line (:class:`SSEDecoder`) and filters out
what a reconnection replays (:class:`WatchCursor`), so the caller sees every change once, in
order, across node failures.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from beaver_vault.client.errors import (
    ClusterError,
    Unavailable,
    UnknownOutcome,
    WatchCompacted,
    error_from_reply,
)

T = TypeVar("T")
NodeList = list[dict[str, Any]]

API = "/api/v1"
IDEMPOTENCY_HEADER = "Idempotency-Key"
JSON_HEADERS: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})


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

    def all_headers(self) -> dict[str, str]:
        out = dict(self.headers)
        if self.idempotency_key is not None:
            out[IDEMPOTENCY_HEADER] = self.idempotency_key
        return out


def _backoff(policy: RetryPolicy, rng: random.Random, step: int) -> float:
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
            body = _json_or_none(outcome.content)
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
            yield Sleep(delay if delay is not None else _backoff(policy, rng, backoff_step))
            backoff_step += 1
    raise _exhausted(call, last, maybe_applied, policy)


def _exhausted(call: Call[Any], last: Outcome | None, maybe_applied: bool, policy: RetryPolicy) -> ClusterError:
    where = f"{call.method} {call.path}"
    if isinstance(last, Reply):
        return error_from_reply(
            last.status,
            _json_or_none(last.content),
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


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyValue:
    """A key with its value and revisions (``get_meta``, listings)."""

    key: str
    value: Any
    create_revision: int
    mod_revision: int
    version: int


@dataclass(frozen=True, slots=True)
class PutResult:
    key: str
    revision: int
    created: bool


@dataclass(frozen=True, slots=True)
class DeleteResult:
    key: str
    deleted: bool
    revision: int | None


@dataclass(frozen=True, slots=True)
class DeletePrefixResult:
    prefix: str
    deleted: int
    revision: int | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing. ``items`` (or ``keys`` with ``keys_only``) in key order; ``count``
    is the total under the prefix; ``revision`` the store revision the page was read at;
    ``next_after`` the ``after`` of the next page when ``more``."""

    items: tuple[KeyValue, ...]
    keys: tuple[str, ...]
    count: int
    revision: int
    more: bool
    next_after: str | None


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    results: list[Any]
    revision: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change: ``type`` is ``"put"`` or ``"delete"`` (``value`` is ``None`` for a delete)."""

    type: str
    key: str
    value: Any
    revision: int


def _obj(reply: Reply) -> dict[str, Any]:
    body = reply.json()
    if not isinstance(body, dict):
        raise ClusterError(f"{reply.endpoint}: expected a JSON object, got {body!r:.200}", endpoint=reply.endpoint)
    return body


def _int(body: Mapping[str, Any], *names: str, default: int = 0) -> int:
    for name in names:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return default


def _opt_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def key_value_from(item: Mapping[str, Any]) -> KeyValue:
    return KeyValue(
        key=str(item.get("key", "")),
        value=item.get("value"),
        create_revision=_int(item, "create_revision"),
        mod_revision=_int(item, "mod_revision", "revision"),
        version=_int(item, "version"),
    )


# --- call builders ------------------------------------------------------------------------------


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


def kv_path(key: str) -> str:
    if not key:
        raise ValueError("a key must not be empty")
    return f"{API}/kv/{quote(key, safe='/')}"


def encode_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def ttl_param(ttl: int | float | str) -> str:
    """``30`` -> ``"30s"``; a string (``"500ms"``, ``"2m"``) is passed as is."""
    if isinstance(ttl, str):
        return ttl
    if isinstance(ttl, bool) or ttl <= 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    return f"{int(ttl)}s" if float(ttl).is_integer() else f"{round(ttl * 1000)}ms"


def get_call(key: str) -> Call[Any]:
    return Call("GET", kv_path(key), lambda r: r.json())


def get_meta_call(key: str) -> Call[KeyValue]:
    return Call("GET", kv_path(key), lambda r: key_value_from(_obj(r)), params=(("meta", "true"),))


def put_call(
    key: str,
    value: Any,
    *,
    if_revision: int | None = None,
    if_absent: bool = False,
    ttl: int | float | str | None = None,
) -> Call[PutResult]:
    if if_revision is not None and if_absent:
        raise ValueError("if_revision and if_absent exclude each other")
    headers = list(JSON_HEADERS)
    if if_revision is not None:
        headers.append(("If-Match", f'"{int(if_revision)}"'))
    if if_absent:
        headers.append(("If-None-Match", "*"))
    params = (("ttl", ttl_param(ttl)),) if ttl is not None else ()

    def parse(r: Reply) -> PutResult:
        body = _obj(r)
        return PutResult(str(body.get("key", key)), _int(body, "revision", "mod_revision"), bool(body.get("created")))

    return Call(
        "PUT",
        kv_path(key),
        parse,
        params=params,
        body=encode_json(value),
        headers=tuple(headers),
        write=True,
        idempotency_key=new_idempotency_key(),
    )


def delete_call(key: str, *, if_revision: int | None = None) -> Call[DeleteResult]:
    headers = (("If-Match", f'"{int(if_revision)}"'),) if if_revision is not None else ()

    def parse(r: Reply) -> DeleteResult:
        body = _obj(r)
        return DeleteResult(str(body.get("key", key)), bool(body.get("deleted")), _opt_int(body, "revision"))

    return Call("DELETE", kv_path(key), parse, headers=headers, write=True, idempotency_key=new_idempotency_key())


def list_call(
    prefix: str = "", *, limit: int | None = None, after: str | None = None, keys_only: bool = False
) -> Call[Page]:
    params: list[tuple[str, str]] = [("prefix", prefix)]
    if limit is not None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        params.append(("limit", str(limit)))
    if after is not None:
        params.append(("after", after))
    if keys_only:
        params.append(("keys_only", "true"))

    def parse(r: Reply) -> Page:
        body = _obj(r)
        raw_items = body.get("items") or []
        raw_keys = body.get("keys")
        items = tuple(key_value_from(i) for i in raw_items if isinstance(i, dict))
        if isinstance(raw_keys, list):
            keys = tuple(str(k) for k in raw_keys)
        else:
            keys = tuple(i.key for i in items)
        next_after = body.get("next_after")
        return Page(
            items=items,
            keys=keys,
            count=_int(body, "count", default=len(keys)),
            revision=_int(body, "revision"),
            more=bool(body.get("more")),
            next_after=next_after if isinstance(next_after, str) else (keys[-1] if keys and body.get("more") else None),
        )

    return Call("GET", f"{API}/kv", parse, params=tuple(params))


def delete_prefix_call(prefix: str) -> Call[DeletePrefixResult]:
    def parse(r: Reply) -> DeletePrefixResult:
        body = _obj(r)
        return DeletePrefixResult(prefix, _int(body, "deleted", "count"), _opt_int(body, "revision"))

    return Call(
        "DELETE",
        f"{API}/kv",
        parse,
        params=(("prefix", prefix), ("confirm", "true")),
        write=True,
        idempotency_key=new_idempotency_key(),
    )


def txn_call(
    compare: Sequence[Mapping[str, Any]], success: Sequence[Mapping[str, Any]], failure: Sequence[Mapping[str, Any]]
) -> Call[TxnResult]:
    doc = {"compare": [dict(c) for c in compare], "success": [dict(o) for o in success]}
    doc["failure"] = [dict(o) for o in failure]

    def parse(r: Reply) -> TxnResult:
        body = _obj(r)
        results = body.get("results")
        return TxnResult(
            bool(body.get("succeeded")), list(results) if isinstance(results, list) else [], _int(body, "revision")
        )

    return Call(
        "POST",
        f"{API}/txn",
        parse,
        body=encode_json(doc),
        headers=JSON_HEADERS,
        write=True,
        idempotency_key=new_idempotency_key(),
    )


def status_call(endpoint: str | None = None) -> Call[dict[str, Any]]:
    return Call("GET", f"{API}/status", _obj, pinned=normalize_endpoints([endpoint])[0] if endpoint else None)


def _node_list(r: Reply) -> list[dict[str, Any]]:
    body = r.json()
    if isinstance(body, dict):
        for name in ("nodes", "members"):
            if isinstance(body.get(name), list):
                body = body[name]
                break
    if not isinstance(body, list):
        raise ClusterError(f"{r.endpoint}: expected a list of nodes, got {body!r:.200}", endpoint=r.endpoint)
    return [n for n in body if isinstance(n, dict)]


def members_call() -> Call[list[dict[str, Any]]]:
    return Call("GET", f"{API}/raft/nodes", _node_list)


def join_call(node_id: str, raft_address: str) -> Call[list[dict[str, Any]]]:
    return Call(
        "POST",
        f"{API}/raft/join",
        _node_list,
        body=encode_json({"NodeID": node_id, "RaftAddress": raft_address}),
        headers=JSON_HEADERS,
        write=True,
        idempotency_key=new_idempotency_key(),
    )


def remove_call(node_id: str, *, force: bool = False) -> Call[list[dict[str, Any]]]:
    return Call(
        "POST",
        f"{API}/raft/remove",
        _node_list,
        body=encode_json({"NodeID": node_id, "Force": force}),
        headers=JSON_HEADERS,
        write=True,
        idempotency_key=new_idempotency_key(),
    )


def transfer_leadership_call(node_id: str | None = None) -> Call[dict[str, Any]]:
    body: dict[str, Any] = {} if node_id is None else {"NodeID": node_id}
    return Call(
        "POST",
        f"{API}/raft/transfer-leadership",
        _obj,
        body=encode_json(body),
        headers=JSON_HEADERS,
        write=True,
        idempotency_key=new_idempotency_key(),
    )


# --- watches --------------------------------------------------------------------------------------


@dataclass(slots=True)
class SSEMessage:
    event: str = "message"
    data: str = ""
    id: str | None = None


class SSEDecoder:
    """Server-Sent Events, one line at a time (the line without its end-of-line characters).
    A blank line dispatches the message being built; ``:`` lines are comments (keep-alives)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> SSEMessage | None:
        if line == "":
            if not self._data and not self._event:
                return None
            message = SSEMessage(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._id = "", [], None
            return message
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None


@dataclass(slots=True)
class WatchCursor:
    """Where a watch stands, so a reconnection neither skips nor repeats a change.

    Several events can share one revision (a transaction, a prefix delete), so the position is
    (last revision seen, how many of its events were seen). A reconnection asks again from that
    revision (inclusive) and drops the events of it already delivered, plus anything older.
    """

    next_revision: int | None  # where to start when nothing was seen yet (None: server default)
    last_revision: int | None = None
    seen_at_last: int = 0
    _skip: int = 0

    def from_revision(self) -> int | None:
        return self.last_revision if self.last_revision is not None else self.next_revision

    def reconnected(self) -> None:
        self._skip = self.seen_at_last

    def accept(self, event: WatchEvent) -> bool:
        if self.last_revision is None or event.revision > self.last_revision:
            self.last_revision, self.seen_at_last, self._skip = event.revision, 1, 0
            return True
        if event.revision < self.last_revision:
            return False
        if self._skip > 0:
            self._skip -= 1
            return False
        self.seen_at_last += 1
        return True


@dataclass(slots=True)
class WatchSession:
    """The decisions of a watch; the clients perform its I/O.

    Loop: ``connect()`` gives (endpoint, query); the client opens the stream and reports
    ``opened(reply_or_none)``; it feeds each line to ``feed`` and hands out the events returned;
    when the stream ends or breaks it calls ``broken(error)``, sleeps the seconds returned and
    connects again. ``broken`` raises ``Unavailable`` after ``watch_max_reconnects`` failed
    connections in a row; ``feed``/``opened`` raise ``WatchCompacted`` or another final error.
    """

    prefix: str
    cursor: WatchCursor
    endpoints: Endpoints
    policy: RetryPolicy
    rng: random.Random
    decoder: SSEDecoder = field(default_factory=SSEDecoder)
    failures: int = 0
    backoff_step: int = 0
    last_error: str | None = None
    _endpoint: str = ""

    def connect(self) -> tuple[str, list[tuple[str, str | int | float | bool | None]]]:
        self._endpoint = self.endpoints.current()
        self.decoder = SSEDecoder()
        self.cursor.reconnected()
        params: list[tuple[str, str | int | float | bool | None]] = [("prefix", self.prefix)]
        start = self.cursor.from_revision()
        if start is not None:
            params.append(("from_revision", str(start)))
        return self._endpoint, params

    def opened(self, reply: Reply | None) -> bool:
        """``reply`` is None for a 200 stream; else the full error answer. True: read the stream."""
        if reply is None:
            self.endpoints.succeeded(self._endpoint)
            self.failures = 0
            return True
        if reply.status not in RETRYABLE_STATUSES:
            raise error_from_reply(reply.status, _json_or_none(reply.content), endpoint=reply.endpoint, write=False)
        self.last_error = f"HTTP {reply.status} from {reply.endpoint}"
        self.endpoints.failed(self._endpoint)
        self.failures += 1
        return False

    def feed(self, line: str) -> list[WatchEvent]:
        message = self.decoder.feed(line)
        if message is None or not message.data:
            return []
        try:
            data = json.loads(message.data)
        except ValueError:
            raise ClusterError(f"{self._endpoint}: watch event is not JSON: {message.data[:200]!r}") from None
        if not isinstance(data, dict):
            return []
        if message.event == "error" or data.get("type") == "error" or ("error" in data and "key" not in data):
            return self._server_error(data)
        try:
            event = WatchEvent(str(data["type"]), str(data["key"]), data.get("value"), int(data["revision"]))
        except (KeyError, TypeError, ValueError):
            raise ClusterError(f"{self._endpoint}: malformed watch event {data!r:.200}") from None
        if not self.cursor.accept(event):
            return []
        self.backoff_step = 0
        return [event]

    def _server_error(self, data: Mapping[str, Any]) -> list[WatchEvent]:
        text = str(data.get("error") or data.get("reason") or data)
        lowered = text.lower()
        if data.get("code") in ("compacted", 410) or "re-list" in lowered or "compact" in lowered or "older" in lowered:
            raise WatchCompacted(text, status=410, body=dict(data), endpoint=self._endpoint)
        # Anything else (a slow watcher cut off, a node shutting down): resume from the cursor.
        self.last_error = text
        raise _StreamEnded(text)

    def broken(self, error: BaseException | None) -> float:
        """The stream ended (``error`` None: closed by the server). Seconds to wait before reconnecting."""
        if error is not None:
            self.last_error = f"{type(error).__name__}: {error}"
            self.endpoints.failed(self._endpoint)
            self.failures += 1
        if self.failures >= self.policy.watch_max_reconnects:
            raise Unavailable(
                f"watch {self.prefix!r}: {self.failures} reconnections failed in a row (last: {self.last_error})",
                outcome="not_applied",
            )
        delay = _backoff(self.policy, self.rng, self.backoff_step)
        self.backoff_step += 1
        return delay


class _StreamEnded(Exception):
    """Raised by ``WatchSession.feed`` when the server ended the stream with a resumable reason."""


StreamEnded = _StreamEnded
