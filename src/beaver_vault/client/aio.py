"""The async client: :class:`AsyncClient` over ``httpx.AsyncClient``, for Trio and asyncio.

Theory of operation: the mirror image of ``sync.py``. Methods build the same
:class:`~beaver_vault.client._core.Call` objects and :meth:`AsyncClient._execute` drives the same
retry plan; only the I/O differs (``await http.request``, ``anyio.sleep``). httpx runs on anyio,
which detects the running event loop, so one class serves Trio and asyncio alike.
:class:`AsyncWatch` is an explicit state machine rather than an async generator, so that
closing it (``async with`` / :meth:`AsyncWatch.aclose`) releases the connection at once under
either event loop, with no generator left for the garbage collector to finalise.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio
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
from beaver_vault.client._pipe_pool import AsyncPipes, check_transport
from beaver_vault.client.errors import BadRequest
from beaver_vault.client.tls import PathLike, verify_for

T = TypeVar("T")

WATCH_PATH = f"{_core.API}/watch"
DRAIN_MAX_LINES = 100_000  # lines already buffered when a stream is closed (bounded by what httpx holds)


class AsyncClient:
    """The async twin of :class:`~beaver_vault.client.Client` (same methods, awaited).

    ``async with AsyncClient([...]) as client: await client.put("k", 1)``.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        http: httpx.AsyncClient | None = None,
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
            else httpx.AsyncClient(timeout=self.policy.httpx_timeout(), verify=verify)
        )
        # transport: "auto" (the pipelined protocol where a node advertises it, else HTTP),
        # "pipelined" (only it) or "http" (only HTTP). Single-key operations, listings and
        # transactions use it; watches and cluster management use HTTP (client/_pipe_pool.py).
        # Default: auto, unless an own ``http`` client is given (then that client is used: http).
        transport = transport if transport is not None else ("auto" if http is None else "http")
        self._pipes = None if check_transport(transport) == "http" else AsyncPipes(transport, self._http, verify, self.policy)

    async def aclose(self) -> None:
        if self._pipes is not None:
            await self._pipes.aclose()
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- the I/O loop -------------------------------------------------------------------------

    async def _execute(self, call: Call[T]) -> T:
        plan = _core.run_call(call, self.endpoints, self.policy, self._rng)
        outcome: Outcome | None = None
        while True:
            try:
                action = plan.send(outcome)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(action, Sleep):
                await anyio.sleep(action.seconds)
                outcome = None
            else:
                outcome = await self._send(action.endpoint, call)

    async def _send(self, endpoint: str, call: Call[Any]) -> Outcome:
        if call.op is not None and self._pipes is not None:
            outcome = await self._pipes.send(endpoint, call)
            if outcome is not None:
                return outcome
        try:
            response = await self._http.request(
                call.method,
                endpoint + call.path,
                params=call.params,
                content=call.body,
                headers={**call.all_headers(), **self._auth},
            )
        except httpx.TransportError as exc:
            return _core.failed_from(exc)
        return _core.reply_from(response, endpoint)

    # --- key-value (see Client for the semantics) ---------------------------------------------

    async def get(self, key: str) -> Any:
        return await self._execute(_core.get_call(key))

    async def get_meta(self, key: str) -> KeyValue:
        return await self._execute(_core.get_meta_call(key))

    async def put(
        self,
        key: str,
        value: Any,
        *,
        if_revision: int | None = None,
        if_absent: bool = False,
        ttl: int | float | str | None = None,
    ) -> PutResult:
        return await self._execute(_core.put_call(key, value, if_revision=if_revision, if_absent=if_absent, ttl=ttl))

    async def delete(self, key: str, *, if_revision: int | None = None) -> DeleteResult:
        return await self._execute(_core.delete_call(key, if_revision=if_revision))

    async def list(
        self, prefix: str = "", *, limit: int | None = None, after: str | None = None, keys_only: bool = False
    ) -> Page:
        return await self._execute(_core.list_call(prefix, limit=limit, after=after, keys_only=keys_only))

    def pages(self, prefix: str = "", *, page_size: int = 100, keys_only: bool = False) -> AsyncPager[Page]:
        """``async for page in client.pages("users/")``: every page (see ``Client.pages``)."""
        return AsyncPager(self, prefix, page_size, keys_only, lambda page: (page,))

    def items(self, prefix: str = "", *, page_size: int = 100) -> AsyncPager[KeyValue]:
        return AsyncPager(self, prefix, page_size, False, lambda page: page.items)

    def keys(self, prefix: str = "", *, page_size: int = 100) -> AsyncPager[str]:
        return AsyncPager(self, prefix, page_size, True, lambda page: page.keys)

    async def delete_prefix(self, prefix: str) -> DeletePrefixResult:
        return await self._execute(_core.delete_prefix_call(prefix))

    async def txn(
        self,
        compare: Sequence[Mapping[str, Any]],
        success: Sequence[Mapping[str, Any]] = (),
        failure: Sequence[Mapping[str, Any]] = (),
    ) -> TxnResult:
        return await self._execute(_core.txn_call(compare, success, failure))

    def watch(
        self, prefix: str = "", *, from_revision: int | None = None, idle_timeout_s: float | None = 60.0
    ) -> AsyncWatch:
        """``async with client.watch("users/") as events: async for event in events: ...``"""
        return AsyncWatch(self, prefix, from_revision, idle_timeout_s)

    # --- cluster ------------------------------------------------------------------------------

    async def status(self, endpoint: str | None = None) -> dict[str, Any]:
        return await self._execute(_core.status_call(endpoint))

    async def whoami(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._execute(auth_call("GET", "whoami"))
        return result

    async def auth(self, method: str, path: str, body: Any = None) -> Any:
        """Any ``/api/v1/auth/<path>`` call (see :meth:`Client.auth`)."""
        return await self._execute(auth_call(method, path, body))

    async def issue_token(self, ttl_s: int | None = None) -> str:
        answer = await self.auth("POST", "tokens", {} if ttl_s is None else {"ttl_s": ttl_s})
        return str(answer["token"])

    async def members(self) -> NodeList:
        return await self._execute(_core.members_call())

    async def join(
        self, node_id: str, raft_address: str, *, force: bool = False, update_address: bool = False
    ) -> NodeList:
        return await self._execute(_core.join_call(node_id, raft_address, force=force, update_address=update_address))

    async def remove(self, node_id: str, *, force: bool = False) -> NodeList:
        return await self._execute(_core.remove_call(node_id, force=force))

    async def transfer_leadership(self, node_id: str | None = None, *, force: bool = False) -> dict[str, Any]:
        return await self._execute(_core.transfer_leadership_call(node_id, force=force))

    async def what_if(self, kind: str, node_id: str | None, raft_address: str | None = None) -> dict[str, Any]:
        return await self._execute(_core.what_if_call(kind, node_id, raft_address))


class AsyncPager(Generic[T]):
    """An async iterator over a listing, page by page. A class rather than an async generator:
    leaving the loop early leaves nothing for the garbage collector to finalise."""

    def __init__(
        self,
        client: AsyncClient,
        prefix: str,
        page_size: int,
        keys_only: bool,
        unpack: Callable[[Page], Iterable[T]],
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._page_size = page_size
        self._keys_only = keys_only
        self._unpack = unpack
        self._buffer: deque[T] = deque()
        self._after: str | None = None
        self._done = False

    def __aiter__(self) -> AsyncPager[T]:
        return self

    async def __anext__(self) -> T:
        while not self._buffer:
            if self._done:
                raise StopAsyncIteration
            page = await self._client.list(
                self._prefix, limit=self._page_size, after=self._after, keys_only=self._keys_only
            )
            self._buffer.extend(self._unpack(page))
            self._after = page.next_after
            self._done = not page.more or page.next_after is None
        return self._buffer.popleft()


class AsyncWatch:
    """The async twin of :class:`~beaver_vault.client.sync.Watch` (same reconnection rules)."""

    def __init__(
        self, client: AsyncClient, prefix: str, from_revision: int | None, idle_timeout_s: float | None
    ) -> None:
        self._client = client
        self._session = WatchSession(prefix, WatchCursor(from_revision), client.endpoints, client.policy, client._rng)
        self._resolve_start = from_revision is None
        policy = client.policy
        self._timeout = httpx.Timeout(policy.timeout_s, connect=policy.connect_timeout_s, read=idle_timeout_s)
        self._pending: deque[WatchEvent] = deque()
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self._closed = False

    @property
    def last_revision(self) -> int | None:
        return self._session.cursor.last_revision

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __aenter__(self) -> AsyncWatch:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        await self._drop()

    async def __anext__(self) -> WatchEvent:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            if self._lines is None:
                await self._open()
                continue
            try:
                line = await self._lines.__anext__()
                self._pending.extend(self._session.feed(line))
            except StopAsyncIteration:
                await self._reconnect_after(None)
            except StreamEnded:
                await self._reconnect_after(None)
            except httpx.TransportError as exc:
                await self._reconnect_after(exc)
        return self._pending.popleft()

    async def _reconnect_after(self, error: BaseException | None) -> None:
        await self._drop()
        await anyio.sleep(self._session.broken(error))

    async def _drop(self) -> None:
        """Close the stream. httpx reads it through a chain of async generators, and one left
        suspended at a ``yield`` would be finalised by the garbage collector (a ResourceWarning
        under Trio). So the connection is closed first, then the chain is pulled until it fails
        (or ends) on the closed connection, which unwinds every generator in it. Shielded: this
        also runs when the watch is being cancelled."""
        response, lines = self._response, self._lines
        self._response, self._lines = None, None
        with anyio.CancelScope(shield=True):
            if response is not None:
                await response.aclose()
            if lines is not None:
                for _ in range(DRAIN_MAX_LINES):
                    try:
                        await lines.__anext__()
                    except (StopAsyncIteration, Exception):
                        break

    async def _open(self) -> None:
        if self._resolve_start:
            self._session.cursor.next_revision = await _start_revision(self._client, self._session.prefix)
            self._resolve_start = False
        endpoint, params = self._session.connect()
        http = self._client._http
        request = http.build_request(
            "GET", endpoint + WATCH_PATH, params=params, headers={"Accept": "text/event-stream", **self._client._auth}, timeout=self._timeout
        )
        try:
            response = await http.send(request, stream=True)
        except httpx.TransportError as exc:
            await anyio.sleep(self._session.broken(exc))
            return
        if response.status_code != 200:
            try:
                await response.aread()
            except httpx.TransportError as exc:
                await anyio.sleep(self._session.broken(exc))
                return
            finally:
                await response.aclose()
            if not self._session.opened(_core.reply_from(response, endpoint)):
                await anyio.sleep(self._session.broken(None))
            return
        self._session.opened(None)
        self._response = response
        self._lines = response.aiter_lines()


async def _start_revision(client: AsyncClient, prefix: str) -> int | None:
    try:
        return (await client.list(prefix, limit=1, keys_only=True)).revision + 1
    except BadRequest:
        return None
