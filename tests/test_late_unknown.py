"""A write answered ``unknown`` after a forwarding timeout never takes effect later.

Issue 13, item 1: a write sent to a follower that cannot reach the leader is answered
``unknown``; before the fix the forwarded request stayed in flight and the leader applied it
seconds later, after newer acknowledged writes. Now a forwarded request carries its deadline
(``api/deadline.py``) and the forwarding connection closes abortively, so ``unknown`` means
"before the answer, or never" (as closely as Raft allows).

The real-process test stops the leader (SIGSTOP) for longer than the forwarding timeout but
shorter than an election timeout (elections are slowed down for that), so the same leader
resumes and finds the forwarded request waiting in its socket buffer: exactly the late
delivery that must not be applied. The unit tests drive :class:`DeadlineBook` with fake clocks.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_cluster import Cluster, cluster_fixture, wait_for

from beaver_vault.api.deadline import BUDGET_HEADER, SENT_AT_HEADER, DeadlineBook, DeadlinePassed, budget_ms

KV = "/api/v1/kv/"

# Elections take 5-10 s (100 ticks of 50 ms), so a leader stopped for ~2.5 s is still the leader
# when it resumes; forwarding gives up after 1 s.
SLOW_ELECTION_FLAGS = (
    "--tick-ms", "50",
    "--election-ticks", "100",
    "--heartbeat-ticks", "2",
    "--request-timeout-s", "2",
    "--forward-timeout-s", "1",
    "--shutdown-timeout-s", "1",
)  # fmt: skip


# ---------------------------------------------------------------- unit: DeadlineBook


class Clocks:
    def __init__(self, wall_ms: int) -> None:
        self.wall = wall_ms
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += int(seconds * 1000)
        self.mono += seconds


def book_with(clocks: Clocks) -> DeadlineBook:
    return DeadlineBook(wall_ms=lambda: clocks.wall, monotonic_s=lambda: clocks.mono)


def test_budget_leaves_the_follower_a_margin() -> None:
    assert budget_ms(3.0) == 2500
    assert budget_ms(1.0) == 750
    assert 0 < budget_ms(0.01) < 10


def test_a_request_on_time_passes_and_a_late_one_is_refused() -> None:
    leader = Clocks(wall_ms=50_000)
    book = book_with(leader)
    # Follower clock equal to the leader's; sent 10 ms ago with 2 s budget.
    dl = book.deadline("n2", str(leader.wall - 10), "2000")
    book.check(dl)
    leader.advance(1.9)
    book.check(dl)
    leader.advance(0.2)
    with pytest.raises(DeadlinePassed):
        book.check(dl)
    assert book.refused == 1


def test_a_request_delivered_late_is_refused_on_arrival_despite_clock_skew() -> None:
    leader = Clocks(wall_ms=1_000_000)
    book = book_with(leader)
    skew_ms = -60_000  # the follower's clock is a minute behind the leader's
    # Earlier requests arrived promptly (5 ms): they teach the leader the offset.
    for _ in range(3):
        book.check(book.deadline("n2", str(leader.wall + skew_ms - 5), "2000"))
        leader.advance(0.5)
    # Sent 4 s ago by the follower's clock, delivered only now (stuck in a stopped leader's buffer).
    late = book.deadline("n2", str(leader.wall + skew_ms - 4000), "2000")
    with pytest.raises(DeadlinePassed):
        book.check(late)
    # And a prompt one still passes, skew or not.
    book.check(book.deadline("n2", str(leader.wall + skew_ms - 5), "2000"))


def test_a_follower_ahead_of_the_leader_is_not_given_extra_time() -> None:
    leader = Clocks(wall_ms=1_000_000)
    book = book_with(leader)
    skew_ms = +30_000
    # The deadline is never later than arrival + budget on the leader's own clock.
    dl = book.deadline("n3", str(leader.wall + skew_ms), "2000")
    assert dl is not None and dl <= leader.mono + 2.0
    leader.advance(2.1)
    with pytest.raises(DeadlinePassed):
        book.check(dl)


def test_missing_or_malformed_headers_mean_no_deadline() -> None:
    book = book_with(Clocks(wall_ms=5))
    assert book.deadline("n2", None, None) is None
    assert book.deadline("n2", "soon", "2000") is None
    book.check(None)
    assert SENT_AT_HEADER != BUDGET_HEADER


# ---------------------------------------------------------------- real processes


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path, request, extra_args=SLOW_ELECTION_FLAGS)


def read_meta(client: httpx.Client, url: str, key: str) -> dict[str, object] | None:
    resp = client.get(url + KV + key, params={"meta": "true"})
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body, dict)
    return body


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_write_answered_unknown_is_not_applied_when_the_stopped_leader_resumes(cluster: Cluster) -> None:
    leader = cluster.start_cluster(3)
    follower = next(n for n in cluster.live() if n is not leader)
    assert leader.proc is not None
    with httpx.Client(timeout=15.0) as client:
        # Warm the follower's forwarding connection (keep-alive) so the late request travels on
        # a connection the leader has already accepted.
        warm = client.put(follower.url + KV + "warm", content=json.dumps(0))
        assert warm.status_code == 200, warm.text
        term_before = wait_for("leader status", lambda: leader.status(), 10)["term"]

        leader.kill(signal.SIGSTOP)
        try:
            late = client.put(follower.url + KV + "late", content=json.dumps("late"))
            assert late.status_code in (503, 504), late.text
            assert late.json()["outcome"] == "unknown", late.text
            time.sleep(1.5)  # a fault's duration, not synchronisation: the leader stays stopped
        finally:
            leader.kill(signal.SIGCONT)

        # The leader resumes with the forwarded request in its socket buffer.
        status = wait_for("the leader to answer again", lambda: leader.status(), 20)
        assert status["role"] == "leader" and status["term"] == term_before, status

        newer = client.put(leader.url + KV + "late", content=json.dumps("newer"))
        assert newer.status_code == 200, newer.text
        # Linearizable reads on every node: each sees everything committed before it.
        for node in cluster.live():
            meta = read_meta(client, node.url, "late")
            assert meta is not None
            assert meta["value"] == "newer", (node.node_id, meta)
            # version 1: "newer" is the only write this key ever saw; the unknown one never happened.
            assert meta["version"] == 1, (node.node_id, meta)
        # A later, unrelated write commits after anything still queued; the key is unchanged.
        assert client.put(leader.url + KV + "after", content=json.dumps(1)).status_code == 200
        meta = read_meta(client, leader.url, "late")
        assert meta is not None and meta["value"] == "newer" and meta["version"] == 1, meta


@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_a_write_answered_unknown_during_a_partition_is_not_applied_after_healing() -> None:
    # Needs root, `ip` and `nft` (network namespaces); the driver runs in its own process.
    driver = Path(__file__).with_name("netns_late_unknown.py")
    proc = subprocess.run([sys.executable, str(driver)], capture_output=True, text=True, timeout=140)
    if proc.returncode == 77:
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith("OK"), proc.stdout
