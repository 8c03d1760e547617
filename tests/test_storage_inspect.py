"""``python -m beaver_vault.storage.inspect``: what a node's SQLite file holds, read-only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from beaver_vault.kv import commands, state
from beaver_vault.raft.messages import Entry, EntryKind, HardState, Member, Membership
from beaver_vault.storage.inspect import inspect, main
from beaver_vault.storage.sqlite import SQLiteStorage


def _node_file(tmp_path: Path) -> Path:
    path = tmp_path / "node.db"
    st = SQLiteStorage(path)
    try:
        st.reset("c0ffee")
        config = Membership((Member("n1", "127.0.0.1:7000"),)).encode()
        entries = [
            Entry(1, 1, EntryKind.CONFIG, config),
            Entry(1, 2, EntryKind.NORMAL, commands.put("users/1", {"name": "a"})),
            Entry(1, 3, EntryKind.NORMAL, commands.put("users/2", [1, 2])),
        ]
        st.save(HardState(1, "n1", 3), entries)
        st.apply(entries, lambda store, e: state.apply(store, e.index, e.data) if e.kind == EntryKind.NORMAL else None)
    finally:
        st.close()
    return path


def test_inspect_shows_state_keys_and_schema(tmp_path: Path) -> None:
    path = _node_file(tmp_path)
    text = inspect(str(path), keys=1)
    lines = text.splitlines()
    assert "cluster_id:    c0ffee" in lines
    assert "hard state:    term=1 vote=n1 commit=3" in lines
    assert any(line.startswith("log:           [1..3] 3 entries, last term 1") for line in lines), text
    assert "applied_index: 3" in lines
    assert "keys:          2" in lines
    assert any(line.startswith("  'users/1': ") for line in lines), text
    assert "  ... 1 more" in lines
    # The schema, read with sqlite-utils: every table with its rows and columns.
    tables = lines[lines.index("tables:") + 1 :]
    kv = next(line for line in tables if line.startswith("  kv ("))
    assert kv.startswith("  kv (2 rows): key TEXT")
    assert "mod_revision INTEGER" in kv
    assert any(line.startswith("  log (3 rows): idx INTEGER") for line in tables), tables
    assert any(line.startswith("    index kv_expires_at (expires_at, key)") for line in tables), tables


def test_inspect_opens_read_only(tmp_path: Path) -> None:
    path = _node_file(tmp_path)
    before = path.read_bytes()
    inspect(str(path))
    assert path.read_bytes() == before
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM kv").fetchone()[0] == 2


def test_main_reports_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "absent.db")]) == 1
    assert "cannot inspect" in capsys.readouterr().err
    path = _node_file(tmp_path)
    assert main([str(path), "--prefix", "users/2"]) == 0
    out = capsys.readouterr().out
    assert "'users/2': [1,2]" in out and "'users/1'" not in out
