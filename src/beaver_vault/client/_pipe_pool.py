"""The clients' pipelined connections: one per endpoint, for ``AsyncClient`` (``AsyncPipes``)
and ``Client`` (``SyncPipes``); the connection itself is ``client/_pipelined.py``.

Theory of operation: a client made with ``transport="pipelined"`` or ``"auto"`` asks each
endpoint once (again after ``REDISCOVER_S``) for the ``pipelined_address`` its ``GET
/api/v1/status`` advertises and keeps one connection to it. A call that has a pipelined form
(``Call.op``) goes over that connection; with ``auto``, an endpoint that advertises no port, or
whose port could not be reached (for ``RECONNECT_S``), is served over HTTP instead: ``send``
answers None. With ``pipelined`` the same cases are a failed attempt, which the retry policy
handles like any other.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any

import anyio
import httpx

from beaver_vault.client._pipelined import (
    STATUS_PATH,
    AsyncPipe,
    PipeBroken,
    PipeRefused,
    SyncPipe,
    advertised,
    answer_headers,
    frame_header,
)
from beaver_vault.client._retry import Call, Failed, Outcome, Reply, RetryPolicy

TRANSPORTS = ("auto", "http", "pipelined")
REDISCOVER_S = 30.0  # auto: an endpoint without a pipelined port is asked again after this long
RECONNECT_S = 5.0  # auto: after a failed connection, HTTP is used this long before trying again


def check_transport(transport: str) -> str:
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}; got {transport!r}")
    return transport


def call_frame(call: Call[Any]) -> dict[str, Any]:
    if call.op is None:
        raise ValueError("this call has no pipelined form")
    return frame_header(call.op, call.key, call.params, call.all_headers())


def reply_of(header: Mapping[str, Any], body: bytes | None, endpoint: str) -> Reply:
    status = header.get("status")
    return Reply(status if isinstance(status, int) else 502, answer_headers(header), body or b"", endpoint)


def tls_context(endpoint: str, verify: ssl.SSLContext | bool) -> ssl.SSLContext | None:
    if not endpoint.startswith("https://"):
        return None
    return verify if isinstance(verify, ssl.SSLContext) else ssl.create_default_context()


class _Endpoint:
    __slots__ = ("address", "known_at", "retry_at", "pipe", "lock")

    def __init__(self, lock: Any) -> None:
        self.address: str | None = None
        self.known_at = -1e18  # when ``address`` was learnt (monotonic)
        self.retry_at = 0.0  # auto: no pipelined attempt before this (monotonic)
        self.pipe: Any = None
        self.lock = lock


class AsyncPipes:
    """The async client's pipelined connections: one per endpoint, found through the endpoint's
    ``GET /api/v1/status`` (``pipelined_address``). ``send`` answers None when the call should
    go over HTTP instead (``auto``: no pipelined port advertised, or it could not be reached)."""

    def __init__(self, mode: str, http: Any, verify: ssl.SSLContext | bool, policy: RetryPolicy) -> None:
        self.mode = check_transport(mode)
        self.http = http
        self.verify = verify
        self.policy = policy
        self._endpoints: dict[str, _Endpoint] = {}

    async def aclose(self) -> None:
        for ep in self._endpoints.values():
            if ep.pipe is not None:
                await ep.pipe.aclose()
                ep.pipe = None

    async def _pipe(self, endpoint: str) -> AsyncPipe | Failed | None:
        ep = self._endpoints.get(endpoint)
        if ep is None:
            ep = self._endpoints[endpoint] = _Endpoint(anyio.Lock())
        pipe: AsyncPipe | None = ep.pipe
        if pipe is not None and pipe.broken is None:
            return pipe
        async with ep.lock:
            if ep.pipe is not None and ep.pipe.broken is None:
                got: AsyncPipe = ep.pipe
                return got
            if ep.pipe is not None:  # broken: release it before opening another
                old, ep.pipe = ep.pipe, None
                await old.aclose()
            now = time.monotonic()
            if self.mode == "auto" and now < ep.retry_at:
                return None
            try:
                if ep.address is None or now - ep.known_at > REDISCOVER_S:
                    answer = await self.http.get(endpoint + STATUS_PATH)
                    ep.address = advertised(answer.json()) if answer.status_code == 200 else None
                    ep.known_at = now
                if ep.address is None:
                    ep.retry_at = now + REDISCOVER_S
                    if self.mode == "auto":
                        return None
                    return Failed(PipeRefused(f"{endpoint} offers no pipelined port"), sent=False)
                ep.pipe = await AsyncPipe.connect(
                    ep.address,
                    ssl_context=tls_context(endpoint, self.verify),
                    connect_timeout_s=self.policy.connect_timeout_s,
                )
                ep.pipe.send_timeout_s = self.policy.timeout_s
                got = ep.pipe
                return got
            except (OSError, ValueError, PipeRefused, TimeoutError, httpx.HTTPError) as exc:
                ep.retry_at = now + RECONNECT_S
                ep.known_at = -1e18  # ask again: the node may have restarted on another port
                if self.mode == "auto":
                    return None
                return Failed(exc, sent=False)

    async def send(self, endpoint: str, call: Call[Any]) -> Outcome | None:
        got = await self._pipe(endpoint)
        if got is None or isinstance(got, Failed):
            return got
        with anyio.move_on_after(self.policy.timeout_s):
            try:
                header, body = await got.request(call_frame(call), call.body)
            except PipeBroken as exc:
                return Failed(exc, sent=exc.sent)
            return reply_of(header, body, endpoint)
        return Failed(TimeoutError(f"no answer within {self.policy.timeout_s:g} s"), sent=True)


class SyncPipes:
    """The sync client's twin of :class:`AsyncPipes` (blocking sockets)."""

    def __init__(self, mode: str, http: Any, verify: ssl.SSLContext | bool, policy: RetryPolicy) -> None:
        self.mode = check_transport(mode)
        self.http = http
        self.verify = verify
        self.policy = policy
        self._endpoints: dict[str, _Endpoint] = {}

    def close(self) -> None:
        for ep in self._endpoints.values():
            if ep.pipe is not None:
                ep.pipe.close()
                ep.pipe = None

    def _pipe(self, endpoint: str) -> SyncPipe | Failed | None:
        ep = self._endpoints.get(endpoint)
        if ep is None:
            ep = self._endpoints[endpoint] = _Endpoint(threading.Lock())
        with ep.lock:
            if ep.pipe is not None and ep.pipe.broken is None:
                got: SyncPipe = ep.pipe
                return got
            if ep.pipe is not None:  # broken: release it before opening another
                ep.pipe.close()
                ep.pipe = None
            now = time.monotonic()
            if self.mode == "auto" and now < ep.retry_at:
                return None
            try:
                if ep.address is None or now - ep.known_at > REDISCOVER_S:
                    answer = self.http.get(endpoint + STATUS_PATH)
                    ep.address = advertised(answer.json()) if answer.status_code == 200 else None
                    ep.known_at = now
                if ep.address is None:
                    ep.retry_at = now + REDISCOVER_S
                    if self.mode == "auto":
                        return None
                    return Failed(PipeRefused(f"{endpoint} offers no pipelined port"), sent=False)
                ep.pipe = SyncPipe.connect(
                    ep.address,
                    ssl_context=tls_context(endpoint, self.verify),
                    connect_timeout_s=self.policy.connect_timeout_s,
                    timeout_s=self.policy.timeout_s,
                )
                got = ep.pipe
                return got
            except (OSError, ValueError, PipeRefused, httpx.HTTPError) as exc:
                ep.retry_at = now + RECONNECT_S
                ep.known_at = -1e18
                if self.mode == "auto":
                    return None
                return Failed(exc, sent=False)

    def send(self, endpoint: str, call: Call[Any]) -> Outcome | None:
        got = self._pipe(endpoint)
        if got is None or isinstance(got, Failed):
            return got
        if self.mode == "auto" and got.busy():
            return None  # another thread is using the connection: HTTP (pooled) instead of waiting
        try:
            header, body = got.request(call_frame(call), call.body)
        except PipeBroken as exc:
            return Failed(exc, sent=exc.sent)
        return reply_of(header, body, endpoint)
