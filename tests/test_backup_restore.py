"""Backup and restore: the backup stream (consistent while writes go on), the file checks
(damaged and truncated files refused, nothing written), and the round trip on real processes:
a 3-node cluster under a write load is backed up and restored into a new 3-node cluster."""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_cluster import Cluster, server_command, wait_for

from beaver_vault.client import Client, UnknownOutcome
from beaver_vault.kv import commands
from beaver_vault.kv import state as kv_state
from beaver_vault.kv.state import KeyRecord, KVStore
from beaver_vault.raft.messages import Entry, EntryKind, HardState, Member
from beaver_vault.storage.backup import BackupError, BackupReader, seed_from_backup, verify_backup
from beaver_vault.storage.sqlite import SQLiteStorage

# --- a storage file with data -------------------------------------------------------------------


def _apply(store: KVStore, e: Entry) -> Any:
    return kv_state.apply(store, e.index, e.data) if e.kind == EntryKind.NORMAL else None


class Writer:
    """Appends and applies commands to a SQLiteStorage as a node would (index = revision)."""

    def __init__(self, path: Path) -> None:
        self.storage = SQLiteStorage(path)
        self.storage.reset("c0ffee")
        self.index = 0

    def run(self, *cmds: bytes) -> None:
        entries = []
        for c in cmds:
            self.index += 1
            entries.append(Entry(1, self.index, EntryKind.NORMAL, c))
        self.storage.save(HardState(1, None, self.index), entries)
        self.storage.apply(entries, _apply)


def items(db: Path) -> list[tuple[str, KeyRecord]]:
    s = SQLiteStorage(db)
    try:
        return s.items()
    finally:
        s.close()


def write_backup(reader: BackupReader, path: Path) -> None:
    with path.open("wb") as f:
        for chunk in reader.chunks():
            f.write(chunk)
    reader.close()


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Writer]:
    w = Writer(tmp_path / "source.db")
    w.run(*(commands.put(f"k{i:03d}", {"i": i, "text": "x" * 200}) for i in range(300)))
    w.run(commands.put("k001", "second"), commands.delete("k002"), commands.put("unicode/é", ["ü", 1.5, None]))
    yield w
    w.storage.close()


def test_a_backup_is_the_state_at_its_revision_while_writes_go_on(source: Writer, tmp_path: Path) -> None:
    expected = source.storage.items()
    revision = source.index
    reader = BackupReader(tmp_path / "source.db", chunk_bytes=4096)
    header = reader.open()
    assert header.revision == revision and header.tables["kv"] == len(expected)
    chunks = reader.chunks()
    first = next(chunks)
    # The node keeps committing while the copy is read: changes, deletes, new keys.
    source.run(commands.put("k000", "changed"), commands.delete("k003"), commands.put("late", 1))
    rest = b"".join(chunks)
    reader.close()
    path = tmp_path / "b.backup"
    path.write_bytes(first + rest)
    backup = verify_backup(path)
    assert backup.revision == revision and backup.rows == len(expected)
    seed_from_backup(backup, tmp_path / "restored.db", cluster_id="new", member=Member("n1", "h:1", "http://h:2"))
    assert items(tmp_path / "restored.db") == expected  # values, revisions, versions: the state at `revision`
    restored = SQLiteStorage(tmp_path / "restored.db")
    try:
        st = restored.load()
        assert st.cluster_id == "new" and st.applied_index == revision and st.snapshot_index == revision
        assert st.entries == () and st.hard_state.commit == revision
    finally:
        restored.close()


def _damaged_copies(good: bytes) -> dict[str, bytes]:
    rng = random.Random(7)
    out: dict[str, bytes] = {"empty": b"", "not a backup": b"hello\n", "trailing data": good + b"[1]\n"}
    for cut in (1, len(good) // 3, len(good) // 2, len(good) - 90, len(good) - 1):
        out[f"truncated at {cut}"] = good[:cut]
    out["truncated at a line end"] = good[: good.rindex(b"\n", 0, len(good) // 2) + 1]
    for n in range(5):
        pos = rng.randrange(len(good) - 1)
        flipped = bytearray(good)
        flipped[pos] = ord("0") if flipped[pos] != ord("0") else ord("1")
        out[f"one byte changed at {pos} ({n})"] = bytes(flipped)
    lines = good.splitlines(keepends=True)
    out["a row removed"] = b"".join(lines[:5] + lines[6:])
    return out


def test_damaged_and_truncated_files_are_refused(source: Writer, tmp_path: Path) -> None:
    reader = BackupReader(tmp_path / "source.db")
    reader.open()
    good_path = tmp_path / "good.backup"
    write_backup(reader, good_path)
    good = good_path.read_bytes()
    verify_backup(good_path)
    for name, data in _damaged_copies(good).items():
        path = tmp_path / "bad.backup"
        path.write_bytes(data)
        with pytest.raises(BackupError) as err:
            verify_backup(path)
        message = str(err.value)
        assert any(w in message for w in ("truncated", "damaged", "not a backup", "empty", "not a Beaver")), (name, message)


def test_a_backup_of_a_newer_schema_is_refused(source: Writer, tmp_path: Path) -> None:
    reader = BackupReader(tmp_path / "source.db")
    reader.open()
    path = tmp_path / "b.backup"
    write_backup(reader, path)
    lines = path.read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["schema_version"] = 99
    path.write_bytes(json.dumps(header).encode() + b"\n" + b"".join(lines[1:]))
    with pytest.raises(BackupError, match="schema version 99 is newer"):
        verify_backup(path)


# --- the restore command refuses without writing ------------------------------------------------


def restore_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEAVER_VAULT_")}
    return subprocess.run(
        [*server_command(), "restore", *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env
    )


def test_restore_refuses_damaged_files_and_used_data_dirs(source: Writer, tmp_path: Path) -> None:
    reader = BackupReader(tmp_path / "source.db")
    reader.open()
    good = tmp_path / "good.backup"
    write_backup(reader, good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.backup"
    truncated.write_bytes(data[: len(data) // 2])
    damaged = tmp_path / "damaged.backup"
    damaged.write_bytes(data.replace(b'"k150"', b'"k15O"'))
    for path, why in ((truncated, "is truncated"), (damaged, "checksum does not match")):
        done = restore_cli(str(path), "--node-id", "n1", "--data-dir", "target", cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert why in done.stderr and "Nothing was written" in done.stderr
        assert not (tmp_path / "target").exists()
        assert [p.name for p in tmp_path.iterdir() if ".restore-" in p.name] == []
    used = tmp_path / "used"
    used.mkdir()
    (used / "node.db").write_bytes(b"precious")
    done = restore_cli(str(good), "--node-id", "n1", "--data-dir", "used", cwd=tmp_path)
    assert done.returncode == 1 and "is not empty" in done.stderr
    assert [p.name for p in used.iterdir()] == ["node.db"] and (used / "node.db").read_bytes() == b"precious"
    done = restore_cli(str(good), "--data-dir", "x", cwd=tmp_path)  # no node id: a usage error
    assert done.returncode == 2 and "node_id" in done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty directory is fine
    done = restore_cli(str(good), "--node-id", "n1", "--data-dir", "empty", "--raft-port", "7777", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert items(empty / "node.db") == source.storage.items()


# --- the round trip on real processes -----------------------------------------------------------


class Load:
    """Writers over every node: puts and deletes on a few keys each, every acknowledged
    operation recorded with its revision (the client retries with idempotency keys, so a
    retried write is applied once and answered with its revision)."""

    def __init__(self, urls: list[str], writers: int = 3, keys_per_writer: int = 12) -> None:
        self.urls = urls
        self.ops: list[tuple[int, str, str, Any, bool]] = []  # (revision, key, put|delete, value, created)
        self.uncertain: dict[str, list[Any]] = {}  # key -> values of writes whose outcome is unknown
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i, keys_per_writer)) for i in range(writers)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def count(self) -> int:
        with self.lock:
            return len(self.ops)

    def _run(self, i: int, nkeys: int) -> None:
        rng = random.Random(i)
        urls = self.urls[i % len(self.urls) :] + self.urls[: i % len(self.urls)]
        with Client(urls) as c:
            seq = 0
            while not self.stop.is_set():
                key = f"load/w{i}/k{rng.randrange(nkeys)}"
                seq += 1
                value = {"w": i, "seq": seq}
                try:
                    if rng.random() < 0.2:
                        d = c.delete(key)
                        if d.deleted and d.revision is not None:
                            with self.lock:
                                self.ops.append((d.revision, key, "delete", None, False))
                    else:
                        p = c.put(key, value)
                        with self.lock:
                            self.ops.append((p.revision, key, "put", value, p.created))
                except UnknownOutcome:
                    with self.lock:
                        self.uncertain.setdefault(key, []).append(value)

    def state_at(self, revision: int) -> dict[str, dict[str, Any]]:
        """Every key of the load at ``revision``: value, create/mod revision, version."""
        state: dict[str, dict[str, Any]] = {}
        for rev, key, kind, value, created in sorted(self.ops, key=lambda op: op[0]):
            if rev > revision:
                break
            if kind == "delete":
                state.pop(key, None)
                continue
            old = state.get(key)
            if key not in self.uncertain:
                assert created == (old is None), (key, rev)  # the acknowledgements tell one story
            state[key] = {
                "value": value,
                "create_revision": rev if old is None else old["create_revision"],
                "mod_revision": rev,
                "version": 1 if old is None else old["version"] + 1,
            }
        return state


def listing(url: str, prefix: str, consistency: str = "stale") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    after: str | None = None
    while True:
        params: dict[str, Any] = {"prefix": prefix, "limit": 1000, "consistency": consistency}
        if after is not None:
            params["after"] = after
        page = httpx.get(url + "/api/v1/kv", params=params, timeout=10).json()
        for item in page["items"]:
            out[item.pop("key")] = item
        if not page["more"]:
            return out
        after = page["next_after"]


@pytest.mark.e2e
def test_backup_under_load_restores_into_a_new_cluster(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_cluster(3)
    source = [cluster[f"node{i}"] for i in (1, 2, 3)]
    urls = [n.url for n in source]
    # Some bulk (and keys no writer touches), written in a few transactions.
    bulk: dict[str, Any] = {}
    with Client(urls) as c:
        for t in range(6):
            ops = [{"op": "put", "key": f"bulk/{t}/{j}", "value": {"t": t, "j": j, "pad": "p" * 300}} for j in range(100)]
            result = c.txn([], ops)
            for op in ops:
                bulk[op["key"]] = {
                    "value": op["value"],
                    "create_revision": result.revision,
                    "mod_revision": result.revision,
                    "version": 1,
                }
    backup_file = tmp_path / "cluster.backup"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEAVER_VAULT_")}
    with Load(urls) as load:
        wait_for("some writes before the backup", lambda: load.count() >= 30, 60.0)
        done = subprocess.run(
            [*server_command(), "backup", "--endpoints", f"{source[1].url},{source[0].url}", str(backup_file)],
            capture_output=True, text=True, timeout=120, env=env,
        )
        assert done.returncode == 0, done.stderr
        assert "\r" not in done.stderr  # no progress bar when stderr is not a terminal
        before = load.count()
        wait_for("writes after the backup", lambda: load.count() >= before + 30, 60.0)
    backup = verify_backup(backup_file)
    revision = backup.revision
    assert [name for name in os.listdir(tmp_path) if ".partial" in name] == []
    # The backup was taken in the middle of the load: acknowledged writes on both sides of it.
    revisions = sorted(op[0] for op in load.ops)
    assert revisions[0] < revision < revisions[-1], (revisions[0], revision, revisions[-1])
    expected = {**bulk, **load.state_at(revision)}

    # Restore into a new cluster: r1 from the file, r2 and r3 join it as usual.
    new = Cluster(tmp_path / "restored")
    try:
        r1 = new.add("r1")
        assert r1.data_dir is not None
        done = subprocess.run(
            [*server_command(), "restore", str(backup_file), "--node-id", "r1", "--data-dir", str(r1.data_dir),
             "--http-port", str(r1.http_port), "--raft-port", str(r1.raft_port), "--bind-host", "127.0.0.1"],
            capture_output=True, text=True, timeout=120, env=env,
        )
        assert done.returncode == 0, done.stderr
        assert f"restored revision {revision}" in done.stdout
        new.start("r1")
        new.wait_leader([r1])
        new.start("r2", join=r1.url)
        new.start("r3", join=r1.url)
        new.wait_members(["r1", "r2", "r3"])
        status = r1.status()
        assert status is not None and status["cluster_id"] != cluster["node1"].status()["cluster_id"]  # type: ignore[index]
        wait_for("r2, r3 caught up", lambda: all(n.status()["applied_index"] >= revision for n in new.live()), 60.0)  # type: ignore[index]
        for node in new.live():
            got = listing(node.url, "")
            uncertain = {k for k in load.uncertain if k in got or k in expected}
            for key in set(got) | set(expected):
                if key in uncertain:  # a write whose outcome is unknown: its value is one of those written
                    if key in got:
                        written = [op[3] for op in load.ops if op[1] == key] + load.uncertain[key]
                        assert got[key]["value"] in written, key
                    continue
                assert got.get(key) == expected.get(key), (node.node_id, key, got.get(key), expected.get(key))
            assert len(uncertain) <= len(expected) // 4, load.uncertain
        # New writes get revisions above the backup's.
        put = httpx.put(r1.url + "/api/v1/kv/after-restore", json={"new": True}, timeout=10).json()
        assert put["revision"] > revision
        # And the source cluster really held that state at that revision (backup read from node2):
        assert sum(1 for op in load.ops if op[0] <= revision) > 0
        print(f"backup revision {revision}: {len(load.ops)} acknowledged writes, {len(expected)} keys, uncertain {len(load.uncertain)}")
    finally:
        new.close()


@pytest.mark.e2e
def test_backup_command_draws_progress_only_on_a_terminal_and_fails_cleanly(cluster: Cluster, tmp_path: Path) -> None:
    import pty

    node = cluster.start("node1")
    cluster.wait_leader([node])
    with Client([node.url]) as c:
        for i in range(20):
            c.put(f"p/{i}", i)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEAVER_VAULT_")}
    target = tmp_path / "tty.backup"
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [*server_command(), "backup", "--endpoints", node.url, str(target)],
            stdout=subprocess.PIPE, stderr=slave, text=True, timeout=60, env=env,
        )
        os.close(slave)
        drawn = b""
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed and everything was read
                break
            if not data:
                break
            drawn += data
    finally:
        os.close(master)
    assert done.returncode == 0 and "saved a backup of revision" in done.stdout
    saved = verify_backup(target)
    assert saved.tables["kv"] == 20 and saved.rows >= 20  # the keys, and the idempotency records of the puts
    assert b"\rbackup [" in drawn and f"100.0%  {saved.rows}/{saved.rows} rows".encode() in drawn, drawn
    import re

    counts = [(int(a), int(b)) for a, b in re.findall(rb"(\d+)/(\d+) rows", drawn)]
    assert counts and all(b == saved.rows and a <= b for a, b in counts), drawn  # rows, not lines
    # No node answers: exit 3, nothing written (the old file, if any, is left alone).
    dead = f"http://127.0.0.1:{cluster.add('ghost').http_port}"
    missing = tmp_path / "never.backup"
    done = subprocess.run(
        [*server_command(), "backup", "--endpoints", dead, str(missing)],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert done.returncode == 3 and "no node gave a complete backup" in done.stderr
    assert not missing.exists() and [p.name for p in tmp_path.iterdir() if ".partial" in p.name] == []


def test_users_and_roles_travel_in_a_backup_and_its_restore(source: Writer, tmp_path: Path) -> None:
    from beaver_vault.kv.auth import auth_command

    pw = {"alg": "scrypt", "n": 16384, "r": 8, "p": 1, "salt": "00" * 16, "hash": "ab" * 32}
    source.run(
        auth_command("bootstrap", name="admin", password=pw),
        auth_command("put_role", name="app", permissions=[{"prefix": "app/", "access": "read"}]),
        auth_command("create_user", name="alice", password=pw, roles=["app"]),
    )
    users, roles = source.storage.auth_scan("user"), source.storage.auth_scan("role")
    reader = BackupReader(tmp_path / "source.db")
    reader.open()
    write_backup(reader, tmp_path / "b.backup")
    seed_from_backup(verify_backup(tmp_path / "b.backup"), tmp_path / "r.db", cluster_id="new", member=Member("n1", "h:1", "http://h:2"))
    restored = SQLiteStorage(tmp_path / "r.db")
    try:
        assert restored.auth_scan("user") == users and restored.auth_scan("role") == roles
        assert [n for n, _ in users] == ["admin", "alice"]
    finally:
        restored.close()
