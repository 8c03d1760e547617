"""The driver's storage half: handing each Ready to the storage worker, and what happens as
the worker reports jobs done (``NodeDriver`` in ``driver.py`` inherits ``StorageEffects``; the
fields it uses are set in ``NodeDriver.__init__`` and declared below).

Storage work runs on a storage worker (``node/storage_jobs.py``): ``process()`` hands each
Ready's writes to it and goes on; the worker reports each job done, in order, through
``storage_done``. The ordering rules that make this safe (each one a test in
tests/test_storage_worker.py; the simulator's planted ``ack-before-durable`` bug breaks the
first):

1. A follower's AppendResponse (any message but a leader's AppendRequest) leaves only once
   every write submitted before it is durable: it rides on the completion of the last save.
2. The leader counts its own match index only once its own append is durable
   (``RaftCore.persisted`` on the save's completion), so commitment needs a durable majority.
3. A vote or a term change is durable before any message that depends on it leaves (the hard
   state is in the save that the vote requests and responses ride on; a leader sends
   AppendRequests early only when its term and vote are already durable).
4. Nothing is applied that is not committed: only ``Ready.committed`` entries are applied, by
   an apply job queued after the save of those entries (so they are durable first), and an
   entry is applied once (the applied index is stored in the same transaction as the rows).
5. A snapshot is acknowledged (and the core restored from it) only once its install is durable;
   while the install is in flight the core takes no input.
6. A hard state whose only change is the commit index is not saved on its own (no fsync per
   commit on the leader's critical path, none per commit notice on a follower): it goes with the
   next save. The commit index is volatile; after a restart it is at least the applied index.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from beaver_vault.errors import InvariantViolation, StorageFailure
from beaver_vault.kv import commands
from beaver_vault.kv import state as kv_state
from beaver_vault.kv.state import KVStore
from beaver_vault.node.storage_jobs import StorageJob, StorageWorker
from beaver_vault.raft.config import RaftConfig
from beaver_vault.raft.core import LEADER, RaftCore
from beaver_vault.raft.messages import AppendRequest, Entry, EntryKind, HardState, RaftMessage
from beaver_vault.raft.ready import Ready
from beaver_vault.storage.base import Storage
from beaver_vault.transport.base import Transport

if TYPE_CHECKING:
    from beaver_vault.node.disk_guard import DiskGuard
    from beaver_vault.node.members import MembershipChanges
    from beaver_vault.node.outcomes import Outcomes
    from beaver_vault.node.snapshots import SnapshotTransfers


def _apply_entry(store: KVStore, entry: Entry) -> dict[str, Any] | None:
    if entry.kind == EntryKind.NORMAL:
        return kv_state.apply(store, entry.index, entry.data)
    return None


class StorageEffects:
    """Mixed into ``NodeDriver``: the storage jobs and the ordering rules above."""

    id: str
    core: RaftCore
    raft_config: RaftConfig
    transport: Transport
    worker: StorageWorker
    outcomes: Outcomes
    members: MembershipChanges
    snapshots: SnapshotTransfers
    disk: DiskGuard
    counters: dict[str, int]
    applied_index: int
    on_applied: Callable[[int, dict[str, Any] | None], None] | None
    jobs_in_flight: int
    sent_before_save: int
    _job_seq: int
    _done_seq: int
    _gen: int
    _after_save: list[RaftMessage] | None
    _durable_term_vote: tuple[int, str | None]
    _submitted_term_vote: tuple[int, str | None]
    _unsaved_hard_state: HardState | None

    def hand_over_ready(self) -> None:
        """Hand what the core has ready to storage and the network (in ``process``, and before a
        job submitted straight from an input: inputs are stepped several at a time, so a Ready
        from an earlier one may still be waiting; its save must be queued first)."""
        core = self.core
        while core.has_ready():
            rd = core.ready()
            self.counters["readies"] += 1
            core.accept(rd)
            self._handle_ready(rd)

    def submit(
        self,
        name: str,
        run: Callable[[Storage], Any],
        done: Callable[[Any], None],
        save: tuple[HardState | None, tuple[Entry, ...]] | None = None,
        entries: int = 0,
        data_bytes: int = 0,
    ) -> int:
        """Hand ``run`` to the storage worker; ``done(result)`` runs here once it is durable.
        Returns the job's sequence number (see ``completed``)."""
        self.jobs_in_flight += 1
        self._job_seq += 1
        self.worker.submit(
            StorageJob(
                name, run, done, gen=self._gen, seq=self._job_seq, save=save, entries=entries, data_bytes=data_bytes
            )
        )
        return self._job_seq

    def completed(self, seq: int) -> bool:
        """Has job ``seq`` completed (whether it ran, failed or was moot)?"""
        return self._done_seq >= seq

    def storage_done(self, job: StorageJob) -> None:
        """The worker finished ``job`` (jobs finish in submission order). Call ``process()`` after."""
        self.jobs_in_flight -= 1
        if job.seq != self._done_seq + 1:
            raise InvariantViolation(f"{self.id}: storage job {job.seq} ({job.name}) done after {self._done_seq}")
        self._done_seq = job.seq
        if job.gen != self._gen:
            return  # submitted before the node reloaded its state (adoption, a disk failure)
        if isinstance(job.error, StorageFailure):
            # A full disk or an I/O error: writes stop, pending requests are answered, and the
            # node reloads from its disk once a probe write goes through (disk_guard.py). The
            # entries of a failed save are in no log here; whether followers may have them:
            unsaved = job.save[1] if job.save is not None else ()
            sent = bool(unsaved) and self.sent_before_save >= unsaved[0].index
            self.disk.failed(job.error, None, sent, unsaved)
            return
        if job.error is not None:
            raise job.error
        job.done(job.result)

    def send_after_save(self, msgs: list[RaftMessage]) -> None:
        """Rule 1: ``msgs`` leave once every save submitted so far is durable."""
        if self._after_save is None:
            for m in msgs:
                self.transport.send(m)
        else:
            self._after_save.extend(msgs)

    def _handle_ready(self, rd: Ready) -> None:
        # A leader may replicate entries before they are on its own disk (Raft paper, 10.2.1):
        # it counts itself only once they are (rule 2), and its term and vote are durable
        # already (rule 3). Anything else (votes, acknowledgements, a new term) waits for the
        # saves in flight (rule 1).
        early = (
            self.core.role == LEADER
            and (self.core.term, self.core.vote) == self._durable_term_vote
            and all(isinstance(m, AppendRequest) for m in rd.messages)
        )
        if early:
            for m in rd.messages:
                self.transport.send(m)
                if isinstance(m, AppendRequest) and m.entries:
                    self.sent_before_save = max(self.sent_before_save, m.entries[-1].index)
        hs = self._hard_state_to_save(rd)
        if hs is not None or rd.entries:
            self._save(hs, rd.entries)
        if not early:
            self.send_after_save(list(rd.messages))
        if rd.committed:
            self._apply(rd.committed)
        for pid in rd.snapshots:
            self.snapshots.start_sender(pid)
        for pid, lo, hi in rd.fetches:
            self._fetch(pid, lo, hi)
        self.outcomes.read_index_known(rd.read_states, rd.dropped_reads)
        self.outcomes.release_reads(self.applied_index)

    def _hard_state_to_save(self, rd: Ready) -> HardState | None:
        """The hard state to write with this Ready's entries, if any (rule 6).

        A hard state whose only change is the commit index is not written on its own: the commit
        index is volatile state (Raft paper, Figure 2; etcd-io/raft's ``MustSync``). A node that
        restarts with an older one learns it again from the leader, and never below its applied
        index, which is stored with the state it belongs to (``RaftCore.__init__``). Such a hard
        state rides along with the next save that writes entries or a term or vote change, so the
        stored commit index stays close behind without costing an fsync per commit."""
        hs = rd.hard_state
        if hs is not None and not rd.entries and (hs.term, hs.vote) == self._submitted_term_vote:
            self._unsaved_hard_state = hs
            self.counters["commit_only_unsaved"] = self.counters.get("commit_only_unsaved", 0) + 1
            return None
        if hs is None and rd.entries:
            hs = self._unsaved_hard_state
        if hs is not None:
            self._unsaved_hard_state = None
            self._submitted_term_vote = (hs.term, hs.vote)
        return hs

    def _save(self, hs: HardState | None, entries: tuple[Entry, ...]) -> None:
        after: list[RaftMessage] = []
        self._after_save = after

        def done(_: object) -> None:
            if hs is not None:
                self._durable_term_vote = (hs.term, hs.vote)
            if entries:
                self.core.persisted(entries[-1].index, entries[-1].term)
            if self._after_save is after:
                self._after_save = None  # the last save in flight: later messages go at once
            for m in after:
                self.transport.send(m)

        self.submit("save", lambda s: s.save(hs, entries), done, save=(hs, entries))

    def _fetch(self, pid: str, lo: int, hi: int) -> None:
        """Entries a follower needs left the in-memory log: read them on the worker."""
        core = self.core
        max_bytes = self.raft_config.max_append_bytes
        self.counters["log_reads"] = self.counters.get("log_reads", 0) + 1

        def done(entries: list[Entry]) -> None:
            if core is self.core:
                core.fetched(pid, entries)

        self.submit("read-log", lambda s: s.entries(lo, hi, max_bytes), done)

    def _apply(self, committed: tuple[Entry, ...]) -> None:
        def done(results: list[dict[str, Any] | None]) -> None:
            if committed[0].index != self.applied_index + 1:
                raise InvariantViolation(
                    f"{self.id}: apply gap: applied {self.applied_index}, next {committed[0].index}"
                )
            self.applied_index = committed[-1].index
            self.counters["applied"] += len(committed)
            for e, result in zip(committed, results, strict=True):
                self.outcomes.applied(e, result, lambda: self.core.membership)
                self.members.config_applied(e)
                if self.on_applied is not None:
                    self.on_applied(e.index, result)
            self.outcomes.release_reads(self.applied_index)

        light = all(e.kind != EntryKind.NORMAL or commands.is_one_key_write(e.data) for e in committed)
        self.submit(
            "apply",
            lambda s: s.apply(committed, _apply_entry),
            done,
            entries=len(committed) if light else 0,
            data_bytes=sum(len(e.data) for e in committed),
        )
