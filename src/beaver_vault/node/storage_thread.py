"""The storage worker of a real node: a thread of its own, with its own SQLite connection.

The driver hands it ``StorageJob``s (``storage_jobs.py``); it runs them in submission order,
consecutive saves in one transaction (group commit, at most ``MAX_SAVES_PER_COMMIT``), and hands
each finished job back to the Trio thread through ``completed`` and a wake-up. The simulator's
counterpart is ``sim/machine.py``'s ``SimWorker``.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable

import trio

from beaver_vault.node import trace
from beaver_vault.node.storage_jobs import FailGate, StorageJob, run_job, run_saves
from beaver_vault.storage.base import Storage

MAX_SAVES_PER_COMMIT = 64
# An apply of at most this many entries, handed over while the worker has nothing to do, runs at
# once on the event loop's thread (see ``ThreadWorker.submit``).
INLINE_APPLY_MAX_ENTRIES = 4
INLINE_APPLY_MAX_BYTES = 64 * 1024  # of entry data (a put's value is up to the body limit, 1 MiB)


class ThreadWorker:
    """The storage worker of a real node: one thread, its own storage (its own SQLite connection,
    opened on that thread), jobs run in submission order. Finished jobs are handed back to the
    Trio thread, in order, through ``completed`` (the processor drains it); so the event loop
    never waits for an fsync, a large apply, a compaction or a snapshot install. The one
    exception is an apply of at most ``INLINE_APPLY_MAX_ENTRIES`` light entries (puts and deletes
    of one key, ``INLINE_APPLY_MAX_BYTES`` in all) handed over while the thread is idle: it runs
    at once on the loop's thread (no fsync: applies commit with ``synchronous=NORMAL``, and
    automatic checkpoints are off meanwhile), which saves the two hand-offs that dominate it at
    low load."""

    def __init__(self, open_storage: Callable[[], Storage], name: str) -> None:
        self._open = open_storage
        self._jobs: queue.SimpleQueue[StorageJob | None] = queue.SimpleQueue()
        self.completed: list[StorageJob] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._wake: Callable[[], None] = lambda: None
        self._thread = threading.Thread(target=self._run, name=f"storage-{name}", daemon=True)
        self.storage: Storage | None = None  # the worker's own (for its counters)
        self.gate = FailGate()
        self.inline_applies = 0  # small applies run on the event loop's thread (counters)
        # Jobs handed to the thread and not yet delivered back (read and written on the loop).
        self._outstanding = 0
        self._stopping = False  # set by stop(): the thread closes its storage

    def start(self, wake: Callable[[], None]) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._wake = wake
        self._thread.start()

    def submit(self, job: StorageJob) -> None:
        """Queue ``job`` for the thread; or, for a small apply while the thread has nothing to
        do, run it at once on this (the event loop's) thread, on the worker's own connection:
        with no job outstanding the thread is waiting for the next one, and it gets none until
        this returns. Its completion is still delivered through ``completed`` and the wake-up,
        after every earlier one, so the driver sees no difference. At one client this takes two
        thread hand-offs (~0.25 ms) off every write's path; a large apply, or any apply behind
        other work, still runs on the thread."""
        if trace.on():
            hs, es = job.save if job.save is not None else (None, ())
            last = es[-1].index if es else "-"
            trace.mark("job_submit", job.name, job.seq, last, hs.commit if hs is not None else "-")
        if (
            self._outstanding == 0
            and self.storage is not None  # set by the thread once its storage is open
            and not self._stopping
            and job.name == "apply"
            and 0 < job.entries <= INLINE_APPLY_MAX_ENTRIES
            and job.data_bytes <= INLINE_APPLY_MAX_BYTES
        ):
            self.inline_applies += 1
            lent = getattr(self.storage, "lent", None)  # SQLite: no checkpoint on this thread
            with lent() if lent is not None else contextlib.nullcontext():
                self._run_one(job, self.storage)
            trace.mark("job_deliver", job.name, job.seq)
            self.completed.append(job)
            self._wake()
            return
        self._outstanding += 1
        self._jobs.put(job)

    def _run_one(self, job: StorageJob, storage: Storage) -> None:
        if self.gate.closed(job):  # the rest of a generation whose write failed
            return
        trace.mark("job_start", job.name, job.seq)
        run_job(job, storage)
        trace.mark("job_end", job.name, job.seq)
        self.gate.note([job])

    def stop(self) -> None:
        self._stopping = True  # the thread closes its storage: nothing more runs on it here
        self._jobs.put(None)

    def _run(self) -> None:
        try:
            storage = self.storage = self._open()
        except Exception as e:  # noqa: BLE001 - reported through the first job
            failed: BaseException | None = e
        else:
            failed = None
        try:
            carried: list[StorageJob | None] = []
            while True:
                job = carried.pop() if carried else self._jobs.get()
                if job is None:
                    return
                if failed is not None:
                    job.error = failed
                    self._post(job)
                    continue
                if job.save is None:
                    self._run_one(job, storage)
                    self._post(job)
                    continue
                if self.gate.closed(job):  # the rest of a generation whose write failed
                    self._post(job)
                    continue
                # Group commit: the saves queued behind this one go in the same transaction.
                batch = [job]
                while len(batch) < MAX_SAVES_PER_COMMIT:
                    try:
                        nxt = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None or nxt.save is None:
                        carried.append(nxt)
                        break
                    batch.append(nxt)
                gated = [j for j in batch[1:] if self.gate.closed(j)]
                trace.mark("job_start", "save", batch[-1].seq, len(batch))
                run_saves([j for j in batch if j not in gated], storage)
                trace.mark("job_end", "save", batch[-1].seq)
                self.gate.note(batch)
                for j in batch:
                    self._post(j)
        finally:
            if failed is None:
                storage.close()

    def _post(self, job: StorageJob) -> None:
        def deliver() -> None:
            trace.mark("job_deliver", job.name, job.seq)
            self._outstanding -= 1
            self.completed.append(job)
            self._wake()

        assert self._token is not None
        try:
            self._token.run_sync_soon(deliver)
        except trio.RunFinishedError:
            pass  # the node is shutting down: nobody waits for this completion
