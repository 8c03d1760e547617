"""Leader-side replication: what to send each follower, and what its answers mean.

Per follower the leader keeps a ``Progress`` (``progress.py``): in PROBE one AppendRequest at
a time until the logs are known to match; in REPLICATE up to ``max_inflight`` batches in flight
(the pipelining window); in SNAPSHOT nothing, while the driver streams a snapshot because the
entries the follower needs were compacted away.

``fill`` is the one send loop: send batches to a follower while its window allows and there
is something to send. Heartbeats carry no entries but the leader's commit index (capped at what
the follower is known to hold) and the read round (``read_seq``) that confirms reads.

The functions read the leader through ``LeaderView`` and change only the followers' Progress;
what an answer means for commitment, reads and transfers is the core's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from beaver_vault.raft.config import RaftConfig
from beaver_vault.raft.log import RaftLog
from beaver_vault.raft.messages import AppendRequest, AppendResponse, Entry, Membership, NodeId, RaftMessage
from beaver_vault.raft.progress import PROBE, REPLICATE, SNAPSHOT, Progress


class LeaderView(Protocol):
    """What replication needs from the leader's core."""

    @property
    def id(self) -> NodeId: ...
    @property
    def term(self) -> int: ...
    @property
    def commit(self) -> int: ...
    @property
    def read_seq(self) -> int: ...
    @property
    def log(self) -> RaftLog: ...
    @property
    def cfg(self) -> RaftConfig: ...
    @property
    def progress(self) -> dict[NodeId, Progress]: ...

    def send(self, m: RaftMessage) -> None: ...

    def request_snapshot(self, pid: NodeId) -> None: ...

    def request_entries(self, pid: NodeId, lo: int, hi: int) -> None: ...


def send_append(ld: LeaderView, pid: NodeId, pr: Progress, fetched: Sequence[Entry] = ()) -> bool:
    """Send the next batch to ``pid`` if the window allows; False if nothing was sent. Entries
    no longer in memory are asked of the driver (``request_entries``): the batch goes once they
    come back as ``fetched`` (entries starting at ``pr.next``, checked by the caller)."""
    if pr.paused(ld.cfg.max_inflight) or (pr.fetching and not fetched):
        return False
    log = ld.log
    last = log.last_index
    if pr.state == REPLICATE and pr.next > last:
        return False
    prev = pr.next - 1
    if prev < log.offset:
        # The entries it needs were compacted: the driver streams a snapshot instead.
        pr.become_snapshot(log.offset)
        ld.request_snapshot(pid)
        return False
    if fetched:
        entries = tuple(fetched)
    elif log.cached(pr.next):
        entries = log.slice(pr.next, last + 1, ld.cfg.max_append_entries, ld.cfg.max_append_bytes)
    elif pr.next <= last:
        pr.fetching = True
        ld.request_entries(pid, pr.next, min(log.cache_first, pr.next + ld.cfg.max_append_entries))
        return False
    else:
        entries = ()
    ld.send(AppendRequest(ld.term, ld.id, pid, prev, log.term(prev), entries, ld.commit, read_seq=ld.read_seq))
    pr.commit_sent = max(pr.commit_sent, min(ld.commit, prev + len(entries)))
    if pr.state == REPLICATE:
        if entries:
            pr.next = entries[-1].index + 1
            pr.inflight.append(entries[-1].index)
    else:
        pr.probe_sent = True
    return True


def fill(ld: LeaderView, pid: NodeId, pr: Progress) -> None:
    """Send to ``pid`` while its window allows and it is missing entries."""
    while send_append(ld, pid, pr) and pr.state == REPLICATE and pr.next <= ld.log.last_index:
        pass


def broadcast_append(ld: LeaderView) -> None:
    for pid in sorted(ld.progress):
        if pid != ld.id:
            fill(ld, pid, ld.progress[pid])


def broadcast_heartbeat(ld: LeaderView) -> None:
    """One heartbeat to every follower. It also unsticks probes and a pipeline whose appends
    (or their answers) were all lost."""
    log = ld.log
    for pid in sorted(ld.progress):
        if pid == ld.id:
            continue
        pr = ld.progress[pid]
        pr.probe_sent = False  # a heartbeat round lets a stuck probe be retried
        if pr.match < log.offset:
            # It is behind the compacted log: heartbeat at the snapshot position (a
            # rejection only leads, through probing, to a snapshot).
            ld.send(
                AppendRequest(
                    ld.term, ld.id, pid, log.offset, log.offset_term, (), min(ld.commit, pr.match), read_seq=ld.read_seq
                )
            )
            continue
        if pr.state == REPLICATE and pr.inflight and pr.match == pr.heartbeat_match:
            # Appends outstanding and nothing acknowledged for a whole heartbeat round: they
            # (or their answers) were lost. Heartbeats alone never resend them (``next`` is
            # already past them), so probe again from match + 1.
            pr.become_probe()
            pr.next = pr.match + 1
        pr.heartbeat_match = pr.match
        ld.send(
            AppendRequest(
                ld.term, ld.id, pid, pr.match, log.term(pr.match), (), min(ld.commit, pr.match), read_seq=ld.read_seq
            )
        )
        pr.commit_sent = max(pr.commit_sent, min(ld.commit, pr.match))


def broadcast_commit(ld: LeaderView) -> None:
    """Tell a follower the commit index at once, instead of with the next heartbeat, when it
    waits for it: it was answered a read index (``commit_wanted``) that it cannot know committed
    yet, because the entries were still on their way to it when the read's heartbeat left. Only
    then: a notice per follower per commit would cost every write two messages more on each
    follower (measured: ~1 ms at one client on this 2-core machine), and a follower that serves
    no read learns the commit index soon enough from the next append or heartbeat.

    Called once per Ready, after that Ready's appends went out (an append carries the commit
    index too). The notice is an empty AppendRequest at the follower's match index, so it always
    matches; it carries no read round (``read_seq`` 0): reads are confirmed by heartbeats only."""
    log = ld.log
    for pid in sorted(ld.progress):
        if pid == ld.id:
            continue
        pr = ld.progress[pid]
        told = min(ld.commit, pr.match)
        if pr.state != REPLICATE or pr.commit_wanted <= pr.commit_sent or told <= pr.commit_sent:
            continue
        if pr.match < log.offset:
            continue
        ld.send(AppendRequest(ld.term, ld.id, pid, pr.match, log.term(pr.match), (), told, read_seq=0))
        pr.commit_sent = told


def on_accepted(pr: Progress, match_index: int, last_index: int) -> bool:
    """A successful AppendResponse: True if the follower's match index advanced."""
    if match_index > pr.match:
        pr.match = match_index
        pr.ack(match_index)
        if pr.state == PROBE or (pr.state == SNAPSHOT and pr.match >= pr.pending_snapshot):
            pr.become_replicate()
        elif pr.next <= pr.match:
            pr.next = pr.match + 1
        return True
    if pr.state == PROBE:
        pr.probe_sent = False
        if pr.match + 1 > pr.next or pr.next > last_index + 1:
            pr.next = pr.match + 1
    return False


def on_rejected(pr: Progress, m: AppendResponse, log: RaftLog) -> bool:
    """A rejected AppendResponse: back off using the follower's hint. False if the rejection
    is stale (nothing to resend)."""
    if pr.state == SNAPSHOT:
        return False
    if pr.state == REPLICATE:
        if m.match_index <= pr.match:
            return False
    elif m.match_index != pr.next - 1:
        return False
    probe = m.hint_index
    if m.hint_term > 0 and m.hint_index > log.offset:
        probe = log.find_conflict_hint(m.hint_index, m.hint_term)
    pr.next = max(pr.match + 1, min(m.match_index, probe + 1))
    pr.become_probe()
    return True


def on_snapshot_done(pr: Progress, ok: bool, index: int) -> bool:
    """The driver stopped streaming a snapshot to this follower (see
    ``RaftCore.snapshot_finished``). True if it now replicates from ``index``."""
    if pr.state != SNAPSHOT:
        return False
    if ok and index > 0:
        pr.match = max(pr.match, index)
        pr.become_replicate()
        return True
    if not ok:
        pr.become_probe()
        pr.next = pr.match + 1
        pr.probe_sent = True  # paused until the next heartbeat round clears it
    return False


def track_members(progress: dict[NodeId, Progress], self_id: NodeId, membership: Membership, last_index: int) -> None:
    """The configuration changed: track new members from the end of the log, forget removed ones."""
    for pid in membership.ids:
        if pid != self_id and pid not in progress:
            progress[pid] = Progress(match=0, next=last_index + 1)
    for pid in list(progress):
        if pid != self_id and pid not in membership.ids:
            del progress[pid]
