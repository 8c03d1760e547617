"""The runtime's background chores that are not Raft: measuring how late the event loop is,
and deleting the log rows compaction left behind, a small batch at a time.

Theory of operation: one Trio task wakes every ``period_s``. How late it wakes (the time
between when it asked to wake and when it ran) is the event loop's lateness: anything that
holds the loop (a long fsync, a big apply, a slow handler) shows up here, and ``/metrics``
exports it as a histogram (``beaver_vault_event_loop_lateness_seconds``). Every
``gc_every`` wakes it hands the storage worker a job that deletes one batch of compacted log
rows (``storage/log_gc.py``: bounded rows and bytes, its own short transaction), so a compaction of
thousands of large entries is spread over many short steps instead of one long stop. Storages
without garbage (memory) have no ``collect_log_garbage`` and are left alone; a node whose disk
refused a write (``node/disk_guard.py``) skips the collection until it recovers.

Like ``runtime.py`` this is part of the Trio shell (``tests/test_layering.py`` exempts both).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from beaver_vault.node.runtime import NodeRuntime

PERIOD_S = 0.02
GC_EVERY = 5  # wakes between two batches of log garbage (0.1 s)


async def run_housekeeping(runtime: NodeRuntime, *, period_s: float = PERIOD_S, gc_every: int = GC_EVERY) -> None:
    collect = callable(getattr(runtime.storage, "collect_log_garbage", None))
    gc_job = 0  # the last collection's storage job (one at a time)
    wakes = 0
    expected = trio.current_time() + period_s
    while True:
        await trio.sleep_until(expected)
        now = trio.current_time()
        runtime.lateness.observe(max(0.0, now - expected))
        expected = now + period_s
        wakes += 1
        driver = runtime.driver
        if collect and wakes % gc_every == 0 and not driver.disk.suspended and driver.completed(gc_job):
            # A storage job like any write: on the worker's connection, the one writer.
            gc_job = driver.submit("log-gc", lambda s: s.collect_log_garbage(), lambda _: None)  # type: ignore[attr-defined]
