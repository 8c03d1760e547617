"""The storage worker of a real node: a thread of its own, with its own SQLite connection.

The driver hands it ``StorageJob``s (``storage_jobs.py``); it runs them in submission order,
consecutive saves in one transaction (group commit, at most ``MAX_SAVES_PER_COMMIT``), and hands
each finished job back to the Trio thread through ``completed`` and a wake-up. The simulator's
counterpart is ``sim/machine.py``'s ``SimWorker``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import trio

from beaver_vault.node import trace
from beaver_vault.node.storage_jobs import FailGate, StorageJob, run_job, run_saves
from beaver_vault.storage.base import Storage

MAX_SAVES_PER_COMMIT = 64


class ThreadWorker:
    """The storage worker of a real node: one thread, its own storage (its own SQLite connection,
    opened on that thread), jobs run in submission order. Finished jobs are handed back to the
    Trio thread, in order, through ``completed`` (the processor drains it); so the event loop
    never waits for an fsync, an apply, a compaction or a snapshot install."""

    def __init__(self, open_storage: Callable[[], Storage], name: str) -> None:
        self._open = open_storage
        self._jobs: queue.SimpleQueue[StorageJob | None] = queue.SimpleQueue()
        self.completed: list[StorageJob] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._wake: Callable[[], None] = lambda: None
        self._thread = threading.Thread(target=self._run, name=f"storage-{name}", daemon=True)
        self.storage: Storage | None = None  # the worker's own (for its counters)
        self.gate = FailGate()

    def start(self, wake: Callable[[], None]) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._wake = wake
        self._thread.start()

    def submit(self, job: StorageJob) -> None:
        if trace.on():
            hs, es = job.save if job.save is not None else (None, ())
            last = es[-1].index if es else "-"
            trace.mark("job_submit", job.name, job.seq, last, hs.commit if hs is not None else "-")
        self._jobs.put(job)

    def stop(self) -> None:
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
                if self.gate.closed(job):  # the rest of a generation whose write failed
                    self._post(job)
                    continue
                if job.save is None:
                    trace.mark("job_start", job.name, job.seq)
                    run_job(job, storage)
                    trace.mark("job_end", job.name, job.seq)
                    self.gate.note([job])
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
            self.completed.append(job)
            self._wake()

        assert self._token is not None
        try:
            self._token.run_sync_soon(deliver)
        except trio.RunFinishedError:
            pass  # the node is shutting down: nobody waits for this completion
