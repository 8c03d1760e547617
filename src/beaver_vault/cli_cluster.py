"""``beaver-vault cluster``: a local cluster of real ``server`` processes for a laptop.

node1 bootstraps, the others ``--join`` it, each started only once the one before answers; Ctrl-C
(or SIGTERM) stops them all, each exactly once, SIGKILL after ``--stop-timeout-s``. With ``--tls``
it makes a CA and node certificates (``beaver_vault.cli_certs``) and starts every node with them.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from beaver_vault.cli_certs import cluster_tls
from beaver_vault.config import LOG_LEVELS

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
STATUS_PATH = "/api/v1/status"

log = logging.getLogger("beaver_vault.cli")


def add_cluster_command(sub: Any, both_spellings: Callable[[str], tuple[str, str]]) -> None:
    _both_spellings = both_spellings
    cluster = sub.add_parser(
        "cluster",
        help="run a local cluster of real server processes",
        description=(
            "Start N `beaver-vault server` processes on this machine: node1 bootstraps a cluster, the "
            "others join it. Ctrl-C (or SIGTERM) stops them all."
        ),
        allow_abbrev=False,
    )
    cluster.add_argument(
        *_both_spellings("nodes"), dest="nodes", type=int, default=3, help="how many nodes (default: 3)"
    )
    cluster.add_argument(
        *_both_spellings("base_http_port"),
        dest="base_http_port",
        type=int,
        default=8000,
        help="node1's HTTP port; nodeK gets base+K-1",
    )
    cluster.add_argument(
        *_both_spellings("base_raft_port"),
        dest="base_raft_port",
        type=int,
        default=7000,
        help="node1's raft port; nodeK gets base+K-1",
    )
    cluster.add_argument(
        *_both_spellings("data_root"),
        dest="data_root",
        default="./data",
        help="nodeK keeps its files in DATA_ROOT/nodeK",
    )
    cluster.add_argument(*_both_spellings("host"), dest="host", default="127.0.0.1", help="bind and advertise host")
    cluster.add_argument(*_both_spellings("log_level"), dest="log_level", default=None, help="passed to every node")
    cluster.add_argument(
        *_both_spellings("tls"),
        dest="tls",
        action="store_true",
        help="TLS on: make a CA and node certificates in DATA_ROOT/certs (kept) and use them",
    )
    cluster.add_argument(
        *_both_spellings("stop_timeout_s"),
        dest="stop_timeout_s",
        type=float,
        default=10.0,
        help="seconds to wait after SIGTERM before SIGKILL (default: 10)",
    )
    cluster.set_defaults(handler=_cmd_cluster)


@dataclass(slots=True)
class _Child:
    node_id: str
    url: str
    proc: subprocess.Popen[bytes]
    reported_exit: bool = False
    verify: Any = True  # httpx's verify: the cluster's CA with --tls


def _cmd_cluster(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    problem = _check_cluster_args(args)
    if problem:
        print(f"beaver-vault cluster: {problem}", file=sys.stderr)
        return EXIT_USAGE
    from beaver_vault.cli import configure_logging  # the composition root owns logging set-up

    configure_logging((args.log_level or "INFO").upper(), "cluster")

    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: stopping the nodes", signal.Signals(signum).name)
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    children: list[_Child] = []
    tls = cluster_tls(Path(args.data_root), args.nodes) if args.tls else None
    scheme = "https" if tls else "http"
    try:
        join_url = f"{scheme}://{args.host}:{args.base_http_port}"
        for i in range(1, args.nodes + 1):
            if stopping.is_set():
                break
            child = _start_node(args, i, None if i == 1 else join_url, env, tls)
            children.append(child)
            # Each node waits to be up before the next starts, so joins do not pile up on a cold node1.
            if not _wait_http(child, stopping, timeout_s=30.0):
                if child.proc.poll() is not None:
                    log.error("%s exited with code %s during start-up", child.node_id, child.proc.returncode)
                    child.reported_exit = True
                    stopping.set()
        if not stopping.is_set():
            _wait_members(children[0], args.nodes, stopping, timeout_s=30.0)
            print("\nBeaver-Vault cluster:", flush=True)
            for c in children:
                print(f"  {c.node_id}  {c.url}  (pid {c.proc.pid})", flush=True)
            cacert = f"--cacert {tls.ca_file} " if tls else ""
            print(f"Try: curl {cacert}-X PUT {children[0].url}/api/v1/kv/mykey -d '\"myvalue\"'", flush=True)
            print(f"Web UI (any node): {children[0].url}/ui/", flush=True)
            print("Press Ctrl-C to stop.", flush=True)
        while not stopping.is_set():
            for c in children:
                if not c.reported_exit and c.proc.poll() is not None:
                    log.warning("%s exited with code %s", c.node_id, c.proc.returncode)
                    c.reported_exit = True
            if all(c.reported_exit for c in children):
                log.error("every node has exited")
                break
            stopping.wait(0.5)
    finally:
        _stop_children(children, args.stop_timeout_s)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return EXIT_FAILURE if children and all(c.reported_exit for c in children) else EXIT_OK


def _check_cluster_args(args: argparse.Namespace) -> str | None:
    if not 1 <= args.nodes <= 99:
        return f"--nodes must be between 1 and 99, got {args.nodes}"
    for name in ("base_http_port", "base_raft_port"):
        base = getattr(args, name)
        if not (1 <= base and base + args.nodes - 1 <= 65535):
            return f"--{name.replace('_', '-')} {base}: ports {base}..{base + args.nodes - 1} must be within 1-65535"
    http = set(range(args.base_http_port, args.base_http_port + args.nodes))
    raft = set(range(args.base_raft_port, args.base_raft_port + args.nodes))
    if http & raft:
        return "the HTTP and raft port ranges overlap"
    if args.log_level is not None and args.log_level.upper() not in LOG_LEVELS:
        return f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {args.log_level!r}"
    if args.stop_timeout_s < 0:
        return "--stop-timeout-s must not be negative"
    return None


def _start_node(
    args: argparse.Namespace, i: int, join_url: str | None, env: Mapping[str, str], tls: Any = None
) -> _Child:
    node_id = f"node{i}"
    http_port = args.base_http_port + i - 1
    argv = [
        sys.executable,
        "-m",
        "beaver_vault",
        "server",
        "--node-id",
        node_id,
        "--http-port",
        str(http_port),
        "--raft-port",
        str(args.base_raft_port + i - 1),
        "--data-dir",
        str(Path(args.data_root) / node_id),
        "--bind-host",
        args.host,
    ]
    if join_url is not None:
        argv += ["--join", join_url]
    if args.log_level:
        argv += ["--log-level", args.log_level]
    if tls is not None:
        argv += tls.server_flags(node_id)
    # A session of its own: Ctrl-C reaches only this process, which then stops each node exactly once.
    proc = subprocess.Popen(argv, env=dict(env), start_new_session=True)
    log.info("started %s (pid %d)%s", node_id, proc.pid, f", joining {join_url}" if join_url else "")
    scheme = "https" if tls is not None else "http"
    return _Child(
        node_id=node_id, url=f"{scheme}://{args.host}:{http_port}", proc=proc, verify=tls.verify() if tls else True
    )


def _poll(
    check: Callable[[], bool], stopping: threading.Event, timeout_s: float, alive: Callable[[], bool] = lambda: True
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stopping.is_set() and alive():
        if check():
            return True
        stopping.wait(0.2)
    return False


def _status(url: str, verify: Any = True) -> dict[str, Any] | None:
    try:
        resp = httpx.get(url + STATUS_PATH, timeout=2.0, verify=verify)
        if resp.status_code == 200:
            data = resp.json()
            return data if isinstance(data, dict) else None
    except (httpx.HTTPError, ValueError):
        pass
    return None


def _wait_http(child: _Child, stopping: threading.Event, timeout_s: float) -> bool:
    ok = _poll(lambda: _status(child.url, child.verify) is not None, stopping, timeout_s, alive=lambda: child.proc.poll() is None)
    if not ok and child.proc.poll() is None and not stopping.is_set():
        log.warning("%s did not answer on %s within %gs; continuing", child.node_id, child.url, timeout_s)
    return ok


def _wait_members(first: _Child, n: int, stopping: threading.Event, timeout_s: float) -> None:
    def full() -> bool:
        status = _status(first.url, first.verify)
        members = status.get("members") if status else None
        return isinstance(members, list) and len(members) >= n

    if n > 1 and not _poll(full, stopping, timeout_s):
        if not stopping.is_set():
            log.warning("the cluster did not reach %d members within %gs; see the node logs", n, timeout_s)


def _stop_children(children: list[_Child], timeout_s: float) -> None:
    live = [c for c in children if c.proc.poll() is None]
    for c in live:
        try:
            c.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    for c in live:
        try:
            c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) did not stop within %gs: SIGKILL", c.node_id, c.proc.pid, timeout_s)
            c.proc.kill()
            c.proc.wait()
    for c in children:
        log.info("%s stopped (exit code %s)", c.node_id, c.proc.returncode)
