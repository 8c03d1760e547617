"""The blocking client: :class:`Client` over ``httpx.Client``.

Theory of operation: every method builds a :class:`~beaver_vault.client._core.Call` and hands it
to :meth:`Client._execute`, which performs the actions the shared retry plan
(:func:`~beaver_vault.client._core.run_call`) asks for: send to this endpoint, or sleep. The
plan decides everything else. :class:`Watch` does the same for a Server-Sent Events stream with
:class:`~beaver_vault.client._core.WatchSession`. One ``Client`` may be shared by threads (httpx's
connection pool is thread-safe; the endpoint preference is a hint, so races on it are harmless).
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from beaver_vault.client import _core
from beaver_vault.client._auth import auth_call, auth_headers
from beaver_vault.client._core import (
    Call,
    DeletePrefixResult,
    DeleteResult,
    Endpoints,
    KeyValue,
    NodeList,
    Outcome,
    Page,
    PutResult,
    RetryPolicy,
    Sleep,
    StreamEnded,
    TxnResult,
    WatchCursor,
    WatchEvent,
    WatchSession,
)
from beaver_vault.client._pipe_pool import SyncPipes, check_transport
from beaver_vault.client.errors import BadRequest
from beaver_vault.client.tls import PathLike, verify_for

T = TypeVar("T")

WATCH_PATH = f"{_core.API}/watch"


class Client:
    """A blocking Beaver-Vault client that knows every node (``endpoints``) and fails over.

    ``Client("http://127.0.0.1:8000,http://127.0.0.1:8001")`` or a list of URLs. Use it as a
    context manager (or call :meth:`close`) to release its connections.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        http: httpx.Client | None = None,
        cacert: PathLike | None = None,
        cert: tuple[PathLike, PathLike] | None = None,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        transport: str | None = None,
    ) -> None:
        # Credentials (authentication on): HTTP Basic or a Bearer token on every request, watches too.
        self._auth = auth_headers(user, password, token)
        self.endpoints = Endpoints(endpoints)
        self.policy = policy if policy is not None else RetryPolicy()
        self._rng = rng if rng is not None else random.Random()
        self._own_http = http is None
        verify = verify_for(cacert, cert)
        self._http = (
            http
            if http is not None
            # cacert: the cluster's CA file (https); cert: (certificate, key) for client-certificate auth
            else httpx.Client(timeout=self.policy.httpx_timeout(), verify=verify)
        )
        # transport: "auto" (the pipelined protocol where a node advertises it, else HTTP),
        # "pipelined" (only it) or "http" (only HTTP). Single-key operations, listings and
        # transactions use it; watches and cluster management use HTTP (client/_pipe_pool.py).
        # Default: auto, unless an own ``http`` client is given (then that client is used: http).
        transport = transport if transport is not None else ("auto" if http is None else "http")
        self._pipes = None if check_transport(transport) == "http" else SyncPipes(transport, self._http, verify, self.policy)

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        if self._pipes is not None:
            self._pipes.close()
        if self._own_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- the I/O loop -------------------------------------------------------------------------

    def _execute(self, call: Call[T]) -> T:
        plan = _core.run_call(call, self.endpoints, self.policy, self._rng)
        outcome: Outcome | None = None
        while True:
            try:
                action = plan.send(outcome)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(action, Sleep):
                time.sleep(action.seconds)
                outcome = None
            else:
                outcome = self._send(action.endpoint, call)

    def _send(self, endpoint: str, call: Call[Any]) -> Outcome:
        if call.op is not None and self._pipes is not None:
            outcome = self._pipes.send(endpoint, call)
            if outcome is not None:
                return outcome
        try:
            response = self._http.request(
                call.method,
                endpoint + call.path,
                params=call.params,
                content=call.body,
                headers={**call.all_headers(), **self._auth},
            )
        except httpx.TransportError as exc:
            return _core.failed_from(exc)
        return _core.reply_from(response, endpoint)

    # --- key-value ----------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The JSON document stored at ``key`` (linearizable). Raises ``NotFound``."""
        return self._execute(_core.get_call(key))

    def get_meta(self, key: str) -> KeyValue:
        """The value with its create/mod revisions and version. Raises ``NotFound``."""
        return self._execute(_core.get_meta_call(key))

    def put(
        self,
        key: str,
        value: Any,
        *,
        if_revision: int | None = None,
        if_absent: bool = False,
        ttl: int | float | str | None = None,
    ) -> PutResult:
        """Store a JSON value. ``if_revision``: only if the key is at that mod revision;
        ``if_absent``: only if it does not exist (else ``PreconditionFailed``); ``ttl``: seconds
        (or a duration string such as ``"30s"``) after which the key disappears."""
        return self._execute(_core.put_call(key, value, if_revision=if_revision, if_absent=if_absent, ttl=ttl))

    def delete(self, key: str, *, if_revision: int | None = None) -> DeleteResult:
        """Delete ``key``; ``deleted`` is False if it did not exist."""
        return self._execute(_core.delete_call(key, if_revision=if_revision))

    def list(
        self, prefix: str = "", *, limit: int | None = None, after: str | None = None, keys_only: bool = False
    ) -> Page:
        """One page of keys under ``prefix`` in key order, starting after ``after`` (exclusive)."""
        return self._execute(_core.list_call(prefix, limit=limit, after=after, keys_only=keys_only))

    def pages(self, prefix: str = "", *, page_size: int = 100, keys_only: bool = False) -> Iterator[Page]:
        """Every page under ``prefix``. Each page is read at its own revision (``Page.revision``)."""
        after: str | None = None
        while True:
            page = self.list(prefix, limit=page_size, after=after, keys_only=keys_only)
            yield page
            if not page.more or page.next_after is None:
                return
            after = page.next_after

    def items(self, prefix: str = "", *, page_size: int = 100) -> Iterator[KeyValue]:
        """Every key under ``prefix`` with its value, page by page."""
        for page in self.pages(prefix, page_size=page_size):
            yield from page.items

    def keys(self, prefix: str = "", *, page_size: int = 100) -> Iterator[str]:
        """Every key under ``prefix``, page by page."""
        for page in self.pages(prefix, page_size=page_size, keys_only=True):
            yield from page.keys

    def delete_prefix(self, prefix: str) -> DeletePrefixResult:
        """Delete every key under ``prefix`` atomically (an empty prefix means the whole store)."""
        return self._execute(_core.delete_prefix_call(prefix))

    def txn(
        self,
        compare: Sequence[Mapping[str, Any]],
        success: Sequence[Mapping[str, Any]] = (),
        failure: Sequence[Mapping[str, Any]] = (),
    ) -> TxnResult:
        """An etcd-style transaction: if every ``compare`` holds, run ``success``, else ``failure``."""
        return self._execute(_core.txn_call(compare, success, failure))

    def watch(
        self, prefix: str = "", *, from_revision: int | None = None, idle_timeout_s: float | None = 60.0
    ) -> Watch:
        """Changes under ``prefix`` with revision >= ``from_revision`` (default: those after this
        call's first connection), as an iterator that reconnects by itself. See :class:`Watch`."""
        return Watch(self, prefix, from_revision, idle_timeout_s)

    # --- cluster ------------------------------------------------------------------------------

    def status(self, endpoint: str | None = None) -> dict[str, Any]:
        """A node's own status: of ``endpoint`` only if given, else of the first node that answers."""
        return self._execute(_core.status_call(endpoint))

    # --- authentication (/api/v1/auth) ----------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        """Who these credentials belong to: ``{user, roles, permissions, admin, via}``."""
        result: dict[str, Any] = self._execute(auth_call("GET", "whoami"))
        return result

    def auth(self, method: str, path: str, body: Any = None) -> Any:
        """Any ``/api/v1/auth/<path>`` call (users, roles, tokens, join-tokens): its JSON answer.
        E.g. ``auth("POST", "users", {"name": "alice", "password": "...", "roles": ["app"]})``."""
        return self._execute(auth_call(method, path, body))

    def issue_token(self, ttl_s: int | None = None) -> str:
        """A new bearer token for the caller (shown once)."""
        answer = self.auth("POST", "tokens", {} if ttl_s is None else {"ttl_s": ttl_s})
        return str(answer["token"])

    def members(self) -> NodeList:
        """The cluster's nodes (``/api/v1/raft/nodes``)."""
        return self._execute(_core.members_call())

    def join(self, node_id: str, raft_address: str, *, force: bool = False, update_address: bool = False) -> NodeList:
        """Add a node (answers once it is a voter) and return the members; ``force`` even if
        the what-if check says the quorum would be lost; ``update_address`` re-points an
        existing member to ``raft_address`` (refused 409 without it)."""
        return self._execute(_core.join_call(node_id, raft_address, force=force, update_address=update_address))

    def remove(self, node_id: str, *, force: bool = False) -> NodeList:
        """Remove a node; ``force`` even if that loses the quorum."""
        return self._execute(_core.remove_call(node_id, force=force))

    def transfer_leadership(self, node_id: str | None = None, *, force: bool = False) -> dict[str, Any]:
        """Ask the leader to hand over (to ``node_id``, or the most up-to-date follower)."""
        return self._execute(_core.transfer_leadership_call(node_id, force=force))

    def what_if(self, kind: str, node_id: str | None, raft_address: str | None = None) -> dict[str, Any]:
        """What a ``join``/``remove``/``transfer`` would do (the dry-run analysis); changes nothing."""
        return self._execute(_core.what_if_call(kind, node_id, raft_address))


class Watch:
    """An iterator of :class:`WatchEvent` over Server-Sent Events that survives node failures.

    When the stream breaks (the node died, the server cut a slow watcher off), it reconnects,
    to the next endpoint if that node failed, asking again from the last revision seen; the
    cursor drops what is replayed, so every change comes out once, in revision order. Without
    ``from_revision`` it first reads the store's revision R with a one-key listing and watches
    from R + 1, so even a reconnection before the first event leaves no gap. ``idle_timeout_s``
    reconnects when nothing (not even a keep-alive) arrives for that long. Close it (or use it as
    a context manager) to drop the connection.
    """

    def __init__(self, client: Client, prefix: str, from_revision: int | None, idle_timeout_s: float | None) -> None:
        self._client = client
        self._session = WatchSession(prefix, WatchCursor(from_revision), client.endpoints, client.policy, client._rng)
        self._resolve_start = from_revision is None
        policy = client.policy
        self._timeout = httpx.Timeout(policy.timeout_s, connect=policy.connect_timeout_s, read=idle_timeout_s)
        self._pending: deque[WatchEvent] = deque()
        self._response: httpx.Response | None = None
        self._lines: Iterator[str] | None = None
        self._closed = False

    @property
    def last_revision(self) -> int | None:
        """The revision of the last event handed out (None before the first)."""
        return self._session.cursor.last_revision

    def __iter__(self) -> Watch:
        return self

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._drop()

    def __next__(self) -> WatchEvent:
        while not self._pending:
            if self._closed:
                raise StopIteration
            if self._lines is None:
                self._open()
                continue
            try:
                line = next(self._lines)
                self._pending.extend(self._session.feed(line))
            except StopIteration:
                self._reconnect_after(None)
            except StreamEnded:
                self._reconnect_after(None)
            except httpx.TransportError as exc:
                self._reconnect_after(exc)
        return self._pending.popleft()

    def _reconnect_after(self, error: BaseException | None) -> None:
        self._drop()
        time.sleep(self._session.broken(error))

    def _drop(self) -> None:
        response, self._response, self._lines = self._response, None, None
        if response is not None:
            response.close()

    def _open(self) -> None:
        if self._resolve_start:
            self._session.cursor.next_revision = _start_revision(self._client, self._session.prefix)
            self._resolve_start = False
        endpoint, params = self._session.connect()
        http = self._client._http
        request = http.build_request(
            "GET", endpoint + WATCH_PATH, params=params, headers={"Accept": "text/event-stream", **self._client._auth}, timeout=self._timeout
        )
        try:
            response = http.send(request, stream=True)
        except httpx.TransportError as exc:
            time.sleep(self._session.broken(exc))
            return
        if response.status_code != 200:
            try:
                response.read()
            except httpx.TransportError as exc:
                time.sleep(self._session.broken(exc))
                return
            finally:
                response.close()
            if not self._session.opened(_core.reply_from(response, endpoint)):
                time.sleep(self._session.broken(None))
            return
        self._session.opened(None)
        self._response = response
        self._lines = response.iter_lines()


def _start_revision(client: Client, prefix: str) -> int | None:
    try:
        return client.list(prefix, limit=1, keys_only=True).revision + 1
    except BadRequest:
        return None  # a server without listings: start wherever the server's default puts it
