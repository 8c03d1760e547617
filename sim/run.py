"""One simulated run, start to verdict: formation, safety phase, liveness phase, history check.

``run(params)`` returns an ``Outcome``; it never prints except through ``out`` (the trace with
``verbose``), so the swarm can run thousands of seeds in one process. Any exception that is not
a ``SimFailure`` is reported as a crash of kind ``crash`` (a bug in the code under test or here).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from beaver_vault.checker import check_history
from beaver_vault.node.driver import Waiter
from sim.churn import Churn
from sim.failures import SimFailure
from sim.faults import Faults
from sim.hostile import Hostile
from sim.params import Params
from sim.workload import Workload
from sim.world import World

FORMATION_MS = 10_000
CHECK_EVERY_MS = 50
MAX_EVENTS = 200_000
CHECKER_STEP_BUDGET = 300_000  # per key: decides every ordinary history in well under a second
# An undecided history is never a pass: it is checked again with this budget per key (steps,
# not seconds, so the verdict is the same on any machine), and a history still undecided fails
# the seed with kind "undecided" (exit 14). 20M steps is about 8 s of search on one key.
RECHECK_STEP_BUDGET = 20_000_000


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # ok, crash, safety, linearizability, liveness
    detail: str
    verdict: str  # linearizable / not-linearizable / unknown / - (not checked)
    summary: str
    rechecked: bool = False  # the first checker budget did not decide the history


class _Formation:
    """Grow the cluster from n1 by joining the others one at a time (the production handshake)."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.next = 1
        self.size = world.params.nodes  # the spares past it join later, through churn
        self.done = self.size == 1

    def step(self) -> None:
        w = self.w
        if self.next >= self.size:
            self.done = True
            return
        node = w.nodes[self.next]
        leader = w.leader()
        if leader is None or w.busy(leader, self.step):
            if leader is None:
                w.queue.after(20, self.step)
            return
        res = w.call(leader, lambda d: d.join(node.id, node.addr))
        if not isinstance(res, Waiter):
            w.queue.after(50, self.step)
            return
        w.log(f"JOIN {node.id} via {leader.id}")
        waiter = res
        if waiter.done:
            self._done(waiter)
        else:
            waiter.on_done = lambda: w.queue.after(0, self._done, waiter)

    def _done(self, waiter: Waiter) -> None:
        if waiter.error is None:
            self.w.log(f"JOINED {self.w.nodes[self.next].id}")
            self.next += 1
            self.w.queue.after(0, self.step)
        else:
            self.w.queue.after(50, self.step)


def _run_until(w: World, until: int, stop: Callable[[], bool] | None = None) -> None:
    """Run events up to ``until``, checking ``stop`` every CHECK_EVERY_MS of virtual time."""
    q = w.queue
    while q.now < until:
        step_end = min(until, q.now + CHECK_EVERY_MS)
        while q.run_next(step_end):
            pass
        q.now = step_end
        if q.popped > MAX_EVENTS:
            # Typical runs take ~10k events; a storm (two nodes bouncing a message forever)
            # is a liveness failure, and must not stall a swarm.
            raise SimFailure("liveness", f"event storm: more than {MAX_EVENTS} events by {q.now} ms")
        if stop is not None and stop():
            return


def run(
    params: Params,
    out: TextIO | None = None,
    verbose: bool = False,
    history_path: str | None = None,
    timeline_path: str | None = None,
    make_workload: Callable[[World], Workload] | None = None,
    label: str = "",
) -> Outcome:
    """One run. ``make_workload`` replaces the built-in clients (``sim.product``: a user's
    workload file); ``label`` names it in the timeline's title."""
    w = World(params, out, verbose)
    try:
        outcome = _run(w, history_path, timeline_path, make_workload, label)
    finally:
        w.close()
    return outcome


def _run(
    w: World,
    history_path: str | None,
    timeline_path: str | None,
    make_workload: Callable[[World], Workload] | None,
    label: str,
) -> Outcome:
    if timeline_path is not None:
        w.marks = []
    wl = make_workload(w) if make_workload is not None else Workload(w)
    faults = Faults(w)
    churn = Churn(w)
    verdict = "-"
    rechecked = False
    try:
        try:
            _phases(w, wl, faults, churn)
            finish = getattr(wl, "finish", None)
            if finish is not None:
                finish()  # a user workload: its end-of-run check, and its history for the checker
            w.log("CHECK history")
            result = check_history(wl.history, step_budget=CHECKER_STEP_BUDGET)
            if result.verdict == "unknown":
                w.log(f"CHECK undecided within {CHECKER_STEP_BUDGET} steps per key: rechecking")
                rechecked = True
                result = check_history(wl.history, step_budget=RECHECK_STEP_BUDGET)
            verdict = result.verdict
            if verdict == "not-linearizable":
                detail = result.detail + ("\n" + result.explanation if result.explanation else "")
                raise SimFailure("linearizability", detail)
            if verdict == "unknown":
                raise SimFailure(
                    "undecided",
                    f"the checker could not decide the history, even with {RECHECK_STEP_BUDGET} steps per key: "
                    f"{result.detail}",
                )
        finally:
            if history_path is not None:
                wl.write_history(history_path)
    except SimFailure as f:
        outcome = Outcome(f.kind, f.detail, verdict, _summary(w, wl, verdict), rechecked)
    except Exception as e:  # the code under test (or the simulator) blew up
        tb = traceback.format_exception(type(e), e, e.__traceback__)
        detail = f"{type(e).__name__}: {e}\n" + "".join(tb[-6:]).rstrip()
        outcome = Outcome("crash", detail, verdict, _summary(w, wl, verdict), rechecked)
    else:
        outcome = Outcome("ok", "", verdict, _summary(w, wl, verdict), rechecked)
    if timeline_path is not None:
        from sim.timeline import write_timeline

        events = getattr(wl, "events", wl.history)
        write_timeline(
            timeline_path,
            w.params,
            outcome.kind,
            outcome.detail,
            events,
            w.marks or [],
            label,
            end_ms=w.queue.now,
            highlight=events is wl.history,
        )
    return outcome


def _phases(w: World, wl: Workload, faults: Faults, churn: Churn) -> None:
    p = w.params
    # Formation: no faults, n1 bootstraps, the rest start pristine and are joined one by one.
    # Spares (past p.nodes) stay powered off until churn joins them.
    w.boot(w.nodes[0], bootstrap=True)
    for n in w.nodes[1 : p.nodes]:
        w.boot(n, bootstrap=False)
    form = _Formation(w)
    w.queue.after(0, form.step)
    _run_until(w, FORMATION_MS, lambda: form.done)
    if not form.done:
        raise SimFailure(
            "liveness", f"the cluster did not form within {FORMATION_MS} ms ({form.next} of {p.nodes} nodes)"
        )
    # Safety: faults and clients.
    w.phase = "safety"
    w.log("PHASE safety")
    faults.start()
    churn.start()
    hostile = Hostile(w)  # keeps striking through the liveness phase: it must not stop progress
    hostile.start()
    wl.start()
    _run_until(w, w.queue.now + p.safety_ms)
    # Liveness: heal everything and demand progress within a bounded number of ticks.
    w.phase = "liveness"
    w.log("PHASE liveness")
    wl.stop()
    faults.stop()
    w.network.calm()
    w.slow_sync_p = 0.0
    for n in w.nodes:
        if n.driver is None and n.incarnation > 0:
            w.restart(n)  # removed machines too: they must not disrupt the cluster
    start = w.queue.now
    deadline = start + p.liveness_ticks * p.tick_ms
    wl.liveness_write(deadline)
    _run_until(w, deadline, lambda: wl.liveness_done and w.converged() is None)
    why = w.converged()
    if not wl.liveness_done:
        raise SimFailure("liveness", f"a fresh write did not commit within {p.liveness_ticks} ticks after healing")
    if why is not None:
        raise SimFailure("liveness", f"no convergence within {p.liveness_ticks} ticks after healing: {why}")
    w.log(f"CONVERGED after {w.queue.now - start} ms")


def _summary(w: World, wl: Workload, verdict: str) -> str:
    s = w.stats
    net = w.network.stats
    return (
        f"time={w.queue.now}ms events={w.queue.popped} ops={wl.invoked} ok={wl.counts['ok']} "
        f"fail={wl.counts['fail']} info={wl.counts['info']} elections={s['elections']} "
        f"crashes={s['crashes']} partitions={s['partitions']} pauses={s['pauses']} "
        f"msgs={net['sent']} lost={net['lost']} dup={net['duplicated']} committed={w.last_committed} "
        f"joins={s['joins']} rejoins={s['rejoins']} removals={s['removals']} "
        f"leader_removals={s['leader_removals']} forced_removals={s['forced_removals']} "
        f"transfers={s['transfers']} churn_refused={s['churn_refused']} "
        f"compactions={s['compactions']} snapshots_sent={s['snapshots_sent']} "
        f"snapshots_installed={s['snapshots_installed']} install_crashes={s['install_crashes']} "
        f"snapshot_restarts={s['snapshot_restarts']} follower_reads={wl.stats['follower_reads']} "
        f"retries={wl.stats['retries']} dup_suppressed={wl.stats['dup_suppressed']} "
        f"storage={w.params.storage} disk_rollbacks={s['disk_rollbacks']} log_reads={s['log_reads']} "
        f"members={','.join(w.config.ids)} history={verdict} "
        f"hostile={s.get('hostile_frames', 0)}/{s.get('hostile_delivered', 0)}"
    )
