"""The membership change tracker (node/membership_change.py) on one real driver, in ticks:
a join given up in its handshake frees the way at once, a join nobody answers is dropped on
the tracker's own deadline, a learner that never catches up is rolled back."""

from __future__ import annotations

import random
from typing import Any

import pytest

from beaver_vault.errors import ChangeInFlight, ChangeRolledBack
from beaver_vault.node.driver import DriverOptions, NodeDriver
from beaver_vault.raft.config import RaftConfig
from beaver_vault.raft.messages import AdoptRequest, AdoptResponse, Message, ProbeRequest, ProbeResponse
from beaver_vault.storage.memory import MemoryStorage

TIMEOUT_TICKS = 20


class Outbox:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, msg: Message) -> None:
        self.sent.append(msg)

    def set_peers(self, addresses: Any) -> None:
        pass

    def set_cluster_id(self, cluster_id: str | None) -> None:
        pass


def leader() -> tuple[NodeDriver, Outbox, list[tuple[str, dict[str, Any]]]]:
    out = Outbox()
    d = NodeDriver(
        "n1",
        MemoryStorage(),
        out,
        raft_config=RaftConfig(election_ticks=10, heartbeat_ticks=2),
        rng=random.Random(1),
        options=DriverOptions(
            raft_address="n1:7000", change_timeout_ticks=TIMEOUT_TICKS, catchup_bytes_per_tick=1000, tick_ms=50
        ),
    )
    events: list[tuple[str, dict[str, Any]]] = []
    d.changes.on_event = lambda kind, fields: events.append((kind, fields))
    d.start(bootstrap=True)
    d.process()
    assert d.core.role == "leader"
    return d, out, events


def test_a_join_given_up_in_its_handshake_frees_the_way_at_once() -> None:
    d, _, _ = leader()
    w = d.join("ghost", "ghost:7000")
    d.process()
    for _ in range(3):
        d.tick()
    with pytest.raises(ChangeInFlight) as refused:
        d.join("other", "other:7000")
    info = refused.value.change
    assert (info["kind"], info["node_id"], info["phase"], info["age_ms"]) == ("join", "ghost", "handshake", 150)
    assert info["caller_waiting"] is True
    d.abandon(w, "the caller went away")
    assert d.changes.current is None and d.members.join_op is None
    d.join("other", "other:7000")  # accepted at once
    assert d.changes.describe() is not None


def test_a_join_nobody_answers_is_dropped_on_its_own_deadline() -> None:
    d, _, events = leader()
    w = d.join("ghost", "ghost:7000")
    for _ in range(TIMEOUT_TICKS):
        d.tick()
        d.process()
    assert isinstance(w.error, ChangeRolledBack) and "did not answer the join handshake" in str(w.error)
    assert d.changes.current is None and [m.id for m in d.core.membership.members] == ["n1"]
    assert events[-1][0] == "change_rolled_back"


def test_a_learner_that_never_catches_up_is_rolled_back() -> None:
    d, out, events = leader()
    w = d.join("mute", "mute:7000")
    probe = next(m for m in out.sent if isinstance(m, ProbeRequest))
    d.receive(ProbeResponse("mute", "n1", probe.nonce, "mute", "", "", True))
    d.process()
    adopt = next(m for m in out.sent if isinstance(m, AdoptRequest))
    d.receive(AdoptResponse("mute", "n1", adopt.nonce, True))
    d.process()
    member = d.core.membership.get("mute")
    assert member is not None and not member.voter
    c = d.changes.current
    assert c is not None and c.phase == "learner" and c.bytes_to_send > 0
    # The deadline: the base plus its data at 1000 bytes per tick.
    deadline = TIMEOUT_TICKS + (c.bytes_to_send + 999) // 1000
    for _ in range(deadline - 1):
        d.tick()
        d.process()
    assert not w.done and d.core.membership.get("mute") is not None
    d.tick()
    d.process()
    assert isinstance(w.error, ChangeRolledBack) and "did not catch up" in str(w.error)
    assert d.core.membership.get("mute") is None and "mute" in d.core.membership.retired
    (rb,) = d.changes.recent_rollbacks()
    assert rb["node_id"] == "mute" and "did not catch up within" in rb["reason"]
    assert ("learner_rolled_back", {"node_id": "mute", "reason": rb["reason"]}) in events
    assert d.changes.current is None  # the rollback committed (a cluster of one)
    assert d.changes.what_if("join", "next")["allowed"] is True
