"""The fault schedule of the safety phase: partitions, crashes (incl. mid-process), pauses.

Each fault class is a self-rescheduling event with exponentially distributed gaps (mean from
``Params``), drawn from the ``faults`` generator. The fault model is written down here and
nowhere else, so a failure can always be read as "this happened, within this model":

* partitions (one at a time, healed after a while): a symmetric split into two sides, the
  leader isolated from everyone, a one-way cut of some links, a one-way cut of the leader's
  outbound or inbound links;
* crashes of any node (the leader more often): immediate, or armed to strike inside
  ``process()`` at a crash point (before/after save, after the n-th send of some message kind,
  before/after apply, between two chunks of a snapshot install, right after an install);
  restarted after a random downtime; at most ceil(n/2) voters of the committed configuration
  down or armed, so a majority is sometimes lost but the run keeps moving;
* pauses (GC, SIGSTOP, a stalled VM): the node is frozen, inputs wait, then all arrive;
* skew and slow syncs are not events: they are properties of the node and the disk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sim.machine import SimNode
    from sim.world import World

from sim.machine import CRASH_MODES, INSTALL_CRASH_MODES, SEND_KINDS

INSTALL_ARM_MS = 3000  # an install arm that has not struck by then is dropped


class Faults:
    def __init__(self, world: World) -> None:
        self.w = world
        self.rng = world.fault_rng
        self.partitioned = False
        world.snapshot_listeners.append(self.snapshot_started)

    def start(self) -> None:
        p = self.w.params
        if p.partition_every_ms:
            self._later(p.partition_every_ms, self._partition)
        if p.crash_every_ms:
            self._later(p.crash_every_ms, self._crash)
        if p.pause_every_ms:
            self._later(p.pause_every_ms, self._pause)

    def _later(self, mean_ms: int, fn: object) -> None:
        gap = 1 + int(self.rng.expovariate(1.0 / mean_ms))
        self.w.queue.after(gap, self._fire, fn)

    def _fire(self, fn: object) -> None:
        if self.w.phase != "safety":
            return
        assert callable(fn)
        fn()

    def _pick(self, leader_bias: float) -> SimNode:
        leader = self.w.leader()
        if leader is not None and self.rng.random() < leader_bias:
            return leader
        return self.rng.choice(self._machines())

    def _machines(self) -> list[SimNode]:
        """Every machine that has ever run (spares that never joined stay out of the picture)."""
        return [n for n in self.w.nodes if n.incarnation > 0]

    # ---------------------------------------------------------------- partitions

    def _partition(self) -> None:
        w = self.w
        p = w.params
        self._later(p.partition_every_ms, self._partition)
        if self.partitioned:
            return
        ids = [n.id for n in self._machines()]
        leader = w.leader()
        kind = self.rng.choice(("split", "isolate-leader", "one-way", "leader-outbound", "leader-inbound"))
        blocked: set[tuple[str, str]] = set()
        if kind in ("isolate-leader", "leader-outbound", "leader-inbound") and leader is None:
            kind = "split"
        if kind == "split":
            side = set(self.rng.sample(ids, self.rng.randint(1, len(ids) // 2)))
            blocked = {(a, b) for a in ids for b in ids if (a in side) != (b in side)}
        elif kind == "one-way":
            for a in ids:
                for b in ids:
                    if a != b and self.rng.random() < 0.3:
                        blocked.add((a, b))
        else:
            assert leader is not None
            lid = leader.id
            others = [i for i in ids if i != lid]
            if kind in ("isolate-leader", "leader-outbound"):
                blocked |= {(lid, o) for o in others}
            if kind in ("isolate-leader", "leader-inbound"):
                blocked |= {(o, lid) for o in others}
        w.network.blocked = blocked
        self.partitioned = True
        w.stats["partitions"] += 1
        w.log(f"PARTITION {kind}: blocked {' '.join(f'{a}>{b}' for a, b in sorted(blocked))}")
        w.queue.after(self.rng.randint(max(1, p.partition_max_ms // 4), p.partition_max_ms), self._heal)

    def _heal(self) -> None:
        if not self.partitioned:
            return
        self.partitioned = False
        self.w.network.heal()
        self.w.log("HEAL network")

    # ---------------------------------------------------------------- crashes

    def _crash(self) -> None:
        w = self.w
        self._later(w.params.crash_every_ms, self._crash)
        for n in w.nodes:
            if n.arm is not None and n.arm[0] in INSTALL_CRASH_MODES and w.queue.now > n.arm_until:
                n.arm = None
        if self._too_many_out():
            return
        node = self._pick(0.2 if w.params.vote_crash_p > 0.5 else 0.4)
        if node.driver is None or node.arm is not None:
            return
        if self.rng.random() < w.params.vote_crash_p:
            # Die right after granting a vote: the moment a lost vote would do harm.
            mode, kind, count = "after-send", "VoteGranted", 1
        else:
            mode = self.rng.choice(CRASH_MODES)
            if mode == "now":
                w.crash(node, "power off")
                return
            kind = self.rng.choice(SEND_KINDS) if mode == "after-send" else ""
            count = self.rng.randint(1, 3)
        node.arm = (mode, count, kind)
        w.log(f"{node.id} ARM crash {mode} #{count} {kind}".rstrip())

    def _too_many_out(self) -> bool:
        w = self.w
        voters = [w.by_id[v] for v in w.config.voters if v in w.by_id] or w.nodes[: w.params.nodes]
        out = sum(1 for n in voters if n.driver is None or n.arm is not None)
        return out >= (len(voters) + 1) // 2

    def snapshot_started(self, node: SimNode) -> None:
        """A leader began streaming a snapshot to ``node``: sometimes arm a crash inside the
        install, between two chunks or right after the durable install (before the core
        restored from it). Called by the world, outside any node's ``process()``."""
        w = self.w
        p = w.params
        if w.phase != "safety" or not p.install_crash_p or node.driver is None or node.arm is not None:
            return
        if self.rng.random() >= p.install_crash_p or self._too_many_out():
            return
        mode = self.rng.choice(INSTALL_CRASH_MODES)
        count = self.rng.randint(1, 4) if mode == "install-chunk" else 1
        node.arm = (mode, count, "")
        node.arm_until = w.queue.now + INSTALL_ARM_MS
        w.log(f"{node.id} ARM crash {mode} #{count}")

    # ---------------------------------------------------------------- pauses

    def _pause(self) -> None:
        w = self.w
        p = w.params
        self._later(p.pause_every_ms, self._pause)
        node = self._pick(0.5)
        if node.driver is None:
            return
        ms = self.rng.randint(max(1, p.pause_max_ms // 5), p.pause_max_ms)
        node.busy_until = max(node.busy_until, w.queue.now + ms)
        w.stats["pauses"] += 1
        w.log(f"{node.id} PAUSE {ms}ms")

    def stop(self) -> None:
        """Liveness: heal the network and disarm every armed crash."""
        self._heal()
        for n in self.w.nodes:
            n.arm = None
