"""Authentication and authorisation on real processes (issue 11, items 2-4).

One 3-node cluster with ``--auth-enabled`` (node1 bootstraps the first admin from a password
file; node2 and node3 join with a join token), a small snapshot threshold so that a node
joining later is brought up by a snapshot. In order:

* every route class answers 401 (with ``WWW-Authenticate`` and a JSON error) without or with
  bad credentials, on the leader and on a follower, fast path included; health, readiness and
  the console's static files stay public;
* roles: read / read-write on prefixes, 403 on each route class for a role that does not
  allow it (keys, listings, prefix deletes, transactions, watches, membership, backup, users);
* a follower forwards a write with the caller's own credential and the leader checks it; a
  forged "forwarded" header gives nothing;
* a user or token created through one node works at once through another;
* a password change: the old password stops, the new one and existing tokens keep working,
  other users are untouched; ``revoke_tokens`` revokes that user's tokens only;
* joins: without a token refused (exit 3), with a bad one refused, with a join token admitted
  (through a snapshot, which carries the users); an address change needs admin;
* a restarted node still knows its users; a backup carries the auth table but no secret;
  no log line holds a password or a token;
* listening beyond loopback with TLS but without authentication exits 2.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_cluster import FAST_FLAGS, Cluster, Node, free_port, server_command, wait_for

ADMIN_PASSWORD = "admin-secret-pw-1"
ADMIN = ("admin", ADMIN_PASSWORD)
ALICE = ("alice", "alice-secret-pw-1")
BOB = ("bob", "bob-secret-pw-1")
# Many deliberate failures from one address here: the failed-login limit is tested on its own.
FLAGS = (*FAST_FLAGS, "--auth-enabled", "--snapshot-threshold", "20", "--auth-failures-burst", "100000")


class Env:
    def __init__(self, cluster: Cluster, join_token: str) -> None:
        self.cluster = cluster
        self.join_token = join_token
        self.secrets: list[str] = [ADMIN_PASSWORD, ALICE[1], BOB[1], join_token]

    def leader(self) -> Node:
        return self.cluster.wait_leader()

    def follower(self) -> Node:
        lead = self.leader()
        return next(n for n in self.cluster.live() if n.node_id != lead.node_id)


def call(node: Node, method: str, path: str, auth: Any = None, **kw: Any) -> httpx.Response:
    return httpx.request(method, node.url + path, auth=auth, timeout=10, **kw)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("auth")
    pw_file = root / "admin-password"
    pw_file.write_text(ADMIN_PASSWORD + "\n")
    cluster = Cluster(root / "cluster", extra_args=FLAGS)
    ok = False
    try:
        n1 = cluster.add("node1", extra_args=(*FLAGS, "--auth-admin-password-file", str(pw_file)))
        n1.auth = ADMIN
        cluster.start("node1")
        cluster.wait_leader([n1])
        r = call(n1, "POST", "/api/v1/auth/join-tokens", ADMIN, json={"ttl_s": 600})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        for nid in ("node2", "node3"):
            node = cluster.add(nid, extra_args=(*FLAGS, "--join-token", token))
            node.auth = ADMIN
            cluster.start(nid, join=n1.url)
        cluster.wait_members(["node1", "node2", "node3"])
        e = Env(cluster, token)
        lead = e.leader()
        for name, perms in (("app-rw", [{"prefix": "app/", "access": "readwrite"}]), ("pub-ro", [{"prefix": "pub/", "access": "read"}])):
            assert call(lead, "PUT", f"/api/v1/auth/roles/{name}", ADMIN, json={"permissions": perms}).status_code == 201
        for (user, pw), role in ((ALICE, "app-rw"), (BOB, "pub-ro")):
            r = call(lead, "POST", "/api/v1/auth/users", ADMIN, json={"name": user, "password": pw, "roles": [role]})
            assert r.status_code == 201, r.text
        ok = True
        yield e
    finally:
        cluster.close()
        if not ok:
            cluster.dump_logs()


# --------------------------------------------------------------------------- 401 everywhere

PROTECTED: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/kv/app/a", None),  # fast path
    ("PUT", "/api/v1/kv/app/a", b"1"),  # fast path
    ("DELETE", "/api/v1/kv/app/a", None),
    ("GET", "/api/v1/kv/app/a?meta=true", None),  # Quart route
    ("GET", "/api/v1/kv?prefix=app/", None),
    ("DELETE", "/api/v1/kv?prefix=app/&confirm=true", None),
    ("POST", "/api/v1/txn", b'{"compare":[],"success":[{"op":"put","key":"app/t","value":1}]}'),
    ("GET", "/api/v1/watch?prefix=app/", None),
    ("GET", "/api/v1/status", None),
    ("GET", "/api/v1/raft/nodes", None),
    ("POST", "/api/v1/raft/remove", b'{"NodeID":"node3"}'),
    ("POST", "/api/v1/raft/transfer-leadership", b"{}"),
    ("POST", "/api/v1/raft/join", b'{"NodeID":"n9","RaftAddress":"127.0.0.1:1"}'),
    ("GET", "/api/v1/backup", None),
    ("GET", "/api/v1/events", None),
    ("GET", "/api/v1/stats", None),
    ("GET", "/metrics", None),
    ("GET", "/ui/peers", None),
    ("GET", "/ui/stats", None),
    ("GET", "/api/v1/auth/users", None),
    ("GET", "/api/v1/auth/whoami", None),
    ("POST", "/api/v1/auth/tokens", b"{}"),
]


def test_every_route_class_needs_credentials(env: Env) -> None:
    for node in (env.leader(), env.follower()):
        before = call(node, "GET", "/api/v1/kv/app/a", ADMIN)
        for method, path, body in PROTECTED:
            for auth in (None, ("alice", "wrong-password"), ("nobody", "x" * 10)):
                r = call(node, method, path, auth, content=body)
                assert r.status_code == 401, (node.node_id, method, path, auth, r.status_code, r.text)
                assert isinstance(r.json()["error"], str) and r.json()["error"]
                if path != "/api/v1/raft/join" or auth is not None:
                    assert "Bearer" in r.headers["WWW-Authenticate"], (method, path)
            r = call(node, method, path, headers=bearer("bv_not-a-real-token"), content=body)
            assert r.status_code == 401, (method, path, r.text)
        # Nothing was written by any of those.
        after = call(node, "GET", "/api/v1/kv/app/a", ADMIN)
        assert (before.status_code, before.text) == (after.status_code, after.text)
        for path in ("/health", "/ready", "/ui/", "/ui/app.js", "/openapi.json"):
            assert call(node, "GET", path).status_code == 200, path
        # The console's calls get a Bearer-only challenge (no browser login dialog).
        r = call(node, "GET", "/api/v1/status", headers={"X-Beaver-Vault-UI": "1"})
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Bearer realm="beaver-vault"'


# --------------------------------------------------------------------------- 403 by role


def test_roles_decide_on_every_route_class(env: Env) -> None:
    node = env.follower()
    assert call(node, "PUT", "/api/v1/kv/app/x", ALICE, content=b'"a"').status_code == 200
    assert call(node, "PUT", "/api/v1/kv/pub/x", ADMIN, content=b'"p"').status_code == 200
    allowed = [
        (ALICE, "GET", "/api/v1/kv/app/x", None, 200),
        (ALICE, "GET", "/api/v1/kv?prefix=app/", None, 200),
        (ALICE, "POST", "/api/v1/txn", b'{"compare":[],"success":[{"op":"put","key":"app/t","value":1}]}', 200),
        (ALICE, "GET", "/api/v1/status", None, 200),
        (ALICE, "GET", "/metrics", None, 200),
        (ALICE, "GET", "/api/v1/auth/whoami", None, 200),
        (BOB, "GET", "/api/v1/kv/pub/x", None, 200),
        (BOB, "GET", "/api/v1/kv/pub/absent", None, 404),
        (BOB, "GET", "/api/v1/kv?prefix=pub/", None, 200),
    ]
    refused = [
        (ALICE, "PUT", "/api/v1/kv/pub/x", b"1"),  # fast path, write outside her prefix
        (ALICE, "GET", "/api/v1/kv/pub/x", None),
        (ALICE, "DELETE", "/api/v1/kv/other", None),
        (ALICE, "GET", "/api/v1/kv?prefix=", None),  # a listing wider than her prefix
        (ALICE, "GET", "/api/v1/kv?prefix=ap", None),
        (ALICE, "DELETE", "/api/v1/kv?prefix=&confirm=true", None),
        (ALICE, "POST", "/api/v1/txn", b'{"compare":[],"success":[{"op":"put","key":"pub/t","value":1}]}'),
        (ALICE, "POST", "/api/v1/txn", b'{"compare":[{"key":"pub/x","target":"value","op":"==","value":1}],"success":[]}'),
        (ALICE, "GET", "/api/v1/watch?prefix=", None),
        (ALICE, "POST", "/api/v1/raft/remove", b'{"NodeID":"node3"}'),
        (ALICE, "POST", "/api/v1/raft/transfer-leadership", b"{}"),
        (ALICE, "POST", "/api/v1/raft/join", b'{"NodeID":"n9","RaftAddress":"127.0.0.1:1"}'),
        (ALICE, "GET", "/api/v1/backup", None),
        (ALICE, "GET", "/api/v1/auth/users", None),
        (ALICE, "POST", "/api/v1/auth/users", b'{"name":"mallory","password":"mallory-pw-1"}'),
        (ALICE, "PUT", "/api/v1/auth/users/alice/roles/admin", None),
        (ALICE, "PUT", "/api/v1/auth/users/bob/password", b'{"password":"taken-over-1"}'),
        (ALICE, "POST", "/api/v1/auth/tokens", b'{"user":"bob"}'),
        (BOB, "PUT", "/api/v1/kv/pub/x", b"1"),  # read-only
        (BOB, "DELETE", "/api/v1/kv/pub/x", None),
    ]
    for n in (env.leader(), env.follower()):
        for auth, method, path, body, status in allowed:
            r = call(n, method, path, auth, content=body)
            assert r.status_code == status, (n.node_id, auth[0], method, path, r.status_code, r.text)
        for auth, method, path, body in refused:
            r = call(n, method, path, auth, content=body)
            assert r.status_code == 403, (n.node_id, auth[0], method, path, r.status_code, r.text)
            assert auth[0] in r.json()["error"], r.text
    # Nothing refused changed anything.
    assert call(node, "GET", "/api/v1/kv/pub/x", ADMIN).json() == "p"
    assert call(node, "GET", "/api/v1/kv/pub/t", ADMIN).status_code == 404
    assert "mallory" not in call(node, "GET", "/api/v1/auth/users", ADMIN).text
    assert call(node, "GET", "/api/v1/auth/whoami", ALICE).json()["roles"] == ["app-rw"]


def test_watch_is_checked_and_streams_for_an_allowed_caller(env: Env) -> None:
    node = env.follower()
    with httpx.stream("GET", node.url + "/api/v1/watch?prefix=app/w", auth=ALICE, timeout=10) as stream:
        assert stream.status_code == 200
        assert call(env.leader(), "PUT", "/api/v1/kv/app/w1", ALICE, content=b"7").status_code == 200
        seen = ""
        for line in stream.iter_lines():
            seen += line + "\n"
            if line.startswith("data:") and "app/w1" in line:
                break
        assert '"app/w1"' in seen
    for auth, status in ((None, 401), (BOB, 403)):
        with httpx.stream("GET", node.url + "/api/v1/watch?prefix=app/", auth=auth, timeout=10) as stream:
            assert stream.status_code == status


def test_an_open_watch_on_a_follower_ends_when_its_role_is_revoked(env: Env) -> None:
    carol = ("carol", "carol-password-1")
    lead = env.leader()
    r = call(lead, "POST", "/api/v1/auth/users", ADMIN, json={"name": carol[0], "password": carol[1], "roles": ["app-rw"]})
    assert r.status_code == 201, r.text
    env.secrets.append(carol[1])
    node = env.follower()
    wait_for("carol known on the follower", lambda: call(node, "GET", "/api/v1/auth/whoami", carol).status_code == 200, 10)
    lines: list[str] = []
    with httpx.stream("GET", node.url + "/api/v1/watch?prefix=app/rv", auth=carol, timeout=10) as stream:
        assert stream.status_code == 200
        it = stream.iter_lines()
        assert next(it) == ": watching"
        assert call(lead, "PUT", "/api/v1/kv/app/rv1", ALICE, content=b"1").status_code == 200
        for line in it:
            lines.append(line)
            if '"app/rv1"' in line:
                break
        assert call(lead, "DELETE", "/api/v1/auth/users/carol/roles/app-rw", ADMIN).status_code == 200
        assert call(lead, "PUT", "/api/v1/kv/app/rv2", ALICE, content=b"2").status_code == 200
        lines += list(it)  # to the end of the stream: the server ends it
    text = "\n".join(lines)
    assert "event: error" in text and '"status": 403' in text and "no longer" in text, text
    assert "app/rv2" not in text, text


# --------------------------------------------------------------------------- forwarding


def test_forwarded_writes_are_checked_against_the_original_caller(env: Env) -> None:
    lead, follower = env.leader(), env.follower()
    r = call(follower, "PUT", "/api/v1/kv/app/fwd", ALICE, content=b"1")
    assert r.status_code == 200 and r.headers.get("X-Beaver-Vault-Forwarded-To") == lead.node_id, r.headers
    r = call(follower, "PUT", "/api/v1/kv/app/fwd", BOB, content=b"2")
    assert r.status_code == 403
    # A request that claims to be forwarded by a member carries no authority of its own.
    forged = {"X-Beaver-Vault-Forwarded-By": follower.node_id}
    assert call(lead, "PUT", "/api/v1/kv/app/fwd", headers=forged, content=b"3").status_code == 401
    assert call(lead, "PUT", "/api/v1/kv/app/fwd", BOB, headers=forged, content=b"3").status_code == 403
    # The caller's token travels too: a Bearer write through a follower.
    tok = call(follower, "POST", "/api/v1/auth/tokens", ALICE, json={"ttl_s": 600}).json()["token"]
    r = call(follower, "PUT", "/api/v1/kv/app/fwd", headers=bearer(tok), content=b"4")
    assert r.status_code == 200, r.text
    assert call(lead, "GET", "/api/v1/kv/app/fwd", ADMIN).json() == 4


# --------------------------------------------------------------------------- at once everywhere


def test_users_and_tokens_made_through_one_node_work_at_once_through_another(env: Env) -> None:
    nodes = env.cluster.live()
    for i in range(6):
        via, then = nodes[i % 3], nodes[(i + 1) % 3]
        user = (f"carol{i}", f"carol-secret-{i}")
        r = call(via, "POST", "/api/v1/auth/users", ADMIN, json={"name": user[0], "password": user[1], "roles": ["app-rw"]})
        assert r.status_code == 201, r.text
        env.secrets.append(user[1])
        r = call(then, "PUT", f"/api/v1/kv/app/{user[0]}", user, content=b"1")
        assert r.status_code == 200, (via.node_id, then.node_id, r.text)
        tok = call(then, "POST", "/api/v1/auth/tokens", user, json={}).json()["token"]
        env.secrets.append(tok)
        r = call(via, "GET", f"/api/v1/kv/app/{user[0]}", headers=bearer(tok))
        assert r.status_code == 200, r.text
        # A grant made through one node counts at once on another.
        assert call(then, "GET", "/api/v1/kv/pub/x", user).status_code == 403
        assert call(via, "PUT", f"/api/v1/auth/users/{user[0]}/roles/pub-ro", ADMIN).status_code == 200
        assert call(then, "GET", "/api/v1/kv/pub/x", user).status_code == 200


# --------------------------------------------------------------------------- passwords


def test_a_password_change_revokes_nothing_it_should_not(env: Env) -> None:
    lead, follower = env.leader(), env.follower()
    dave = ("dave", "dave-secret-pw-1")
    assert call(lead, "POST", "/api/v1/auth/users", ADMIN, json={"name": "dave", "password": dave[1], "roles": ["app-rw"]}).status_code == 201
    tok = call(follower, "POST", "/api/v1/auth/tokens", dave, json={}).json()["token"]
    alice_tok = call(follower, "POST", "/api/v1/auth/tokens", ALICE, json={}).json()["token"]
    new = ("dave", "dave-secret-pw-2")
    env.secrets += [dave[1], new[1], tok, alice_tok]
    r = call(follower, "PUT", "/api/v1/auth/users/dave/password", dave, json={"password": new[1]})
    assert r.status_code == 200 and r.json()["tokens_revoked"] == 0, r.text
    env.cluster.wait_applied(r.json()["revision"])
    for n in env.cluster.live():
        assert call(n, "GET", "/api/v1/kv/app/x", dave).status_code == 401, n.node_id
        assert call(n, "GET", "/api/v1/kv/app/x", new).status_code == 200, n.node_id
        assert call(n, "GET", "/api/v1/kv/app/x", headers=bearer(tok)).status_code == 200, n.node_id
        assert call(n, "GET", "/api/v1/kv/app/x", ALICE).status_code == 200, n.node_id
    # With revoke_tokens, dave's tokens go, nobody else's.
    r = call(lead, "PUT", "/api/v1/auth/users/dave/password", ADMIN, json={"password": dave[1], "revoke_tokens": True})
    assert r.status_code == 200 and r.json()["tokens_revoked"] == 1, r.text
    env.cluster.wait_applied(r.json()["revision"])
    for n in env.cluster.live():
        assert call(n, "GET", "/api/v1/kv/app/x", headers=bearer(tok)).status_code == 401, n.node_id
        assert call(n, "GET", "/api/v1/kv/app/x", headers=bearer(alice_tok)).status_code == 200, n.node_id
        assert call(n, "GET", "/api/v1/kv/app/x", dave).status_code == 200, n.node_id
    # Answers never carry a hash or a salt.
    listing = call(lead, "GET", "/api/v1/auth/users", ADMIN).text
    assert "salt" not in listing and "scrypt" not in listing and "hash" not in listing


# --------------------------------------------------------------------------- joins


def join_body(node_id: str, port: int, **extra: Any) -> dict[str, Any]:
    return {"NodeID": node_id, "RaftAddress": f"127.0.0.1:{port}", **extra}


def test_joins_need_a_credential_and_address_changes_need_admin(env: Env) -> None:
    lead, follower = env.leader(), env.follower()
    cluster = env.cluster
    # Through the CLI: no token, a wrong token: the joining node is refused and exits 3.
    for nid, extra in (("node4", ()), ("node5", ("--join-token", "bvj_wrong"))):
        node = cluster.add(nid, extra_args=(*FLAGS, *extra))
        node.start(join=follower.url)
        assert node.proc is not None
        assert node.proc.wait(timeout=60) == 3, node.log_tail()
        assert "HTTP 401" in node.log_text(), node.log_tail()
    # An existing member's raft address: a join token is not enough, admin is.
    member = env.follower()
    moved = join_body(member.node_id, free_port(), JoinToken=env.join_token, UpdateAddress=True)
    assert call(lead, "POST", "/api/v1/raft/join", json=moved).status_code == 401
    assert call(lead, "POST", "/api/v1/raft/join", ALICE, json=moved).status_code == 403
    sneaky = join_body(member.node_id, free_port(), JoinToken=env.join_token)
    assert call(follower, "POST", "/api/v1/raft/join", json=sneaky).status_code == 401
    assert call(lead, "POST", "/api/v1/raft/join?dry_run=true", ADMIN, json=moved).status_code == 200
    assert member.raft_address in json.dumps(call(lead, "GET", "/api/v1/raft/nodes", ADMIN).json())
    # With the join token (the log was compacted: node6 is brought up by a snapshot).
    for i in range(30):
        assert call(lead, "PUT", f"/api/v1/kv/app/fill{i}", ALICE, content=b"1").status_code == 200
    node6 = cluster.add("node6", extra_args=(*FLAGS, "--join-token", env.join_token))
    node6.auth = ADMIN
    cluster.start("node6", join=follower.url)
    cluster.wait_members(["node1", "node2", "node3", "node6"])
    assert call(node6, "GET", "/api/v1/kv/app/x", ALICE).status_code == 200
    assert call(node6, "GET", "/api/v1/kv/app/x", BOB).status_code == 403
    # Leave the cluster at three voters for the tests after this one.
    r = call(lead, "POST", "/api/v1/raft/remove", ADMIN, json={"NodeID": "node6"})
    assert r.status_code == 200, r.text
    node6.stop()


# --------------------------------------------------------------------------- persistence


def test_restart_backup_and_logs(env: Env, tmp_path: Path) -> None:
    follower = env.follower()
    follower.stop()
    follower.start()
    follower.wait_ready()
    assert call(follower, "GET", "/api/v1/kv/app/x", ALICE, params={"consistency": "stale"}).status_code == 200
    assert call(follower, "GET", "/api/v1/kv/app/x", BOB).status_code == 403
    r = call(env.leader(), "GET", "/api/v1/backup", ADMIN)
    assert r.status_code == 200
    backup = r.text
    assert '"table":"auth"' in backup.replace(" ", "") and '"alice"' in backup
    for secret in env.secrets:
        assert secret not in backup
    for node in env.cluster.nodes.values():
        # The harness's own "===== start: argv" lines are not the server's log.
        text = "\n".join(line for line in node.log_text().splitlines() if not line.startswith("====="))
        for secret in env.secrets:
            assert secret not in text, (node.node_id, "a secret in the log")


def test_beyond_loopback_needs_tls_and_authentication(tmp_path: Path) -> None:
    from beaver_vault.cli_certs import make_certs

    certs = tmp_path / "certs"
    make_certs(certs, ["n1"])
    base = [*server_command(), "server", "--node-id", "n1", "--data-dir", str(tmp_path / "d"), "--bind-host", "0.0.0.0"]
    base += ["--http-port", str(free_port()), "--raft-port", str(free_port())]
    tls = ["--tls-cert-file", str(certs / "n1.pem"), "--tls-key-file", str(certs / "n1-key.pem")]
    tls += ["--tls-ca-file", str(certs / "ca.pem")]
    for extra, missing in (([], "TLS"), (tls, "authentication"), (["--auth-enabled"], "TLS")):
        out = subprocess.run(base + extra, capture_output=True, text=True, timeout=30)
        assert out.returncode == 2, out
        assert "beyond loopback" in out.stderr and missing in out.stderr.split("missing:")[1], out.stderr


def test_bootstrap_is_idempotent_across_restarts(env: Env) -> None:
    # node1 (which has the password file) restarted does not
    # create a second admin or change the first.
    n1 = env.cluster["node1"]
    n1.stop()
    n1.start()
    n1.wait_ready()
    wait_for("node1 to know admin", lambda: call(n1, "GET", "/api/v1/auth/whoami", ADMIN).status_code == 200, 20, 0.1)
    users = [u["name"] for u in call(n1, "GET", "/api/v1/auth/users", ADMIN).json()["users"]]
    assert users.count("admin") == 1


# --------------------------------------------------------------------------- client and CLI


def cli(node: Node, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("BEAVER_VAULT_")}
    full.update(env or {})
    return subprocess.run(
        [*server_command(), *args, "--endpoints", node.url], capture_output=True, text=True, timeout=60, env=full, input=stdin
    )


def test_client_and_cli_log_in(env: Env) -> None:
    from beaver_vault.client import AsyncClient, Client, Forbidden, Unauthorized

    node = env.follower()
    with Client(node.url, user=ALICE[0], password=ALICE[1]) as c:
        rev = c.put("app/client", {"v": 1}).revision
        assert c.get("app/client") == {"v": 1}
        assert c.whoami()["user"] == "alice"
        with pytest.raises(Forbidden):
            c.put("pub/client", 1)
        token = c.issue_token(ttl_s=600)
        env.secrets.append(token)
    with Client(node.url, token=token) as c:
        assert c.get("app/client") == {"v": 1}
        # A watch carries the credential too.
        with c.watch("app/client", from_revision=rev) as events:
            first = next(iter(events))
            assert first.key == "app/client"
    with Client(node.url) as c, pytest.raises(Unauthorized):
        c.get("app/client")

    import anyio

    async def watch_async() -> str:
        async with AsyncClient(node.url, user=ALICE[0], password=ALICE[1]) as ac:
            async with ac.watch("app/client", from_revision=rev) as events:
                async for event in events:
                    return event.key
        return ""

    assert anyio.run(watch_async) == "app/client"

    # The CLI: --user/--password, then environment variables, then a token.
    admin_env = {"BEAVER_VAULT_USER": ADMIN[0], "BEAVER_VAULT_PASSWORD": ADMIN[1]}
    out = cli(node, "auth", "role", "put", "ops", "--readwrite", "ops/", env=admin_env)
    assert out.returncode == 0, out.stderr
    out = cli(node, "auth", "user", "create", "erin", "--role", "ops", env=admin_env, stdin="erin-secret-pw-1\n")
    assert out.returncode == 0, out.stderr
    env.secrets.append("erin-secret-pw-1")
    out = cli(node, "put", "ops/a", "1", "--user", "erin", "--password", "erin-secret-pw-1")
    assert out.returncode == 0, out.stderr
    out = cli(node, "auth", "token", "issue", "--ttl", "600", env={"BEAVER_VAULT_USER": "erin", "BEAVER_VAULT_PASSWORD": "erin-secret-pw-1"})
    assert out.returncode == 0, out.stderr
    erin_token = out.stdout.strip()
    env.secrets.append(erin_token)
    out = cli(node, "get", "ops/a", "--token", erin_token)
    assert out.returncode == 0 and out.stdout.strip() == "1", out
    out = cli(node, "auth", "whoami", "--json", "--token", erin_token)
    assert json.loads(out.stdout)["user"] == "erin"
    out = cli(node, "get", "app/client", "--token", erin_token)
    assert out.returncode == 1 and "403" in out.stderr, out
    out = cli(node, "get", "ops/a")
    assert out.returncode == 1 and "401" in out.stderr, out
    out = cli(node, "auth", "user", "list", "--json", env=admin_env)
    assert "erin" in [u["name"] for u in json.loads(out.stdout)["users"]]
    out = cli(node, "auth", "join-token", "create", "--ttl", "60", env=admin_env)
    assert out.returncode == 0 and out.stdout.startswith("bvj_"), out
    new_join = out.stdout.strip()
    env.secrets.append(new_join)
    import hashlib

    tid = hashlib.sha256(new_join.encode()).hexdigest()[:16]
    listed = json.loads(cli(node, "auth", "join-token", "list", "--json", env=admin_env).stdout)["join_tokens"]
    assert tid in [t["id"] for t in listed]
    assert cli(node, "auth", "join-token", "revoke", tid, env=admin_env).returncode == 0
    listed = json.loads(cli(node, "auth", "join-token", "list", "--json", env=admin_env).stdout)["join_tokens"]
    assert tid not in [t["id"] for t in listed]
