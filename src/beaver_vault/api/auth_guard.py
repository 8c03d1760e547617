"""The one place where every HTTP request and WebSocket is authenticated and authorised.

Theory of operation. With authentication on (``auth_enabled``), :class:`AuthGuard` is an ASGI
layer in front of everything a node serves: the Quart routes, the fast path (``fast.py``), the
watches (SSE and WebSocket), the console's API calls and ``/metrics``. It sits behind the
request limits (``limits.py``) and before any route, so a route that forgets to check cannot
exist: :func:`classify` maps (method, path, query) to what the request needs, and anything it
does not know needs the ``admin`` role (deny by default).

Credentials: HTTP Basic (user name and password) or ``Authorization: Bearer <token>``. No or
bad credentials: 401 with ``WWW-Authenticate``; a caller whose roles do not allow the request:
403. Both have a JSON body naming the problem. Failed attempts are rate-limited per client
address (a small bucket: :class:`FailureLimiter`; 429 with ``Retry-After`` beyond it).

Effective at once on every node: the records are read from this node's applied state. Before
a node refuses (unknown user or token, wrong password, missing permission) it runs a read
barrier (``read_index`` through the leader) and looks again, so a user, grant or token the
leader has committed is honoured here too; a revocation is honoured as soon as this node has
applied it.

Forwarded requests: the follower checks the caller, then forwards the request WITH the
caller's own ``Authorization`` header (``forward.py``), and the leader checks it again. The
leader never trusts a follower's word ("already checked" headers can be forged by anyone who
reaches the leader's port; the caller's credential cannot).

What the routes still decide (they read the principal from the scope, ``principal_of``):
a transaction's keys (``kv_routes``), a join's token (``raft_routes``) and the self-or-admin
rules of ``/api/v1/auth/...`` (``auth_routes``).

Long-lived requests (watches): the check above is made when the stream opens. The guard also
leaves in the scope a re-check (``recheck_of``) that the watch routes run whenever an auth
record has been applied here and at every keep-alive period: if the same credentials no
longer authenticate (user or token deleted, password changed, token expired) or no longer
allow the request (a role revoked or changed), the stream ends with 401/403 before it sends
anything more. Like every refusal, it reads this node's applied records, without a barrier.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, cast
from urllib.parse import parse_qs

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from beaver_vault.api.keys import key_from_path, raw_path_of
from beaver_vault.api.limits import client_address
from beaver_vault.api.passwords import PasswordChecker, token_digest
from beaver_vault.api.validation import BadInput
from beaver_vault.errors import BeaverVaultError
from beaver_vault.kv.auth import Principal, grants_of
from beaver_vault.node.runtime import NodeRuntime

PRINCIPAL_SCOPE_KEY = "beaver_vault.principal"
RECHECK_SCOPE_KEY = "beaver_vault.auth_recheck"
UI_HEADER = "x-beaver-vault-ui"  # the console's calls: answer 401 without a Basic challenge
JOIN_TOKEN_HEADER = "X-Beaver-Vault-Join-Token"
BARRIER_TIMEOUT_S = 1.0

# What a request needs.
PUBLIC = "public"
AUTHENTICATED = "authenticated"
ADMIN = "admin"
JOIN = "join"  # admin, or a join token (checked by the join route)


@dataclass(frozen=True, slots=True)
class AuthOptions:
    enabled: bool = False
    health_public: bool = True  # /health and /ready
    metrics_public: bool = False  # /metrics
    failures_burst: int = 10  # failed authentications a client may make at once
    failures_per_s: float = 1.0  # and then per second


@dataclass(frozen=True, slots=True)
class Need:
    kind: str  # PUBLIC | AUTHENTICATED | ADMIN | JOIN | "key" | "prefix"
    target: str = ""  # the key or prefix
    access: str = "read"  # read | write

    def describe(self) -> str:
        if self.kind == "key":
            return f"{self.access} access to key {self.target!r}"
        if self.kind == "prefix":
            return f"{self.access} access to every key under prefix {self.target!r}"
        if self.kind == JOIN:
            return "the admin role or a join token"
        return f"the {self.kind} role" if self.kind == ADMIN else self.kind


_AUTHENTICATED_PATHS = frozenset(
    {
        "/api/v1/status",
        "/api/v1/raft/nodes",
        "/api/v1/events",
        "/api/v1/stats",
        "/api/v1/txn",  # each key is checked by the route
        "/api/v1/auth/whoami",
        "/api/v1/auth/tokens",  # the caller's own tokens; the route refines
        "/ui/peers",
        "/ui/stats",
    }
)
_ADMIN_PATHS = frozenset({"/api/v1/raft/remove", "/api/v1/raft/transfer-leadership", "/api/v1/backup"})


def _query_arg(scope: Scope, name: str) -> str | None:
    """The first value of query argument ``name``, decoded as Werkzeug does (UTF-8, replace)."""
    qs = cast(bytes, scope.get("query_string", b"")).decode("latin-1")
    values = parse_qs(qs, keep_blank_values=True, encoding="utf-8", errors="replace").get(name)
    return values[0] if values else None


def classify(scope: Scope, opts: AuthOptions) -> Need:
    """What the request in ``scope`` needs (deny by default: unknown paths need admin)."""
    path = cast(str, scope.get("path", ""))
    method = cast(str, scope.get("method", "GET")).upper()
    if path in ("/health", "/ready"):
        return Need(PUBLIC if opts.health_public else AUTHENTICATED)
    if path == "/metrics":
        return Need(PUBLIC if opts.metrics_public else AUTHENTICATED)
    if path in _AUTHENTICATED_PATHS:
        return Need(AUTHENTICATED)
    if path in ("/", "/ui/", "/openapi.json", "/docs") or (path.startswith("/ui/") and "/" not in path[4:]):
        return Need(PUBLIC)  # static files: the page, its scripts, the API description
    if path.startswith("/api/v1/kv/"):
        access = "read" if method in ("GET", "HEAD") else "write"
        try:
            return Need("key", key_from_path(raw_path_of(scope)), access)
        except BadInput:
            return Need(AUTHENTICATED)  # the route answers 400; nothing is read or written
    if path == "/api/v1/kv":
        return Need("prefix", _query_arg(scope, "prefix") or "", "read" if method in ("GET", "HEAD") else "write")
    if path in ("/api/v1/watch", "/api/v1/watch/ws"):
        return Need("prefix", _query_arg(scope, "prefix") or "", "read")
    if path == "/api/v1/raft/join":
        return Need(JOIN)
    if path in _ADMIN_PATHS:
        return Need(ADMIN)
    if path.startswith("/api/v1/auth/tokens/"):
        return Need(AUTHENTICATED)  # revoking one's own token; the route refines
    if path.startswith("/api/v1/auth/users/") and path.endswith("/password") and method == "PUT":
        return Need(AUTHENTICATED)  # one's own password; the route refines
    return Need(ADMIN)


def allowed(principal: Principal, need: Need) -> bool:
    if need.kind in (PUBLIC, AUTHENTICATED, JOIN):
        return True  # JOIN: the route looks at the join token unless the caller is an admin
    if need.kind == "key":
        return principal.may_key(need.target, need.access)
    if need.kind == "prefix":
        return principal.may_prefix(need.target, need.access)
    return principal.is_admin


class FailureLimiter:
    """A token bucket of failed authentications per client address (bounded table)."""

    def __init__(self, burst: int, per_s: float, tracked_max: int = 10_000) -> None:
        self.burst, self.per_s, self.tracked_max = burst, per_s, tracked_max
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, client: str, now: float) -> float:
        tokens, at = self._buckets.get(client, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.per_s)

    def wait_s(self, client: str, now: float) -> float:
        """0 if ``client`` may try now, else seconds until it may."""
        level = self._level(client, now)
        return 0.0 if level >= 1.0 else (1.0 - level) / self.per_s

    def failed(self, client: str, now: float) -> None:
        self._buckets[client] = (max(0.0, self._level(client, now) - 1.0), now)
        self._buckets.move_to_end(client)
        while len(self._buckets) > self.tracked_max:
            self._buckets.popitem(last=False)


class AuthError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


class Authenticator:
    """Turns credentials into a :class:`Principal` from the applied auth records."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime = runtime
        self.passwords = PasswordChecker()

    def _doc(self, kind: str, name: str) -> dict[str, Any] | None:
        raw = self.runtime.auth_get(kind, name)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def _principal(self, user: dict[str, Any], via: str, token_id: str | None = None) -> Principal:
        roles = tuple(sorted(r for r in user.get("roles", []) if isinstance(r, str)))
        role_docs = {r: d for r in roles if (d := self._doc("role", r)) is not None}
        return Principal(str(user.get("name")), roles, grants_of(roles, role_docs), via, token_id)

    async def barrier(self) -> None:
        """Catch up with the cluster before refusing (best effort, bounded). The leader takes a
        read barrier. A follower cannot (``read_index`` is the leader's), so it waits for the
        commit index the next heartbeats bring (a few heartbeat intervals at most) and for its
        applied index to reach it: what the leader had committed when the caller was told
        "created" is then applied here."""
        rt = self.runtime
        try:
            with trio.move_on_after(BARRIER_TIMEOUT_S + 0.5):
                if rt.status().role == "leader":
                    await rt.read_barrier(timeout_s=BARRIER_TIMEOUT_S)
                    return
                ro = getattr(rt, "options", None)  # a test's stand-in runtime has none
                beat_s = ro.tick_ms * ro.heartbeat_ticks / 1000 if ro is not None else 0.1
                start_commit = rt.status().commit_index
                with trio.move_on_after(min(BARRIER_TIMEOUT_S, 3 * beat_s + 0.05)):
                    while rt.status().commit_index <= start_commit:
                        await trio.sleep(beat_s / 4)
                while rt.applied_index() < rt.status().commit_index:
                    await trio.sleep(0.005)
        except BeaverVaultError:
            pass

    async def resolve(self, header: str) -> Principal | None:
        """The principal of an ``Authorization`` header value; None if it does not authenticate.
        Raises AuthError(401) for a malformed header or an unknown scheme."""
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            if not value:
                raise AuthError(401, "empty bearer token")
            digest = token_digest(value)
            tok = self._doc("token", digest)
            if tok is None:
                return None
            expires = tok.get("expires_at_ms")
            if isinstance(expires, int) and expires <= self.runtime.now_ms():
                return None
            user = self._doc("user", str(tok.get("user")))
            return None if user is None else self._principal(user, "token", digest)
        if scheme.lower() == "basic":
            try:
                text = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise AuthError(401, "malformed Basic credentials (base64 of user:password expected)") from None
            name, sep, password = text.partition(":")
            if not sep:
                raise AuthError(401, "malformed Basic credentials (user:password expected)")
            user = self._doc("user", name)
            if user is None:
                await self.passwords.burn(password)  # as slow as a wrong password
                return None
            if not await self.passwords.verify(name, password, user.get("password")):
                return None
            return self._principal(user, "password")
        raise AuthError(401, f"unsupported authorization scheme {scheme[:20]!r}: use Basic or Bearer")

    def join_token_valid(self, token: str) -> bool:
        doc = self._doc("join", token_digest(token))
        if doc is None:
            return False
        expires = doc.get("expires_at_ms")
        return isinstance(expires, int) and expires > self.runtime.now_ms()


def principal_of(scope: Mapping[str, Any]) -> Principal | None:
    p = scope.get(PRINCIPAL_SCOPE_KEY)
    return p if isinstance(p, Principal) else None


Recheck = Callable[[], Awaitable["AuthError | None"]]


def recheck_of(scope: Mapping[str, Any]) -> Recheck | None:
    """The re-check of an authenticated request's credentials (None with authentication off,
    or for a public route): the refusal it would get now, or None if it is still allowed."""
    r = scope.get(RECHECK_SCOPE_KEY)
    return cast(Recheck, r) if callable(r) else None


def _header(scope: Scope, name: bytes) -> str | None:
    for n, v in cast(list[tuple[bytes, bytes]], scope.get("headers", [])):
        if n.lower() == name:
            return v.decode("latin-1")
    return None


class AuthGuard:
    """The ASGI layer (see the module's docstring)."""

    def __init__(
        self, app: Any, runtime: NodeRuntime, opts: AuthOptions, on_refusal: Any = None
    ) -> None:
        self.app = app
        self.on_refusal = on_refusal  # counts refusals in /metrics (reason unauthenticated|forbidden|login_rate)
        self.opts = opts
        self.auth = Authenticator(runtime)
        self.failures = FailureLimiter(opts.failures_burst, opts.failures_per_s)
        self.refused: dict[int, int] = {}

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        need = classify(scope, self.opts)
        header = _header(scope, b"authorization")
        try:
            principal = await self.check(scope, need, header)
        except AuthError as e:
            self.refused[e.status] = self.refused.get(e.status, 0) + 1
            if self.on_refusal is not None:
                self.on_refusal({401: "unauthenticated", 403: "forbidden"}.get(e.status, "login_rate"))
            await self._refuse(scope, send, e)
            return
        if principal is not None and header is not None:
            cast(dict[str, Any], scope)[PRINCIPAL_SCOPE_KEY] = principal
            cast(dict[str, Any], scope)[RECHECK_SCOPE_KEY] = partial(self.still_allowed, header, need)
        await self.app(scope, receive, send)

    async def still_allowed(self, header: str, need: Need) -> AuthError | None:
        """Would the credentials that opened a long-lived request still get it now? The refusal
        if not (401: they no longer authenticate; 403: they no longer allow it), else None."""
        try:
            principal = await self.auth.resolve(header)
        except AuthError as e:
            return e
        if principal is None:
            return AuthError(
                401, "credentials no longer valid (the user or token was deleted, the password changed, or the token expired)"
            )
        if not allowed(principal, need):
            return AuthError(403, f"user {principal.name!r} no longer has {need.describe()}", user=principal.name)
        return None

    async def check(self, scope: Scope, need: Need, header: str | None) -> Principal | None:
        """The caller of a request needing ``need``, from its ``Authorization`` header."""
        if need.kind == PUBLIC:
            return None
        if header is None:
            if need.kind == JOIN:
                return None  # the join route wants a join token instead
            raise AuthError(401, "authentication required: send Basic credentials or a Bearer token", need=need.describe())
        client = client_address(scope)
        wait = self.failures.wait_s(client, trio.current_time())
        if wait > 0:
            raise AuthError(429, "too many failed logins from this client; retry later", retry_after=math.ceil(wait))
        try:
            principal = await self.auth.resolve(header)
            if principal is None:
                await self.auth.barrier()  # a user or token just created elsewhere?
                principal = await self.auth.resolve(header)
        except AuthError:
            self.failures.failed(client, trio.current_time())  # a malformed header counts too
            raise
        if principal is None:
            self.failures.failed(client, trio.current_time())
            raise AuthError(401, "invalid credentials (unknown user, wrong password, or unknown or expired token)")
        if not allowed(principal, need):
            await self.auth.barrier()  # a grant just made elsewhere?
            principal = await self.auth.resolve(header) or principal
            if not allowed(principal, need):
                raise AuthError(403, f"user {principal.name!r} lacks {need.describe()}", user=principal.name)
        return principal

    async def _refuse(self, scope: Scope, send: ASGISendCallable, e: AuthError) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": f"{e.status}: {e.message}"[:120]})
            return
        body_obj: dict[str, Any] = {"error": e.message, "outcome": "not_applied", **e.extra}
        headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
        if e.status == 401:
            ui = _header(scope, UI_HEADER.encode()) is not None
            challenge = b'Bearer realm="beaver-vault"' if ui else b'Basic realm="beaver-vault", Bearer realm="beaver-vault"'
            headers.append((b"www-authenticate", challenge))
        if "retry_after" in e.extra:
            headers.append((b"retry-after", str(e.extra["retry_after"]).encode()))
        body = json.dumps(body_obj, separators=(",", ":")).encode()
        headers.append((b"content-length", str(len(body)).encode()))
        length = _header(scope, b"content-length")
        if _header(scope, b"transfer-encoding") is not None or (length is not None and length.strip() not in ("", "0")):
            headers.append((b"connection", b"close"))  # the body is left unread
        await send({"type": "http.response.start", "status": e.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
