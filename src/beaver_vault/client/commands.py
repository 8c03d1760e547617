"""The client subcommands of ``beaver-vault``: put, get, del, list, watch, txn, status, members,
join, remove, transfer-leadership.

Theory of operation: ``beaver_vault.cli`` (the composition root) calls
:func:`add_client_commands` on its subparsers; each subcommand parses its arguments, opens a
:class:`~beaver_vault.client.Client` on ``--endpoints`` (else ``BEAVER_VAULT_ENDPOINTS``, else
``http://127.0.0.1:8000``), makes one or a few calls and prints the answer: for people by
default, as JSON with ``--json`` (one document, or one line per event for ``watch``). Every
``ClusterError`` becomes a one-line message on stderr and an exit code (see ``EXIT_CODES``), so
scripts can tell "no" (1) from "you asked wrong" (2) from "the cluster could not say" (3).
``watch`` runs the async client under anyio so that ``--duration`` can bound it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import anyio

from beaver_vault.client import (
    AsyncClient,
    BadRequest,
    Client,
    ClusterError,
    NotFound,
    PreconditionFailed,
    RetryPolicy,
    WatchEvent,
)

EXIT_OK = 0
EXIT_NO = 1  # not found, precondition failed, a transaction whose compare failed, a refusal (409)
EXIT_USAGE = 2  # bad command line or input, or a request the server rejected as invalid (400)
EXIT_UNAVAILABLE = 3  # no node could answer, the outcome of a write is unknown, a server error

ENDPOINTS_ENV = "BEAVER_VAULT_ENDPOINTS"
CACERT_ENV = "BEAVER_VAULT_CACERT"
USER_ENV = "BEAVER_VAULT_USER"
PASSWORD_ENV = "BEAVER_VAULT_PASSWORD"
TOKEN_ENV = "BEAVER_VAULT_TOKEN"
DEFAULT_ENDPOINT = "http://127.0.0.1:8000"

EXIT_CODES = """\
endpoints:
  --endpoints URL,URL,... or the environment variable BEAVER_VAULT_ENDPOINTS
  (default http://127.0.0.1:8000); any node will do, the others are tried if it is down.

credentials (a cluster with authentication on):
  --user NAME with --password (or BEAVER_VAULT_USER, BEAVER_VAULT_PASSWORD), or
  --token TOKEN (or BEAVER_VAULT_TOKEN). Without: no credentials (development mode).

exit codes:
  0  ok
  1  not found, precondition failed (If-Match / --if-absent), a txn whose compare failed,
     a request the cluster refused (409), or credentials refused (401, 403)
  2  usage error: bad arguments or input, or a request the server rejected as invalid
  3  unavailable (no node answered, no leader), the outcome of a write is unknown, or a
     server error
"""


class UsageError(Exception):
    """A bad argument found after parsing (invalid JSON, conflicting options): exit 2."""


Handler = Callable[[argparse.Namespace, Mapping[str, str]], int]


# --- parser -------------------------------------------------------------------------------------


def common_parser() -> argparse.ArgumentParser:
    """The options every client subcommand takes (endpoints, output, TLS, credentials, retries)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--endpoints",
        metavar="URL,URL,...",
        default=None,
        help=f"node HTTP URLs (default: ${ENDPOINTS_ENV} or {DEFAULT_ENDPOINT})",
    )
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    common.add_argument(
        "--cacert", metavar="FILE", default=None, help=f"CA certificate for https endpoints (default: ${CACERT_ENV})"
    )
    common.add_argument(
        "--cert", dest="cert_file", metavar="FILE", default=None, help="client certificate (PEM), with --key"
    )
    common.add_argument("--key", dest="cert_key_file", metavar="FILE", default=None, help="its private key (PEM)")
    common.add_argument(
        "--timeout", type=float, default=15.0, metavar="S", help="seconds per HTTP attempt (default: 15)"
    )
    common.add_argument(
        "--attempts", type=int, default=8, metavar="N", help="HTTP attempts over all endpoints (default: 8)"
    )
    common.add_argument("--user", default=None, help=f"user name, with a password (default: ${USER_ENV})")
    common.add_argument(
        "--password",
        default=None,
        help=f"the user's password (default: ${PASSWORD_ENV}; else asked for on a terminal)",
    )
    common.add_argument("--token", default=None, help=f"bearer token instead of a user (default: ${TOKEN_ENV})")
    common.add_argument(
        "--transport",
        choices=("auto", "http", "pipelined"),
        default=None,
        help="auto: the pipelined protocol where a node offers it, else HTTP; or only one of them "
        "(default: $BEAVER_VAULT_TRANSPORT or auto)",
    )
    return common


def add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the client subcommands on the ``beaver-vault`` subparsers."""
    common = common_parser()

    def add(name: str, help_text: str, handler: Handler, description: str | None = None) -> argparse.ArgumentParser:
        parser = sub.add_parser(
            name,
            help=help_text,
            description=description or help_text,
            parents=[common],
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )
        parser.set_defaults(handler=_guarded(handler))
        return parser

    p = add(
        "put",
        "store a JSON document at a key",
        _cmd_put,
        "Store a JSON document at KEY. VALUE is JSON ('{\"name\": \"a\"}', '42', '\"text\"'); "
        "without VALUE (or with -) it is read from stdin.",
    )
    p.add_argument("key", metavar="KEY")
    p.add_argument("value", metavar="VALUE", nargs="?", default="-")
    p.add_argument("--string", action="store_true", help="store VALUE as a JSON string, verbatim")
    p.add_argument("--if-revision", type=int, metavar="REV", help="only if KEY is at this mod revision")
    p.add_argument("--if-absent", action="store_true", help="only if KEY does not exist")
    p.add_argument("--ttl", metavar="TTL", help="delete KEY after this long: 30s, 5m, 500ms")

    p = add("get", "print the JSON document at a key", _cmd_get)
    p.add_argument("key", metavar="KEY")
    p.add_argument("--meta", action="store_true", help="print {key, value, create_revision, mod_revision, version}")

    p = add(
        "del",
        "delete a key, or every key under a prefix",
        _cmd_del,
        "Delete KEY, or with --prefix every key under PREFIX (atomically). Deleting a key that "
        "does not exist exits with 1.",
    )
    p.add_argument("key", metavar="KEY", nargs="?")
    p.add_argument("--if-revision", type=int, metavar="REV", help="only if KEY is at this mod revision")
    p.add_argument("--prefix", metavar="PREFIX", help="delete every key under PREFIX instead")
    p.add_argument("--all", action="store_true", help="allow an empty --prefix (deletes every key)")

    p = add("list", "list keys (and values) under a prefix, in key order", _cmd_list)
    p.add_argument("prefix", metavar="PREFIX", nargs="?", default="")
    p.add_argument("--keys-only", action="store_true", help="keys without values")
    p.add_argument("--limit", type=int, metavar="N", help="one page of at most N keys (default: every key)")
    p.add_argument("--after", metavar="KEY", help="start after KEY (exclusive; with --limit)")
    p.add_argument("--page-size", type=int, default=500, metavar="N", help="keys per request (default: 500)")

    p = add(
        "watch",
        "print changes under a prefix as they happen",
        _cmd_watch,
        "Print every change under PREFIX, in revision order, reconnecting (to another node if "
        "needed) without gap or duplicate. Human output: REVISION TYPE KEY [VALUE]; with --json "
        "one JSON object per line. Stops after --count events or --duration seconds (exit 0).",
    )
    p.add_argument("prefix", metavar="PREFIX", nargs="?", default="")
    p.add_argument("--from-revision", type=int, metavar="REV", help="start at this revision (default: now)")
    p.add_argument("--count", type=int, metavar="N", help="stop after N events")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")

    p = add(
        "txn",
        "run a transaction",
        _cmd_txn,
        'Run {"compare": [...], "success": [...], "failure": [...]} given as JSON (argument, or '
        "stdin when absent or -). Prints which branch ran and its results; exit 1 if the compare "
        "failed.",
    )
    p.add_argument("document", metavar="JSON", nargs="?", default="-")

    p = add("status", "the status of every endpoint", _cmd_status)
    p = add("members", "the cluster's nodes", _cmd_members)

    p = add("join", "add a node to the cluster", _cmd_join)
    p.add_argument("node_id", metavar="NODE_ID")
    p.add_argument("raft_address", metavar="RAFT_ADDRESS", help="host:port of its raft transport")
    p.add_argument("--force", action="store_true", help="even if the what-if check says the quorum would be lost")
    p.add_argument("--dry-run", action="store_true", help="only say what the change would do")

    p = add("remove", "remove a node from the cluster", _cmd_remove)
    p.add_argument("node_id", metavar="NODE_ID")
    p.add_argument("--force", action="store_true", help="even if the remaining nodes cannot form a quorum")
    p.add_argument("--dry-run", action="store_true", help="only say what the change would do")

    p = add("transfer-leadership", "make another node the leader", _cmd_transfer)
    p.add_argument("node_id", metavar="NODE_ID", nargs="?", help="the new leader (default: the leader picks)")
    p.add_argument("--force", action="store_true", help="even if the target does not answer now")
    p.add_argument("--dry-run", action="store_true", help="only say what the change would do")


# --- plumbing -----------------------------------------------------------------------------------


def _guarded(handler: Handler) -> Handler:
    def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
        try:
            return handler(args, env)
        except UsageError as exc:
            print(f"beaver-vault {args.command}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except ClusterError as exc:
            print(f"beaver-vault {args.command}: {_describe(exc)}", file=sys.stderr)
            return exit_code_for(exc)
        except KeyboardInterrupt:
            return EXIT_OK if args.command == "watch" else 130

    return run


def exit_code_for(exc: ClusterError) -> int:
    if isinstance(exc, NotFound | PreconditionFailed):
        return EXIT_NO
    if isinstance(exc, BadRequest):
        return EXIT_USAGE
    if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 429):
        return EXIT_NO  # 409 refused, 410 watch history gone, ...
    return EXIT_UNAVAILABLE


def _describe(exc: ClusterError) -> str:
    text = exc.message
    if isinstance(exc, PreconditionFailed) and exc.current_revision is not None:
        text += f" (current revision: {exc.current_revision})"
    if exc.outcome == "unknown":
        text += " [outcome unknown: the write may or may not have been applied]"
    return text


def endpoints_of(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    return args.endpoints or env.get(ENDPOINTS_ENV) or DEFAULT_ENDPOINT


def _policy(args: argparse.Namespace) -> RetryPolicy:
    try:
        return RetryPolicy(max_attempts=args.attempts, timeout_s=args.timeout)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def tls_of(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    """The client's ``cacert`` and ``cert`` keyword arguments from --cacert/--cert/--key."""
    cacert = getattr(args, "cacert", None) or env.get(CACERT_ENV) or None
    cert, key = getattr(args, "cert_file", None), getattr(args, "cert_key_file", None)
    if (cert is None) != (key is None):
        raise UsageError("--cert and --key go together")
    for path in [p for p in (cacert, cert, key) if p is not None]:
        if not os.path.isfile(path):
            raise UsageError(f"no such file: {path}")
    transport = getattr(args, "transport", None) or env.get("BEAVER_VAULT_TRANSPORT") or "auto"
    if transport not in ("auto", "http", "pipelined"):
        raise UsageError(f"BEAVER_VAULT_TRANSPORT must be auto, http or pipelined; got {transport!r}")
    return {
        "cacert": cacert,
        "cert": (cert, key) if cert is not None and key is not None else None,
        "transport": transport,
    }


def credentials_of(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    """The client's ``user``/``password``/``token`` from the flags, else the environment; a user
    without a password is asked for one on a terminal."""
    token = getattr(args, "token", None) or env.get(TOKEN_ENV) or None
    user = getattr(args, "user", None) or env.get(USER_ENV) or None
    password = getattr(args, "password", None) or env.get(PASSWORD_ENV) or None
    if token is not None and getattr(args, "user", None) is None:
        user = None  # an explicit --token wins over a user from the environment
    if user is not None and password is None:
        if not sys.stdin.isatty():
            raise UsageError(f"--user needs --password (or ${PASSWORD_ENV})")
        import getpass

        password = getpass.getpass(f"password for {user}: ")
    if token is not None and user is not None:
        raise UsageError("give --token or --user, not both")
    return {"user": user, "password": password if user is not None else None, "token": token}


def connection_of(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    """Every keyword a client is made with from the command line: TLS and credentials."""
    return {**tls_of(args, env), **credentials_of(args, env)}


def _client(args: argparse.Namespace, env: Mapping[str, str]) -> Client:
    try:
        return Client(endpoints_of(args, env), policy=_policy(args), **connection_of(args, env))
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _out(text: str, stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout, flush=True)


def _read_json(text: str, what: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON ({exc}); use --string to store text") from None


# --- commands -----------------------------------------------------------------------------------


def _cmd_put(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.if_absent and args.if_revision is not None:
        raise UsageError("--if-revision and --if-absent exclude each other")
    if args.string:
        value: Any = sys.stdin.read() if args.value == "-" else args.value
    else:
        value = _read_json(args.value, "VALUE")
    with _client(args, env) as client:
        result = client.put(args.key, value, if_revision=args.if_revision, if_absent=args.if_absent, ttl=args.ttl)
    if args.json:
        _out(_dumps({"key": result.key, "revision": result.revision, "created": result.created}))
    else:
        _out(f"OK (revision {result.revision}{', created' if result.created else ''})")
    return EXIT_OK


def _cmd_get(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with _client(args, env) as client:
        if args.meta:
            meta = client.get_meta(args.key)
            _out(_dumps(_kv_json(meta.key, meta.value, meta.create_revision, meta.mod_revision, meta.version)))
        else:
            _out(_dumps(client.get(args.key)))
    return EXIT_OK


def _kv_json(key: str, value: Any, create_revision: int, mod_revision: int, version: int) -> dict[str, Any]:
    return {
        "key": key,
        "value": value,
        "create_revision": create_revision,
        "mod_revision": mod_revision,
        "version": version,
    }


def _cmd_del(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.prefix is not None:
        if args.key is not None or args.if_revision is not None:
            raise UsageError("give either KEY (with --if-revision) or --prefix, not both")
        if args.prefix == "" and not args.all:
            raise UsageError("an empty --prefix deletes every key: add --all if that is what you mean")
        with _client(args, env) as client:
            result = client.delete_prefix(args.prefix)
        if args.json:
            _out(_dumps({"prefix": result.prefix, "deleted": result.deleted, "revision": result.revision}))
        else:
            _out(f"deleted {result.deleted} key(s) (revision {result.revision})")
        return EXIT_OK
    if args.key is None:
        raise UsageError("give KEY or --prefix PREFIX")
    with _client(args, env) as client:
        deleted = client.delete(args.key, if_revision=args.if_revision)
    if args.json:
        _out(_dumps({"key": deleted.key, "deleted": deleted.deleted, "revision": deleted.revision}))
    elif deleted.deleted:
        _out(f"deleted (revision {deleted.revision})")
    else:
        _out(f"beaver-vault del: key {args.key!r} not found", sys.stderr)
    return EXIT_OK if deleted.deleted else EXIT_NO


def _cmd_list(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.after is not None and args.limit is None:
        raise UsageError("--after needs --limit (one page)")
    with _client(args, env) as client:
        try:
            if args.limit is not None:
                pages = [client.list(args.prefix, limit=args.limit, after=args.after, keys_only=args.keys_only)]
            else:
                pages = list(client.pages(args.prefix, page_size=args.page_size, keys_only=args.keys_only))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    first, last = pages[0], pages[-1]
    if args.json:
        doc: dict[str, Any] = {"count": first.count, "revision": first.revision}
        if args.keys_only:
            doc["keys"] = [k for p in pages for k in p.keys]
        else:
            doc["items"] = [
                _kv_json(i.key, i.value, i.create_revision, i.mod_revision, i.version) for p in pages for i in p.items
            ]
        if args.limit is not None:
            doc["more"], doc["next_after"] = last.more, last.next_after
        _out(_dumps(doc))
        return EXIT_OK
    for page in pages:
        if args.keys_only:
            for key in page.keys:
                _out(key)
        else:
            for item in page.items:
                _out(f"{item.key}\t{_dumps(item.value)}")
    if args.limit is not None and last.more:
        _out(f"# more: --after {last.next_after}", sys.stderr)
    return EXIT_OK


def _cmd_watch(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")
    endpoints = endpoints_of(args, env)
    policy = _policy(args)

    def show(event: WatchEvent) -> None:
        if args.json:
            doc = {"type": event.type, "key": event.key, "value": event.value, "revision": event.revision}
            _out(_dumps(doc))
        elif event.type == "delete":
            _out(f"{event.revision} delete {event.key}")
        else:
            _out(f"{event.revision} {event.type} {event.key} {_dumps(event.value)}")

    async def run() -> None:
        try:
            client = AsyncClient(endpoints, policy=policy, **connection_of(args, env))
        except (ValueError, OSError) as exc:
            raise UsageError(str(exc)) from None
        async with client:
            with anyio.move_on_after(args.duration if args.duration is not None else float("inf")):
                seen = 0
                async with client.watch(args.prefix, from_revision=args.from_revision) as events:
                    async for event in events:
                        show(event)
                        seen += 1
                        if args.count is not None and seen >= args.count:
                            return

    anyio.run(run)
    return EXIT_OK


def _cmd_txn(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    doc = _read_json(args.document, "the transaction")
    if not isinstance(doc, dict) or not isinstance(doc.get("compare", []), list):
        raise UsageError('the transaction must be an object {"compare": [...], "success": [...], "failure": [...]}')
    unknown = sorted(set(doc) - {"compare", "success", "failure"})
    if unknown:
        raise UsageError(f"unknown transaction field(s): {', '.join(unknown)}")
    with _client(args, env) as client:
        result = client.txn(doc.get("compare", []), doc.get("success", []), doc.get("failure", []))
    if args.json:
        _out(_dumps({"succeeded": result.succeeded, "results": result.results, "revision": result.revision}))
    else:
        _out(f"{'SUCCEEDED' if result.succeeded else 'FAILED'} (revision {result.revision})")
        for item in result.results:
            _out(_dumps(item))
    return EXIT_OK if result.succeeded else EXIT_NO


def _cmd_status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    rows: list[dict[str, Any]] = []
    with _client(args, env) as client:
        for endpoint in client.endpoints.urls:
            try:
                rows.append({"endpoint": endpoint, "status": client.status(endpoint)})
            except ClusterError as exc:
                rows.append({"endpoint": endpoint, "error": exc.message})
    if args.json:
        _out(_dumps(rows))
    else:
        table = [["ENDPOINT", "NODE", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED"]]
        for row in rows:
            st = row.get("status")
            if st is None:
                table.append([row["endpoint"], "-", f"unreachable: {row['error']}", "", "", "", ""])
                continue
            fields = ("node_id", "role", "term", "leader_id", "commit_index", "applied_index")
            table.append([row["endpoint"], *(str(st.get(f, "-")) for f in fields)])
        _print_table(table)
    return EXIT_OK if any("status" in r for r in rows) else EXIT_UNAVAILABLE


def _print_members(args: argparse.Namespace, members: Sequence[Mapping[str, Any]]) -> None:
    if args.json:
        _out(_dumps(list(members)))
        return
    columns = ["id", "role", "voter", "raft_address", "http_address", "lag", "reachable"]
    present = [c for c in columns if any(c in m for m in members)]
    table = [[c.upper() for c in present]]
    table += [[str(m.get(c, "-")) for c in present] for m in members]
    _print_table(table)


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        _out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _cmd_members(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with _client(args, env) as client:
        _print_members(args, client.members())
    return EXIT_OK


def _print_what_if(args: argparse.Namespace, plan: Mapping[str, Any]) -> int:
    """The dry-run analysis: JSON with --json, else one line per fact. Exit 0 if the change
    would be accepted, EXIT_NO (1) if it would be refused."""
    if args.json:
        _out(_dumps(plan))
    else:
        change = plan.get("change") or {}
        rows = [
            ("change", f"{change.get('kind')} {change.get('node_id') or ''}".strip()),
            ("allowed", "yes" if plan.get("allowed") else f"no: {plan.get('refusal')}"),
            ("voters before", " ".join(plan.get("voters_before", [])) + f" (quorum {plan.get('quorum_before')})"),
            ("voters after", " ".join(plan.get("voters_after", [])) + f" (quorum {plan.get('quorum_after')})"),
            ("reachable now", " ".join(plan.get("reachable_voters", [])) or "-"),
            ("unreachable", " ".join(plan.get("unreachable_voters", [])) or "-"),
            ("quorum kept", f"during: {_yes(plan.get('quorum_during'))}, after: {_yes(plan.get('quorum_after_kept'))}"),
            ("leader after", str(plan.get("leader_after") or "elected among the voters")),
            ("data to send", f"{plan.get('bytes_to_send', 0)} bytes"),
        ]
        if plan.get("in_flight"):
            rows.append(("in flight", _dumps(plan["in_flight"])))
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            _out(f"{k.ljust(width)}  {v}")
    return EXIT_OK if plan.get("allowed") else EXIT_NO


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def _cmd_join(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with _client(args, env) as client:
        if args.dry_run:
            return _print_what_if(args, client.what_if("join", args.node_id, args.raft_address))
        _print_members(args, client.join(args.node_id, args.raft_address, force=args.force))
    return EXIT_OK


def _cmd_remove(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with _client(args, env) as client:
        if args.dry_run:
            return _print_what_if(args, client.what_if("remove", args.node_id))
        _print_members(args, client.remove(args.node_id, force=args.force))
    return EXIT_OK


def _cmd_transfer(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with _client(args, env) as client:
        if args.dry_run:
            return _print_what_if(args, client.what_if("transfer", args.node_id))
        answer = client.transfer_leadership(args.node_id, force=args.force)
    _out(_dumps(answer) if args.json else f"leader: {answer.get('leader')}")
    return EXIT_OK
