"""The `beaver-vault server` processes of one run, started and signalled by PID only.

Nodes listen on loopback with free ports, or (when partitions are on) each in its own network
namespace at ``10.77.0.<i>`` (see ``netns``). Under clock skew each runs with libfaketime
(see ``clock``). A node is restarted on the same data directory, ports and address after a
SIGKILL. ``stop_all`` sends SIGCONT, SIGTERM and, if needed, SIGKILL to the PIDs this module
started, and nothing else.

Membership: the cluster has ``n`` slots that start as members plus ``spare`` slots that start
empty. A slot whose node was removed is stopped; a node joining later gets a fresh node ID
(``n<slot>g<generation>``: a removed ID may not rejoin with a fresh data directory) and a
fresh data directory, and starts with ``--join``. ``members()`` are the slots believed to be
in the cluster; ``reconcile`` makes that belief match what the leader reports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from jepsen_like.clock import Clocks
from jepsen_like.disk import Disks
from jepsen_like.netns import Network

STATUS_PATH = "/api/v1/status"

# Fast elections so a SIGKILLed leader is replaced within about a second, short server-side
# timeouts so a stuck write answers "unknown" before the client gives up.
SERVER_FLAGS: tuple[str, ...] = (
    "--tick-ms", "25",
    "--election-ticks", "12",
    "--heartbeat-ticks", "2",
    "--request-timeout-s", "2",
    "--forward-timeout-s", "3",
    "--shutdown-timeout-s", "1",
    "--log-level", "INFO",
)  # fmt: skip


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def server_command() -> list[str]:
    script = Path(sys.executable).with_name("beaver-vault")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "beaver_vault"]


@dataclass
class Node:
    index: int  # 1-based slot
    host: str
    http_port: int
    raft_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    killed: bool = False  # SIGKILLed by the nemesis, not restarted yet
    paused: bool = False  # SIGSTOPped by the nemesis
    exits: list[int] = field(default_factory=list)  # exit codes seen for deaths we did not cause
    member: bool = True  # believed to be in the cluster's configuration
    generation: int = 0  # bumped each time the slot joins afresh
    joining: bool = False  # started with --join and not yet seen as a member

    @property
    def node_id(self) -> str:
        return f"n{self.index}" if self.generation == 0 else f"n{self.index}g{self.generation}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    def __init__(
        self,
        n: int,
        root: Path,
        *,
        network: Network | None = None,
        clocks: Clocks | None = None,
        seed: int = 0,
        log: Callable[[str], None] = print,
        spare: int = 0,
        extra_flags: tuple[str, ...] = (),
        disks: Disks | None = None,
    ) -> None:
        self.root = root
        self.disks = disks
        self.network = network
        self.clocks = clocks
        self.seed = seed
        self.log = log
        self.size = n  # the membership the run aims at
        self.extra_flags = extra_flags
        self.nodes: list[Node] = []
        for i in range(1, n + spare + 1):
            if network is not None:
                host, http_port, raft_port = network.address(i), 8000, 7000
            else:
                host, http_port, raft_port = "127.0.0.1", free_port(), free_port()
            self.nodes.append(
                Node(i, host, http_port, raft_port, self.data_root(i) / f"n{i}", root / "logs" / f"n{i}.log")
            )
        (root / "logs").mkdir(parents=True, exist_ok=True)
        for node in self.nodes[n:]:
            node.member = False

    def data_root(self, i: int) -> Path:
        """Where slot i's data directories live (its FUSE layer when the disk fault is on)."""
        return self.disks.mount(i) if self.disks is not None else self.root

    # ------------------------------------------------------------------ processes

    def argv(self, node: Node, join: str | None) -> list[str]:
        argv = server_command() + [
            "server",
            "--node-id", node.node_id,
            "--bind-host", node.host,
            "--http-port", str(node.http_port),
            "--raft-port", str(node.raft_port),
            "--data-dir", str(node.data_dir),
            "--seed", str(self.seed * 100 + node.index * 10 + node.starts),
            *SERVER_FLAGS,
            *self.extra_flags,
        ]  # fmt: skip
        if join is not None:
            argv += ["--join", join]
        if self.network is not None:
            # Addresses inside the test's own network namespaces, beyond loopback: allowed only
            # with an explicit --insecure (no TLS, no authentication).
            argv += ["--insecure"]
            argv = self.network.wrap(node.index, argv)
        return argv

    def start(self, node: Node, join: str | None = None) -> None:
        if node.running():
            raise RuntimeError(f"{node.node_id} is already running (pid {node.pid})")
        node.starts += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("BEAVER_VAULT_")}
        env["PYTHONUNBUFFERED"] = "1"
        if self.clocks is not None:
            env.update(self.clocks.env(node.index))
        argv = self.argv(node, join)
        with node.log_path.open("ab") as out:
            out.write(f"\n===== start #{node.starts}: {' '.join(argv)}\n".encode())
            out.flush()
            node.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        node.killed = False
        node.paused = False

    def kill(self, node: Node) -> None:
        if node.proc is None or node.proc.poll() is not None:
            return
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=10)
        node.killed = True
        node.paused = False

    def pause(self, node: Node) -> None:
        if node.running():
            assert node.proc is not None
            node.proc.send_signal(signal.SIGSTOP)
            node.paused = True

    def resume(self, node: Node) -> None:
        if node.running() and node.proc is not None:
            node.proc.send_signal(signal.SIGCONT)
        node.paused = False

    def unexpected_exits(self) -> list[str]:
        """Member nodes that died without our SIGKILL (a server crash is a finding). A node
        that was joining and exited 3 (join refused or never answered) is not a member: it is
        marked so here, not reported."""
        out = []
        for node in self.nodes:
            if node.proc is not None and not node.killed and node.member:
                code = node.proc.poll()
                if code is None:
                    continue
                if node.joining and code == 3:
                    node.member = False
                    node.joining = False
                    self.log(f"{node.node_id}: join did not complete (exit 3); slot freed")
                    continue
                out.append(f"{node.node_id} exited with code {code} (pid {node.proc.pid})")
        return out

    def members(self) -> list[Node]:
        return [n for n in self.nodes if n.member]

    def urls(self) -> list[str]:
        return [n.url for n in self.members()]

    def fresh_join(self, node: Node, via: Node) -> None:
        """Start ``node``'s slot as a brand-new member (new ID, empty data dir) joining via ``via``."""
        if node.running():
            raise RuntimeError(f"slot {node.index} is busy")
        node.generation += 1
        node.data_dir = self.data_root(node.index) / node.node_id
        node.member = True
        node.joining = True
        self.start(node, join=via.url)

    def retire(self, node: Node) -> None:
        """The node was removed from the configuration: stop its process; the slot is free."""
        if node.running() and node.proc is not None:
            node.proc.send_signal(signal.SIGCONT)
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(timeout=10)
        node.member = False
        node.joining = False
        node.killed = False
        node.paused = False

    def reported_members(self) -> list[str] | None:
        """The member list of the node that leads in the highest term any member reports (a
        removed node that has not heard of its removal may still answer and disagree)."""
        best: tuple[int, list[str]] | None = None
        for node in self.nodes:
            if not node.running():
                continue
            st = self.status(node)
            if st is None or st.get("role") != "leader":
                continue
            term = int(st.get("term", 0))
            if best is None or term > best[0]:
                best = (term, sorted(m["id"] for m in st.get("members", [])))
        return best[1] if best is not None else None

    def reconcile(self, timeout_s: float = 60.0) -> list[str]:
        """Make the slots match the leader's configuration, then rejoin fresh nodes until the
        cluster has ``size`` members again. Returns what it did."""
        done: list[str] = []
        reported = self.wait("the leader's member list", self.reported_members, timeout_s)
        for node in self.nodes:
            if node.member and node.node_id not in reported:
                self.retire(node)
                done.append(f"retire {node.node_id}")
            elif not node.member and node.node_id in reported:
                node.member = True
                done.append(f"adopt {node.node_id}")
        for node in self.nodes:
            node.joining = node.joining and node.node_id not in reported
        while len(self.members()) < self.size:
            free = next(n for n in self.nodes if not n.member and not n.running())
            leader = self.wait_leader(timeout_s)
            self.fresh_join(free, leader)

            def joined(node: Node = free) -> bool:
                return node.node_id in (self.reported_members() or [])

            self.wait(f"{free.node_id} to join", joined, timeout_s)
            free.joining = False
            done.append(f"join {free.node_id}")
        return done

    def stop_all(self) -> None:
        for node in self.nodes:
            if node.running() and node.proc is not None:
                node.proc.send_signal(signal.SIGCONT)
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 8
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(timeout=10)

    # ------------------------------------------------------------------ HTTP

    def status(self, node: Node, timeout_s: float = 1.0) -> dict[str, Any] | None:
        if not node.running() or node.paused:
            return None
        try:
            resp = httpx.get(node.url + STATUS_PATH, timeout=timeout_s)
        except httpx.HTTPError:
            return None
        if resp.status_code != 200:
            return None
        try:
            data = resp.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def leader(self) -> Node | None:
        """The node that every answering member names as leader, and that says so itself."""
        statuses = {n.index: self.status(n) for n in self.nodes if n.member}
        answering = {i: s for i, s in statuses.items() if s is not None}
        leaders = [i for i, s in answering.items() if s.get("role") == "leader"]
        if len(leaders) != 1:
            return None
        lid = self.nodes[leaders[0] - 1].node_id
        if any(s.get("leader_id") != lid for s in answering.values()):
            return None
        return self.nodes[leaders[0] - 1]

    def guess_leader(self) -> Node | None:
        """A live node that believes it leads (cheap; for picking a nemesis target)."""
        for node in self.members():
            st = self.status(node, timeout_s=0.5)
            if st is not None and st.get("role") == "leader":
                return node
        return None

    def wait(self, what: str, check: Callable[[], Any], timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")
            time.sleep(0.1)

    def wait_leader(self, timeout_s: float = 30.0) -> Node:
        node: Node = self.wait("a leader every live node agrees on", self.leader, timeout_s)
        return node

    def members_ok(self) -> bool:
        want = sorted(n.node_id for n in self.members())
        for node in self.members():
            st = self.status(node)
            if st is None or sorted(m["id"] for m in st.get("members", [])) != want:
                return False
        return True

    def start_all(self, timeout_s: float = 60.0) -> Node:
        """n1 bootstraps; the others join it. Returns the leader once everyone is a member."""
        first = self.nodes[0]
        self.start(first)
        self.wait(f"{first.node_id} to lead", lambda: self.leader() is first, timeout_s)
        for node in self.members()[1:]:
            self.start(node, join=first.url)
        self.wait("every node to list every member", self.members_ok, timeout_s)
        return self.wait_leader(timeout_s)

    def log_tails(self, lines: int = 15) -> str:
        parts = []
        for node in self.nodes:
            try:
                text = node.log_path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = []
            parts.append(f"----- {node.node_id} ({node.log_path}) -----\n" + "\n".join(text))
        return "\n".join(parts)
