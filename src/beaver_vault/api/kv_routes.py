"""Key-value routes: one key, listings, prefix deletes and transactions.

Theory of operation: each route validates everything first (key, body, headers, query), then
builds ONE state-machine command (``beaver_vault.kv.commands``) and proposes it, or reads the
locally applied state after the consistency barrier of ``ApiContext.read_view``. The state
machine decides preconditions and idempotent replays; this module only turns its result into
HTTP:

* ``"precondition_failed": true`` -> 412 with the key's current revision (nothing changed);
* ``"duplicate": true`` (the ``Idempotency-Key`` was seen before) -> the original answer,
  same status, plus ``Idempotency-Replayed: true``;
* ``{"error", "code"}`` (refused by the state machine, e.g. appending to a non-list) -> 409.

Clock: TTL expiries and idempotency times are stamped here with ``runtime.now_ms()``. Only
the leader's stamp can reach the log: on a follower the write raises ``NotLeader`` and the
request is forwarded, and the leader stamps it again.

Values are stored as canonical JSON text, so responses splice that text in rather than
parsing and re-encoding every document.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from beaver_vault.api.auth_guard import AuthGuard, principal_of
from beaver_vault.api.context import API_PREFIX, ApiContext
from beaver_vault.api.errors import JSON_MIMETYPE, PreconditionFailed, json_error, json_response
from beaver_vault.api.keys import check_key_text, scope_key
from beaver_vault.api.validation import (
    BadInput,
    check_if_none_match,
    check_key,
    check_token,
    parse_bool,
    parse_if_match,
    parse_int,
)
from beaver_vault.errors import Rejected
from beaver_vault.kv import commands
from beaver_vault.kv.auth import Principal
from beaver_vault.kv.state import KeyRecord

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
CLIENT_HEADER = "X-Beaver-Vault-Client"
REPLAYED_HEADER = "Idempotency-Replayed"
DEFAULT_CLIENT = "default"
IDEMPOTENCY_KEY_MAX = 128
CLIENT_NAME_MAX = 128


def record_json(key: str, record: KeyRecord) -> str:
    """``{"key", "value", "create_revision", "mod_revision", "version"[, "expires_at_ms"]}``."""
    text = (
        f'{{"key":{json.dumps(key, ensure_ascii=False)},"value":{record.value},'
        f'"create_revision":{record.create_revision},"mod_revision":{record.mod_revision},'
        f'"version":{record.version}'
    )
    expires = getattr(record, "expires_at_ms", None)  # present once TTLs are in the state machine
    if isinstance(expires, int):
        text += f',"expires_at_ms":{expires}'
    return text + "}"


def applied(result: dict[str, Any]) -> dict[str, Any]:
    """The state machine's answer; one refused without a change (``{"error", "code"}``) -> 409."""
    if "error" in result:
        raise Rejected(f"refused by the state machine: {result['error']}", status=409)
    return result


def revision_of(result: dict[str, Any]) -> Any:
    for name in ("revision", "mod_revision", "index"):
        if name in result:
            return result[name]
    return None


def current_revision(result: dict[str, Any]) -> int:
    """The key's mod_revision reported by a failed precondition (0: the key is absent)."""
    for name in ("mod_revision", "current_revision", "revision"):
        value = result.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def encode_command(make: Any, *args: Any, **kwargs: Any) -> bytes:
    """Encode a command; only options actually used are passed, so a plain write encodes
    exactly as it always did."""
    try:
        command: bytes = make(*args, **{k: v for k, v in kwargs.items() if v is not None})
    except ValueError as exc:  # commands.CommandError: the encoder's own limits
        raise BadInput(str(exc)) from None
    return command


def write_headers(result: dict[str, Any]) -> dict[str, str]:
    """Headers every write answer carries (``Idempotency-Replayed`` on a replay)."""
    return {REPLAYED_HEADER: "true"} if result.get("duplicate") else {}


def precondition(key: str, result: dict[str, Any], headers: dict[str, str]) -> None:
    if result.get("precondition_failed"):
        raise PreconditionFailed(key, current_revision(result), headers=headers)


def put_answer(key: str, result: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """The body of a PUT's answer (adds ``ETag`` to ``headers``); raises for a failed
    precondition (412) or a write the state machine refused (409)."""
    precondition(key, result, headers)
    applied(result)
    revision = revision_of(result)
    if revision is not None:
        headers["ETag"] = f'"{revision}"'
    return {"key": key, "revision": revision, "created": bool(result.get("created"))}


def key_not_found(key: str, headers: dict[str, str]) -> Response:
    return json_error(404, f"key {key!r} not found", headers=headers, key=key)




def write_conditions(if_match: str | None, if_none_match: str | None, *, allow_if_none_match: bool) -> dict[str, Any]:
    """A conditional write's preconditions from its If-Match / If-None-Match values (HTTP and the
    pipelined protocol read them the same way)."""
    out: dict[str, Any] = {}
    if if_match is not None and if_none_match is not None:
        raise BadInput("send If-Match or If-None-Match, not both")
    if if_match is not None:
        out["if_mod_revision"] = parse_if_match(if_match)
    if if_none_match is not None:
        if not allow_if_none_match:
            raise BadInput("If-None-Match is not supported on this method")
        check_if_none_match(if_none_match)
        out["if_absent"] = True
    return out


def check_after(after: str | None, max_key_bytes: int) -> str | None:
    """The ``after`` parameter of a listing is a key: bounded like one."""
    if after is not None and len(after.encode("utf-8", errors="replace")) > max_key_bytes:
        raise BadInput(f"after is longer than {max_key_bytes} bytes (it is a key)")
    return after


def listing_text(runtime: Any, prefix: str, after: str | None, limit: int, keys_only: bool, revision: int) -> str:
    """One page of a listing as JSON text (HTTP and the pipelined protocol answer the same). Call
    it with no await since the read view was taken: the page, the count and the revision are then
    of one state."""
    rows = runtime.scan(prefix, after, limit + 1)
    total = runtime.count(prefix)
    more = len(rows) > limit
    rows = rows[:limit]
    next_after = json.dumps(rows[-1][0], ensure_ascii=False) if more and rows else "null"
    if keys_only:
        listing = '"keys":' + json.dumps([k for k, _ in rows], ensure_ascii=False)
    else:
        listing = '"items":[' + ",".join(record_json(k, r) for k, r in rows) + "]"
    return (
        f'{{{listing},"count":{total},"revision":{revision},'
        f'"more":{"true" if more else "false"},"next_after":{next_after}}}'
    )


def register(app: QuartTrio, ctx: ApiContext) -> None:
    runtime = ctx.runtime
    opts = ctx.opts

    # ------------------------------------------------------------------ helpers

    def idempotency() -> dict[str, Any] | None:
        """``request={"client", "id", "now_ms"}`` when the client sent an Idempotency-Key."""
        raw = request.headers.get(IDEMPOTENCY_KEY_HEADER)
        if raw is None:
            return None
        key = check_token(raw, IDEMPOTENCY_KEY_HEADER, max_bytes=IDEMPOTENCY_KEY_MAX)
        client_raw = request.headers.get(CLIENT_HEADER)
        client = (
            DEFAULT_CLIENT if client_raw is None else check_token(client_raw, CLIENT_HEADER, max_bytes=CLIENT_NAME_MAX)
        )
        return {"client": client, "id": key, "now_ms": runtime.now_ms()}

    def check_ttl_ms(ttl_ms: int, where: str = "") -> int:
        if ttl_ms > opts.ttl_max_s * 1000:
            raise BadInput(f"{where}ttl must be at most {opts.ttl_max_s} s")
        return ttl_ms

    def ttl_expiry(value: str | None) -> int | None:
        """``?ttl=`` -> an absolute ``expires_at_ms`` on this node's clock. The grammar is the
        state machine's (``30s``, ``500ms``, ``5m``, ``2h``, ``1d``, bare seconds); the API
        adds its own, tighter bound (``ttl_max_s``)."""
        if value is None:
            return None
        try:
            ttl_ms = commands.parse_ttl_ms(value)
        except ValueError as exc:  # commands.CommandError
            raise BadInput(str(exc)) from None
        return runtime.now_ms() + check_ttl_ms(ttl_ms)

    def conditions(*, allow_if_none_match: bool) -> dict[str, Any]:
        return write_conditions(
            request.headers.get("If-Match"), request.headers.get("If-None-Match"), allow_if_none_match=allow_if_none_match
        )

    build = encode_command

    async def write(command: bytes) -> tuple[dict[str, Any], dict[str, str]]:
        result = await ctx.bounded(runtime.write(command, timeout_s=opts.request_timeout_s))
        return result, write_headers(result)

    # ------------------------------------------------------------------ one key

    @app.route(f"{API_PREFIX}/kv/<key:key>", methods=["PUT"])
    async def put_key(key: str) -> Response:
        key = check_key(scope_key(request.scope), max_key_bytes=opts.max_key_bytes)
        cond = conditions(allow_if_none_match=True)
        expires_at_ms = ttl_expiry(request.args.get("ttl"))
        req = idempotency()
        value = await ctx.json_body()
        command = build(commands.put, key, value, expires_at_ms=expires_at_ms, request=req, **cond)
        result, headers = await write(command)
        return json_response(put_answer(key, result, headers), headers=headers)

    @app.route(f"{API_PREFIX}/kv/<key:key>", methods=["GET"])
    async def get_key(key: str) -> Response:
        key = check_key(scope_key(request.scope), max_key_bytes=opts.max_key_bytes)
        meta = parse_bool(request.args.get("meta"), "meta")
        view = await ctx.read_view()
        record = runtime.get_local(key)
        headers = view.headers()
        if record is None:
            return key_not_found(key, headers)
        etag = f'"{record.mod_revision}"'
        headers["ETag"] = etag
        if meta:
            return Response(record_json(key, record), status=200, headers=headers, mimetype=JSON_MIMETYPE)
        if _etag_matches(request.headers.get("If-None-Match"), etag):
            return Response("", status=304, headers=headers)
        return Response(record.value, status=200, headers=headers, mimetype=JSON_MIMETYPE)

    @app.route(f"{API_PREFIX}/kv/<key:key>", methods=["DELETE"])
    async def delete_key(key: str) -> Response:
        key = check_key(scope_key(request.scope), max_key_bytes=opts.max_key_bytes)
        cond = conditions(allow_if_none_match=False)
        req = idempotency()
        result, headers = await write(build(commands.delete, key, request=req, **cond))
        precondition(key, result, headers)
        applied(result)
        body = {"key": key, "deleted": bool(result.get("deleted")), "revision": revision_of(result)}
        return json_response(body, headers=headers)

    # ------------------------------------------------------------------ many keys

    def prefix_arg(*, required: bool) -> str:
        prefix = request.args.get("prefix")
        if prefix is None:
            if required:
                raise BadInput("the prefix parameter is required (it may be empty, with confirm=true)")
            return ""
        if len(prefix.encode("utf-8", errors="replace")) > opts.max_key_bytes:
            raise BadInput(f"prefix is longer than {opts.max_key_bytes} bytes")
        return prefix

    @app.route(f"{API_PREFIX}/kv", methods=["GET"])
    async def list_keys() -> Response:
        prefix = prefix_arg(required=False)
        after = check_after(request.args.get("after") or None, opts.max_key_bytes)
        limit = parse_int(
            request.args.get("limit"), "limit", default=opts.list_limit_default, lo=1, hi=opts.list_limit_max
        )
        keys_only = parse_bool(request.args.get("keys_only"), "keys_only")
        view = await ctx.read_view()
        text = listing_text(runtime, prefix, after, limit, keys_only, view.applied_index)
        return Response(text, status=200, headers=view.headers(), mimetype=JSON_MIMETYPE)

    @app.route(f"{API_PREFIX}/kv", methods=["DELETE"])
    async def delete_prefix() -> Response:
        if not parse_bool(request.args.get("confirm"), "confirm"):
            raise BadInput("deleting a prefix needs confirm=true (an empty prefix deletes every key)")
        prefix = prefix_arg(required=True)
        req = idempotency()
        result, headers = await write(build(commands.delete_prefix, prefix, request=req))
        applied(result)
        body = {"prefix": prefix, "deleted": result.get("deleted", 0), "revision": revision_of(result)}
        return json_response(body, headers=headers)

    # ------------------------------------------------------------------ transactions

    @app.route(f"{API_PREFIX}/txn", methods=["POST"])
    async def txn() -> Response:
        body = await ctx.json_body()
        try:
            normalised = commands.validate_txn(body)
        except ValueError as exc:  # commands.CommandError
            raise BadInput(f"invalid transaction: {exc}") from None
        # Keys in a transaction follow the rule of keys in a path (keys.py): no control
        # characters, at most max_key_bytes; else a key could be written that no GET can name.
        for part in ("compare", "success", "failure"):
            for i, item in enumerate(normalised[part]):
                try:
                    check_key_text(item["key"])
                    check_key(item["key"], max_key_bytes=opts.max_key_bytes)
                except BadInput as exc:
                    raise BadInput(f"invalid transaction: {part}[{i}]: {exc}") from None
        for branch in ("success", "failure"):
            for i, op in enumerate(normalised[branch]):
                if "ttl_ms" in op:
                    check_ttl_ms(op["ttl_ms"], f"invalid transaction: {branch}[{i}]: ")
        refused = await txn_refusal(normalised, app.extensions.get("beaver_vault.auth_guard"))
        if refused is not None:
            return refused
        req = idempotency()
        # now_ms resolves each put's ttl into an absolute expiry (the leader's stamp, as above).
        command = build(commands.txn, now_ms=runtime.now_ms(), request=req, **normalised)
        result, headers = await write(command)
        applied(result)
        answer = {
            "succeeded": bool(result.get("succeeded")),
            "results": result.get("results", []),
            "revision": revision_of(result),
        }
        return json_response(answer, headers=headers)


async def txn_refusal(normalised: Any, guard: AuthGuard | None) -> Response | None:
    """With authentication on: every key a transaction compares or reads needs read access,
    every key it writes needs write access (the guard let the caller in; the keys are here).
    Before refusing, catch up once and look again, as the guard does (a grant just made)."""
    caller = principal_of(request.scope)
    if caller is None or guard is None:
        return None  # authentication off (the guard refuses an anonymous /txn when it is on)
    needs = [(c["key"], "read") for c in normalised["compare"]]
    for branch in ("success", "failure"):
        needs += [(op["key"], "read" if op["op"] == "get" else "write") for op in normalised[branch]]

    def missing(p: Principal) -> tuple[str, str] | None:
        return next(((k, a) for k, a in needs if not p.may_key(k, a)), None)

    lacking = missing(caller)
    if lacking is not None:
        await guard.auth.barrier()
        header = request.headers.get("Authorization")
        fresh = await guard.auth.resolve(header) if header else None
        lacking = missing(fresh or caller)
    if lacking is None:
        return None
    key, access = lacking
    return json_error(403, f"user {caller.name!r} lacks {access} access to key {key!r}", outcome="not_applied", key=key)


def _etag_matches(header: str | None, etag: str) -> bool:
    """``If-None-Match`` on a read: weak comparison over a list of tags, or ``*``."""
    if header is None:
        return False
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False
