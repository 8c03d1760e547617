"""The simulated network: per-message delay, loss, duplication, reordering and partitions.

Every message is an event on the heap, due at ``departure + delay`` where departure is the
moment the sender's process call would really have sent it (after the syncs that came before
it in the same ``process()``; see ``world.SimNode.sync_delay_ms``). A message held back by a
delay spike lands after messages sent later: that is reordering. Partitions are a set of
blocked directed links, consulted when a message *arrives* (so a partition also eats what was
already in flight); a symmetric partition blocks both directions, a one-way cut only one.

Like the TCP transport, a node only sends to addresses it was given (``set_peers``), frames
carry the sender's cluster id, and Raft messages from another (or no) cluster are dropped.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from beaver_vault.raft.messages import Message, NodeId

if TYPE_CHECKING:
    from sim.events import EventQueue
    from sim.params import Params


class Network:
    def __init__(self, queue: EventQueue, params: Params, rng: random.Random) -> None:
        self.queue = queue
        self.rng = rng
        self.delay_min_ms = params.delay_min_ms
        self.delay_max_ms = params.delay_max_ms
        self.loss = params.loss
        self.dup = params.dup
        self.spike_p = params.spike_p
        self.spike_max_ms = params.spike_max_ms
        self.blocked: set[tuple[NodeId, NodeId]] = set()
        self.deliver: Callable[[Message, str | None], None] = lambda m, c: None
        self.stats = {"sent": 0, "lost": 0, "duplicated": 0, "unknown_peer": 0}

    def heal(self) -> None:
        self.blocked.clear()

    def calm(self) -> None:
        """The liveness phase: no more loss, duplication or spikes (delays stay)."""
        self.loss = self.dup = self.spike_p = 0.0

    def _delay(self) -> int:
        d = self.rng.randint(self.delay_min_ms, self.delay_max_ms)
        if self.spike_p and self.rng.random() < self.spike_p:
            d += self.rng.randint(1, self.spike_max_ms)
        return d

    def send(self, msg: Message, cluster_id: str | None, departure_ms: int, peers: Mapping[NodeId, str]) -> None:
        self.stats["sent"] += 1
        if msg.dst not in peers:
            self.stats["unknown_peer"] += 1
            return
        if self.loss and self.rng.random() < self.loss:
            self.stats["lost"] += 1
            return
        self.queue.at(departure_ms + self._delay(), self.deliver, msg, cluster_id)
        if self.dup and self.rng.random() < self.dup:
            self.stats["duplicated"] += 1
            self.queue.at(departure_ms + self._delay(), self.deliver, msg, cluster_id)


class SimTransport:
    """One incarnation's transport (``transport.base.Transport``): hands messages to the network,
    and gives the world a crash point right after each send."""

    def __init__(self, network: Network, departure: Callable[[], int], after_send: Callable[[Message], None]) -> None:
        self.network = network
        self.departure = departure
        self.after_send = after_send
        self.peers: dict[NodeId, str] = {}
        self.cluster_id: str | None = None

    def send(self, msg: Message) -> None:
        self.network.send(msg, self.cluster_id, self.departure(), self.peers)
        self.after_send(msg)

    def set_peers(self, addresses: Mapping[NodeId, str]) -> None:
        self.peers = dict(addresses)

    def set_cluster_id(self, cluster_id: str | None) -> None:
        self.cluster_id = cluster_id
