"""Network namespaces for partitions: every node in its own namespace, a hub with a bridge.

Layout (all names carry this run's tag, so two runs never share anything)::

    <tag>h  (hub)   br0 10.77.0.254/24, one veth end per node enslaved to br0
    <tag>n1 (node)  eth0 10.77.0.1/24  <-> veth v1 in the hub
    <tag>n2 (node)  eth0 10.77.0.2/24  <-> veth v2 in the hub  ...

Nothing is created in the namespace the harness started in: links are created inside the hub
(``ip -n``) and their peers moved straight into the node namespace. The harness's own threads
(the HTTP clients) join the hub with ``setns(2)`` on the main thread before any thread or
socket exists, so the addresses above are reachable only from inside this run. A partition is
an nftables table ``inet bvj`` inside a node's namespace that drops traffic to and from the
other side's addresses; healing deletes those tables. ``teardown`` deletes every namespace it
made (their veths go with them) and returns the harness to its original namespace.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence

SUBNET = "10.77.0"
HUB_ADDRESS = f"{SUBNET}.254"
CLONE_NEWNET = 0x40000000
TABLE = "bvj"


class NetnsError(RuntimeError):
    pass


def unavailable_reason() -> str | None:
    """Why partitions cannot work here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install iproute2 nftables; scripts/setup-env.sh installs them as root)"
    return None


def _run(argv: Sequence[str], *, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"setns({path}) failed: {os.strerror(err)}")
    finally:
        os.close(fd)


class Network:
    """The namespaces of one run. ``address(i)`` is node i's (1-based) IP."""

    def __init__(self, tag: str, n: int) -> None:
        self.tag = tag
        self.n = n
        self.hub = f"{tag}h"
        self.nodes = [f"{tag}n{i}" for i in range(1, n + 1)]
        self.created: list[str] = []
        self.home_fd: int | None = None
        self.partitioned: set[int] = set()

    @staticmethod
    def address(i: int) -> str:
        return f"{SUBNET}.{i}"

    def namespace(self, i: int) -> str:
        return self.nodes[i - 1]

    def setup(self) -> None:
        """Create the hub and node namespaces and move this process into the hub."""
        _run(["ip", "netns", "add", self.hub])
        self.created.append(self.hub)
        _run(["ip", "-n", self.hub, "link", "set", "lo", "up"])
        _run(["ip", "-n", self.hub, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", self.hub, "addr", "add", f"{HUB_ADDRESS}/24", "dev", "br0"])
        _run(["ip", "-n", self.hub, "link", "set", "br0", "up"])
        for i, ns in enumerate(self.nodes, start=1):
            _run(["ip", "netns", "add", ns])
            self.created.append(ns)
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", self.hub, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns])
            _run(["ip", "-n", self.hub, "link", "set", f"v{i}", "master", "br0", "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        self.home_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        _setns(f"/run/netns/{self.hub}")

    def wrap(self, i: int, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside node i's namespace (``ip netns exec`` execs: the PID is argv's)."""
        return ["ip", "netns", "exec", self.namespace(i), *argv]

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Cut every link between different groups (node ids 1..n); links inside a group stay."""
        groups = [sorted(g) for g in groups]
        side = {i: gi for gi, g in enumerate(groups) for i in g}
        links = {
            (i, j)
            for i in range(1, self.n + 1)
            for j in range(1, self.n + 1)
            if i != j and i in side and j in side and side[i] != side[j]
        }
        self.cut(links)

    def cut(self, links: Iterable[tuple[int, int]]) -> None:
        """Drop the traffic of every directed link ``(src, dst)``: ``dst`` drops what comes from
        ``src`` and ``src`` drops what it sends to ``dst``. A link cut in one direction only
        (``one-way``) still lets the other direction through, TCP handshakes excepted."""
        drop_in: dict[int, set[int]] = {}
        drop_out: dict[int, set[int]] = {}
        for src, dst in links:
            drop_out.setdefault(src, set()).add(dst)
            drop_in.setdefault(dst, set()).add(src)
        for i in range(1, self.n + 1):
            ins = sorted(drop_in.get(i, ()))
            outs = sorted(drop_out.get(i, ()))
            self.heal_node(i)
            if not ins and not outs:
                continue
            chains = []
            if ins:
                peers = ", ".join(self.address(j) for j in ins)
                chains.append(f"  chain in {{ type filter hook input priority 0; policy accept; ip saddr {{ {peers} }} drop; }}\n")
            if outs:
                peers = ", ".join(self.address(j) for j in outs)
                chains.append(f"  chain out {{ type filter hook output priority 0; policy accept; ip daddr {{ {peers} }} drop; }}\n")
            rules = f"table inet {TABLE} {{\n" + "".join(chains) + "}\n"
            _run(["ip", "netns", "exec", self.namespace(i), "nft", "-f", "-"], stdin=rules)
            self.partitioned.add(i)

    def heal_node(self, i: int) -> None:
        _run(["ip", "netns", "exec", self.namespace(i), "nft", "delete", "table", "inet", TABLE], check=False)
        self.partitioned.discard(i)

    def heal(self) -> None:
        for i in range(1, self.n + 1):
            self.heal_node(i)

    def teardown(self) -> list[str]:
        """Back to the original namespace; delete what we created. Returns problems, if any."""
        problems: list[str] = []
        if self.home_fd is not None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(self.home_fd, CLONE_NEWNET) != 0:
                    problems.append(f"setns(home) failed: {os.strerror(ctypes.get_errno())}")
            finally:
                os.close(self.home_fd)
                self.home_fd = None
        for ns in reversed(self.created):
            proc = _run(["ip", "netns", "del", ns], check=False)
            if proc.returncode != 0:
                problems.append(f"ip netns del {ns}: {proc.stderr.strip()}")
        self.created.clear()
        return problems
