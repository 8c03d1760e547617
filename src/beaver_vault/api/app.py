"""The Quart-Trio application: Beaver-Vault's HTTP API under ``/api/v1``, plus ``/metrics``.

Theory of operation: routes are thin. Each one validates its input (``validation.py``), makes
one call on the :class:`~beaver_vault.node.runtime.NodeRuntime` and shapes the answer as
JSON. Nothing here decides consensus questions; the runtime and the state machine do. The
routes live in three modules, each with a ``register(app, ctx)``:

* ``kv_routes``: ``/kv/<key>`` (GET with ``?meta=true``, PUT with ``?ttl=``, DELETE;
  ``If-Match`` / ``If-None-Match``; ``Idempotency-Key``), ``/kv`` (listing; DELETE of a
  prefix with ``confirm=true``), ``/txn``;
* ``watch_routes``: ``/watch`` (Server-Sent Events) and ``/watch/ws`` (WebSocket);
* ``raft_routes``: ``/raft/join``, ``/raft/remove``, ``/raft/nodes``,
  ``/raft/transfer-leadership``, ``/status``.

Every read takes ``?consistency=linearizable`` (default: a read barrier first) or ``stale``
(the local copy) and answers with ``X-Beaver-Vault-Consistency`` and
``X-Beaver-Vault-Applied-Index`` (``context.py``).

Errors travel as exceptions: validation raises ``BadInput``, the runtime raises the typed
errors of ``beaver_vault.errors``; error handlers registered here turn them into JSON through
``errors.error_response`` (the one mapping). ``NotLeader`` with a known leader address is
the exception to the rule: its handler forwards the request (``forward.py``). Routing and
protocol errors (404, 405, 413) and unexpected exceptions (500) get JSON bodies as well.

Every runtime call is also bounded (``request_timeout_s`` plus a grace period), so a stuck
runtime yields ``504 outcome=unknown`` rather than a hung client.

With authentication on (``ApiOptions.auth``), ``auth_guard.AuthGuard`` stands between the
request limits and everything else (the fast path included): see ``auth_guard.py``.

Keys are decoded from the raw request path by one rule (``keys.py``): strict percent-decoding,
strict UTF-8, no control characters, nothing normalised (``a//b``, ``a/``, ``a/./b`` and
``a/../b`` are distinct keys, stored as sent).
"""

from __future__ import annotations

import time

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from beaver_vault.api import auth_routes, console_routes, kv_routes, ops_routes, raft_routes, ui_routes, watch_routes
from beaver_vault.api.auth_guard import AuthGuard
from beaver_vault.api.context import (
    API_PREFIX,
    CONSISTENCY_HEADER,
    CONSISTENCY_LEVELS,
    FORWARD_DEADLINE,
    RUNTIME_GRACE_S,
    ApiContext,
    ApiOptions,
)
from beaver_vault.api.deadline import BUDGET_HEADER, SENT_AT_HEADER
from beaver_vault.api.errors import (
    CLOSE_AFTER_UNREAD_BODY,
    RETRY_AFTER_S,
    error_response,
    http_error_response,
    json_error,
    too_large_message,
)
from beaver_vault.api.fast import RAISE_IN_QUART, FastKV
from beaver_vault.api.forward import FORWARDED_BY_HEADER, FORWARDED_REQUEST_HEADERS, Forwarder
from beaver_vault.api.keys import raw_path_of
from beaver_vault.api.limits import LimitOptions, RequestGuard
from beaver_vault.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from beaver_vault.api.metrics import ApiMetrics
from beaver_vault.api.stats import StatsSampler
from beaver_vault.errors import BeaverVaultError, NotLeader
from beaver_vault.node.runtime import NodeRuntime

__all__ = [
    "API_PREFIX",
    "CONSISTENCY_HEADER",
    "CONSISTENCY_LEVELS",
    "RUNTIME_GRACE_S",
    "ApiOptions",
    "create_app",
]


class BeaverVaultApp(QuartTrio):
    """Quart-Trio, with the plain single-key reads and writes served in front of it by
    :class:`~beaver_vault.api.fast.FastKV` (``fast.py``); everything else reaches Quart
    through ``asgi_app`` untouched."""

    fast_kv: FastKV | None = None
    guard: RequestGuard | None = None  # request limits in front of everything (limits.py)
    auth_guard: AuthGuard | None = None  # then authentication and authorisation (auth_guard.py)

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if self.guard is not None:
            await self.guard(scope, receive, send)
        else:
            await self.serve_guarded(scope, receive, send)

    async def serve_guarded(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if self.auth_guard is not None:
            await self.auth_guard(scope, receive, send)
        else:
            await self.serve_authorised(scope, receive, send)

    async def serve_authorised(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if self.fast_kv is not None:
            await self.fast_kv(scope, receive, send)
        else:
            await self.asgi_app(scope, receive, send)


class KeyConverter(BaseConverter):
    """Matches the rest of the path, slashes and control characters included (those are a
    clear 400 from the key decoding, not a 404), and also the empty string (so an empty key is
    a clear 400 rather than a 404). The routes take the key from the raw path (``keys.py``),
    not from this decoded value."""

    regex = r"[\s\S]*"
    part_isolating = False
    weight = 200


def create_app(runtime: NodeRuntime, options: ApiOptions | None = None) -> BeaverVaultApp:
    """Build the HTTP API of one node around its runtime."""
    opts = options if options is not None else ApiOptions()
    app = BeaverVaultApp(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = opts.max_body_bytes
    app.config["BODY_TIMEOUT"] = opts.body_timeout_s
    app.url_map.merge_slashes = False
    app.url_map.converters["key"] = KeyConverter
    ctx = ApiContext(runtime, opts)
    forwarder = Forwarder(node_id=runtime.node_id, timeout_s=opts.forward_timeout_s, verify=opts.peer_ssl)
    metrics = ApiMetrics(runtime)
    app.extensions["beaver_vault.forwarder"] = forwarder
    app.extensions["beaver_vault.metrics"] = metrics
    app.extensions["beaver_vault.runtime"] = runtime
    app.extensions["beaver_vault.context"] = ctx  # the pipelined protocol's server shares it (pipelined.py)

    # ------------------------------------------------------------------ lifecycle

    @app.before_serving
    async def open_forwarder() -> None:
        await forwarder.start()

    @app.after_serving
    async def close_forwarder() -> None:
        await forwarder.aclose()

    @app.before_request
    async def reject_oversized() -> Response | None:
        g.started = time.perf_counter()
        # Refuse a declared oversized body before reading a byte of it; a body that lies about
        # its length (or is chunked) is bounded by MAX_CONTENT_LENGTH while it is read.
        length = request.content_length
        if length is not None and length > opts.max_body_bytes:
            return json_error(
                413,
                too_large_message(opts.max_body_bytes),
                outcome="not_applied",
                headers=dict(CLOSE_AFTER_UNREAD_BODY),
            )
        # A parameter given twice is ambiguous (which one counts depends on the reader): refused,
        # like a JSON object naming a member twice.
        for name in request.args:
            if len(request.args.getlist(name)) > 1:
                return json_error(400, f"query parameter {name[:60]!r} is given more than once", outcome="not_applied")
        # The fast path (fast.py) hands over a request whose runtime call raised something it
        # does not answer itself (NotLeader: forwarding; a bug: the 500 path): raise it here,
        # after the same validation, so Quart answers exactly as if its route had raised it.
        handed_over = request.scope.get(RAISE_IN_QUART)
        if isinstance(handed_over, BaseException):
            raise handed_over
        # A write forwarded by a follower carries its deadline: past it, the follower has
        # answered (or will answer) "unknown" and the write must not start (deadline.py).
        sender = request.headers.get(FORWARDED_BY_HEADER)
        if sender is not None and request.method not in ("GET", "HEAD"):
            deadline = ctx.deadlines.deadline(
                sender, request.headers.get(SENT_AT_HEADER), request.headers.get(BUDGET_HEADER)
            )
            setattr(g, FORWARD_DEADLINE, deadline)
            ctx.deadlines.check(deadline)
        return None

    @app.after_request
    async def count_request(response: Response) -> Response:
        started = g.get("started")
        rule = request.url_rule
        route = rule.rule if rule is not None else "unmatched"
        elapsed = time.perf_counter() - started if isinstance(started, float) else 0.0
        metrics.observe(route, request.method, response.status_code, elapsed)
        return response

    # ------------------------------------------------------------------ routes

    if opts.auth.enabled:
        app.auth_guard = AuthGuard(app.serve_authorised, runtime, opts.auth, on_refusal=metrics.count_refusal)
    app.extensions["beaver_vault.auth_guard"] = app.auth_guard
    kv_routes.register(app, ctx)
    auth_routes.register(app, ctx, app.auth_guard)  # /api/v1/auth/...
    watch_routes.register(app, ctx, metrics)
    raft_routes.register(app, ctx)
    ops_routes.register(app, ctx)  # /health, /ready, /api/v1/backup
    sampler = StatsSampler(runtime, metrics.stats)
    ui_routes.register(app, runtime, sampler, peer_ssl=opts.peer_ssl)  # the operator's console at / and /ui/ (api/ui/)
    console_routes.register(app, runtime, sampler)  # /api/v1/events, /api/v1/stats, /openapi.json, /docs

    @app.route("/metrics", methods=["GET"])
    async def metrics_route() -> Response:
        return Response(metrics.render(), status=200, content_type=METRICS_CONTENT_TYPE)

    # ------------------------------------------------------------------ errors

    async def on_not_leader(exc: NotLeader) -> Response:
        if request.headers.get(FORWARDED_BY_HEADER) is not None:
            # Already forwarded once: the leader we were told about is no longer the leader.
            return json_error(
                503,
                "leader changed, retry",
                outcome="not_applied",
                headers={"Retry-After": RETRY_AFTER_S},
                leader_id=exc.leader_id,
            )
        if not exc.leader_http:
            return error_response(exc)
        passed = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
        # A join waits for the new node's catch-up: its forwarding budget is join_wait_s.
        slow = request.method == "POST" and request.path == f"{API_PREFIX}/raft/join" and not request.args.get("dry_run")
        return await forwarder.forward(
            leader_http=exc.leader_http,
            leader_id=exc.leader_id,
            method=request.method,
            raw_path=_raw_path(),
            query_string=request.query_string,
            body=await ctx.read_body(),
            content_type=request.headers.get("Content-Type"),
            is_write=request.method not in ("GET", "HEAD"),
            headers=passed,
            timeout_s=opts.join_wait_s + 2 * RUNTIME_GRACE_S if slow else None,
        )

    async def on_domain_error(exc: BeaverVaultError) -> Response:
        return error_response(exc)

    async def on_http_error(exc: HTTPException) -> Response:
        if exc.code == 400 and request.path == f"{API_PREFIX}/watch/ws":
            # A plain HTTP request to a WebSocket route: Quart's generic 400 names nothing.
            return json_error(
                400,
                f"{request.path} is a WebSocket endpoint: send a WebSocket upgrade request (GET /api/v1/watch for SSE)",
                outcome="not_applied",
            )
        return http_error_response(exc, method=request.method, path=request.path, max_body_bytes=opts.max_body_bytes)

    app.register_error_handler(NotLeader, on_not_leader)
    app.register_error_handler(BeaverVaultError, on_domain_error)
    app.register_error_handler(HTTPException, on_http_error)
    app.fast_kv = FastKV(app.asgi_app, ctx, metrics, body_timeout_s=app.config["BODY_TIMEOUT"])
    app.guard = RequestGuard(
        app.serve_guarded,
        LimitOptions(
            url_max_bytes=opts.max_url_bytes,
            header_max_bytes=opts.max_header_bytes,
            body_timeout_s=opts.body_timeout_s,
            client_rate_per_s=opts.client_rate_per_s,
            client_burst=opts.client_burst,
            body_max_bytes=opts.max_body_bytes,
        ),
        on_refusal=metrics.count_refusal,
    )
    return app


def _raw_path() -> bytes:
    return raw_path_of(request.scope)
