"""Raft tuning, in ticks and counts (the core never sees seconds)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RaftConfig:
    election_ticks: int = 10  # randomised election timeout drawn from [election_ticks, 2*election_ticks)
    heartbeat_ticks: int = 2
    max_append_entries: int = 512  # entries per AppendRequest
    max_append_bytes: int = 1 << 20  # payload bytes per AppendRequest (at least one entry is always sent)
    max_inflight: int = 64  # unacknowledged AppendRequests per follower (pipelining window)
    max_pending_reads: int = 10_000
    # Bytes of recent log entries kept in memory (None: all); older ones are read from storage.
    log_cache_bytes: int | None = None
    pre_vote: bool = True
    check_quorum: bool = True

    def __post_init__(self) -> None:
        if self.heartbeat_ticks < 1 or self.election_ticks <= self.heartbeat_ticks:
            raise ValueError("need 1 <= heartbeat_ticks < election_ticks")
        if self.max_append_entries < 1 or self.max_append_bytes < 1 or self.max_inflight < 1:
            raise ValueError("append limits must be positive")
        if self.log_cache_bytes is not None and self.log_cache_bytes < 0:
            raise ValueError("log_cache_bytes must be >= 0")
