"""The storage contract, run against every implementation (memory and SQLite): the log and
the hard state, apply, scan, expiry and remembered requests. SQLite's own tests (reopening after
unclean exits, migration, threads) are in test_storage_sqlite.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from storage_helpers import E, apply_all, fill, kv_apply

from beaver_vault.errors import InvariantViolation
from beaver_vault.kv import commands
from beaver_vault.kv.state import KeyRecord, KVStore, apply
from beaver_vault.raft.messages import Entry, EntryKind, HardState
from beaver_vault.storage.memory import MemoryStorage
from beaver_vault.storage.sqlite import SQLiteStorage, prefix_end


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """``make()`` opens the storage; for SQLite a second ``make()`` reopens the same file."""
    opened: list[Any] = []
    mem = MemoryStorage()

    def factory() -> Any:
        s: Any = mem if request.param == "memory" else SQLiteStorage(tmp_path / "node.db")
        opened.append(s)
        return s

    yield factory
    for s in opened:
        s.close()


# --------------------------------------------------------------------------- log and hard state


def test_fresh_storage_is_empty(make: Callable[[], Any]) -> None:
    st = make().load()
    assert (st.cluster_id, st.hard_state, st.entries, st.applied_index) == (None, HardState(), (), 0)


def test_save_load_round_trip(make: Callable[[], Any]) -> None:
    s = make()
    entries = [E(1, 1, kind=EntryKind.NOOP), E(2, 1, b"\x00\xffbinary"), E(3, 2, b"{}", EntryKind.CONFIG)]
    s.save(HardState(2, "node1", 1), entries)
    st = s.load()
    assert st.entries == tuple(entries)
    assert st.hard_state == HardState(2, "node1", 1)
    assert all(type(e.kind) is EntryKind for e in st.entries)


def test_save_appends_and_truncates_conflicting_suffix(make: Callable[[], Any]) -> None:
    s = make()
    s.save(HardState(1), [E(i, 1, b"old%d" % i) for i in range(1, 6)])
    s.save(None, [E(6, 1)])
    s.save(HardState(2), [E(3, 2, b"new3"), E(4, 2, b"new4")])  # replaces 3..6
    assert s.load().entries == (E(1, 1, b"old1"), E(2, 1, b"old2"), E(3, 2, b"new3"), E(4, 2, b"new4"))
    s.save(None, [E(1, 3, b"all")])  # replaces everything
    assert s.load().entries == (E(1, 3, b"all"),)
    assert s.load().hard_state == HardState(2)


def test_hard_state_alone_keeps_log(make: Callable[[], Any]) -> None:
    s = make()
    s.save(HardState(1, "a", 0), [E(1, 1), E(2, 1)])
    s.save(HardState(5, None, 2), [])
    st = s.load()
    assert st.hard_state == HardState(5, None, 2)
    assert len(st.entries) == 2
    s.save(None, [])  # nothing at all: a no-op
    assert s.load() == st


def test_save_rejects_gaps_without_writing(make: Callable[[], Any]) -> None:
    s = make()
    s.save(HardState(1), [E(1, 1)])
    with pytest.raises(InvariantViolation):
        s.save(HardState(9), [E(3, 1)])  # gap after 1
    with pytest.raises(InvariantViolation):
        s.save(HardState(9), [E(2, 1), E(4, 1)])  # not consecutive
    with pytest.raises(InvariantViolation):
        s.save(None, [E(0, 1)])
    st = s.load()
    assert st.entries == (E(1, 1),) and st.hard_state == HardState(1)


def test_reset_wipes_and_sets_cluster_id(make: Callable[[], Any]) -> None:
    s = make()
    s.save(HardState(3, "x", 2), [E(1, 1, commands.put("a", 1)), E(2, 3, commands.put("b", 2))])
    s.apply(s.load().entries, kv_apply)
    s.reset("cluster-7")
    st = s.load()
    assert (st.cluster_id, st.hard_state, st.entries, st.applied_index) == ("cluster-7", HardState(), (), 0)
    assert s.get("a") is None and s.scan("", None, 10) == []
    s.save(HardState(1), [E(1, 1)])  # usable afterwards, from index 1
    assert s.load().entries == (E(1, 1),)


# --------------------------------------------------------------------------- apply


def test_apply_runs_in_order_and_advances_applied_index(make: Callable[[], Any]) -> None:
    s = make()
    s.save(
        HardState(1), [E(1, 1, commands.put("k", "a")), E(2, 1, kind=EntryKind.NOOP), E(3, 1, commands.put("k", "b"))]
    )
    seen: list[int] = []

    def fn(store: KVStore, e: Entry) -> int:
        seen.append(e.index)
        if e.kind == EntryKind.NORMAL:
            apply(store, e.index, e.data)
        return e.index * 10

    assert s.apply([E(1, 1, commands.put("k", "a"))], fn) == [10]
    assert s.apply(list(s.load().entries[1:]), fn) == [20, 30]
    assert seen == [1, 2, 3]
    assert s.load().applied_index == 3
    assert s.get("k") == KeyRecord('"b"', 1, 3, 2)
    assert s.apply([], fn) == [] and s.load().applied_index == 3


def test_apply_must_continue_applied_index(make: Callable[[], Any]) -> None:
    s = make()
    s.save(HardState(1), [E(i, 1, commands.put(f"k{i}", i)) for i in range(1, 5)])
    s.apply([E(1, 1, commands.put("k1", 1))], kv_apply)
    entries = s.load().entries
    for bad in ([entries[0]], [entries[2]], [entries[1], entries[3]]):  # repeat, gap, hole
        with pytest.raises(InvariantViolation):
            s.apply(bad, kv_apply)
    with pytest.raises(InvariantViolation):  # beyond the stored log
        s.apply([entries[1], entries[2], entries[3], E(5, 1, commands.put("k5", 5))], kv_apply)
    assert s.load().applied_index == 1
    assert [k for k, _ in s.scan("", None, 10)] == ["k1"]


def test_apply_is_atomic_when_fn_raises(make: Callable[[], Any]) -> None:
    s = make()
    s.save(HardState(1), [E(i, 1, commands.put(f"k{i}", i)) for i in range(1, 6)])
    s.apply(s.load().entries[:2], kv_apply)  # k1, k2 exist
    before = (s.load().applied_index, s.scan("", None, 100))

    def boom(store: KVStore, e: Entry) -> dict[str, Any]:
        store.delete("k1")
        store.put("k2", KeyRecord("99", 1, e.index, 9))
        r = apply(store, e.index, e.data)
        if e.index == 4:
            raise OSError("disk on fire")
        return r

    with pytest.raises(OSError, match="disk on fire"):
        s.apply(s.load().entries[2:], boom)
    assert (s.load().applied_index, s.scan("", None, 100)) == before
    # and the same batch applies cleanly afterwards
    assert [r["op"] for r in s.apply(s.load().entries[2:], kv_apply)] == ["put"] * 3
    assert s.load().applied_index == 5


def test_apply_sees_its_own_writes_and_get_sees_committed(make: Callable[[], Any]) -> None:
    s = make()
    data = [commands.put("a", [1]), commands.append("a", 2), commands.cas("a", [1, 2], "done"), commands.delete("zz")]
    s.save(HardState(1), [E(i, 1, d) for i, d in enumerate(data, 1)])
    results = s.apply(s.load().entries, kv_apply)
    assert results[1] == {
        "op": "append",
        "key": "a",
        "revision": 2,
        "value": [1, 2],
        "events": [{"type": "put", "key": "a", "value": [1, 2], "revision": 2}],
    }
    assert results[2]["succeeded"] is True
    assert s.get("a") == KeyRecord('"done"', 1, 3, 3)


def test_put_value_is_written_of_the_current_record(make: Callable[[], Any]) -> None:
    """``put_value`` (one upsert on SQLite) leaves what ``put(written(get(key), ...))`` would:
    a new key at version 1 with its create_revision, an existing one keeping its
    create_revision, one more version and the new expiry (or none); after a delete, a new key
    again. Compared with the reference, step by step, inside one apply batch and across them."""
    from beaver_vault.kv.records import written

    s = make()
    steps = [("k", '"a"', 100), ("k", '"b"', None), ("j", "1", 7), ("k", "[1]", 5), ("del", "k", None), ("k", "2", None)]
    s.save(HardState(1), [E(i, 1, commands.put("x", i)) for i in range(1, len(steps) + 1)])
    expected: dict[str, KeyRecord] = {}

    def step(store: KVStore, e: Entry) -> Any:
        key, value, expires = steps[e.index - 1]
        if key == "del":
            store.delete(value)
            expected.pop(value, None)
            return None
        cur = store.get(key)
        assert cur == expected.get(key)
        created = store.put_value(key, value, e.index, expires)
        expected[key] = written(cur, value, e.index, expires)
        assert created == (cur is None)
        assert store.get(key) == expected[key]
        return created

    entries = s.load().entries
    assert s.apply(entries[:3], step) == [True, False, True]
    assert s.apply(entries[3:], step) == [False, None, True]
    assert dict(s.scan("", None, 10)) == expected
    assert expected["k"] == KeyRecord("2", 6, 6, 1, None) and expected["j"] == KeyRecord("1", 3, 3, 1, 7)


# --------------------------------------------------------------------------- scan


SCAN_KEYS = ["b", "a", "users/2", "users/10", "users/1", "users", "usert", "users0", "é", "z", "\U0001f600", "\uffff"]


def test_scan_order_prefix_after_limit(make: Callable[[], Any]) -> None:
    s = make()
    fill(s, SCAN_KEYS)
    everything = [k for k, _ in s.scan("", None, 100)]
    assert everything == sorted(SCAN_KEYS)  # code point order (= UTF-8 byte order)
    assert [k for k, _ in s.scan("users/", None, 100)] == ["users/1", "users/10", "users/2"]
    assert [k for k, _ in s.scan("users", None, 100)] == ["users", "users/1", "users/10", "users/2", "users0"]
    assert [k for k, _ in s.scan("users/", "users/1", 100)] == ["users/10", "users/2"]
    assert [k for k, _ in s.scan("users/", "a", 100)] == ["users/1", "users/10", "users/2"]  # after < prefix
    assert [k for k, _ in s.scan("users/", "zzz", 100)] == []
    assert [k for k, _ in s.scan("", None, 2)] == ["a", "b"]
    assert s.scan("", None, 0) == []
    assert [k for k, _ in s.scan("\uffff", None, 5)] == ["\uffff"]
    assert s.scan("nope", None, 5) == []
    # pagination: pages of 2 cover everything once, in order
    pages, after = [], None
    while page := s.scan("", after, 2):
        pages += [k for k, _ in page]
        after = page[-1][0]
    assert pages == everything
    with pytest.raises(ValueError):
        s.scan("", None, -1)
    rec = dict(s.scan("users/", None, 100))["users/2"]
    assert rec == KeyRecord(str(SCAN_KEYS.index("users/2") + 1), rec.create_revision, rec.mod_revision, 1)


def test_scan_inside_apply_matches(make: Callable[[], Any]) -> None:
    s = make()
    fill(s, ["p/1", "p/2", "q"])
    s.save(None, [E(4, 1, kind=EntryKind.NOOP)])
    got = s.apply(s.load().entries[3:], lambda store, e: [k for k, _ in store.scan("p/", None, 10)])
    assert got == [["p/1", "p/2"]]


def test_prefix_end() -> None:
    assert prefix_end("") is None
    assert prefix_end("ab") == "ac"
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\ud7ff") == "\ue000"


# --------------------------------------------------------------------------- memory extras


def test_memory_clone_is_independent() -> None:
    s = MemoryStorage("c1")
    fill(s, ["a", "b"])
    c = s.clone()
    s.save(HardState(9), [E(3, 2)])
    s.apply([E(3, 2)], lambda store, e: store.delete("a"))
    s.reset("other")
    assert c.load().cluster_id == "c1" and c.load().applied_index == 2 and len(c.load().entries) == 2
    assert [k for k, _ in c.items()] == ["a", "b"]


# --------------------------------------------------------------------------- expiry, requests


def test_expiry_is_stored_and_expired_keys_are_ordered(make: Callable[[], Any]) -> None:
    s = make()
    apply_all(
        s,
        [
            commands.put("late", 1, expires_at_ms=500),
            commands.put("b", 2, expires_at_ms=100),
            commands.put("a", 3, expires_at_ms=100),
            commands.put("never", 4),
            commands.put("gone", 5, expires_at_ms=50),
            commands.delete("gone"),
            commands.put("reput", 6, expires_at_ms=10),
            commands.put("reput", 7),  # a put without expiry clears it
        ],
    )
    assert s.get("late") == KeyRecord("1", 1, 1, 1, 500)
    assert s.get("never") == KeyRecord("4", 4, 4, 1, None)
    assert s.get("reput") == KeyRecord("7", 7, 8, 2, None)
    assert s.expired_keys(99, 10) == []
    assert s.expired_keys(100, 10) == ["a", "b"]  # soonest first, ties by key
    assert s.expired_keys(10**12, 10) == ["a", "b", "late"]
    assert s.expired_keys(10**12, 2) == ["a", "b"] and s.expired_keys(10**12, 0) == []
    assert [k for k, r in s.scan("", None, 10) if r.expires_at_ms] == ["a", "b", "late"]
    r = apply_all(s, [commands.put("b", 9, expires_at_ms=1000), commands.expire(["a", "b", "late", "never"], 600)])
    assert r[1]["deleted"] == 2 and [e["key"] for e in r[1]["events"]] == ["a", "late"]  # b was re-put later
    assert s.expired_keys(10**12, 10) == ["b"]
    before = s.items()
    again = make()  # SQLite: reopen the file; memory: the same object
    assert again.items() == before and again.expired_keys(1000, 10) == ["b"]


def test_requests_are_remembered_and_survive_reopen(make: Callable[[], Any]) -> None:
    s = make()
    req = {"client": "c", "id": "1", "now_ms": 1000}
    first = apply_all(s, [commands.put("k", "a", request=req)])[0]
    assert first["events"] and "duplicate" not in first
    retry = apply_all(s, [commands.put("k", "OTHER", request={**req, "now_ms": 2000})])[0]
    assert retry == {k: v for k, v in first.items() if k != "events"} | {"duplicate": True}
    assert s.get("k") == KeyRecord('"a"', 1, 1, 1)
    again = make()
    assert apply_all(again, [commands.delete("k", request=req)])[0]["duplicate"] is True
    if isinstance(again, MemoryStorage):
        assert again.clone().kv.requests() == again.kv.requests() != []
    # after the expiry (leader time), the same id is a new request
    later = {**req, "now_ms": 1000 + 10 * 60 * 1000 + 1}
    assert "duplicate" not in apply_all(again, [commands.delete("k", request=later)])[0]
    assert again.get("k") is None


def test_requests_roll_back_with_a_failed_batch(make: Callable[[], Any]) -> None:
    s = make()
    req = {"client": "c", "id": "1", "now_ms": 5}
    apply_all(s, [commands.put("old", 1, request={**req, "id": "0"})])
    data = [commands.put("k", 1, request=req), commands.put("x", 2, request={**req, "now_ms": 10**9})]

    def boom(store: KVStore, e: Entry) -> Any:
        r = apply(store, e.index, e.data)
        if e.data == data[-1]:  # the second one also purged "0" by age
            raise OSError("disk on fire")
        return r

    entries = [E(i, 1, d) for i, d in enumerate(data, 2)]
    s.save(HardState(1), entries)
    with pytest.raises(OSError):
        s.apply(entries, boom)
    results = s.apply(entries[:1], kv_apply)  # same request again: not a duplicate
    assert "duplicate" not in results[0] and results[0]["created"] is True
    again = apply_all(s, [commands.put("old", 1, request={**req, "id": "0"})])[0]
    assert again["duplicate"] is True  # the purge was rolled back too


def test_entries_reads_a_range_bounded_by_bytes(make: Callable[[], Any]) -> None:
    """The log cache's fallback (raft/log.py): entries read back from storage for a follower."""
    s = make()
    entries = [E(i, 1, b"x" * 100) for i in range(1, 11)]
    s.save(HardState(1), entries)
    assert s.entries(3, 6, 1 << 20) == entries[2:5]
    assert s.entries(9, 100, 1 << 20) == entries[8:]
    assert s.entries(3, 10, 250) == entries[2:4]  # 124 bytes each: two fit in 250
    assert s.entries(3, 10, 0) == entries[2:3]  # at least one
    assert s.entries(11, 20, 1 << 20) == []
    s.apply(entries[:6], lambda store, e: None)
    s.compact(5, 1, b"")
    assert s.entries(1, 8, 1 << 20) == entries[5:7]  # the compacted prefix is gone
