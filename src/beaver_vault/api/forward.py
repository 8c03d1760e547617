"""Forwarding requests from a follower to the leader.

Theory of operation: any node accepts any request. When the runtime answers
``NotLeader(leader_id, leader_http)`` with a known leader HTTP address, the API replays the
same request (method, raw path, query string, body, Content-Type) against the leader with
one long-lived ``httpx.AsyncClient`` per app (keep-alive; opened in ``before_serving``,
closed in ``after_serving``) and returns the leader's status, body and the headers that
matter (Content-Type, ETag, consistency and applied index, Idempotency-Replayed,
Retry-After). The request headers that change what the leader does (conditions, idempotency
key and client) travel with it.

A forwarded request carries its deadline (``deadline.py``: the follower's wall clock at
sending and the leader's budget, shorter than ``timeout_s``) and every forwarding connection
closes abortively (``SO_LINGER`` 0), so a write the follower answered ``unknown`` for is
neither started late by the leader nor delivered late by TCP retransmission.

The path travels exactly: the raw bytes the client sent (``keys.raw_path_of``), never the
server's decoded path, with only ``.`` and ``..`` segments spelled ``%2E`` (httpx, like every
URL library, removes dot segments; the leader's one decoding rule, ``keys.py``, reads ``%2E``
as ``.``, so the key is the same). If the URL httpx would send does not decode to the same
path, the request is refused (400) rather than sent altered.

Loops are impossible: the forwarded request carries ``X-Beaver-Vault-Forwarded-By: <node
id>`` and a request carrying it is never forwarded again (the app answers 503
``not_applied`` "leader changed, retry").

What a failure means depends on whether the request may have reached the leader:

* the connection could not be made (connect error/timeout, pool timeout): the request was
  never sent, so the operation certainly did not happen -> 503 ``not_applied``;
* anything after the request may have been sent (read timeout, connection reset, the
  leader closing the connection without a complete answer): for writes the outcome is
  ``unknown`` (504 on timeout, else 503) and is never reported as a plain failure; reads
  change nothing, so a GET is a 503 ``not_applied``.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time

import httpx
from quart import Response

from beaver_vault.api import deadline
from beaver_vault.api.errors import json_error
from beaver_vault.api.keys import exact_forward_path, percent_decode
from beaver_vault.api.validation import BadInput

FORWARDED_BY_HEADER = "X-Beaver-Vault-Forwarded-By"
FORWARDED_TO_HEADER = "X-Beaver-Vault-Forwarded-To"

# Request headers that change what the leader does, passed on with the forwarded request.
FORWARDED_REQUEST_HEADERS = (
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "X-Beaver-Vault-Client",
    "Accept",
    "Authorization",  # the leader judges the original caller (auth_guard.py)
    "X-Beaver-Vault-Join-Token",  # a join's credential, judged by the leader too
)

# Response headers of the leader that are passed through to the client.
PASSTHROUGH_HEADERS = (
    "Content-Type",
    "ETag",
    "X-Beaver-Vault-Consistency",
    "X-Beaver-Vault-Applied-Index",
    "Idempotency-Replayed",
    "Retry-After",
    "Allow",
)

# Every forwarding connection closes abortively (RST, unsent bytes discarded): a request the
# follower gave up on must not be delivered later by TCP retransmission (deadline.py).
ABORTIVE_CLOSE = (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

# Failures that happen before any byte of the request could have been sent.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class Forwarder:
    """Proxies requests to the leader; one instance (and one HTTP client) per app."""

    def __init__(
        self, *, node_id: str, timeout_s: float, max_connections: int = 64, verify: ssl.SSLContext | None = None
    ) -> None:
        self.node_id = node_id
        self._verify: ssl.SSLContext | bool = True if verify is None else verify  # https: the cluster's CA
        self.timeout_s = timeout_s
        self._max_connections = max_connections
        # Set before the app starts serving to route forwarded requests elsewhere than the
        # network (tests connect in-process apps this way); None: real HTTP connections.
        self.transport: httpx.AsyncBaseTransport | None = None
        self._client: httpx.AsyncClient | None = None
        self.forwarded = 0  # requests proxied (statistics)
        self.failed = 0  # proxied requests that got no complete answer

    async def start(self) -> None:
        if self._client is None:
            limits = httpx.Limits(
                max_connections=self._max_connections,
                max_keepalive_connections=self._max_connections,
            )
            transport = self.transport
            if transport is None:
                # verify: the cluster's CA (and our certificate) for https leaders
                transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=[ABORTIVE_CLOSE], verify=self._verify)
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s),
                limits=limits,
                follow_redirects=False,
                transport=transport,
                trust_env=False,  # never route cluster-internal traffic through an environment proxy
            )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def forward(
        self,
        *,
        leader_http: str,
        leader_id: str | None,
        method: str,
        raw_path: bytes,
        query_string: bytes,
        body: bytes,
        content_type: str | None,
        is_write: bool,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Response:
        """Replay one request against the leader; map transport failures to outcomes.
        ``timeout_s``: this request's budget (default ``self.timeout_s``; a join's is longer)."""
        if self._client is None:
            return json_error(503, "forwarding to the leader is not available (app not serving)", outcome="not_applied")
        path = exact_forward_path(raw_path)
        target = path + (b"?" + query_string if query_string else b"")
        try:
            url = httpx.URL(leader_http.rstrip("/")).copy_with(raw_path=target)
        except (httpx.InvalidURL, TypeError, ValueError):
            return json_error(503, f"leader address {leader_http!r} is not a usable URL", outcome="not_applied")
        if not same_path(url.raw_path.partition(b"?")[0], raw_path):
            return json_error(
                400,
                "this path cannot be forwarded to the leader unchanged; send it to the leader directly",
                outcome="not_applied",
                leader_id=leader_id,
            )
        sent = dict(headers or {})
        sent[FORWARDED_BY_HEADER] = self.node_id
        budget_s = self.timeout_s if timeout_s is None else timeout_s
        deadline.stamp(sent, budget_s, lambda: time.time_ns() // 1_000_000)
        if content_type is not None:
            sent["Content-Type"] = content_type
        self.forwarded += 1
        try:
            answer = await self._client.request(
                method, url, content=body or None, headers=sent, timeout=httpx.Timeout(budget_s) if timeout_s else httpx.USE_CLIENT_DEFAULT
            )
        except _NOT_SENT as exc:
            self.failed += 1
            return json_error(
                503,
                f"could not reach the leader {leader_id or leader_http}: {type(exc).__name__}",
                outcome="not_applied",
                headers={"Retry-After": "1"},
                leader_id=leader_id,
            )
        except httpx.HTTPError as exc:
            self.failed += 1
            timed_out = isinstance(exc, httpx.TimeoutException)
            if not is_write:
                return json_error(
                    503,
                    f"the leader {leader_id or leader_http} did not answer the read: {type(exc).__name__}",
                    outcome="not_applied",
                    leader_id=leader_id,
                )
            return json_error(
                504 if timed_out else 503,
                f"the forwarded request to the leader {leader_id or leader_http} "
                f"{'timed out' if timed_out else 'lost its connection'}: it may or may not have been applied",
                outcome="unknown",
                leader_id=leader_id,
            )
        headers_out = {name: answer.headers[name] for name in PASSTHROUGH_HEADERS if name in answer.headers}
        if leader_id is not None:
            headers_out[FORWARDED_TO_HEADER] = leader_id
        return Response(answer.content, status=answer.status_code, headers=headers_out)


def same_path(sent: bytes, original: bytes) -> bool:
    """Do two raw paths decode (by the one rule of ``keys.py``) to the same bytes?"""
    if sent == original:
        return True
    try:
        return percent_decode(sent) == percent_decode(original)
    except BadInput:
        return False
