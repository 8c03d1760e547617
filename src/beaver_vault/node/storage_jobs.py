"""Storage work as jobs: what the driver hands its storage worker, and how it learns they are done.

The driver never waits for the disk. Each write it needs (a Ready's log entries and hard state,
applying committed entries, compaction, staging and installing a snapshot, adoption's wipe) is a
``StorageJob``: ``run(storage)`` does the I/O on the worker (production: a thread with its own
SQLite connection, ``node/runtime.py``; the simulator: an event after a seeded latency,
``sim/machine.py``), and the worker then hands the finished job back to the driver on its own
thread of control (``NodeDriver.storage_done``), which calls ``done(result)``.

The worker's contract (both worlds keep it; the driver's ordering rules rest on it):

* jobs run one at a time, in submission order, and complete in that order;
* a job's effects are durable when it completes (what ``Storage`` promises on return);
* a crash may fall between submission and completion: the job then may or may not have run,
  and its completion is never delivered (the driver that submitted it is gone).

``InlineWorker`` runs each job at once, inside ``submit`` (tests, and nodes without a worker
thread): the same ordering, with zero latency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from beaver_vault.errors import StorageFailure
from beaver_vault.raft.messages import Entry, HardState
from beaver_vault.storage.base import Storage


@dataclass(slots=True, eq=False)
class StorageJob:
    name: str  # save, apply, compact, install-begin, install-chunk, install-finish, reset, read-log
    run: Callable[[Storage], Any]  # on the worker
    done: Callable[[Any], None]  # on the driver's thread, with run's result
    result: Any = None
    error: BaseException | None = None
    gen: int = 0  # the driver's generation when submitted (a reload makes older jobs moot)
    seq: int = 0  # submission order (the driver checks completions come in this order)
    # A save's arguments (hard state, entries), so a worker may write several consecutive saves
    # in one transaction (one fsync: group commit); ``run`` does the same for one save.
    save: tuple[HardState | None, tuple[Entry, ...]] | None = None
    # An apply whose entries are all light (no command, or a put or delete of one key:
    # ``kv.commands.is_one_key_write``): their number, else 0; and the bytes of their data. A
    # worker may run a small, light apply at once (``node/storage_thread.py``).
    entries: int = 0
    data_bytes: int = 0


class StorageWorker(Protocol):
    def submit(self, job: StorageJob) -> None:
        """Queue ``job``; its completion reaches ``NodeDriver.storage_done`` later (or at once)."""
        ...


class FailGate:
    """After a job fails with ``StorageFailure`` (a full disk, an I/O error; its transaction was
    rolled back), the later jobs of the same driver generation are not run: they fail with the
    same error. The driver stops writing and, once the disk takes writes again, rebuilds its
    state from the disk with a new generation (``node/disk_guard.py``). So a save can never land
    after one that is missing, and nothing is applied past what the disk holds."""

    def __init__(self) -> None:
        self.failed_gen = -1
        self.failure: StorageFailure | None = None

    def closed(self, job: StorageJob) -> bool:
        """True (and ``job`` failed with the gate's error) if ``job`` must not run."""
        if job.gen <= self.failed_gen and self.failure is not None:
            job.error = self.failure
            return True
        return False

    def note(self, jobs: list[StorageJob]) -> None:
        for job in jobs:
            if isinstance(job.error, StorageFailure) and job.gen > self.failed_gen:
                self.failed_gen, self.failure = job.gen, job.error


class InlineWorker:
    """Runs each job at once on the caller's thread and completes it before ``submit`` returns."""

    def __init__(self, storage: Storage, complete: Callable[[StorageJob], None]) -> None:
        self.storage = storage
        self.complete = complete
        self.gate = FailGate()

    def submit(self, job: StorageJob) -> None:
        if not self.gate.closed(job):
            run_job(job, self.storage)
            self.gate.note([job])
        self.complete(job)


def run_saves(jobs: list[StorageJob], storage: Storage) -> None:
    """Run consecutive save jobs as ONE save (one transaction, one fsync), with the same end
    state as running them one by one: a later save's entries replace the earlier ones' from
    their first index on, and the last hard state wins. All succeed or all fail together."""
    if len(jobs) == 1:
        run_job(jobs[0], storage)
        return
    hs: HardState | None = None
    entries: list[Entry] = []
    for job in jobs:
        assert job.save is not None
        h, es = job.save
        if h is not None:
            hs = h
        if es:
            first = es[0].index
            while entries and entries[-1].index >= first:
                entries.pop()
            if entries and entries[-1].index + 1 != first:
                entries = []  # truncates below what this batch wrote: write from there
            entries.extend(es)
    try:
        storage.save(hs, entries)
    except Exception as e:  # noqa: BLE001 - handed to the driver, which re-raises it
        for job in jobs:
            job.error = e


def run_job(job: StorageJob, storage: Storage) -> None:
    """Run ``job`` on ``storage``, keeping its result or its error (raised on completion)."""
    try:
        job.result = job.run(storage)
    except Exception as e:  # noqa: BLE001 - handed to the driver, which re-raises it
        job.error = e
