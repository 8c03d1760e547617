"""Real processes with the storage worker thread on and off (issue 9, items 1 and 2).

Both modes: writes under concurrency, the leader SIGKILLed in the middle, every acknowledged
write still there once it is back (acknowledged means fsynced on a majority, whichever thread
did the fsync). With a log cache of a few KiB, a follower that was down catches up with
entries the leader reads back from its database (``node_log_reads`` in /metrics).
"""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_cluster import FAST_FLAGS, Cluster, cluster_fixture, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    mode = request.param if hasattr(request, "param") else "true"
    flags = (*FAST_FLAGS, "--storage-thread", mode, "--log-cache-bytes", "4096", "--snapshot-threshold", "100000")
    yield from cluster_fixture(tmp_path, request, extra_args=flags)


def _writer(url: str, prefix: str, stop: threading.Event, acked: list[str]) -> None:
    i = 0
    with httpx.Client(timeout=3.0) as client:
        while not stop.is_set():
            i += 1
            key = f"{prefix}-{i}"
            try:
                if client.put(f"{url}/api/v1/kv/{key}", content=json.dumps("v" * 200)).status_code == 200:
                    acked.append(key)
            except httpx.HTTPError:
                pass  # unknown outcome: not counted as acknowledged


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    m = re.search(rf"^beaver_vault_{name}\{{[^}}]*\}}\s+(\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.mark.parametrize("cluster", ["true", "false"], indirect=True)
def test_acknowledged_writes_survive_a_leader_sigkill(cluster: Cluster) -> None:
    leader = cluster.start_cluster(3)
    stop = threading.Event()
    acked: list[str] = []
    threads = [threading.Thread(target=_writer, args=(leader.url, f"w{k}", stop, acked)) for k in range(4)]
    for t in threads:
        t.start()
    wait_for("40 acknowledged writes", lambda: len(acked) >= 40, timeout_s=30)
    leader.kill(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()
    leader.start()
    new = cluster.wait_leader()
    for key in acked:
        r = httpx.get(f"{new.url}/api/v1/kv/{key}", timeout=5)
        assert r.status_code == 200, (key, r.text)
    # The event loop's lateness is measured on every node (a histogram in /metrics).
    assert _metric(new.url, "event_loop_lateness_seconds_count") > 0


def test_a_follower_behind_the_log_cache_catches_up_from_the_database(cluster: Cluster) -> None:
    leader = cluster.start_cluster(3)
    follower = next(n for n in cluster.live() if n is not leader)
    follower.stop()
    with httpx.Client(timeout=5.0) as client:
        for i in range(60):  # ~15 KiB of entries: far more than the 4 KiB the leader keeps
            assert client.put(f"{leader.url}/api/v1/kv/k{i}", content=json.dumps("x" * 200)).status_code == 200
    follower.start()
    st = leader.status()
    assert st is not None
    index = st["applied_index"]
    cluster.wait_applied(index, [follower])
    assert _metric(leader.url, "node_log_reads") > 0
    r = httpx.get(f"{follower.url}/api/v1/kv/k0?consistency=stale", timeout=5)
    assert r.status_code == 200 and r.json() == "x" * 200


def test_small_applies_run_inline_when_the_thread_is_idle_and_every_node_agrees(cluster: Cluster) -> None:
    """One writer at a time: most applies are one entry handed over while the storage thread is
    idle, so they run at once on the event loop's thread (``storage_applies_inline``), on the
    leader and on the followers. Every node ends with the same values and the same revisions."""
    leader = cluster.start_cluster(3)
    with httpx.Client(timeout=5.0) as client:
        for i in range(40):
            r = client.put(f"{leader.url}/api/v1/kv/seq-{i % 7}", content=json.dumps({"i": i}))
            assert r.status_code == 200, r.text
        index = int(client.get(f"{leader.url}/api/v1/status").json()["commit_index"])
    cluster.wait_applied(index)
    for node in cluster.live():
        assert _metric(node.url, "storage_applies_inline") > 0, node.node_id
    seen = set()
    for node in cluster.live():
        rows = []
        for k in range(7):
            r = httpx.get(f"{node.url}/api/v1/kv/seq-{k}", params={"consistency": "stale", "meta": "true"}, timeout=5)
            assert r.status_code == 200, r.text
            rows.append(json.dumps(r.json(), sort_keys=True))
        seen.add(tuple(rows))
    assert len(seen) == 1, seen
