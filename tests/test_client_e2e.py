"""The Python client against real ``beaver-vault server`` processes.

Every method of the sync client; the async client under pytest-trio; failover when the node a
client (and a watch) talks to is SIGKILLed; and an exactly-once retry: a write whose answer is
lost after it reached the leader is retried on another node with the same Idempotency-Key and
applied once. Processes are started and killed by PID through ``e2e_cluster``; waits are poll
loops with deadlines, never bare sleeps whose length is asserted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_cluster import Cluster, free_port, wait_for

from beaver_vault.client import (
    AsyncClient,
    Client,
    NotFound,
    PreconditionFailed,
    RetryPolicy,
    WatchEvent,
)

pytestmark = pytest.mark.e2e

POLICY = RetryPolicy(max_attempts=12, backoff_initial_s=0.05, backoff_max_s=0.5, timeout_s=10.0)


def _cluster(root: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    c = Cluster(root)
    failed_before = request.session.testsfailed
    try:
        c.start_cluster(3)
        yield c
    finally:
        c.close()
        if request.session.testsfailed > failed_before:
            c.dump_logs()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from _cluster(tmp_path_factory.mktemp("client") / "cluster", request)


@pytest.fixture
def own_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A cluster this test may kill nodes of."""
    yield from _cluster(tmp_path / "cluster", request)


def urls(cluster: Cluster, first: str | None = None) -> list[str]:
    nodes = sorted(cluster.nodes.values(), key=lambda n: (n.node_id != first, n.node_id))
    return [n.url for n in nodes if n.alive()]


@pytest.fixture
def client(cluster: Cluster) -> Iterator[Client]:
    with Client(urls(cluster), policy=POLICY) as c:
        yield c


def collect(watch: Iterator[WatchEvent], n: int, into: list[WatchEvent]) -> threading.Thread:
    def run() -> None:
        for event in watch:
            into.append(event)
            if len(into) >= n:
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# --- one cluster for the methods ----------------------------------------------------------------


def test_get_put_delete_with_revisions_and_preconditions(client: Client) -> None:
    first = client.put("users/1", {"name": "a"}, if_absent=True)
    assert first.created and first.key == "users/1"
    assert client.get("users/1") == {"name": "a"}
    meta = client.get_meta("users/1")
    assert (meta.value, meta.create_revision, meta.mod_revision, meta.version) == (
        {"name": "a"},
        first.revision,
        first.revision,
        1,
    )
    with pytest.raises(PreconditionFailed) as err:
        client.put("users/1", {"name": "x"}, if_absent=True)
    assert err.value.current_revision == first.revision

    second = client.put("users/1", {"name": "b"}, if_revision=first.revision)
    assert not second.created and second.revision > first.revision
    with pytest.raises(PreconditionFailed) as err:
        client.put("users/1", {"name": "c"}, if_revision=first.revision)
    assert err.value.current_revision == second.revision
    with pytest.raises(PreconditionFailed):
        client.delete("users/1", if_revision=first.revision)
    assert client.get_meta("users/1").version == 2

    deleted = client.delete("users/1", if_revision=second.revision)
    assert deleted.deleted and deleted.revision is not None and deleted.revision > second.revision
    with pytest.raises(NotFound):
        client.get("users/1")
    with pytest.raises(NotFound):
        client.get_meta("users/1")
    assert client.delete("users/1").deleted is False
    assert client.put("odd key/ä?#%", [1, "é", None]).created
    assert client.get("odd key/ä?#%") == [1, "é", None]


def test_listing_paginates_and_prefix_delete_is_atomic(client: Client) -> None:
    keys = [f"list/{i:02d}" for i in range(7)]
    for i, key in enumerate(keys):
        client.put(key, {"i": i})
    client.put("listx", 0)  # not under "list/"
    page = client.list("list/", limit=3)
    assert [i.key for i in page.items] == keys[:3] and page.count == 7 and page.more
    assert page.next_after == keys[2] and page.items[0].value == {"i": 0} and page.revision > 0
    rest = client.list("list/", limit=10, after=page.next_after, keys_only=True)
    assert list(rest.keys) == keys[3:] and not rest.more
    assert [p.keys for p in client.pages("list/", page_size=3, keys_only=True)] == [
        tuple(keys[0:3]),
        tuple(keys[3:6]),
        tuple(keys[6:]),
    ]
    assert [kv.value["i"] for kv in client.items("list/", page_size=2)] == list(range(7))
    assert list(client.keys("list/", page_size=4)) == keys

    gone = client.delete_prefix("list/")
    assert gone.deleted == 7 and gone.revision is not None
    assert client.list("list/").count == 0
    assert client.get("listx") == 0


def test_txn_runs_one_branch_atomically(client: Client) -> None:
    client.put("cas", "b")
    ok = client.txn(
        [{"key": "cas", "target": "value", "op": "==", "value": "b"}],
        [{"op": "put", "key": "t1", "value": 1}, {"op": "put", "key": "cas", "value": "c"}],
        [{"op": "get", "key": "t1"}],
    )
    assert ok.succeeded and len(ok.results) == 2 and ok.revision > 0
    again = client.txn(
        [{"key": "cas", "target": "value", "op": "==", "value": "b"}],
        [{"op": "put", "key": "t1", "value": 2}],
        [{"op": "get", "key": "t1"}],
    )
    assert not again.succeeded and len(again.results) == 1
    assert client.get("t1") == 1 and client.get("cas") == "c"


def test_ttl_key_disappears(client: Client) -> None:
    client.put("ttl/k", 1, ttl=1)
    assert client.get("ttl/k") == 1

    def gone() -> bool:
        try:
            client.get("ttl/k")
        except NotFound:
            return True
        return False

    wait_for("the TTL key to expire", gone, timeout_s=5.0, interval_s=0.2)


def test_watch_sees_every_change_in_order_including_multi_key_revisions(client: Client) -> None:
    start = client.put("w/0", 0).revision
    events: list[WatchEvent] = []
    with client.watch("w/", from_revision=start) as watch:
        t = collect(watch, 5, events)
        client.put("w/1", 1)
        client.put("other", 1)  # not under the prefix
        client.delete_prefix("w/")  # two deletes at one revision
        client.put("w/2", 2)
        t.join(timeout=15)
    assert [(e.type, e.key, e.value) for e in events] == [
        ("put", "w/0", 0),
        ("put", "w/1", 1),
        ("delete", "w/0", None),
        ("delete", "w/1", None),
        ("put", "w/2", 2),
    ]
    revisions = [e.revision for e in events]
    assert revisions[0] == start and revisions == sorted(revisions) and revisions[2] == revisions[3]


def test_watch_without_from_revision_starts_now(client: Client) -> None:
    client.put("now/old", 1)
    events: list[WatchEvent] = []
    with client.watch("now/") as watch:
        t = collect(watch, 1, events)
        wait_for("the watch to resolve its start", lambda: watch._session.cursor.next_revision is not None)
        client.put("now/new", 2)
        t.join(timeout=15)
    assert [(e.key, e.value) for e in events] == [("now/new", 2)]


def test_status_members_and_leadership_transfer(cluster: Cluster, client: Client) -> None:
    for node in cluster.nodes.values():
        assert client.status(node.url)["node_id"] == node.node_id
    members = client.members()
    assert sorted(m["id"] for m in members) == ["node1", "node2", "node3"]
    leader = next(m["id"] for m in members if m["role"] == "leader")
    target = next(m["id"] for m in members if m["role"] != "leader")
    answer = client.transfer_leadership(target)
    assert answer.get("leader") == target
    assert cluster.wait_leader().node_id == target
    assert client.put("after-transfer", 1).revision > 0
    client.transfer_leadership(leader)
    cluster.wait_leader()


def test_join_and_remove_a_node(cluster: Cluster, client: Client) -> None:
    # node4 waits to be adopted: its own --join points at a port where nothing listens.
    node = cluster.add("node4")
    node.start(join=f"http://127.0.0.1:{free_port()}")
    node.wait_ready()
    members = client.join("node4", node.raft_address)
    assert "node4" in {m["id"] for m in members}
    cluster.wait_members(["node1", "node2", "node3", "node4"])
    members = client.remove("node4")
    assert "node4" not in {m["id"] for m in members}
    node.stop()
    cluster.wait_members(["node1", "node2", "node3"])


class LoseFirstWriteAnswer(httpx.BaseTransport):
    """Sends every request for real, but drops the answer to the first PUT (as if the
    connection broke after the leader applied it)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.inner.handle_request(request)
        if request.method == "PUT" and sum(r.method == "PUT" for r in self.requests) == 1:
            response.read()
            response.close()
            raise httpx.ReadError("answer lost (injected)", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_write_whose_answer_is_lost_is_retried_on_another_node_and_applied_once(cluster: Cluster) -> None:
    transport = LoseFirstWriteAnswer()
    http = httpx.Client(transport=transport, timeout=POLICY.httpx_timeout())
    leader = cluster.wait_leader()
    with Client(urls(cluster, first=leader.node_id), policy=POLICY, http=http) as client:
        result = client.put("once/k", {"n": 1})
        meta = client.get_meta("once/k")
    http.close()
    puts = [r for r in transport.requests if r.method == "PUT"]
    assert len(puts) == 2 and puts[0].url.host == puts[1].url.host
    assert puts[0].url.port != puts[1].url.port  # the retry went to another node
    assert puts[0].headers["Idempotency-Key"] == puts[1].headers["Idempotency-Key"]
    assert meta.version == 1 and meta.mod_revision == result.revision  # applied exactly once


# --- the async client, under Trio ---------------------------------------------------------------


async def test_async_client_under_trio(cluster: Cluster) -> None:
    import trio

    async with AsyncClient(urls(cluster), policy=POLICY) as client:
        put = await client.put("async/a", {"x": 1}, if_absent=True)
        assert await client.get("async/a") == {"x": 1}
        assert (await client.get_meta("async/a")).mod_revision == put.revision
        with pytest.raises(PreconditionFailed):
            await client.put("async/a", 2, if_revision=put.revision + 1000)
        await client.put("async/b", 2)
        assert [p.keys async for p in client.pages("async/", page_size=1, keys_only=True)] == [
            ("async/a",),
            ("async/b",),
        ]
        assert [kv.key async for kv in client.items("async/")] == ["async/a", "async/b"]
        assert [k async for k in client.keys("async/")] == ["async/a", "async/b"]
        txn = await client.txn([{"key": "async/b", "target": "exists", "op": "==", "value": True}], [], [])
        assert txn.succeeded
        assert (await client.status())["node_id"] in cluster.nodes
        assert len(await client.members()) == 3

        events: list[WatchEvent] = []
        with trio.fail_after(20):
            async with client.watch("async/", from_revision=put.revision) as watch:
                async with trio.open_nursery() as nursery:

                    async def write() -> None:
                        await client.delete("async/a")
                        await client.delete_prefix("async/")

                    nursery.start_soon(write)
                    async for event in watch:
                        events.append(event)
                        if len(events) == 4:
                            break
        assert [(e.type, e.key) for e in events] == [
            ("put", "async/a"),
            ("put", "async/b"),
            ("delete", "async/a"),
            ("delete", "async/b"),
        ]
        with pytest.raises(NotFound):
            await client.get("async/b")


# --- failover: SIGKILL ----------------------------------------------------------------------------


def test_failover_when_the_leader_is_sigkilled_keeps_writes_and_the_watch_gapless(own_cluster: Cluster) -> None:
    cluster = own_cluster
    leader = cluster.wait_leader()
    endpoints = urls(cluster, first=leader.node_id)  # both the writer and the watch start on the leader
    results: list[Any] = []
    events: list[WatchEvent] = []
    total = 40
    with Client(endpoints, policy=POLICY) as writer, Client(endpoints, policy=POLICY) as reader:
        start = writer.put("fo/start", 0).revision
        with reader.watch("fo/", from_revision=start, idle_timeout_s=5.0) as watch:
            watcher = collect(watch, total + 1, events)
            for i in range(total):
                if i == total // 2:
                    leader.kill()  # SIGKILL: connections to it are refused from now on
                results.append(writer.put(f"fo/{i:02d}", i))
            new_leader = cluster.wait_leader()
            assert new_leader.node_id != leader.node_id
            watcher.join(timeout=30)
            assert watch.last_revision is not None
        assert writer.get("fo/39") == 39
        # Every write applied exactly once (version 1), none lost.
        assert all(writer.get_meta(f"fo/{i:02d}").version == 1 for i in range(total))
    expected = [("fo/start", start)] + [(f"fo/{i:02d}", r.revision) for i, r in enumerate(results)]
    assert [(e.key, e.revision) for e in events] == expected  # no gap, no duplicate, in order
