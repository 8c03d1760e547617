"""The Quart-Trio application: the seed's HTTP API under ``/api/v1``.

Theory of operation: routes are thin. Each one validates its input (``validation.py``), makes
one call on the :class:`~beaver_vault.node.runtime.NodeRuntime` and shapes the answer as
JSON. Nothing here decides consensus questions; the runtime does.

* ``PUT /api/v1/kv/<key>``: the body is one JSON document whatever the Content-Type
  (``curl -d`` sends a form type), read as raw bytes and validated before anything reaches
  the log. Answer: ``{"key", "revision", "created"}``.
* ``GET /api/v1/kv/<key>[?consistency=linearizable|stale]``: linearizable (the default)
  waits for a ReadIndex barrier, stale reads the local copy. The body is the stored
  document itself; ``ETag: "<mod_revision>"``; 404 when absent.
* ``DELETE /api/v1/kv/<key>``: ``{"key", "deleted", "revision"}``.
* ``POST /api/v1/raft/join`` ``{"NodeID", "RaftAddress"}`` and ``POST /api/v1/raft/remove``
  ``{"NodeID"}``: ``{"members": [...]}``.
* ``GET /api/v1/status``: the node's own status, never forwarded, answered without a leader.

Errors travel as exceptions: validation raises ``BadInput``, the runtime raises the typed
errors of ``beaver_vault.errors``; error handlers registered here turn them into JSON through
``errors.error_response`` (the one mapping). ``NotLeader`` with a known leader address is
the exception to the rule: its handler forwards the request (``forward.py``). Routing and
protocol errors (404, 405, 413) and unexpected exceptions (500) get JSON bodies as well.

Every runtime call is also bounded here (``request_timeout_s`` plus a grace period), so a
stuck runtime yields ``504 outcome=unknown`` rather than a hung client.

Keys are taken from the decoded URL path; they may contain ``/`` (slashes are not merged,
so ``a//b`` and ``a/`` are distinct keys).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import BaseConverter

from beaver_vault.api.errors import JSON_MIMETYPE, RETRY_AFTER_S, error_response, json_error, json_response
from beaver_vault.api.forward import FORWARDED_BY_HEADER, Forwarder
from beaver_vault.api.validation import BadInput, check_key, check_node_field, parse_json_body
from beaver_vault.errors import BeaverVaultError, NotLeader, Rejected, Unknown
from beaver_vault.kv import commands
from beaver_vault.node.runtime import NodeRuntime
from beaver_vault.raft.messages import Membership

T = TypeVar("T")

API_PREFIX = "/api/v1"
CONSISTENCY_HEADER = "X-Beaver-Vault-Consistency"
CONSISTENCY_LEVELS = ("linearizable", "stale")
# Extra time granted to the runtime beyond the timeout it was given before the API gives up.
RUNTIME_GRACE_S = 1.0
# A 413 leaves (part of) the request body unread. Hypercorn (0.18, h11) then neither answers a
# next request on that connection nor closes it (the unread body stalls the connection), so a
# keep-alive client hangs until its read timeout. Telling the client to close it avoids that.
CLOSE_AFTER_UNREAD_BODY = {"Connection": "close"}


@dataclass(frozen=True, slots=True)
class ApiOptions:
    max_key_bytes: int = 1024
    max_body_bytes: int = 1024 * 1024
    max_json_depth: int = 64
    request_timeout_s: float = 5.0  # handed to the runtime for each write/read barrier/join/remove
    forward_timeout_s: float = 10.0  # a forwarded request's whole budget (longer than the leader's own)

    def __post_init__(self) -> None:
        for name in ("max_key_bytes", "max_body_bytes", "max_json_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"ApiOptions.{name} must be at least 1")
        for name in ("request_timeout_s", "forward_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ApiOptions.{name} must be positive")


class KeyConverter(BaseConverter):
    """Matches the rest of the path, slashes included, and also the empty string (so an empty
    key is a clear 400 rather than a 404)."""

    regex = ".*"
    part_isolating = False
    weight = 200


def _members_json(membership: Membership) -> list[dict[str, Any]]:
    return [asdict(m) for m in membership.members]


def _check_raft_address(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"RaftAddress {address!r} must look like host:port")
    return address


def create_app(runtime: NodeRuntime, options: ApiOptions | None = None) -> QuartTrio:
    """Build the HTTP API of one node around its runtime."""
    opts = options if options is not None else ApiOptions()
    app = QuartTrio(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = opts.max_body_bytes
    app.url_map.merge_slashes = False
    app.url_map.converters["key"] = KeyConverter
    forwarder = Forwarder(node_id=runtime.node_id, timeout_s=opts.forward_timeout_s)
    app.extensions["beaver_vault.forwarder"] = forwarder

    async def bounded(call: Awaitable[T]) -> T:
        """Await one runtime call, but never longer than its own timeout plus a grace period."""
        with trio.move_on_after(opts.request_timeout_s + RUNTIME_GRACE_S):
            return await call
        raise Unknown(f"the node did not answer within {opts.request_timeout_s + RUNTIME_GRACE_S:g} s (timed out)")

    async def read_body() -> bytes:
        data: bytes = await request.get_data(cache=True, as_text=False, parse_form_data=False)
        return data

    # ------------------------------------------------------------------ lifecycle

    @app.before_serving
    async def open_forwarder() -> None:
        await forwarder.start()

    @app.after_serving
    async def close_forwarder() -> None:
        await forwarder.aclose()

    @app.before_request
    async def reject_oversized() -> Response | None:
        # Refuse a declared oversized body before reading a byte of it; a body that lies about
        # its length (or is chunked) is bounded by MAX_CONTENT_LENGTH while it is read.
        length = request.content_length
        if length is not None and length > opts.max_body_bytes:
            return json_error(
                413,
                f"request body is larger than {opts.max_body_bytes} bytes",
                outcome="not_applied",
                headers=dict(CLOSE_AFTER_UNREAD_BODY),
            )
        return None

    # ------------------------------------------------------------------ key-value

    @app.route(f"{API_PREFIX}/kv/<key:key>", methods=["PUT"])
    async def put_key(key: str) -> Response:
        check_key(key, max_key_bytes=opts.max_key_bytes)
        doc = parse_json_body(await read_body(), max_body_bytes=opts.max_body_bytes, max_json_depth=opts.max_json_depth)
        try:
            command = commands.put(key, doc.value)
        except ValueError as exc:  # commands.CommandError: the encoder's own (looser) limits
            raise BadInput(str(exc)) from None
        result = _applied(await bounded(runtime.write(command, timeout_s=opts.request_timeout_s)))
        return json_response({"key": key, "revision": _revision(result), "created": bool(result.get("created"))})

    @app.route(f"{API_PREFIX}/kv/<key:key>", methods=["GET"])
    async def get_key(key: str) -> Response:
        check_key(key, max_key_bytes=opts.max_key_bytes)
        consistency = request.args.get("consistency", "linearizable")
        if consistency not in CONSISTENCY_LEVELS:
            raise BadInput(f"consistency must be one of {', '.join(CONSISTENCY_LEVELS)}; got {consistency!r}")
        if consistency == "linearizable":
            await bounded(runtime.read_barrier(timeout_s=opts.request_timeout_s))
        record = runtime.get_local(key)
        headers = {CONSISTENCY_HEADER: consistency}
        if record is None:
            return json_error(404, f"key {key!r} not found", headers=headers, key=key)
        headers["ETag"] = f'"{record.mod_revision}"'
        return Response(record.value, status=200, headers=headers, mimetype=JSON_MIMETYPE)

    @app.route(f"{API_PREFIX}/kv/<key:key>", methods=["DELETE"])
    async def delete_key(key: str) -> Response:
        check_key(key, max_key_bytes=opts.max_key_bytes)
        try:
            command = commands.delete(key)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        result = _applied(await bounded(runtime.write(command, timeout_s=opts.request_timeout_s)))
        return json_response({"key": key, "deleted": bool(result.get("deleted")), "revision": _revision(result)})

    # ------------------------------------------------------------------ membership

    async def membership_body() -> Any:
        raw = await read_body()
        return parse_json_body(raw, max_body_bytes=opts.max_body_bytes, max_json_depth=opts.max_json_depth).value

    @app.route(f"{API_PREFIX}/raft/join", methods=["POST"])
    async def join() -> Response:
        body = await membership_body()
        node_id = check_node_field(body, "NodeID")
        raft_address = _check_raft_address(check_node_field(body, "RaftAddress"))
        membership = await bounded(runtime.join(node_id, raft_address, timeout_s=opts.request_timeout_s))
        return json_response({"members": _members_json(membership)})

    @app.route(f"{API_PREFIX}/raft/remove", methods=["POST"])
    async def remove() -> Response:
        body = await membership_body()
        node_id = check_node_field(body, "NodeID")
        membership = await bounded(runtime.remove(node_id, timeout_s=opts.request_timeout_s))
        return json_response({"members": _members_json(membership)})

    # ------------------------------------------------------------------ status

    @app.route(f"{API_PREFIX}/status", methods=["GET"])
    async def status() -> Response:
        return json_response(runtime.status().to_json())

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
        return await forwarder.forward(
            leader_http=exc.leader_http,
            leader_id=exc.leader_id,
            method=request.method,
            raw_path=_raw_path(),
            query_string=request.query_string,
            body=await read_body(),
            content_type=request.headers.get("Content-Type"),
            is_write=request.method not in ("GET", "HEAD"),
        )

    async def on_domain_error(exc: BeaverVaultError) -> Response:
        return error_response(exc)

    async def on_http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        headers: dict[str, str] = {}
        if code >= 500:
            # An unexpected exception (a bug, InvariantViolation, ...): a write may have been
            # proposed before it happened, so its outcome is unknown.
            outcome = "unknown" if request.method not in ("GET", "HEAD") else "not_applied"
            return json_error(500, "internal error", outcome=outcome)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        if code == 413:
            headers.update(CLOSE_AFTER_UNREAD_BODY)
        message = {
            404: "no such route",
            405: f"method {request.method} is not allowed here",
            413: f"request body is larger than {opts.max_body_bytes} bytes",
        }.get(code, exc.description or exc.name)
        extra = {"path": request.path} if code in (404, 405) else {}
        return json_error(code, message, outcome="not_applied", headers=headers, **extra)

    app.register_error_handler(NotLeader, on_not_leader)
    app.register_error_handler(BeaverVaultError, on_domain_error)
    app.register_error_handler(HTTPException, on_http_error)
    return app


def _applied(result: dict[str, Any]) -> dict[str, Any]:
    """The state machine's answer to an applied command; one that changed nothing because it
    was refused (``{"error", "code"}``) is reported as not applied."""
    if "error" in result:
        raise Rejected(f"refused by the state machine: {result['error']}", status=409)
    return result


def _revision(result: dict[str, Any]) -> Any:
    for name in ("revision", "mod_revision", "index"):
        if name in result:
            return result[name]
    return None


def _raw_path() -> bytes:
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.partition(b"?")[0]
    return quote(request.path).encode("ascii")
