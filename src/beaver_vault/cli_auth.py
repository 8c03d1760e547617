"""``beaver-vault auth ...``: users, roles, bearer tokens, join tokens and whoami.

Theory of operation: each subcommand makes one call on ``/api/v1/auth`` with the client
library (``Client.auth``), with the same options as every client command (``--endpoints``,
TLS, ``--user``/``--password`` or ``--token``), and prints the answer (JSON with ``--json``).
A new user's or a changed password is read from ``--new-password``, else from a terminal
prompt, else from the first line of stdin, so it need not appear in the process list. A token
is printed once, on stdout alone, so ``TOKEN=$(beaver-vault auth token issue)`` works.

Exit codes are the client commands' (0 ok, 1 refused or not found, 2 usage, 3 unavailable).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

from beaver_vault.client.cli_common import EXIT_CODES, EXIT_OK, UsageError, common_parser, guarded, make_client

Handler = Callable[[argparse.Namespace, Mapping[str, str]], int]


def _new_password(args: argparse.Namespace) -> str:
    if getattr(args, "new_password", None):
        return str(args.new_password)
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != first:
            raise UsageError("the passwords differ")
        return first
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise UsageError("no password given (--new-password, a terminal, or a line on stdin)")
    return line


def _show(args: argparse.Namespace, answer: Any, text: str | None = None) -> int:
    if args.json or text is None:
        print(json.dumps(answer, ensure_ascii=False, indent=None if args.json else 2))
    else:
        print(text)
    return EXIT_OK


def _call(args: argparse.Namespace, env: Mapping[str, str], method: str, path: str, body: Any = None) -> Any:
    with make_client(args, env) as client:
        return client.auth(method, path, body)


# --- handlers -----------------------------------------------------------------------------------


def _whoami(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    a = _call(args, env, "GET", "whoami")
    if a.get("user") is None:
        return _show(args, a, "no user (authentication is off)" if not a.get("auth_enabled") else "no user")
    return _show(args, a, f"{a['user']} (roles: {', '.join(a.get('roles', [])) or 'none'}; via {a.get('via')})")


def _user(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    op = args.op
    if op == "list":
        a = _call(args, env, "GET", "users")
        lines = [f"{u['name']}\t{','.join(u['roles'])}" for u in a["users"]]
        return _show(args, a, "\n".join(lines) or "(no users)")
    if op == "create":
        body = {"name": args.name, "password": _new_password(args), "roles": args.role or []}
        return _show(args, _call(args, env, "POST", "users", body), f"created user {args.name}")
    if op == "delete":
        return _show(args, _call(args, env, "DELETE", f"users/{args.name}"), f"deleted user {args.name}")
    if op == "passwd":
        body = {"password": _new_password(args), "revoke_tokens": args.revoke_tokens}
        a = _call(args, env, "PUT", f"users/{args.name}/password", body)
        return _show(args, a, f"password of {args.name} changed ({a.get('tokens_revoked', 0)} tokens revoked)")
    method = "PUT" if op == "grant" else "DELETE"
    a = _call(args, env, method, f"users/{args.name}/roles/{args.role_name}")
    return _show(args, a, f"{args.name}: roles {', '.join(a.get('roles', [])) or 'none'}")


def _role(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.op == "list":
        a = _call(args, env, "GET", "roles")
        lines = [
            f"{r['name']}\t" + " ".join(f"{p['access']}:{p['prefix']!r}" for p in r["permissions"]) for r in a["roles"]
        ]
        return _show(args, a, "\n".join(lines))
    if args.op == "delete":
        return _show(args, _call(args, env, "DELETE", f"roles/{args.name}"), f"deleted role {args.name}")
    perms = [{"prefix": p, "access": "read"} for p in args.read or []]
    perms += [{"prefix": p, "access": "readwrite"} for p in args.readwrite or []]
    a = _call(args, env, "PUT", f"roles/{args.name}", {"permissions": perms})
    return _show(args, a, f"{'created' if a.get('created') else 'replaced'} role {args.name}")


def _token(args: argparse.Namespace, env: Mapping[str, str], kind: str) -> int:
    if args.op == "list":
        a = _call(args, env, "GET", kind)
        items = a["tokens" if kind == "tokens" else "join_tokens"]
        lines = [f"{t['id']}\t{t.get('user', '')}\texpires_at_ms={t.get('expires_at_ms')}" for t in items]
        return _show(args, a, "\n".join(lines) or "(none)")
    if args.op == "revoke":
        return _show(args, _call(args, env, "DELETE", f"{kind}/{args.id}"), f"revoked {args.id}")
    body: dict[str, Any] = {} if args.ttl is None else {"ttl_s": args.ttl}
    if kind == "tokens" and getattr(args, "for_user", None):
        body["user"] = args.for_user
    a = _call(args, env, "POST", kind, body)
    return _show(args, a, str(a["token"]))


# --- parser -------------------------------------------------------------------------------------


def add_auth_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = common_parser()
    auth = sub.add_parser(
        "auth",
        help="users, roles, tokens and join tokens (authentication)",
        description="Manage authentication: users, roles, bearer tokens, join tokens; whoami.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = auth.add_subparsers(dest="auth_command", required=True, metavar="{whoami,user,role,token,join-token}")

    def leaf(parent: Any, name: str, help_text: str, handler: Handler, **defaults: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text, parents=[common])
        p.set_defaults(handler=guarded(handler), **defaults)
        return p

    leaf(groups, "whoami", "who the credentials belong to", _whoami)

    user = groups.add_parser("user", help="users (admin; passwd also for oneself)").add_subparsers(
        dest="op", required=True
    )
    leaf(user, "list", "list users and their roles", _user)
    p = leaf(user, "create", "create a user (password: --new-password, a prompt, or stdin)", _user)
    p.add_argument("name")
    p.add_argument("--role", action="append", help="grant this role (repeatable; 'admin' is built in)")
    p.add_argument("--new-password", default=None, help="the password (visible to other local users: prefer stdin)")
    p = leaf(user, "delete", "delete a user and revoke their tokens", _user)
    p.add_argument("name")
    p = leaf(user, "passwd", "set a user's password", _user)
    p.add_argument("name")
    p.add_argument("--new-password", default=None)
    p.add_argument("--revoke-tokens", action="store_true", help="also revoke the user's bearer tokens")
    for op, text in (("grant", "grant a role to a user"), ("revoke", "revoke a role from a user")):
        p = leaf(user, op, text, _user)
        p.add_argument("name")
        p.add_argument("role_name", metavar="ROLE")

    role = groups.add_parser("role", help="roles: permissions on key prefixes (admin)").add_subparsers(
        dest="op", required=True
    )
    leaf(role, "list", "list roles and their permissions", _role)
    p = leaf(role, "put", "create or replace a role", _role)
    p.add_argument("name")
    p.add_argument("--read", action="append", metavar="PREFIX", help="read access to keys under PREFIX")
    p.add_argument("--readwrite", action="append", metavar="PREFIX", help="read and write access under PREFIX")
    p = leaf(role, "delete", "delete a role (and its grants)", _role)
    p.add_argument("name")

    for name, kind, text in (
        ("token", "tokens", "bearer tokens (one's own; an admin's: anyone's)"),
        ("join-token", "join-tokens", "join tokens for new nodes (admin)"),
    ):
        group = groups.add_parser(name, help=text).add_subparsers(dest="op", required=True)

        def handler(args: argparse.Namespace, env: Mapping[str, str], kind: str = kind) -> int:
            return _token(args, env, kind)

        p = leaf(group, "issue" if kind == "tokens" else "create", f"make a new {name} (printed once)", handler)
        p.add_argument("--ttl", type=int, metavar="S", help="lifetime in seconds" + (" (default 3600)" if kind != "tokens" else ""))
        if kind == "tokens":
            p.add_argument("--for-user", default=None, help="for another user (admin)")
        leaf(group, "list", f"list {name}s (ids, never the tokens)", handler)
        p = leaf(group, "revoke", f"revoke a {name} by its id", handler)
        p.add_argument("id")
