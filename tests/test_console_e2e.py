"""The console's data on real processes: ``/api/v1/events`` records the compactions, the snapshot
a leader sends and the one a new node installs, the membership changes and the leader change
after a SIGKILL; ``/api/v1/stats`` and ``/ui/stats`` report writes, applied entries and the
leader's per-follower lag. (The page itself: ``test_ui_browser.py``.)"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_cluster import FAST_FLAGS, Cluster, Node, cluster_fixture, wait_for

pytestmark = pytest.mark.e2e

SNAPSHOT_THRESHOLD = 40


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from cluster_fixture(
        tmp_path, request, extra_args=FAST_FLAGS + ("--snapshot-threshold", str(SNAPSHOT_THRESHOLD))
    )


def events(node: Node, after: int = 0) -> list[dict[str, Any]]:
    body = httpx.get(f"{node.url}/api/v1/events", params={"after": after}, timeout=5).json()
    assert body["node_id"] == node.node_id and body["missed"] == 0
    seqs = [e["seq"] for e in body["events"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    return list(body["events"])


def has_event(node: Node, kind: str, **fields: Any) -> dict[str, Any] | None:
    for e in events(node):
        if e["kind"] == kind and all(e.get(k) == v for k, v in fields.items()):
            return e
    return None


def test_events_and_stats_of_a_real_cluster(cluster: Cluster) -> None:
    leader = cluster.start_cluster(3)
    assert has_event(leader, "started")
    assert has_event(leader, "membership", added=["node3"])
    assert has_event(leader, "membership", promoted=["node3"])

    with httpx.Client(timeout=5) as client:
        for i in range(4 * SNAPSHOT_THRESHOLD):
            assert client.put(f"{leader.url}/api/v1/kv/k{i}", content=b"1").status_code == 200
    compaction = wait_for("a compaction in the leader's journal", lambda: has_event(leader, "compaction"))
    assert compaction["snapshot_index"] > 0 and compaction["log_first_index"] == compaction["snapshot_index"] + 1

    # A new node is far behind the compacted log: the leader sends it a snapshot.
    cluster.start("node4", join=leader.url)
    cluster.wait_members(["node1", "node2", "node3", "node4"])
    sent = wait_for("snapshot_sent in the leader's journal", lambda: has_event(leader, "snapshot_sent", to="node4"))
    assert sent["term"] >= 1
    wait_for("snapshot_installed in node4's journal", lambda: has_event(cluster["node4"], "snapshot_installed"))

    # Stats: this second's writes were seen, every node applied them, and the leader has lag per follower.
    def stats_with_writes() -> dict[str, Any] | None:
        body: dict[str, Any] = httpx.get(f"{leader.url}/api/v1/stats", timeout=5).json()
        return body if sum(s["writes"] for s in body["samples"]) >= 4 * SNAPSHOT_THRESHOLD else None

    stats = wait_for("the writes in the leader's stats", stats_with_writes)
    assert stats["node_id"] == leader.node_id and stats["window_s"] == 300
    assert sum(s["applied"] for s in stats["samples"]) >= 4 * SNAPSHOT_THRESHOLD
    assert any(s["write_p50_ms"] is not None for s in stats["samples"])
    followers = {n.node_id for n in cluster.nodes.values()} - {leader.node_id}

    def lag_of_every_follower() -> dict[str, int] | None:
        last: dict[str, int] = httpx.get(f"{leader.url}/api/v1/stats", timeout=5).json()["samples"][-1]["lag"]
        return last if set(last) == followers else None

    assert all(isinstance(v, int) and v >= 0 for v in wait_for("lag of every follower", lag_of_every_follower).values())
    follower = next(n for n in cluster.live() if n is not leader)
    ui = httpx.get(f"{follower.url}/ui/stats", timeout=5).json()
    assert ui["leader"]["node_id"] == leader.node_id and ui["leader_error"] is None
    assert ui["node"]["node_id"] == follower.node_id

    # The leader dies: a survivor's journal tells the story.
    last = events(follower)[-1]["seq"]
    leader.kill(signal.SIGKILL)
    new_leader = cluster.wait_leader(exclude=leader.node_id)
    change = wait_for(
        "the leader change in a survivor's journal",
        lambda: next((e for e in events(follower, last) if e["kind"] == "leader" and e["to"] == new_leader.node_id), None),
    )
    assert change["term"] > sent["term"]
    if new_leader is follower:
        assert any(e["kind"] == "election" for e in events(follower, last))
        assert any(e["kind"] == "role" and e["to"] == "leader" for e in events(follower, last))
