"""The leader's view of one follower's replication (etcd's Progress, simplified).

PROBE: we do not know where the follower's log matches ours; one AppendRequest at a time,
backing off on rejection. REPLICATE: it matches at ``match``; send optimistically, keeping at
most ``max_inflight`` unacknowledged requests (the pipelining window).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

PROBE = "probe"
REPLICATE = "replicate"
SNAPSHOT = "snapshot"  # behind the compacted log: the driver is streaming a snapshot


@dataclass(slots=True)
class Progress:
    match: int = 0
    next: int = 1
    state: str = PROBE
    probe_sent: bool = False  # PROBE: a request is outstanding (cleared by a response or a heartbeat)
    inflight: deque[int] = field(default_factory=deque)  # last index of each request in flight
    recent_active: bool = False  # heard from since the last check-quorum round
    read_ack: int = 0  # highest read_seq echoed back
    pending_snapshot: int = 0  # SNAPSHOT: the compacted index the follower must reach
    last_contact_tick: int = -1  # core tick count when this follower last answered (-1: never)
    heartbeat_match: int = -1  # ``match`` at the previous heartbeat round (to detect a stalled pipeline)
    fetching: bool = False  # entries it needs are no longer in memory: the driver is reading them
    commit_sent: int = 0  # the highest commit index an AppendRequest told it (capped at what it holds)
    commit_wanted: int = 0  # the highest read index it was answered: it waits to apply up to there

    def become_probe(self) -> None:
        self.state = PROBE
        self.probe_sent = False
        self.inflight.clear()
        self.next = max(self.next, self.match + 1)

    def become_replicate(self) -> None:
        self.state = REPLICATE
        self.probe_sent = False
        self.inflight.clear()
        self.next = self.match + 1

    def ack(self, index: int) -> None:
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()

    def become_snapshot(self, index: int) -> None:
        self.state = SNAPSHOT
        self.pending_snapshot = index
        self.probe_sent = False
        self.inflight.clear()

    def paused(self, max_inflight: int) -> bool:
        if self.state == SNAPSHOT:
            return True
        if self.state == PROBE:
            return self.probe_sent
        return len(self.inflight) >= max_inflight
