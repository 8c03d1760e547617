"""The API over a real single-node ``NodeRuntime`` (memory storage, no transport, virtual time).

The same routes and bad-input cases as ``test_api.py``, with the real driver underneath:
"nothing was written" is checked on the node's own ``last_log_index``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from test_api import BAD_BODIES, BAD_JOINS

from beaver_vault.node.runtime import NodeRuntime


@pytest.fixture
async def runtime(node_runtime: NodeRuntime) -> NodeRuntime:
    return node_runtime  # the real single-node runtime (conftest.py), not the FakeRuntime default


async def body_json(response: Any) -> Any:
    return json.loads(await response.get_data(as_text=True))


async def test_seed_usage(client: Client) -> None:
    r = await client.put(
        "/api/v1/kv/mykey", data='"myvalue"', headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 200
    written = await body_json(r)
    assert written["created"] is True
    r = await client.get("/api/v1/kv/mykey")
    assert await r.get_data(as_text=True) == '"myvalue"'
    assert r.headers["ETag"] == f'"{written["revision"]}"'
    r = await client.get("/api/v1/kv/mykey?consistency=stale")
    assert await r.get_data(as_text=True) == '"myvalue"'
    r = await client.delete("/api/v1/kv/mykey")
    assert (await body_json(r))["deleted"] is True
    assert (await client.get("/api/v1/kv/mykey")).status_code == 404


async def test_status(client: Client) -> None:
    body = await body_json(await client.get("/api/v1/status"))
    assert body["node_id"] == "node1" and body["role"] == "leader" and body["leader_id"] == "node1"
    assert [m["id"] for m in body["members"]] == ["node1"]


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_bad_bodies_append_nothing(client: Client, runtime: NodeRuntime, body: bytes) -> None:
    assert (await client.put("/api/v1/kv/k", data='"old"')).status_code == 200
    before = runtime.status().last_log_index
    r = await client.put("/api/v1/kv/k", data=body)
    assert r.status_code == 400
    assert (await body_json(r))["outcome"] == "not_applied"
    assert runtime.status().last_log_index == before
    assert await body_json(await client.get("/api/v1/kv/k")) == "old"


async def test_oversized_body_and_key_append_nothing(client: Client, runtime: NodeRuntime) -> None:
    before = runtime.status().last_log_index
    assert (await client.put("/api/v1/kv/k", data=b"1" * (1024 * 1024 + 1))).status_code == 413
    assert (await client.put("/api/v1/kv/" + "k" * 1025, data=b"1")).status_code == 400
    assert (await client.put("/api/v1/kv/", data=b"1")).status_code == 400
    assert runtime.status().last_log_index == before


@pytest.mark.parametrize("body", BAD_JOINS.values(), ids=BAD_JOINS.keys())
async def test_bad_joins_append_nothing(client: Client, runtime: NodeRuntime, body: bytes) -> None:
    before = runtime.status()
    r = await client.post("/api/v1/raft/join", data=body)
    assert r.status_code == 400
    after = runtime.status()
    assert after.last_log_index == before.last_log_index and after.members == before.members
