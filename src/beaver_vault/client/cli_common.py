"""What every client subcommand of ``beaver-vault`` shares: the options, the exit codes, the
client made from the command line, and the plumbing that turns errors into exit codes.

Used by the key-value and cluster commands (``client/commands.py``) and by ``beaver-vault auth``
(``cli_auth.py``). A client is made from ``--endpoints`` (else ``BEAVER_VAULT_ENDPOINTS``, else
``http://127.0.0.1:8000``), the TLS options and the credentials (flags, else the environment).
Every ``ClusterError`` becomes a one-line message on stderr and an exit code (see
``EXIT_CODES``), so scripts can tell "no" (1) from "you asked wrong" (2) from "the cluster could
not say" (3).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from beaver_vault.client import (
    BadRequest,
    Client,
    ClusterError,
    NotFound,
    PreconditionFailed,
    RetryPolicy,
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


def guarded(handler: Handler) -> Handler:
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


def retry_policy(args: argparse.Namespace) -> RetryPolicy:
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


def make_client(args: argparse.Namespace, env: Mapping[str, str]) -> Client:
    try:
        return Client(endpoints_of(args, env), policy=retry_policy(args), **connection_of(args, env))
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def out(text: str, stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout, flush=True)


def read_json(text: str, what: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON ({exc}); use --string to store text") from None
