"""Operations routes: ``GET /health``, ``GET /ready`` and ``GET /api/v1/backup``.

Theory of operation: all three are answered by the node itself, without a round trip to the
leader (a backup may take a read barrier first, as any linearizable read does).

* ``/health`` (liveness): the process answers and its storage answers a read. 200
  ``{"status": "ok", ...}``, else 503 ``{"status": "failing", "reasons": [...]}``.
* ``/ready`` (readiness, for load balancers and orchestrators): 200 ``{"ready": true, ...}``
  when ALL of: this node belongs to a cluster and knows a leader; it has applied what the
  leader had committed when it last spoke to this node (``node.readiness``: the highest commit
  index the current leader announced in its appends and heartbeats, or a snapshot it streams,
  counted once processed); it is not
  shutting down; its data directory takes a small write (a probe file written and fsynced at
  most once per second from a worker thread, the result cached in between). Else 503 with
  every failing check in ``reasons``. Both carry ``Cache-Control: no-store``; a 503 carries
  ``Retry-After: 1``.
* ``/api/v1/backup``: see ``backup_routes.py`` (registered from here).

``begin_shutdown(app)`` (called by the CLI when a stop was requested, before the HTTP server
drains) makes ``/ready`` answer 503 "shutting down" from then on.

The fast path (``fast.py``) only takes ``/api/v1/kv/...``: these paths always reach Quart.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from quart import Response
from quart_trio import QuartTrio

from beaver_vault import __version__
from beaver_vault.api import backup_routes
from beaver_vault.api.context import ApiContext
from beaver_vault.api.errors import RETRY_AFTER_S, json_response
from beaver_vault.node.readiness import ReadinessTracker

EXTENSION = "beaver_vault.ops"
PROBE_FILE = ".ready-probe"
PROBE_INTERVAL_S = 1.0  # the data directory is written at most this often, whatever the request rate
NO_STORE = {"Cache-Control": "no-store"}


class DiskProbe:
    """Can this node write to its data directory? A 16-byte file written and fsynced, at most
    once per ``interval_s`` (concurrent callers share one probe), in a worker thread."""

    def __init__(self, directory: Path | None, interval_s: float = PROBE_INTERVAL_S) -> None:
        self.directory = directory
        self.interval_s = interval_s
        self._checked_at: float | None = None
        self._problem: str | None = None
        self._lock = trio.Lock()
        self.probes = 0  # how many times the disk was actually written (tests, cheapness)

    async def problem(self) -> str | None:
        """None if the last probe (at most ``interval_s`` old) wrote fine, else why not."""
        if self.directory is None:
            return None  # no data directory (in-memory storage): nothing to check
        async with self._lock:
            now = trio.current_time()
            if self._checked_at is None or now - self._checked_at >= self.interval_s:
                self._problem = await trio.to_thread.run_sync(self._probe)
                self._checked_at = trio.current_time()
                self.probes += 1
            return self._problem

    def _probe(self) -> str | None:
        assert self.directory is not None
        path = self.directory / PROBE_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, f"{time.time_ns():016x}".encode()[:16])
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            return f"data directory {self.directory} is not writable: {e.strerror or e}"
        return None


@dataclass(slots=True)
class OpsState:
    probe: DiskProbe
    started: float = field(default_factory=time.monotonic)
    shutting_down: bool = False


def begin_shutdown(app: QuartTrio) -> None:
    """From now on ``/ready`` answers 503 (the node is stopping)."""
    state = app.extensions.get(EXTENSION)
    if isinstance(state, OpsState):
        state.shutting_down = True


def data_directory(runtime: Any) -> Path | None:
    """The directory of the node's storage file, if its storage has one (SQLite does)."""
    path = getattr(getattr(runtime, "storage", None), "path", None)
    if isinstance(path, str) and path and path != ":memory:":
        return Path(path).resolve().parent
    return None


def register(app: QuartTrio, ctx: ApiContext) -> None:
    runtime = ctx.runtime
    state = OpsState(DiskProbe(data_directory(runtime)))
    app.extensions[EXTENSION] = state
    backup_routes.register(app, ctx)

    @app.route("/health", methods=["GET"])
    async def health() -> Response:
        body: dict[str, Any] = {
            "status": "ok",
            "node_id": runtime.node_id,
            "version": __version__,
            "uptime_s": round(time.monotonic() - state.started, 3),
        }
        try:
            runtime.scan("", None, 0)  # one indexed query on the node's own connection
        except Exception as e:  # noqa: BLE001 - any failure of the storage is the answer
            body.update(status="failing", reasons=[f"storage does not answer: {type(e).__name__}: {e}"])
            return json_response(body, status=503, headers={**NO_STORE, "Retry-After": RETRY_AFTER_S})
        return json_response(body, headers=NO_STORE)

    @app.route("/ready", methods=["GET"])
    async def ready() -> Response:
        st = runtime.status()
        reasons: list[str] = []
        if st.cluster_id is None:
            reasons.append("not a member of a cluster yet (waiting to be joined)")
        elif st.leader_id is None:
            reasons.append("no known leader")
        tracker = getattr(runtime, "readiness", None)
        if isinstance(tracker, ReadinessTracker):
            catch_up = tracker.catch_up(st.applied_index)
            leader_commit: int | None = catch_up.leader_commit_index
            if st.leader_id is not None and not catch_up.caught_up:
                reasons.append(
                    f"applied index {st.applied_index} is behind the leader's commit index {catch_up.leader_commit_index}"
                    if catch_up.leader_commit_index
                    else "not heard from the leader yet"
                )
        else:  # a runtime without a tracker (a test double): its own commit index is all it knows
            leader_commit = st.commit_index
            if st.applied_index < st.commit_index:
                reasons.append(f"applied index {st.applied_index} is behind the commit index {st.commit_index}")
        if state.shutting_down:
            reasons.append("shutting down")
        disk = await state.probe.problem()
        if disk is not None:
            reasons.append(disk)
        body = {
            "ready": not reasons,
            "node_id": st.node_id,
            "role": st.role,
            "term": st.term,
            "leader_id": st.leader_id,
            "applied_index": st.applied_index,
            "leader_commit_index": leader_commit,
            "reasons": reasons,
        }
        if reasons:
            return json_response(body, status=503, headers={**NO_STORE, "Retry-After": RETRY_AFTER_S})
        return json_response(body, headers=NO_STORE)
