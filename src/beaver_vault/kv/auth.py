"""Users, roles, tokens and join tokens: replicated records, their commands, and who may do what.

Theory of operation. Access control lives in the replicated state, beside the keys: every
change is a Raft command (``{"v":1,"op":"auth","action":...}``) applied by every node inside its
apply transaction, so a user created through one node is known to all of them as soon as they
have applied that entry (the API re-reads after a read barrier before it refuses, see
``api/auth_guard.py``). The records are JSON documents in a table of their own (``auth``: kind,
name, doc), never keys: no listing, watch, transaction or prefix delete can see or touch them.
They travel with the rest of the state machine in snapshots and backups.

No secret is ever in a command or a record: the API hashes a password (scrypt, a random salt
per user) and a bearer token (SHA-256 of 32 random bytes) before proposing, so the log, the
database, snapshots and backups hold only salts and digests. This module is pure: it never
hashes, draws random numbers or reads a clock (expiry times are stamped by the proposer).

Kinds and documents (``name`` is the record's key in its kind)::

    user   {"name", "password": {"alg":"scrypt","n","r","p","salt","hash"}, "roles": [..], "changed": idx}
    role   {"name", "permissions": [{"prefix": p, "access": "read"|"readwrite"}, ...]}
    token  {"id": sha256-hex, "user", "created_ms", "expires_at_ms": int|null}
    join   {"id": sha256-hex, "created_ms", "expires_at_ms": int}

The role ``admin`` is built in (never stored, cannot be defined or deleted): it grants read and
write on every key, membership (join, remove, transfer), backup and user management.

Permission rule: a permission covers a key if the key starts with its prefix (``""``: every
key); it covers a prefix request (listing, watch, prefix delete) only if the requested prefix
itself starts with the permission's prefix, so a listing never shows a key the caller could
not read one by one. ``readwrite`` includes ``read``. Deny unless some permission allows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from beaver_vault.kv.values import MAX_KEY_BYTES, CommandError, check_int, check_text

ADMIN_ROLE = "admin"
KINDS = ("user", "role", "token", "join")
ACCESS_LEVELS = ("read", "readwrite")
MAX_ROLES_PER_USER = 64
MAX_PERMISSIONS_PER_ROLE = 256
MAX_TOKENS_PER_USER = 100
MAX_JOIN_TOKENS = 100
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
SALT_RE = re.compile(r"^[0-9a-f]{16,128}$")

ACTIONS = (
    "bootstrap",  # create the first admin, only if no user exists yet (idempotent)
    "create_user",
    "delete_user",
    "set_password",
    "grant",
    "revoke",
    "put_role",
    "delete_role",
    "put_token",
    "delete_token",
    "put_join_token",
    "delete_join_token",
)


class AuthStore(Protocol):
    """The auth table, inside the apply transaction (part of ``KVStore``)."""

    def auth_get(self, kind: str, name: str) -> str | None: ...
    def auth_put(self, kind: str, name: str, doc: str) -> None: ...
    def auth_delete(self, kind: str, name: str) -> None: ...
    def auth_scan(self, kind: str) -> list[tuple[str, str]]:
        """Every (name, doc) of ``kind``, ordered by name."""
        ...


# --------------------------------------------------------------------------- validation


def check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise CommandError(
            f"{what} must be 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    return value


def check_password_hash(value: object) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != {"alg", "n", "r", "p", "salt", "hash"}:
        raise CommandError("password must be {alg, n, r, p, salt, hash}")
    if value["alg"] != "scrypt":
        raise CommandError("password alg must be scrypt")
    for k, hi in (("n", 2**20), ("r", 64), ("p", 16)):
        check_int(value[k], k)
        if not 1 <= value[k] <= hi:
            raise CommandError(f"scrypt {k} out of range")
    if not isinstance(value["salt"], str) or not SALT_RE.match(value["salt"]):
        raise CommandError("password salt must be 16-128 hex digits")
    if not isinstance(value["hash"], str) or not DIGEST_RE.match(value["hash"]):
        raise CommandError("password hash must be 64 hex digits")
    return dict(value)


def check_digest(value: object, what: str) -> str:
    if not isinstance(value, str) or not DIGEST_RE.match(value):
        raise CommandError(f"{what} must be 64 lowercase hex digits")
    return value


def check_permissions(value: object) -> list[dict[str, str]]:
    if not isinstance(value, list) or len(value) > MAX_PERMISSIONS_PER_ROLE:
        raise CommandError(f"permissions must be a list of at most {MAX_PERMISSIONS_PER_ROLE}")
    out: list[dict[str, str]] = []
    for i, p in enumerate(value):
        if not isinstance(p, dict) or set(p) != {"prefix", "access"}:
            raise CommandError(f"permissions[{i}] must be {{prefix, access}}")
        check_text(p["prefix"], f"permissions[{i}].prefix", max_bytes=MAX_KEY_BYTES, allow_empty=True)
        if p["access"] not in ACCESS_LEVELS:
            raise CommandError(f"permissions[{i}].access must be read or readwrite")
        out.append({"prefix": p["prefix"], "access": p["access"]})
    return out


def _opt_time(value: object, what: str) -> int | None:
    if value is None:
        return None
    check_int(value, what)
    return value  # type: ignore[return-value]


# --------------------------------------------------------------------------- the command

_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {  # action -> (required, optional)
    "bootstrap": (frozenset({"name", "password"}), frozenset()),
    "create_user": (frozenset({"name", "password"}), frozenset({"roles"})),
    "delete_user": (frozenset({"name"}), frozenset()),
    "set_password": (frozenset({"name", "password"}), frozenset({"revoke_tokens"})),
    "grant": (frozenset({"name", "role"}), frozenset()),
    "revoke": (frozenset({"name", "role"}), frozenset()),
    "put_role": (frozenset({"name", "permissions"}), frozenset()),
    "delete_role": (frozenset({"name"}), frozenset()),
    "put_token": (frozenset({"id", "user", "created_ms"}), frozenset({"expires_at_ms"})),
    "delete_token": (frozenset({"id"}), frozenset()),
    "put_join_token": (frozenset({"id", "created_ms", "expires_at_ms"}), frozenset()),
    "delete_join_token": (frozenset({"id"}), frozenset()),
}


@dataclass(frozen=True, slots=True)
class AuthCommand:
    """One change to the auth records; ``fields`` is validated for ``action`` at construction."""

    action: str
    fields: Mapping[str, Any]

    def __post_init__(self) -> None:
        if self.action not in _FIELDS:
            raise CommandError(f"unknown auth action: {self.action!r}"[:200])
        required, optional = _FIELDS[self.action]
        given = set(self.fields)
        if not required <= given <= required | optional:
            wrong = (required - given) | (given - required - optional)
            raise CommandError(f"bad fields for auth {self.action}: {sorted(wrong)!r}"[:200])
        f = dict(self.fields)
        if "name" in f:
            check_name(f["name"], "role name" if self.action.endswith("_role") else "user name")
        if "password" in f:
            f["password"] = check_password_hash(f["password"])
        if "role" in f:
            check_name(f["role"], "role")
        if "roles" in f:
            roles = f["roles"]
            if not isinstance(roles, list) or len(roles) > MAX_ROLES_PER_USER:
                raise CommandError(f"roles must be a list of at most {MAX_ROLES_PER_USER} names")
            f["roles"] = sorted({check_name(r, "role") for r in roles})
        if "permissions" in f:
            f["permissions"] = check_permissions(f["permissions"])
        if "id" in f:
            check_digest(f["id"], "token id")
        if "user" in f:
            check_name(f["user"], "user")
        for k in ("created_ms", "expires_at_ms"):
            if k in f:
                _opt_time(f[k], k)
        if self.action == "put_join_token" and f["expires_at_ms"] is None:
            raise CommandError("a join token must expire")
        if "revoke_tokens" in f and type(f["revoke_tokens"]) is not bool:
            raise CommandError("revoke_tokens must be true or false")
        if self.action in ("put_role", "delete_role") and f["name"] == ADMIN_ROLE:
            raise CommandError("the admin role is built in")
        object.__setattr__(self, "fields", f)

    def to_json(self) -> str:
        body = json.dumps(dict(sorted(self.fields.items())), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return f'{{"v":1,"op":"auth","action":{json.dumps(self.action)},"fields":{body}}}'


def auth_command(action: str, **fields: Any) -> bytes:
    """Encode an auth command (validated)."""
    return AuthCommand(action, fields).to_json().encode("utf-8")


def decode_auth(obj: Mapping[str, Any]) -> AuthCommand:
    if set(obj) != {"v", "op", "action", "fields"}:
        raise CommandError("auth command must have exactly v, op, action, fields")
    if not isinstance(obj["action"], str) or not isinstance(obj["fields"], dict):
        raise CommandError("auth action must be a string and fields an object")
    return AuthCommand(obj["action"], obj["fields"])


# --------------------------------------------------------------------------- apply


def _err(code: str, message: str) -> dict[str, Any]:
    return {"op": "auth", "error": message, "code": code}


def _load(store: AuthStore, kind: str, name: str) -> dict[str, Any] | None:
    doc = store.auth_get(kind, name)
    if doc is None:
        return None
    try:
        value = json.loads(doc)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _save(store: AuthStore, kind: str, name: str, doc: Mapping[str, Any]) -> None:
    store.auth_put(kind, name, json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True))


def _user_tokens(store: AuthStore, user: str) -> list[str]:
    out = []
    for tid, doc in store.auth_scan("token"):
        try:
            if json.loads(doc).get("user") == user:
                out.append(tid)
        except (ValueError, AttributeError):
            continue
    return out


def _other_admins(store: AuthStore, name: str) -> int:
    count = 0
    for uname, doc in store.auth_scan("user"):
        try:
            roles = json.loads(doc).get("roles", [])
        except (ValueError, AttributeError):
            continue
        count += uname != name and ADMIN_ROLE in roles
    return count


def apply_auth(store: AuthStore, index: int, cmd: AuthCommand) -> dict[str, Any]:
    """Apply ``cmd`` at ``index``. Never raises for a refused change: the result says why
    (``code``: ``not_found``, ``exists``, ``limit``, ``last_admin``: the last admin cannot be
    deleted or lose the role, so the cluster cannot lock itself out), identically everywhere."""
    f, a = cmd.fields, cmd.action
    done: dict[str, Any] = {"op": "auth", "action": a, "revision": index}
    if a == "bootstrap":
        if store.auth_scan("user"):
            return {**done, "created": False}
        _save(store, "user", f["name"], {"name": f["name"], "password": f["password"], "roles": [ADMIN_ROLE], "changed": index})
        return {**done, "created": True}
    if a == "create_user":
        if store.auth_get("user", f["name"]) is not None:
            return _err("exists", f"user {f['name']!r} exists")
        missing = [r for r in f.get("roles", []) if r != ADMIN_ROLE and store.auth_get("role", r) is None]
        if missing:
            return _err("not_found", f"no such role: {missing[0]!r}")
        doc = {"name": f["name"], "password": f["password"], "roles": f.get("roles", []), "changed": index}
        _save(store, "user", f["name"], doc)
        return done
    if a in ("delete_user", "set_password", "grant", "revoke"):
        user = _load(store, "user", f["name"])
        if user is None:
            return _err("not_found", f"no such user: {f['name']!r}")
        last_admin = ADMIN_ROLE in user.get("roles", []) and _other_admins(store, f["name"]) == 0
        if last_admin and (a == "delete_user" or (a == "revoke" and f["role"] == ADMIN_ROLE)):
            return _err("last_admin", f"{f['name']!r} is the last admin: make another admin first")
        if a == "delete_user":
            store.auth_delete("user", f["name"])
            for tid in _user_tokens(store, f["name"]):
                store.auth_delete("token", tid)
            return done
        if a == "set_password":
            user["password"], user["changed"] = f["password"], index
            _save(store, "user", f["name"], user)
            revoked = 0
            if f.get("revoke_tokens"):
                for tid in _user_tokens(store, f["name"]):
                    store.auth_delete("token", tid)
                    revoked += 1
            return {**done, "tokens_revoked": revoked}
        roles = set(user.get("roles", []))
        if a == "grant":
            if f["role"] != ADMIN_ROLE and store.auth_get("role", f["role"]) is None:
                return _err("not_found", f"no such role: {f['role']!r}")
            if f["role"] not in roles and len(roles) >= MAX_ROLES_PER_USER:
                return _err("limit", f"a user has at most {MAX_ROLES_PER_USER} roles")
            roles.add(f["role"])
        else:
            roles.discard(f["role"])
        user["roles"] = sorted(roles)
        _save(store, "user", f["name"], user)
        return done
    if a == "put_role":
        created = store.auth_get("role", f["name"]) is None
        _save(store, "role", f["name"], {"name": f["name"], "permissions": f["permissions"]})
        return {**done, "created": created}
    if a == "delete_role":
        if store.auth_get("role", f["name"]) is None:
            return _err("not_found", f"no such role: {f['name']!r}")
        store.auth_delete("role", f["name"])
        for uname, _ in store.auth_scan("user"):  # a deleted role is granted to nobody
            user = _load(store, "user", uname)
            if user is not None and f["name"] in user.get("roles", []):
                user["roles"] = [r for r in user["roles"] if r != f["name"]]
                _save(store, "user", uname, user)
        return done
    if a == "put_token":
        if store.auth_get("user", f["user"]) is None:
            return _err("not_found", f"no such user: {f['user']!r}")
        if len(_user_tokens(store, f["user"])) >= MAX_TOKENS_PER_USER:
            return _err("limit", f"a user has at most {MAX_TOKENS_PER_USER} tokens; revoke some")
        doc = {"id": f["id"], "user": f["user"], "created_ms": f["created_ms"], "expires_at_ms": f.get("expires_at_ms")}
        _save(store, "token", f["id"], doc)
        return done
    if a == "put_join_token":
        if len(store.auth_scan("join")) >= MAX_JOIN_TOKENS:
            return _err("limit", f"at most {MAX_JOIN_TOKENS} join tokens; revoke some")
        _save(store, "join", f["id"], {"id": f["id"], "created_ms": f["created_ms"], "expires_at_ms": f["expires_at_ms"]})
        return done
    kind = "token" if a == "delete_token" else "join"
    if store.auth_get(kind, f["id"]) is None:
        return _err("not_found", "no such token")
    store.auth_delete(kind, f["id"])
    return done


# --------------------------------------------------------------------------- permissions


@dataclass(frozen=True, slots=True)
class Grant:
    prefix: str
    access: str  # read | readwrite


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from, and what its roles allow (resolved when it authenticated)."""

    name: str
    roles: tuple[str, ...]
    grants: tuple[Grant, ...]
    via: str  # "password" | "token"
    token_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    def may_key(self, key: str, access: str) -> bool:
        """May this principal ``access`` ("read" | "write") the single ``key``?"""
        if self.is_admin:
            return True
        return any(key.startswith(g.prefix) and _covers(g.access, access) for g in self.grants)

    def may_prefix(self, prefix: str, access: str) -> bool:
        """May it ``access`` every key that starts with ``prefix`` (listing, watch, prefix delete)?"""
        if self.is_admin:
            return True
        return any(prefix.startswith(g.prefix) and _covers(g.access, access) for g in self.grants)

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.name,
            "roles": list(self.roles),
            "permissions": [{"prefix": g.prefix, "access": g.access} for g in self.grants],
            "admin": self.is_admin,
            "via": self.via,
        }


def _covers(have: str, want: str) -> bool:
    return have == "readwrite" or (have == "read" and want == "read")


def grants_of(roles: Iterable[str], role_docs: Mapping[str, Mapping[str, Any]]) -> tuple[Grant, ...]:
    """The union of the roles' permissions (unknown roles grant nothing)."""
    out: set[Grant] = set()
    for r in roles:
        for p in role_docs.get(r, {}).get("permissions", []):
            if isinstance(p, dict) and isinstance(p.get("prefix"), str) and p.get("access") in ACCESS_LEVELS:
                out.add(Grant(p["prefix"], p["access"]))
    return tuple(sorted(out, key=lambda g: (g.prefix, g.access)))


def public_user(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A user record as the API shows it: never the password hash or salt."""
    return {"name": doc.get("name"), "roles": list(doc.get("roles", [])), "changed_revision": doc.get("changed")}


def token_public_id(digest: str) -> str:
    """The handle shown for a token: the first 16 hex digits of its digest (not enough to use it)."""
    return digest[:16]
