"""Membership churn during the safety phase: joins, removals, re-joins, leadership transfers.

Theory of operation. Like the fault classes, churn is a self-rescheduling event with
exponentially distributed gaps (``Params.churn_every_ms``), drawn from the ``churn`` generator.
Each step asks the current leader, through the production driver, for ONE of:

* join: a spare machine (started pristine, ``start(bootstrap=False)``) or a removed one, which
  re-joins with a wiped disk (``wipe_rejoin_p``; a brand-new machine under the old id) or with
  its old data; the driver probes, adopts, adds a learner and answers once it is a voter;
* remove: any member, the leader itself included (it hands over after the change commits);
  sometimes ``force=True``, which skips the driver's reachable-quorum guard;
* transfer: leadership to a random voter or to the driver's default choice.

One change is in flight at a time from here (the driver refuses others with ``ConfigBusy``,
counted as refused); an answer that has not come within ``CHANGE_TIMEOUT_MS`` is abandoned,
as the HTTP runtime does. The number of voters never drops below ``min_voters`` by our hand,
so a quorum of live voters stays reachable often enough for the liveness phase to succeed.
A machine's disk is wiped only once its removal is committed (it is in no committed
configuration and not in the leader's). Even so, a wiped machine must not come back under its
old id: an out-of-date member whose configuration still counts that id could win an election
with the vote the wiped machine has forgotten (seed 217535826 found exactly that). The driver
therefore refuses such a join (``Membership.retired``); the simulator keeps asking, and checks
that the refusal holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from beaver_vault.errors import BeaverVaultError, ConfigBusy
from beaver_vault.node.driver import NodeDriver, Waiter
from sim.params import derive

if TYPE_CHECKING:
    from sim.world import SimNode, World

CHANGE_TIMEOUT_MS = 4000


class Churn:
    def __init__(self, world: World) -> None:
        self.w = world
        self.rng = derive(world.params.seed, "churn")
        self.pending: tuple[str, SimNode, int, Waiter, str] | None = None  # kind, at node, incarnation, waiter, target
        self.min_voters = 3 if world.params.nodes >= 5 else 2
        self.was_member: set[str] = set()
        for name in (
            "joins",
            "rejoins",
            "removals",
            "leader_removals",
            "forced_removals",
            "transfers",
            "churn_refused",
        ):
            world.stats[name] = 0

    def start(self) -> None:
        if self.w.params.churn_every_ms:
            self._later()

    def _later(self) -> None:
        gap = 1 + int(self.rng.expovariate(1.0 / self.w.params.churn_every_ms))
        self.w.queue.after(gap, self._step)

    def _step(self) -> None:
        w = self.w
        if w.phase != "safety":
            return
        self._later()
        if self.pending is not None:
            return
        leader = w.leader()
        if leader is None or leader.driver is None or w.queue.now < leader.busy_until:
            return
        core = leader.driver.core
        membership = core.membership
        committed = w.config.ids
        self.was_member.update(committed)
        outsiders = [n for n in w.nodes if n.id not in membership.ids and n.id not in committed]
        voters = membership.voters
        choices: list[str] = []
        if outsiders:
            choices += ["join"] * 4
        if len(voters) > self.min_voters:
            choices += ["remove"] * 3
        if len(voters) > 1:
            choices += ["transfer"] * 3
        if not choices:
            return
        kind = self.rng.choice(choices)
        if kind == "join":
            self._join(leader, self.rng.choice(outsiders))
        elif kind == "remove":
            ids = list(membership.ids)
            target = leader.id if self.rng.random() < 0.3 else self.rng.choice(ids)
            force = self.rng.random() < w.params.force_remove_p
            self._ask(leader, "remove", target, lambda d: d.remove(target, force), "forced" if force else "")
        else:
            others = [v for v in voters if v != leader.id]
            target_or_none = self.rng.choice(others) if others and self.rng.random() < 0.6 else None
            self._ask(leader, "transfer", target_or_none or "-", lambda d: d.transfer(target_or_none), "")

    def _join(self, leader: SimNode, node: SimNode) -> None:
        w = self.w
        note = ""
        if node.id not in self.was_member:
            note = "spare"  # a machine that was never a member: pristine (or adopted by an earlier try)
            if node.incarnation == 0:
                w.boot(node, bootstrap=False)
            elif node.driver is None:
                w.restart(node)
        else:
            note = "rejoin"
            if self.rng.random() < w.params.wipe_rejoin_p:
                w.crash(node, "power off to wipe", restart=False)
                w.wipe(node)
                w.boot(node, bootstrap=False)
                note = "rejoin-wiped"
            elif node.driver is None:
                w.restart(node)
        if leader.driver is None:
            return
        self._ask(leader, "join", node.id, lambda d: d.join(node.id, node.addr), note)

    def _ask(self, at: SimNode, kind: str, target: str, fn: Callable[[NodeDriver], Waiter], note: str) -> None:
        w = self.w
        res = w.call(at, fn)
        what = f"{kind.upper()} {target}" + (f" ({note})" if note else "") + f" via {at.id}"
        if res is None:
            return
        if isinstance(res, BeaverVaultError):
            w.stats["churn_refused"] += 1
            w.log(f"{what}: refused, {type(res).__name__}" + ("" if isinstance(res, ConfigBusy) else f": {res}"))
            return
        w.log(f"{what}: asked")
        waiter = res
        self.pending = (kind, at, at.incarnation, waiter, target + ("/" + note if note else ""))
        if waiter.done:
            w.queue.after(0, self._done, waiter)
        else:
            waiter.on_done = lambda: w.queue.after(0, self._done, waiter)
        w.queue.after(CHANGE_TIMEOUT_MS, self._timeout, waiter)

    def _done(self, waiter: Waiter) -> None:
        p = self.pending
        if p is None or p[3] is not waiter:
            return
        self.pending = None
        kind, at, _, _, target = p
        w = self.w
        if waiter.error is not None:
            w.log(f"{kind.upper()} {target}: failed, {type(waiter.error).__name__}: {waiter.error}")
            return
        w.log(f"{kind.upper()} {target}: done")
        if kind == "join":
            w.stats["joins"] += 1
            if "rejoin" in target:
                w.stats["rejoins"] += 1
        elif kind == "remove":
            w.stats["removals"] += 1
            if target.split("/")[0] == at.id:
                w.stats["leader_removals"] += 1
            if target.endswith("/forced"):
                w.stats["forced_removals"] += 1
        else:
            w.stats["transfers"] += 1

    def _timeout(self, waiter: Waiter) -> None:
        p = self.pending
        if p is None or p[3] is not waiter:
            return
        self.pending = None
        kind, at, incarnation, _, target = p
        self.w.log(f"{kind.upper()} {target}: no answer, abandoned")
        d: NodeDriver | None = at.driver
        if d is not None and at.incarnation == incarnation and self.w.queue.now >= at.busy_until:
            self.w.run_on(at, lambda drv: drv.abandon(waiter))
