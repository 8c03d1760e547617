"""Streaming snapshots between nodes (driven by ``NodeDriver``; no I/O of its own: every read
and write of storage is a job on the driver's storage worker, see ``node/storage_jobs.py``).

Leader side: when the core reports a follower behind the compacted log, a ``SnapshotSender``
reads a consistent copy of the state machine at the applied index from storage (SQLite: a
read transaction on its own connection, opened and read on the worker thread, so writes go on
meanwhile and the event loop never reads the file) and sends it in bounded chunks, one at a
time, each acknowledged (stop-and-wait keeps memory bounded and lets a slow follower set the
pace); the chunk after the one in flight is read ahead, to know which chunk is the last.
Silence for too long aborts the transfer; the core then probes again.

Follower side: an ``Installer`` stages chunks in storage in order and, on the last one, has
storage replace the state machine, the applied index and the log in ONE durable step; only
once that step is done does the core continue from the snapshot and the last chunk get its
acknowledgement (the driver's rule 5). A crash before that step leaves the old state intact
(the staged chunks are discarded by the next transfer).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from beaver_vault.raft.core import FOLLOWER, LEADER
from beaver_vault.raft.messages import InstallSnapshot, Membership, NodeId, SnapshotAck

if TYPE_CHECKING:
    from beaver_vault.node.driver import NodeDriver
    from beaver_vault.storage.base import Storage


@dataclass(slots=True)
class SnapshotSender:
    peer: NodeId
    index: int
    term: int
    membership: bytes
    chunks: Iterator[bytes]
    seq: int = 0  # the chunk in flight
    current: bytes = b""
    peeked: bytes | None = None  # one chunk of look-ahead, to know which chunk is the last
    done: bool = False  # the chunk in flight is the last one
    idle_ticks: int = 0
    reading: bool = False  # the next chunk is being read on the storage worker
    bytes_sent: int = 0  # acknowledged chunks' bytes (progress in GET /api/v1/raft/nodes)
    bytes_total: int = 0  # about how many in all (the storage's estimate; 0: unknown)

    def progress(self) -> dict[str, int]:
        total = max(self.bytes_total, self.bytes_sent + len(self.current))
        return {"index": self.index, "chunks_sent": self.seq, "bytes_sent": self.bytes_sent, "bytes_total": total}

    def first(self, leader_term: int, leader: NodeId) -> InstallSnapshot:
        self.current = next(self.chunks, b"")
        self._peek()
        return self._message(leader_term, leader)

    def _peek(self) -> None:
        self.peeked = next(self.chunks, None)
        self.done = self.peeked is None

    def on_ack(self, ack: SnapshotAck, leader_term: int, leader: NodeId) -> InstallSnapshot | None:
        """The next chunk to send, or None when the last chunk was acknowledged."""
        self.idle_ticks = 0
        self.bytes_sent += len(self.current)
        if self.done:
            return None
        self.seq += 1
        self.current = self.peeked or b""
        self._peek()
        return self._message(leader_term, leader)

    def message(self, leader_term: int, leader: NodeId) -> InstallSnapshot:
        """The chunk in flight (to resend it)."""
        return self._message(leader_term, leader)

    def _message(self, leader_term: int, leader: NodeId) -> InstallSnapshot:
        return InstallSnapshot(
            leader_term,
            leader,
            self.peer,
            self.index,
            self.term,
            self.seq,
            self.current,
            self.done,
            self.membership if self.done else b"",
        )


def _close_chunks(chunks: Iterator[bytes]) -> None:
    """On the storage worker: end the reader's transaction (its connection is that thread's)."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


@dataclass(slots=True)
class Installer:
    leader: NodeId
    term: int  # leader term of the transfer
    index: int
    snap_term: int
    next_seq: int = 1


class SnapshotTransfers:
    """The driver's snapshot work: compaction, the senders it streams (leader), the install in
    progress (follower). It reaches core, storage and transport through the driver (``d``)."""

    def __init__(self, driver: NodeDriver) -> None:
        self.d = driver
        self.senders: dict[str, SnapshotSender] = {}
        self.opening: dict[str, object] = {}  # followers whose snapshot reader is being opened
        self.installer: Installer | None = None

    def reset(self) -> None:
        """The node reloaded its state: transfers in progress are forgotten."""
        self.senders = {}
        self.opening = {}
        self.installer = None

    def tick(self) -> None:
        d = self.d
        for pid, snd in list(self.senders.items()):
            snd.idle_ticks += 1
            if snd.idle_ticks > d.options.snapshot_timeout_ticks:
                self.stop_sender(pid, ok=False)
            elif snd.idle_ticks % d.options.snapshot_resend_ticks == 0 and d.core.role == LEADER and not snd.reading:
                # The chunk or its ack may have been lost: send it again (receivers ack a
                # duplicate without staging it twice) rather than wait for the timeout.
                d.transport.send(snd.message(d.core.term, d.id))

    def stop_unless_leader(self) -> None:
        if (self.senders or self.opening) and self.d.core.role != LEADER:
            for pid in [*self.senders, *self.opening]:
                self.stop_sender(pid, ok=False)

    def maybe_compact(self) -> None:
        """Compact when the log holds more than ``snapshot_threshold`` entries, or more than
        ``snapshot_threshold_bytes`` of applied entry data (a few large values fill memory and disk
        long before the count does)."""
        d = self.d
        log = d.core.log
        if d.compacting or d.applied_index <= log.offset:
            return
        if d.applied_index - log.offset > d.options.snapshot_threshold:
            self.compact()
            return
        # The bytes come from the in-memory log's entry sizes (kept for evicted entries too): the
        # storage's own count lives on the worker's connection.
        if log.bytes_between(log.offset + 1, d.applied_index) > d.options.snapshot_threshold_bytes:
            self.compact(by_bytes=True)

    def compact(self, *, by_bytes: bool = False) -> None:
        """Keep the log bounded: compact up to the applied index, less a margin (a tenth of
        the threshold; by bytes, a tenth of the entries) so a briefly slow follower still
        catches up from the log. The storage worker records the snapshot position (the old log
        rows are deleted later, in small batches: ``storage/log_gc.py``); the core forgets the
        entries once that is durable."""
        d = self.d
        core = d.core
        margin = d.options.snapshot_threshold // 10
        if by_bytes:
            margin = min(margin, (d.applied_index - core.log.offset) // 10)
        index = d.applied_index - margin
        if d.compacting or index <= core.log.offset or index > core.log.stable:
            return
        term, membership = core.log.term(index), core.membership_at(index).encode()

        def done(_: object) -> None:
            d.compacting = False
            if core is d.core and core.log.offset < index <= core.log.stable:
                core.compact(index)
            d.counters["compactions"] = d.counters.get("compactions", 0) + 1

        d.compacting = True
        d.submit("compact", lambda s: s.compact(index, term, membership), done)

    def start_sender(self, pid: str) -> None:
        core = self.d.core
        if core.role != LEADER:
            return
        old = self.senders.pop(pid, None)
        if old is not None:
            # The core asks again only once it left SNAPSHOT state for pid: the follower answered
            # from the snapshot still being streamed while the log was compacted past that
            # snapshot. The old transfer is obsolete; ignoring the request would leave the core
            # in SNAPSHOT state waiting for a transfer that never comes. No snapshot_finished for
            # the old one: the core has moved on (a late ack for it no longer matches).
            self._close(old)
        self.opening.pop(pid, None)
        if len(self.senders) + len(self.opening) >= self.d.options.max_snapshot_senders:
            core.snapshot_finished(pid, ok=False)  # try again later
            return
        # The read transaction is opened and read on the storage worker (its connection belongs
        # to that thread): the first chunk and one of look-ahead, to know which is the last.
        chunk_bytes = self.d.options.snapshot_chunk_bytes
        token = object()
        self.opening[pid] = token

        def open_reader(st: Storage) -> tuple[int, Iterator[bytes], bytes, bytes | None]:
            index, chunks = st.snapshot_reader(chunk_bytes)
            first = next(chunks, b"")
            return index, chunks, first, next(chunks, None)

        def opened(r: tuple[int, Iterator[bytes], bytes, bytes | None]) -> None:
            index, chunks, first, peeked = r
            c = self.d.core
            if self.opening.get(pid) is not token or c is not core or c.role != LEADER:
                self.d.submit("snapshot-close", lambda _: _close_chunks(chunks), lambda _: None)
                if self.opening.get(pid) is token:
                    del self.opening[pid]
                    c.snapshot_finished(pid, ok=False)
                return
            del self.opening[pid]
            snd = SnapshotSender(pid, index, c.log.term(index), c.membership_at(index).encode(), chunks)
            snd.current, snd.peeked, snd.done = first, peeked, peeked is None
            state_bytes = getattr(self.d.storage, "state_bytes", None)  # an estimate (used pages)
            snd.bytes_total = int(state_bytes()) if callable(state_bytes) else 0
            self.senders[pid] = snd
            self.d.counters["snapshots_sent"] = self.d.counters.get("snapshots_sent", 0) + 1
            self.d.transport.send(snd.message(c.term, self.d.id))

        self.d.submit("snapshot-open", open_reader, opened)

    def _close(self, snd: SnapshotSender) -> None:
        chunks = snd.chunks
        self.d.submit("snapshot-close", lambda _: _close_chunks(chunks), lambda _: None)

    def stop_sender(self, pid: str, ok: bool) -> None:
        snd = self.senders.pop(pid, None)
        if snd is not None:
            self._close(snd)
            self.d.core.snapshot_finished(pid, ok, snd.index if ok else 0)
        elif self.opening.pop(pid, None) is not None:
            self.d.core.snapshot_finished(pid, ok=False)  # its reader closes when it opens

    def on_ack(self, ack: SnapshotAck) -> None:
        snd = self.senders.get(ack.src)
        core = self.d.core
        if snd is None or snd.reading or ack.index != snd.index or ack.seq != snd.seq:
            return
        if core.role != LEADER or ack.term != core.term or not ack.ok:
            self.stop_sender(ack.src, ok=False)
            return
        snd.idle_ticks = 0
        if snd.done:
            self.stop_sender(ack.src, ok=True)
            return
        # The next chunk is in memory already; the one after it is read on the worker (to know
        # whether this one is the last), then this one leaves.
        snd.seq += 1
        snd.bytes_sent += len(snd.current)
        snd.current = snd.peeked or b""
        snd.reading = True
        chunks = snd.chunks

        def read(r: bytes | None) -> None:
            snd.reading = False
            snd.peeked, snd.done = r, r is None
            if self.senders.get(snd.peer) is snd and core is self.d.core and core.role == LEADER:
                self.d.transport.send(snd.message(core.term, self.d.id))

        self.d.submit("snapshot-read", lambda _: next(chunks, None), read)

    def on_chunk(self, m: InstallSnapshot) -> None:
        d = self.d
        core = d.core

        def ack(ok: bool) -> None:
            d.transport.send(SnapshotAck(core.term, d.id, m.src, m.index, m.seq, ok))

        if m.term != core.term or core.role != FOLLOWER:
            ack(False)
            return
        ins0 = self.installer
        if m.seq == 0 and ins0 is not None and (ins0.leader, ins0.term, ins0.index) == (m.src, m.term, m.index):
            ack(True)  # a duplicate of the first chunk: keep what is staged
            return
        if m.seq == 0:
            if core.log.matches(m.index, m.snap_term) or m.index <= core.commit:
                # We hold that entry already (Log Matching: and all before it): no transfer needed.
                self.installer = None
                ack(False)
                if core.log.matches(m.index, m.snap_term):
                    core.snapshot_matches(m.src, m.index)
                return
            d.submit("install-begin", lambda s: s.install_begin(m.index), lambda _: None)
            self.installer = Installer(m.src, m.term, m.index, m.snap_term)
        else:
            ins = self.installer
            if ins is not None and (ins.leader, ins.term, ins.index) == (m.src, m.term, m.index) and m.seq < ins.next_seq:
                ack(True)  # a duplicate (a resend, or the network): already staged
                return
            if ins is None or (ins.leader, ins.term, ins.index, ins.next_seq) != (m.src, m.term, m.index, m.seq):
                ack(False)
                return
            ins.next_seq += 1
            if m.done and (core.log.matches(m.index, m.snap_term) or m.index <= core.commit):
                # Appends overtook the transfer: the log now holds (or committed past) the
                # snapshot's index. Installing would roll storage back behind the core (log
                # truncated to m.index while the core's log goes on). Drop the staged copy.
                self.installer = None
                ack(False)
                return
        if not m.done:
            # Staged (not durable: a crash discards staged chunks, and the leader starts over).
            d.submit("install-chunk", lambda s: s.install_chunk(m.seq, m.data), lambda _: ack(True))
            return

        def finished(_: object) -> None:
            # Durable: state, applied index and log replaced in one step. Now the core follows,
            # and only now is the last chunk acknowledged (driver rule 5).
            d.installing = False
            self.installer = None
            membership = Membership.decode(m.membership)
            core.restore(m.index, m.snap_term, membership)
            d.applied_index = m.index
            d.members.invalidate_peers()
            d.counters["snapshots_installed"] = d.counters.get("snapshots_installed", 0) + 1
            if d.on_restore is not None:
                d.on_restore(m.index)
            ack(True)

        def install(s: Storage) -> None:
            s.install_chunk(m.seq, m.data)
            s.install_finish(m.index, m.snap_term, m.membership)

        # Entries an earlier input (stepped, not processed yet) added must be saved BEFORE the
        # install: behind it, their save would land below the installed snapshot.
        d.hand_over_ready()
        # The core takes no input until this is done (driver rule 5): nothing can commit or
        # append past the snapshot behind its back.
        d.installing = True
        d.submit("install-finish", install, finished)
