"""Streaming snapshots between nodes (driven by ``NodeDriver``; synchronous, no I/O of its own).

Leader side: when the core reports a follower behind the compacted log, a ``SnapshotSender``
reads a consistent copy of the state machine at the applied index from storage (SQLite: a
read transaction on its own connection, so writes go on meanwhile) and sends it in bounded
chunks, one at a time, each acknowledged (stop-and-wait keeps memory bounded and lets a slow
follower set the pace). Silence for too long aborts the transfer; the core then probes again.

Follower side: an ``Installer`` stages chunks in storage in order and, on the last one, has
storage replace the state machine, the applied index and the log in ONE durable step before
the core continues from the snapshot. A crash before that step leaves the old state intact
(the staged chunks are discarded by the next transfer).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from beaver_vault.raft.messages import InstallSnapshot, NodeId, SnapshotAck


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


@dataclass(slots=True)
class Installer:
    leader: NodeId
    term: int  # leader term of the transfer
    index: int
    snap_term: int
    next_seq: int = 1
