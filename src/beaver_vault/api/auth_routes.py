"""``/api/v1/auth/...``: users, roles, tokens, join tokens and ``whoami``.

Theory of operation: each change hashes any secret here (``passwords.py``), then proposes one
``kv.auth`` command and answers once it is applied on the leader (a follower forwards the
request, as for any write). The guard (``auth_guard.py``) already let the caller in: these
routes only refine the self-or-admin rules (a user may change their own password, issue,
list and revoke their own tokens). Answers never carry a password hash, a salt or a token's
digest; a new token is shown exactly once, in the answer that created it.

* ``GET /auth/whoami``; ``GET|POST /auth/users``; ``GET|DELETE /auth/users/<name>``;
  ``PUT /auth/users/<name>/password`` ``{"password", "revoke_tokens"?}``;
  ``PUT|DELETE /auth/users/<name>/roles/<role>`` (grant, revoke);
* ``GET /auth/roles``; ``PUT|DELETE /auth/roles/<name>`` ``{"permissions": [{"prefix", "access"}]}``;
* ``GET|POST /auth/tokens`` ``{"ttl_s"?}``; ``DELETE /auth/tokens/<id>``;
* ``GET|POST /auth/join-tokens`` ``{"ttl_s"?}``; ``DELETE /auth/join-tokens/<id>``.

Refusals by the state machine: no such user/role/token 404, already exists or a limit 409.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from beaver_vault.api.auth_guard import AuthGuard, principal_of
from beaver_vault.api.context import API_PREFIX, ApiContext
from beaver_vault.api.errors import json_error, json_response
from beaver_vault.api.passwords import JOIN_TOKEN_PREFIX, check_new_password, hash_password_async, new_token
from beaver_vault.api.validation import BadInput
from beaver_vault.errors import Rejected
from beaver_vault.kv import auth as kvauth

AUTH = f"{API_PREFIX}/auth"
TOKEN_TTL_MAX_S = 366 * 24 * 3600
JOIN_TOKEN_TTL_DEFAULT_S = 3600
JOIN_TOKEN_TTL_MAX_S = 7 * 24 * 3600


def _outcome(result: dict[str, Any]) -> dict[str, Any]:
    code = result.get("code")
    if code is None:
        return result
    status = {"not_found": 404, "exists": 409, "limit": 409, "last_admin": 409}.get(str(code), 400)
    raise Rejected(str(result.get("error", "refused")), status=status)


def _ttl(body: Any, default: int | None, hi: int) -> int | None:
    raw = body.get("ttl_s", default) if isinstance(body, dict) else default
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= hi:
        raise BadInput(f"ttl_s must be an integer from 1 to {hi}")
    return raw


def _obj(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadInput("request body must be a JSON object")
    return body


def register(app: QuartTrio, ctx: ApiContext, guard: AuthGuard | None) -> None:
    runtime = ctx.runtime
    opts = ctx.opts

    async def propose(action: str, **fields: Any) -> dict[str, Any]:
        try:
            command = kvauth.auth_command(action, **fields)
        except ValueError as e:  # CommandError: names, permissions
            raise BadInput(str(e)) from None
        result: dict[str, Any] = await ctx.bounded(runtime.write(command, timeout_s=opts.request_timeout_s))
        return _outcome(result)

    def caller() -> kvauth.Principal | None:
        return principal_of(request.scope)

    def is_admin() -> bool:
        p = caller()
        return guard is None or (p is not None and p.is_admin)  # auth off: dev mode, anyone

    def forbid(what: str) -> Response:
        p = caller()
        return json_error(403, f"user {p.name if p else None!r} may not {what}", outcome="not_applied")

    def records(kind: str) -> list[dict[str, Any]]:
        out = []
        for _, doc in runtime.auth_scan(kind):
            try:
                value = json.loads(doc)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out

    def user_doc(name: str) -> dict[str, Any] | None:
        raw = runtime.auth_get("user", name)
        return None if raw is None else json.loads(raw)

    async def password_field(body: dict[str, Any]) -> dict[str, Any]:
        why = check_new_password(body.get("password"))
        if why is not None:
            raise BadInput(why)
        return await hash_password_async(str(body["password"]))

    # ------------------------------------------------------------------ whoami

    @app.route(f"{AUTH}/whoami", methods=["GET"])
    async def whoami() -> Response:
        p = caller()
        if p is None:
            return json_response({"user": None, "auth_enabled": guard is not None})
        return json_response({**p.to_json(), "auth_enabled": True})

    # ------------------------------------------------------------------ users

    @app.route(f"{AUTH}/users", methods=["GET"])
    async def list_users() -> Response:
        return json_response({"users": [kvauth.public_user(u) for u in records("user")]})

    @app.route(f"{AUTH}/users", methods=["POST"])
    async def create_user() -> Response:
        body = _obj(await ctx.json_body())
        name = body.get("name")
        roles = body.get("roles", [])
        try:
            kvauth.check_name(name, "user name")
        except ValueError as e:
            raise BadInput(str(e)) from None
        password = await password_field(body)
        result = await propose("create_user", name=name, password=password, roles=roles)
        return json_response({"name": name, "roles": sorted(set(roles)), "revision": result["revision"]}, status=201)

    @app.route(f"{AUTH}/users/<name>", methods=["GET"])
    async def get_user(name: str) -> Response:
        doc = user_doc(name)
        if doc is None:
            return json_error(404, f"no such user: {name!r}", outcome="not_applied")
        return json_response(kvauth.public_user(doc))

    @app.route(f"{AUTH}/users/<name>", methods=["DELETE"])
    async def delete_user(name: str) -> Response:
        result = await propose("delete_user", name=name)
        return json_response({"name": name, "deleted": True, "revision": result["revision"]})

    @app.route(f"{AUTH}/users/<name>/password", methods=["PUT"])
    async def set_password(name: str) -> Response:
        p = caller()
        if not is_admin() and (p is None or p.name != name):
            return forbid(f"change the password of {name!r} (only their own, or with the admin role)")
        body = _obj(await ctx.json_body())
        revoke = body.get("revoke_tokens", False)
        if not isinstance(revoke, bool):
            raise BadInput("revoke_tokens must be true or false")
        password = await password_field(body)
        result = await propose("set_password", name=name, password=password, revoke_tokens=revoke)
        answer = {"name": name, "tokens_revoked": result.get("tokens_revoked", 0), "revision": result["revision"]}
        return json_response(answer)

    @app.route(f"{AUTH}/users/<name>/roles/<role>", methods=["PUT", "DELETE"])
    async def grant_or_revoke(name: str, role: str) -> Response:
        action = "grant" if request.method == "PUT" else "revoke"
        result = await propose(action, name=name, role=role)
        doc = user_doc(name)
        roles = doc.get("roles", []) if doc else []
        return json_response({"name": name, "roles": roles, "revision": result["revision"]})

    # ------------------------------------------------------------------ roles

    @app.route(f"{AUTH}/roles", methods=["GET"])
    async def list_roles() -> Response:
        builtin = {"name": kvauth.ADMIN_ROLE, "permissions": [{"prefix": "", "access": "readwrite"}], "builtin": True}
        return json_response({"roles": [builtin, *records("role")]})

    @app.route(f"{AUTH}/roles/<name>", methods=["PUT"])
    async def put_role(name: str) -> Response:
        body = _obj(await ctx.json_body())
        result = await propose("put_role", name=name, permissions=body.get("permissions"))
        status = 201 if result.get("created") else 200
        return json_response({"name": name, "created": bool(result.get("created")), "revision": result["revision"]}, status=status)

    @app.route(f"{AUTH}/roles/<name>", methods=["DELETE"])
    async def delete_role(name: str) -> Response:
        result = await propose("delete_role", name=name)
        return json_response({"name": name, "deleted": True, "revision": result["revision"]})

    # ------------------------------------------------------------------ bearer tokens

    def token_view(doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": kvauth.token_public_id(str(doc.get("id"))),
            "user": doc.get("user"),
            "created_ms": doc.get("created_ms"),
            "expires_at_ms": doc.get("expires_at_ms"),
        }

    @app.route(f"{AUTH}/tokens", methods=["POST"])
    async def issue_token() -> Response:
        p = caller()
        body = await ctx.json_body(required=False)
        ttl = _ttl(body, None, TOKEN_TTL_MAX_S)
        user = body.get("user") if isinstance(body, dict) and body.get("user") is not None else (p.name if p else None)
        if user is None:
            raise BadInput("field 'user' is required when authentication is off")
        if p is not None and user != p.name and not p.is_admin:
            return forbid(f"issue a token for {user!r}")
        token, digest = new_token()
        now = runtime.now_ms()
        expires = None if ttl is None else now + ttl * 1000
        result = await propose("put_token", id=digest, user=user, created_ms=now, expires_at_ms=expires)
        answer = {"token": token, "id": kvauth.token_public_id(digest), "user": user, "expires_at_ms": expires}
        return json_response({**answer, "revision": result["revision"]}, status=201)

    @app.route(f"{AUTH}/tokens", methods=["GET"])
    async def list_tokens() -> Response:
        p = caller()
        docs = records("token")
        if not is_admin() and p is not None:
            docs = [d for d in docs if d.get("user") == p.name]
        return json_response({"tokens": [token_view(d) for d in docs]})

    def find(kind: str, public_id: str) -> dict[str, Any] | None:
        if not 16 <= len(public_id) <= 64:
            return None
        hits = [d for d in records(kind) if str(d.get("id", "")).startswith(public_id)]
        return hits[0] if len(hits) == 1 else None

    @app.route(f"{AUTH}/tokens/<token_id>", methods=["DELETE"])
    async def revoke_token(token_id: str) -> Response:
        doc = find("token", token_id)
        p = caller()
        if doc is None:
            return json_error(404, "no such token", outcome="not_applied", id=token_id)
        if not is_admin() and (p is None or doc.get("user") != p.name):
            return forbid("revoke another user's token")
        result = await propose("delete_token", id=doc["id"])
        return json_response({"id": token_id, "revoked": True, "revision": result["revision"]})

    # ------------------------------------------------------------------ join tokens

    @app.route(f"{AUTH}/join-tokens", methods=["POST"])
    async def issue_join_token() -> Response:
        body = await ctx.json_body(required=False)
        ttl = _ttl(body, JOIN_TOKEN_TTL_DEFAULT_S, JOIN_TOKEN_TTL_MAX_S)
        token, digest = new_token(JOIN_TOKEN_PREFIX)
        now = runtime.now_ms()
        expires = now + (ttl or JOIN_TOKEN_TTL_DEFAULT_S) * 1000
        result = await propose("put_join_token", id=digest, created_ms=now, expires_at_ms=expires)
        answer = {"token": token, "id": kvauth.token_public_id(digest), "expires_at_ms": expires}
        return json_response({**answer, "revision": result["revision"]}, status=201)

    @app.route(f"{AUTH}/join-tokens", methods=["GET"])
    async def list_join_tokens() -> Response:
        now = runtime.now_ms()
        views = [
            {
                "id": kvauth.token_public_id(str(d.get("id"))),
                "created_ms": d.get("created_ms"),
                "expires_at_ms": d.get("expires_at_ms"),
                "expired": isinstance(d.get("expires_at_ms"), int) and d["expires_at_ms"] <= now,
            }
            for d in records("join")
        ]
        return json_response({"join_tokens": views})

    @app.route(f"{AUTH}/join-tokens/<token_id>", methods=["DELETE"])
    async def revoke_join_token(token_id: str) -> Response:
        doc = find("join", token_id)
        if doc is None:
            return json_error(404, "no such join token", outcome="not_applied", id=token_id)
        result = await propose("delete_join_token", id=doc["id"])
        return json_response({"id": token_id, "revoked": True, "revision": result["revision"]})
