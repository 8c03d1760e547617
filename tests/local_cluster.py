"""In-process clusters of real NodeRuntimes over an in-memory transport (for runtime tests
under Trio's autojump clock: no sockets, so virtual time can jump safely)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import trio

from beaver_vault.node.runtime import NodeRuntime, RuntimeOptions
from beaver_vault.raft.messages import Message
from beaver_vault.storage.memory import MemoryStorage


class Hub:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeRuntime] = {}
        self.by_address: dict[str, str] = {}
        self.cut: set[frozenset[str]] = set()
        self.down: set[str] = set()


class LocalTransport:
    def __init__(self, hub: Hub, node_id: str) -> None:
        self.hub = hub
        self.node_id = node_id
        self.peers: dict[str, str] = {}

    def send(self, msg: Message) -> None:
        addr = self.peers.get(msg.dst)
        dst = self.hub.by_address.get(addr) if addr else None
        if dst is None or dst in self.hub.down or self.node_id in self.hub.down:
            return
        if frozenset((self.node_id, dst)) in self.hub.cut:
            return
        self.hub.nodes[dst].deliver(msg)

    def set_peers(self, addresses: Mapping[str, str]) -> None:
        self.peers = dict(addresses)

    def set_cluster_id(self, cluster_id: str | None) -> None:
        pass


class LocalCluster:
    def __init__(self, nursery: trio.Nursery, **options: object) -> None:
        self.nursery = nursery
        self.options = options
        self.hub = Hub()
        self.storages: dict[str, MemoryStorage] = {}
        self.scopes: dict[str, trio.CancelScope] = {}

    async def start(self, node_id: str, bootstrap: bool) -> NodeRuntime:
        storage = self.storages.setdefault(node_id, MemoryStorage())
        addr = f"{node_id}:7000"
        rt = NodeRuntime(
            node_id=node_id,
            wall_clock_ms=lambda: 1_700_000_000_000 + int(trio.current_time() * 1000),
            storage=storage,
            options=RuntimeOptions(
                raft_address=addr,
                http_address=f"http://{node_id}:8000",
                bootstrap=bootstrap,
                seed=sum(node_id.encode()),
                **self.options,  # type: ignore[arg-type]
            ),
        )
        rt.attach_transport(LocalTransport(self.hub, node_id))
        self.hub.nodes[node_id] = rt
        self.hub.by_address[addr] = node_id
        self.hub.down.discard(node_id)
        scope = trio.CancelScope()
        self.scopes[node_id] = scope

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await rt.run(task_status=task_status)

        await self.nursery.start(run)
        return rt

    def stop(self, node_id: str) -> None:
        """Like a crash: the task is cancelled; MemoryStorage keeps what was saved."""
        self.hub.down.add(node_id)
        self.scopes[node_id].cancel()

    def leader(self) -> NodeRuntime | None:
        for nid, rt in sorted(self.hub.nodes.items()):
            if nid not in self.hub.down and rt.status().role == "leader":
                return rt
        return None

    async def wait_leader(self, exclude: str | None = None) -> NodeRuntime:
        with trio.fail_after(60):
            while True:
                ld = self.leader()
                if ld is not None and ld.node_id != exclude:
                    return ld
                await trio.sleep(0.05)


@asynccontextmanager
async def local_cluster(n: int, **options: object) -> AsyncIterator[LocalCluster]:
    async with trio.open_nursery() as nursery:
        c = LocalCluster(nursery, **options)
        first = await c.start("n1", bootstrap=True)
        await c.wait_leader()
        for i in range(2, n + 1):
            await c.start(f"n{i}", bootstrap=False)
            await first.join(f"n{i}", f"n{i}:7000", timeout_s=10)
        yield c
        nursery.cancel_scope.cancel()
