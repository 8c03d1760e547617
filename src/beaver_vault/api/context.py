"""What every route module shares: the options, the runtime and a few request helpers.

Theory of operation: ``create_app`` builds one :class:`ApiContext` per app and hands it to
each route module's ``register(app, ctx)``. The context owns the rules that are the same
everywhere: every runtime call is bounded (``bounded``), bodies are read once and validated
(``json_body``), and reads go through :meth:`ApiContext.read_view`, which applies the
requested consistency and says which applied index served the read.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio
from quart import g, has_request_context, request

from beaver_vault.api.auth_guard import AuthOptions
from beaver_vault.api.deadline import DeadlineBook, guarded
from beaver_vault.api.validation import BadInput, parse_json_body
from beaver_vault.errors import Unknown
from beaver_vault.node.runtime import NodeRuntime

T = TypeVar("T")

API_PREFIX = "/api/v1"
CONSISTENCY_HEADER = "X-Beaver-Vault-Consistency"
APPLIED_INDEX_HEADER = "X-Beaver-Vault-Applied-Index"
CONSISTENCY_LEVELS = ("linearizable", "stale")
# Extra time granted to the runtime beyond the timeout it was given before the API gives up.
RUNTIME_GRACE_S = 1.0
# Name in ``quart.g`` of a forwarded write's deadline (local monotonic seconds), set by app.py.
FORWARD_DEADLINE = "forward_deadline"


@dataclass(frozen=True, slots=True)
class ApiOptions:
    max_key_bytes: int = 1024
    max_body_bytes: int = 1024 * 1024
    max_json_depth: int = 64
    request_timeout_s: float = 5.0  # handed to the runtime for each write/read barrier/join/remove
    forward_timeout_s: float = 10.0  # a forwarded request's whole budget (longer than the leader's own)
    # How long a join is kept open while the new node catches up (its snapshot may be 1 GB);
    # a join forwarded by a follower gets this long too, not forward_timeout_s.
    join_wait_s: float = 1800.0
    list_limit_default: int = 100
    list_limit_max: int = 1000
    ttl_max_s: int = 30 * 24 * 3600
    watch_buffer_max: int = 1000  # events a watcher may have pending before it is disconnected
    watch_keepalive_s: float = 15.0  # SSE comment / WebSocket ping-free idle message period
    watch_buffer_bytes_max: int = 8 * 1024 * 1024  # bytes of events a watcher may have pending
    watchers_per_client_max: int = 64  # open watches per client address (429 beyond)
    max_url_bytes: int = 8 * 1024  # request target (path + query): 414 beyond
    max_header_bytes: int = 8 * 1024  # the whole header block: 431 beyond
    body_timeout_s: float = 5.0  # a request body must have arrived this long after the request: 408
    client_rate_per_s: float = 5_000.0  # requests per second per client address (0: unlimited): 429
    client_burst: int = 10_000
    # TLS for this node's own HTTPS calls to other nodes (forwarding, UI fan-out): the cluster's
    # CA and the node's certificate (security.https_context). None: plain http / system CAs.
    peer_ssl: ssl.SSLContext | None = None
    # Authentication and authorisation (auth_guard.py); off: development mode, no credentials.
    auth: AuthOptions = AuthOptions()

    def __post_init__(self) -> None:
        for name in (
            "max_key_bytes",
            "max_body_bytes",
            "max_json_depth",
            "list_limit_default",
            "list_limit_max",
            "ttl_max_s",
            "watch_buffer_max",
            "watch_buffer_bytes_max",
            "watchers_per_client_max",
            "max_url_bytes",
            "max_header_bytes",
            "client_burst",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"ApiOptions.{name} must be at least 1")
        if self.client_rate_per_s < 0:
            raise ValueError("ApiOptions.client_rate_per_s must not be negative")
        for name in ("request_timeout_s", "forward_timeout_s", "join_wait_s", "watch_keepalive_s", "body_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ApiOptions.{name} must be positive")
        if self.list_limit_default > self.list_limit_max:
            raise ValueError("ApiOptions.list_limit_default must not exceed list_limit_max")


@dataclass(frozen=True, slots=True)
class ReadView:
    """How a read was served: the consistency asked for and the applied index it saw."""

    consistency: str
    applied_index: int

    def headers(self) -> dict[str, str]:
        return {CONSISTENCY_HEADER: self.consistency, APPLIED_INDEX_HEADER: str(self.applied_index)}


class ApiContext:
    def __init__(self, runtime: NodeRuntime, opts: ApiOptions) -> None:
        self.runtime = runtime
        self.opts = opts
        self.deadlines = DeadlineBook()  # forwarded writes' deadlines (deadline.py)
        # ``host:port`` of this node's pipelined client port (pipelined.py), once it listens;
        # advertised in GET /api/v1/status.
        self.pipelined_address: str | None = None

    async def bounded(self, call: Awaitable[T], *, timeout_s: float | None = None) -> T:
        """Await one runtime call, but never longer than its own timeout (``timeout_s``, default
        ``request_timeout_s``) plus a grace period; a forwarded write whose sender already gave
        up is not started (``deadline.py``)."""
        limit = (self.opts.request_timeout_s if timeout_s is None else timeout_s) + RUNTIME_GRACE_S
        deadline = g.get(FORWARD_DEADLINE) if has_request_context() else None
        with trio.move_on_after(limit):
            result: T = await guarded(self.deadlines, deadline, call)
            return result
        raise Unknown(f"the node did not answer within {limit:g} s (timed out)")

    async def read_body(self) -> bytes:
        data: bytes = await request.get_data(cache=True, as_text=False, parse_form_data=False)
        return data

    async def json_body(self, *, required: bool = True) -> Any:
        """The request body as one validated JSON document (``None`` if optional and empty)."""
        raw = await self.read_body()
        if not required and not raw.strip():
            return None
        return parse_json_body(
            raw, max_body_bytes=self.opts.max_body_bytes, max_json_depth=self.opts.max_json_depth
        ).value

    def consistency(self) -> str:
        level = request.args.get("consistency", "linearizable")
        if level not in CONSISTENCY_LEVELS:
            raise BadInput(f"consistency must be one of {', '.join(CONSISTENCY_LEVELS)}; got {level!r}")
        return level

    async def read_view(self) -> ReadView:
        """Apply ``?consistency=``: a linearizable read first takes a read barrier (on a follower
        it raises ``NotLeader`` and the request is forwarded, unless the runtime serves follower
        reads itself). Call the runtime's local reads right after, with no ``await`` between, so
        the reported index is exactly the state that was read."""
        level = self.consistency()
        if level == "linearizable":
            await self.bounded(self.runtime.read_barrier(timeout_s=self.opts.request_timeout_s))
        return ReadView(level, self.runtime.applied_index())
