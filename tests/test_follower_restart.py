"""A follower's restart never costs the cluster its leader (issue 13, item 2).

The cause found: when a follower dies, the leader's outbound connection to it fails and the
leader's writer task retries with a backoff that doubles up to 2 s. The follower comes back,
but the leader keeps sleeping in that backoff for up to 2 s, so the follower hears nothing,
answers nothing, and does not count as active for CheckQuorum. If another follower fails in
that window (the next fault, a slow disk, a GC pause), the leader counts only itself and steps
down although a majority is up. The fix (``transport/tcp.py``): any inbound connection from a
peer wakes the writer tasks sleeping in a reconnect backoff, so a member that comes back is
reconnected at once.

The test restarts a follower under a write load and, as soon as it answers again, kills the
other follower: the leader must keep leading in the same term, round after round.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_cluster import Cluster, cluster_fixture, wait_for

pytestmark = pytest.mark.e2e


# Elections after 0.4-0.8 s (a little slack over the default test timing for a loaded machine),
# CheckQuorum every 0.4 s: well inside the 2 s reconnect backoff that caused the step-down.
FLAGS = (
    "--tick-ms", "25",
    "--election-ticks", "16",
    "--heartbeat-ticks", "2",
    "--request-timeout-s", "3",
    "--forward-timeout-s", "5",
    "--shutdown-timeout-s", "1",
)  # fmt: skip


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path, request, extra_args=FLAGS)


def write_load(url: str, stop: threading.Event, counts: dict[str, int]) -> None:
    i = 0
    with httpx.Client(timeout=5.0) as client:
        while not stop.is_set():
            i += 1
            try:
                resp = client.put(f"{url}/api/v1/kv/load{i % 20}", content=json.dumps(i))
                key = "ok" if resp.status_code == 200 else "other"
            except httpx.HTTPError:
                key = "error"
            counts[key] = counts.get(key, 0) + 1


@pytest.mark.timeout(240)
def test_restarting_followers_under_load_never_changes_the_leaders_term(cluster: Cluster) -> None:
    leader = cluster.start_cluster(3)
    status = leader.status()
    assert status is not None
    term = status["term"]
    a, b = (n for n in cluster.live() if n is not leader)
    stop = threading.Event()
    counts: dict[str, int] = {}
    loader = threading.Thread(target=write_load, args=(leader.url, stop, counts))
    loader.start()
    seen: list[tuple[str, int]] = []
    try:
        for _ in range(3):
            b.kill()
            time.sleep(2.5)  # the fault's duration: long enough for the leader's backoff to grow
            b.start()
            b.wait_ready()
            a.kill()  # now b is the leader's only partner
            end = time.monotonic() + 2.0
            while time.monotonic() < end:  # watch the leader while a is down
                st = leader.status(timeout_s=1.0)
                if st is not None:
                    seen.append((st["role"], st["term"]))
                time.sleep(0.05)
            a.start()
            a.wait_ready()
            a, b = b, a
    finally:
        stop.set()
        loader.join()
    assert seen, "the leader never answered"
    assert set(seen) == {("leader", term)}, sorted(set(seen))
    assert counts.get("ok", 0) > 0, counts
    final = wait_for("leader status", lambda: leader.status(), 10)
    assert final["role"] == "leader" and final["term"] == term, final
