"""The key-value API beyond plain get/put/delete, over a real single-node ``NodeRuntime``
(memory storage, virtual time): revisions and meta, conditional writes, TTLs, idempotent
replays, listings, prefix deletes, transactions, consistency headers and /metrics.

"Nothing changed" is checked on the key itself (value and revision), and "nothing was
proposed" on the node's ``last_log_index``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from beaver_vault.api import ApiOptions, create_app
from beaver_vault.node.runtime import NodeRuntime

KV = "/api/v1/kv"


@pytest.fixture
async def runtime(node_runtime: NodeRuntime) -> NodeRuntime:
    return node_runtime  # the real single-node runtime (conftest.py), not the FakeRuntime default


async def body_json(response: Any) -> Any:
    return json.loads(await response.get_data(as_text=True))


async def put(client: Client, key: str, value: Any, headers: dict[str, str] | None = None, query: str = "") -> Any:
    return await client.put(f"{KV}/{key}{query}", data=json.dumps(value), headers=headers or {})


async def meta(client: Client, key: str) -> dict[str, Any]:
    r = await client.get(f"{KV}/{key}?meta=true")
    assert r.status_code == 200, await r.get_data(as_text=True)
    return await body_json(r)  # type: ignore[no-any-return]


async def assert_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, await response.get_data(as_text=True)
    body = await body_json(response)
    assert isinstance(body["error"], str) and body["error"]
    assert body["outcome"] == "not_applied"
    return body  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- revisions, meta, read headers


async def test_meta_and_etag_follow_every_write(client: Client) -> None:
    r1 = await body_json(await put(client, "k", {"a": 1}))
    r2 = await body_json(await put(client, "k", [1, "é"]))
    assert await meta(client, "k") == {
        "key": "k",
        "value": [1, "é"],
        "create_revision": r1["revision"],
        "mod_revision": r2["revision"],
        "version": 2,
    }
    r = await client.get(f"{KV}/k")
    assert r.headers["ETag"] == f'"{r2["revision"]}"'
    assert await body_json(r) == [1, "é"]


async def test_put_answers_with_the_new_etag(client: Client) -> None:
    r = await put(client, "k", 1)
    assert r.headers["ETag"] == f'"{(await body_json(r))["revision"]}"'


async def test_reads_say_which_consistency_and_applied_index_served_them(client: Client, runtime: NodeRuntime) -> None:
    written = await body_json(await put(client, "k", "v"))
    for query, level in (
        ("", "linearizable"),
        ("?consistency=linearizable", "linearizable"),
        ("?consistency=stale", "stale"),
    ):
        for path in (f"{KV}/k{query}", f"{KV}{query}", f"{KV}/absent{query}"):
            r = await client.get(path)
            assert r.headers["X-Beaver-Vault-Consistency"] == level, path
            index = int(r.headers["X-Beaver-Vault-Applied-Index"])
            assert written["revision"] <= index <= runtime.applied_index()


async def test_bad_consistency_and_meta_are_400(client: Client) -> None:
    await assert_error(await client.get(f"{KV}/k?consistency=eventual"), 400)
    await assert_error(await client.get(f"{KV}?consistency=strong"), 400)
    await assert_error(await client.get(f"{KV}/k?meta=maybe"), 400)


async def test_get_with_matching_if_none_match_is_304(client: Client) -> None:
    etag = (await put(client, "k", 1)).headers["ETag"]
    r = await client.get(f"{KV}/k", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.headers["ETag"] == etag
    r = await client.get(f"{KV}/k", headers={"If-None-Match": '"999999"'})
    assert r.status_code == 200


# --------------------------------------------------------------------------- conditional writes


async def test_if_match_writes_only_at_that_revision(client: Client) -> None:
    rev = (await body_json(await put(client, "k", "a")))["revision"]
    r = await put(client, "k", "b", headers={"If-Match": f'"{rev}"'})
    assert r.status_code == 200
    new_rev = (await body_json(r))["revision"]
    # The old revision no longer matches: 412 with the current revision, nothing changes.
    body = await assert_error(await put(client, "k", "c", headers={"If-Match": f'"{rev}"'}), 412)
    assert body["current_revision"] == new_rev and body["key"] == "k"
    assert (await meta(client, "k"))["value"] == "b"
    assert (await meta(client, "k"))["mod_revision"] == new_rev


async def test_if_match_on_an_absent_key_fails_with_revision_0(client: Client) -> None:
    body = await assert_error(await put(client, "nope", 1, headers={"If-Match": '"5"'}), 412)
    assert body["current_revision"] == 0
    assert (await client.get(f"{KV}/nope")).status_code == 404


async def test_if_none_match_star_creates_only_if_absent(client: Client) -> None:
    r = await put(client, "k", "first", headers={"If-None-Match": "*"})
    assert r.status_code == 200 and (await body_json(r))["created"] is True
    rev = (await body_json(r))["revision"]
    body = await assert_error(await put(client, "k", "second", headers={"If-None-Match": "*"}), 412)
    assert body["current_revision"] == rev
    assert (await meta(client, "k"))["value"] == "first"


async def test_conditional_delete(client: Client) -> None:
    rev = (await body_json(await put(client, "k", 1)))["revision"]
    await assert_error(await client.delete(f"{KV}/k", headers={"If-Match": f'"{rev + 100}"'}), 412)
    assert (await client.get(f"{KV}/k")).status_code == 200
    r = await client.delete(f"{KV}/k", headers={"If-Match": f'"{rev}"'})
    assert r.status_code == 200 and (await body_json(r))["deleted"] is True
    assert (await client.get(f"{KV}/k")).status_code == 404


@pytest.mark.parametrize(
    "headers",
    [
        {"If-Match": "5"},
        {"If-Match": '"abc"'},
        {"If-Match": 'W/"5"'},
        {"If-Match": "*"},
        {"If-Match": '"1", "2"'},
        {"If-Match": '""'},
        {"If-Match": '"' + "9" * 30 + '"'},
        {"If-None-Match": '"5"'},
        {"If-None-Match": "**"},
        {"If-Match": '"5"', "If-None-Match": "*"},
    ],
    ids=lambda h: repr(h),
)
async def test_malformed_conditions_are_400_and_propose_nothing(
    client: Client, runtime: NodeRuntime, headers: dict[str, str]
) -> None:
    await put(client, "k", "old")
    before = runtime.status().last_log_index
    await assert_error(await put(client, "k", "new", headers=headers), 400)
    assert runtime.status().last_log_index == before
    assert (await meta(client, "k"))["value"] == "old"


async def test_if_none_match_is_refused_on_delete(client: Client) -> None:
    await put(client, "k", 1)
    await assert_error(await client.delete(f"{KV}/k", headers={"If-None-Match": "*"}), 400)
    assert (await client.get(f"{KV}/k")).status_code == 200


# --------------------------------------------------------------------------- TTLs


@pytest.mark.parametrize(
    ("ttl", "ms"), [("30s", 30_000), ("30", 30_000), ("500ms", 500), ("5m", 300_000), ("2h", 7_200_000), ("1.5", 1500)]
)
async def test_ttl_stamps_an_absolute_expiry(client: Client, runtime: NodeRuntime, ttl: str, ms: int) -> None:
    low = runtime.now_ms() + ms
    r = await put(client, "k", 1, query=f"?ttl={ttl}")
    assert r.status_code == 200, await r.get_data(as_text=True)
    high = runtime.now_ms() + ms
    assert low <= (await meta(client, "k"))["expires_at_ms"] <= high


async def test_a_put_without_ttl_clears_the_expiry(client: Client) -> None:
    await put(client, "k", 1, query="?ttl=1h")
    assert "expires_at_ms" in await meta(client, "k")
    await put(client, "k", 2)
    assert "expires_at_ms" not in await meta(client, "k")


@pytest.mark.parametrize("ttl", ["", "abc", "0", "0s", "-1s", "31d", "745h", "1.5.2s", "10x", "1e3"])
async def test_bad_ttl_is_400_and_proposes_nothing(client: Client, runtime: NodeRuntime, ttl: str) -> None:
    before = runtime.status().last_log_index
    await assert_error(await put(client, "k", 1, query=f"?ttl={ttl}"), 400)
    assert runtime.status().last_log_index == before


# --------------------------------------------------------------------------- idempotency


async def test_a_retried_write_is_applied_once_and_replays_the_answer(client: Client) -> None:
    headers = {"Idempotency-Key": "req-1"}
    first = await put(client, "k", "v1", headers=headers)
    assert first.status_code == 200 and "Idempotency-Replayed" not in first.headers
    again = await put(client, "k", "v1", headers=headers)
    assert again.status_code == 200
    assert again.headers["Idempotency-Replayed"] == "true"
    assert await body_json(again) == await body_json(first)
    assert (await meta(client, "k"))["version"] == 1


async def test_keys_are_per_client(client: Client) -> None:
    await put(client, "k", 1, headers={"Idempotency-Key": "x", "X-Beaver-Vault-Client": "alice"})
    r = await put(client, "k", 2, headers={"Idempotency-Key": "x", "X-Beaver-Vault-Client": "bob"})
    assert "Idempotency-Replayed" not in r.headers
    assert (await meta(client, "k"))["version"] == 2


async def test_a_replayed_precondition_failure_is_412_again(client: Client) -> None:
    await put(client, "k", 1)
    headers = {"Idempotency-Key": "cond-1", "If-None-Match": "*"}
    first = await assert_error(await put(client, "k", 2, headers=headers), 412)
    r = await put(client, "k", 2, headers=headers)
    again = await assert_error(r, 412)
    assert r.headers["Idempotency-Replayed"] == "true"
    assert again["current_revision"] == first["current_revision"]


async def test_idempotent_delete_and_prefix_delete(client: Client) -> None:
    await put(client, "k", 1)
    first = await body_json(await client.delete(f"{KV}/k", headers={"Idempotency-Key": "d1"}))
    await put(client, "k", 2)
    r = await client.delete(f"{KV}/k", headers={"Idempotency-Key": "d1"})
    assert r.headers["Idempotency-Replayed"] == "true" and await body_json(r) == first
    assert (await client.get(f"{KV}/k")).status_code == 200  # the retry did not delete the new value


@pytest.mark.parametrize(
    "headers",
    [
        {"Idempotency-Key": ""},
        {"Idempotency-Key": "x" * 129},
        {"Idempotency-Key": "has space"},
        {"Idempotency-Key": "ключ"},
        {"Idempotency-Key": "ok", "X-Beaver-Vault-Client": "bad,client"},
    ],
    ids=lambda h: repr(h)[:40],
)
async def test_bad_idempotency_headers_are_400(client: Client, runtime: NodeRuntime, headers: dict[str, str]) -> None:
    before = runtime.status().last_log_index
    await assert_error(await put(client, "k", 1, headers=headers), 400)
    assert runtime.status().last_log_index == before


# --------------------------------------------------------------------------- listing


async def fill(client: Client, keys: list[str]) -> None:
    for i, key in enumerate(keys):
        assert (await put(client, key, {"n": i})).status_code == 200


async def test_listing_pages_through_a_prefix_in_key_order(client: Client, runtime: NodeRuntime) -> None:
    keys = [f"users/{i:02d}" for i in range(7)]
    await fill(client, [*reversed(keys), "other", "users"])
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        query = "prefix=users/&limit=3" + (f"&after={after}" if after else "")
        r = await client.get(f"{KV}?{query}")
        page = await body_json(r)
        pages += 1
        assert page["count"] == 7
        assert page["revision"] == int(r.headers["X-Beaver-Vault-Applied-Index"]) == runtime.applied_index()
        seen += [item["key"] for item in page["items"]]
        for item in page["items"]:
            assert set(item) == {"key", "value", "create_revision", "mod_revision", "version"}
            assert item["value"] == {"n": 6 - int(item["key"][-2:])}
        if not page["more"]:
            assert page["next_after"] is None
            break
        assert page["next_after"] == page["items"][-1]["key"]
        after = page["next_after"]
    assert seen == keys and pages == 3


async def test_keys_only_and_default_prefix(client: Client) -> None:
    await fill(client, ["b", "a", "c/d"])
    body = await body_json(await client.get(f"{KV}?keys_only=true"))
    assert body == {
        "keys": ["a", "b", "c/d"],
        "count": 3,
        "revision": body["revision"],
        "more": False,
        "next_after": None,
    }


async def test_listing_an_empty_prefix_range(client: Client) -> None:
    await fill(client, ["a"])
    body = await body_json(await client.get(f"{KV}?prefix=zzz"))
    assert body["items"] == [] and body["count"] == 0 and body["more"] is False


async def test_listing_defaults_to_100_items(client: Client) -> None:
    await fill(client, [f"k{i:03d}" for i in range(101)])
    body = await body_json(await client.get(f"{KV}?keys_only=true"))
    assert len(body["keys"]) == 100 and body["more"] is True and body["count"] == 101


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "limit=x", "limit=-1", "keys_only=perhaps", "prefix=" + "p" * 1025]
)
async def test_bad_listing_parameters_are_400(client: Client, query: str) -> None:
    await assert_error(await client.get(f"{KV}?{query}"), 400)


# --------------------------------------------------------------------------- prefix delete


@pytest.mark.parametrize("query", ["prefix=a/", "prefix=a/&confirm=false", "prefix=a/&confirm=", "confirm=true", ""])
async def test_prefix_delete_needs_a_prefix_and_confirm_true(client: Client, runtime: NodeRuntime, query: str) -> None:
    await fill(client, ["a/1", "a/2"])
    before = runtime.status().last_log_index
    await assert_error(await client.delete(f"{KV}?{query}"), 400)
    assert runtime.status().last_log_index == before
    assert (await body_json(await client.get(f"{KV}?prefix=a/")))["count"] == 2


async def test_prefix_delete_removes_exactly_that_prefix_in_one_revision(client: Client) -> None:
    await fill(client, ["a/1", "a/2", "a", "b/1"])
    r = await client.delete(f"{KV}?prefix=a/&confirm=true")
    assert r.status_code == 200
    body = await body_json(r)
    assert body["prefix"] == "a/" and body["deleted"] == 2 and isinstance(body["revision"], int)
    keys = (await body_json(await client.get(f"{KV}?keys_only=true")))["keys"]
    assert keys == ["a", "b/1"]


async def test_an_empty_prefix_with_confirm_deletes_everything(client: Client) -> None:
    await fill(client, ["a", "b"])
    assert (await body_json(await client.delete(f"{KV}?prefix=&confirm=true")))["deleted"] == 2
    assert (await body_json(await client.get(KV)))["count"] == 0


# --------------------------------------------------------------------------- transactions

CAS = {
    "compare": [{"key": "cas", "target": "value", "op": "==", "value": "b"}],
    "success": [{"op": "put", "key": "t1", "value": 1}],
    "failure": [{"op": "get", "key": "t1"}],
}


async def test_txn_runs_the_failure_branch_with_200(client: Client) -> None:
    await put(client, "cas", "a")
    r = await client.post("/api/v1/txn", json=CAS)
    assert r.status_code == 200
    body = await body_json(r)
    assert body["succeeded"] is False
    assert body["results"] == [{"op": "get", "key": "t1", "found": False}]
    assert (await client.get(f"{KV}/t1")).status_code == 404


async def test_txn_runs_the_success_branch_atomically(client: Client) -> None:
    await put(client, "cas", "b")
    r = await client.post("/api/v1/txn", json=CAS)
    body = await body_json(r)
    assert r.status_code == 200 and body["succeeded"] is True
    assert body["results"][0]["op"] == "put" and body["results"][0]["revision"] == body["revision"]
    assert (await meta(client, "t1"))["mod_revision"] == body["revision"]


async def test_txn_compares_on_existence_version_and_revisions(client: Client) -> None:
    rev = (await body_json(await put(client, "k", 1)))["revision"]
    txn = {
        "compare": [
            {"key": "k", "target": "exists", "op": "==", "value": True},
            {"key": "k", "target": "version", "op": "==", "value": 1},
            {"key": "k", "target": "mod_revision", "op": "<", "value": rev + 1},
            {"key": "k", "target": "create_revision", "op": "==", "value": rev},
            {"key": "absent", "target": "exists", "op": "==", "value": False},
        ],
        "success": [{"op": "delete", "key": "k"}, {"op": "get", "key": "k"}],
        "failure": [],
    }
    body = await body_json(await client.post("/api/v1/txn", json=txn))
    assert body["succeeded"] is True
    assert body["results"][0]["deleted"] is True and body["results"][1]["found"] is False


async def test_txn_put_with_ttl(client: Client, runtime: NodeRuntime) -> None:
    low = runtime.now_ms() + 60_000
    txn = {"success": [{"op": "put", "key": "t", "value": 1, "ttl": "1m"}]}
    assert (await client.post("/api/v1/txn", json=txn)).status_code == 200
    assert low <= (await meta(client, "t"))["expires_at_ms"] <= runtime.now_ms() + 60_000


async def test_txn_is_idempotent_with_a_key(client: Client) -> None:
    txn = {"success": [{"op": "put", "key": "t", "value": 1}]}
    first = await client.post("/api/v1/txn", json=txn, headers={"Idempotency-Key": "t-1"})
    again = await client.post("/api/v1/txn", json=txn, headers={"Idempotency-Key": "t-1"})
    assert again.headers["Idempotency-Replayed"] == "true"
    assert await body_json(again) == await body_json(first)
    assert (await meta(client, "t"))["version"] == 1


BAD_TXNS: dict[str, Any] = {
    "not an object": [],
    "unknown field": {"compare": [], "extra": 1},
    "compare not a list": {"compare": {}},
    "bad target": {"compare": [{"key": "k", "target": "size", "op": "==", "value": 1}]},
    "bad compare op": {"compare": [{"key": "k", "target": "version", "op": ">=", "value": 1}]},
    "exists with <": {"compare": [{"key": "k", "target": "exists", "op": "<", "value": True}]},
    "bad branch op": {"success": [{"op": "append", "key": "k", "value": 1}]},
    "put without value": {"success": [{"op": "put", "key": "k"}]},
    "empty key": {"success": [{"op": "delete", "key": ""}]},
    "key written twice": {"success": [{"op": "put", "key": "k", "value": 1}, {"op": "delete", "key": "k"}]},
    "too many ops": {"success": [{"op": "get", "key": f"k{i}"} for i in range(129)]},
    "bad ttl": {"success": [{"op": "put", "key": "k", "value": 1, "ttl": "soon"}]},
    "ttl beyond the API bound": {"success": [{"op": "put", "key": "k", "value": 1, "ttl": "31d"}]},
    "ttl on a delete": {"success": [{"op": "delete", "key": "k", "ttl": "1s"}]},
}


@pytest.mark.parametrize("txn", BAD_TXNS.values(), ids=BAD_TXNS.keys())
async def test_invalid_txns_are_400_with_a_message(client: Client, runtime: NodeRuntime, txn: Any) -> None:
    before = runtime.status().last_log_index
    body = await assert_error(await client.post("/api/v1/txn", json=txn), 400)
    assert body["error"].startswith("invalid transaction: ")
    assert runtime.status().last_log_index == before


async def test_txn_body_must_be_json(client: Client) -> None:
    await assert_error(await client.post("/api/v1/txn", data=b"{nope"), 400)
    await assert_error(await client.post("/api/v1/txn", data=b""), 400)


# --------------------------------------------------------------------------- metrics


async def test_metrics_count_requests_by_route_and_show_raft_gauges(client: Client, runtime: NodeRuntime) -> None:
    await put(client, "k", 1)
    await client.get(f"{KV}/k")
    await client.get(f"{KV}/absent")
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    text = await r.get_data(as_text=True)
    assert re.search(
        r'beaver_vault_http_requests_total\{method="PUT",route="/api/v1/kv/<key:key>",status="200"\} 1\.0', text
    )
    assert re.search(
        r'beaver_vault_http_requests_total\{method="GET",route="/api/v1/kv/<key:key>",status="404"\} 1\.0', text
    )
    assert "beaver_vault_http_request_duration_seconds_bucket" in text
    st = runtime.status()
    assert f'beaver_vault_raft_term{{node="node1"}} {float(st.term)}' in text
    assert 'beaver_vault_raft_is_leader{node="node1"} 1.0' in text
    assert re.search(r'beaver_vault_raft_applied_index\{node="node1"\} \d', text)


async def test_each_app_has_its_own_registry(client: Client, runtime: NodeRuntime) -> None:
    other = create_app(runtime, ApiOptions())
    async with other.test_app() as test_app:
        other_client = test_app.test_client()
        await put(client, "k", 1)
        text = await (await other_client.get("/metrics")).get_data(as_text=True)
    assert 'method="PUT"' not in text
