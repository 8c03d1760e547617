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

One change is in flight at a time (the driver refuses others with ``ChangeInFlight`` or
``ConfigBusy``, counted as refused); an answer that has not come within ``CHANGE_TIMEOUT_MS``
is abandoned, as the HTTP runtime does. Changes belong to the cluster, not to the caller
(``node/membership_change.py``), and the churn tests that:

* joins of machines that never start (``ghost*``: nobody answers at that address): the driver
  drops them on its own deadline (``CHANGE_TIMEOUT_TICKS``, which world.py gives every driver);
* callers that give up early (``give_up_p``), as an HTTP client that disconnects: a join given
  up during its handshake must leave nothing in flight (else the next change would wait);
* spares powered off soon after being asked to join (``crash_spare_p``) and left off until the
  liveness phase: a learner that never catches up, which the leader must roll back. The number of voters never drops below ``min_voters`` by our hand,
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

from beaver_vault.errors import BeaverVaultError, ChangeInFlight, ChangeRolledBack, ConfigBusy
from beaver_vault.node.driver import NodeDriver, Waiter
from sim.failures import SimFailure
from sim.params import derive

if TYPE_CHECKING:
    from sim.machine import SimNode
    from sim.world import World

CHANGE_TIMEOUT_MS = 4000
# The driver's own deadline for a membership change, in ticks (world.py passes it to every
# driver): short, so that ghost joins and stuck learners are rolled back within a run.
CHANGE_TIMEOUT_TICKS = 150
GHOSTS = ("ghost1", "ghost2")
GHOST_P = 0.08
GIVE_UP_P = 0.2
CRASH_SPARE_P = 0.2


class Churn:
    def __init__(self, world: World) -> None:
        self.w = world
        self.rng = derive(world.params.seed, "churn")
        self.rng_abandon = derive(world.params.seed, "churn-abandon")  # ghosts, give-ups, power-offs
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
            "ghost_joins",
            "gave_up",
            "rolled_back",
            "spares_crashed",
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
        if self.rng_abandon.random() < GHOST_P:
            choices = ["ghost"]
        if not choices:
            return
        kind = self.rng.choice(choices)
        if kind == "ghost":
            gid = self.rng_abandon.choice(GHOSTS)
            w.stats["ghost_joins"] += 1
            self._ask(leader, "join", gid, lambda d: d.join(gid, f"{gid}:7000"), "ghost")
        elif kind == "join":
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
            if self.rng_abandon.random() < CRASH_SPARE_P:
                # Powered off soon, and off until the liveness phase: if it got as far as being
                # a learner, it never catches up and must be rolled back.
                w.queue.after(self.rng_abandon.randint(1, 400), self._power_off, node)
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
            brief = isinstance(res, (ConfigBusy, ChangeInFlight))
            w.log(f"{what}: refused, {type(res).__name__}" + ("" if brief else f": {res}"))
            return
        w.log(f"{what}: asked")
        waiter = res
        self.pending = (kind, at, at.incarnation, waiter, target + ("/" + note if note else ""))
        if waiter.done:
            w.queue.after(0, self._done, waiter)
        else:
            waiter.on_done = lambda: w.queue.after(0, self._done, waiter)
        w.queue.after(CHANGE_TIMEOUT_MS, self._timeout, waiter)
        if self.rng_abandon.random() < GIVE_UP_P:
            w.queue.after(self.rng_abandon.randint(1, CHANGE_TIMEOUT_MS // 4), self._give_up, waiter)

    def _power_off(self, node: SimNode) -> None:
        if self.w.phase == "safety" and node.driver is not None:
            self.w.stats["spares_crashed"] += 1
            self.w.crash(node, "churn: spare powered off", restart=False)

    def _give_up(self, waiter: Waiter) -> None:
        """The caller goes away (an HTTP client disconnecting): abandon its wait. A join still
        in its handshake is dropped at once; anything else goes on as the cluster's change."""
        p = self.pending
        if p is None or p[3] is not waiter:
            return
        self.pending = None
        kind, at, incarnation, _, target = p
        w = self.w
        w.stats["gave_up"] += 1
        w.log(f"{kind.upper()} {target}: the caller gave up")
        if at.driver is None or at.incarnation != incarnation or w.queue.now < at.busy_until:
            return
        node_id = target.split("/")[0]

        def give_up(d: NodeDriver) -> None:
            c = d.changes.current
            handshake = c is not None and c.kind == "join" and c.node_id == node_id and c.phase == "handshake"
            d.abandon(waiter, "the caller gave up")
            c = d.changes.current
            if handshake and c is not None and c.kind == "join" and c.node_id == node_id:
                raise SimFailure(
                    "liveness", f"{d.id}: the join of {node_id} is still in flight after its caller gave up"
                )

        w.run_on(at, give_up)

    def _done(self, waiter: Waiter) -> None:
        p = self.pending
        if p is None or p[3] is not waiter:
            return
        self.pending = None
        kind, at, _, _, target = p
        w = self.w
        if waiter.error is not None:
            if isinstance(waiter.error, ChangeRolledBack):
                w.stats["rolled_back"] += 1
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
