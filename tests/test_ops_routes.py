"""GET /health, GET /ready and GET /api/v1/backup: the readiness tracker (pure), the routes
over a real runtime on SQLite (virtual time), and a real 3-node cluster losing and regaining
its quorum."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from e2e_cluster import Cluster, wait_for
from fake_runtime import FakeRuntime
from quart.typing import TestClientProtocol as Client

from beaver_vault.api import ApiOptions, create_app
from beaver_vault.api.ops_routes import PROBE_FILE, begin_shutdown
from beaver_vault.node.readiness import ReadinessTracker
from beaver_vault.node.runtime import NodeRuntime, RuntimeOptions
from beaver_vault.raft.messages import AppendRequest, AppendResponse, InstallSnapshot
from beaver_vault.storage.backup import verify_backup
from beaver_vault.storage.sqlite import SQLiteStorage


def append(term: int, commit: int) -> AppendRequest:
    return AppendRequest(term, "leader", "me", 0, 0, (), commit)


# --- the tracker (pure) -------------------------------------------------------------------------


def test_tracker_counts_an_announcement_only_once_processed() -> None:
    t = ReadinessTracker()
    assert t.catch_up(0).leader_commit_index == 0 and not t.catch_up(0).caught_up  # never heard of a leader
    t.saw(append(term=2, commit=10))
    # Arrived but not processed yet: the applied index may lag it by design, nothing changes.
    assert t.catch_up(0).leader_commit_index == 0
    t.processed("follower", commit_index=10, term=2)
    assert t.catch_up(9).leader_commit_index == 10 and not t.catch_up(9).caught_up
    assert t.catch_up(10).caught_up and t.catch_up(11).caught_up


def test_tracker_follows_the_newest_term_and_ignores_other_messages() -> None:
    t = ReadinessTracker()
    t.saw(append(term=3, commit=50))
    t.saw(append(term=2, commit=80))  # a stale leader's late message: ignored
    t.saw(AppendResponse(3, "x", "me", True, 99))  # not an announcement
    t.processed("follower", commit_index=0, term=3)
    assert t.catch_up(50).leader_commit_index == 50
    t.saw(append(term=4, commit=40))  # a new leader may announce less until it commits in its term
    t.processed("follower", commit_index=0, term=4)
    assert t.catch_up(45).leader_commit_index == 40


def test_tracker_is_not_fooled_by_heartbeats_capped_at_the_followers_match() -> None:
    t = ReadinessTracker()
    t.saw(append(term=2, commit=900))  # an append (or probe) carries the leader's commit index
    t.saw(append(term=2, commit=120))  # a heartbeat carries min(commit, this follower's match)
    t.processed("follower", commit_index=120, term=2)
    assert t.catch_up(120).leader_commit_index == 900 and not t.catch_up(120).caught_up


def test_tracker_counts_a_snapshot_being_streamed() -> None:
    t = ReadinessTracker()
    t.saw(append(term=5, commit=3))  # heartbeat at the compacted position: min(commit, match)
    t.saw(InstallSnapshot(5, "leader", "me", 5000, 4, 0, b"...", False, b""))
    t.processed("follower", commit_index=3, term=5)
    assert t.catch_up(3).leader_commit_index == 5000 and not t.catch_up(3).caught_up
    assert t.catch_up(5000).caught_up  # once installed (applied = the snapshot's index)


def test_tracker_on_the_leader_uses_its_own_commit_index() -> None:
    t = ReadinessTracker()
    t.saw(append(term=1, commit=5))
    t.processed("leader", commit_index=12, term=2)
    assert t.catch_up(12).caught_up and not t.catch_up(11).caught_up
    # Deposed: the next leader's announcements count again once processed.
    t.saw(append(term=3, commit=20))
    t.processed("follower", commit_index=12, term=3)
    assert t.catch_up(12).leader_commit_index == 20


# --- the routes over a real single-node runtime on SQLite ---------------------------------------


@pytest.fixture
async def runtime(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> AsyncIterator[NodeRuntime]:
    storage = SQLiteStorage(tmp_path / "node.db")
    rt = NodeRuntime(
        node_id="node1",
        storage=storage,
        options=RuntimeOptions(raft_address="127.0.0.1:7000", http_address="http://127.0.0.1:8000", seed=1),
    )
    await nursery.start(rt.run)
    with trio.fail_after(30):
        while rt.status().role != "leader":
            await trio.sleep(0.05)
    yield rt
    storage.close()


@pytest.fixture
async def app_client(runtime: NodeRuntime) -> AsyncIterator[tuple[Any, Client]]:
    app = create_app(runtime, ApiOptions())
    async with app.test_app() as test_app:
        yield app, test_app.test_client()


async def get_json(client: Client, path: str) -> tuple[int, dict[str, Any], Any]:
    r = await client.get(path)
    return r.status_code, json.loads(await r.get_data(as_text=True)), r.headers


async def test_health_and_ready_on_a_healthy_leader(app_client: tuple[Any, Client], tmp_path: Path) -> None:
    _app, client = app_client
    status, body, headers = await get_json(client, "/health")
    assert status == 200 and body["status"] == "ok" and body["node_id"] == "node1"
    assert headers["Cache-Control"] == "no-store"
    status, body, headers = await get_json(client, "/ready")
    assert status == 200, body
    assert body["ready"] is True and body["reasons"] == [] and body["role"] == "leader"
    assert body["applied_index"] >= body["leader_commit_index"] > 0
    assert (tmp_path / PROBE_FILE).exists()  # the disk was really written


async def test_ready_writes_the_disk_at_most_once_a_second(app_client: tuple[Any, Client]) -> None:
    app, client = app_client
    probe = app.extensions["beaver_vault.ops"].probe
    for _ in range(20):
        assert (await client.get("/ready")).status_code == 200
    assert probe.probes == 1
    await trio.sleep(1.01)
    assert (await client.get("/ready")).status_code == 200
    assert probe.probes == 2


async def test_ready_is_503_with_the_reason_when_the_disk_refuses_a_write(
    app_client: tuple[Any, Client], tmp_path: Path
) -> None:
    _app, client = app_client
    probe_path = tmp_path / PROBE_FILE
    probe_path.unlink(missing_ok=True)
    probe_path.mkdir()  # the probe's open() for writing now fails (EISDIR), as root too
    await trio.sleep(1.01)
    status, body, headers = await get_json(client, "/ready")
    assert status == 503 and body["ready"] is False
    assert any("not writable" in r for r in body["reasons"]), body
    assert headers["Retry-After"] == "1"
    probe_path.rmdir()
    await trio.sleep(1.01)
    assert (await client.get("/ready")).status_code == 200


async def test_ready_is_503_once_the_node_is_shutting_down(app_client: tuple[Any, Client]) -> None:
    app, client = app_client
    begin_shutdown(app)
    status, body, _ = await get_json(client, "/ready")
    assert status == 503 and body["reasons"] == ["shutting down"]
    assert (await client.get("/health")).status_code == 200  # alive, just leaving


async def test_health_is_503_when_the_storage_does_not_answer(
    app_client: tuple[Any, Client], runtime: NodeRuntime
) -> None:
    _app, client = app_client
    runtime.storage.close()
    status, body, _ = await get_json(client, "/health")
    assert status == 503 and body["status"] == "failing"
    assert "storage does not answer" in body["reasons"][0]


async def test_backup_route_streams_a_verified_copy_with_its_revision(
    app_client: tuple[Any, Client], runtime: NodeRuntime, tmp_path: Path
) -> None:
    _app, client = app_client
    for i in range(50):
        assert (await client.put(f"/api/v1/kv/key{i}", json={"i": i})).status_code == 200
    r = await client.get("/api/v1/backup")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/x-ndjson"
    revision = int(r.headers["X-Beaver-Vault-Revision"])
    assert revision == runtime.applied_index() and r.headers["X-Beaver-Vault-Consistency"] == "linearizable"
    assert r.headers["X-Beaver-Vault-Backup-Rows"] == "50"
    path = tmp_path / "copy.backup"
    path.write_bytes(await r.get_data(as_text=False))
    backup = verify_backup(path)
    assert backup.revision == revision and backup.tables["kv"] == 50
    stale = await client.get("/api/v1/backup?consistency=stale")
    assert stale.status_code == 200 and stale.headers["X-Beaver-Vault-Consistency"] == "stale"
    await stale.get_data()
    bad = await client.get("/api/v1/backup?consistency=eventual")
    assert bad.status_code == 400 and "consistency" in json.loads(await bad.get_data(as_text=True))["error"]
    head = await client.head("/api/v1/backup")
    assert head.status_code == 200 and head.headers["X-Beaver-Vault-Revision"] == str(revision)


async def test_backup_route_without_a_storage_file_is_501() -> None:
    app = create_app(FakeRuntime("node1"), ApiOptions())
    async with app.test_app() as test_app:
        r = await test_app.test_client().get("/api/v1/backup")
    assert r.status_code == 501 and "no storage file" in json.loads(await r.get_data(as_text=True))["error"]


class BehindRuntime(FakeRuntime):
    """A follower whose leader announced more than it has applied."""

    def __init__(self, announced: int) -> None:
        super().__init__("node2")
        self.follow("node1", "http://127.0.0.1:8000")
        self.readiness = ReadinessTracker()
        self.readiness.saw(append(term=1, commit=announced))
        self.readiness.processed("follower", 0, 1)


@pytest.mark.parametrize(("announced", "ready"), [(0, True), (1000, False)])
async def test_ready_says_when_the_node_is_behind_the_leader(announced: int, ready: bool) -> None:
    rt = BehindRuntime(announced)
    applied = rt.applied_index()
    if announced == 0:  # announce exactly what it applied
        rt.readiness = ReadinessTracker()
        rt.readiness.saw(append(term=1, commit=applied))
        rt.readiness.processed("follower", 0, 1)
    app = create_app(rt, ApiOptions())
    async with app.test_app() as test_app:
        status, body, _ = await get_json(test_app.test_client(), "/ready")
    assert (status == 200) is ready
    if not ready:
        assert body["reasons"] == [f"applied index {applied} is behind the leader's commit index 1000"]
        assert body["leader_id"] == "node1"


async def test_ready_without_a_leader() -> None:
    rt = FakeRuntime("node2")
    rt.follow(None, None)
    app = create_app(rt, ApiOptions())
    async with app.test_app() as test_app:
        status, body, _ = await get_json(test_app.test_client(), "/ready")
    assert status == 503 and "no known leader" in body["reasons"]


# --- real processes -----------------------------------------------------------------------------


def _ready(url: str) -> tuple[int, dict[str, Any]]:
    r = httpx.get(url + "/ready", timeout=2.0)
    return r.status_code, r.json()


@pytest.mark.e2e
def test_ready_follows_the_quorum_on_real_processes(cluster: Cluster) -> None:
    cluster.start_cluster(3)
    nodes = [cluster[f"node{i}"] for i in (1, 2, 3)]
    for n in nodes:
        assert httpx.get(n.url + "/health", timeout=2.0).json()["status"] == "ok"
        wait_for(f"{n.node_id} ready", lambda n=n: _ready(n.url)[0] == 200, 20.0)
    # Freeze two nodes: the third can neither keep nor elect a leader, and says so.
    leader = cluster.wait_leader()
    alone = next(n for n in nodes if n is not leader)
    frozen = [n for n in nodes if n is not alone]
    for n in frozen:
        n.kill(signal.SIGSTOP)
    try:
        status, body = wait_for(
            f"{alone.node_id} not ready without a quorum",
            lambda: (lambda sb: sb if sb[0] == 503 else None)(_ready(alone.url)),
            20.0,
        )
        assert "no known leader" in body["reasons"], body
        assert httpx.get(alone.url + "/health", timeout=2.0).status_code == 200  # alive all the same
    finally:
        for n in frozen:
            n.kill(signal.SIGCONT)
    for n in nodes:
        wait_for(f"{n.node_id} ready again", lambda n=n: _ready(n.url)[0] == 200, 30.0)


async def test_a_backup_body_never_started_still_closes_its_read_transaction(runtime: NodeRuntime) -> None:
    from beaver_vault.api.backup_routes import _BackupBody
    from beaver_vault.storage.backup import BackupReader

    released: list[bool] = []
    reader = BackupReader(runtime.storage.path)  # type: ignore[attr-defined]
    await trio.to_thread.run_sync(reader.open)
    body = _BackupBody(reader, lambda: released.append(True))
    await body.aclose()  # what Quart does when a response ends before its body is iterated
    assert released == [True] and reader._db is None
    await body.aclose()  # idempotent
    assert released == [True]
