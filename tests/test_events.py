"""The Raft event journal (``node/events.py``) and the console's per-second stats (``api/stats.py``).

The observer is shown successive looks at a node, as the runtime shows it after every
processing step, and the journal must read like what happened. The stats are checked on
their arithmetic (latency percentiles from the bucketed histogram, rates per second) and on
their bounds. The end-to-end checks (a real cluster's elections and membership changes in
``/api/v1/events``) are in ``test_ui_browser.py`` and ``test_console_e2e.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from fake_runtime import FakeRuntime

from beaver_vault.api.stats import BUCKET_BOUNDS_S, RequestStats, StatsSampler, bucket_of, percentile_ms
from beaver_vault.node.events import EventJournal, StatusObserver
from beaver_vault.node.status import MemberStatus, NodeStatus
from beaver_vault.raft.messages import Member


def member(node_id: str, voter: bool = True) -> MemberStatus:
    return MemberStatus(node_id, f"{node_id}:7000", f"http://{node_id}", voter)


BASE = NodeStatus(
    node_id="n1",
    role="follower",
    term=1,
    leader_id=None,
    commit_index=1,
    applied_index=1,
    last_log_index=1,
    cluster_id="c",
    members=(member("n1"), member("n2"), member("n3")),
    http_address="http://n1",
    raft_address="n1:7000",
)


def kinds(journal: EventJournal) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for e in journal.since(0).events:
        fields = e.to_json()
        for k in ("seq", "time_ms", "kind"):
            fields.pop(k)
        out.append((e.kind, fields))
    return out


def test_an_election_a_leader_and_its_loss_read_as_they_happened() -> None:
    clock = [1000]
    journal = EventJournal(clock_ms=lambda: clock[0])
    obs = StatusObserver(journal)
    obs.observe(BASE, {})
    obs.observe(replace(BASE, role="pre-candidate"), {})
    clock[0] = 2000
    obs.observe(replace(BASE, role="candidate", term=2), {})
    obs.observe(replace(BASE, role="leader", term=2, leader_id="n1"), {})
    obs.observe(replace(BASE, role="leader", term=2, leader_id="n1"), {})  # nothing changed: nothing recorded
    obs.observe(replace(BASE, role="follower", term=3, leader_id=None), {})
    obs.observe(replace(BASE, role="follower", term=3, leader_id="n2"), {})
    assert kinds(journal) == [
        ("started", {"term": 1, "role": "follower", "leader": None, "members": ["n1", "n2", "n3"]}),
        ("election", {"term": 1, "role": "pre-candidate"}),
        ("role", {"term": 1, "from": "follower", "to": "pre-candidate"}),
        ("role", {"term": 2, "from": "pre-candidate", "to": "candidate"}),
        ("role", {"term": 2, "from": "candidate", "to": "leader"}),
        ("leader", {"term": 2, "from": None, "to": "n1"}),
        ("role", {"term": 3, "from": "leader", "to": "follower"}),
        ("leader", {"term": 3, "from": "n1", "to": None}),
        ("leader", {"term": 3, "from": None, "to": "n2"}),
    ]
    times = [e.time_ms for e in journal.since(0).events]
    assert times[:3] == [1000, 1000, 1000] and times[3:] == [2000] * 6
    assert [e.seq for e in journal.since(0).events] == list(range(1, 10))


def test_membership_changes_promotions_and_a_rollback() -> None:
    journal = EventJournal()
    obs = StatusObserver(journal)
    obs.observe(BASE, {}, membership_index=1)
    learner = replace(BASE, members=BASE.members + (member("n4", voter=False),))
    obs.observe(learner, {}, membership_index=5)
    voter = replace(BASE, members=BASE.members + (member("n4"),))
    obs.observe(voter, {}, membership_index=7)
    removed = replace(BASE, members=(member("n1"), member("n2"), member("n4")))
    obs.observe(removed, {}, membership_index=9)
    # A new leader overwrote the uncommitted entry 9: back to the configuration of index 7.
    obs.observe(voter, {}, membership_index=7)
    got = kinds(journal)[1:]
    assert got[0] == (
        "membership",
        {"term": 1, "added": ["n4"], "removed": [], "promoted": [], "demoted": [],
         "members": ["n1", "n2", "n3", "n4"], "index": 5},
    )
    assert got[1][0] == "membership" and got[1][1]["promoted"] == ["n4"] and got[1][1]["added"] == []
    assert got[2][0] == "membership" and got[2][1]["removed"] == ["n3"]
    assert got[3][0] == "membership_rollback" and got[3][1]["added"] == ["n3"] and got[3][1]["index"] == 7


def test_snapshots_and_compactions_come_from_the_counters() -> None:
    journal = EventJournal()
    obs = StatusObserver(journal)
    obs.observe(BASE, {"snapshots_sent": 0})
    obs.observe(BASE, {"snapshots_sent": 1}, senders=("n3",))
    obs.observe(replace(BASE, snapshot_index=900, log_first_index=901), {"snapshots_sent": 1, "compactions": 1})
    obs.observe(replace(BASE, snapshot_index=1200), {"snapshots_sent": 1, "compactions": 1, "snapshots_installed": 1})
    got = kinds(journal)[1:]
    assert got == [
        ("snapshot_sent", {"term": 1, "to": "n3"}),
        ("compaction", {"term": 1, "snapshot_index": 900, "log_first_index": 901, "count": 1}),
        ("snapshot_installed", {"term": 1, "snapshot_index": 1200, "count": 1}),
    ]


def test_the_journal_is_a_bounded_ring_and_says_what_a_reader_missed() -> None:
    journal = EventJournal(capacity=5)
    for i in range(12):
        journal.record("role", term=i)
    page = journal.since(0)
    assert [e.seq for e in page.events] == [8, 9, 10, 11, 12]
    assert (page.first_seq, page.last_seq, page.missed) == (8, 12, 7)
    assert journal.dropped == 7
    assert [e.seq for e in journal.since(9).events] == [10, 11, 12] and journal.since(9).missed == 0
    assert journal.since(12).events == () and journal.since(99).events == ()
    assert [e.seq for e in journal.since(7, limit=2).events] == [8, 9]
    with pytest.raises(ValueError):
        EventJournal(capacity=0)


# ---------------------------------------------------------------------------- stats


def test_latency_buckets_and_percentiles() -> None:
    assert bucket_of(0) == 0 and bucket_of(1e9) == len(BUCKET_BOUNDS_S) - 1
    for seconds in (0.0001, 0.003, 0.25, 7.0):
        b = bucket_of(seconds)
        assert BUCKET_BOUNDS_S[b] >= seconds and (b == 0 or BUCKET_BOUNDS_S[b - 1] < seconds)
        assert BUCKET_BOUNDS_S[b] <= seconds * 1.15 + 1e-12  # within one bucket: 15 %
    stats = RequestStats()
    for _ in range(98):
        stats.observe("/api/v1/kv/<key:key>", "PUT", 200, 0.002)
    stats.observe("/api/v1/kv/<key:key>", "PUT", 200, 0.5)
    stats.observe("/api/v1/txn", "POST", 503, 0.9)
    stats.observe("/api/v1/kv", "GET", 200, 0.001)
    stats.observe("/api/v1/status", "GET", 200, 0.001)  # neither a read nor a write of data
    second = stats.take()
    assert (second.writes, second.reads, second.errors) == (100, 1, 1)
    p50 = percentile_ms(second.write_hist, second.writes, 0.5)
    p99 = percentile_ms(second.write_hist, second.writes, 0.99)
    assert p50 is not None and 2.0 <= p50 <= 2.3
    assert p99 is not None and 500 <= p99 <= 575
    assert percentile_ms(second.read_hist, 0, 0.5) is None
    assert stats.take().writes == 0  # a new second starts empty


def test_sampler_rates_lag_and_window() -> None:
    runtime = FakeRuntime("node1")
    stats = RequestStats()
    sampler = StatsSampler(runtime, stats, window_s=3)
    first = sampler.sample()
    assert first.applied == 0 and first.role == "leader" and first.leader == "node1"
    for _ in range(4):
        runtime.log.append(b"x")  # four entries applied in the next second
    stats.observe("/api/v1/kv/<key:key>", "GET", 200, 0.004)
    second = sampler.sample()
    assert second.applied == 4 and second.reads == 1 and second.read_p50_ms is not None
    assert second.lag == {}  # a single-node cluster: no followers
    runtime.membership = runtime.membership.with_member(Member("node2", "127.0.0.1:7001", "http://node2.invalid"))
    assert sampler.sample().lag == {"node2": 0}
    runtime.follow("node2", None)  # not the leader: no lag of its own to report
    assert sampler.sample().lag == {}
    runtime.lead()
    for _ in range(5):
        sampler.sample()
    assert len(sampler.samples) == 3  # the window is a bound, not a suggestion
    assert len(sampler.to_json()["samples"]) == 3
    last = sampler.samples[-1].t_ms
    assert sampler.to_json(after_ms=last)["samples"] == []
