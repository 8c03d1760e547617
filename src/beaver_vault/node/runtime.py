"""The thin Trio shell around the synchronous ``NodeDriver``.

SKELETON: these signatures are the contract the HTTP API codes against.

All methods that change state may raise the typed errors of ``beaver_vault.errors``:
``NotLeader(leader_id, leader_http)`` (the API forwards to ``leader_http``), ``NoLeader``,
``Overloaded``, ``Rejected`` (certainly not applied) and ``Unknown`` (may have happened).
"""

from __future__ import annotations

from typing import Any

from beaver_vault.kv.state import KeyRecord
from beaver_vault.node.status import NodeStatus
from beaver_vault.raft.messages import Membership


class NodeRuntime:
    node_id: str

    async def write(self, command: bytes, *, timeout_s: float) -> dict[str, Any]:
        """Propose ``command`` (from ``beaver_vault.kv.commands``); return the state machine's
        result once it is committed on a majority and applied here. Leader only."""
        raise NotImplementedError

    async def read_barrier(self, *, timeout_s: float) -> int:
        """Linearizable read barrier (ReadIndex confirmed by a quorum): returns once this node
        has applied everything committed before the call; then ``get_local`` is linearizable."""
        raise NotImplementedError

    def get_local(self, key: str) -> KeyRecord | None:
        """The locally applied value (a stale read unless preceded by ``read_barrier``)."""
        raise NotImplementedError

    def status(self) -> NodeStatus:
        raise NotImplementedError

    async def join(self, node_id: str, raft_address: str, *, timeout_s: float) -> Membership:
        """Leader only: probe the node at ``raft_address``, adopt it if pristine, add it."""
        raise NotImplementedError

    async def remove(self, node_id: str, *, timeout_s: float) -> Membership:
        raise NotImplementedError
