"""A full disk (issue 9, item 4): the storage turns it into ``StorageFailure`` after rolling
back, the node suspends writes and says why, keeps serving local reads, and recovers by itself.

The storage and runtime tests make the database "full" with ``PRAGMA max_page_count`` (SQLite
then answers SQLITE_FULL exactly as for a full device). The end-to-end test mounts a real tmpfs
under one node's data directory in a real 3-node cluster (root only) and fills it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from e2e_cluster import FAST_FLAGS, Cluster, Node, cluster_fixture, wait_for

from beaver_vault.errors import StorageFailure, WritesSuspended
from beaver_vault.kv import commands
from beaver_vault.node.runtime import NodeRuntime, RuntimeOptions
from beaver_vault.raft.messages import Entry, EntryKind, HardState
from beaver_vault.storage.sqlite import SQLiteStorage

API = "/api/v1"


def _limit_pages(storage: SQLiteStorage, extra_pages: int) -> None:
    pages = storage._db.execute("PRAGMA page_count").fetchone()[0]
    storage._db.execute(f"PRAGMA max_page_count = {int(pages) + extra_pages}")


def _unlimit(storage: SQLiteStorage) -> None:
    storage._db.execute("PRAGMA max_page_count = 1073741823")


def test_a_full_disk_is_a_typed_failure_and_nothing_is_half_written(tmp_path: Path) -> None:
    s = SQLiteStorage(tmp_path / "db.sqlite")
    s.reset("c1")
    s.save(HardState(1, None, 0), [Entry(1, 1, EntryKind.NORMAL, b"x" * 100)])
    _limit_pages(s, 4)
    big = [Entry(1, i, EntryKind.NORMAL, b"y" * 100_000) for i in range(2, 6)]
    with pytest.raises(StorageFailure) as caught:
        s.save(HardState(2, "n1", 0), big)
    assert caught.value.reason == "disk_full"
    assert caught.value.outcome == "not_applied"  # rolled back: nothing appended
    st = s.load()
    assert [e.index for e in st.entries] == [1] and st.hard_state.term == 1  # nothing half-written
    _unlimit(s)
    s.save(HardState(2, "n1", 0), big)  # space is back: the same write goes through
    assert [e.index for e in s.load().entries] == [1, 2, 3, 4, 5]
    s.close()


def test_compaction_keeps_rows_until_the_collector_deletes_them_in_batches(tmp_path: Path) -> None:
    s = SQLiteStorage(tmp_path / "db.sqlite")
    s.reset("c1")
    s.save(HardState(1, None, 0), [Entry(1, i, EntryKind.NORMAL, b"z" * 1000) for i in range(1, 2001)])
    assert s.log_bytes() == 2000 * 1000
    s.apply(s.load().entries[:1500], lambda store, e: None)
    s.compact(1500, 1, b"")
    assert s.log_bytes() == 500 * 1000  # the compacted entries no longer count
    assert [e.index for e in s.load().entries][:1] == [1501]  # rows still present are not the log
    batches = 0
    while s.collect_log_garbage():
        batches += 1
    assert batches >= 3  # 1500 rows, at most 512 per batch
    assert s._db.execute("SELECT min(idx) FROM log").fetchone()[0] == 1501
    assert s.log_gc_stats().rows_deleted == 1500
    s.close()


async def test_a_runtime_whose_disk_fills_suspends_writes_and_recovers(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    storage = SQLiteStorage(tmp_path / "n1.sqlite")
    rt = NodeRuntime(node_id="n1", storage=storage, options=RuntimeOptions("127.0.0.1:1", "http://127.0.0.1:2", seed=1))
    async with trio.open_nursery() as nursery:
        await nursery.start(rt.run)
        with trio.fail_after(5):
            while rt.status().role != "leader":
                await trio.sleep(0.05)
        await rt.write(commands.put("kept", 1), timeout_s=5)
        _limit_pages(storage, 2)
        outcomes: list[str] = []
        for i in range(50):
            try:
                await rt.write(commands.put(f"big{i}", "v" * 50_000), timeout_s=5)
            except WritesSuspended as e:
                outcomes.append(e.outcome)
                break
        assert outcomes == ["not_applied"]  # one node: nothing was sent anywhere before the save
        assert rt.status().storage_error is not None and "full" in rt.status().storage_error
        with pytest.raises(WritesSuspended):  # refused at the door from now on
            await rt.write(commands.put("refused", 1), timeout_s=5)
        rec = rt.get_local("kept")  # local reads go on
        assert rec is not None and rec.document() == 1
        _unlimit(storage)
        with trio.fail_after(10):
            while rt.status().storage_error is not None:
                await trio.sleep(0.1)
        await rt.write(commands.put("after", 2), timeout_s=5)
        assert rt.get_local("after") is not None
        assert rt.driver.disk.counters["storage_recoveries"] == 1
        nursery.cancel_scope.cancel()
    storage.close()


# --------------------------------------------------------------------------- real cluster, tmpfs


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path, request, extra_args=FAST_FLAGS)


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True, capture_output=True)


def _fill(path: Path) -> Path:
    """Fill the file system holding ``path`` up to the last byte; the filler file."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 512):
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def _put(node: Node, key: str, value: Any, timeout: float = 10.0) -> httpx.Response:
    return httpx.put(f"{node.url}{API}/kv/{key}", json=value, timeout=timeout)


def _stale(node: Node, key: str) -> httpx.Response:
    return httpx.get(f"{node.url}{API}/kv/{key}", params={"consistency": "stale"}, timeout=5.0)


@pytest.mark.e2e
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs for the full disk needs root")
def test_a_node_whose_disk_fills_refuses_writes_says_why_and_recovers(cluster: Cluster, tmp_path: Path) -> None:
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    data1 = cluster.root / "node1"
    try:
        _mount_tmpfs(data1, "12m")
    except subprocess.CalledProcessError as e:
        pytest.skip(f"cannot mount a tmpfs here: {e.stderr!r}")
    try:
        leader = cluster.start_cluster(3)
        node1 = cluster["node1"]
        acked: dict[str, Any] = {}
        for i in range(20):
            r = _put(leader, f"before{i}", {"i": i})
            assert r.status_code == 200, r.text
            acked[f"before{i}"] = {"i": i}
        filler = _fill(data1)
        # Writes through node1 now fail: the first ones with the outcome of their append, then
        # every one at the door. None crashes the node.
        answers = []
        for i in range(60):
            r = _put(node1, f"during{i}", "x" * 20_000)
            if r.status_code == 200:
                acked[f"during{i}"] = "x" * 20_000
                continue
            answers.append(r)
            if r.status_code == 507 and r.json().get("outcome") == "not_applied" and len(answers) > 1:
                break
        assert answers, "the full disk never refused a write"
        for r in answers:
            body = r.json()
            assert r.status_code in (503, 504, 507), r.text
            assert body["outcome"] in ("not_applied", "unknown"), body
        refused = answers[-1].json()
        assert answers[-1].status_code == 507 and refused["storage"] == "disk_full", refused
        st = node1.status()
        assert st is not None and st["storage_error"] and "full" in st["storage_error"], st
        assert node1.alive()
        # Reads node1 can serve: its applied state.
        r = _stale(node1, "before3")
        assert r.status_code == 200 and r.json() == {"i": 3}, r.text
        # The other two go on (a new leader if node1 led) and acknowledge writes.
        others = [cluster["node2"], cluster["node3"]]
        new_leader = cluster.wait_leader(others, timeout_s=30)
        for i in range(10):
            r = _put(new_leader, f"meanwhile{i}", i)
            assert r.status_code == 200, r.text
            acked[f"meanwhile{i}"] = i
        metrics = httpx.get(f"{node1.url}/metrics", timeout=5).text
        assert "beaver_vault_storage_writable" in metrics
        # Space is back: node1 recovers by itself, catches up, accepts writes again.
        filler.unlink()
        wait_for("node1 writable again", lambda: (s := node1.status()) is not None and s["storage_error"] is None, 30)
        # Until a leader's message reaches it, node1 names no leader and answers 503 not_applied
        # (correct, and retryable); on a loaded machine that can take a while after the disk is back.
        wait_for("node1 knows a leader", lambda: (s := node1.status()) is not None and s["leader_id"] is not None, 30)
        r = _put(node1, "after", "ok")  # forwarded to the leader if node1 no longer leads
        assert r.status_code == 200, r.text
        acked["after"] = "ok"
        leader_now = cluster.wait_leader(timeout_s=30)
        st = leader_now.status()
        assert st is not None
        cluster.wait_applied(st["commit_index"], timeout_s=30)
        for node in (node1, *others):
            for key, value in acked.items():
                r = _stale(node, key)
                assert r.status_code == 200 and r.json() == value, (node.node_id, key, r.text)
        assert node1.starts == 1 and node1.alive()  # never restarted, never exited
    finally:
        cluster.close()
        subprocess.run(["umount", "-l", str(data1)], check=False, capture_output=True)
