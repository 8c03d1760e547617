"""Re-pointing a member's raft address is an explicit request (issue 11, items 3 and 8).

A join naming an existing member at another address is refused 409 (nothing proposed)
unless the body says ``"UpdateAddress": true``; then the member's address changes through one
configuration entry. ``UpdateAddress`` for a node that is not a member is a 404. Over the real
single-node runtime (conftest's ``node_runtime``) and over a 3-node in-process cluster.
"""

from __future__ import annotations

import json

import pytest
from local_cluster import local_cluster
from quart.typing import TestClientProtocol as Client

from beaver_vault.errors import AddressInUse, AddressUpdateNotRequested, NotAMember
from beaver_vault.node.runtime import NodeRuntime


@pytest.fixture
async def runtime(node_runtime: NodeRuntime) -> NodeRuntime:
    return node_runtime


async def post_join(client: Client, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    r = await client.post("/api/v1/raft/join", data=json.dumps(body))
    return r.status_code, json.loads(await r.get_data(as_text=True))


def address_of(rt: NodeRuntime, node_id: str) -> str | None:
    m = rt.status().members
    return next((x.raft_address for x in m if x.id == node_id), None)


async def test_repointing_without_the_flag_is_409_and_changes_nothing(client: Client, runtime: NodeRuntime) -> None:
    before = runtime.status()
    status, body = await post_join(client, {"NodeID": "node1", "RaftAddress": "127.0.0.1:7999"})
    assert status == 409
    assert body["outcome"] == "not_applied"
    assert "127.0.0.1:7000" in str(body["error"]) and '"UpdateAddress": true' in str(body["error"])
    after = runtime.status()
    assert (after.last_log_index, after.commit_index) == (before.last_log_index, before.commit_index)
    assert address_of(runtime, "node1") == "127.0.0.1:7000"


async def test_repointing_with_the_flag_changes_the_address(client: Client, runtime: NodeRuntime) -> None:
    status, body = await post_join(
        client, {"NodeID": "node1", "RaftAddress": "127.0.0.1:7999", "UpdateAddress": True}
    )
    assert status == 200, body
    assert [m["raft_address"] for m in body["members"]] == ["127.0.0.1:7999"]  # type: ignore[union-attr,index]
    assert address_of(runtime, "node1") == "127.0.0.1:7999"


async def test_the_same_address_again_is_a_no_op(client: Client, runtime: NodeRuntime) -> None:
    before = runtime.status().last_log_index
    status, _ = await post_join(client, {"NodeID": "node1", "RaftAddress": "127.0.0.1:7000"})
    assert status == 200
    assert runtime.status().last_log_index == before


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"NodeID": "stranger", "RaftAddress": "127.0.0.1:7001", "UpdateAddress": True}, 404, "stranger is not a member"),
        ({"NodeID": "node1", "RaftAddress": "127.0.0.1:7999", "UpdateAddress": "true"}, 400, "'UpdateAddress' must be"),
        ({"NodeID": "node1", "RaftAddress": "127.0.0.1:7999", "updateAddress": True}, 400, "unknown field"),
    ],
)
async def test_bad_update_requests(
    client: Client, runtime: NodeRuntime, body: dict[str, object], status: int, words: str
) -> None:
    before = runtime.status().last_log_index
    got, answer = await post_join(client, body)
    assert got == status and words in str(answer["error"]), answer
    assert runtime.status().last_log_index == before
    assert address_of(runtime, "node1") == "127.0.0.1:7000"


async def test_in_a_cluster_only_the_explicit_request_moves_a_member() -> None:
    async with local_cluster(3) as c:
        leader = await c.wait_leader()
        other = next(n for n in ("n1", "n2", "n3") if n != leader.node_id)
        third = next(n for n in ("n1", "n2", "n3") if n not in (leader.node_id, other))
        with pytest.raises(AddressUpdateNotRequested):
            await leader.join(other, "elsewhere:7000", timeout_s=5)
        with pytest.raises(AddressInUse):  # onto another member's address: refused even when asked
            await leader.join(other, f"{third}:7000", timeout_s=5, update_address=True)
        with pytest.raises(NotAMember):
            await leader.join("n9", "n9:7000", timeout_s=5, update_address=True)
        assert address_of(leader, other) == f"{other}:7000"
        c.hub.by_address["elsewhere:7000"] = other  # the member really moved
        membership = await leader.join(other, "elsewhere:7000", timeout_s=5, update_address=True)
        assert membership.get(other) is not None and membership.get(other).raft_address == "elsewhere:7000"  # type: ignore[union-attr]
        assert membership.get(other).voter  # type: ignore[union-attr]
