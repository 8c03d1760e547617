"""The API of a real 3-node cluster (``tests/local_cluster.py``: in-process runtimes over an
in-memory transport, virtual time). Each node has its own app; forwarded requests travel
between the apps in-process (an httpx transport that routes by the advertised
``http://<node>:8000`` address to that node's app), so follower -> leader forwarding of
membership routes, conditional and idempotent writes is exercised end to end.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from local_cluster import LocalCluster, local_cluster
from quart.typing import TestClientProtocol as Client
from quart_trio import QuartTrio

from beaver_vault.api import ApiOptions, create_app
from beaver_vault.node.runtime import NodeRuntime

KV = "/api/v1/kv"


class Router(httpx.AsyncBaseTransport):
    """Sends a request for ``http://<node>:8000`` to that node's app, in-process."""

    def __init__(self, apps: dict[str, QuartTrio]) -> None:
        self.routes = {f"{node}:8000": httpx.ASGITransport(app=app) for node, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = self.routes.get(request.url.netloc.decode())
        if route is None:
            raise httpx.ConnectError(f"no route to {request.url.netloc.decode()}", request=request)
        return await route.handle_async_request(request)


@dataclass
class ApiCluster:
    cluster: LocalCluster
    apps: dict[str, QuartTrio]
    clients: dict[str, Client]

    def leader(self) -> NodeRuntime:
        rt = self.cluster.leader()
        assert rt is not None
        return rt

    def follower(self) -> str:
        lead = self.leader().node_id
        return next(n for n in sorted(self.clients) if n != lead)


@asynccontextmanager
async def api_cluster(n: int = 3) -> AsyncIterator[ApiCluster]:
    async with local_cluster(n) as cluster, AsyncExitStack() as stack:
        apps = {nid: create_app(rt, ApiOptions(request_timeout_s=10)) for nid, rt in cluster.hub.nodes.items()}
        clients = {}
        for nid, app in apps.items():
            app.extensions["beaver_vault.forwarder"].transport = Router(apps)
            test_app = await stack.enter_async_context(app.test_app())
            clients[nid] = test_app.test_client()
        await cluster.wait_leader()
        yield ApiCluster(cluster, apps, clients)


async def body_json(response: Any) -> Any:
    return json.loads(await response.get_data(as_text=True))


async def test_nodes_from_a_follower_are_the_leaders_view(autojump_clock: trio.testing.MockClock) -> None:
    async with api_cluster() as c:
        follower = c.follower()
        r = await c.clients[follower].get("/api/v1/raft/nodes")
        assert r.status_code == 200, await r.get_data(as_text=True)
        assert r.headers["X-Beaver-Vault-Forwarded-To"] == c.leader().node_id
        nodes = (await body_json(r))["nodes"]
        assert sorted(n["id"] for n in nodes) == ["n1", "n2", "n3"]
        roles = {n["id"]: n["role"] for n in nodes}
        assert roles[c.leader().node_id] == "leader" and list(roles.values()).count("follower") == 2
        for node in nodes:
            assert {
                "voter",
                "raft_address",
                "http_address",
                "match_index",
                "lag",
                "last_contact_ms",
                "reachable",
            } <= set(node)


async def test_transfer_leadership_answers_once_the_target_leads(autojump_clock: trio.testing.MockClock) -> None:
    async with api_cluster() as c:
        old = c.leader().node_id
        target = next(n for n in ("n1", "n2", "n3") if n != old)
        via = next(n for n in ("n1", "n2", "n3") if n not in (old, target))
        r = await c.clients[via].post("/api/v1/raft/transfer-leadership", json={"NodeID": target})
        assert r.status_code == 200, await r.get_data(as_text=True)
        assert await body_json(r) == {"leader": target}
        assert c.cluster.hub.nodes[target].status().role == "leader"
        # No body: the leader picks a voter itself.
        r = await c.clients[old].post("/api/v1/raft/transfer-leadership")
        assert r.status_code == 200, await r.get_data(as_text=True)
        new = (await body_json(r))["leader"]
        assert new != target and c.cluster.hub.nodes[new].status().role == "leader"


@pytest.mark.parametrize("body", [b"[]", b'{"NodeID": 5}', b'{"NodeID": ""}', b"{nope"])
async def test_transfer_leadership_bad_bodies_are_400(autojump_clock: trio.testing.MockClock, body: bytes) -> None:
    async with api_cluster() as c:
        r = await c.clients[c.leader().node_id].post("/api/v1/raft/transfer-leadership", data=body)
        assert r.status_code == 400


async def test_remove_refuses_to_lose_the_quorum_unless_forced(autojump_clock: trio.testing.MockClock) -> None:
    async with api_cluster() as c:
        lead = c.leader().node_id
        a, b = (n for n in ("n1", "n2", "n3") if n != lead)
        c.cluster.stop(b)
        # Wait until the leader itself reports b unreachable (what the quorum check reads).
        with trio.fail_after(30):
            while any(n["id"] == b and n["reachable"] for n in c.leader().nodes()):
                await trio.sleep(0.05)
        # Without a: the voters would be {lead, b}, and only lead is reachable.
        r = await c.clients[a].post("/api/v1/raft/remove", json={"NodeID": a})
        assert r.status_code == 409, await r.get_data(as_text=True)
        assert "Force" in (await body_json(r))["error"]
        r = await c.clients[lead].post("/api/v1/raft/remove", json={"NodeID": b, "Force": True})
        assert r.status_code == 200, await r.get_data(as_text=True)
        assert sorted(m["id"] for m in (await body_json(r))["members"]) == sorted([lead, a])


async def test_remove_force_must_be_a_boolean(autojump_clock: trio.testing.MockClock) -> None:
    async with api_cluster() as c:
        r = await c.clients[c.leader().node_id].post("/api/v1/raft/remove", json={"NodeID": "n2", "Force": "yes"})
        assert r.status_code == 400


async def test_join_through_a_follower_answers_after_promotion(autojump_clock: trio.testing.MockClock) -> None:
    async with api_cluster() as c:
        await c.cluster.start("n4", bootstrap=False)
        r = await c.clients[c.follower()].post("/api/v1/raft/join", json={"NodeID": "n4", "RaftAddress": "n4:7000"})
        assert r.status_code == 200, await r.get_data(as_text=True)
        members = {m["id"]: m for m in (await body_json(r))["members"]}
        assert members["n4"]["voter"] is True


async def test_conditional_and_idempotent_writes_through_a_follower(autojump_clock: trio.testing.MockClock) -> None:
    async with api_cluster() as c:
        client = c.clients[c.follower()]
        headers = {"Idempotency-Key": "f-1", "X-Beaver-Vault-Client": "tester"}
        first = await client.put(f"{KV}/k", data=b'"v1"', headers=headers)
        assert first.status_code == 200
        rev = (await body_json(first))["revision"]
        assert first.headers["ETag"] == f'"{rev}"'
        again = await client.put(f"{KV}/k", data=b'"v1"', headers=headers)
        assert again.headers["Idempotency-Replayed"] == "true"
        assert await body_json(again) == await body_json(first)
        r = await client.put(f"{KV}/k", data=b'"v2"', headers={"If-Match": f'"{rev + 50}"'})
        assert r.status_code == 412 and (await body_json(r))["current_revision"] == rev
        r = await client.put(f"{KV}/k", data=b'"v2"', headers={"If-None-Match": "*"})
        assert r.status_code == 412
        r = await client.get(f"{KV}/k?meta=true")
        assert (await body_json(r))["value"] == "v1" and (await body_json(r))["version"] == 1


async def test_reads_on_a_follower_report_consistency_and_index(autojump_clock: trio.testing.MockClock) -> None:
    async with api_cluster() as c:
        follower = c.follower()
        client = c.clients[follower]
        rev = (await body_json(await client.put(f"{KV}/k", data=b"1")))["revision"]
        r = await client.get(f"{KV}/k")  # served by the follower (ReadIndex) or forwarded
        assert r.status_code == 200
        assert r.headers["X-Beaver-Vault-Consistency"] == "linearizable"
        assert int(r.headers["X-Beaver-Vault-Applied-Index"]) >= rev
        listing = await client.get(f"{KV}?prefix=k")
        assert (await body_json(listing))["revision"] >= rev
        with trio.fail_after(10):
            while c.cluster.hub.nodes[follower].applied_index() < rev:
                await trio.sleep(0.01)
        r = await client.get(f"{KV}/k?consistency=stale")
        assert r.headers["X-Beaver-Vault-Consistency"] == "stale"
        assert "X-Beaver-Vault-Forwarded-To" not in r.headers
        assert int(r.headers["X-Beaver-Vault-Applied-Index"]) == c.cluster.hub.nodes[follower].applied_index()


async def test_a_follower_serves_watches_from_its_applied_state(autojump_clock: trio.testing.MockClock) -> None:
    async with api_cluster() as c:
        follower = c.follower()
        leader_client = c.clients[c.leader().node_id]
        async with c.clients[follower].websocket("/api/v1/watch/ws", query_string={"prefix": "w/"}) as ws:
            with trio.fail_after(10):
                while not c.cluster.hub.nodes[follower].watch_hub.watchers:
                    await trio.sleep(0.01)
            revs = [
                (await body_json(await leader_client.put(f"{KV}/w/{i}", data=str(i))))["revision"] for i in range(3)
            ]
            got = [json.loads(await ws.receive()) for _ in range(3)]
        assert [(e["key"], e["revision"]) for e in got] == [(f"w/{i}", rev) for i, rev in enumerate(revs)]
        assert not c.cluster.hub.nodes[c.leader().node_id].watch_hub.watchers  # not forwarded
