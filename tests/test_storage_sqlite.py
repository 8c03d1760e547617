"""The SQLite storage beyond the contract (test_storage_contract.py runs that on both
implementations): reopening after unclean exits (``os._exit`` without close, SIGKILL in the
middle of a save loop) keeps everything ``save``/``apply`` returned for, and the log stays
consecutive (SIGKILL does not lose the OS page cache: these check SQLite's transaction
atomicity and our use of it, not power loss); agreement with the memory storage on random
commands; migration of an old file; one connection per thread.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from storage_helpers import E, apply_all, fill, in_another_thread, kv_apply

from beaver_vault.kv import commands
from beaver_vault.kv.memory import MemoryKV
from beaver_vault.kv.state import KeyRecord, apply
from beaver_vault.raft.messages import EntryKind, HardState
from beaver_vault.storage.memory import MemoryStorage
from beaver_vault.storage.sqlite import SQLiteStorage

# --------------------------------------------------------------------------- SQLite: reopening


def test_sqlite_reopen_after_clean_close(tmp_path: Path) -> None:
    s = SQLiteStorage(tmp_path / "n.db")
    s.reset("cid")
    fill(s, ["x", "y"])
    s.save(HardState(4, "n2", 2), [])
    before = (s.load(), s.items())
    s.close()
    s2 = SQLiteStorage(tmp_path / "n.db")
    try:
        assert (s2.load(), s2.items()) == before
        assert s2.status().last_index == 2 and s2.status().applied_index == 2
        s2.save(None, [E(3, 4)])  # caches were rebuilt from disk: continuing works
        s2.apply([E(3, 4)], lambda store, e: None)
    finally:
        s2.close()


def test_sqlite_connection_is_single_threaded(tmp_path: Path) -> None:
    import threading

    s = SQLiteStorage(tmp_path / "n.db")
    errors: list[BaseException] = []

    def other() -> None:
        try:
            s.get("a")
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    s.close()
    assert len(errors) == 1 and "thread" in str(errors[0])


CHILD = textwrap.dedent(
    """
    import os, sys
    from beaver_vault.kv import commands
    from beaver_vault.kv.state import apply
    from beaver_vault.raft.messages import Entry, HardState
    from beaver_vault.storage.sqlite import SQLiteStorage

    path, mode = sys.argv[1], sys.argv[2]
    s = SQLiteStorage(path)
    st = s.load()
    last, applied, term = len(st.entries), st.applied_index, st.hard_state.term
    i = 0
    while True:
        i += 1
        term += 1
        # every 7th save rewrites a suffix (as a new leader would); others append a batch
        start = max(applied + 1, last - 2) if i % 7 == 0 else last + 1
        batch = [Entry(term, n, data=commands.put(f"k{n % 13}", [term, n])) for n in range(start, last + 1 + i % 5)]
        s.save(HardState(term, "me", applied), batch)
        last = batch[-1].index if batch else last
        print(f"saved {term} {last}", flush=True)
        if i % 3 == 0 and applied < last:
            todo = s.load().entries[applied:last]
            s.apply(todo, lambda store, e: apply(store, e.index, e.data))
            applied = last
            print(f"applied {applied}", flush=True)
        if mode == "exit" and i == 20:
            os._exit(0)  # no close, no commit of anything pending, no atexit
    """
)


def _run_child(path: Path, mode: str, kill_after_s: float | None) -> list[str]:
    """Run the child; with ``kill_after_s``, SIGKILL it that long after it first reported an
    apply (so the kill lands mid-work however slowly the child started on a loaded machine)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    early: list[str] = []
    if kill_after_s is not None:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break  # the child ended by itself: communicate() below reports it
            early.append(line.rstrip("\n"))
            if line.startswith("applied"):
                break
        time.sleep(kill_after_s)  # not synchronisation: where the kill lands is meant to vary
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    if kill_after_s is None:
        assert proc.returncode == 0, err
    else:
        assert proc.returncode == -signal.SIGKILL, err
    return early + out.split("\n")[:-1]  # complete lines only: the last one may be torn by the kill


def _check_recovered(path: Path, lines: list[str]) -> None:
    """Everything acknowledged is there; the log is consecutive; applied state = replay of the log."""
    acked_term = acked_last = acked_applied = 0
    for line in lines:
        match line.split():
            case ["saved", term, last]:
                acked_term, acked_last = int(term), int(last)
            case ["applied", applied]:
                acked_applied = int(applied)
            case _:
                raise AssertionError(f"unexpected child output {line!r}")
    s = SQLiteStorage(path)
    try:
        st = s.load()  # load() itself checks the log is consecutive from 1
        assert st.hard_state.term >= acked_term
        assert len(st.entries) >= acked_last
        assert st.applied_index >= acked_applied
        assert st.applied_index <= len(st.entries)
        replay = MemoryKV()
        for e in st.entries[: st.applied_index]:
            apply(replay, e.index, e.data)
        assert s.items() == replay.items(), "applied state differs from replaying the log"
        for k, rec in s.items():
            assert json.loads(rec.value)[1] <= st.applied_index, k
    finally:
        s.close()


def test_sqlite_reopen_after_exit_without_close(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    lines = _run_child(path, "exit", None)
    assert sum(1 for line in lines if line.startswith("saved")) == 20
    _check_recovered(path, lines)


@pytest.mark.parametrize("round_", range(8))
def test_sqlite_reopen_after_sigkill_during_saves(tmp_path: Path, round_: int) -> None:
    path = tmp_path / "n.db"
    lines: list[str] = []
    for attempt in range(3):  # kill, recover, continue from the recovered state, kill again
        lines = _run_child(path, "loop", 0.01 + 0.03 * round_ + 0.02 * attempt)
        _check_recovered(path, lines)
        assert any(line.startswith("applied") for line in lines), "the child never got far enough"


# --------------------------------------------------------------------------- random commands, schema, threads


def test_memory_and_sqlite_agree_on_random_commands(tmp_path: Path) -> None:
    import random

    from beaver_vault.kv.state import RequestPolicy

    policy = RequestPolicy(expiry_ms=700, per_client=3, result_bytes_max=120)
    rng = random.Random(20240611)
    keys = ["a", "b", "p/1", "p/2", "p/3", "q"]
    now = 0

    def one() -> bytes:
        nonlocal now
        now += rng.randrange(0, 300)
        req = None if rng.random() < 0.3 else {"client": rng.choice("xy"), "id": str(rng.randrange(6)), "now_ms": now}
        k = rng.choice(keys)
        ttl = rng.choice([None, None, 100, 1000])
        exp = None if ttl is None else now + ttl
        match rng.randrange(7):
            case 0:
                return commands.put(k, [k, now], expires_at_ms=exp, request=req)
            case 1:
                return commands.put(k, now, if_mod_revision=rng.randrange(4), request=req)
            case 2:
                return commands.delete(k, request=req)
            case 3:
                return commands.delete_prefix(rng.choice(["p/", "", "a", "z"]), request=req)
            case 4:
                return commands.expire(rng.sample(keys, 3), now)
            case 5:
                return commands.append(k, now, request=req)
            case _:
                cmp = [{"key": k, "target": "version", "op": "<", "value": rng.randrange(4)}]
                ops = [{"op": "get", "key": x} for x in keys] + [{"op": "put", "key": k, "value": 1, "ttl_ms": 50}]
                return commands.txn(cmp, ops, [{"op": "delete", "key": k}], now_ms=now, request=req)

    data = [one() for _ in range(600)]
    stores: list[Any] = [MemoryStorage(), SQLiteStorage(tmp_path / "n.db")]
    try:
        outs = []
        for s in stores:
            results = []
            for i in range(0, len(data), 37):
                results += apply_all(s, data[i : i + 37], lambda store, e: apply(store, e.index, e.data, policy=policy))
            outs.append((results, s.items(), s.expired_keys(now, 100), s.expired_keys(now // 2, 3)))
        assert outs[0] == outs[1]
        assert any(r.get("duplicate") for r in outs[0][0]) and any(r.get("result_omitted") for r in outs[0][0])
    finally:
        stores[1].close()


def _remembered_rows(s: Any) -> list[tuple[str, str, int, int, str]]:
    if isinstance(s, MemoryStorage):
        return [(c, i, r.index, r.time_ms, r.result) for c, i, r in s.kv.requests()]
    return list(s._db.execute("SELECT client, id, idx, time_ms, result FROM requests ORDER BY client, id"))


def test_remembered_requests_trimmed_alike_through_failed_batches_resets_and_installs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SQLite store keeps counts of its remembered requests beside the table so that
    trimming walks only the excess (``sqlite_rows.RequestCounts``). Against the memory store,
    after every batch: the same results and the same requests remembered, with per-client and
    total trims firing often, batches that fail half-way (their rollback must not leave the
    counts behind the table), a snapshot install and a reset (the table replaced under them)."""
    import random

    from beaver_vault.kv.state import RequestPolicy
    from beaver_vault.storage.sqlite_rows import TxnKV

    fired = {"trim_requests": 0, "trim_all_requests": 0}

    def counting(name: str) -> Any:
        orig = getattr(TxnKV, name)

        def counted(self: TxnKV, *args: Any) -> int:
            n: int = orig(self, *args)
            fired[name] += n > 0
            return n

        return counted

    for name in fired:
        monkeypatch.setattr(TxnKV, name, counting(name))
    policy = RequestPolicy(expiry_ms=4000, per_client=4, total_max=7, trim_every=3)
    rng = random.Random(20261203)
    now = 0
    fail_at: bytes | None = None

    def one() -> bytes:
        nonlocal now
        now += rng.choice([0, 0, rng.randrange(1, 300)])  # many ties on time: both stores cut at the same time
        req = {"client": rng.choice("xyz"), "id": str(rng.randrange(12)), "now_ms": now}
        return commands.put(rng.choice("abc"), now, request=req)

    def fn(store: Any, e: Any) -> Any:
        if e.data == fail_at:
            raise OSError("disk on fire")
        return apply(store, e.index, e.data, policy=policy)

    def feed(pair: list[Any], data: list[bytes]) -> None:
        outs: list[Any] = []
        for s in pair:
            start = s.load().applied_index + 1
            entries = [E(i, 1, d) for i, d in enumerate(data, start)]
            s.save(HardState(1), entries)
            try:
                outs.append(s.apply(entries, fn))
            except OSError:
                outs.append("failed")
                assert fail_at is not None
                s.apply(entries[: data.index(fail_at)], fn)  # the ones before the failure
        assert outs[0] == outs[1]
        assert _remembered_rows(pair[0]) == _remembered_rows(pair[1])

    stores: list[Any] = [MemoryStorage(), SQLiteStorage(tmp_path / "n.db")]
    sources: list[Any] = [MemoryStorage(), SQLiteStorage(tmp_path / "source.db")]
    try:
        for s in stores + sources:
            s.reset("c")
        for round_ in range(150):
            data = [one() for _ in range(rng.randrange(1, 6))]
            # Failures in the second half of every 20 rounds: none just before or after the install
            # (round 60) and the reset (round 100), whose rollback would hide a stale count.
            fail_at = rng.choice(data) if rng.random() < 0.3 and round_ % 20 >= 10 else None
            feed(stores, data)
            if round_ < 2:  # fewer requests than the stores remember at the install
                feed(sources, [one() for _ in range(2)])
            if round_ == 60:  # both install their source's state (its remembered requests too)
                for dst, src in zip(stores, sources, strict=True):
                    index, chunks = src.snapshot_reader(4096)
                    dst.install_begin(index)
                    for seq, chunk in enumerate(chunks):
                        dst.install_chunk(seq, chunk)
                    dst.install_finish(index, 1, b"")
                assert _remembered_rows(stores[0]) == _remembered_rows(stores[1]) != []
            if round_ == 100:
                for s in stores:
                    s.reset("c")
        assert fired["trim_requests"] > 10 and fired["trim_all_requests"] > 10, fired
    finally:
        stores[1].close()
        sources[1].close()


def test_trimming_all_requests_from_the_oldest_end_deletes_what_the_newest_end_walk_does() -> None:
    """Ties on time included: the (keep+1)-th newest time is the (n-keep)-th oldest."""
    import random
    import sqlite3

    from beaver_vault.storage.sqlite_rows import RequestCounts, trim_oldest_requests

    newest_end_walk = (
        "DELETE FROM requests WHERE time_ms <= (SELECT time_ms FROM requests ORDER BY time_ms DESC LIMIT 1 OFFSET ?)"
    )
    rng = random.Random(7)
    for case in range(60):
        rows = [("c" + str(rng.randrange(3)), str(i), i, rng.randrange(6), "{}") for i in range(rng.randrange(0, 12))]
        keep = rng.randrange(0, 10)
        left = []
        for walk in ("newest end", "oldest end"):
            db = sqlite3.connect(":memory:")
            db.execute("CREATE TABLE requests (client TEXT, id TEXT, idx INTEGER, time_ms INTEGER, result TEXT)")
            db.executemany("INSERT INTO requests VALUES (?, ?, ?, ?, ?)", rows)
            counts = RequestCounts()
            if walk == "newest end":
                gone = db.execute(newest_end_walk, (keep,)).rowcount
            else:
                gone = trim_oldest_requests(db, keep, counts)
                assert counts.total(db) == db.execute("SELECT count(*) FROM requests").fetchone()[0]
            left.append((gone, sorted(db.execute("SELECT * FROM requests"))))
        assert left[0] == left[1], case


V1_SCHEMA = """
CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 0), cluster_id TEXT, applied_index INTEGER NOT NULL);
CREATE TABLE hard_state (id INTEGER PRIMARY KEY CHECK (id = 0), term INTEGER NOT NULL, vote TEXT,
    commit_index INTEGER NOT NULL);
CREATE TABLE log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, kind INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL, version INTEGER NOT NULL);
INSERT INTO meta VALUES (0, 'cid', 2);
INSERT INTO hard_state VALUES (0, 3, 'n1', 2);
PRAGMA user_version = 1;
"""


def test_sqlite_migrates_a_version_1_file(tmp_path: Path) -> None:
    """A database written by the schema-1 code (no expiry, no requests) opens and keeps working."""
    import sqlite3

    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.executemany(
        "INSERT INTO log VALUES (?, ?, ?, ?)",
        [
            (1, 3, int(EntryKind.NORMAL), commands.put("a", {"x": 1})),
            (2, 3, int(EntryKind.NORMAL), commands.put("b", 2)),
        ],
    )
    db.executemany("INSERT INTO kv VALUES (?, ?, ?, ?, ?)", [("a", '{"x":1}', 1, 1, 1), ("b", "2", 2, 2, 1)])
    db.commit()
    db.close()
    s = SQLiteStorage(path)
    try:
        st = s.load()
        assert (st.cluster_id, st.hard_state, st.applied_index, len(st.entries)) == ("cid", HardState(3, "n1", 2), 2, 2)
        assert s.items() == [("a", KeyRecord('{"x":1}', 1, 1, 1)), ("b", KeyRecord("2", 2, 2, 1))]
        assert s.expired_keys(10**12, 10) == []
        req = {"client": "c", "id": "i", "now_ms": 7}
        r = apply_all(s, [commands.put("a", 5, expires_at_ms=9, request=req), commands.put("a", 6, request=req)])
        assert r[1]["duplicate"] is True and s.get("a") == KeyRecord("5", 1, 3, 2, 9)
    finally:
        s.close()
    s = SQLiteStorage(path)  # reopening a migrated file migrates nothing more
    try:
        assert s._db.execute("PRAGMA user_version").fetchone()[0] >= 2
        assert s.expired_keys(9, 10) == ["a"]
    finally:
        s.close()


def test_sqlite_a_worker_thread_writes_through_its_own_connection(tmp_path: Path) -> None:
    """The storage worker's layout (node/storage_thread.py ThreadWorker): a second handle on the same
    file, opened and used on another thread, writes and applies; the first handle (the event
    loop's) reads what it committed."""
    path = tmp_path / "n.db"
    loop_side = SQLiteStorage(path)

    def worker() -> None:
        w = SQLiteStorage(path)
        data = [commands.put(f"k{i}", i) for i in range(1, 6)]
        log = [E(i, 1, d) for i, d in enumerate(data, start=1)]
        w.save(HardState(1, "me", 0), log)
        w.apply(log, kv_apply)
        assert w.entries(1, 3, 1 << 20) == [E(1, 1, data[0]), E(2, 1, data[1])]
        w.close()

    errors = in_another_thread(worker)
    assert not errors, errors
    got = loop_side.get("k3")
    assert got is not None and json.loads(got.value) == 3
    st = loop_side.load()
    assert (st.applied_index, st.hard_state, len(st.entries)) == (5, HardState(1, "me", 0), 5)
    loop_side.close()
