"""End to end: real `beaver-vault server` processes on loopback, driven over HTTP.

What issue 2 asks to hold with real processes: the seed's commands as written (with httpx and
with curl); writes through every node and reads from every node; SIGKILL of the leader (new
leader, no acknowledged write lost, new writes accepted, the killed node restarts and catches
up); SIGKILL of a follower and of the leader in the middle of a write load (no acknowledged
write missing, and a write answered ``not_applied`` never appears); a join of a node that holds
another cluster's client data refused with 409; bad input answered with a 4xx JSON error that
appends nothing to the log.

Every wait is a poll loop with a deadline (``e2e_cluster.wait_for``); no test asserts a
duration. Processes are started and killed by PID by ``e2e_cluster.Cluster``; when a test fails,
every node's log is printed in its teardown section.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_cluster import Cluster, Node, curl_path, wait_for

pytestmark = pytest.mark.e2e

FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends
KV = "/api/v1/kv/"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15.0) as c:
        yield c


def put(client: httpx.Client, node: Node, key: str, value: Any) -> httpx.Response:
    return client.put(node.url + KV + key, content=json.dumps(value), headers=FORM)


def get(client: httpx.Client, node: Node, key: str, stale: bool = False) -> httpx.Response:
    return client.get(node.url + KV + key, params={"consistency": "stale"} if stale else None)


def put_ok(client: httpx.Client, node: Node, key: str, value: Any, timeout_s: float = 15.0) -> dict[str, Any]:
    """PUT, retrying only answers that say the write certainly did not happen (no leader yet)."""

    def attempt() -> dict[str, Any] | None:
        resp = put(client, node, key, value)
        if resp.status_code == 200:
            body: dict[str, Any] = resp.json()
            return body
        body = resp.json()
        assert resp.status_code == 503 and body.get("outcome") == "not_applied", (resp.status_code, body)
        return None

    return wait_for(f"PUT {key} via {node.node_id} to succeed", attempt, timeout_s, 0.1)


def assert_value(client: httpx.Client, node: Node, key: str, value: Any, stale: bool = False) -> None:
    resp = get(client, node, key, stale=stale)
    assert resp.status_code == 200, (node.node_id, key, resp.status_code, resp.text)
    assert resp.json() == value, (node.node_id, key)


def wait_stale_value(client: httpx.Client, node: Node, key: str, value: Any, timeout_s: float = 20.0) -> None:
    def check() -> bool:
        resp = get(client, node, key, stale=True)
        return resp.status_code == 200 and resp.json() == value

    wait_for(f"stale read of {key} on {node.node_id} to show {value!r}", check, timeout_s)


# --- 1. the seed's commands, as written ---------------------------------------------------------


def _send_httpx(method: str, url: str, data: str | None) -> tuple[int, str]:
    # Like `curl -d DATA`: the body as given, with curl's form content type.
    headers = FORM if data is not None else {}
    resp = httpx.request(method, url, content=data, headers=headers, timeout=15.0)
    return resp.status_code, resp.text


def _send_curl(method: str, url: str, data: str | None) -> tuple[int, str]:
    curl = curl_path()
    assert curl is not None
    argv = [curl, "-sS", "--max-time", "15", "-w", "\n%{http_code}"]
    if method != "GET":
        argv += ["-X", method]
    if data is not None:
        argv += ["-d", data]
    argv.append(url)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    body, _, code = out.rpartition("\n")
    return int(code), body


@pytest.mark.parametrize("tool", ["httpx", "curl"])
def test_the_seed_commands_as_written(cluster: Cluster, tmp_path: Path, tool: str) -> None:
    if tool == "curl" and curl_path() is None:
        pytest.skip("curl is not installed")
    send = _send_curl if tool == "curl" else _send_httpx
    workdir = tmp_path / "work"  # both nodes run from here with their default data directories
    workdir.mkdir()
    # beaver-vault server -node-id node1 -http-port 8000 -raft-port 7000  (and node2), nothing more
    node1 = cluster.add("node1", cwd=workdir, data_dir=None, seed_style=True, extra_args=())
    node2 = cluster.add("node2", cwd=workdir, data_dir=None, seed_style=True, extra_args=())
    node1.start()
    node2.start()
    node1.wait_ready()
    node2.wait_ready()
    cluster.wait_leader([node1])  # each starts as a one-node cluster of its own

    join_body = '{"NodeID": "node2", "RaftAddress": "localhost:' + str(node2.raft_port) + '"}'
    code, text = send("POST", f"http://localhost:{node1.http_port}/api/v1/raft/join", join_body)
    assert code == 200, text
    assert sorted(m["id"] for m in json.loads(text)["members"]) == ["node1", "node2"]

    code, text = send("PUT", f"http://localhost:{node1.http_port}/api/v1/kv/mykey", '"myvalue"')
    assert code == 200, text

    code, text = send("GET", f"http://localhost:{node2.http_port}/api/v1/kv/mykey", None)
    assert code == 200, text
    assert text == '"myvalue"'

    # The default data directories, ./data/<node-id>, did not collide.
    assert (workdir / "data" / "node1").is_dir() and (workdir / "data" / "node2").is_dir()
    assert sorted(p.name for p in (workdir / "data").iterdir()) == ["node1", "node2"]

    # node2's own copy has it too (a stale read answers from its local state).
    def node2_has_it() -> bool:
        code, text = send("GET", f"http://localhost:{node2.http_port}/api/v1/kv/mykey?consistency=stale", None)
        return code == 200 and text == '"myvalue"'

    wait_for("node2's local copy to hold mykey", node2_has_it)


# --- 2. writes through every node, reads from every node -----------------------------------------


def test_writes_through_every_node_and_reads_from_every_node(cluster: Cluster, client: httpx.Client) -> None:
    leader = cluster.start_cluster(3)
    nodes = list(cluster.nodes.values())
    assert all(n.status()["leader_id"] == leader.node_id for n in nodes)  # type: ignore[index]

    written = {}
    for i, node in enumerate(nodes):
        key = f"via/{node.node_id}"  # keys may contain slashes
        value = {"from": node.node_id, "i": i, "text": "héllo"}
        put_ok(client, node, key, value)
        written[key] = value

    for node in nodes:  # linearizable (the default): every node sees every acknowledged write at once
        for key, value in written.items():
            assert_value(client, node, key, value)
    for node in nodes:  # stale: the local copy catches up
        for key, value in written.items():
            wait_stale_value(client, node, key, value)

    # An overwrite and a delete through followers, seen everywhere.
    followers = [n for n in nodes if n is not leader]
    put_ok(client, followers[0], "via/node1", "overwritten")
    resp = client.delete(followers[1].url + KV + "via/node2")
    assert resp.status_code == 200 and resp.json()["deleted"] is True, resp.text
    for node in nodes:
        assert_value(client, node, "via/node1", "overwritten")
        assert get(client, node, "via/node2").status_code == 404
        resp = get(client, node, "via/node3")
        assert resp.status_code == 200 and resp.headers["ETag"].strip('"').isdigit()


# --- 3. SIGKILL the leader -------------------------------------------------------------------------


def test_sigkill_of_the_leader(cluster: Cluster, client: httpx.Client) -> None:
    leader = cluster.start_cluster(3)
    nodes = list(cluster.nodes.values())
    acked: dict[str, Any] = {}
    for i in range(12):
        node = nodes[i % 3]
        put_ok(client, node, f"before/{i}", {"i": i})
        acked[f"before/{i}"] = {"i": i}
    old_term = leader.status()["term"]  # type: ignore[index]

    leader.kill(signal.SIGKILL)
    survivors = [n for n in nodes if n is not leader]
    new_leader = cluster.wait_leader(survivors, exclude=leader.node_id)
    assert new_leader is not leader
    assert new_leader.status()["term"] > old_term  # type: ignore[index]

    for node in survivors:  # every acknowledged write is readable from every survivor
        for key, value in acked.items():
            assert_value(client, node, key, value)
    for i in range(6):  # new writes are accepted, through the leader and the follower
        node = survivors[i % 2]
        put_ok(client, node, f"after/{i}", {"i": i, "by": node.node_id})
        acked[f"after/{i}"] = {"i": i, "by": node.node_id}
    for node in survivors:
        for key, value in acked.items():
            assert_value(client, node, key, value)

    # The killed node restarts on its own data directory and catches up.
    leader.start()
    leader.wait_ready()
    last_key = "after/5"
    wait_stale_value(client, leader, last_key, acked[last_key])
    for key, value in acked.items():
        assert_value(client, leader, key, value, stale=True)
    put_ok(client, leader, "after/restart", "ok")  # and it serves writes again (forwarded)
    cluster.wait_leader()
    for node in nodes:
        assert_value(client, node, "after/restart", "ok")


# --- 4. SIGKILL in the middle of a write load ------------------------------------------------------


@dataclass
class LoadRecord:
    acked: dict[str, Any] = field(default_factory=dict)  # 200
    unknown: dict[str, Any] = field(default_factory=dict)  # outcome unknown: may or may not be there
    not_applied: dict[str, Any] = field(default_factory=dict)  # certainly not in the log
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)


def _writer(worker: int, cluster: Cluster, record: LoadRecord, stop: threading.Event) -> None:
    rng = random.Random(worker)
    nodes = list(cluster.nodes.values())
    with httpx.Client(timeout=httpx.Timeout(10.0, connect=1.0)) as client:
        i = 0
        while not stop.is_set():
            key = f"load/{worker}/{i}"
            value = {"w": worker, "i": i}
            i += 1
            node = rng.choice(nodes)
            try:
                resp = client.put(node.url + KV + key, content=json.dumps(value), headers=FORM)
            except httpx.ConnectError:
                with record.lock:  # never sent: the node is down
                    record.not_applied[key] = value
                stop.wait(0.01)
                continue
            except httpx.HTTPError:
                with record.lock:  # sent, answer lost: may or may not have happened
                    record.unknown[key] = value
                continue
            outcome = None
            if resp.status_code != 200:
                try:
                    outcome = resp.json().get("outcome")
                except ValueError:
                    outcome = "unknown"
            with record.lock:
                if resp.status_code == 200:
                    record.acked[key] = value
                elif outcome == "not_applied":
                    record.not_applied[key] = value
                else:
                    record.unknown[key] = value
            if resp.status_code != 200:
                stop.wait(0.02)  # do not spin on a cluster without a leader


def test_sigkill_during_a_write_load_loses_no_acknowledged_write(cluster: Cluster, client: httpx.Client) -> None:
    leader = cluster.start_cluster(3)
    record = LoadRecord()
    stop = threading.Event()
    workers = [threading.Thread(target=_writer, args=(w, cluster, record, stop), daemon=True) for w in range(4)]
    for t in workers:
        t.start()

    def progress(extra: int) -> None:
        target = record.count() + extra
        wait_for(f"{target} acknowledged writes", lambda: record.count() >= target, timeout_s=30.0)

    try:
        progress(40)
        follower = next(n for n in cluster.nodes.values() if n is not leader)
        follower.kill(signal.SIGKILL)  # a follower: the other two keep acknowledging
        progress(40)
        follower.start()
        follower.wait_ready()
        progress(40)
        leader = cluster.wait_leader()
        leader.kill(signal.SIGKILL)  # the leader, with writes in flight
        cluster.wait_leader([n for n in cluster.nodes.values() if n is not leader], exclude=leader.node_id)
        progress(40)
        leader.start()
        leader.wait_ready()
        progress(40)
    finally:
        stop.set()
        for t in workers:
            t.join(timeout=30)
    assert not any(t.is_alive() for t in workers)

    # Let every node catch up to the leader's commit index, then read every node's local copy.
    final_leader = cluster.wait_leader()
    put_ok(client, final_leader, "load/barrier", "done")
    commit = final_leader.status()["commit_index"]  # type: ignore[index]
    cluster.wait_applied(commit)

    assert len(record.acked) >= 200
    print(f"acked {len(record.acked)}, unknown {len(record.unknown)}, not applied {len(record.not_applied)}")
    for node in cluster.nodes.values():
        missing = []
        wrong = []
        for key, value in record.acked.items():
            resp = get(client, node, key, stale=True)
            if resp.status_code == 404:
                missing.append(key)
            elif resp.json() != value:
                wrong.append(key)
        assert not missing, f"{node.node_id} lost {len(missing)} acknowledged writes, e.g. {missing[:5]}"
        assert not wrong, f"{node.node_id} has wrong values for {wrong[:5]}"
        for key, value in record.unknown.items():  # may or may not be there, but never something else
            resp = get(client, node, key, stale=True)
            assert resp.status_code == 404 or resp.json() == value, (node.node_id, key, resp.text)
        present = [k for k in record.not_applied if get(client, node, k, stale=True).status_code != 404]
        assert not present, f"{node.node_id} holds writes that were answered not_applied: {present[:5]}"
    # Linearizable reads through a follower agree too.
    follower = next(n for n in cluster.nodes.values() if n is not final_leader)
    for key, value in list(record.acked.items())[:: max(1, len(record.acked) // 50)]:
        assert_value(client, follower, key, value)


# --- 5. refused joins and bad input ------------------------------------------------------------------


def test_join_of_a_node_holding_another_clusters_data_is_refused(cluster: Cluster, client: httpx.Client) -> None:
    node1 = cluster.start("node1")
    cluster.wait_leader([node1])
    other = cluster.start("other")  # alone, no --join: a one-node cluster of its own
    cluster.wait_leader([other])
    put_ok(client, other, "precious", {"keep": True})  # client data: it is no longer pristine
    members_before = node1.status()["members"]  # type: ignore[index]

    resp = client.post(node1.url + "/api/v1/raft/join", json={"NodeID": "other", "RaftAddress": other.raft_address})
    assert resp.status_code == 409, resp.text
    body = resp.json()
    assert body.get("outcome") == "not_applied", body
    assert "other" in body["error"] and ("pristine" in body["error"] or "data" in body["error"]), body

    # Nothing changed on either side; both keep serving.
    assert node1.status()["members"] == members_before  # type: ignore[index]
    other_status = other.status()
    assert other_status is not None and [m["id"] for m in other_status["members"]] == ["other"]
    assert other_status["cluster_id"] != node1.status()["cluster_id"]  # type: ignore[index]
    assert_value(client, other, "precious", {"keep": True})
    put_ok(client, node1, "still", "serving")
    assert get(client, node1, "precious").status_code == 404


def test_bad_input_gets_4xx_json_and_the_node_keeps_serving(cluster: Cluster, client: httpx.Client) -> None:
    leader = cluster.start_cluster(2)
    follower = next(n for n in cluster.nodes.values() if n is not leader)
    put_ok(client, leader, "good", 1)
    cluster.wait_applied(leader.status()["commit_index"])  # type: ignore[index]
    before = {n.node_id: n.status()["last_log_index"] for n in cluster.nodes.values()}  # type: ignore[index]

    big = b'"' + b"x" * (1024 * 1024 + 10) + b'"'
    cases: list[tuple[str, str, bytes | None, dict[str, str] | None, int | None]] = [
        ("PUT", KV + "k", b"{not json", FORM, 400),
        ("PUT", KV + "k", b"", FORM, 400),
        ("PUT", KV + "k", b"NaN", FORM, 400),
        ("PUT", KV + "k", b"[Infinity]", FORM, 400),
        ("PUT", KV + "k", b'"\xff\xfe"', FORM, 400),
        ("PUT", KV + "k", b'"\\ud800"', FORM, 400),
        ("PUT", KV + "k", b"[" * 5000 + b"]" * 5000, FORM, 400),
        ("PUT", KV + "k", big, FORM, 413),
        ("PUT", KV + "k" * 1100, b"1", FORM, None),
        ("PUT", KV, b"1", FORM, 400),
        ("GET", KV + "good?consistency=bogus", None, None, 400),
        ("POST", "/api/v1/raft/join", b"{}", FORM, 400),
        ("POST", "/api/v1/raft/join", b'{"NodeID": "x"}', FORM, 400),
        ("POST", "/api/v1/raft/join", b'{"NodeID": "x", "RaftAddress": "nowhere"}', FORM, 400),
        ("POST", "/api/v1/raft/join", b"[1, 2]", FORM, 400),
        ("POST", "/api/v1/raft/remove", b"{}", FORM, 400),
        ("GET", "/api/v1/nope", None, None, 404),
        ("GET", "/nope", None, None, 404),
        ("DELETE", "/api/v1/status", None, None, 405),
    ]
    for node in (leader, follower):
        for method, path, content, headers, want in cases:
            resp = client.request(method, node.url + path, content=content, headers=headers)
            where = f"{method} {path[:60]} on {node.node_id}"
            assert 400 <= resp.status_code < 500, (where, resp.status_code, resp.text[:200])
            if want is not None:
                assert resp.status_code == want, (where, resp.status_code, resp.text[:200])
            assert resp.headers["content-type"].startswith("application/json"), where
            body = resp.json()
            assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], (where, body)
            if method in ("PUT", "POST"):
                assert body.get("outcome") == "not_applied", (where, body)

    # Nothing was appended to any log, and both nodes keep serving.
    after = {n.node_id: n.status()["last_log_index"] for n in cluster.nodes.values()}  # type: ignore[index]
    assert after == before
    for node in (leader, follower):
        assert get(client, node, "k").status_code == 404
        put_ok(client, node, f"after/{node.node_id}", [node.node_id])
        assert_value(client, node, f"after/{node.node_id}", [node.node_id])
