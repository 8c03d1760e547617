"""The thin Trio shell around the synchronous ``NodeDriver``.

SKELETON: these signatures are the contract the HTTP API codes against.

All methods that change state may raise the typed errors of ``beaver_vault.errors``:
``NotLeader(leader_id, leader_http)`` (the API forwards to ``leader_http``), ``NoLeader``,
``Overloaded``, ``Rejected`` (certainly not applied) and ``Unknown`` (may have happened).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio

from beaver_vault.kv.state import KeyRecord
from beaver_vault.raft.messages import Message
from beaver_vault.storage.base import Storage
from beaver_vault.transport.base import Transport
from beaver_vault.node.status import NodeStatus
from beaver_vault.raft.messages import Membership


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    raft_address: str  # advertised "host:port" of this node's raft listener
    http_address: str  # advertised "http://host:port" of this node's HTTP API
    bootstrap: bool = True  # empty storage: form a one-node cluster (False: wait to be adopted by a join)
    tick_ms: int = 50
    election_ticks: int = 10  # election timeout is randomised in [election_ticks, 2*election_ticks)
    heartbeat_ticks: int = 2
    max_pending: int = 10_000  # proposals + reads waiting for an outcome; beyond: Overloaded
    seed: int | None = None  # randomness for election timeouts; None: from the OS


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

    node_id: str

    def __init__(self, *, node_id: str, storage: Storage, options: RuntimeOptions) -> None:
        raise NotImplementedError

    def attach_transport(self, transport: Transport) -> None:
        raise NotImplementedError

    def deliver(self, msg: Message) -> None:
        """Called by the transport for every inbound message (sync, never blocks)."""
        raise NotImplementedError

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load state, bootstrap if asked, then tick and process until cancelled."""
        raise NotImplementedError

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
