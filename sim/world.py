"""The simulated world: nodes (production ``NodeDriver`` each), network, faults, invariants, phases.

Theory of operation
-------------------
Every node is the production ``NodeDriver`` with the production Raft core and key-value state
machine, over a ``SimDisk`` and a ``SimTransport``. The world feeds it exactly what the Trio
runtime feeds it in production -- ``tick()`` from a per-node ticker (each node's period is
skewed), ``receive(msg)`` from the network, client calls -- and calls ``process()`` after every
input, as the runtime's processing task does. Nothing else about the node is simulated.

Time: a node whose ``process()`` synced (or that is paused) is *busy* until the syncs are
done; inputs that arrive meanwhile wait (events are re-queued at ``busy_until``), and the
messages it sent after a sync leave only when that sync is done.

Crashes: ``crash()`` drops the driver object (all volatile state: role, progress, pending
waiters, unsent messages) and tells the disk to lose what was not durable; ``restart()`` builds
a new driver from the disk, as the process would after a reboot. A crash can be *armed* to fire
from inside ``process()`` at a given point: before or after a save, after the n-th send (of a
given message kind), before or after an apply -- the disk and transport raise ``SimCrash``.
The machine itself (``SimNode``, its crash points, its storage worker ``SimWorker``) is in
``sim/machine.py``.

Phases: formation (node n1 bootstraps, the others join one by one through the production join
handshake), safety (faults on, clients on), liveness (heal everything, restart every node,
require convergence and a fresh committed write within ``liveness_ticks`` ticks).

Invariants (``sim/invariants.py``), checked after every step of every node: at most one
leader per term; an entry that any node considered committed never changes (compared with the
first one seen at that index); a new leader holds every entry committed so far; entries applied
match the committed ones, and two nodes at the same applied index hold the same key-value state
(fingerprint). A broken one raises ``SimFailure("safety", ...)``; so does
``InvariantViolation`` from the core.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TextIO

from beaver_vault.errors import BeaverVaultError, InvariantViolation
from beaver_vault.node.driver import DriverOptions, NodeDriver, Waiter
from beaver_vault.raft.config import RaftConfig
from beaver_vault.raft.core import LEADER
from beaver_vault.raft.messages import (
    AppendRequest,
    AppendResponse,
    Entry,
    InstallSnapshot,
    Membership,
    Message,
    SnapshotAck,
    VoteRequest,
    VoteResponse,
    is_handshake,
)
from sim.bugs import driver_class
from sim.churn import CHANGE_TIMEOUT_TICKS
from sim.disk import SimDisk
from sim.events import EventQueue
from sim.failures import SimCrash, SimFailure
from sim.invariants import Invariants, StateLike, fingerprint
from sim.machine import SimNode, SimWorker
from sim.network import Network, SimTransport
from sim.params import Params, derive
from sim.sqlite_disk import SqliteDisk, remove_directory, run_directory


class World:
    def __init__(self, params: Params, out: TextIO | None = None, verbose: bool = False) -> None:
        self.params = params
        self.out = out
        self.verbose = verbose and out is not None
        self.queue = EventQueue()
        self.net_rng = derive(params.seed, "net")
        self.fault_rng = derive(params.seed, "faults")
        self.disk_rng = derive(params.seed, "disk")
        self.worker_rng = derive(params.seed, "worker")
        self.batch_rng = derive(params.seed, "batch-inputs:draws")
        self.network = Network(self.queue, params, self.net_rng)
        self.network.deliver = self.deliver
        # --storage sqlite: every disk is the production SQLiteStorage on a file in this directory.
        self.sqlite_dir = run_directory() if params.storage == "sqlite" else None
        self.marks: list[tuple[int, str]] | None = None  # fault/leader events, for a timeline
        self.raft_config = RaftConfig(
            election_ticks=params.election_ticks,
            heartbeat_ticks=params.heartbeat_ticks,
            log_cache_bytes=params.log_cache_bytes,
        )
        # The first ``params.nodes`` machines form the cluster; the spares may join it later
        # (a spare ticks at the nominal rate).
        self.nodes = [
            SimNode(self, f"n{i + 1}", params.tick_ms_by_node[i] if i < params.nodes else params.tick_ms)
            for i in range(params.nodes + params.spares)
        ]
        self.by_id = {n.id: n for n in self.nodes}
        self.phase = "formation"
        self.slow_sync_p = params.slow_sync_p
        # what the world has seen committed so far, and the safety checks against it
        self.invariants = Invariants(self)
        self.stats: dict[str, int] = {
            "crashes": 0,
            "restarts": 0,
            "partitions": 0,
            "pauses": 0,
            "elections": 0,
            "compactions": 0,
            "snapshots_sent": 0,
            "snapshots_installed": 0,
            "install_crashes": 0,
            "snapshot_restarts": 0,
            "wipes": 0,
            "disk_rollbacks": 0,  # SQLite: a crash rolled the files back past written data
            "log_reads": 0,
        }
        self.crash_listeners: list[Callable[[SimNode], None]] = []
        self.snapshot_listeners: list[Callable[[SimNode], None]] = []  # a snapshot is on its way to it
        self.apply_listeners: list[Callable[[SimNode, StateLike], None]] = []  # after each apply

    # ---------------------------------------------------------------- tracing

    def new_disk(self, node: SimNode) -> SimDisk | SqliteDisk:
        p = self.params
        lying, forget = p.bug == "ack-before-fsync", p.bug == "forget-vote"
        if self.sqlite_dir is not None:
            path = f"{self.sqlite_dir}/{node.id}-{node.disk_gen}.db"
            return SqliteDisk(node, path, lying=lying, forget_vote=forget)
        return SimDisk(node, lying=lying, forget_vote=forget)

    def close(self) -> None:
        """Release what the run holds outside memory (the SQLite files)."""
        if self.sqlite_dir is not None:
            for n in self.nodes:
                if isinstance(n.disk, SqliteDisk):
                    n.disk.destroy()
            remove_directory(self.sqlite_dir)
            self.sqlite_dir = None

    def log(self, text: str) -> None:
        if self.marks is not None and not text.startswith("client ") and "->" not in text.split(" ", 1)[0]:
            self.marks.append((self.queue.now, text))
        if self.verbose and self.out is not None:
            self.out.write(f"{self.queue.now:>7} {text}\n")

    # ---------------------------------------------------------------- node lifecycle

    def boot(self, node: SimNode, bootstrap: bool) -> None:
        node.incarnation += 1
        node.busy_until = self.queue.now
        node.process_pending = False
        node.checked_commit = 0
        node.senders_seen = set()
        transport = SimTransport(self.network, node.departure, node.after_send)
        node.driver = driver_class(self.params.bug)(
            node.id,
            node.disk,
            transport,
            raft_config=self.raft_config,
            rng=derive(self.params.seed, f"node:{node.id}:{node.incarnation}"),
            options=DriverOptions(
                raft_address=node.addr,
                http_address=f"http://{node.id}",
                snapshot_threshold=self.params.snapshot_threshold,
                snapshot_chunk_bytes=self.params.snapshot_chunk_bytes,
                snapshot_timeout_ticks=self.params.snapshot_timeout_ticks,
                tick_ms=self.params.tick_ms,
                change_timeout_ticks=CHANGE_TIMEOUT_TICKS,
            ),
        )
        node.driver.set_worker(SimWorker(self, node))
        self.log(f"{node.id} start #{node.incarnation} (bootstrap={bootstrap})")
        self.run_on(node, lambda d: d.start(bootstrap))
        d = node.driver
        if d is not None and d.applied_index:
            # Recovery from snapshot + log: the state found on disk is the state every other node
            # had at that applied index, and the log past the snapshot agrees with what was
            # committed (checked by _check_node from checked_commit = 0).
            if node.disk.live.snapshot_index:
                self.stats["snapshot_restarts"] += 1
            self.invariants.check_state(node, node.disk.live)
        self.queue.after(node.tick_ms, self._tick, node, node.incarnation)

    def crash(self, node: SimNode, why: str, restart: bool = True) -> None:
        if node.driver is None:
            return
        if restart:
            self.stats["crashes"] += 1
        node.driver = None
        node.arm = None
        node.busy_until = 0
        lost = getattr(node.disk, "lost_on_crash", 0)
        node.disk.crash()
        if getattr(node.disk, "lost_on_crash", 0) > lost:
            self.stats["disk_rollbacks"] += 1
        self.log(f"{node.id} CRASH ({why})")
        if why.startswith("armed, install") or why.startswith("armed, after-install"):
            self.stats["install_crashes"] += 1
        if self.phase != "formation":
            self.invariants.check_durable_majority(node)
        for listener in self.crash_listeners:
            listener(node)
        if self.phase == "safety" and restart:
            self.queue.after(self.fault_rng.randint(1, max(1, self.params.downtime_max_ms)), self.restart, node)

    def wipe(self, node: SimNode) -> None:
        """A machine that left the cluster gets a brand-new, empty disk (and must be down)."""
        if node.driver is not None:
            raise RuntimeError(f"wipe of running node {node.id}")
        old = node.disk
        node.disk_gen += 1
        node.disk = self.new_disk(node)
        if isinstance(old, SqliteDisk):
            old.destroy()
        node.flush_pending = False
        self.stats["wipes"] += 1
        self.log(f"{node.id} WIPE disk")

    @property
    def config(self) -> Membership:
        """The latest configuration any node saw committed."""
        return self.invariants.config

    @property
    def last_committed(self) -> int:
        """The highest index any node saw committed."""
        return self.invariants.last_committed

    def members(self) -> tuple[str, ...]:
        """Ids of the latest committed configuration (voters and learners)."""
        return self.config.ids

    def restart(self, node: SimNode) -> None:
        if node.driver is not None:
            return
        self.stats["restarts"] += 1
        self.boot(node, bootstrap=False)

    def sync_latency(self) -> int:
        p = self.params
        if self.slow_sync_p and self.disk_rng.random() < self.slow_sync_p:
            return self.disk_rng.randint(1, p.slow_sync_max_ms)
        return self.disk_rng.randint(0, p.sync_max_ms) if p.sync_max_ms else 0

    # ---------------------------------------------------------------- driving a node

    def busy(self, node: SimNode, fn: Callable[..., None], *args: object) -> bool:
        """If the node is still inside a sync or a pause, run ``fn`` again when it is free."""
        if self.queue.now < node.busy_until:
            self.queue.at(node.busy_until, fn, *args)
            return True
        return False

    def run_on(self, node: SimNode, action: Callable[[NodeDriver], object], process: bool = True) -> bool:
        """One input then ``process()`` (``process=False``: the input only; a later call
        processes it with others, as the runtime may). False if the node is down or crashed on
        the way. A ``BeaverVaultError`` from ``action`` propagates to the caller (nothing was
        done), after the node processed nothing."""
        d = node.driver
        if d is None:
            return False
        node.sync_delay_ms = 0
        try:
            try:
                action(d)
            finally:
                if process:
                    node.process_pending = False
                    d.process()
        except SimCrash as c:
            self.crash(node, f"armed, {c}")
            return False
        except InvariantViolation as e:
            raise SimFailure("safety", f"{node.id}: the core detected: {e}") from None
        if node.sync_delay_ms:
            node.busy_until = max(node.busy_until, self.queue.now + node.sync_delay_ms)
        self._check_node(node, d)
        return True

    def _tick(self, node: SimNode, incarnation: int) -> None:
        if node.driver is None or node.incarnation != incarnation:
            return
        if self.busy(node, self._tick, node, incarnation):
            return
        self.run_on(node, lambda d: d.tick())
        if node.driver is not None and node.incarnation == incarnation:
            self.queue.after(node.tick_ms, self._tick, node, incarnation)

    def deliver(self, msg: Message, cluster_id: str | None) -> None:
        node = self.by_id.get(msg.dst)
        if node is None or node.driver is None or (msg.src, msg.dst) in self.network.blocked:
            return
        if self.busy(node, self.deliver, msg, cluster_id):
            return
        if not is_handshake(msg):
            own = node.driver.cluster_id
            if own is None or own != cluster_id:
                return  # like the TCP transport: Raft frames of another (or no) cluster
        if self.verbose:
            self.log(f"{msg.src}->{msg.dst} {_show(msg)}")
        p = self.params.batch_inputs
        if node.process_pending or (p and self.batch_rng.random() < p):
            # Stepped now, processed a moment later together with what arrives meanwhile.
            if not node.process_pending:
                node.process_pending = True
                self.queue.after(1, self._deferred_process, node, node.incarnation)
            self.run_on(node, lambda d: d.receive(msg), process=False)
            return
        self.run_on(node, lambda d: d.receive(msg))

    def _deferred_process(self, node: SimNode, incarnation: int) -> None:
        if node.driver is None or node.incarnation != incarnation or not node.process_pending:
            return
        if self.busy(node, self._deferred_process, node, incarnation):
            return
        self.run_on(node, lambda d: None)

    def call(self, node: SimNode, fn: Callable[[NodeDriver], Waiter]) -> Waiter | BeaverVaultError | None:
        """A client call on a node: its Waiter, its typed error, or None if the node is down."""
        box: list[Waiter | BeaverVaultError] = []

        def action(d: NodeDriver) -> None:
            try:
                box.append(fn(d))
            except BeaverVaultError as e:
                box.append(e)

        if not self.run_on(node, action):
            return None
        return box[0] if box else None

    # ---------------------------------------------------------------- checks

    def _check_node(self, node: SimNode, d: NodeDriver) -> None:
        if d.senders:
            for pid in sorted(d.senders):
                key = (pid, d.senders[pid].index)
                target = self.by_id.get(pid)
                if key not in node.senders_seen and target is not None:
                    node.senders_seen.add(key)
                    for listener in self.snapshot_listeners:
                        listener(target)
        self.invariants.check_node(node, d)

    def check_applied(self, node: SimNode, entries: Sequence[Entry], storage: StateLike) -> None:
        self.invariants.check_applied(node, entries, storage)
        for listener in self.apply_listeners:
            listener(node, storage)

    def converged(self) -> str | None:
        """None when every node is up, caught up and identical; else what is missing."""
        views = []
        members = [self.by_id[i] for i in self.members() if i in self.by_id] or self.nodes[: self.params.nodes]
        for n in members:
            d = n.driver
            if d is None:
                return f"{n.id} is down"
            core = d.core
            if d.applied_index != core.commit or core.commit != core.log.last_index:
                return f"{n.id} not caught up (applied {d.applied_index}, commit {core.commit}, last {core.log.last_index})"
            views.append((d.applied_index, core.log.last_term, fingerprint(n.disk.live)))
        if any(v != views[0] for v in views):
            return "nodes differ: " + ", ".join(f"{n.id}@{v[0]}" for n, v in zip(members, views, strict=True))
        return None

    def leader(self) -> SimNode | None:
        best: SimNode | None = None
        for n in self.nodes:
            d = n.driver
            if (
                d is not None
                and d.core.role == LEADER
                and (best is None or best.driver is None or d.core.term > best.driver.core.term)
            ):
                best = n
        return best


def _show(msg: Message) -> str:
    match msg:
        case AppendRequest():
            return (
                f"AppendRequest t{msg.term} prev={msg.prev_index}/{msg.prev_term} "
                f"n={len(msg.entries)} commit={msg.commit}"
            )
        case AppendResponse():
            return f"AppendResponse t{msg.term} ok={msg.success} match={msg.match_index}"
        case VoteRequest():
            pre = " pre" if msg.pre_vote else ""
            return f"VoteRequest{pre} t{msg.term} last={msg.last_log_index}/{msg.last_log_term}"
        case VoteResponse():
            pre = " pre" if msg.pre_vote else ""
            return f"VoteResponse{pre} t{msg.term} granted={msg.granted}"
        case InstallSnapshot():
            done = " done" if msg.done else ""
            return f"InstallSnapshot t{msg.term} at={msg.index}/{msg.snap_term} seq={msg.seq} {len(msg.data)}B{done}"
        case SnapshotAck():
            return f"SnapshotAck t{msg.term} at={msg.index} seq={msg.seq} ok={msg.ok}"
        case _:
            return type(msg).__name__
