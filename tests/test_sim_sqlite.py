"""The simulator runs the production SQLite storage under its disk faults (issue 13, item 7).

``sim.sqlite_disk.SqliteDisk`` holds the fsync boundary in simulated time: what the production
code fsyncs (save, reset, compact, install) is durable; an apply (``synchronous=NORMAL``) is
durable only behind a later fsync; a lying disk makes nothing durable before its lazy flush. A
crash puts the files back to the last durable point and SQLite's own recovery reopens them."""

from __future__ import annotations

import ast
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from beaver_vault.kv import commands  # noqa: E402
from beaver_vault.kv.state import apply as kv_apply  # noqa: E402
from beaver_vault.raft.messages import Entry, EntryKind, HardState  # noqa: E402
from sim.cli import main  # noqa: E402
from sim.failures import SimCrash  # noqa: E402
from sim.params import FAULT_CLASSES, draw, drawn_storage  # noqa: E402
from sim.run import run  # noqa: E402
from sim.sqlite_disk import SqliteDisk  # noqa: E402


class Hooks:
    def __init__(self) -> None:
        self.syncs = 0
        self.flush_wanted = 0
        self.crash_at: str | None = None

    def crash_point(self, where: str) -> None:
        if where == self.crash_at:
            raise SimCrash(where)

    def sync(self) -> None:
        self.syncs += 1

    def saved(self, entries: Sequence[Entry]) -> None:
        pass

    def applied(self, entries: Sequence[Entry], storage: object) -> None:
        pass

    def want_flush(self) -> None:
        self.flush_wanted += 1

    def installed(self, storage: object) -> None:
        pass

    def count(self, name: str) -> None:
        pass


def _entry(i: int, key: str, value: int) -> Entry:
    return Entry(1, i, EntryKind.NORMAL, commands.put(key, value))


def _apply(disk: SqliteDisk, entries: list[Entry]) -> None:
    disk.apply(entries, lambda kv, e: kv_apply(kv, e.index, e.data))


def test_a_crash_keeps_what_was_fsynced_and_loses_an_apply_not_yet_behind_an_fsync(tmp_path: Path) -> None:
    hooks = Hooks()
    disk = SqliteDisk(hooks, str(tmp_path / "n1.db"))
    disk.reset("c1")
    disk.save(HardState(1, "n1", 0), [_entry(1, "a", 1), _entry(2, "a", 2)])
    _apply(disk, [_entry(1, "a", 1)])
    assert disk.get("a") is not None
    disk.crash()  # the apply (synchronous=NORMAL) had no fsync behind it
    st = disk.load()
    assert st.cluster_id == "c1" and st.hard_state == HardState(1, "n1", 0)
    assert [e.index for e in st.entries] == [1, 2]
    assert st.applied_index == 0 and disk.get("a") is None
    # An apply followed by a fsynced save survives: SQLite's WAL is synced behind it.
    _apply(disk, [_entry(1, "a", 1)])
    disk.save(HardState(1, "n1", 1), [])
    disk.crash()
    assert disk.load().applied_index == 1 and disk.get("a") is not None and disk.get("a").document() == 1  # type: ignore[union-attr]
    assert disk.lost_on_crash == 1
    disk.destroy()


def test_a_crash_inside_an_apply_batch_rolls_the_whole_batch_back(tmp_path: Path) -> None:
    hooks = Hooks()
    disk = SqliteDisk(hooks, str(tmp_path / "n1.db"))
    disk.reset("c1")
    disk.save(HardState(1, None, 3), [_entry(1, "a", 1), _entry(2, "b", 2), _entry(3, "c", 3)])
    hooks.crash_at = "before-apply"  # fires inside the transaction, at the batch's last entry
    with pytest.raises(SimCrash):
        _apply(disk, [_entry(1, "a", 1), _entry(2, "b", 2), _entry(3, "c", 3)])
    hooks.crash_at = None
    assert disk.get("a") is None and disk.load().applied_index == 0  # rolled back before any crash
    disk.crash()
    assert disk.get("a") is None and disk.load().applied_index == 0
    disk.destroy()


def test_a_lying_disk_loses_everything_since_its_last_flush(tmp_path: Path) -> None:
    hooks = Hooks()
    disk = SqliteDisk(hooks, str(tmp_path / "n1.db"), lying=True)
    disk.reset("c1")
    disk.save(HardState(1, None, 0), [_entry(1, "a", 1)])
    disk.flush()
    disk.save(HardState(2, "n2", 0), [_entry(2, "a", 2)])
    assert hooks.flush_wanted >= 1
    disk.crash()
    st = disk.load()
    assert st.hard_state == HardState(1, None, 0) and [e.index for e in st.entries] == [1]
    disk.destroy()


def test_checkpoints_keep_the_wal_bounded_and_crashes_still_recover(tmp_path: Path) -> None:
    hooks = Hooks()
    disk = SqliteDisk(hooks, str(tmp_path / "n1.db"))
    disk.reset("c1")
    big = "x" * 4000
    for i in range(1, 400):
        disk.save(HardState(1, None, i), [Entry(1, i, EntryKind.NORMAL, commands.put("k", big + str(i)))])
    assert disk.wal_cut < 2 * 1024 * 1024  # checkpointed along the way
    disk.crash()
    st = disk.load()
    assert len(st.entries) == 399 and st.hard_state.commit == 399
    disk.destroy()


def test_one_seed_in_four_runs_sqlite_and_the_flag_forces_it() -> None:
    drawn = [drawn_storage(s) for s in range(400)]
    assert drawn == [drawn_storage(s) for s in range(400)]
    assert 60 <= drawn.count("sqlite") <= 140
    assert draw(0, None, FAULT_CLASSES, None, storage="sqlite").storage == "sqlite"
    # test_sim.py's byte-for-byte test (two processes, different PYTHONHASHSEED) runs seed 7:
    # a SQLite seed, so the SQLite runs are covered by it.
    assert drawn_storage(7) == "sqlite"


def test_sqlite_seeds_pass_and_crashes_really_roll_the_files_back() -> None:
    rollbacks = 0
    for seed in range(6):
        outcome = run(draw(seed, None, FAULT_CLASSES, None, storage="sqlite"))
        assert outcome.kind == "ok", (seed, outcome.detail)
        assert "storage=sqlite" in outcome.summary
        rollbacks += int(outcome.summary.split("disk_rollbacks=")[1].split()[0])
    assert rollbacks > 0


def test_the_planted_lying_disk_is_caught_on_sqlite_as_a_safety_failure() -> None:
    for seed in range(40):
        p = draw(seed, None, FAULT_CLASSES, "ack-before-fsync", storage="sqlite")
        outcome = run(p)
        if outcome.kind == "safety":
            out = io.StringIO()
            assert main(["--seed", str(seed), "--bug", "ack-before-fsync", "--storage", "sqlite"], out=out) == 11
            repro = [x for x in out.getvalue().splitlines() if x.startswith("REPRODUCE:")]
            expected = f"REPRODUCE: python -m sim --seed {seed} --nodes {p.nodes} --faults all --bug ack-before-fsync"
            assert repro and repro[0].startswith(expected)
            return
    pytest.fail("ack-before-fsync on SQLite not caught as a safety failure in 40 seeds")


def test_the_simulator_reaches_sqlite_only_through_the_production_storage_module() -> None:
    """The layering rule: nothing in sim/ imports sqlite3; only sim/sqlite_disk.py imports the
    production SQLite storage (the implementation under test)."""
    for path in sorted((ROOT / "sim").rglob("*.py")):
        mods: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods.add(node.module)
        assert not any(m.split(".")[0] == "sqlite3" for m in mods), path
        if "beaver_vault.storage.sqlite" in mods:
            assert path.name == "sqlite_disk.py", path
