"""Snapshots and compaction: the log stays bounded, a node behind the compacted log catches up
by a streamed snapshot, restarts work from snapshot + log, and the SQLite snapshot round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from local_cluster import local_cluster

from beaver_vault.kv import commands
from beaver_vault.kv.state import apply as kv_apply
from beaver_vault.raft.messages import Entry, EntryKind, HardState, Member, Membership
from beaver_vault.storage.memory import MemoryStorage
from beaver_vault.storage.sqlite import SQLiteStorage


async def test_log_is_compacted_and_a_new_node_catches_up_by_snapshot(autojump_clock: trio.testing.MockClock) -> None:
    async with local_cluster(3, snapshot_threshold=40) as c:
        ld = await c.wait_leader()
        for k in range(300):
            await ld.write(commands.put(f"k{k:03}", {"n": k}), timeout_s=5)
        st = ld.status()
        assert st.snapshot_index > 0 and st.last_log_index - st.log_first_index + 1 <= 41
        # a new node joins: the leader's log no longer starts at 1, so it needs a snapshot
        await c.start("n4", bootstrap=False)
        await ld.join("n4", "n4:7000", timeout_s=30)
        n4 = c.hub.nodes["n4"]
        assert n4.driver.counters.get("snapshots_installed", 0) >= 1
        assert ld.driver.counters.get("snapshots_sent", 0) >= 1
        with trio.fail_after(30):
            while n4.get_local("k299") is None:
                await trio.sleep(0.05)
        assert c.storages["n4"].items() == c.storages[ld.node_id].items()
        # and it keeps following the log afterwards
        await ld.write(commands.put("after", 1), timeout_s=5)
        with trio.fail_after(30):
            while n4.get_local("after") is None:
                await trio.sleep(0.05)
        assert any(m.id == "n4" and m.voter for m in ld.status().members)


async def test_a_follower_behind_the_compacted_log_and_a_restart_from_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with local_cluster(3, snapshot_threshold=30) as c:
        ld = await c.wait_leader()
        lagging = next(n for n in ("n1", "n2", "n3") if n != ld.node_id)
        c.stop(lagging)
        for k in range(200):
            await ld.write(commands.put(f"a{k}", k), timeout_s=5)
        again = await c.start(lagging, bootstrap=True)
        with trio.fail_after(30):
            while again.get_local("a199") is None:
                await trio.sleep(0.05)
        assert again.driver.counters.get("snapshots_installed", 0) >= 1
        assert c.storages[lagging].items() == c.storages[ld.node_id].items()
        # restart the leader from its own snapshot + log
        c.stop(ld.node_id)
        back = await c.start(ld.node_id, bootstrap=True)
        assert back.status().snapshot_index > 0
        assert back.get_local("a199") is not None


def _fill(storage: SQLiteStorage | MemoryStorage, n: int) -> None:
    members = Membership((Member("a", "a:1"),))
    entries = [Entry(1, 1, EntryKind.CONFIG, members.encode())]
    entries += [Entry(1, i, EntryKind.NORMAL, commands.put(f"key{i}", {"i": i, "s": "é" * (i % 5)})) for i in range(2, n + 1)]
    storage.save(HardState(1, "a", n), entries)
    storage.apply(entries, lambda store, e: kv_apply(store, e.index, e.data) if e.kind == EntryKind.NORMAL else None)


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_snapshot_reader_and_install_round_trip_and_compaction(tmp_path: Path, kind: str) -> None:
    def make(name: str) -> SQLiteStorage | MemoryStorage:
        return SQLiteStorage(tmp_path / f"{name}.db") if kind == "sqlite" else MemoryStorage()

    src, dst = make("src"), make("dst")
    _fill(src, 500)
    members = Membership((Member("a", "a:1"),)).encode()
    src.compact(400, 1, members)
    st = src.load()
    assert st.snapshot_index == 400 and st.entries[0].index == 401 and st.entries[-1].index == 500
    index, chunks = src.snapshot_reader(2048)
    assert index == 500
    parts = list(chunks)
    assert len(parts) > 3  # really chunked
    # writes may continue on the source while a snapshot is read (consistency: reader saw 500)
    dst.install_begin(index)
    for seq, data in enumerate(parts):
        dst.install_chunk(seq, data)
    dst.install_finish(index, 1, members)
    assert dst.items() == src.items()
    loaded = dst.load()
    assert loaded.applied_index == 500 and loaded.entries == () and loaded.snapshot_index == 500
    # the log continues after the snapshot
    dst.save(None, [Entry(2, 501, EntryKind.NOOP, b"")])
    assert dst.load().entries[0].index == 501


def test_sqlite_half_installed_snapshot_leaves_the_old_state(tmp_path: Path) -> None:
    src = SQLiteStorage(tmp_path / "src.db")
    _fill(src, 50)
    dst = SQLiteStorage(tmp_path / "dst.db")
    _fill(dst, 5)
    before = dst.items()
    index, chunks = src.snapshot_reader(256)
    dst.install_begin(index)
    dst.install_chunk(0, next(chunks))
    dst.close()  # "crash" before install_finish
    again = SQLiteStorage(tmp_path / "dst.db")
    assert again.items() == before and again.load().applied_index == 5
    # a new transfer starts clean
    index, chunks = src.snapshot_reader(256)
    again.install_begin(index)
    for seq, data in enumerate(chunks):
        again.install_chunk(seq, data)
    again.install_finish(index, 1, b"[]")
    assert again.items() == src.items()
