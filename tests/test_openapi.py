"""The API reference (``api/openapi.yaml``, served at ``/openapi.json`` and rendered at ``/docs``)
checked against the code:

* it is a structurally valid OpenAPI 3.1 document (a small checker below: required fields,
  status codes, path parameters, unique operation ids, every ``$ref`` resolves);
* every route the app registers (each Quart url rule and method, plus the fast path's) is in
  it, and every operation in it is a route, except operations marked ``x-pending-merge``
  (routes of a branch not merged yet), which must NOT exist: the test fails once they do, so
  the marker is removed at merge;
* every operation is driven through the app (valid and bad input, oversized bodies, each kind
  of runtime failure injected) and every status it answers is listed for it, every error
  answer has the common error body, and every error response listed uses the error schema.

The browser side of ``/docs`` (renders, nothing loaded from elsewhere) is in
``test_ui_browser.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from fake_runtime import FakeRuntime
from quart.typing import TestClientProtocol as Client

from beaver_vault.api import ApiOptions, create_app
from beaver_vault.api.console_routes import openapi_spec
from beaver_vault.api.fast import KEY_ROUTE
from beaver_vault.errors import NoLeader, NotLeader, Overloaded, Rejected, Unknown

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
AUTOMATIC = {"HEAD", "OPTIONS"}  # added by Quart to every rule
MAX_BODY = 64


def spec() -> dict[str, Any]:
    return openapi_spec()


def operations(*, pending: bool | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for path, item in spec()["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            if pending is not None and bool(op.get("x-pending-merge")) != pending:
                continue
            out[(method.upper(), path)] = op
    return out


def openapi_path(rule: str) -> str:
    """``/api/v1/kv/<key:key>`` -> ``/api/v1/kv/{key}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def resolve(obj: Any) -> Any:
    seen = 0
    while isinstance(obj, dict) and "$ref" in obj:
        seen += 1
        assert seen < 20, f"$ref loop at {obj}"
        ref = obj["$ref"]
        assert ref.startswith("#/"), f"only local $refs: {ref}"
        target: Any = spec()
        for part in ref[2:].split("/"):
            assert isinstance(target, dict) and part in target, f"$ref {ref} does not resolve"
            target = target[part]
        obj = target
    return obj


# ---------------------------------------------------------------------------- structure


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        for value in node.values():
            found += all_refs(value)
        return found
    if isinstance(node, list):
        return [r for value in node for r in all_refs(value)]
    return []


def test_spec_is_structurally_valid_openapi_3_1() -> None:
    doc = spec()
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    assert isinstance(doc["paths"], dict) and doc["paths"]
    for ref in all_refs(doc):
        resolve({"$ref": ref})
    op_ids: list[str] = []
    tags = {t["name"] for t in doc.get("tags", [])}
    for path, item in doc["paths"].items():
        assert path.startswith("/"), path
        assert set(item) <= set(METHODS) | {"parameters", "summary", "description"}, (path, set(item))
        templated = set(re.findall(r"{([^}]+)}", path))
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            where = f"{method.upper()} {path}"
            op_ids.append(op["operationId"])
            assert set(op.get("tags", [])) <= tags, where
            params = [resolve(p) for p in item.get("parameters", []) + op.get("parameters", [])]
            seen = set()
            for p in params:
                assert p["in"] in ("query", "header", "path", "cookie"), where
                assert (p["name"], p["in"]) not in seen, f"{where}: parameter {p['name']} twice"
                seen.add((p["name"], p["in"]))
                assert "schema" in p or "content" in p, f"{where}: parameter {p['name']} has no schema"
                if p["in"] == "path":
                    assert p.get("required") is True, f"{where}: path parameter {p['name']} must be required"
            assert {p["name"] for p in params if p["in"] == "path"} == templated, f"{where}: path parameters"
            responses = op["responses"]
            assert responses, where
            for code, raw in responses.items():
                assert re.fullmatch(r"[1-5]\d\d", code), f"{where}: status {code!r}"
                response = resolve(raw)
                assert isinstance(response.get("description"), str), f"{where} {code}: description"
                for mime, media in response.get("content", {}).items():
                    assert "/" in mime, f"{where} {code}: media type {mime}"
                    assert isinstance(media, dict)
            if "requestBody" in op:
                assert resolve(op["requestBody"])["content"], where
    assert len(op_ids) == len(set(op_ids)), "operationIds must be unique"


OWN_SHAPES = {("/ready", "503"), ("/health", "503")}


def is_error_schema(schema: Any) -> bool:
    schema = schema if "$ref" in schema and schema["$ref"].endswith("/Error") else resolve(schema)
    if schema.get("$ref", "").endswith("/schemas/Error"):
        return True
    return any(is_error_schema(part) for part in schema.get("allOf", []))


def test_every_error_response_uses_the_common_error_body() -> None:
    error = spec()["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"]["outcome"]["enum"] == ["not_applied", "unknown"]
    for (method, path), op in operations().items():
        for code, raw in op["responses"].items():
            if int(code) < 400:
                continue
            content = resolve(raw).get("content", {})
            if (path, code) in OWN_SHAPES:
                continue  # health and readiness answer their own {status|ready, reasons} shape by design
            assert "application/json" in content, f"{method} {path} {code}: not JSON"
            assert is_error_schema(content["application/json"]["schema"]), f"{method} {path} {code}: not the error schema"


# ---------------------------------------------------------------------------- routes


def registered_routes() -> set[tuple[str, str]]:
    app = create_app(FakeRuntime("node1"))
    routes = set()
    for rule in app.url_map.iter_rules():
        for method in set(rule.methods or ()) - AUTOMATIC:
            routes.add((method, openapi_path(rule.rule)))
    # The fast path answers these in front of Quart (fast.py); they are the same routes.
    routes |= {("PUT", openapi_path(KEY_ROUTE)), ("GET", openapi_path(KEY_ROUTE))}
    return routes


def test_every_route_is_described_and_every_description_is_a_route() -> None:
    routes = registered_routes()
    described = set(operations(pending=False))
    pending = set(operations(pending=True))
    assert routes - described - pending == set(), "routes missing from openapi.yaml"
    assert described - routes == set(), "operations in openapi.yaml that the app does not register"
    landed = pending & routes
    assert not landed, f"these routes exist now: remove x-pending-merge from them in openapi.yaml: {sorted(landed)}"


# ---------------------------------------------------------------------------- statuses, driven


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime("node1")


@pytest.fixture
async def client(runtime: FakeRuntime) -> AsyncIterator[Client]:
    app = create_app(runtime, ApiOptions(max_body_bytes=MAX_BODY, request_timeout_s=1.0))
    async with app.test_app() as test_app:
        yield test_app.test_client()


# (method, spec path) -> requests to send: (url, headers, body). The first is the valid one
# (also sent once per injected runtime failure); the others are bad input or other cases.
Request = tuple[str, dict[str, str], bytes | None]
JSON = {"Content-Type": "application/json"}
SCENARIOS: dict[tuple[str, str], list[Request]] = {
    ("GET", "/api/v1/kv/{key}"): [
        ("/api/v1/kv/a", {}, None),
        ("/api/v1/kv/a?meta=true", {}, None),
        ("/api/v1/kv/a?meta=maybe", {}, None),
        ("/api/v1/kv/a?consistency=eventual", {}, None),
        ("/api/v1/kv/", {}, None),
        ("/api/v1/kv/absent", {}, None),
        ("/api/v1/kv/a", {"If-None-Match": '"2"'}, None),
    ],
    ("PUT", "/api/v1/kv/{key}"): [
        ("/api/v1/kv/a", JSON, b'{"v": 1}'),
        ("/api/v1/kv/a", JSON, b"{not json"),
        ("/api/v1/kv/a?ttl=forever", JSON, b"1"),
        ("/api/v1/kv/a", {"If-Match": '"999"'}, b"1"),
        ("/api/v1/kv/a", {"If-Match": "*"}, b"1"),
        ("/api/v1/kv/a", {"If-None-Match": "*"}, b"1"),
    ],
    ("DELETE", "/api/v1/kv/{key}"): [
        ("/api/v1/kv/a", {}, None),
        ("/api/v1/kv/a", {"If-Match": '"999"'}, None),
        ("/api/v1/kv/a", {"If-None-Match": "*"}, None),
    ],
    ("GET", "/api/v1/kv"): [
        ("/api/v1/kv?prefix=a", {}, None),
        ("/api/v1/kv?limit=0", {}, None),
        ("/api/v1/kv?keys_only=perhaps", {}, None),
    ],
    ("DELETE", "/api/v1/kv"): [
        ("/api/v1/kv?prefix=a&confirm=true", {}, None),
        ("/api/v1/kv?prefix=a", {}, None),
    ],
    ("POST", "/api/v1/txn"): [
        ("/api/v1/txn", JSON, b'{"compare": [], "success": [{"op": "put", "key": "t", "value": 1}]}'),
        ("/api/v1/txn", JSON, b'{"compare": 3}'),
    ],
    ("GET", "/api/v1/watch"): [("/api/v1/watch?from_revision=abc", {}, None)],  # a valid one streams forever
    ("POST", "/api/v1/raft/join"): [
        ("/api/v1/raft/join", JSON, b'{"NodeID": "n4", "RaftAddress": "127.0.0.1:7004"}'),
        ("/api/v1/raft/join", JSON, b'{"NodeID": "n4", "RaftAddress": "nowhere"}'),
        ("/api/v1/raft/join", JSON, b'{"NodeID": "node1", "RaftAddress": "127.0.0.1:7000"}'),
    ],
    ("POST", "/api/v1/raft/remove"): [
        ("/api/v1/raft/remove", JSON, b'{"NodeID": "n4"}'),
        ("/api/v1/raft/remove", JSON, b'{"NodeID": "n4", "Force": "yes"}'),
        ("/api/v1/raft/remove", JSON, b"[]"),
    ],
    ("POST", "/api/v1/raft/transfer-leadership"): [
        ("/api/v1/raft/transfer-leadership", JSON, b'{"NodeID": "n9"}'),
        ("/api/v1/raft/transfer-leadership", JSON, b"[1]"),
    ],
    ("GET", "/api/v1/raft/nodes"): [("/api/v1/raft/nodes", {}, None)],
    ("GET", "/api/v1/status"): [("/api/v1/status", {}, None)],
    ("GET", "/api/v1/events"): [
        ("/api/v1/events?after=0", {}, None),
        ("/api/v1/events?after=-1", {}, None),
        ("/api/v1/events?limit=0", {}, None),
    ],
    ("GET", "/api/v1/stats"): [("/api/v1/stats", {}, None), ("/api/v1/stats?after_ms=soon", {}, None)],
    ("GET", "/metrics"): [("/metrics", {}, None)],
    ("GET", "/health"): [("/health", {}, None)],
    ("GET", "/ready"): [("/ready", {}, None)],
    ("GET", "/api/v1/backup"): [("/api/v1/backup", {}, None), ("/api/v1/backup?consistency=eventual", {}, None)],
    ("GET", "/openapi.json"): [("/openapi.json", {}, None)],
    ("GET", "/docs"): [("/docs", {}, None)],
    ("GET", "/"): [("/", {}, None), ("/", {"Accept": "text/html"}, None)],
    ("GET", "/ui/"): [("/ui/", {}, None)],
    ("GET", "/ui/{name}"): [("/ui/app.js", {}, None), ("/ui/nothing.js", {}, None)],
    ("GET", "/ui/peers"): [("/ui/peers", {}, None)],
    ("GET", "/ui/stats"): [("/ui/stats", {}, None)],
    # Authentication is off here (development mode): the routes work without credentials.
    ("GET", "/api/v1/auth/whoami"): [("/api/v1/auth/whoami", {}, None)],
    ("PUT", "/api/v1/auth/roles/{name}"): [
        ("/api/v1/auth/roles/r1", JSON, b'{"permissions": [{"prefix": "a", "access": "read"}]}'),
        ("/api/v1/auth/roles/r1", JSON, b'{"permissions": [{"prefix": "a", "access": "all"}]}'),
        ("/api/v1/auth/roles/admin", JSON, b'{"permissions": []}'),
    ],
    ("GET", "/api/v1/auth/roles"): [("/api/v1/auth/roles", {}, None)],
    ("POST", "/api/v1/auth/users"): [
        ("/api/v1/auth/users", JSON, b'{"name": "u1", "password": "password-1", "roles": ["r1"]}'),
        ("/api/v1/auth/users", JSON, b'{"name": "bad name", "password": "password-1"}'),
        ("/api/v1/auth/users", JSON, b'{"name": "u2", "password": "short"}'),
        ("/api/v1/auth/users", JSON, b'{"name": "u3", "password": "password-3", "roles": ["nope"]}'),
    ],
    ("GET", "/api/v1/auth/users"): [("/api/v1/auth/users", {}, None)],
    ("GET", "/api/v1/auth/users/{name}"): [("/api/v1/auth/users/u1", {}, None), ("/api/v1/auth/users/zz", {}, None)],
    ("PUT", "/api/v1/auth/users/{name}/password"): [
        ("/api/v1/auth/users/u1/password", JSON, b'{"password": "password-2"}'),
        ("/api/v1/auth/users/u1/password", JSON, b'{"password": "x"}'),
        ("/api/v1/auth/users/zz/password", JSON, b'{"password": "password-2"}'),
    ],
    ("PUT", "/api/v1/auth/users/{name}/roles/{role}"): [
        ("/api/v1/auth/users/u1/roles/r1", {}, None),
        ("/api/v1/auth/users/u1/roles/nope", {}, None),
    ],
    ("DELETE", "/api/v1/auth/users/{name}/roles/{role}"): [
        ("/api/v1/auth/users/u1/roles/r1", {}, None),
        ("/api/v1/auth/users/zz/roles/r1", {}, None),
    ],
    ("POST", "/api/v1/auth/tokens"): [
        ("/api/v1/auth/tokens", JSON, b'{"user": "u1", "ttl_s": 60}'),
        ("/api/v1/auth/tokens", JSON, b'{"user": "u1", "ttl_s": 0}'),
        ("/api/v1/auth/tokens", JSON, b'{"user": "zz"}'),
        ("/api/v1/auth/tokens", JSON, b"{}"),
    ],
    ("GET", "/api/v1/auth/tokens"): [("/api/v1/auth/tokens", {}, None)],
    ("DELETE", "/api/v1/auth/tokens/{token_id}"): [("/api/v1/auth/tokens/00000000000000000000", {}, None)],
    ("POST", "/api/v1/auth/join-tokens"): [
        ("/api/v1/auth/join-tokens", JSON, b'{"ttl_s": 60}'),
        ("/api/v1/auth/join-tokens", JSON, b'{"ttl_s": -1}'),
    ],
    ("GET", "/api/v1/auth/join-tokens"): [("/api/v1/auth/join-tokens", {}, None)],
    ("DELETE", "/api/v1/auth/join-tokens/{token_id}"): [
        ("/api/v1/auth/join-tokens/00000000000000000000", {}, None)
    ],
    ("DELETE", "/api/v1/auth/roles/{name}"): [("/api/v1/auth/roles/r1", {}, None), ("/api/v1/auth/roles/zz", {}, None)],
    ("DELETE", "/api/v1/auth/users/{name}"): [("/api/v1/auth/users/u1", {}, None), ("/api/v1/auth/users/zz", {}, None)],
}
NOT_DRIVEN = {("GET", "/api/v1/watch/ws")}  # a WebSocket (test_api_watch.py drives it)
FAILURES: list[BaseException] = [
    NoLeader(),
    Overloaded(),
    Unknown("the write timed out"),
    Unknown("lost leadership"),
    NotLeader("node2", None),  # no address to forward to: 503
    Rejected("refused for the test", status=409),
    RuntimeError("a bug, for the test"),  # 500
]


async def send(client: Client, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Any:
    return await client.open(url, method=method, headers=headers, data=body)


async def test_every_status_answered_is_listed(client: Client, runtime: FakeRuntime) -> None:
    described = {k: v for k, v in operations(pending=False).items()}
    assert set(SCENARIOS) | NOT_DRIVEN == set(described), "add a scenario for every operation"
    # A key to read, delete and compare against.
    assert (await client.put("/api/v1/kv/a", data=b"1", headers=JSON)).status_code == 200
    seen: dict[tuple[str, str], set[int]] = {op: set() for op in SCENARIOS}
    for (method, path), requests in SCENARIOS.items():
        cases: list[tuple[Request, BaseException | None]] = [(r, None) for r in requests]
        # Reads never get a 409 from the runtime (nothing to conflict with).
        cases += [(requests[0], exc) for exc in FAILURES if not (method == "GET" and isinstance(exc, Rejected))]
        oversized_url = requests[0][0]
        big = b"[" + b"1," * MAX_BODY + b"1]"
        cases.append(((oversized_url, {**JSON, "Content-Length": str(len(big))}, big), None))
        for (url, headers, body), failure in cases:
            if failure is not None:
                runtime.fail_next(failure)
            resp = await send(client, method, url, headers, body)
            runtime._failures.clear()  # a route that never called the runtime leaves it unused
            runtime.lead()
            code = resp.status_code
            seen[(method, path)].add(code)
            listed = set(map(int, described[(method, path)]["responses"]))
            assert code in listed, f"{method} {url} (failure {failure!r}) answered {code}, not listed: {sorted(listed)}"
            if code >= 400 and (method, path) != ("GET", "/") and (path, str(code)) not in OWN_SHAPES:
                data = json.loads(await resp.get_data(as_text=True))
                assert isinstance(data.get("error"), str) and data["error"], (method, url, data)
                assert data.get("outcome", "not_applied") in ("not_applied", "unknown"), (method, url, data)
    # The drive reached more than the happy path: every route saw an error status.
    assert [op for op, codes in seen.items() if not any(c >= 400 for c in codes)] == []


async def test_openapi_json_and_docs_are_served(client: Client) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert json.loads(await resp.get_data(as_text=True)) == spec()
    page = await client.get("/docs")
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    html = await page.get_data(as_text=True)
    loaded = [u for u in re.findall(r'(?:src|href)="([^"#]+)"', html) if u != "data:,"]  # data:, no favicon request
    assert loaded and all(u.startswith("/") and not u.startswith("//") for u in loaded), loaded
    for url in loaded:
        assert (await client.get(url)).status_code == 200, url


async def test_the_request_guards_answers_are_listed_on_every_operation() -> None:
    """The request guard (limits.py) answers in front of every route: 414, 431, 400 (framing),
    429 (rate), before the app runs (408 for a late body is driven in test_http_limits.py)."""
    app = create_app(FakeRuntime("node1"), ApiOptions(client_rate_per_s=0.001, client_burst=1))
    guard = app.guard
    assert guard is not None
    for i, ((method, path), requests) in enumerate(sorted(SCENARIOS.items())):
        url = requests[0][0]
        raw_path, _, query = url.partition("?")

        def scope(
            extra: list[tuple[bytes, bytes]], target: str = raw_path, client: int = i, method: str = method, query: str = query
        ) -> dict[str, Any]:
            return {
                "type": "http",
                "method": method,
                "path": target,
                "raw_path": target.encode(),
                "query_string": query.encode(),
                "headers": [(b"host", b"127.0.0.1")] + extra,
                "client": (f"10.0.{client // 250}.{client % 250 + 1}", 5000),
            }

        statuses = set()
        for sc in (
            scope([], target=raw_path + "x" * 9000),
            scope([(b"x-filler", b"y" * 9000)]),
            scope([(b"content-length", b"2"), (b"transfer-encoding", b"chunked")]),
            scope([]),  # the client's one token
            scope([]),  # ... used up
        ):
            _, refusal = guard.precheck(cast(Any, sc))
            if refusal is not None:
                statuses.add(refusal.status)
        assert statuses == {414, 431, 400, 429}, (method, path, statuses)
        listed = set(map(int, operations()[(method, path)]["responses"]))
        assert statuses <= listed, (method, path, statuses - listed)
        assert 408 in listed, (method, path)
