"""Real `beaver-vault server` processes for the end-to-end tests (and the benchmark).

Theory of operation: a :class:`Cluster` owns every process it starts and nothing else. Each
node gets free loopback ports (asked from the OS, never reused within one run), a data
directory under the test's ``tmp_path`` (or none at all, for the seed's commands, which rely
on the default ``./data/<node-id>`` under the working directory), and a log file. Waiting is
always a poll loop with a deadline (:func:`wait_for`); when a wait runs out, the error names
what was awaited and carries the tail of every node's log. :meth:`Cluster.close` stops only
the PIDs this cluster started (SIGKILL; their sessions are their own, so nothing else is
touched) and :meth:`Cluster.dump_logs` prints every log, which the fixture does when a test
failed.

Only the public surface is used: the CLI as a subprocess and HTTP; never the internals.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

HOST = "127.0.0.1"
STATUS_PATH = "/api/v1/status"

# Timing flags for every node: a faster tick than the default (50 ms x 10) so elections after a
# SIGKILL finish quickly, but with enough slack that a loaded 2-core machine does not see
# spurious elections; short request timeouts so a write stuck on a dead leader fails fast.
FAST_FLAGS: tuple[str, ...] = (
    "--tick-ms",
    "25",
    "--election-ticks",
    "12",
    "--heartbeat-ticks",
    "2",
    "--request-timeout-s",
    "3",
    "--forward-timeout-s",
    "5",
    "--shutdown-timeout-s",
    "1",
)

_used_ports: set[int] = set()


def free_port() -> int:
    """A loopback TCP port that is free now and not handed out before in this process."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in _used_ports:
            _used_ports.add(port)
            return port
    raise RuntimeError("could not find a free port")


def server_command() -> list[str]:
    """How to run the CLI: the console script next to this interpreter if present."""
    script = Path(sys.executable).with_name("beaver-vault")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "beaver_vault"]


class WaitTimeout(AssertionError):
    pass


def wait_for(
    what: str,
    check: Callable[[], T | None],
    timeout_s: float = 20.0,
    interval_s: float = 0.05,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something other than None/False; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
            if value is not None and value is not False:
                return value
        except (httpx.HTTPError, OSError, ValueError) as e:
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            extra = "\n" + on_timeout() if on_timeout else ""
            raise WaitTimeout(f"timed out after {timeout_s:g}s waiting for {what}{detail}{extra}")
        time.sleep(interval_s)


@dataclass
class Node:
    node_id: str
    http_port: int
    raft_port: int
    cwd: Path
    log_path: Path
    data_dir: Path | None  # None: the server's default, ./data/<node_id> under cwd
    extra_args: tuple[str, ...] = ()
    seed_style: bool = False  # the seed's single-dash flags, nothing else
    launcher: tuple[str, ...] = ()  # replaces server_command(), e.g. python -m cProfile -o F -m beaver_vault
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    scheme: str = "http"  # https for a node started with TLS files
    verify: Any = True  # httpx's verify for this node (an SSLContext with the cluster's CA)
    auth: Any = None  # httpx's auth for the helpers' own calls (status), with authentication on

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.http_port}"

    @property
    def raft_address(self) -> str:
        return f"{HOST}:{self.raft_port}"

    @property
    def effective_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else self.cwd / "data" / self.node_id

    def argv(self, join: str | None) -> list[str]:
        if self.seed_style:
            argv = [
                "server",
                "-node-id",
                self.node_id,
                "-http-port",
                str(self.http_port),
                "-raft-port",
                str(self.raft_port),
            ]
        else:
            argv = ["server", "--node-id", self.node_id, "--http-port", str(self.http_port)]
            argv += ["--raft-port", str(self.raft_port), "--bind-host", HOST]
        if self.data_dir is not None:
            argv += ["--data-dir", str(self.data_dir)]
        if join is not None:
            argv += ["--join", join]
        argv += list(self.extra_args)
        return (list(self.launcher) if self.launcher else server_command()) + argv

    def start(self, join: str | None = None) -> None:
        if self.alive():
            raise RuntimeError(f"{self.node_id} is already running (pid {self.proc.pid if self.proc else '?'})")
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start #{self.starts}: {' '.join(self.argv(join))}\n".encode())
        log.flush()
        env = dict(os.environ)
        env.pop("BEAVER_VAULT_CONFIG", None)
        for name in list(env):
            if name.startswith("BEAVER_VAULT_"):
                del env[name]  # a stray setting in the caller's environment must not change the nodes
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            self.argv(join),
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # our signals (Ctrl-C on pytest) do not reach it; we stop it by pid
        )
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to this node's own process (by pid) and, for SIGKILL, reap it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it does not stop. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # --- HTTP ---------------------------------------------------------------------------------

    def status(self, timeout_s: float = 2.0) -> dict[str, Any] | None:
        """The node's /api/v1/status, or None if it does not answer."""
        try:
            resp = httpx.get(self.url + STATUS_PATH, timeout=timeout_s, verify=self.verify, auth=self.auth)
        except httpx.HTTPError:
            return None
        if resp.status_code != 200:
            return None
        data = resp.json()
        return data if isinstance(data, dict) else None

    def wait_ready(self, timeout_s: float = 30.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise WaitTimeout(
                    f"{self.node_id} exited with code {self.proc.returncode} during start-up\n{self.log_tail(40)}"
                )
            return self.status(timeout_s=1.0)

        return wait_for(f"{self.node_id} to answer {STATUS_PATH}", check, timeout_s, 0.1, self.log_tail)


@dataclass
class Cluster:
    """Nodes started by one test, on free loopback ports, with files under ``root``."""

    root: Path
    extra_args: tuple[str, ...] = FAST_FLAGS
    nodes: dict[str, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)

    # --- processes ----------------------------------------------------------------------------

    def add(
        self,
        node_id: str,
        *,
        cwd: Path | None = None,
        data_dir: Path | None | bool = True,
        seed_style: bool = False,
        extra_args: Sequence[str] | None = None,
    ) -> Node:
        """Declare a node (not started). ``data_dir=True``: root/<node_id>; None/False: the default."""
        if node_id in self.nodes:
            raise ValueError(f"{node_id} exists")
        if data_dir is True:
            chosen: Path | None = self.root / node_id
        elif data_dir is False or data_dir is None:
            chosen = None
        else:
            chosen = data_dir
        node = Node(
            node_id=node_id,
            http_port=free_port(),
            raft_port=free_port(),
            cwd=cwd if cwd is not None else self.root,
            log_path=self.root / "logs" / f"{node_id}.log",
            data_dir=chosen,
            extra_args=tuple(self.extra_args if extra_args is None else extra_args),
            seed_style=seed_style,
        )
        self.nodes[node_id] = node
        return node

    def start(self, node_id: str, *, join: str | None = None, **add_kwargs: Any) -> Node:
        node = self.nodes.get(node_id) or self.add(node_id, **add_kwargs)
        node.start(join=join)
        node.wait_ready()
        return node

    def start_cluster(self, n: int = 3) -> Node:
        """node1 bootstraps; node2..n join it with --join. Returns the leader once all are members."""
        first = self.start("node1")
        self.wait_leader([first])
        for i in range(2, n + 1):
            self.start(f"node{i}", join=first.url)
        ids = [f"node{i}" for i in range(1, n + 1)]
        self.wait_members(ids)
        return self.wait_leader()

    def __getitem__(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def live(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.alive()]

    def close(self) -> None:
        """SIGKILL every process this cluster started that still runs (by pid, nothing else)."""
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                try:
                    node.proc.kill()
                except ProcessLookupError:
                    pass
        for node in self.nodes.values():
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass

    def logs(self, tail: int | None = None) -> str:
        parts = []
        for node in self.nodes.values():
            text = node.log_text() if tail is None else node.log_tail(tail)
            state = "running" if node.alive() else f"exit {node.proc.returncode if node.proc else 'never started'}"
            parts.append(f"----- {node.node_id} ({state}; {node.log_path}) -----\n{text}")
        return "\n".join(parts)

    def dump_logs(self) -> None:
        print(self.logs(), file=sys.stderr)

    def statuses(self) -> str:
        lines = []
        for node in self.nodes.values():
            st = node.status(timeout_s=1.0) if node.alive() else None
            lines.append(f"{node.node_id}: {json.dumps(st) if st else 'no answer'}")
        return "\n".join(lines)

    def _diagnose(self) -> str:
        return "statuses:\n" + self.statuses() + "\nlogs:\n" + self.logs(tail=15)

    # --- cluster-level waits ------------------------------------------------------------------

    def wait_leader(
        self, among: Iterable[Node] | None = None, timeout_s: float = 20.0, exclude: str | None = None
    ) -> Node:
        """Wait until exactly one live node says it is the leader and every live node agrees."""
        pool = list(among) if among is not None else None

        def check() -> Node | None:
            candidates = pool if pool is not None else self.live()
            statuses = {n.node_id: n.status(timeout_s=1.0) for n in candidates if n.alive()}
            if not statuses or any(s is None for s in statuses.values()):
                return None
            leaders = [nid for nid, s in statuses.items() if s is not None and s["role"] == "leader"]
            if len(leaders) != 1 or leaders[0] == exclude:
                return None
            if any(s is not None and s["leader_id"] != leaders[0] for s in statuses.values()):
                return None
            return self.nodes[leaders[0]]

        return wait_for("one leader that every live node agrees on", check, timeout_s, 0.05, self._diagnose)

    def wait_members(self, ids: Sequence[str], timeout_s: float = 30.0) -> None:
        want = sorted(ids)

        def check() -> bool:
            for node in self.live():
                st = node.status(timeout_s=1.0)
                if st is None or sorted(m["id"] for m in st["members"]) != want:
                    return False
            return True

        wait_for(f"every live node to list members {want}", check, timeout_s, 0.1, self._diagnose)

    def wait_applied(self, index: int, nodes: Iterable[Node] | None = None, timeout_s: float = 20.0) -> None:
        pool = list(nodes) if nodes is not None else self.live()

        def check() -> bool:
            for node in pool:
                st = node.status(timeout_s=1.0)
                if st is None or st["applied_index"] < index:
                    return False
            return True

        wait_for(f"applied_index >= {index} on {[n.node_id for n in pool]}", check, timeout_s, 0.05, self._diagnose)


def curl_path() -> str | None:
    return shutil.which("curl")


def cluster_fixture(tmp_path: Path, request: Any, **kwargs: Any) -> Iterator[Cluster]:
    """Body of a pytest ``cluster`` fixture: a Cluster under tmp_path that is closed at the end
    and whose node logs are printed (in the teardown section) if the test failed."""
    c = Cluster(tmp_path / "cluster", **kwargs)
    failed_before = request.session.testsfailed
    try:
        yield c
    finally:
        c.close()
        if request.session.testsfailed > failed_before:
            c.dump_logs()
