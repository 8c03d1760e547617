"""The nemesis: a seeded schedule of faults, up to ``concurrent`` kinds at once.

Loop: a quiet spell (1-3 s), then a round: 1..``concurrent`` distinct kinds drawn from the
enabled ones (the seed decides; the first round takes ``concurrent`` of them, so every run
combines as many as it was asked to at least once), all injected, held 1-4 s together, then
everything healed; the next quiet spell starts once the restarted members answer (at most
10 s later).
Kinds:

* kill: SIGKILL the leader (half the time) or random members (at most a minority), restart
  them on their own data on heal;
* pause: SIGSTOP the leader or random members (a minority), SIGCONT on heal;
* partition (nftables in the nodes' namespaces): isolate the leader, isolate one node, split
  into majority/minority, a ring (each node hears only its neighbours), a bridge (two halves
  that only one node sees both of), or one-way (a node receives nothing, or sends nothing);
* skew: bump the clocks of random nodes by -5..+5 s (libfaketime), restored on heal;
* clock: ONE node at a time: a large jump (1 minute to 1 hour, either way) or a strobe (its
  clock flips between two offsets up to 2 minutes apart every second while the fault holds);
* membership: remove a member (the leader a third of the time), transfer leadership, or,
  when the cluster is short of its size, join a fresh node (new ID, empty data directory);
* restart-all: SIGKILL every member at once, restart them all on heal;
* disk: SIGKILL the leader or a minority and make their FUSE layers (``disk``/``lazyfs``) lose
  every write not yet fsynced, as a power cut would; restart them on heal. With the disk fault
  on, restart-all is a whole-cluster power cut: every layer loses its un-fsynced writes;
* snapshot: SIGKILL a follower, restart it on heal (with a low ``--snapshot-threshold`` the
  leader compacted meanwhile and must install a snapshot), then SIGKILL it again 0-0.6 s
  after it first answers (during the install) and restart it once more.

Faults may overlap (a kill of the leader during a partition and a membership change): the
schedule is reproducible from the seed, what the cluster does under it is not. Every action
is printed and appended to a JSON Lines log with its time (seconds since ``t0``).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from jepsen_like.cluster import Cluster, Node

KINDS = ("kill", "pause", "partition", "skew", "clock", "membership", "restart-all", "snapshot", "disk")
PARTITION_MODES = ("isolate-leader", "isolate-one", "halves", "ring", "bridge", "one-way")
MEMBERSHIP_TIMEOUT_S = 8.0


class Nemesis:
    def __init__(
        self,
        cluster: Cluster,
        kinds: list[str],
        seed: int,
        log_path: Path,
        say: Callable[[str], None] = print,
        *,
        concurrent: int = 1,
        t0: float | None = None,
    ) -> None:
        self.cluster = cluster
        self.kinds = kinds
        self.concurrent = max(1, concurrent)
        self.rng = random.Random(f"{seed}:nemesis")
        self.say = say
        self.log_path = log_path
        self.t0 = time.monotonic() if t0 is None else t0
        self.injected: dict[str, int] = {k: 0 for k in kinds}
        self.errors: list[str] = []
        self.rounds = 0
        self.max_concurrent_seen = 0
        self._lock = threading.Lock()
        self._strobe: dict[int, tuple[float, float]] = {}  # slot -> (offset a, offset b)
        self._rekill: list[Node] = []  # snapshot: kill again shortly after the restart

    def record(self, action: str, **detail: Any) -> None:
        t = time.monotonic() - self.t0
        line = {"t": round(t, 3), "action": action, **detail}
        with self._lock, self.log_path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
        self.say(f"[nemesis {t:7.2f}s] {action} {json.dumps(detail) if detail else ''}".rstrip())

    # ------------------------------------------------------------------ targets

    def _live_members(self) -> list[Node]:
        return [n for n in self.cluster.members() if n.running() and not n.joining]

    def _targets(self, allow_leader: bool = True) -> list[Node]:
        nodes = self._live_members()
        if not nodes:
            return []
        minority = (len(self.cluster.members()) - 1) // 2
        if allow_leader and self.rng.random() < 0.5:
            leader = self.cluster.guess_leader()
            if leader is not None and leader in nodes:
                return [leader]
        count = min(len(nodes), self.rng.randint(1, max(1, minority)))
        return self.rng.sample(nodes, count)

    # ------------------------------------------------------------------ schedule

    def run(self, stop: threading.Event, stop_at: float) -> None:
        if not self.kinds:
            return
        while not stop.is_set() and time.monotonic() < stop_at:
            if stop.wait(self.rng.uniform(1.0, 3.0)) or time.monotonic() >= stop_at:
                break
            self.settle_joins()
            top = min(self.concurrent, len(self.kinds))
            k = top if self.rounds == 0 else self.rng.randint(1, top)  # the first round combines the most
            chosen = self.rng.sample(self.kinds, k)
            hold = self.rng.uniform(1.0, 4.0)
            self.rounds += 1
            self.max_concurrent_seen = max(self.max_concurrent_seen, k)
            for kind in chosen:
                try:
                    self.inject(kind)
                except Exception as e:  # a failed injection is reported, the run goes on
                    self.errors.append(f"{kind}: {e!r}")
                    self.record("error", kind=kind, error=repr(e))
            self._hold(min(hold, max(0.0, stop_at - time.monotonic())), stop)
            try:
                self.heal()
            except Exception as e:
                self.errors.append(f"heal: {e!r}")
                self.record("error", kind="heal", error=repr(e))
            self._wait_restarted(stop, stop_at)

    def _wait_restarted(self, stop: threading.Event, stop_at: float, limit_s: float = 10.0) -> None:
        """Let restarted members come up (a Python start takes seconds on a loaded machine)
        before the next quiet spell, so the next faults hit a working cluster."""
        deadline = min(stop_at, time.monotonic() + limit_s)
        while not stop.is_set() and time.monotonic() < deadline:
            down = [n for n in self._live_members() if self.cluster.status(n, timeout_s=0.5) is None]
            if not down:
                return
            stop.wait(0.1)

    def _hold(self, seconds: float, stop: threading.Event) -> None:
        """Wait out a round; a strobing clock flips every second meanwhile."""
        end = time.monotonic() + seconds
        flip = False
        while not stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            if stop.wait(min(1.0, left)):
                return
            clocks = self.cluster.clocks
            if self._strobe and clocks is not None:
                flip = not flip
                for slot, (a, b) in self._strobe.items():
                    clocks.set(slot, b if flip else a)

    def settle_joins(self) -> None:
        """A joining node that lists itself among the members has joined."""
        for node in self.cluster.nodes:
            if node.joining:
                st = self.cluster.status(node, timeout_s=0.5)
                if st is not None and node.node_id in [m.get("id") for m in st.get("members", [])]:
                    node.joining = False
                    self.record("joined", node=node.node_id)

    # ------------------------------------------------------------------ faults

    def inject(self, kind: str) -> None:
        match kind:
            case "kill":
                for node in self._targets():
                    self.cluster.kill(node)
                    self.record("kill", node=node.node_id)
            case "pause":
                for node in self._targets():
                    self.cluster.pause(node)
                    self.record("pause", node=node.node_id, pid=node.pid)
            case "partition":
                self._partition()
            case "skew":
                clocks = self.cluster.clocks
                if clocks is None:
                    raise RuntimeError("skew without libfaketime")
                for node in self._targets():
                    offset = clocks.base[node.index] + self.rng.choice([-1, 1]) * self.rng.uniform(0.2, 5.0)
                    clocks.set(node.index, offset)
                    self.record("skew", node=node.node_id, offset_s=round(offset, 3))
            case "clock":
                self._clock()
            case "membership":
                self._membership()
            case "restart-all":
                victims = self._live_members()
                for node in victims:
                    self.cluster.kill(node)
                self.record("restart-all", nodes=[n.node_id for n in victims])
                disks = self.cluster.disks
                if disks is not None:
                    for node in victims:
                        self.record("disk-crash", node=node.node_id, layer=disks.crash(node.index))
            case "disk":
                disks = self.cluster.disks
                if disks is None:
                    raise RuntimeError("disk fault without the FUSE layer")
                for node in self._targets():
                    self.cluster.kill(node)
                    self.record("disk-crash", node=node.node_id, layer=disks.crash(node.index))
            case "snapshot":
                leader = self.cluster.guess_leader()
                followers = [n for n in self._live_members() if n is not leader]
                if not followers:
                    raise RuntimeError("no follower to kill for a snapshot install")
                node = self.rng.choice(followers)
                self.cluster.kill(node)
                self._rekill.append(node)
                self.record("snapshot-kill", node=node.node_id)
            case _:
                raise ValueError(f"unknown fault kind {kind!r}")
        self.injected[kind] = self.injected.get(kind, 0) + 1

    def _partition(self) -> None:
        c = self.cluster
        net = c.network
        if net is None:
            raise RuntimeError("partition without namespaces")
        ids = [n.index for n in c.members()]
        modes = [m for m in PARTITION_MODES if not (m == "ring" and len(ids) < 4)]
        mode = self.rng.choice(modes)
        leader = c.guess_leader()
        lead = leader.index if leader is not None and leader.index in ids else self.rng.choice(ids)
        links: set[tuple[int, int]] = set()

        def cut_between(a: list[int], b: list[int]) -> None:
            for i in a:
                for j in b:
                    links.add((i, j))
                    links.add((j, i))

        if mode in ("isolate-leader", "isolate-one", "halves"):
            if mode == "isolate-leader":
                lonely = [lead]
            elif mode == "isolate-one":
                lonely = [self.rng.choice(ids)]
            else:
                lonely = self.rng.sample(ids, (len(ids) - 1) // 2)
            cut_between(lonely, [i for i in ids if i not in lonely])
            detail: dict[str, Any] = {"groups": [[f"n{i}" for i in lonely], [f"n{i}" for i in ids if i not in lonely]]}
        elif mode == "ring":
            order = self.rng.sample(ids, len(ids))
            pos = {i: p for p, i in enumerate(order)}
            n = len(order)
            for i in ids:
                for j in ids:
                    if i != j and (pos[i] - pos[j]) % n not in (1, n - 1):
                        links.add((i, j))
            detail = {"ring": [f"n{i}" for i in order]}
        elif mode == "bridge":
            order = self.rng.sample(ids, len(ids))
            bridge, rest = order[0], order[1:]
            half = len(rest) // 2
            cut_between(rest[:half], rest[half:])
            detail = {"bridge": f"n{bridge}", "sides": [[f"n{i}" for i in rest[:half]], [f"n{i}" for i in rest[half:]]]}
        else:  # one-way
            node = lead if self.rng.random() < 0.5 else self.rng.choice(ids)
            inbound = self.rng.random() < 0.5
            for j in ids:
                if j != node:
                    links.add((j, node) if inbound else (node, j))
            detail = {"node": f"n{node}", "drops": "inbound" if inbound else "outbound"}
        net.cut(links)
        self.record("partition", mode=mode, **detail)

    def _clock(self) -> None:
        clocks = self.cluster.clocks
        if clocks is None:
            raise RuntimeError("clock faults without libfaketime")
        if self._strobe or any(clocks.current[i] != clocks.base[i] for i in clocks.base):
            busy = [f"n{i}" for i in clocks.base if clocks.current[i] != clocks.base[i]]
            self.record("clock-skipped", reason="one node at a time", busy=busy)
            return
        nodes = self._live_members()
        if not nodes:
            return
        node = self.rng.choice(nodes)
        base = clocks.base[node.index]
        if self.rng.random() < 0.5:
            jump = self.rng.choice([-1, 1]) * self.rng.uniform(60.0, 3600.0)
            clocks.set(node.index, base + jump)
            self.record("clock-jump", node=node.node_id, jump_s=round(jump, 1))
        else:
            other = base + self.rng.choice([-1, 1]) * self.rng.uniform(5.0, 120.0)
            self._strobe[node.index] = (base, other)
            clocks.set(node.index, other)
            self.record("clock-strobe", node=node.node_id, between_s=[round(base, 1), round(other, 1)])

    def _membership(self) -> None:
        c = self.cluster
        members = [n for n in c.members() if not n.joining]
        live = [n for n in members if n.running() and not n.paused]
        if not live:
            raise RuntimeError("no live member to ask")
        via = self.rng.choice(live)
        free = [n for n in c.nodes if not n.member and not n.running()]
        if len(c.members()) < c.size and free:
            node = free[0]
            c.fresh_join(node, via)
            self.record("join", node=node.node_id, via=via.node_id)
            return
        roll = self.rng.random()
        if roll < 0.25:
            self._post(via, "/api/v1/raft/transfer-leadership", {})
            self.record("transfer", via=via.node_id)
            return
        leader = c.guess_leader()
        if roll < 0.5 and leader is not None and leader in members:
            victim = leader
        else:
            victim = self.rng.choice(members)
        resp = self._post(via, "/api/v1/raft/remove", {"NodeID": victim.node_id})
        reported = c.reported_members() if resp.status_code != 200 else None
        if resp.status_code == 200 or (reported is not None and victim.node_id not in reported):
            c.retire(victim)
            self.record("remove", node=victim.node_id, via=via.node_id, leader=victim is leader, status=resp.status_code)
        else:
            self.record("remove-refused", node=victim.node_id, status=resp.status_code, body=resp.text[:200])

    @staticmethod
    def _post(node: Node, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(node.url + path, json=body, timeout=MEMBERSHIP_TIMEOUT_S)

    # ------------------------------------------------------------------ heal

    def heal(self) -> None:
        """Undo every fault: SIGCONT, restart the killed, drop partitions, restore clocks, then
        the snapshot fault's second kill and restart."""
        c = self.cluster
        healed = []
        for node in c.nodes:
            if node.paused:
                c.resume(node)
                healed.append(f"resume {node.node_id}")
        if c.network is not None and c.network.partitioned:
            c.network.heal()
            healed.append("partition")
        if c.clocks is not None and (self._strobe or c.clocks.current != c.clocks.base):
            self._strobe.clear()
            c.clocks.heal()
            healed.append("clocks")
        for node in c.nodes:
            if node.killed and node.member:
                c.start(node)
                healed.append(f"restart {node.node_id}")
        if healed:
            self.record("heal", what=healed)
        rekill, self._rekill = self._rekill, []
        for node in rekill:
            if not (node.member and node.running()):
                continue
            # Once it answers, the leader is about to send (or sending) the snapshot: kill it
            # within the next 0-0.6 s, mid-install as often as not.
            deadline = time.monotonic() + 20
            while self.cluster.status(node, timeout_s=0.3) is None and time.monotonic() < deadline:
                time.sleep(0.02)
            before = self.cluster.status(node, timeout_s=0.3) or {}
            time.sleep(self.rng.uniform(0.0, 0.6))
            c.kill(node)
            self.record(
                "snapshot-kill-during-install", node=node.node_id, snapshot_index_seen=before.get("snapshot_index")
            )
            c.start(node)
            self.record("heal", what=[f"restart {node.node_id}"])
