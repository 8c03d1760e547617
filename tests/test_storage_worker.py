"""The driver's ordering rules with an asynchronous storage worker (``node/effects.py``, rules 1-6).

Each node here has a storage worker whose completions the test hands out one by one
(``ManualWorker``): a job submitted is NOT done until the test says so, and a crash drops the
jobs not yet done. Every test checks one rule: a message that depends on a write never leaves
before that write is durable, the leader counts itself only once durable, nothing is applied
before it is committed and durable, a snapshot is acknowledged only once installed.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping

import pytest

from beaver_vault.errors import InvariantViolation
from beaver_vault.kv import commands
from beaver_vault.node.driver import DriverOptions, NodeDriver
from beaver_vault.node.storage_jobs import StorageJob, run_job
from beaver_vault.raft.config import RaftConfig
from beaver_vault.raft.core import LEADER
from beaver_vault.raft.messages import (
    AppendRequest,
    AppendResponse,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    Member,
    Membership,
    Message,
    SnapshotAck,
    VoteRequest,
    VoteResponse,
)
from beaver_vault.storage.memory import MemoryStorage

IDS = ("n1", "n2", "n3")
MEMBERS = Membership(tuple(Member(i, f"{i}:7000", f"http://{i}") for i in IDS))


class Outbox:
    """A transport that, like the real one, sends only to the peers it was told about."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.peers: set[str] = set(IDS)
        self.dropped: list[Message] = []

    def send(self, msg: Message) -> None:
        (self.sent if msg.dst in self.peers else self.dropped).append(msg)

    def set_peers(self, addresses: Mapping[str, str]) -> None:
        self.peers = set(addresses)

    def set_cluster_id(self, cluster_id: str | None) -> None:
        pass

    def take(self) -> list[Message]:
        out, self.sent = self.sent, []
        return out


class ManualWorker:
    """Jobs wait until ``complete`` runs them (in order); ``crash`` drops those not run."""

    def __init__(self, driver: NodeDriver, storage: MemoryStorage) -> None:
        self.driver = driver
        self.storage = storage
        self.jobs: deque[StorageJob] = deque()
        self.submitted: list[StorageJob] = []  # every job ever submitted, in order

    def submit(self, job: StorageJob) -> None:
        self.jobs.append(job)
        self.submitted.append(job)

    def names(self) -> list[str]:
        return [j.name for j in self.jobs]

    def complete(self, n: int | None = None) -> None:
        count = len(self.jobs) if n is None else n
        for _ in range(count):
            job = self.jobs.popleft()
            run_job(job, self.storage)
            self.driver.storage_done(job)
            self.driver.process()


class Node:
    def __init__(self, nid: str, seed: int, cache_bytes: int | None = None) -> None:
        self.storage = MemoryStorage()
        self.storage.reset("c1")
        boot = Entry(1, 1, EntryKind.CONFIG, MEMBERS.encode())
        self.storage.save(HardState(1, None, 1), [boot])
        self.storage.apply([boot], lambda _s, _e: None)
        self.out = Outbox()
        self.driver = NodeDriver(
            nid,
            self.storage,
            self.out,
            raft_config=RaftConfig(election_ticks=10, heartbeat_ticks=2, log_cache_bytes=cache_bytes),
            rng=random.Random(seed),
            options=DriverOptions(raft_address=f"{nid}:7000"),
        )
        self.worker = ManualWorker(self.driver, self.storage)
        self.driver.set_worker(self.worker)
        self.driver.start(bootstrap=False)
        self.driver.process()


def cluster(cache_bytes: int | None = None) -> dict[str, Node]:
    return {nid: Node(nid, k, cache_bytes) for k, nid in enumerate(IDS)}


def settle(nodes: dict[str, Node], rounds: int = 50, cut: str | None = None) -> None:
    """Complete every job and deliver every message until nothing moves."""
    for _ in range(rounds):
        moved = False
        for n in nodes.values():
            if n.worker.jobs:
                n.worker.complete()
                moved = True
        for n in nodes.values():
            for m in n.out.take():
                if cut in (m.src, m.dst):
                    continue  # partitioned away
                moved = True
                dst = nodes[m.dst].driver
                dst.receive(m)
                dst.process()
        if not moved:
            return


def elect_n1(nodes: dict[str, Node]) -> None:
    d = nodes["n1"].driver
    d.core.campaign(transfer=True)  # no pre-vote round
    d.process()
    settle(nodes)
    assert d.core.role == LEADER


def test_a_follower_acknowledges_entries_only_once_they_are_durable() -> None:
    nodes = cluster()
    elect_n1(nodes)
    leader, follower = nodes["n1"], nodes["n2"]
    w = leader.driver.propose(commands.put("k", 1))
    leader.driver.process()
    appends = [m for m in leader.out.take() if isinstance(m, AppendRequest) and m.dst == "n2" and m.entries]
    assert appends, "a leader replicates before its own write is durable"
    follower.driver.receive(appends[0])
    follower.driver.process()
    assert follower.worker.names()[0] == "save"  # (then the apply of the leader's no-op)
    assert not any(isinstance(m, AppendResponse) for m in follower.out.sent)  # not durable yet
    follower.worker.complete()
    acks = [m for m in follower.out.take() if isinstance(m, AppendResponse)]
    assert acks and acks[0].success and acks[0].match_index >= w.index
    assert follower.storage.load().entries[-1].index >= w.index


def test_a_later_message_waits_for_an_earlier_save_in_flight() -> None:
    nodes = cluster()
    elect_n1(nodes)
    leader, follower = nodes["n1"], nodes["n2"]
    leader.driver.propose(commands.put("k", 1))
    leader.driver.process()
    append = next(m for m in leader.out.take() if isinstance(m, AppendRequest) and m.dst == "n2" and m.entries)
    follower.driver.receive(append)
    follower.driver.process()
    # The same append again (a resend): nothing new to write, but its answer claims the
    # entries of the save still in flight, so it waits for that save too.
    follower.driver.receive(append)
    follower.driver.process()
    assert follower.worker.names().count("save") == 1
    assert not follower.out.sent
    follower.worker.complete()
    assert len([m for m in follower.out.take() if isinstance(m, AppendResponse) and m.success]) == 2


def test_the_leader_counts_itself_only_once_its_append_is_durable() -> None:
    nodes = cluster()
    elect_n1(nodes)
    leader, n2 = nodes["n1"], nodes["n2"]
    w = leader.driver.propose(commands.put("k", 1))
    leader.driver.process()
    assert leader.worker.names() == ["save"]
    append = next(m for m in leader.out.take() if isinstance(m, AppendRequest) and m.dst == "n2" and m.entries)
    n2.driver.receive(append)
    n2.driver.process()
    n2.worker.complete()
    for m in n2.out.take():
        leader.driver.receive(m)
    leader.driver.process()
    # n2 holds it durably, the leader not yet: one of three is no majority.
    assert leader.driver.core.commit < w.index
    leader.worker.complete(1)
    assert leader.driver.core.commit >= w.index
    assert leader.worker.names()[-1] == "apply"  # applied only after it committed
    assert not w.done
    leader.worker.complete()
    assert w.done and w.error is None


def test_a_granted_vote_leaves_only_once_durable_and_a_crash_before_forgets_it() -> None:
    nodes = cluster()
    voter = nodes["n2"]
    voter.driver.receive(VoteRequest(term=2, src="n3", dst="n2", last_log_index=1, last_log_term=1))
    voter.driver.process()
    assert voter.driver.core.vote == "n3"
    assert voter.worker.names() == ["save"]
    assert not any(isinstance(m, VoteResponse) for m in voter.out.sent)
    assert voter.storage.load().hard_state.vote is None
    voter.worker.complete()
    (resp,) = [m for m in voter.out.take() if isinstance(m, VoteResponse)]
    assert resp.granted and resp.term == 2
    assert voter.storage.load().hard_state == HardState(2, "n3", 1)


def test_a_candidate_asks_for_votes_only_once_its_term_and_vote_are_durable() -> None:
    nodes = cluster()
    cand = nodes["n1"]
    cand.driver.core.campaign(transfer=True)
    cand.driver.process()
    assert cand.driver.core.term == 2
    assert not cand.out.sent
    cand.worker.complete()
    reqs = [m for m in cand.out.take() if isinstance(m, VoteRequest)]
    assert {m.dst for m in reqs} == {"n2", "n3"}
    assert cand.storage.load().hard_state.term == 2


def test_a_crash_between_submission_and_completion_loses_the_write_and_its_ack() -> None:
    nodes = cluster()
    elect_n1(nodes)
    leader, follower = nodes["n1"], nodes["n2"]
    leader.driver.propose(commands.put("k", 1))
    leader.driver.process()
    append = next(m for m in leader.out.take() if isinstance(m, AppendRequest) and m.dst == "n2" and m.entries)
    before = follower.storage.load().entries[-1].index
    follower.driver.receive(append)
    follower.driver.process()
    follower.worker.jobs.clear()  # power loss: the worker never ran it
    assert follower.storage.load().entries[-1].index == before
    assert not any(isinstance(m, AppendResponse) for m in follower.out.sent)


def test_committed_entries_are_applied_after_their_save_and_counted_once_done() -> None:
    nodes = cluster()
    elect_n1(nodes)
    leader, follower = nodes["n1"], nodes["n2"]
    leader.driver.propose(commands.put("k", 1))
    leader.driver.process()
    settle({"n1": leader, "n2": follower, "n3": nodes["n3"]}, rounds=3)
    # A heartbeat carries the new commit index; the follower applies only what it holds.
    leader.driver.core._broadcast_heartbeat()
    leader.driver.process()
    hb = next(m for m in leader.out.take() if isinstance(m, AppendRequest) and m.dst == "n3")
    n3 = nodes["n3"]
    n3.driver.receive(hb)
    n3.driver.process()
    applied_before = n3.driver.applied_index
    if n3.worker.jobs:
        assert n3.worker.names()[-1] == "apply"
        assert n3.driver.applied_index == applied_before  # not until the worker says so
        n3.worker.complete()
    assert n3.driver.applied_index == n3.storage.load().applied_index <= n3.driver.core.commit
    assert n3.storage.get("k") is not None


def snapshot_at_50(term: int) -> tuple[int, bytes]:
    """A snapshot at index 50 of another node's state: (its index, its bytes in one chunk)."""
    src = MemoryStorage()
    src.reset("c1")
    entries = [Entry(term, i, EntryKind.NOOP, b"") for i in range(1, 51)]
    src.save(HardState(term, None, 50), entries)
    src.apply(entries, lambda _s, _e: None)
    index, chunks = src.snapshot_reader(1 << 20)
    return index, b"".join(chunks)


def test_a_snapshot_is_acknowledged_only_once_installed_and_the_core_waits_meanwhile() -> None:
    nodes = cluster()
    elect_n1(nodes)
    follower = nodes["n2"]
    term = follower.driver.core.term
    index, data = snapshot_at_50(term)
    follower.out.take()
    follower.driver.receive(InstallSnapshot(term, "n1", "n2", index, term, 0, data, True, MEMBERS.encode()))
    follower.driver.process()
    assert follower.worker.names() == ["install-begin", "install-finish"]
    assert follower.driver.installing
    assert not any(isinstance(m, SnapshotAck) for m in follower.out.sent)
    elapsed = follower.driver.core.election_elapsed
    for _ in range(30):
        follower.driver.tick()  # the core takes no input until the install is done
    assert follower.driver.core.election_elapsed == elapsed
    follower.worker.complete()
    acks = [m for m in follower.out.take() if isinstance(m, SnapshotAck)]
    assert acks and acks[-1].ok
    assert follower.driver.applied_index == index == follower.storage.load().applied_index
    assert not follower.driver.installing


def test_a_follower_behind_the_log_cache_gets_older_entries_read_from_storage() -> None:
    """Item 2 of issue 9: with a log cache of 300 bytes the leader keeps only its newest
    entries in memory; a follower that was away gets the older ones read from storage by the
    worker (``read-log`` jobs), and ends with the same log and state."""
    nodes = cluster(cache_bytes=300)
    elect_n1(nodes)
    leader = nodes["n1"]
    for i in range(40):
        leader.driver.propose(commands.put(f"k{i}", "v" * 50))
        leader.driver.process()
        settle(nodes, cut="n3")
    log = leader.driver.core.log
    assert log.cache_first > nodes["n3"].driver.core.log.last_index + 1  # n3 needs evicted entries
    assert log.cache_bytes <= 300
    for _ in range(3):  # heartbeats: the leader probes n3 and finds where it matches
        for _ in range(2):
            leader.driver.tick()
        leader.driver.process()
        settle(nodes)
    assert leader.driver.counters.get("log_reads", 0) > 0
    n3 = nodes["n3"]
    assert n3.driver.core.log.last_index == log.last_index
    assert n3.storage.load().entries == leader.storage.load().entries
    assert n3.storage.get("k0") == leader.storage.get("k0") is not None
    assert n3.driver.applied_index == leader.driver.applied_index


def test_a_worker_that_completes_out_of_order_is_caught() -> None:
    """The rules rest on the worker's order; the driver checks it (the simulator once broke it
    when a paused node's completions were re-queued behind a later one)."""
    nodes = cluster()
    cand = nodes["n1"]
    cand.driver.core.campaign(transfer=True)
    cand.driver.process()
    first = cand.worker.jobs[0]
    cand.driver.receive(VoteRequest(term=3, src="n2", dst="n1", last_log_index=1, last_log_term=1))
    cand.driver.process()
    assert len(cand.worker.jobs) == 2
    second = cand.worker.jobs[1]
    run_job(second, cand.storage)
    with pytest.raises(InvariantViolation):
        cand.driver.storage_done(second)
    assert first.seq == 1 and second.seq == 2


def test_consecutive_saves_written_as_one_end_as_if_written_one_by_one() -> None:
    """Group commit in the worker thread (``run_saves``): one transaction for the saves queued
    together, including a later one that replaces a suffix of an earlier one."""
    from beaver_vault.node.storage_jobs import run_saves

    def job(hs: HardState | None, es: list[Entry]) -> StorageJob:
        t = tuple(es)
        return StorageJob("save", lambda s: s.save(hs, t), lambda _: None, save=(hs, t))

    def E(i: int, t: int) -> Entry:
        return Entry(t, i, EntryKind.NORMAL, b"%d/%d" % (i, t))

    saves = [
        (HardState(1, "a", 0), [E(1, 1), E(2, 1), E(3, 1)]),
        (None, [E(4, 1)]),
        (HardState(2, None, 2), [E(3, 2)]),  # replaces 3..4
        (HardState(2, "b", 2), []),
        (None, [E(4, 2), E(5, 2)]),
    ]
    one_by_one, grouped = MemoryStorage(), MemoryStorage()
    for hs, es in saves:
        one_by_one.save(hs, es)
    jobs = [job(hs, es) for hs, es in saves]
    run_saves(jobs, grouped)
    assert all(j.error is None for j in jobs)
    assert grouped.load() == one_by_one.load()
    assert grouped.status().saves == 1
    bad = [job(None, [E(9, 3)])]  # a gap: refused, and every job of the batch says so
    run_saves([*bad, job(None, [E(10, 3)])], grouped)
    assert bad[0].error is not None


def test_a_leader_that_removes_itself_still_hears_the_answers_to_its_removal() -> None:
    """Followers apply a configuration when they append it, so the leader it removes leaves
    their configuration before their AppendResponse for that entry leaves (after the save):
    the transport must still know its address, or the leader never learns its removal
    committed (found by the simulator: seed 1's self-removal went unanswered)."""
    nodes = cluster()
    elect_n1(nodes)
    w = nodes["n1"].driver.remove("n1")
    nodes["n1"].driver.process()
    settle(nodes)
    assert w.done and w.error is None, w.error
    for nid in ("n2", "n3"):
        assert not [m for m in nodes[nid].out.dropped if m.dst == "n1"]


def test_entries_stepped_before_a_snapshot_install_are_saved_before_it_not_after() -> None:
    """The runtime steps several inputs before it processes the Ready they make (the transport
    hands over messages as they come). An AppendRequest stepped just before a snapshot's last
    chunk left entries in the core that were not handed to storage yet: their save must be
    queued before the install, not behind it (behind it, it lands below the installed snapshot:
    seen as ``save: entries start at 201, log ends at 204`` in a Jepsen-like run)."""
    nodes = cluster()
    elect_n1(nodes)
    follower = nodes["n2"]
    d = follower.driver
    term = d.core.term
    last = d.core.log.last_index
    index, data = snapshot_at_50(term)
    follower.out.take()
    new = tuple(Entry(term, i, EntryKind.NOOP, b"") for i in range(last + 1, last + 4))
    d.receive(AppendRequest(term, "n1", "n2", last, d.core.log.last_term, new, d.core.commit))
    d.receive(InstallSnapshot(term, "n1", "n2", index, term, 0, data, True, MEMBERS.encode()))
    d.process()  # one processing round for both inputs, as the runtime may do
    names = follower.worker.names()
    assert "save" in names and names.index("save") < names.index("install-finish"), names
    follower.worker.complete()
    assert not d.installing
    assert d.applied_index == index == follower.storage.load().applied_index
    assert d.core.log.offset == index and d.core.log.last_index == index
    acks = [m for m in follower.out.take() if isinstance(m, SnapshotAck)]
    assert acks and acks[-1].ok


def test_one_save_per_write_on_every_node_and_the_commit_index_rides_along() -> None:
    """Rule 6: a hard state whose only change is the commit index costs no save (no fsync) of
    its own, on the leader (its commit) nor on a follower (a heartbeat or a commit notice); it
    is written with the next save that writes entries."""
    nodes = cluster()
    elect_n1(nodes)
    settle(nodes)
    leader = nodes["n1"].driver
    before = {nid: len([j for j in n.worker.submitted if j.name == "save"]) for nid, n in nodes.items()}
    waiters = []
    for k in range(5):
        waiters.append(leader.propose(commands.put(f"k{k}", k)))
        leader.process()
        settle(nodes)
    assert all(w.done and w.error is None for w in waiters)
    for nid, n in nodes.items():
        saves = [j for j in n.worker.submitted if j.name == "save"][before[nid] :]
        assert len(saves) == 5, nid  # one per write: the entry, never a commit index alone
        assert all(j.save is not None and j.save[1] for j in saves), nid
        # Followers learnt each commit index from the next write's append (no heartbeat here).
        known = waiters[-1].index if nid == "n1" else waiters[-2].index
        assert n.driver.core.commit == n.driver.applied_index == known, nid
        # The stored commit index is the one known when the last entry was written.
        assert n.storage.load().hard_state.commit == waiters[-2].index, nid
    assert leader.counters["commit_only_unsaved"] >= 5


def test_a_node_restarted_with_a_stale_commit_index_resumes_from_its_applied_index() -> None:
    nodes = cluster()
    elect_n1(nodes)
    leader = nodes["n1"].driver
    w = leader.propose(commands.put("k", 1))
    leader.process()
    settle(nodes)
    leader.core._broadcast_heartbeat()  # followers learn the commit index: not saved on its own
    leader.process()
    settle(nodes)
    n2 = nodes["n2"]
    stored = n2.storage.load()
    assert stored.hard_state.commit < w.index <= stored.applied_index
    n2.driver.start(bootstrap=False)  # a restart from what is stored
    assert n2.driver.core.commit == n2.driver.applied_index == stored.applied_index
    n2.driver.process()
    assert not n2.worker.jobs  # nothing applied twice
    assert n2.storage.get("k") is not None


def test_an_apply_is_marked_small_only_when_every_entry_is_a_one_key_write() -> None:
    """The driver tells the worker how many entries an apply has only when each is light (a put
    or delete of one key, or no command at all), so a prefix delete or a transaction never runs
    on the event loop (``node/storage_thread.py``); and it always gives the data's size."""
    nodes = cluster()
    elect_n1(nodes)
    leader = nodes["n1"]
    submitted = len(leader.worker.submitted)
    for data in (commands.put("a", 1), commands.delete_prefix("a"), commands.delete("a")):
        leader.driver.propose(data)
        leader.driver.process()
        settle(nodes)
    applies = [j for j in leader.worker.submitted[submitted:] if j.name == "apply"]
    assert [j.entries for j in applies] == [1, 0, 1]
    assert all(j.data_bytes >= len(commands.delete("a")) for j in applies)
