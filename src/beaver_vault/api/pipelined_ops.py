"""The operations of the pipelined protocol: the key-value routes of the HTTP API, one request
frame at a time (see docs/protocol.md and ``pipelined.py`` for the connection).

Theory of operation: a request frame names an ``op`` (``put``, ``get``, ``delete``, ``list``,
``delete_prefix``, ``txn``; ``watch`` is streamed by ``pipelined.py``), a ``key`` where the
HTTP route has one in its path, ``q`` (the HTTP query parameters, same names and grammar) and
``h`` (the HTTP request headers that matter: ``if-match``, ``if-none-match``,
``idempotency-key``, ``x-beaver-vault-client``; lower-case names). The answer is what the
HTTP route answers: a status, the response headers that matter (lower-case) and the same body
bytes. The checks, the commands and the answers are built by the functions the HTTP routes
use (``validation``, ``kv_routes``, ``errors``), so the two fronts cannot drift apart;
``tests/test_pipelined.py`` compares them.

Errors are raised, as in the routes: ``BeaverVaultError`` subclasses, mapped to a status by
``errors.error_parts`` (the one mapping) in ``pipelined.py``; ``NotLeader`` is forwarded there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from beaver_vault.api.context import (
    APPLIED_INDEX_HEADER,
    CONSISTENCY_HEADER,
    CONSISTENCY_LEVELS,
    ApiContext,
)
from beaver_vault.api.deadline import guarded
from beaver_vault.api.errors import json_text
from beaver_vault.api.kv_routes import (
    CLIENT_NAME_MAX,
    DEFAULT_CLIENT,
    IDEMPOTENCY_KEY_MAX,
    applied,
    check_after,
    encode_command,
    listing_text,
    precondition,
    put_answer,
    record_json,
    revision_of,
    write_conditions,
    write_headers,
)
from beaver_vault.api.kv_routes import _etag_matches as etag_matches
from beaver_vault.api.validation import (
    BadInput,
    check_key,
    check_token,
    parse_bool,
    parse_int,
    parse_json_body,
)
from beaver_vault.kv import commands
from beaver_vault.node.outcomes import Waiter

T = TypeVar("T")

WRITE_OPS = frozenset({"put", "delete", "delete_prefix", "txn"})
READ_OPS = frozenset({"get", "list"})
KEY_OPS = frozenset({"put", "get", "delete"})
_CONSISTENCY = CONSISTENCY_HEADER.lower()
_APPLIED = APPLIED_INDEX_HEADER.lower()

Answer = tuple[int, dict[str, str], bytes]


@dataclass(slots=True)
class Started:
    """A request whose runtime call has started (``Ops.start``): ``finish`` builds the answer
    from ``waiter``'s result once it is done (``waiter`` None: nothing to wait for)."""

    waiter: Waiter | None
    what: str  # "write" or "read": which timeout message, which trace mark
    finish: Callable[[Any], Answer]


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _strings(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BadInput(f"{what} must be an object of strings")
    return value


class Request:
    """One request frame, its parts checked for type."""

    __slots__ = ("op", "key", "q", "h", "body", "fwd")

    def __init__(self, header: dict[str, Any], body: bytes | None) -> None:
        op = header.get("op")
        if not isinstance(op, str):
            raise BadInput("a request frame needs an op")
        self.op = op
        key = header.get("key")
        if op in KEY_OPS and not isinstance(key, str):
            raise BadInput(f"op {op} needs a key (a string)")
        self.key: str = key if isinstance(key, str) else ""
        self.q = _strings(header.get("q"), "q")
        self.h = _strings(header.get("h"), "h")
        self.body = body or b""
        fwd = header.get("fwd")
        self.fwd: str | None = fwd if isinstance(fwd, str) else None


class Ops:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.runtime = ctx.runtime
        self.opts = ctx.opts

    async def bounded(self, call: Awaitable[T], deadline: float | None) -> T:
        """A runtime call: a forwarded write whose sender's deadline has passed is not started.
        No timeout of its own (``ApiContext.bounded`` adds a grace period): the runtime's wait
        has one (``request_timeout_s``), after which it raises ``Unknown`` for a write and
        ``NoLeader`` for a read; a cancel scope more per request costs ~8% of the leader's
        event-loop time at 64 pipelined clients."""
        result: T = await guarded(self.ctx.deadlines, deadline, call)
        return result

    # ------------------------------------------------------------------ started without a task

    START_OPS = frozenset({"put", "get", "delete"})

    def start(self, req: Request) -> Started:
        """Check ``req`` (one of ``START_OPS``, not forwarded) and start its runtime call, with
        no await: the pipelined server answers it from the waiter's completion, with no task
        per request (``api/pipelined.py``). Raises as ``run`` does (``NotLeader`` before
        anything was proposed)."""
        match req.op:
            case "put":
                return self.start_put(req, None)
            case "delete":
                return self.start_delete(req, None)
            case _:
                return self.start_get(req)

    async def _finish(self, st: Started) -> Answer:
        result = None
        if st.waiter is not None:
            result = await self.runtime.wait(st.waiter, st.what, timeout_s=self.opts.request_timeout_s)
        return st.finish(result)

    async def run(self, req: Request, deadline: float | None) -> Answer:
        match req.op:
            case "get":
                return await self.get(req)
            case "put":
                return await self.put(req, deadline)
            case "delete":
                return await self.delete(req, deadline)
            case "list":
                return await self.list(req)
            case "delete_prefix":
                return await self.delete_prefix(req, deadline)
            case "txn":
                return await self.txn(req, deadline)
            case _:
                raise BadInput(f"unknown op {req.op!r}")

    # ------------------------------------------------------------------ helpers (as kv_routes)

    def _idempotency(self, h: dict[str, str]) -> dict[str, Any] | None:
        raw = h.get("idempotency-key")
        if raw is None:
            return None
        key = check_token(raw, "Idempotency-Key", max_bytes=IDEMPOTENCY_KEY_MAX)
        client_raw = h.get("x-beaver-vault-client")
        client = (
            DEFAULT_CLIENT
            if client_raw is None
            else check_token(client_raw, "X-Beaver-Vault-Client", max_bytes=CLIENT_NAME_MAX)
        )
        return {"client": client, "id": key, "now_ms": self.runtime.now_ms()}

    def _check_ttl_ms(self, ttl_ms: int, where: str = "") -> int:
        if ttl_ms > self.opts.ttl_max_s * 1000:
            raise BadInput(f"{where}ttl must be at most {self.opts.ttl_max_s} s")
        return ttl_ms

    def _ttl_expiry(self, value: str | None) -> int | None:
        if value is None:
            return None
        try:
            ttl_ms = commands.parse_ttl_ms(value)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        return self.runtime.now_ms() + self._check_ttl_ms(ttl_ms)

    @staticmethod
    def _conditions(h: dict[str, str], *, allow_if_none_match: bool) -> dict[str, Any]:
        return write_conditions(h.get("if-match"), h.get("if-none-match"), allow_if_none_match=allow_if_none_match)

    def _json(self, body: bytes) -> Any:
        return parse_json_body(body, max_body_bytes=self.opts.max_body_bytes, max_json_depth=self.opts.max_json_depth).value

    async def _write(self, command: bytes, deadline: float | None) -> tuple[dict[str, Any], dict[str, str]]:
        result = await self.bounded(self.runtime.write(command, timeout_s=self.opts.request_timeout_s), deadline)
        return result, write_headers(result)

    @staticmethod
    def _consistency(q: dict[str, str]) -> str:
        level = q.get("consistency", "linearizable")
        if level not in CONSISTENCY_LEVELS:
            raise BadInput(f"consistency must be one of {', '.join(CONSISTENCY_LEVELS)}; got {level!r}")
        return level

    async def _read_view(self, q: dict[str, str]) -> tuple[str, int]:
        level = self._consistency(q)
        if level == "linearizable":
            await self.bounded(self.runtime.read_barrier(timeout_s=self.opts.request_timeout_s), None)
        return level, self.runtime.applied_index()

    def _key(self, req: Request) -> str:
        return check_key(req.key, max_key_bytes=self.opts.max_key_bytes)

    # ------------------------------------------------------------------ one key

    async def put(self, req: Request, deadline: float | None) -> Answer:
        return await self._finish(self.start_put(req, deadline))

    def start_put(self, req: Request, deadline: float | None) -> Started:
        key = self._key(req)
        cond = self._conditions(req.h, allow_if_none_match=True)
        expires_at_ms = self._ttl_expiry(req.q.get("ttl"))
        idem = self._idempotency(req.h)
        value = self._json(req.body)
        command = encode_command(commands.put, key, value, expires_at_ms=expires_at_ms, request=idem, **cond)
        self.ctx.deadlines.check(deadline)

        def finish(result: dict[str, Any]) -> Answer:
            headers = write_headers(result)
            answer = put_answer(key, result, headers)
            return 200, _lower(headers), json_text(answer).encode()

        return Started(self.runtime.start_write(command), "write", finish)

    async def get(self, req: Request) -> Answer:
        return await self._finish(self.start_get(req))

    def start_get(self, req: Request) -> Started:
        key = self._key(req)
        meta = parse_bool(req.q.get("meta"), "meta")
        level = self._consistency(req.q)
        if_none_match = req.h.get("if-none-match")

        def finish(_: object) -> Answer:
            # Called once the barrier (if any) is passed, with no await between the index
            # reported and the state read.
            index = self.runtime.applied_index()
            record = self.runtime.get_local(key)
            headers = {_CONSISTENCY: level, _APPLIED: str(index)}
            if record is None:
                return 404, headers, json_text({"error": f"key {key!r} not found", "key": key}).encode()
            etag = f'"{record.mod_revision}"'
            headers["etag"] = etag
            if meta:
                return 200, headers, record_json(key, record).encode()
            if etag_matches(if_none_match, etag):
                return 304, headers, b""
            return 200, headers, record.value.encode()

        waiter = self.runtime.start_read() if level == "linearizable" else None
        return Started(waiter, "read", finish)

    async def delete(self, req: Request, deadline: float | None) -> Answer:
        return await self._finish(self.start_delete(req, deadline))

    def start_delete(self, req: Request, deadline: float | None) -> Started:
        key = self._key(req)
        cond = self._conditions(req.h, allow_if_none_match=False)
        idem = self._idempotency(req.h)
        command = encode_command(commands.delete, key, request=idem, **cond)
        self.ctx.deadlines.check(deadline)

        def finish(result: dict[str, Any]) -> Answer:
            headers = write_headers(result)
            precondition(key, result, headers)
            applied(result)
            body = {"key": key, "deleted": bool(result.get("deleted")), "revision": revision_of(result)}
            return 200, _lower(headers), json_text(body).encode()

        return Started(self.runtime.start_write(command), "write", finish)

    # ------------------------------------------------------------------ many keys

    def _prefix(self, q: dict[str, str], *, required: bool) -> str:
        prefix = q.get("prefix")
        if prefix is None:
            if required:
                raise BadInput("the prefix parameter is required (it may be empty, with confirm=true)")
            return ""
        if len(prefix.encode("utf-8", errors="replace")) > self.opts.max_key_bytes:
            raise BadInput(f"prefix is longer than {self.opts.max_key_bytes} bytes")
        return prefix

    async def list(self, req: Request) -> Answer:
        q = req.q
        opts = self.opts
        prefix = self._prefix(q, required=False)
        after = check_after(q.get("after") or None, opts.max_key_bytes)
        limit = parse_int(q.get("limit"), "limit", default=opts.list_limit_default, lo=1, hi=opts.list_limit_max)
        keys_only = parse_bool(q.get("keys_only"), "keys_only")
        level, index = await self._read_view(q)
        text = listing_text(self.runtime, prefix, after, limit, keys_only, index)
        return 200, {_CONSISTENCY: level, _APPLIED: str(index)}, text.encode()

    async def delete_prefix(self, req: Request, deadline: float | None) -> Answer:
        if not parse_bool(req.q.get("confirm"), "confirm"):
            raise BadInput("deleting a prefix needs confirm=true (an empty prefix deletes every key)")
        prefix = self._prefix(req.q, required=True)
        idem = self._idempotency(req.h)
        result, headers = await self._write(encode_command(commands.delete_prefix, prefix, request=idem), deadline)
        applied(result)
        body = {"prefix": prefix, "deleted": result.get("deleted", 0), "revision": revision_of(result)}
        return 200, _lower(headers), json_text(body).encode()

    async def txn(self, req: Request, deadline: float | None) -> Answer:
        doc = self._json(req.body)
        try:
            normalised = commands.validate_txn(doc)
        except ValueError as exc:
            raise BadInput(f"invalid transaction: {exc}") from None
        for branch in ("success", "failure"):
            for i, op in enumerate(normalised[branch]):
                if "ttl_ms" in op:
                    self._check_ttl_ms(op["ttl_ms"], f"invalid transaction: {branch}[{i}]: ")
        idem = self._idempotency(req.h)
        command = encode_command(commands.txn, now_ms=self.runtime.now_ms(), request=idem, **normalised)
        result, headers = await self._write(command, deadline)
        applied(result)
        answer = {
            "succeeded": bool(result.get("succeeded")),
            "results": result.get("results", []),
            "revision": revision_of(result),
        }
        return 200, _lower(headers), json_text(answer).encode()

