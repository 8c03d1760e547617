"""Every in-memory structure has a bound (issue 9, item 2): the watch history by bytes, the
idempotency table in all, the proposals waiting by bytes, and a prefix delete of many keys
that yields one event instead of one per key.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from beaver_vault.errors import Overloaded
from beaver_vault.kv import commands
from beaver_vault.kv import state as kv_state
from beaver_vault.kv.memory import MemoryKV
from beaver_vault.kv.records import RequestRecord
from beaver_vault.kv.state import KeyRecord, RequestPolicy
from beaver_vault.node.runtime import NodeRuntime, RuntimeOptions
from beaver_vault.node.watch import WatchCompacted, WatchHub
from beaver_vault.raft.messages import Entry, EntryKind, HardState
from beaver_vault.storage.memory import MemoryStorage
from beaver_vault.storage.sqlite import SQLiteStorage


def test_watch_history_is_bounded_by_bytes_as_well_as_count() -> None:
    hub = WatchHub(0, history_max=10_000, history_bytes_max=1_000_000)
    big = "x" * 100_000
    for rev in range(1, 101):
        hub.publish(rev, [{"type": "put", "key": f"k{rev}", "value": big, "revision": rev}])
    assert hub.history_bytes <= 1_000_000
    assert len(hub.history) < 11  # ~100 kB each: ten fit, not a hundred
    with pytest.raises(WatchCompacted):
        hub.subscribe("", 1)
    w = hub.subscribe("", hub.first_retained)  # what is kept is replayed
    assert [e["revision"] for e in w.take()] == list(range(hub.first_retained, 101))


def test_a_prefix_delete_event_reaches_watchers_of_overlapping_prefixes() -> None:
    hub = WatchHub(0)
    narrow, wide, other = hub.subscribe("a/b/", None), hub.subscribe("", None), hub.subscribe("z/", None)
    hub.publish(1, [{"type": "delete_prefix", "key": "a/", "value": None, "revision": 1, "deleted": 5000}])
    assert [e["type"] for e in narrow.take()] == ["delete_prefix"]
    assert [e["type"] for e in wide.take()] == ["delete_prefix"]
    assert other.take() == []


def _remember(store: MemoryKV, n: int) -> None:
    for i in range(n):
        store.put_request(f"c{i % 7}", f"r{i}", RequestRecord(i + 1, 1000 + i, "{}"))


def test_the_idempotency_table_has_a_global_cap_oldest_first() -> None:
    policy = RequestPolicy(per_client=10_000, total_max=50, trim_every=1)
    store = MemoryKV()
    for i in range(1, 201):
        cmd = commands.put(f"k{i}", i, request={"client": f"client{i % 13}", "id": f"id{i}", "now_ms": 1_000 + i})
        kv_state.apply(store, i, cmd, policy=policy)
    kept = store.requests()
    assert len(kept) == 50
    assert min(r.index for _, _, r in kept) == 151  # the oldest went first
    # A forgotten request id is applied again (documented): no "duplicate".
    again = kv_state.apply(
        store, 201, commands.put("k1", 1, request={"client": "client1", "id": "id1", "now_ms": 1_300}), policy=policy
    )
    assert "duplicate" not in again and again["revision"] == 201
    # A remembered one is still a duplicate.
    dup = kv_state.apply(
        store,
        202,
        commands.put("k200", 200, request={"client": "client5", "id": "id200", "now_ms": 1_301}),
        policy=policy,
    )
    assert dup.get("duplicate") is True


def test_the_global_cap_in_sqlite_matches_memory(tmp_path: Path) -> None:
    s = SQLiteStorage(tmp_path / "db.sqlite")
    s.reset("c")
    policy = RequestPolicy(per_client=10_000, total_max=50, trim_every=1)
    entries = [
        Entry(
            1,
            i,
            EntryKind.NORMAL,
            commands.put(f"k{i}", i, request={"client": f"c{i % 13}", "id": f"id{i}", "now_ms": 1_000 + i}),
        )
        for i in range(1, 201)
    ]
    s.save(HardState(1, None, 200), entries)
    s.apply(entries, lambda store, e: kv_state.apply(store, e.index, e.data, policy=policy))
    assert s._db.execute("SELECT count(*), min(idx) FROM requests").fetchone() == (50, 151)
    s.close()


def test_a_prefix_delete_of_200k_keys_yields_one_event_and_bounded_memory(tmp_path: Path) -> None:
    s = SQLiteStorage(tmp_path / "db.sqlite")
    s.reset("c")
    n = 200_000
    fill = Entry(1, 1, EntryKind.NORMAL, b"")
    drop = Entry(1, 2, EntryKind.NORMAL, commands.delete_prefix("big/"))
    s.save(HardState(1, None, 2), [fill, drop])

    def load(store: kv_state.KVStore, e: Entry) -> None:
        for i in range(n):
            store.put(f"big/{i:07d}", KeyRecord('"v"', 1, 1, 1))
        store.put("keep", KeyRecord("1", 1, 1, 1))

    s.apply([fill], load)
    tracemalloc.start()
    try:
        [result] = s.apply([drop], lambda store, e: kv_state.apply(store, e.index, e.data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result["deleted"] == n
    assert result["events"] == [{"type": "delete_prefix", "key": "big/", "value": None, "revision": 2, "deleted": n}]
    assert peak < 16 * 1024 * 1024, peak  # one event per key would be ~60 MB here
    assert s.scan("big/", None, 10) == [] and s.get("keep") is not None
    s.close()


def test_a_small_prefix_delete_keeps_one_event_per_key() -> None:
    store = MemoryKV()
    for i in range(3):
        store.put(f"p/{i}", KeyRecord("1", 1, 1, 1))
    result = kv_state.apply(store, 5, commands.delete_prefix("p/"))
    assert [e["key"] for e in result["events"]] == ["p/0", "p/1", "p/2"]


def test_proposals_waiting_are_bounded_by_bytes() -> None:
    rt = NodeRuntime(
        node_id="n1",
        storage=MemoryStorage(),
        options=RuntimeOptions("127.0.0.1:1", "http://127.0.0.1:2", seed=3, max_pending_bytes=100_000),
    )
    d = rt.driver
    d.start(True)
    for _ in range(30):
        d.tick()
        d.process()
        if d.core.role == "leader":
            break
    assert d.core.role == "leader"
    d.propose(commands.put("a", "x" * 60_000))  # one alone may exceed nothing
    with pytest.raises(Overloaded) as caught:
        d.propose(commands.put("b", "x" * 60_000))  # not yet applied: 120 kB would wait
    assert "bytes" in str(caught.value)
    d.process()  # the first is applied: room again
    d.propose(commands.put("b", "x" * 60_000))


def test_event_size_counts_a_string_value_by_its_utf8_length_and_others_by_their_json() -> None:
    import json

    from beaver_vault.node.watch import event_size

    def json_len(v: object) -> int:
        return len(json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode())

    for value in ["v" * 98, "", "héllo wörld ✓" * 10]:
        assert event_size({"key": "k/é", "value": value}) == 64 + len("k/é".encode()) + json_len(value)
    for value in [{"a": [1, 2, {"b": "c"}]}, ["x" * 50, 3]]:
        assert event_size({"key": "k", "value": value}) == 65 + json_len(value)
    small = [event_size({"key": "k", "value": v}) for v in (None, True, 12345678901234, 1.5)]
    assert len(set(small)) == 1 and small[0] < 100
