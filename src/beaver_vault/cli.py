"""The composition root: ``beaver-vault server`` and ``beaver-vault cluster``.

This is the only module that chooses the concrete pieces (SQLite storage, the TCP transport,
hypercorn) and wires them together. A node is ONE ``trio.run`` with one nursery holding the
raft transport, the node runtime and the HTTP server; SIGINT/SIGTERM stop it cleanly
(graceful HTTP shutdown, then cancel everything, then close the storage).

``cluster`` is a convenience for a laptop: it starts N real ``server`` processes on loopback
(node1 bootstraps, the others ``--join`` it) and stops them on Ctrl-C; it lives in
``beaver_vault.cli_cluster`` and is registered here.

Exit codes: 0 clean stop, 1 failure at run time (a port in use, a crash), 2 bad command line
or configuration, 3 the join was refused or never succeeded.

The client subcommands (``put``, ``get``, ``del``, ``list``, ``watch``, ``txn``, ``status``,
``members``, ``join``, ``remove``, ``transfer-leadership``) live in
``beaver_vault.client.commands`` and are registered here; their exit codes are 0 ok, 1 not
found / precondition failed, 2 usage, 3 unavailable / unknown outcome.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import random
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import trio

from beaver_vault import __version__
from beaver_vault.cli_auth import add_auth_command
from beaver_vault.cli_certs import add_certs_command
from beaver_vault.cli_cluster import add_cluster_command
from beaver_vault.cli_ops import add_ops_commands, print_config
from beaver_vault.client.commands import add_client_commands
from beaver_vault.config import (
    SETTINGS,
    SETTINGS_BY_NAME,
    Config,
    ConfigError,
    config_file_from,
    load_config,
)

if TYPE_CHECKING:
    from beaver_vault.node.status import NodeStatus
    from beaver_vault.storage.base import Storage

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_JOIN_FAILED = 3

JOIN_PATH = "/api/v1/raft/join"
STATUS_PATH = "/api/v1/status"

log = logging.getLogger("beaver_vault.cli")


# --- argument parsing ---------------------------------------------------------------------------


def _both_spellings(name: str) -> tuple[str, str]:
    """The seed's single-dash form (``-node-id``) and the usual double-dash one (``--node-id``)."""
    dashed = name.replace("_", "-")
    return ("--" + dashed, "-" + dashed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beaver-vault",
        description="Beaver-Vault: a replicated JSON key-value store (Raft + SQLite).",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"beaver-vault {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    server = sub.add_parser(
        "server",
        help="run one node",
        description=(
            "Run one Beaver-Vault node. Settings come from defaults < the YAML file (--config) < "
            "environment variables BEAVER_VAULT_<NAME> < these flags. Every flag also works with a "
            "single dash, as in: beaver-vault server -node-id node1 -http-port 8000 -raft-port 7000"
        ),
        allow_abbrev=False,
    )
    server.add_argument(
        *_both_spellings("config"),
        dest="config",
        metavar="FILE",
        default=None,
        help="YAML file of settings (also BEAVER_VAULT_CONFIG)",
    )
    for setting in SETTINGS:
        extra: dict[str, Any] = {"nargs": "?", "const": setting.const} if setting.const is not None else {}
        server.add_argument(
            *_both_spellings(setting.name),
            dest=setting.name,
            metavar=setting.name.upper() if setting.name != "join" else "URL",
            default=None,
            help=setting.help,
            **extra,
        )
    server.set_defaults(handler=_cmd_server)
    add_ops_commands(sub, server)  # backup, restore, server --print-config (cli_ops.py)

    add_cluster_command(sub, _both_spellings)
    add_client_commands(sub)
    add_certs_command(sub)
    add_auth_command(sub)
    return parser


def server_flags(args: argparse.Namespace) -> dict[str, object]:
    """The settings given on the command line (``None``: not given), plus ``config``."""
    flags: dict[str, object] = {name: getattr(args, name, None) for name in SETTINGS_BY_NAME}
    flags["config"] = getattr(args, "config", None)
    return flags


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, Mapping[str, str]], int] = args.handler
    return handler(args, os.environ if env is None else env)


# --- server -------------------------------------------------------------------------------------


def configure_logging(level: str, tag: str, log_format: str = "text") -> None:
    # One line per event on stderr, tagged with the node id so interleaved cluster logs stay
    # readable; text or one JSON object per line (logfmt.py).
    from beaver_vault import logfmt

    logfmt.configure_logging(level, tag, log_format)


def _cmd_server(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    flags = server_flags(args)
    if getattr(args, "print_config", False):
        return print_config(flags, env, sys.stdout)
    try:
        cfg = load_config(flags=flags, env=env, config_file=config_file_from(flags, env))
    except ConfigError as e:
        print(f"beaver-vault: configuration error: {e}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(cfg.log_level, cfg.node_id, cfg.log_format)
    from beaver_vault.security import secure_data_dir

    try:
        for path in secure_data_dir(cfg.data_dir):  # umask 0o077, the directory 0700, files 0600
            log.warning("made %s private to its owner (it was readable or writable by others)", path)
    except OSError as e:
        log.error("cannot create data directory %s: %s", cfg.data_dir, e)
        return EXIT_FAILURE
    return trio.run(run_node, cfg)


@dataclass(slots=True)
class _Stop:
    """Why and how the node stops: set once, by a signal or a failed join."""

    event: trio.Event
    code: int = EXIT_OK

    def request(self, code: int) -> None:
        if not self.event.is_set():
            self.code = code
            self.event.set()


async def run_node(cfg: Config) -> int:
    """Run one node until SIGINT/SIGTERM (or a refused join). Returns the process exit code."""
    from beaver_vault.storage.sqlite import SQLiteStorage

    # Catch the signals first, so a Ctrl-C during start-up is also a clean stop.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            storage = SQLiteStorage(cfg.db_path)
        except Exception as e:
            log.error("cannot open storage %s: %s", cfg.db_path, e)
            return EXIT_FAILURE
        code = EXIT_FAILURE
        try:
            code = await _serve(cfg, storage, signals)
        except* OSError as group:  # a port in use, an unreachable bind address, a full disk, ...
            for exc in _leaves(group):
                log.error("stopped by an OS error: %s", exc)
        finally:
            storage.close()
            log.info("storage closed")
        return code


def _leaves(exc: BaseException) -> list[BaseException]:
    """The individual exceptions inside (possibly nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


async def _serve(cfg: Config, storage: Storage, signals: AsyncIterator[int]) -> int:
    from hypercorn.config import Config as HyperConfig

    from beaver_vault import logfmt
    from beaver_vault.api import ops_routes
    from beaver_vault.api.app import ApiOptions, create_app
    from beaver_vault.auth_setup import AuthSetupError, admin_password, auth_options, bootstrap_admin
    from beaver_vault.node.runtime import NodeRuntime, RuntimeOptions
    from beaver_vault.security import https_context, hypercorn_verify_mode, log_exposure, peer_contexts
    from beaver_vault.transport.tcp import TcpTransport

    try:
        tls, peer_ssl = peer_contexts(cfg), https_context(cfg)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        log.error("cannot load the TLS files (%s, %s, %s): %s", cfg.tls_cert_file, cfg.tls_key_file, cfg.tls_ca_file, e)
        return EXIT_USAGE
    try:
        first_admin = admin_password(cfg) if cfg.auth_enabled else None
    except AuthSetupError as e:
        log.error("%s", e)
        return EXIT_USAGE

    from beaver_vault.storage.sqlite import SQLiteStorage

    db_path = cfg.db_path
    runtime = NodeRuntime(
        node_id=cfg.node_id,
        storage=storage,
        worker_storage=(lambda: SQLiteStorage(db_path, any_thread=True)) if cfg.storage_thread else None,
        options=RuntimeOptions(
            raft_address=cfg.raft_address,
            http_address=cfg.http_address,
            bootstrap=cfg.join is None,
            tick_ms=cfg.tick_ms,
            election_ticks=cfg.election_ticks,
            heartbeat_ticks=cfg.heartbeat_ticks,
            max_pending=cfg.max_pending,
            snapshot_threshold=cfg.snapshot_threshold,
            log_cache_bytes=cfg.log_cache_bytes,
            snapshot_threshold_bytes=cfg.snapshot_threshold_bytes,
            seed=cfg.seed,
            learner_timeout_s=cfg.learner_timeout_s,
            learner_min_rate_bytes_per_s=cfg.learner_min_rate_bytes_per_s,
        ),
    )
    transport = TcpTransport(
        cfg.node_id,
        bind_host=cfg.bind_host,
        bind_port=cfg.raft_port,
        deliver=runtime.deliver,
        queue_max=cfg.peer_queue_max,
        rng=_rng(cfg.seed, "transport"),
        max_inbound=cfg.peer_max_inbound,
        max_inbound_per_host=cfg.peer_max_inbound_per_host,
        idle_timeout_s=cfg.peer_idle_timeout_s,
        partial_budget_bytes=cfg.peer_partial_budget_bytes,
        tls=tls,
        direct_writes=True,  # the runtime flushes after every processing round
    )
    runtime.attach_transport(transport)
    logfmt.set_term_source(lambda: runtime.status().term)
    app = create_app(
        runtime,
        ApiOptions(
            max_key_bytes=cfg.max_key_bytes,
            max_body_bytes=cfg.max_body_bytes,
            max_json_depth=cfg.max_json_depth,
            request_timeout_s=cfg.request_timeout_s,
            forward_timeout_s=cfg.forward_timeout_s,
            join_wait_s=cfg.join_wait_s,
            max_url_bytes=cfg.max_url_bytes,
            max_header_bytes=cfg.max_header_bytes,
            body_timeout_s=cfg.body_timeout_s,
            client_rate_per_s=cfg.client_rate_per_s,
            client_burst=cfg.client_burst,
            watchers_per_client_max=cfg.watchers_per_client,
            watch_buffer_bytes_max=cfg.watch_buffer_bytes,
            peer_ssl=peer_ssl,
            auth=auth_options(cfg),
        ),
    )
    pipelined = None
    if cfg.client_port >= 0 and cfg.auth_enabled:
        # The protocol's hello carries no checked credentials yet: with authentication on, the
        # port stays closed (clients use HTTP, where every request is checked).
        log.warning("pipelined client protocol off: authentication is on and the protocol does not check credentials yet")
    elif cfg.client_port >= 0:
        from beaver_vault.api.pipelined import PipelinedOptions, PipelinedServer

        pipelined = PipelinedServer(
            app.extensions["beaver_vault.context"],
            PipelinedOptions(
                max_frame_bytes=cfg.max_body_bytes + 64 * 1024,
                max_in_flight=cfg.client_max_in_flight,
                connections_per_client=cfg.client_connections_per_client,
            ),
            peer_ssl=peer_ssl,
            metrics=app.extensions["beaver_vault.metrics"],
        )
    hconfig = HyperConfig()
    # Headers beyond what the guard accepts are refused by h11 itself (no unbounded buffering).
    hconfig.h11_max_incomplete_size = max(16 * 1024, cfg.max_url_bytes + cfg.max_header_bytes + 1024)
    if cfg.tls_enabled:
        hconfig.certfile = str(cfg.tls_cert_file)
        hconfig.keyfile = str(cfg.tls_key_file)
        if cfg.http_client_auth != "none":
            hconfig.ca_certs = str(cfg.tls_ca_file)
            hconfig.verify_mode = hypercorn_verify_mode(cfg)
    hconfig.bind = [cfg.http_bind]
    hconfig.accesslog = None
    hconfig.errorlog = logging.getLogger("hypercorn.error")
    hconfig.graceful_timeout = cfg.shutdown_timeout_s

    stop = _Stop(trio.Event())
    http_done = trio.Event()
    shutdown_http = trio.Event()

    async def serve_http(*, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        import hypercorn.trio

        from beaver_vault.api import protocol_errors

        protocol_errors.install()  # the parser's own refusals get JSON bodies too
        try:
            await hypercorn.trio.serve(app, hconfig, shutdown_trigger=shutdown_http.wait, task_status=task_status)
        finally:
            http_done.set()

    async def watch_signals() -> None:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            stop.request(EXIT_OK)
            return

    log_exposure(cfg)  # once the runtime exists, so the line carries the term like the others
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_signals)
        await nursery.start(transport.run)
        log.info("raft transport listening on %s:%s (advertised %s)", cfg.bind_host, cfg.raft_port, cfg.raft_address)
        await nursery.start(runtime.run)
        log.info("runtime started (data in %s)", cfg.data_dir)
        binds = await nursery.start(serve_http)
        log.info("HTTP API on %s (advertised %s)", ", ".join(binds), cfg.http_address)
        if pipelined is not None:
            serve = functools.partial(
                pipelined.serve,
                cfg.bind_host,
                cfg.client_port,
                advertise_host=cfg.advertise_host,
                ssl_context=_client_port_tls(cfg),
            )
            address = await nursery.start(serve)
            log.info("pipelined client protocol on %s", address)
        print(f"{cfg.node_id}: {cfg.http_address}  (raft {cfg.raft_address}, data {cfg.data_dir})", flush=True)
        if cfg.join is not None:
            nursery.start_soon(join_cluster, cfg, runtime, stop.request)
        if first_admin is not None:
            nursery.start_soon(bootstrap_admin, runtime, first_admin)

        await stop.event.wait()
        ops_routes.begin_shutdown(app)  # /ready answers 503 while in-flight requests finish
        shutdown_http.set()  # let in-flight requests finish (hypercorn's graceful_timeout) ...
        with trio.move_on_after(cfg.shutdown_timeout_s + 1.0):
            await http_done.wait()
        nursery.cancel_scope.cancel()  # ... then stop the runtime and the transport
    log.info("stopped")
    return stop.code


def _client_port_tls(cfg: Config) -> ssl.SSLContext | None:
    """With TLS, the client port speaks TLS with the HTTP API's certificate and client-certificate
    rule (``http_client_auth``)."""
    if not cfg.tls_enabled:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cfg.tls_cert_file), str(cfg.tls_key_file))
    if cfg.http_client_auth != "none" and cfg.tls_ca_file is not None:
        ctx.load_verify_locations(str(cfg.tls_ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED if cfg.http_client_auth == "required" else ssl.CERT_OPTIONAL
    return ctx


def _rng(seed: int | None, purpose: str) -> random.Random:
    # Each consumer gets its own generator, derived from the node seed by name (never the global one).
    return random.Random() if seed is None else random.Random(f"{seed}/{purpose}")


class _StatusSource(Protocol):
    def status(self) -> NodeStatus: ...


def _is_member(runtime: _StatusSource) -> bool:
    # A node started for joining (bootstrap=False) has no cluster id until the leader adopts it;
    # one restarted with its data directory already belongs to a cluster and must not ask again.
    return runtime.status().cluster_id is not None


async def join_cluster(
    cfg: Config,
    runtime: _StatusSource,
    stop: Callable[[int], None],
    *,
    client: httpx.AsyncClient | None = None,
) -> None:
    """Ask the member at ``cfg.join`` to add this node; retry with backoff until it says yes or no.

    On a refusal (or when ``join_timeout_s`` runs out) call ``stop(EXIT_JOIN_FAILED)``.
    """
    if cfg.join is None:
        return
    if client is None:
        from beaver_vault.security import https_context

        verify: Any = https_context(cfg) or True
        async with httpx.AsyncClient(timeout=cfg.request_timeout_s + cfg.forward_timeout_s + 5.0, verify=verify) as own:
            await join_cluster(cfg, runtime, stop, client=own)
        return
    url = cfg.join + JOIN_PATH
    body = {"NodeID": cfg.node_id, "RaftAddress": cfg.raft_address}
    if cfg.join_token:
        body["JoinToken"] = cfg.join_token  # needed once the cluster has authentication on
    rng = _rng(cfg.seed, "join")
    delay_s = 0.2
    deadline = trio.current_time() + cfg.join_timeout_s if cfg.join_timeout_s > 0 else math.inf
    attempt = 0
    while True:
        if _is_member(runtime):
            log.info("a member of cluster %s: not asking %s to join", runtime.status().cluster_id, cfg.join)
            return
        attempt += 1
        outcome = await _post_join(client, url, body)
        if outcome.done:
            if outcome.ok:
                log.info("joined the cluster via %s: %s", url, outcome.detail)
            else:
                log.error("join refused by %s: %s", url, outcome.detail)
                stop(EXIT_JOIN_FAILED)
            return
        remaining_s = deadline - trio.current_time()
        if remaining_s <= 0:
            log.error("could not join via %s within %gs (last: %s)", url, cfg.join_timeout_s, outcome.detail)
            stop(EXIT_JOIN_FAILED)
            return
        sleep_s = min(delay_s * rng.uniform(0.75, 1.25), remaining_s)  # the last try lands on the deadline
        log.info("join attempt %d via %s: %s; retrying in %.1fs", attempt, url, outcome.detail, sleep_s)
        await trio.sleep(sleep_s)
        delay_s = min(delay_s * 2, 5.0)


@dataclass(frozen=True, slots=True)
class JoinOutcome:
    done: bool  # False: worth retrying
    ok: bool
    detail: str


async def _post_join(client: httpx.AsyncClient, url: str, body: Mapping[str, str]) -> JoinOutcome:
    try:
        resp = await client.post(url, json=body)
    except httpx.HTTPError as e:
        return JoinOutcome(done=False, ok=False, detail=f"{type(e).__name__}: {e}")
    return classify_join_response(resp.status_code, resp.text)


def classify_join_response(status: int, text: str) -> JoinOutcome:
    """200: joined. 409: refused (e.g. this node is not pristine). Other 4xx: our request is wrong,
    retrying will not help. 5xx, 408, 429: no leader yet, a timeout, overload: retry."""
    detail = f"HTTP {status} {_short(text)}"
    if 200 <= status < 300:
        return JoinOutcome(done=True, ok=True, detail=detail)
    if status in (408, 429) or status >= 500:
        return JoinOutcome(done=False, ok=False, detail=detail)
    if status == 409 and '"in_flight"' in text:
        return JoinOutcome(done=False, ok=False, detail=detail)  # another change first: our turn comes
    return JoinOutcome(done=True, ok=False, detail=detail)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."

