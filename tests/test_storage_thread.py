"""The real storage worker (``node/storage_thread.py``): a small apply handed over while the
thread has nothing to do runs at once on the event loop's thread, on the worker's own
connection; anything else, or anything behind other work, runs on the thread; completions come
back in submission order either way, and a failed generation is not run on either side."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from storage_helpers import in_another_thread

from beaver_vault.errors import StorageFailure
from beaver_vault.node.storage_jobs import StorageJob
from beaver_vault.node.storage_thread import INLINE_APPLY_MAX_BYTES, INLINE_APPLY_MAX_ENTRIES, ThreadWorker
from beaver_vault.storage.base import Storage
from beaver_vault.storage.sqlite import SQLiteStorage


def _job(
    seq: int, name: str, run: Callable[[Storage], Any], *, entries: int = 0, gen: int = 0, data_bytes: int = 0
) -> StorageJob:
    return StorageJob(name, run, lambda _: None, gen=gen, seq=seq, entries=entries, data_bytes=data_bytes)


def _where(_: Storage) -> int:
    return threading.get_ident()


async def _until(check: Callable[[], bool]) -> None:
    with trio.fail_after(30):  # a bound for a hung thread, not a timing assertion
        while not check():
            await trio.sleep(0.005)


def _run(tmp_path: Path, body: Callable[[ThreadWorker], Any]) -> None:
    async def main() -> None:
        worker = ThreadWorker(lambda: SQLiteStorage(tmp_path / "n.db", any_thread=True), "t")
        worker.start(lambda: None)
        try:
            await _until(lambda: worker.storage is not None)
            await body(worker)
        finally:
            worker.stop()

    trio.run(main)


def test_a_small_apply_on_an_idle_worker_runs_at_once_on_the_loop_thread(tmp_path: Path) -> None:
    async def body(w: ThreadWorker) -> None:
        loop_thread = threading.get_ident()
        job = _job(1, "apply", _where, entries=INLINE_APPLY_MAX_ENTRIES)
        w.submit(job)
        assert w.completed == [job] and job.result == loop_thread and w.inline_applies == 1
        # On the worker's own connection: what it writes, the thread reads afterwards.
        w.completed.clear()
        w.submit(_job(2, "apply", lambda s: s.reset("c1"), entries=1))
        probe = _job(3, "read-log", lambda s: (threading.get_ident(), s.load().hard_state))
        w.submit(probe)
        await _until(lambda: len(w.completed) == 2)
        assert probe.result[0] != loop_thread and probe.error is None

    _run(tmp_path, body)


def test_no_wal_checkpoint_on_the_loop_thread(tmp_path: Path) -> None:
    """A checkpoint writes and fsyncs the database file: while the connection is lent to the
    event loop, automatic checkpoints are off; on the thread they are on (SQLite's default)."""

    def autocheckpoint(s: Storage) -> int:
        assert isinstance(s, SQLiteStorage)
        return int(s._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])

    async def body(w: ThreadWorker) -> None:
        inline = _job(1, "apply", autocheckpoint, entries=1)
        w.submit(inline)
        threaded = _job(2, "compact", autocheckpoint)
        w.submit(threaded)
        await _until(lambda: len(w.completed) == 2)
        assert (inline.result, threaded.result) == (0, 1000)

    _run(tmp_path, body)


def test_a_large_apply_or_other_work_goes_to_the_thread(tmp_path: Path) -> None:
    async def body(w: ThreadWorker) -> None:
        loop_thread = threading.get_ident()
        big = _job(1, "apply", _where, entries=INLINE_APPLY_MAX_ENTRIES + 1)
        other = _job(2, "compact", _where)
        heavy = _job(3, "apply", _where, entries=0)  # not all light (a prefix delete, a txn...)
        bulky = _job(4, "apply", _where, entries=1, data_bytes=INLINE_APPLY_MAX_BYTES + 1)
        for n, job in enumerate((big, other, heavy, bulky), start=1):
            w.submit(job)
            await _until(lambda n=n: len(w.completed) == n)
            assert w.completed[-1] is job and job.result != loop_thread
        assert w.inline_applies == 0

    _run(tmp_path, body)


def test_an_apply_behind_outstanding_work_waits_its_turn_on_the_thread(tmp_path: Path) -> None:
    async def body(w: ThreadWorker) -> None:
        loop_thread = threading.get_ident()
        release = threading.Event()
        slow = _job(1, "save", lambda s: release.wait(30))
        small = _job(2, "apply", _where, entries=1)
        w.submit(slow)
        w.submit(small)
        assert w.completed == [] and w.inline_applies == 0
        release.set()
        await _until(lambda: len(w.completed) == 2)
        assert w.completed == [slow, small] and small.result != loop_thread
        # Idle again once both are delivered: the next small apply runs at once.
        after = _job(3, "apply", _where, entries=1)
        w.submit(after)
        assert w.completed[-1] is after and after.result == loop_thread

    _run(tmp_path, body)


def test_a_failed_generation_is_not_run_inline_either(tmp_path: Path) -> None:
    async def body(w: ThreadWorker) -> None:
        def fail(_: Storage) -> None:
            raise StorageFailure("disk_full", "no space left on device")

        ran: list[int] = []
        w.submit(_job(1, "save", fail))
        await _until(lambda: len(w.completed) == 1)
        moot = _job(2, "apply", lambda s: ran.append(2), entries=1)
        w.submit(moot)
        assert w.completed[-1] is moot and isinstance(moot.error, StorageFailure) and ran == []
        fresh = _job(3, "apply", lambda s: ran.append(3), entries=1, gen=1)
        w.submit(fresh)
        assert w.completed[-1] is fresh and fresh.error is None and ran == [3]

    _run(tmp_path, body)


def test_nothing_runs_inline_once_the_worker_is_stopping(tmp_path: Path) -> None:
    async def body(w: ThreadWorker) -> None:
        w.stop()
        job = _job(1, "apply", _where, entries=1)
        w.submit(job)
        assert job not in w.completed and w.inline_applies == 0

    _run(tmp_path, body)


@pytest.mark.parametrize("any_thread", [False, True])
def test_the_worker_connection_is_lent_only_when_asked(tmp_path: Path, any_thread: bool) -> None:
    storage = SQLiteStorage(tmp_path / "n.db", any_thread=any_thread)

    def other() -> None:
        storage.load()

    errors = in_another_thread(other)
    storage.close()
    assert bool(errors) is not any_thread
