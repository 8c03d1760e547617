"""Authentication pieces without a cluster: the replicated records and their commands
(``kv/auth.py``), permission matching, password and token hashing (``api/passwords.py``), the
guard's classification and failure limit (``api/auth_guard.py``), the routes through the app
with authentication on (every status they answer is in openapi.yaml), the SQLite table
(schema 3, snapshots, rollback) and the configuration rule for binding beyond loopback.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import trio
from fake_runtime import FakeRuntime
from test_openapi import JSON, SCENARIOS, operations

from beaver_vault.api import ApiOptions, create_app
from beaver_vault.api.auth_guard import AuthOptions, FailureLimiter, Need, classify
from beaver_vault.api.passwords import PasswordChecker, hash_password, new_token, token_digest
from beaver_vault.config import ConfigError, load_config
from beaver_vault.kv import commands
from beaver_vault.kv.auth import AuthCommand, Grant, Principal, auth_command
from beaver_vault.kv.memory import MemoryKV, UndoKV
from beaver_vault.kv.state import apply
from beaver_vault.kv.values import CommandError
from beaver_vault.raft.messages import Entry, EntryKind
from beaver_vault.storage.sqlite import SQLiteStorage

# A fixed, valid password record (hashing is tested below; commands need no real hash).
PW = {"alg": "scrypt", "n": 16384, "r": 8, "p": 1, "salt": "00" * 16, "hash": "ab" * 32}
DIGEST = "cd" * 32


# --------------------------------------------------------------------------- commands


def test_auth_commands_round_trip_and_decode_strictly() -> None:
    data = auth_command("create_user", name="alice", password=PW, roles=["b", "a", "a"])
    cmd = commands.decode(data)
    assert isinstance(cmd, AuthCommand) and cmd.fields["roles"] == ["a", "b"]
    assert commands.encode(cmd) == data
    bad = [
        b'{"v":1,"op":"auth","action":"create_user","fields":{"name":"alice"}}',  # no password
        b'{"v":1,"op":"auth","action":"nope","fields":{}}',
        b'{"v":1,"op":"auth","action":"delete_user","fields":{"name":"a b"}}',
        b'{"v":1,"op":"auth","action":"delete_user","fields":{"name":"a"},"x":1}',
        b'{"v":1,"op":"auth","action":"put_role","fields":{"name":"admin","permissions":[]}}',
        b'{"v":1,"op":"auth","action":"put_role","fields":{"name":"r","permissions":[{"prefix":"a","access":"all"}]}}',
        b'{"v":1,"op":"auth","action":"put_token","fields":{"id":"short","user":"a","created_ms":1}}',
        b'{"v":1,"op":"auth","action":"put_join_token","fields":{"id":"' + DIGEST.encode() + b'","created_ms":1,"expires_at_ms":null}}',
    ]
    for raw in bad:
        with pytest.raises(CommandError):
            commands.decode(raw)
        # ... and applied, they change nothing (the same everywhere).
        store = MemoryKV()
        assert apply(store, 1, raw)["code"] == "bad_command"
        assert store.auth_scan("user") == []


def run(store: Any, index: int, action: str, **fields: Any) -> dict[str, Any]:
    return apply(store, index, auth_command(action, **fields))


def test_apply_users_roles_tokens_transcript() -> None:
    s = MemoryKV()
    assert run(s, 1, "bootstrap", name="admin", password=PW)["created"] is True
    assert run(s, 2, "bootstrap", name="root", password=PW)["created"] is False  # idempotent
    assert [n for n, _ in s.auth_scan("user")] == ["admin"]
    assert run(s, 3, "create_user", name="alice", password=PW, roles=["r1"])["code"] == "not_found"
    assert run(s, 4, "put_role", name="r1", permissions=[{"prefix": "a/", "access": "read"}])["created"] is True
    assert run(s, 5, "create_user", name="alice", password=PW, roles=["r1"])["revision"] == 5
    assert run(s, 6, "create_user", name="alice", password=PW)["code"] == "exists"
    assert run(s, 7, "put_token", id=DIGEST, user="alice", created_ms=1, expires_at_ms=None)["revision"] == 7
    assert run(s, 8, "put_token", id="ef" * 32, user="ghost", created_ms=1)["code"] == "not_found"
    # Deleting a role takes it from its users; deleting a user takes their tokens.
    assert run(s, 9, "delete_role", name="r1")["revision"] == 9
    assert json.loads(s.auth_get("user", "alice") or "{}")["roles"] == []
    assert run(s, 10, "set_password", name="alice", password=PW)["tokens_revoked"] == 0
    assert s.auth_get("token", DIGEST) is not None
    assert run(s, 11, "delete_user", name="alice")["revision"] == 11
    assert s.auth_get("token", DIGEST) is None
    assert run(s, 12, "delete_token", id=DIGEST)["code"] == "not_found"
    # No auth command makes a watch event or touches a key.
    assert len(s) == 0
    # The last admin can be neither deleted nor demoted; with a second admin, both can.
    assert run(s, 13, "delete_user", name="admin")["code"] == "last_admin"
    assert run(s, 14, "revoke", name="admin", role="admin")["code"] == "last_admin"
    assert run(s, 15, "create_user", name="root", password=PW, roles=["admin"])["revision"] == 15
    assert run(s, 16, "revoke", name="admin", role="admin")["revision"] == 16
    assert run(s, 17, "delete_user", name="root")["code"] == "last_admin"


def test_undo_restores_auth_records() -> None:
    kv = MemoryKV()
    run(kv, 1, "bootstrap", name="admin", password=PW)
    before = kv.auth_scan("user")
    view = UndoKV(kv)
    run(view, 2, "create_user", name="bob", password=PW)
    run(view, 3, "delete_user", name="admin")
    view.rollback()
    assert kv.auth_scan("user") == before


def test_sqlite_keeps_auth_records_across_reopen_and_snapshots(tmp_path: Path) -> None:
    db = SQLiteStorage(tmp_path / "a.db")
    db.reset("c1")
    data = [
        auth_command("bootstrap", name="admin", password=PW),
        auth_command("put_role", name="r", permissions=[{"prefix": "", "access": "read"}]),
    ]
    entries = [Entry(term=1, index=i + 1, kind=EntryKind.NORMAL, data=d) for i, d in enumerate(data)]
    db.save(None, entries)
    results = db.apply(entries, lambda store, e: apply(store, e.index, e.data))
    assert results[0]["created"] is True
    db.close()
    db = SQLiteStorage(tmp_path / "a.db")
    assert [n for n, _ in db.auth_scan("user")] == ["admin"] and db.auth_get("role", "r") is not None
    index, chunks = db.snapshot_reader(1 << 16)
    other = SQLiteStorage(tmp_path / "b.db")
    other.install_begin(index)
    for i, chunk in enumerate(chunks):
        other.install_chunk(i, chunk)
    other.install_finish(index, 1, b"")
    assert other.auth_scan("user") == db.auth_scan("user") and other.auth_scan("role") == db.auth_scan("role")
    db.close()
    other.close()


# --------------------------------------------------------------------------- permissions


def test_permission_matching() -> None:
    p = Principal("u", ("r",), (Grant("app/", "readwrite"), Grant("pub/", "read")), "password")
    assert p.may_key("app/x", "write") and p.may_key("app/x", "read") and p.may_key("app/", "write")
    assert p.may_key("pub/x", "read") and not p.may_key("pub/x", "write")
    assert not p.may_key("ap", "read") and not p.may_key("other", "read")
    assert p.may_prefix("app/", "write") and p.may_prefix("app/sub/", "read")
    assert not p.may_prefix("", "read") and not p.may_prefix("ap", "read") and not p.may_prefix("pub/", "write")
    admin = Principal("a", ("admin",), (), "token")
    assert admin.is_admin and admin.may_prefix("", "write") and admin.may_key("x", "write")
    everything = Principal("e", ("all",), (Grant("", "read"),), "token")
    assert everything.may_prefix("", "read") and not everything.may_key("x", "write")


# --------------------------------------------------------------------------- secrets


async def test_passwords_are_salted_scrypt_and_checked_in_constant_time() -> None:
    one, two = hash_password("correct horse"), hash_password("correct horse")
    assert one["alg"] == "scrypt" and one["salt"] != two["salt"] and one["hash"] != two["hash"]
    checker = PasswordChecker()
    assert await checker.verify("u", "correct horse", one)
    assert await checker.verify("u", "correct horse", one)  # from the cache
    assert not await checker.verify("u", "wrong horse", one)  # the cache holds no plaintext
    assert not await checker.verify("u", "correct horse", {**one, "hash": two["hash"]})  # a new hash misses
    assert not await checker.verify("u", "x", None)
    token, digest = new_token()
    assert token.startswith("bv_") and digest == token_digest(token) and token not in digest


def test_failure_limiter() -> None:
    lim = FailureLimiter(burst=3, per_s=1.0)
    for _ in range(3):
        assert lim.wait_s("c", 0.0) == 0
        lim.failed("c", 0.0)
    assert lim.wait_s("c", 0.0) > 0 and lim.wait_s("other", 0.0) == 0
    assert lim.wait_s("c", 1.0) == 0


def scope(method: str, path: str, query: str = "") -> Any:
    return {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": query.encode()}


def test_classify_denies_unknown_paths_and_reads_keys_exactly() -> None:
    o = AuthOptions(enabled=True)
    assert classify(scope("GET", "/api/v1/kv/a%2Fb"), o) == Need("key", "a/b", "read")
    assert classify(scope("PUT", "/api/v1/kv/x"), o) == Need("key", "x", "write")
    assert classify(scope("GET", "/api/v1/kv", "prefix=p%2F&limit=1"), o) == Need("prefix", "p/", "read")
    assert classify(scope("DELETE", "/api/v1/kv", "prefix=a&prefix=b"), o) == Need("prefix", "a", "write")
    assert classify(scope("GET", "/api/v1/watch"), o) == Need("prefix", "", "read")
    assert classify(scope("GET", "/api/v1/something-new"), o).kind == "admin"
    assert classify(scope("GET", "/api/v1//raft/remove"), o).kind == "admin"
    assert classify(scope("GET", "/health"), o).kind == "public"
    assert classify(scope("GET", "/health"), AuthOptions(enabled=True, health_public=False)).kind == "authenticated"
    assert classify(scope("GET", "/metrics"), o).kind == "authenticated"
    assert classify(scope("GET", "/ui/app.js"), o).kind == "public"
    assert classify(scope("GET", "/ui/peers"), o).kind == "authenticated"


# --------------------------------------------------------------------------- the app, auth on


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def authed_app(**auth: Any) -> tuple[Any, FakeRuntime]:
    runtime = FakeRuntime("node1")
    await runtime.write(auth_command("bootstrap", name="admin", password=hash_password("admin-pw-1")), timeout_s=1)
    await runtime.write(auth_command("create_user", name="nobody", password=hash_password("nobody-pw-1")), timeout_s=1)
    app = create_app(runtime, ApiOptions(max_body_bytes=64, auth=AuthOptions(enabled=True, **auth)))
    return app, runtime


PUBLIC_OPS = {("GET", p) for p in ("/health", "/ready", "/openapi.json", "/docs", "/", "/ui/", "/ui/{name}")}


async def test_every_operation_answers_listed_401_and_403_with_auth_on() -> None:
    app, runtime = await authed_app(failures_burst=10_000)
    described = operations(pending=False)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        for (method, path), requests in SCENARIOS.items():
            url, headers, body = requests[0]
            listed = set(map(int, described[(method, path)]["responses"]))
            before = len(runtime.log)
            anon = await client.open(url, method=method, headers=headers, data=body)
            if (method, path) in PUBLIC_OPS:
                assert anon.status_code != 401, (method, url)
                continue
            assert anon.status_code == 401 and 401 in listed, (method, url, anon.status_code)
            assert "WWW-Authenticate" in anon.headers
            bad = await client.open(url, method=method, headers={**headers, **basic("nobody", "wrong")}, data=body)
            assert bad.status_code == 401
            weak = await client.open(url, method=method, headers={**headers, **basic("nobody", "nobody-pw-1")}, data=body)
            assert weak.status_code in listed, (method, url, weak.status_code, sorted(listed))
            if weak.status_code == 403:
                assert "nobody" in json.loads(await weak.get_data(as_text=True))["error"]
            assert len(runtime.log) == before or weak.status_code < 300, (method, url, "a refused request wrote")


async def test_failed_logins_are_limited_per_client() -> None:
    app, _ = await authed_app(failures_burst=3, failures_per_s=0.01, metrics_public=True)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        codes = [(await client.get("/api/v1/status", headers=basic("admin", "nope"))).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        r = await client.get("/api/v1/status", headers=basic("admin", "admin-pw-1"))
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        metrics = await (await client.get("/metrics")).get_data(as_text=True)
        assert 'reason="login_rate"' in metrics and 'reason="unauthenticated"' in metrics


async def test_tokens_whoami_and_self_service() -> None:
    app, runtime = await authed_app()
    async with app.test_app() as test_app:
        c = test_app.test_client()
        admin = basic("admin", "admin-pw-1")
        r = await c.post("/api/v1/auth/tokens", headers={**admin, **JSON}, data=b'{"user": "nobody", "ttl_s": 60}')
        assert r.status_code == 201
        tok = json.loads(await r.get_data(as_text=True))
        bearer = {"Authorization": f"Bearer {tok['token']}"}
        who = json.loads(await (await c.get("/api/v1/auth/whoami", headers=bearer)).get_data(as_text=True))
        assert who["user"] == "nobody" and who["via"] == "token" and who["admin"] is False
        # The stored record holds the digest, never the token.
        assert tok["token"] not in json.dumps(runtime.store.auth_scan("token"))
        # Expiry is checked on use.
        runtime.clock_ms += 61_000
        assert (await c.get("/api/v1/auth/whoami", headers=bearer)).status_code == 401
        # A user may change their own password, not another's.
        mine = basic("nobody", "nobody-pw-1")
        assert (await c.put("/api/v1/auth/users/admin/password", headers={**mine, **JSON}, data=b'{"password": "hijack-pw-1"}')).status_code == 403
        assert (await c.put("/api/v1/auth/users/nobody/password", headers={**mine, **JSON}, data=b'{"password": "nobody-pw-2"}')).status_code == 200
        assert (await c.get("/api/v1/auth/whoami", headers=mine)).status_code == 401
        assert (await c.get("/api/v1/auth/whoami", headers=basic("nobody", "nobody-pw-2"))).status_code == 200


# --------------------------------------------------------------------------- configuration


def test_beyond_loopback_needs_tls_and_auth_or_insecure() -> None:
    base = {"node_id": "n", "bind_host": "0.0.0.0"}
    tls = {"tls_cert_file": "c.pem", "tls_key_file": "k.pem", "tls_ca_file": "ca.pem"}
    for flags, missing in (({}, "TLS"), (tls, "authentication"), ({"auth_enabled": "true"}, "TLS")):
        with pytest.raises(ConfigError, match=missing):
            load_config(flags={**base, **flags})
    assert load_config(flags={**base, **tls, "auth_enabled": "true"}).auth_enabled
    assert load_config(flags={**base, "insecure": "true"}).insecure
    cfg = load_config(flags={"node_id": "n", "join_token": "bvj_secret"})
    assert "bvj_secret" not in repr(cfg)


async def grant_nobody_read_on_w(runtime: FakeRuntime) -> None:
    await runtime.write(auth_command("put_role", name="w", permissions=[{"prefix": "w/", "access": "read"}]), timeout_s=1)
    await runtime.write(auth_command("grant", name="nobody", role="w"), timeout_s=1)


async def test_websocket_watch_needs_credentials_and_permission() -> None:
    app, runtime = await authed_app()
    await grant_nobody_read_on_w(runtime)
    async with app.test_app() as test_app:
        client = test_app.test_client()

        async def outcome(headers: dict[str, str], prefix: str) -> str:
            try:
                async with client.websocket("/api/v1/watch/ws", headers=headers, query_string={"prefix": prefix}) as ws:
                    await ws.receive()
            except BaseException as e:  # the close (1008: policy), maybe inside an ExceptionGroup
                return repr(e)
            return "accepted"

        for headers, prefix in (({}, "w/"), (basic("nobody", "wrong-pw-1"), "w/"), (basic("nobody", "nobody-pw-1"), "")):
            assert "1008" in await outcome(headers, prefix), (headers, prefix)
        rev = (await runtime.write(commands.put("w/1", 1), timeout_s=1))["revision"]
        query = {"prefix": "w/", "from_revision": str(rev)}
        async with client.websocket("/api/v1/watch/ws", headers=basic("nobody", "nobody-pw-1"), query_string=query) as ws:
            assert json.loads(await ws.receive())["key"] == "w/1"


def test_print_config_hides_the_join_token() -> None:
    import io

    from beaver_vault.cli_ops import print_config

    out = io.StringIO()
    assert print_config({"node_id": "n", "join_token": "bvj_secret-value"}, {}, out) == 0
    assert "bvj_secret-value" not in out.getvalue() and "join_token: (hidden)" in out.getvalue()


# --------------------------------------------------------------------------- open watches lose access


async def test_an_open_sse_watch_ends_when_its_caller_loses_read_access() -> None:
    from test_api_watch import sse

    app, runtime = await authed_app()
    await grant_nobody_read_on_w(runtime)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        async with sse(client, "?prefix=w/", headers=basic("nobody", "nobody-pw-1")) as stream:
            await runtime.write(commands.put("w/1", 1), timeout_s=1)
            # An auth change that leaves nobody its access wakes the stream, which goes on.
            await runtime.write(auth_command("create_user", name="other", password=PW), timeout_s=1)
            r2 = (await runtime.write(commands.put("w/2", 2), timeout_s=1))["revision"]
            assert [m.json()["key"] for m in await stream.events(2)] == ["w/1", "w/2"]
            await runtime.write(auth_command("revoke", name="nobody", role="w"), timeout_s=1)
            await runtime.write(commands.put("w/3", 3), timeout_s=1)
            with trio.fail_after(10):
                last = await stream.next()
                assert last is not None and last.event == "error", last
                body = last.json()
                assert body["status"] == 403 and "nobody" in body["error"] and "no longer" in body["error"], body
                assert body["last_event_id"] == str(r2)  # where to resume, with access back
                assert await stream.next() is None  # the stream ended: w/3 was never sent
        assert not runtime.watch_hub.watchers


async def test_an_open_websocket_watch_ends_when_its_password_changes() -> None:
    app, runtime = await authed_app()
    await grant_nobody_read_on_w(runtime)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        query = {"prefix": "w/", "from_revision": str(runtime.applied_index() + 1)}
        async with client.websocket("/api/v1/watch/ws", headers=basic("nobody", "nobody-pw-1"), query_string=query) as ws:
            await runtime.write(commands.put("w/4", 4), timeout_s=1)
            assert json.loads(await ws.receive())["key"] == "w/4"
            await runtime.write(auth_command("set_password", name="nobody", password=PW), timeout_s=1)
            await runtime.write(commands.put("w/5", 5), timeout_s=1)
            with trio.fail_after(10):
                body = json.loads(await ws.receive())
                assert body["status"] == 401 and "no longer valid" in body["error"], body
                try:
                    extra = await ws.receive()
                except BaseException as e:  # the close, maybe inside an ExceptionGroup
                    closed = repr(e)
                else:
                    closed = f"another message: {extra!r}"
            assert "4401" in closed, closed


async def test_an_open_watch_ends_when_its_token_expires_at_the_next_keep_alive() -> None:
    from test_api_watch import sse

    runtime = FakeRuntime("node1")
    await runtime.write(auth_command("bootstrap", name="admin", password=hash_password("admin-pw-1")), timeout_s=1)
    opts = ApiOptions(auth=AuthOptions(enabled=True), watch_keepalive_s=0.05)
    app = create_app(runtime, opts)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        admin = basic("admin", "admin-pw-1")
        r = await client.post("/api/v1/auth/tokens", headers={**admin, **JSON}, data=b'{"ttl_s": 60}')
        assert r.status_code == 201
        bearer = {"Authorization": f"Bearer {json.loads(await r.get_data(as_text=True))['token']}"}
        async with sse(client, "", headers=bearer) as stream:
            await stream.until_comment("keep-alive")  # re-checked at a keep-alive: still valid
            assert not stream.ended and not stream.messages
            runtime.clock_ms += 61_000  # no auth record changes: only the keep-alive notices
            with trio.fail_after(10):
                last = await stream.next()
                assert last is not None and last.event == "error" and last.json()["status"] == 401, last
                assert await stream.next() is None
