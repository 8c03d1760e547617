"""One simulated machine: the node (``SimNode``) and its storage worker thread (``SimWorker``).

Theory of operation
-------------------
A ``SimNode`` is what survives and what does not: its disk survives crashes, its driver (the
production ``NodeDriver``, built by ``World.boot``) does not. It is also the disk's and the
transport's view of the world (``sim.disk.DiskHooks``): the crash points an armed crash
strikes at (``CRASH_MODES``: before or after a save, after the n-th send of a message kind,
before or after an apply; ``INSTALL_CRASH_MODES``: inside a snapshot install), the latency a
sync adds to the current ``process()`` call, the lazy flush of a disk that writes back late,
and the invariant checks every save, apply and install is reported to.

A ``SimWorker`` is the node's storage worker thread in simulated time
(``node/storage_jobs.py``): a job runs on the disk when it completes, after its own seeded
latency, in submission order, interleaved with the network and the ticks. A crash before that
drops it unrun (what was not synced is lost) together with its completion.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from beaver_vault.node.driver import NodeDriver
from beaver_vault.node.storage_jobs import StorageJob
from beaver_vault.raft.messages import Entry, Message, VoteResponse
from beaver_vault.storage.memory import MemoryStorage
from sim.failures import SimCrash

if TYPE_CHECKING:
    from sim.world import World

CRASH_MODES = ("now", "before-save", "after-save", "after-send", "before-apply", "after-apply")
INSTALL_CRASH_MODES = ("install-chunk", "after-install")  # inside a snapshot install (see disk)
SEND_KINDS = ("", "VoteGranted", "VoteResponse", "AppendResponse", "AppendRequest", "VoteRequest")


class SimNode:
    """One machine: its disk survives crashes, its driver does not."""

    def __init__(self, world: World, node_id: str, tick_ms: int) -> None:
        self.world = world
        self.id = node_id
        self.addr = f"{node_id}:7000"
        self.tick_ms = tick_ms
        self.disk_gen = 0  # bumped when the disk is wiped (a re-join as a brand-new machine)
        self.disk = world.new_disk(self)
        self.driver: NodeDriver | None = None
        self.incarnation = 0
        self.busy_until = 0
        self.sync_delay_ms = 0  # syncs done so far in the current process() call
        self.arm: tuple[str, int, str] | None = None  # (where, countdown, message kind filter)
        self.arm_until = 0  # install arms expire (a node may never receive a snapshot)
        self.senders_seen: set[tuple[str, int]] = set()  # (follower, snapshot index) streamed to
        self.checked_commit = 0
        self.flush_pending = False
        self.process_pending = False  # inputs stepped, their process() scheduled (batch_inputs)
        self.in_worker = False  # running a storage job: its latency was drawn at submission

    # ---------------------------------------------------------------- disk hooks

    def crash_point(self, where: str) -> None:
        arm = self.arm
        if arm is not None and arm[0] == where:
            if arm[1] <= 1:
                raise SimCrash(where)
            self.arm = (where, arm[1] - 1, arm[2])

    def after_send(self, msg: Message) -> None:
        granted_vote = False
        if isinstance(msg, VoteResponse) and msg.granted and not msg.pre_vote:
            granted_vote = True
            self.world.invariants.check_vote(msg.src, msg.term, msg.dst)
        arm = self.arm
        if arm is not None and arm[0] == "after-send":
            kind = arm[2]
            if not kind or type(msg).__name__ == kind or (kind == "VoteGranted" and granted_vote):
                self.crash_point("after-send")

    def sync(self) -> None:
        if self.in_worker:
            return  # the storage worker's job: its completion already waits for the sync
        self.sync_delay_ms += self.world.sync_latency()

    def saved(self, entries: Sequence[Entry]) -> None:
        pass  # see Invariants.check_node: a lagging follower may legitimately store a stale entry

    def applied(self, entries: Sequence[Entry], storage: MemoryStorage) -> None:
        self.world.check_applied(self, entries, storage)

    def installed(self, storage: MemoryStorage) -> None:
        self.world.invariants.check_state(self, storage)

    def count(self, name: str) -> None:
        self.world.stats[name] += 1

    def want_flush(self) -> None:
        if not self.flush_pending:
            self.flush_pending = True
            w = self.world
            w.queue.after(w.disk_rng.randint(1, w.params.lazy_flush_max_ms), self._flush)

    def _flush(self) -> None:
        self.flush_pending = False
        self.disk.flush()

    def departure(self) -> int:
        return self.world.queue.now + self.sync_delay_ms


class SimWorker:
    """The node's storage worker thread, in simulated time (``node/storage_jobs.py``): a job
    runs on the disk when it completes, after its own seeded latency (an fsync's, slow ones
    included), in submission order, interleaved with the network and the ticks. A crash before
    that drops it unrun (what was not synced is lost) together with its completion."""

    def __init__(self, world: World, node: SimNode) -> None:
        self.world = world
        self.node = node
        self.incarnation = node.incarnation
        self.last_at = world.queue.now
        # In submission order. Each completion event runs the job at the head: a pause re-queues
        # events, and a re-queued one may then fall behind a later job's event; the jobs stay
        # in order all the same.
        self.pending: deque[StorageJob] = deque()

    def submit(self, job: StorageJob) -> None:
        w = self.world
        if job.name == "read-log":
            w.stats["log_reads"] += 1  # a follower needed entries that left the in-memory cache
        self.pending.append(job)
        self.last_at = max(self.last_at, w.queue.now + self.latency())
        w.queue.at(self.last_at, self.complete, self.node, self.incarnation)

    def latency(self) -> int:
        """How long a storage job takes: a little, plus an fsync's latency when disks are slow."""
        w = self.world
        return w.worker_rng.randint(0, 2) + w.sync_latency()

    def complete(self, node: SimNode, incarnation: int) -> None:
        """Run the next job now and report it done (unless the node crashed since)."""
        w = self.world
        if node.driver is None or node.incarnation != incarnation:
            return  # lost with the crash, unrun: a write that was never synced
        if w.busy(node, self.complete, node, incarnation):
            return  # a paused process pauses its worker thread too
        job = self.pending.popleft()

        def action(d: NodeDriver) -> None:
            node.in_worker = True
            try:
                job.result = job.run(node.disk)
            finally:
                node.in_worker = False
            d.storage_done(job)

        w.run_on(node, action)
