"""End to end, real processes (issue 5): a watcher on a follower sees every change of a
concurrent write load, in order, with no gap and no duplicate, across a leader kill."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any

import httpx
import pytest
from e2e_cluster import Cluster, Node, wait_for

pytestmark = pytest.mark.e2e


class SseWatcher(threading.Thread):
    """Reads /api/v1/watch on one node; records every event (resuming from the last id seen
    if the stream breaks, as EventSource would)."""

    def __init__(self, node: Node, prefix: str, from_revision: int) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.prefix = prefix
        self.from_revision = from_revision
        self.events: list[dict[str, Any]] = []
        self.last_id: str | None = None
        self.stop = threading.Event()
        self.reconnects = 0

    def run(self) -> None:
        deadline = time.monotonic() + 180  # bounded: the test never waits forever on us
        while not self.stop.is_set() and time.monotonic() < deadline:
            headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
            params = {"prefix": self.prefix, "from_revision": str(self.from_revision)}
            try:
                with (
                    httpx.Client(timeout=httpx.Timeout(5.0, read=2.0)) as client,
                    client.stream("GET", f"{self.node.url}/api/v1/watch", params=params, headers=headers) as r,
                ):
                    if r.status_code != 200:
                        self.reconnects += 1
                        continue
                    event_id = None
                    for line in r.iter_lines():
                        if self.stop.is_set():
                            return
                        if line.startswith("id:"):
                            event_id = line[3:].strip()
                        elif line.startswith("data:"):
                            self.events.append(json.loads(line[5:]))
                            self.last_id = event_id
            except httpx.HTTPError:
                self.reconnects += 1


def test_a_follower_watch_sees_every_change_in_order_across_a_leader_kill(cluster: Cluster) -> None:
    leader = cluster.start_cluster(3)
    follower = next(n for n in cluster.live() if n.node_id != leader.node_id)
    start_rev = leader.status()["applied_index"] + 1  # type: ignore[index]
    watcher = SseWatcher(follower, "w/", start_rev)
    watcher.start()

    acked: dict[str, int] = {}  # key -> revision of its acknowledged write
    lock = threading.Lock()
    stop_writers = threading.Event()

    def writer(w: int) -> None:
        i = 0
        with httpx.Client(timeout=10.0) as client:
            while not stop_writers.is_set() and i < 400:
                key = f"w/{w}/{i:04}"
                for node in list(cluster.live()):
                    try:
                        r = client.put(f"{node.url}/api/v1/kv/{key}", content=json.dumps(i))
                    except httpx.HTTPError:
                        continue
                    if r.status_code == 200:
                        with lock:
                            acked[key] = r.json()["revision"]
                        break
                i += 1

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in writers:
        t.start()
    wait_for("some writes before the kill", lambda: len(acked) >= 200, 60, 0.05)
    leader.kill(signal.SIGKILL)
    cluster.wait_leader(exclude=leader.node_id, timeout_s=30)
    wait_for("more writes after the kill", lambda: len(acked) >= 600, 90, 0.05)
    stop_writers.set()
    for t in writers:
        t.join()

    # the watcher must eventually have seen every acknowledged write
    def seen_all() -> bool:
        keys = {e["key"] for e in watcher.events}
        return set(acked) <= keys

    wait_for("the watcher saw every acknowledged write", seen_all, 60, 0.1)
    watcher.stop.set()
    events = list(watcher.events)
    revisions = [e["revision"] for e in events]
    assert revisions == sorted(revisions), "events out of order"
    pairs = [(e["revision"], e["key"]) for e in events]
    assert len(pairs) == len(set(pairs)), "duplicate events"
    # no gap: every key the cluster holds under w/ (acknowledged or not) was seen, at its revision
    new_leader = cluster.wait_leader()
    with httpx.Client(timeout=10.0) as client:
        stored: dict[str, int] = {}
        after = None
        while True:
            params: dict[str, Any] = {"prefix": "w/", "limit": 1000}
            if after:
                params["after"] = after
            body = client.get(f"{new_leader.url}/api/v1/kv", params=params).json()
            stored.update({it["key"]: it["mod_revision"] for it in body["items"]})
            if not body["more"]:
                break
            after = body["next_after"]
    assert set(acked) <= set(stored)
    assert {(rev, key) for key, rev in stored.items()} <= set(pairs)
    by_key = {e["key"]: e for e in events}
    for key, rev in acked.items():
        assert by_key[key]["type"] == "put" and by_key[key]["revision"] == rev
        assert by_key[key]["value"] == int(key.rsplit("/", 1)[1])
