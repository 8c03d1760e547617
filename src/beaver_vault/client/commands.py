"""The client subcommands of ``beaver-vault``: put, get, del, list, watch, txn, status, members,
join, remove, transfer-leadership.

Theory of operation: ``beaver_vault.cli`` (the composition root) calls
:func:`add_client_commands` on its subparsers; each subcommand parses its arguments, opens a
:class:`~beaver_vault.client.Client` on ``--endpoints`` (else ``BEAVER_VAULT_ENDPOINTS``, else
``http://127.0.0.1:8000``), makes one or a few calls and prints the answer: for people by
default, as JSON with ``--json`` (one document, or one line per event for ``watch``). Every
``ClusterError`` becomes a one-line message on stderr and an exit code (see ``EXIT_CODES``), so
scripts can tell "no" (1) from "you asked wrong" (2) from "the cluster could not say" (3).
``watch`` runs the async client under anyio so that ``--duration`` can bound it. The options,
exit codes and plumbing shared with ``beaver-vault auth`` are in ``client/cli_common.py``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from beaver_vault.client import AsyncClient, ClusterError, WatchEvent
from beaver_vault.client.cli_common import (
    CACERT_ENV,
    DEFAULT_ENDPOINT,
    ENDPOINTS_ENV,
    EXIT_CODES,
    EXIT_NO,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    PASSWORD_ENV,
    TOKEN_ENV,
    USER_ENV,
    Handler,
    UsageError,
    common_parser,
    connection_of,
    credentials_of,
    dumps,
    endpoints_of,
    exit_code_for,
    guarded,
    make_client,
    out,
    read_json,
    retry_policy,
    tls_of,
)

# The names this module had before the shared part moved to cli_common.py stay importable here.
__all__ = [
    "CACERT_ENV",
    "DEFAULT_ENDPOINT",
    "ENDPOINTS_ENV",
    "EXIT_CODES",
    "EXIT_NO",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "PASSWORD_ENV",
    "TOKEN_ENV",
    "USER_ENV",
    "Handler",
    "UsageError",
    "add_client_commands",
    "common_parser",
    "connection_of",
    "credentials_of",
    "endpoints_of",
    "exit_code_for",
    "tls_of",
]


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
        parser.set_defaults(handler=guarded(handler))
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


# --- commands -----------------------------------------------------------------------------------


def _cmd_put(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.if_absent and args.if_revision is not None:
        raise UsageError("--if-revision and --if-absent exclude each other")
    if args.string:
        value: Any = sys.stdin.read() if args.value == "-" else args.value
    else:
        value = read_json(args.value, "VALUE")
    with make_client(args, env) as client:
        result = client.put(args.key, value, if_revision=args.if_revision, if_absent=args.if_absent, ttl=args.ttl)
    if args.json:
        out(dumps({"key": result.key, "revision": result.revision, "created": result.created}))
    else:
        out(f"OK (revision {result.revision}{', created' if result.created else ''})")
    return EXIT_OK


def _cmd_get(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with make_client(args, env) as client:
        if args.meta:
            meta = client.get_meta(args.key)
            out(dumps(_kv_json(meta.key, meta.value, meta.create_revision, meta.mod_revision, meta.version)))
        else:
            out(dumps(client.get(args.key)))
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
        with make_client(args, env) as client:
            result = client.delete_prefix(args.prefix)
        if args.json:
            out(dumps({"prefix": result.prefix, "deleted": result.deleted, "revision": result.revision}))
        else:
            out(f"deleted {result.deleted} key(s) (revision {result.revision})")
        return EXIT_OK
    if args.key is None:
        raise UsageError("give KEY or --prefix PREFIX")
    with make_client(args, env) as client:
        deleted = client.delete(args.key, if_revision=args.if_revision)
    if args.json:
        out(dumps({"key": deleted.key, "deleted": deleted.deleted, "revision": deleted.revision}))
    elif deleted.deleted:
        out(f"deleted (revision {deleted.revision})")
    else:
        out(f"beaver-vault del: key {args.key!r} not found", sys.stderr)
    return EXIT_OK if deleted.deleted else EXIT_NO


def _cmd_list(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.after is not None and args.limit is None:
        raise UsageError("--after needs --limit (one page)")
    with make_client(args, env) as client:
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
        out(dumps(doc))
        return EXIT_OK
    for page in pages:
        if args.keys_only:
            for key in page.keys:
                out(key)
        else:
            for item in page.items:
                out(f"{item.key}\t{dumps(item.value)}")
    if args.limit is not None and last.more:
        out(f"# more: --after {last.next_after}", sys.stderr)
    return EXIT_OK


def _cmd_watch(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")
    endpoints = endpoints_of(args, env)
    policy = retry_policy(args)

    def show(event: WatchEvent) -> None:
        if args.json:
            doc = {"type": event.type, "key": event.key, "value": event.value, "revision": event.revision}
            out(dumps(doc))
        elif event.type == "delete":
            out(f"{event.revision} delete {event.key}")
        else:
            out(f"{event.revision} {event.type} {event.key} {dumps(event.value)}")

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
    doc = read_json(args.document, "the transaction")
    if not isinstance(doc, dict) or not isinstance(doc.get("compare", []), list):
        raise UsageError('the transaction must be an object {"compare": [...], "success": [...], "failure": [...]}')
    unknown = sorted(set(doc) - {"compare", "success", "failure"})
    if unknown:
        raise UsageError(f"unknown transaction field(s): {', '.join(unknown)}")
    with make_client(args, env) as client:
        result = client.txn(doc.get("compare", []), doc.get("success", []), doc.get("failure", []))
    if args.json:
        out(dumps({"succeeded": result.succeeded, "results": result.results, "revision": result.revision}))
    else:
        out(f"{'SUCCEEDED' if result.succeeded else 'FAILED'} (revision {result.revision})")
        for item in result.results:
            out(dumps(item))
    return EXIT_OK if result.succeeded else EXIT_NO


def _cmd_status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    rows: list[dict[str, Any]] = []
    with make_client(args, env) as client:
        for endpoint in client.endpoints.urls:
            try:
                rows.append({"endpoint": endpoint, "status": client.status(endpoint)})
            except ClusterError as exc:
                rows.append({"endpoint": endpoint, "error": exc.message})
    if args.json:
        out(dumps(rows))
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
        out(dumps(list(members)))
        return
    columns = ["id", "role", "voter", "raft_address", "http_address", "lag", "reachable"]
    present = [c for c in columns if any(c in m for m in members)]
    table = [[c.upper() for c in present]]
    table += [[str(m.get(c, "-")) for c in present] for m in members]
    _print_table(table)


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _cmd_members(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with make_client(args, env) as client:
        _print_members(args, client.members())
    return EXIT_OK


def _print_what_if(args: argparse.Namespace, plan: Mapping[str, Any]) -> int:
    """The dry-run analysis: JSON with --json, else one line per fact. Exit 0 if the change
    would be accepted, EXIT_NO (1) if it would be refused."""
    if args.json:
        out(dumps(plan))
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
            rows.append(("in flight", dumps(plan["in_flight"])))
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            out(f"{k.ljust(width)}  {v}")
    return EXIT_OK if plan.get("allowed") else EXIT_NO


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def _cmd_join(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with make_client(args, env) as client:
        if args.dry_run:
            return _print_what_if(args, client.what_if("join", args.node_id, args.raft_address))
        _print_members(args, client.join(args.node_id, args.raft_address, force=args.force))
    return EXIT_OK


def _cmd_remove(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with make_client(args, env) as client:
        if args.dry_run:
            return _print_what_if(args, client.what_if("remove", args.node_id))
        _print_members(args, client.remove(args.node_id, force=args.force))
    return EXIT_OK


def _cmd_transfer(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with make_client(args, env) as client:
        if args.dry_run:
            return _print_what_if(args, client.what_if("transfer", args.node_id))
        answer = client.transfer_leadership(args.node_id, force=args.force)
    out(dumps(answer) if args.json else f"leader: {answer.get('leader')}")
    return EXIT_OK
