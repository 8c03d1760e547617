"""The nemesis: a seeded schedule of faults, one at a time, each healed before the next.

Loop: a quiet spell (1-3 s), then one fault drawn from the enabled kinds, held 1-4 s, then
healed. Kinds:

* kill: SIGKILL the leader (half the time) or random nodes (at most a minority), restart
  them on their own data on heal;
* pause: SIGSTOP the leader or random nodes (a minority), SIGCONT on heal;
* partition: isolate the leader, isolate a random node, or split into a random majority and
  minority (nftables drops inside the nodes' namespaces), removed on heal;
* skew: bump the clocks of random nodes by -5..+5 s (libfaketime), restored on heal.

Every action is printed and appended to a JSON Lines log with its time since the start.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jepsen_like.cluster import Cluster, Node

KINDS = ("kill", "pause", "partition", "skew")


class Nemesis:
    def __init__(
        self,
        cluster: Cluster,
        kinds: list[str],
        seed: int,
        log_path: Path,
        say: Callable[[str], None] = print,
    ) -> None:
        self.cluster = cluster
        self.kinds = kinds
        self.rng = random.Random(f"{seed}:nemesis")
        self.say = say
        self.log_path = log_path
        self.t0 = time.monotonic()
        self.injected: dict[str, int] = {k: 0 for k in kinds}
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def record(self, action: str, **detail: Any) -> None:
        t = time.monotonic() - self.t0
        line = {"t": round(t, 3), "action": action, **detail}
        with self._lock, self.log_path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
        self.say(f"[nemesis {t:7.2f}s] {action} {json.dumps(detail) if detail else ''}".rstrip())

    def _sleep(self, seconds: float, stop: threading.Event) -> bool:
        """Sleep unless stopped; True if stopped."""
        return stop.wait(seconds)

    def _targets(self, allow_leader: bool = True) -> list[Node]:
        nodes = self.cluster.nodes
        minority = (len(nodes) - 1) // 2
        if allow_leader and self.rng.random() < 0.5:
            leader = self.cluster.guess_leader()
            if leader is not None:
                return [leader]
        count = self.rng.randint(1, max(1, minority))
        return self.rng.sample(nodes, count)

    def run(self, stop: threading.Event, stop_at: float) -> None:
        if not self.kinds:
            return
        while not stop.is_set() and time.monotonic() < stop_at:
            if self._sleep(self.rng.uniform(1.0, 3.0), stop) or time.monotonic() >= stop_at:
                break
            kind = self.rng.choice(self.kinds)
            hold = self.rng.uniform(1.0, 4.0)
            try:
                self.inject(kind)
            except Exception as e:  # a failed injection is reported, the run goes on
                self.errors.append(f"{kind}: {e!r}")
                self.record("error", kind=kind, error=repr(e))
            self._sleep(min(hold, max(0.0, stop_at - time.monotonic())), stop)
            try:
                self.heal()
            except Exception as e:
                self.errors.append(f"heal: {e!r}")
                self.record("error", kind="heal", error=repr(e))

    def inject(self, kind: str) -> None:
        c = self.cluster
        if kind == "kill":
            for node in self._targets():
                c.kill(node)
                self.record("kill", node=node.node_id)
        elif kind == "pause":
            for node in self._targets():
                c.pause(node)
                self.record("pause", node=node.node_id, pid=node.pid)
        elif kind == "partition":
            net = c.network
            if net is None:
                raise RuntimeError("partition without namespaces")
            ids = [n.index for n in c.nodes]
            mode = self.rng.choice(["isolate-leader", "isolate-one", "halves"])
            if mode == "isolate-leader":
                leader = c.guess_leader()
                lonely = [leader.index] if leader is not None else [self.rng.choice(ids)]
            elif mode == "isolate-one":
                lonely = [self.rng.choice(ids)]
            else:
                lonely = self.rng.sample(ids, (len(ids) - 1) // 2)
            rest = [i for i in ids if i not in lonely]
            net.partition([lonely, rest])
            self.record("partition", mode=mode, groups=[[f"n{i}" for i in lonely], [f"n{i}" for i in rest]])
        elif kind == "skew":
            clocks = c.clocks
            if clocks is None:
                raise RuntimeError("skew without libfaketime")
            for node in self._targets(allow_leader=True):
                offset = clocks.base[node.index] + self.rng.choice([-1, 1]) * self.rng.uniform(0.2, 5.0)
                clocks.set(node.index, offset)
                self.record("skew", node=node.node_id, offset_s=round(offset, 3))
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        self.injected[kind] = self.injected.get(kind, 0) + 1

    def heal(self) -> None:
        """Undo every fault: SIGCONT, restart the killed, drop partitions, restore clocks."""
        c = self.cluster
        healed = []
        for node in c.nodes:
            if node.paused:
                c.resume(node)
                healed.append(f"resume {node.node_id}")
        for node in c.nodes:
            if node.killed:
                c.start(node)
                healed.append(f"restart {node.node_id}")
        if c.network is not None and c.network.partitioned:
            c.network.heal()
            healed.append("partition")
        if c.clocks is not None and c.clocks.current != c.clocks.base:
            c.clocks.heal()
            healed.append("clocks")
        if healed:
            self.record("heal", what=healed)
