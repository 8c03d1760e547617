"""The thin Trio shell around the synchronous ``NodeDriver``.

Three things happen here and nothing else: a ticker turns seconds into Raft ticks; one
processing task runs ``driver.process()`` whenever something arrived (inbound messages,
proposals, ticks), so every client write that arrived meanwhile shares one fsync and one
AppendRequest per follower (group commit), and ends each round with the transport's ``flush``
(the round's frames for idle connections written at once); and request handlers wait for their ``Waiter``
with a deadline, an expired deadline being an unknown outcome.

All methods that change state may raise the typed errors of ``beaver_vault.errors``:
``NotLeader(leader_id, leader_http)`` (the API forwards to ``leader_http``), ``NoLeader``,
``Overloaded``, ``Rejected`` (certainly not applied) and ``Unknown`` (may have happened).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from beaver_vault.errors import (
    BeaverVaultError,
    ChangeInFlight,
    ConfigBusy,
    HistoryCompacted,
    InvariantViolation,
    NoLeader,
    Overloaded,
)
from beaver_vault.kv import commands
from beaver_vault.kv.state import KeyRecord
from beaver_vault.node import trace
from beaver_vault.node.driver import DriverOptions, NodeDriver, Waiter
from beaver_vault.node.events import EventJournal, StatusObserver
from beaver_vault.node.housekeeping import run_housekeeping
from beaver_vault.node.readiness import ReadinessTracker
from beaver_vault.node.status import NodeStatus
from beaver_vault.node.storage_thread import ThreadWorker
from beaver_vault.node.watch import DEFAULT_BUFFER_BYTES, Event, WatchCompacted, Watcher, WatchHub
from beaver_vault.raft.config import RaftConfig
from beaver_vault.raft.messages import Membership, Message
from beaver_vault.storage.base import Storage
from beaver_vault.storage.timings import Durations
from beaver_vault.transport.base import Transport

log = logging.getLogger("beaver_vault.node")


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    raft_address: str  # advertised "host:port" of this node's raft listener
    http_address: str  # advertised "http://host:port" of this node's HTTP API
    bootstrap: bool = True  # empty storage: form a one-node cluster (False: wait to be adopted by a join)
    tick_ms: int = 50
    election_ticks: int = 10  # election timeout is randomised in [election_ticks, 2*election_ticks)
    heartbeat_ticks: int = 2
    max_pending: int = 10_000  # proposals + reads waiting for an outcome; beyond: Overloaded
    snapshot_threshold: int = 10_000  # log entries kept before compacting into a snapshot
    log_cache_bytes: int | None = 16 * 1024 * 1024  # recent log entries kept in memory (None: all)
    snapshot_threshold_bytes: int = 32 * 1024 * 1024  # ... or bytes of entry data
    max_pending_bytes: int = 64 * 1024 * 1024  # bytes of writes waiting for an outcome; beyond: Overloaded
    expire_interval_ms: int = 250  # how often the leader looks for keys past their TTL
    seed: int | None = None  # randomness for election timeouts; None: from the OS
    # A membership change's own deadline (join handshake, a configuration's commit, a learner's
    # catch-up), plus for a learner the time to receive its data at the minimum rate.
    learner_timeout_s: float = 30.0
    learner_min_rate_bytes_per_s: int = 1024 * 1024


class _NullTransport:
    def send(self, msg: Message) -> None:
        pass

    def set_peers(self, addresses: Any) -> None:
        pass

    def set_cluster_id(self, cluster_id: str | None) -> None:
        pass


class NodeRuntime:
    """Composition (see cli.py)::

        runtime = NodeRuntime(node_id="node1", storage=SQLiteStorage(path), options=RuntimeOptions(...))
        transport = TcpTransport(..., deliver=runtime.deliver)
        runtime.attach_transport(transport)
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run)
            await nursery.start(runtime.run)
            ... hypercorn.trio.serve(create_app(runtime, api_options), ...)
    """

    def __init__(
        self,
        *,
        node_id: str,
        storage: Storage,
        options: RuntimeOptions,
        wall_clock_ms: Callable[[], int] | None = None,
        worker_storage: Callable[[], Storage] | None = None,
    ) -> None:
        """``worker_storage`` opens a second handle on the same data for the storage worker
        thread (SQLite: another connection to the file); None runs storage work inline."""
        self.node_id = node_id
        # Wall-clock milliseconds (injectable for tests on virtual time).
        self._wall_clock_ms = wall_clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.options = options
        self.storage = storage
        rng = random.Random(options.seed) if options.seed is not None else random.Random()
        self.driver = NodeDriver(
            node_id,
            storage,
            _NullTransport(),
            raft_config=RaftConfig(
                election_ticks=options.election_ticks,
                heartbeat_ticks=options.heartbeat_ticks,
                log_cache_bytes=options.log_cache_bytes,
            ),
            rng=rng,
            options=DriverOptions(
                raft_address=options.raft_address,
                http_address=options.http_address,
                max_pending=options.max_pending,
                snapshot_threshold=options.snapshot_threshold,
                snapshot_threshold_bytes=options.snapshot_threshold_bytes,
                max_pending_bytes=options.max_pending_bytes,
                tick_ms=options.tick_ms,
                change_timeout_ticks=max(1, math.ceil(options.learner_timeout_s * 1000 / options.tick_ms)),
                catchup_bytes_per_tick=max(1, options.learner_min_rate_bytes_per_s * options.tick_ms // 1000),
            ),
        )
        self.driver.changes.on_event = self._on_change_event
        self._worker = ThreadWorker(worker_storage, node_id) if worker_storage is not None else None
        self._wake = trio.Event()
        self._started = False
        self._flush: Callable[[], None] = lambda: None  # set by attach_transport
        self.readiness = ReadinessTracker()  # the leader's announced commit index, for GET /ready
        self.watch_hub = WatchHub(0)
        self.driver.on_applied = self._on_applied
        self.driver.on_restore = lambda index: self.watch_hub.reset(index)
        # What happened to this node's Raft state, for operators (GET /api/v1/events, the UI).
        self.events = EventJournal(clock_ms=self._wall_clock_ms)
        self._observer = StatusObserver(self.events)
        self._observed: tuple[Any, ...] = ()
        self.lateness = Durations("How late the event loop's housekeeping ticker woke up")

    @property
    def disk_storage(self) -> Storage:
        """The storage that does the writes: the worker thread's own, else the node's."""
        worker = self._worker
        return worker.storage if worker is not None and worker.storage is not None else self.storage

    def attach_transport(self, transport: Transport) -> None:
        self.driver.transport = trace.TracingTransport(transport) if trace.on() else transport
        # A transport that keeps frames aside until a batch of events is handled (TcpTransport:
        # written at once on idle connections) is flushed after every processing round.
        self._flush = getattr(transport, "flush", None) or (lambda: None)
        trace.mark("node", self.node_id)

    def deliver(self, msg: Message) -> None:
        """Called by the transport for every inbound message (sync, never blocks)."""
        if not self._started:
            return
        self.readiness.saw(msg)
        if trace.on():
            trace.mark("recv", *trace.describe(msg))
        self.driver.receive(msg)
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load state, bootstrap if asked, then tick and process until cancelled."""
        self.driver.start(self.options.bootstrap)
        self.watch_hub = WatchHub(self.driver.applied_index)
        worker = self._worker
        if worker is not None:
            # Opened after start(): the worker's handle sees whatever start() wrote.
            worker.start(self._wake_processor)
            self.driver.set_worker(worker)
        self.driver.process()
        self._flush()
        self.readiness.processed(self.driver.core.role, self.driver.core.commit, self.driver.core.term)
        self._observe()
        self._started = True
        log.info("%s: started (cluster %s, term %d)", self.node_id, self.driver.cluster_id, self.driver.core.term)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._ticker)
                nursery.start_soon(self._expirer)
                nursery.start_soon(run_housekeeping, self)  # loop lateness, log garbage (housekeeping.py)
                task_status.started()
                await self._processor()
        finally:
            if worker is not None:
                worker.stop()

    def _wake_processor(self) -> None:
        self._wake.set()

    async def _ticker(self) -> None:
        period = self.options.tick_ms / 1000
        while True:
            await trio.sleep(period)
            self.driver.tick()
            self._wake.set()

    async def _expirer(self) -> None:
        """The leader deletes keys whose TTL has passed, through the log (so every node and
        every watcher sees the delete). The expiry time was stamped by the leader that
        accepted the put; "now" here is this leader's clock, stamped into the expire command,
        and the state machine deletes a key only if its stored expiry is not later than that."""
        while True:
            await trio.sleep(self.options.expire_interval_ms / 1000)
            if self.driver.core.role != "leader":
                continue
            now = self.now_ms()
            keys = self.storage.expired_keys(now, 500)
            if not keys:
                continue
            try:
                await self.write(commands.expire(keys, now), timeout_s=5)
            except BeaverVaultError as e:
                log.info("%s: expiring %d keys: %s (will retry)", self.node_id, len(keys), e)

    async def _processor(self) -> None:
        last_role = ""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            try:
                worker = self._worker
                if worker is not None and worker.completed:
                    done, worker.completed = worker.completed, []
                    for job in done:
                        self.driver.storage_done(job)
                if trace.on():
                    commit = self.driver.core.commit
                    self.driver.process()
                    if self.driver.core.commit != commit:
                        trace.mark("commit", self.driver.core.commit)
                else:
                    self.driver.process()
                self._flush()
            except InvariantViolation:
                log.critical("%s: invariant violated; stopping the node", self.node_id, exc_info=True)
                raise
            self._observe()
            role = self.driver.core.role
            self.readiness.processed(role, self.driver.core.commit, self.driver.core.term)
            if role != last_role:
                term = self.driver.core.term
                fields = {"role": role, "term": term}
                log.info("%s: now %s in term %d", self.node_id, role, term, extra={"event": "role_changed", "fields": fields})
                last_role = role
            # Let request handlers that were woken run (and propose more) before the next batch.
            await trio.sleep(0)

    def _observe(self) -> None:
        """Record Raft events (node/events.py) when something they are made of changed."""
        d = self.driver
        core = d.core
        c = d.counters
        key = (
            core.role,
            core.term,
            core.leader_id,
            getattr(core, "membership_index", 0),
            d.cluster_id,
            c.get("snapshots_sent", 0),
            c.get("snapshots_installed", 0),
            c.get("compactions", 0),
        )
        if key == self._observed:
            return
        self._observed = key
        self._observer.observe(d.status(), c, membership_index=key[3], senders=tuple(getattr(d, "senders", ())))

    async def _wait(self, w: Waiter, timeout_s: float, what: str) -> Any:
        if not w.done:
            done = trio.Event()
            w.on_done = done.set
            self._wake.set()
            try:
                with trio.move_on_after(timeout_s):
                    await done.wait()
            finally:
                # Timed out, or cancelled (the HTTP caller disconnected): stop waiting, so a
                # membership change in its handshake is dropped and nothing waits on a ghost.
                if not w.done:
                    self.driver.abandon(w, f"{what} timed out after {timeout_s:g}s")
                    self._wake.set()
        if w.error is not None:
            raise w.error
        return w.result

    def _call(self, fn: Any, *args: Any) -> Waiter:
        if not self._started:
            raise NoLeader("node is starting")
        try:
            w: Waiter = fn(*args)
        except ChangeInFlight as e:
            # Say since when on the wall clock (the driver counts ticks).
            age = e.change.get("age_ms")
            if isinstance(age, int):
                e.change["started_at_ms"] = self.now_ms() - age
            raise
        self._wake.set()
        return w

    async def write(self, command: bytes, *, timeout_s: float) -> dict[str, Any]:
        """Propose ``command`` (from ``beaver_vault.kv.commands``); return the state machine's
        result once it is committed on a majority and applied here. Leader only."""
        result: dict[str, Any] = await self.wait(self.start_write(command), "write", timeout_s=timeout_s)
        return result

    async def read_barrier(self, *, timeout_s: float) -> int:
        """Linearizable read barrier (ReadIndex confirmed by a quorum): returns once this node
        has applied everything committed before the call; then ``get_local`` is linearizable."""
        index: int = await self.wait(self.start_read(), "read", timeout_s=timeout_s)
        return index

    # The same without a task waiting (the pipelined server's requests, ``api/pipelined.py``):
    # the caller sets ``on_done`` and calls ``abandon`` when it stops waiting (a timeout, a
    # cancel, its connection gone), as ``_wait`` does.

    def start_write(self, command: bytes) -> Waiter:
        w = self._call(self.driver.propose, command)
        trace.mark("propose", w.index)
        return w

    def start_read(self) -> Waiter:
        return self._call(self.driver.read)

    async def wait(self, w: Waiter, what: str, *, timeout_s: float) -> Any:
        """Wait for a waiter of ``start_write``/``start_read`` (``what``: write or read)."""
        result = await self._wait(w, timeout_s, what)
        if what == "write":
            trace.mark("answer", w.index)
        return result

    def answered(self, w: Waiter) -> None:
        """A write of ``start_write`` was answered without ``wait`` (for the write-path trace)."""
        trace.mark("answer", w.index)

    def abandon(self, w: Waiter, detail: str) -> None:
        """Stop waiting for ``w``: a write's outcome becomes unknown (``Unknown``), a read fails."""
        if not w.done:
            self.driver.abandon(w, detail)
            self._wake.set()

    def get_local(self, key: str) -> KeyRecord | None:
        """The locally applied value (a stale read unless preceded by ``read_barrier``)."""
        return self.driver.get(key)

    def status(self) -> NodeStatus:
        return self.driver.status()

    async def _when_not_busy(self, fn: Any, *args: Any, busy_wait_s: float) -> Waiter:
        """A change refused for a passing reason (a new leader has not committed its first
        entry, a configuration entry not yet committed) is retried for up to ``busy_wait_s``,
        then refused (409). Another change in flight is refused at once (``ChangeInFlight``)."""
        with trio.move_on_after(busy_wait_s):
            while True:
                try:
                    return self._call(fn, *args)
                except ConfigBusy:
                    await trio.sleep(self.options.tick_ms / 1000)
        return self._call(fn, *args)

    async def join(
        self,
        node_id: str,
        raft_address: str,
        *,
        timeout_s: float,
        force: bool = False,
        update_address: bool = False,
        busy_wait_s: float = 2.0,
    ) -> Membership:
        """Leader only: probe the node at ``raft_address``, adopt it if pristine, add it as a
        learner, and answer once it has caught up and been promoted to voter. The change goes on
        without the caller (see ``node/membership_change.py``). An existing member's address
        changes only with ``update_address`` (else ``AddressUpdateNotRequested``, 409)."""
        w = await self._when_not_busy(
            self.driver.join, node_id, raft_address, force, update_address, busy_wait_s=busy_wait_s
        )
        m: Membership = await self._wait(w, timeout_s, "join")
        return m

    async def remove(
        self, node_id: str, *, timeout_s: float, force: bool = False, busy_wait_s: float = 2.0
    ) -> Membership:
        """Leader only. Refused (409) if the remaining voters would not have a reachable quorum,
        unless ``force``. Removing the leader hands leadership over once it is committed."""
        w = await self._when_not_busy(self.driver.remove, node_id, force, busy_wait_s=busy_wait_s)
        m: Membership = await self._wait(w, timeout_s, "remove")
        return m

    # ------------------------------------------------------------------ reads beyond one key

    def now_ms(self) -> int:
        """This node's wall clock in ms. The leader stamps TTL expiries and idempotency times
        with it at propose time; applying nodes never read their own clock."""
        return self._wall_clock_ms()

    def counters(self) -> dict[str, int]:
        """Counters for /metrics: the driver's (proposals, reads, overloaded, snapshots, ...)
        as ``node_<name>``, and the transport's (sent, received, every kind of counted drop)
        as ``transport_<name>`` when the transport offers ``statistics()``."""
        out = {f"node_{k}": v for k, v in self.driver.counters.items()}
        # Membership changes started, rolled back, refused (in flight / quorum at risk).
        out.update({f"node_membership_{k}": v for k, v in self.driver.changes.counters.items()})
        stats = getattr(self.driver.transport, "statistics", None)
        if stats is not None:
            snapshot = stats()
            if dataclasses.is_dataclass(snapshot) and not isinstance(snapshot, type):
                for k, v in dataclasses.asdict(snapshot).items():
                    if isinstance(v, int):
                        out[f"transport_{k}"] = v
        if self._worker is not None:  # small applies the idle storage thread left to the loop
            out["storage_applies_inline"] = self._worker.inline_applies
        return out

    def applied_index(self) -> int:
        return self.driver.applied_index

    def auth_get(self, kind: str, name: str) -> str | None:
        """One locally applied auth record (``kv.auth``: user, role, token, join)."""
        return self.storage.auth_get(kind, name)

    def auth_scan(self, kind: str) -> list[tuple[str, str]]:
        """Every locally applied auth record of ``kind``: (name, JSON document), by name."""
        return self.storage.auth_scan(kind)

    def scan(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
        """Locally applied keys with ``prefix`` greater than ``after``, in key order (call
        ``read_barrier`` first for a linearizable listing)."""
        return self.storage.scan(prefix, after, limit)

    def count(self, prefix: str, page: int = 1000) -> int:
        n, after = 0, None
        while True:
            rows = self.storage.scan(prefix, after, page)
            n += len(rows)
            if len(rows) < page:
                return n
            after = rows[-1][0]

    # ------------------------------------------------------------------ watches

    def _on_applied(self, index: int, result: dict[str, Any] | None) -> None:
        trace.mark("applied", index)
        events: list[Event] = []
        if isinstance(result, dict):
            raw = result.get("events")
            if isinstance(raw, list):
                events = raw
        self.watch_hub.publish(index, events)
        if isinstance(result, dict) and result.get("op") == "auth":
            self.watch_hub.auth_changed()

    def watch(
        self, prefix: str, from_revision: int | None, *, buffer_max: int = 1000, bytes_max: int = DEFAULT_BUFFER_BYTES
    ) -> Watcher:
        """Subscribe to applied changes under ``prefix``: events with revision >= from_revision
        (default: changes after now). Raises HistoryCompacted if that history is no longer kept,
        Overloaded if too many watchers. Read with ``next_events``; ``close()`` when done."""
        try:
            return self.watch_hub.subscribe(prefix, from_revision, buffer_max, bytes_max)
        except WatchCompacted as e:
            raise HistoryCompacted(str(e), e.requested, e.first_available) from e
        except OverflowError as e:
            raise Overloaded(str(e)) from e

    async def next_events(self, watcher: Watcher, auth_seen: int | None = None) -> list[Event]:
        """Wait for the next events of ``watcher``; [] with ``watcher.closed_reason`` set once
        it was closed (fell behind, state replaced). With ``auth_seen`` (the hub's
        ``auth_generation`` the caller last checked its credentials at), also return, maybe [],
        as soon as an auth record has changed since: the caller re-checks before going on."""
        hub = self.watch_hub
        while not watcher.buffer and watcher.closed_reason is None and auth_seen in (None, hub.auth_generation):
            ready = trio.Event()
            watcher.on_ready = ready.set
            await ready.wait()
        return watcher.take()

    # ------------------------------------------------------------------ cluster management (issue 4)

    def nodes(self) -> list[dict[str, Any]]:
        """Leader only (raises NotLeader otherwise, so the API forwards): one dict per member
        with id, role (leader/follower/learner), voter, raft_address, http_address,
        match_index, lag, last_contact_ms (None if never), reachable."""
        return self.driver.nodes(self.options.tick_ms)

    async def transfer_leadership(self, node_id: str | None, *, timeout_s: float, force: bool = False) -> str:
        """Leader only: bring ``node_id`` (default: the most up-to-date voter) up to date and
        hand over; returns the new leader's id once it leads. Refused (409) if the target is
        not reachable, unless ``force``."""
        w = self._call(self.driver.transfer, node_id, force)
        new_leader: str = await self._wait(w, timeout_s, "leadership transfer")
        return new_leader

    # ------------------------------------------------------------------ membership changes (issue 14)

    def what_if(self, kind: str, node_id: str | None) -> dict[str, Any]:
        """Leader only: what ``kind`` (join/remove/transfer) of ``node_id`` would do, changing
        nothing (``raft/whatif.py``; the dry-run answer of the API)."""
        if not self._started:
            raise NoLeader("node is starting")
        if kind == "transfer" and node_id is None:
            node_id = self.driver.default_transfer_target()
        return self.driver.changes.what_if(kind, node_id)

    def membership_activity(self) -> dict[str, Any]:
        """The change in flight (None) and the recent rollbacks, with wall-clock times."""
        changes = self.driver.changes
        now = self.now_ms()
        current = changes.describe()
        if current is not None:
            current["started_at_ms"] = now - current["age_ms"]
        rollbacks = [{**r, "at_ms": now - r["age_ms"]} for r in changes.recent_rollbacks()]
        return {"change": current, "recent_rollbacks": rollbacks}

    def _on_change_event(self, kind: str, fields: dict[str, Any]) -> None:
        """Membership change events (node/membership_change.py): all to the log; rollbacks also
        to the Raft event journal (``change_rolled_back``: the UI's event feed)."""
        level = logging.WARNING if kind in ("learner_rolled_back", "change_rolled_back") else logging.INFO
        log.log(level, "%s: membership %s: %s", self.node_id, kind.replace("_", " "), fields)
        term = self.driver.core.term
        if kind == "learner_rolled_back":
            self.events.record(
                "change_rolled_back", term=term, what="learner", node_id=fields.get("node_id"), reason=fields.get("reason")
            )
        elif kind == "change_rolled_back":
            change = fields.get("change") or {}
            self.events.record(
                "change_rolled_back",
                term=term,
                what="join handshake",
                node_id=change.get("node_id"),
                reason=fields.get("reason"),
            )
