"""The transport contract the node driver uses (sync, never blocks).

Raft tolerates loss, so ``send`` drops (and counts) rather than wait when a peer's queue is
full or the peer is unreachable. Inbound messages are delivered by the transport's owner
(the Trio runtime, or the simulator's network) to ``NodeDriver.receive``.

Frames carry the sender's cluster id. Raft messages from another cluster are dropped and
counted; handshake messages (probe/adopt, see ``raft.messages``) pass whatever the id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from beaver_vault.raft.messages import Message, NodeId


class Transport(Protocol):
    def send(self, msg: Message) -> None:
        """Queue ``msg`` for ``msg.dst``; never blocks, never raises for network trouble."""
        ...

    def set_peers(self, addresses: Mapping[NodeId, str]) -> None:
        """The raft addresses ("host:port") of every node this node may talk to."""
        ...

    def set_cluster_id(self, cluster_id: str | None) -> None:
        """The cluster id stamped on outgoing frames and required on inbound Raft frames."""
        ...
