"""A join that needs a long catch-up (issue 9, item 3), real processes: the join is answered 200
once the node is a voter however long its snapshot takes (longer than the request and the
forwarding timeouts here: the new node is stopped mid-transfer), a repeated join of the same
node meanwhile waits for the same outcome, and ``/raft/nodes`` shows the transfer's progress.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_cluster import FAST_FLAGS, Cluster, cluster_fixture, wait_for

pytestmark = pytest.mark.e2e

API = "/api/v1"
FLAGS = (*FAST_FLAGS, "--snapshot-threshold", "20", "--learner-timeout-s", "60")


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path, request, extra_args=FLAGS)


def test_a_join_waits_for_a_long_catch_up_and_a_repeated_join_waits_with_it(cluster: Cluster) -> None:
    leader = cluster.start_cluster(3)
    value = "v" * (200 * 1024)
    for i in range(80):  # ~16 MB of state, and a compacted log: node4 needs a snapshot
        r = httpx.put(f"{leader.url}{API}/kv/big{i}", json=value, timeout=10)
        assert r.status_code == 200, r.text
    node4 = cluster.add("node4")
    node4.start()
    node4.wait_ready()
    follower = next(n for n in cluster.live() if n is not leader and n.node_id != "node4")
    body = {"NodeID": "node4", "RaftAddress": node4.raft_address}
    answers: list[Any] = []

    def join() -> None:
        try:  # through a follower: forwarded, and not cut by its forwarding timeout (5 s)
            answers.append(httpx.post(f"{follower.url}{API}/raft/join", json=body, timeout=120))
        except httpx.HTTPError as e:
            answers.append(e)

    first = threading.Thread(target=join)
    first.start()
    seen: list[dict[str, Any]] = []

    def progress() -> bool:
        nodes = httpx.get(f"{leader.url}{API}/raft/nodes", timeout=5).json()["nodes"]
        snap = next((n["snapshot"] for n in nodes if n["id"] == "node4"), None)
        if snap and snap["bytes_sent"] > 0:
            seen.append(snap)
            return True
        return False

    wait_for("node4's snapshot transfer under way", progress, 60, interval_s=0.01)
    assert node4.proc is not None
    node4.kill(signal.SIGSTOP)  # the catch-up now takes longer than every request timeout
    try:
        snap = seen[-1]
        assert 0 < snap["bytes_sent"] < snap["bytes_total"], snap
        assert snap["bytes_total"] >= 80 * 200 * 1024, snap
        time.sleep(6)  # the fault's duration: node4 stays stopped past request_timeout_s (3) and forward_timeout_s (5)
        second = threading.Thread(target=join)  # asked again meanwhile: waits for the same outcome
        second.start()
        time.sleep(0.5)  # the fault's duration: node4 stays stopped while the repeated join is under way
    finally:
        node4.kill(signal.SIGCONT)
    first.join(120)
    second.join(120)
    assert len(answers) == 2
    for a in answers:
        assert isinstance(a, httpx.Response) and a.status_code == 200, a
        members = {m["id"]: m["voter"] for m in a.json()["members"]}
        assert members.get("node4") is True, a.text
    status = node4.status()
    assert status is not None and status["applied_index"] > 0
