"""``Ready``: what the core hands the driver after some steps, ticks and proposals.

Not a message: nothing here crosses the network. The driver does it all, in this order, then
acknowledges it with ``RaftCore.advance(ready)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from beaver_vault.raft.messages import Entry, HardState, NodeId, RaftMessage, ReadState


@dataclass(frozen=True, slots=True)
class Ready:
    """Persist ``entries`` (truncating any conflicting suffix at ``entries[0].index``) and
    ``hard_state`` in one synced step, then send ``messages``, then apply ``committed``; start
    streaming a snapshot to each of ``snapshots``; answer the reads of ``read_states`` once
    applied up to their index and fail those of ``dropped_reads``. A ``hard_state`` whose term and
    vote are those already saved (only ``commit`` changed) need not be synced: the commit index
    is volatile (the driver writes it with the next save, ``node/effects.py`` rule 6)."""

    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    messages: tuple[RaftMessage, ...] = ()
    committed: tuple[Entry, ...] = ()
    read_states: tuple[ReadState, ...] = ()
    snapshots: tuple[NodeId, ...] = ()  # followers that need a snapshot (the driver streams it)
    # Read contexts the core gave up on (leadership lost, the leader refused): outcome unknown.
    dropped_reads: tuple[int, ...] = ()
    # (follower, lo, hi): read the log entries [lo, hi) from storage for that follower (they
    # left the in-memory cache) and hand them back with ``RaftCore.fetched``.
    fetches: tuple[tuple[NodeId, int, int], ...] = ()
