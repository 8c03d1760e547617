"""HTTP API tests: every route and every bad-input case, through Quart's in-process test client.

Everything runs against the ``runtime`` fixture (today ``FakeRuntime``; a real single-node
``NodeRuntime`` can be dropped in there). A rejected request must leave the store as it was:
``assert_unchanged`` checks the old value is still readable and nothing was appended.
Forwarding between two apps over real sockets lives in ``test_api_forward.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fake_runtime import FakeRuntime
from quart.typing import TestClientProtocol as Client

from beaver_vault.api import ApiOptions
from beaver_vault.api.validation import check_key
from beaver_vault.errors import (
    InvariantViolation,
    NoLeader,
    NotLeader,
    Overloaded,
    Rejected,
    Unknown,
)

FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends


async def body_json(response: Any) -> Any:
    return json.loads(await response.get_data(as_text=True))


async def put(client: Client, key: str, data: bytes | str, **kw: Any) -> Any:
    return await client.put(f"/api/v1/kv/{key}", data=data, **kw)


async def assert_error(response: Any, status: int, outcome: str | None = "not_applied") -> dict[str, Any]:
    assert response.status_code == status, await response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json"
    body = await body_json(response)
    assert isinstance(body["error"], str) and body["error"]
    assert body.get("outcome") == outcome
    return body  # type: ignore[no-any-return]


async def assert_unchanged(client: Client, runtime: FakeRuntime, key: str, value: Any, log_len: int) -> None:
    """Nothing reached the log and the old value is still what a read returns."""
    assert len(runtime.log) == log_len
    r = await client.get(f"/api/v1/kv/{key}")
    assert r.status_code == 200
    assert await body_json(r) == value


# --------------------------------------------------------------------------- the seed's usage


async def test_seed_put_then_get_shows_the_document(client: Client, runtime: FakeRuntime) -> None:
    r = await put(client, "mykey", '"myvalue"', headers=FORM)
    assert r.status_code == 200
    written = await body_json(r)
    assert written == {"key": "mykey", "revision": written["revision"], "created": True}
    assert isinstance(written["revision"], int) and written["revision"] > 0

    r = await client.get("/api/v1/kv/mykey")
    assert r.status_code == 200
    assert await r.get_data(as_text=True) == '"myvalue"'
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["ETag"] == f'"{written["revision"]}"'
    assert r.headers["X-Beaver-Vault-Consistency"] == "linearizable"
    assert runtime.barriers == 1


async def test_put_overwrites_and_reports_created_and_revision(client: Client) -> None:
    r1 = await body_json(await put(client, "k", "1"))
    r2 = await body_json(await put(client, "k", '{"a": [1, 2, {"b": null}], "é": "ü"}'))
    assert r1["created"] is True and r2["created"] is False
    assert r2["revision"] > r1["revision"]
    r = await client.get("/api/v1/kv/k")
    assert await body_json(r) == {"a": [1, 2, {"b": None}], "é": "ü"}
    assert r.headers["ETag"] == f'"{r2["revision"]}"'


@pytest.mark.parametrize(
    "document",
    [
        "null",
        "true",
        "0",
        "-1.5e3",
        '""',
        '"text"',
        "[]",
        "{}",
        '{"nested": {"list": [1, "two", false]}}',
        '"\\ud83d\\ude00"',
    ],
)
async def test_any_json_document_round_trips(client: Client, document: str) -> None:
    assert (await put(client, "doc", document)).status_code == 200
    r = await client.get("/api/v1/kv/doc")
    assert await body_json(r) == json.loads(document)


@pytest.mark.parametrize("key", ["a/b/c", "dir/", "a//b", "with space", "ключ/ü", "x" * 1024, "é" * 512])
async def test_keys_may_contain_slashes_and_unicode(client: Client, key: str) -> None:
    r = await put(client, key, '"v"')
    assert r.status_code == 200, await r.get_data(as_text=True)
    assert (await body_json(r))["key"] == key
    r = await client.get(f"/api/v1/kv/{key}")
    assert r.status_code == 200
    assert await body_json(r) == "v"


async def test_keys_are_distinct_even_when_they_differ_only_in_slashes(client: Client) -> None:
    await put(client, "a/b", "1")
    await put(client, "a//b", "2")
    await put(client, "a/b/", "3")
    assert [await body_json(await client.get(f"/api/v1/kv/{k}")) for k in ("a/b", "a//b", "a/b/")] == [1, 2, 3]


# --------------------------------------------------------------------------- reads


async def test_get_absent_key_is_a_json_404(client: Client) -> None:
    body = await assert_error(await client.get("/api/v1/kv/nope"), 404, outcome=None)
    assert body["key"] == "nope"


async def test_stale_read_skips_the_barrier(client: Client, runtime: FakeRuntime) -> None:
    await put(client, "k", '"v"')
    r = await client.get("/api/v1/kv/k?consistency=stale")
    assert r.status_code == 200
    assert await body_json(r) == "v"
    assert r.headers["X-Beaver-Vault-Consistency"] == "stale"
    assert runtime.barriers == 0


async def test_explicit_linearizable_read_takes_the_barrier(client: Client, runtime: FakeRuntime) -> None:
    await put(client, "k", '"v"')
    r = await client.get("/api/v1/kv/k?consistency=linearizable")
    assert r.status_code == 200 and runtime.barriers == 1


@pytest.mark.parametrize("level", ["", "STALE", "serializable", "eventual"])
async def test_unknown_consistency_is_400(client: Client, runtime: FakeRuntime, level: str) -> None:
    await put(client, "k", '"v"')
    await assert_error(await client.get(f"/api/v1/kv/k?consistency={level}"), 400)
    assert runtime.barriers == 0


async def test_stale_read_works_on_a_follower_without_forwarding(client: Client, runtime: FakeRuntime) -> None:
    await put(client, "k", '"v"')
    runtime.follow("node9", None)
    r = await client.get("/api/v1/kv/k?consistency=stale")
    assert r.status_code == 200 and await body_json(r) == "v"


# --------------------------------------------------------------------------- delete


async def test_delete_existing_then_absent(client: Client, runtime: FakeRuntime) -> None:
    await put(client, "k", '"v"')
    r = await client.delete("/api/v1/kv/k")
    assert r.status_code == 200
    body = await body_json(r)
    assert body["key"] == "k" and body["deleted"] is True and isinstance(body["revision"], int)
    await assert_error(await client.get("/api/v1/kv/k"), 404, outcome=None)

    r = await client.delete("/api/v1/kv/k")
    assert r.status_code == 200
    assert (await body_json(r))["deleted"] is False


# --------------------------------------------------------------------------- bad input: bodies

BAD_BODIES = {
    "empty": b"",
    "whitespace": b"  \n",
    "not json": b"myvalue",
    "truncated": b'{"a": ',
    "two documents": b"1 2",
    "single quotes": b"'v'",
    "trailing comma": b"[1,]",
    "invalid utf-8": b'"\xff\xfe"',
    "overlong utf-8": b'"\xc0\xaf"',
    "utf-8 bom": b'\xef\xbb\xbf"v"',
    "lone high surrogate": b'"\\ud800"',
    "lone low surrogate": b'"\\udc00"',
    "surrogate in object key": b'{"\\ud800": 1}',
    "surrogate deep inside": b'[{"a": ["ok", "\\udfff"]}]',
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "-Infinity": b"-Infinity",
    "NaN inside": b'{"x": [1, NaN]}',
    "float overflow": b"1e400",
    "negative float overflow": b"[-1e999]",
    "too deep by one": b"[" * 65 + b"]" * 65,
    "too deep objects": b'{"a":' * 65 + b"1" + b"}" * 65,
    "absurdly deep": b"[" * 100_000 + b"]" * 100_000,
    "absurdly deep unclosed": b"[" * 100_000,
    "huge integer": b"9" * 5000,
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_bad_bodies_are_400_and_write_nothing(client: Client, runtime: FakeRuntime, body: bytes) -> None:
    await put(client, "k", '"old"')
    n = len(runtime.log)
    r = await put(client, "k", body, headers=FORM)
    await assert_error(r, 400)
    await assert_unchanged(client, runtime, "k", "old", n)


async def test_depth_limit_is_inclusive(client: Client) -> None:
    assert (await put(client, "k", "[" * 64 + "]" * 64)).status_code == 200
    assert (await put(client, "k", '{"a":' * 64 + "1" + "}" * 64)).status_code == 200


async def test_body_over_the_limit_is_413_while_streaming(client: Client, runtime: FakeRuntime) -> None:
    await put(client, "k", '"old"')
    n = len(runtime.log)
    big = b'"' + b"x" * (1024 * 1024) + b'"'  # one JSON string, 2 bytes over 1 MiB
    await assert_error(await put(client, "k", big), 413)
    await assert_unchanged(client, runtime, "k", "old", n)


async def test_body_over_the_limit_is_413_from_content_length(client: Client, runtime: FakeRuntime) -> None:
    await put(client, "k", '"old"')
    n = len(runtime.log)
    big = b'"' + b"x" * (1024 * 1024) + b'"'
    await assert_error(await put(client, "k", big, headers={"Content-Length": str(len(big))}), 413)
    await assert_unchanged(client, runtime, "k", "old", n)


async def test_body_exactly_at_the_limit_is_accepted(client: Client) -> None:
    body = b'"' + b"x" * (1024 * 1024 - 2) + b'"'
    assert (await put(client, "k", body)).status_code == 200


class TestSmallLimits:
    @pytest.fixture
    def options(self) -> ApiOptions:
        return ApiOptions(max_key_bytes=8, max_body_bytes=100, max_json_depth=3)

    async def test_limits_are_configurable(self, client: Client, runtime: FakeRuntime) -> None:
        assert (await put(client, "12345678", '"' + "x" * 98 + '"')).status_code == 200
        assert (await put(client, "12345678", "[[[]]]")).status_code == 200
        n = len(runtime.log)
        await assert_error(await put(client, "123456789", "1"), 400)
        await assert_error(await put(client, "k", '"' + "x" * 99 + '"'), 413)
        await assert_error(await put(client, "k", "[[[[]]]]"), 400)
        assert len(runtime.log) == n


def test_options_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        ApiOptions(max_body_bytes=0)
    with pytest.raises(ValueError):
        ApiOptions(request_timeout_s=0)


# --------------------------------------------------------------------------- bad input: keys


@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE"])
async def test_empty_key_is_400(client: Client, runtime: FakeRuntime, method: str) -> None:
    r = await client.open("/api/v1/kv/", method=method, data=b'"v"')
    body = await assert_error(r, 400)
    assert "empty" in body["error"]
    assert runtime.log == []


@pytest.mark.parametrize("key", ["x" * 1025, "é" * 513, "€" * 342])
async def test_key_over_1_kib_of_utf8_is_400(client: Client, runtime: FakeRuntime, key: str) -> None:
    n = len(runtime.log)
    await assert_error(await put(client, key, '"v"'), 400)
    await assert_error(await client.get(f"/api/v1/kv/{key}"), 400)
    await assert_error(await client.delete(f"/api/v1/kv/{key}"), 400)
    assert len(runtime.log) == n


def test_key_with_lone_surrogate_is_refused() -> None:
    # No HTTP client can even send such a path (the server decodes percent escapes with
    # replacement characters), so the check is exercised directly.
    with pytest.raises(Rejected) as info:
        check_key("a\ud800b", max_key_bytes=1024)
    assert info.value.status == 400


# --------------------------------------------------------------------------- membership


async def test_join_as_in_the_seed(client: Client, runtime: FakeRuntime) -> None:
    r = await client.post(
        "/api/v1/raft/join", data='{"NodeID": "node2", "RaftAddress": "localhost:7001"}', headers=FORM
    )
    assert r.status_code == 200
    members = (await body_json(r))["members"]
    assert [m["id"] for m in members] == ["node1", "node2"]
    assert members[1]["raft_address"] == "localhost:7001"
    assert set(members[0]) == {"id", "raft_address", "http_address", "voter"}


BAD_JOINS = {
    "empty body": b"",
    "not json": b"NodeID=node2&RaftAddress=localhost:7001",
    "not an object": b'["node2", "localhost:7001"]',
    "missing NodeID": b'{"RaftAddress": "localhost:7001"}',
    "missing RaftAddress": b'{"NodeID": "node2"}',
    "NodeID not a string": b'{"NodeID": 2, "RaftAddress": "localhost:7001"}',
    "RaftAddress not a string": b'{"NodeID": "node2", "RaftAddress": 7001}',
    "NodeID empty": b'{"NodeID": "", "RaftAddress": "localhost:7001"}',
    "NodeID null": b'{"NodeID": null, "RaftAddress": "localhost:7001"}',
    "RaftAddress without port": b'{"NodeID": "node2", "RaftAddress": "localhost"}',
    "RaftAddress bad port": b'{"NodeID": "node2", "RaftAddress": "localhost:99999"}',
    "lowercase field names": b'{"node_id": "node2", "raft_address": "localhost:7001"}',
}


@pytest.mark.parametrize("body", BAD_JOINS.values(), ids=BAD_JOINS.keys())
async def test_bad_join_is_400_and_changes_nothing(client: Client, runtime: FakeRuntime, body: bytes) -> None:
    before = runtime.membership
    await assert_error(await client.post("/api/v1/raft/join", data=body, headers=FORM), 400)
    assert runtime.membership == before


async def test_join_refused_by_the_runtime_keeps_its_status(client: Client) -> None:
    body = '{"NodeID": "node1", "RaftAddress": "localhost:7000"}'  # already a member: 409 from the runtime
    r = await assert_error(await client.post("/api/v1/raft/join", data=body), 409)
    assert "already" in r["error"]


async def test_remove(client: Client, runtime: FakeRuntime) -> None:
    await client.post("/api/v1/raft/join", data='{"NodeID": "node2", "RaftAddress": "localhost:7001"}')
    r = await client.post("/api/v1/raft/remove", data='{"NodeID": "node2"}', headers=FORM)
    assert r.status_code == 200
    assert [m["id"] for m in (await body_json(r))["members"]] == ["node1"]


@pytest.mark.parametrize("body", [b"", b"{}", b'{"NodeID": 2}', b'"node2"', b'{"NodeID": ""}'])
async def test_bad_remove_is_400(client: Client, runtime: FakeRuntime, body: bytes) -> None:
    before = runtime.membership
    await assert_error(await client.post("/api/v1/raft/remove", data=body), 400)
    assert runtime.membership == before


# --------------------------------------------------------------------------- status


async def test_status_is_the_runtimes_status(client: Client, runtime: FakeRuntime) -> None:
    r = await client.get("/api/v1/status")
    assert r.status_code == 200
    # plus where the pipelined protocol listens (null: no client port in this in-process app)
    assert await body_json(r) == {**runtime.status().to_json(), "pipelined_address": None}


async def test_status_answers_without_a_leader(client: Client, runtime: FakeRuntime) -> None:
    runtime.follow(None, None)
    r = await client.get("/api/v1/status")
    assert r.status_code == 200
    body = await body_json(r)
    assert body["leader_id"] is None
    for field in ("node_id", "role", "term", "commit_index", "applied_index", "members"):
        assert field in body


# --------------------------------------------------------------------------- routing errors


@pytest.mark.parametrize(
    "path", ["/", "/api", "/api/v1", "/api/v1/kvs", "/api/v2/kv/k", "/api/v1/nope", "/api/v1/raft"]
)
async def test_unknown_routes_are_json_404(client: Client, path: str) -> None:
    body = await assert_error(await client.get(path), 404)
    assert body["path"] == path


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/kv/k"),
        ("PATCH", "/api/v1/kv/k"),
        ("PUT", "/api/v1/status"),
        ("GET", "/api/v1/raft/join"),
        ("DELETE", "/api/v1/raft/remove"),
    ],
)
async def test_wrong_methods_are_json_405(client: Client, runtime: FakeRuntime, method: str, path: str) -> None:
    r = await client.open(path, method=method, data=b"{}")
    await assert_error(r, 405)
    assert method not in r.headers["Allow"]
    assert runtime.log == []


# --------------------------------------------------------------------------- domain errors -> HTTP

DOMAIN_ERRORS: list[tuple[str, BaseException, int, str]] = [
    ("rejected 400", Rejected("bad command"), 400, "not_applied"),
    ("rejected 409", Rejected("conflict", status=409), 409, "not_applied"),
    ("overloaded", Overloaded(), 503, "not_applied"),
    ("no leader", NoLeader(), 503, "not_applied"),
    ("not leader, no address", NotLeader("node3"), 503, "not_applied"),
    ("unknown timeout", Unknown("timed out waiting for commit"), 504, "unknown"),
    ("unknown leadership lost", Unknown("leadership lost"), 503, "unknown"),
]

OPERATIONS: dict[str, tuple[str, str, bytes, str]] = {
    # name: (method, path, body, runtime method that fails)
    "put": ("PUT", "/api/v1/kv/k", b'"new"', "write"),
    "delete": ("DELETE", "/api/v1/kv/k", b"", "write"),
    "get": ("GET", "/api/v1/kv/k", b"", "read_barrier"),
    "join": ("POST", "/api/v1/raft/join", b'{"NodeID": "node2", "RaftAddress": "h:1"}', "join"),
    "remove": ("POST", "/api/v1/raft/remove", b'{"NodeID": "node1"}', "remove"),
}


@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=OPERATIONS.keys())
@pytest.mark.parametrize(("name", "exc", "status", "outcome"), DOMAIN_ERRORS, ids=[e[0] for e in DOMAIN_ERRORS])
async def test_domain_errors_map_to_http(
    client: Client,
    runtime: FakeRuntime,
    operation: tuple[str, str, bytes, str],
    name: str,
    exc: BaseException,
    status: int,
    outcome: str,
) -> None:
    method, path, body, failing = operation
    await put(client, "k", '"old"')
    n, members = len(runtime.log), runtime.membership
    runtime.fail_next(exc, failing)
    r = await client.open(path, method=method, data=body)
    got = await assert_error(r, status, outcome)
    if isinstance(exc, (Overloaded, NoLeader, NotLeader)):
        assert r.headers["Retry-After"] == "1"
    if isinstance(exc, NotLeader):
        assert got["leader_id"] == "node3"
    await assert_unchanged(client, runtime, "k", "old", n)
    assert runtime.membership == members


async def test_a_request_already_forwarded_is_not_forwarded_again(client: Client, runtime: FakeRuntime) -> None:
    runtime.follow("node3", "http://127.0.0.1:9")
    r = await put(client, "k", '"v"', headers={"X-Beaver-Vault-Forwarded-By": "node2"})
    body = await assert_error(r, 503)
    assert body["error"] == "leader changed, retry"
    assert body["leader_id"] == "node3"


async def test_invariant_violation_is_not_swallowed_as_a_domain_error(client: Client, runtime: FakeRuntime) -> None:
    runtime.fail_next(InvariantViolation("applied index went backwards"), "write")
    await assert_error(await put(client, "k", '"v"'), 500, outcome="unknown")
    runtime.fail_next(InvariantViolation("boom"), "read_barrier")
    await assert_error(await client.get("/api/v1/kv/k"), 500, outcome="not_applied")


class TestRuntimeThatNeverAnswers:
    @pytest.fixture
    def options(self) -> ApiOptions:
        return ApiOptions(request_timeout_s=0.5)

    async def test_write_times_out_with_unknown_outcome(
        self, client: Client, runtime: FakeRuntime, autojump_clock: Any
    ) -> None:
        runtime.hang_next("write")
        await assert_error(await put(client, "k", '"v"'), 504, outcome="unknown")

    async def test_read_times_out(self, client: Client, runtime: FakeRuntime, autojump_clock: Any) -> None:
        runtime.hang_next("read_barrier")
        r = await client.get("/api/v1/kv/k")
        assert r.status_code == 504
