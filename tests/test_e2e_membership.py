"""End to end, real processes (issue 14): membership changes that cannot wedge the cluster, the
what-if check, automatic rollback of a learner that never answers, and keys that keep every
byte through every node.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from e2e_cluster import FAST_FLAGS, HOST, Cluster, Node, cluster_fixture, free_port, server_command, wait_for

from beaver_vault.client import Client
from beaver_vault.raft.messages import AdoptRequest, AdoptResponse, ProbeRequest, ProbeResponse
from beaver_vault.transport.codec import FrameDecoder, encode_frame

pytestmark = pytest.mark.e2e

API = "/api/v1"


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path, request, extra_args=(*FAST_FLAGS, "--learner-timeout-s", "60"))


def post(node: Node, route: str, body: dict[str, Any] | None = None, timeout: float = 30.0, **params: str) -> httpx.Response:
    return httpx.post(f"{node.url}{API}/raft/{route}", json=body, params=params, timeout=timeout)


def nodes_view(node: Node) -> dict[str, Any]:
    r = httpx.get(f"{node.url}{API}/raft/nodes", timeout=5.0)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def voters(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return sorted(m["id"] for m in answer.json()["members"] if m["voter"])


def wait_no_change(node: Node, timeout_s: float = 5.0) -> None:
    wait_for("no membership change in flight", lambda: nodes_view(node)["change"] is None, timeout_s)


def cli(node: Node, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEAVER_VAULT_")}
    env["BEAVER_VAULT_ENDPOINTS"] = node.url
    return subprocess.run(
        [*server_command(), *argv], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def dead_address() -> str:
    return f"{HOST}:{free_port()}"  # nothing listens there


# --------------------------------------------------------------------------- the wedge


def test_a_change_belongs_to_the_cluster_not_to_the_request(cluster: Cluster) -> None:
    # A join waits for its node's catch-up up to join_wait_s (default 30 min); 3 s here, so the
    # caller's deadline passes while the change goes on.
    short = (*FAST_FLAGS, "--learner-timeout-s", "60", "--join-wait-s", "3")
    node1 = cluster.start("node1", extra_args=short)
    cluster.wait_leader([node1])
    # A join to an address that answers nothing, by a client that hangs up after 1 s.
    with pytest.raises(httpx.TimeoutException):
        post(node1, "join", {"NodeID": "ghost", "RaftAddress": dead_address()}, timeout=1.0)
    # The join went with its caller (the deadline alone is 60 s): the next change starts at once.
    wait_no_change(node1)
    node2 = cluster.start("node2", extra_args=short)
    assert voters(post(node1, "join", {"NodeID": "node2", "RaftAddress": node2.raft_address})) == ["node1", "node2"]

    # While a change is in flight, any other is refused at once: 409, what and since when.
    box: list[httpx.Response | BaseException] = []

    def slow_join() -> None:
        try:  # through the follower: forwarded, the leader's join wait (3 s) ends it
            box.append(post(node2, "join", {"NodeID": "ghost2", "RaftAddress": dead_address()}, timeout=20.0))
        except BaseException as e:  # noqa: BLE001 - reported below
            box.append(e)

    t = threading.Thread(target=slow_join)
    t.start()
    try:
        wait_for("the ghost join in flight", lambda: (nodes_view(node1)["change"] or {}).get("node_id") == "ghost2")
        for target, route, body in (
            (node1, "remove", {"NodeID": "node2"}),
            (node2, "transfer-leadership", {}),
            (node1, "join", {"NodeID": "node3", "RaftAddress": dead_address()}),
        ):
            r = post(target, route, body)
            assert r.status_code == 409, r.text
            busy = r.json()
            assert busy["outcome"] == "not_applied" and "in flight" in busy["error"]
            flight = busy["in_flight"]
            assert (flight["kind"], flight["node_id"], flight["phase"]) == ("join", "ghost2", "handshake")
            assert isinstance(flight["started_at_ms"], int) and isinstance(flight["age_ms"], int)
            assert r.headers["Retry-After"] == "1"
    finally:
        t.join(30)
    # The caller's deadline passed: unknown to the caller, dropped by the cluster.
    answer = box[0]
    assert isinstance(answer, httpx.Response) and answer.status_code == 504, answer
    wait_no_change(node1)
    r = post(node1, "transfer-leadership", {"NodeID": "node2"})
    assert r.status_code == 200 and r.json()["leader"] == "node2", r.text


# --------------------------------------------------------------------------- what-if


def test_dry_run_answers_match_what_the_change_then_does(cluster: Cluster) -> None:
    leader = cluster.start_cluster(3)
    follower = next(n for n in cluster.live() if n is not leader)
    before = nodes_view(leader)["nodes"]
    node4 = cluster.start("node4")

    # join: dry-run (through a follower: forwarded with its query), nothing changes, then real.
    dry = post(follower, "join", {"NodeID": "node4", "RaftAddress": node4.raft_address}, dry_run="true")
    assert dry.status_code == 200, dry.text
    plan = dry.json()
    assert plan["dry_run"] is True and plan["allowed"] is True and plan["in_flight"] is None
    assert plan["voters_after"] == ["node1", "node2", "node3", "node4"]
    assert (plan["quorum_before"], plan["quorum_after"]) == (2, 3)
    assert plan["reachable_voters"] == ["node1", "node2", "node3"] and plan["quorum_during"] is True
    assert plan["bytes_to_send"] > 0 and plan["catchup_deadline_ms"] >= 60_000
    assert [n["id"] for n in nodes_view(leader)["nodes"]] == [n["id"] for n in before]
    assert voters(post(leader, "join", {"NodeID": "node4", "RaftAddress": node4.raft_address})) == plan["voters_after"]

    # transfer (the CLI's --dry-run gives the same analysis)
    plan = post(leader, "transfer-leadership", {"NodeID": "node4"}, dry_run="true").json()
    assert plan["allowed"] is True and plan["leader_after"] == "node4"
    done = cli(follower, "transfer-leadership", "node4", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    assert {k: v for k, v in json.loads(done.stdout).items() if k != "in_flight"} == {
        k: v for k, v in plan.items() if k != "in_flight"
    }
    done = cli(follower, "transfer-leadership", "node4", "--dry-run")
    assert done.returncode == 0 and "allowed" in done.stdout and "node4" in done.stdout, done
    r = post(leader, "transfer-leadership", {"NodeID": "node4"})
    assert r.status_code == 200 and r.json()["leader"] == plan["leader_after"]
    leader = cluster.wait_leader()
    assert leader.node_id == "node4"

    # remove
    plan = post(leader, "remove", {"NodeID": "node1"}, dry_run="true").json()
    assert plan["allowed"] is True and plan["voters_after"] == ["node2", "node3", "node4"]
    assert voters(post(leader, "remove", {"NodeID": "node1"})) == plan["voters_after"]
    cluster["node1"].kill()

    # Lose a voter: removing another would leave 1 reachable of 2 -> refused, with the analysis.
    victim = next(n for n in ("node2", "node3") if n != leader.node_id)
    other = next(n for n in ("node2", "node3") if n not in (leader.node_id, victim))
    cluster[victim].kill(signal.SIGKILL)

    def seen_unreachable() -> dict[str, Any] | None:
        plan = post(leader, "remove", {"NodeID": other}, dry_run="true").json()
        return plan if victim in plan["unreachable_voters"] else None

    plan = wait_for(f"{victim} unreachable in the leader's view", seen_unreachable)
    assert plan["allowed"] is False and plan["quorum_after_kept"] is False
    assert plan["voters_after"] == sorted([leader.node_id, victim])
    done = cli(leader, "remove", other, "--dry-run")
    assert done.returncode == 1 and "would lose the quorum" in done.stdout, done
    r = post(leader, "remove", {"NodeID": other})
    assert r.status_code == 409, r.text
    refused = r.json()
    assert "would lose the quorum" in refused["error"] and "Force" in refused["error"]
    assert refused["analysis"]["voters_after"] == plan["voters_after"]
    # Nothing changed: still three voters.
    assert sorted(n["id"] for n in nodes_view(leader)["nodes"] if n["voter"]) == sorted(
        [leader.node_id, victim, other]
    )


# --------------------------------------------------------------------------- rollback


class MuteLearner:
    """A raft peer that answers the join handshake (pristine, adopts) and nothing else: the
    learner that never catches up."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((HOST, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.address = f"{HOST}:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.frames = 0
        self.leader_address = ""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conns: list[tuple[socket.socket, FrameDecoder]] = []
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
                conn.settimeout(0.05)
                conns.append((conn, FrameDecoder()))
            except TimeoutError:
                pass
            for conn, dec in conns:
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    continue
                for _cluster, msg in dec.feed(data) if data else []:
                    self.frames += 1
                    self._answer(msg)
        for conn, _ in conns:
            conn.close()
        self.sock.close()

    def _answer(self, msg: object) -> None:
        reply: ProbeResponse | AdoptResponse | None = None
        if isinstance(msg, ProbeRequest) and msg.reply_address:
            reply = ProbeResponse(self.node_id, msg.src, msg.nonce, self.node_id, "", "", True)
            self.leader_address = msg.reply_address
        elif isinstance(msg, AdoptRequest):
            reply = AdoptResponse(self.node_id, msg.src, msg.nonce, True)
        if reply is not None:
            host, _, port = self.leader_address.rpartition(":")
            with socket.create_connection((host, int(port)), timeout=2) as out:
                out.sendall(encode_frame(None, reply))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def rollback_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path, request, extra_args=(*FAST_FLAGS, "--learner-timeout-s", "1"))


def test_a_learner_that_never_catches_up_is_rolled_back(rollback_cluster: Cluster) -> None:
    cluster = rollback_cluster
    node1 = cluster.start("node1")
    cluster.wait_leader([node1])
    httpx.put(f"{node1.url}{API}/kv/some", content=b'"data"', timeout=5).raise_for_status()
    mute = MuteLearner("mute")
    try:
        r = post(node1, "join", {"NodeID": "mute", "RaftAddress": mute.address})
    finally:
        mute.close()
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["rolled_back"] is True and body["node_id"] == "mute" and body["outcome"] == "not_applied"
    assert "did not catch up" in body["error"]
    assert mute.frames >= 2  # it was probed and adopted: a learner, not a failed handshake

    def rolled_back() -> dict[str, Any] | None:
        view = nodes_view(node1)
        return view if view["change"] is None and view["recent_rollbacks"] else None

    view = wait_for("the rollback committed", rolled_back)
    assert [n["id"] for n in view["nodes"]] == ["node1"]
    (rb,) = view["recent_rollbacks"]
    assert rb["node_id"] == "mute" and "did not catch up within" in rb["reason"]
    assert isinstance(rb["at_ms"], int)
    assert "learner rolled back" in node1.log_text()
    journal = httpx.get(f"{node1.url}{API}/events", timeout=5).json()["events"]
    (event,) = [e for e in journal if e["kind"] == "change_rolled_back"]
    assert (event["what"], event["node_id"]) == ("learner", "mute") and event["reason"] == rb["reason"]
    # The next change goes ahead: a real node joins.
    node2 = cluster.start("node2")
    assert voters(post(node1, "join", {"NodeID": "node2", "RaftAddress": node2.raft_address})) == [
        "node1",
        "node2",
    ]


# --------------------------------------------------------------------------- exact keys


def raw_request(node: Node, method: str, target: bytes, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    """One HTTP/1.1 request with the request target sent byte for byte (no URL library)."""
    parts = urlsplit(node.url)
    head = [method.encode() + b" " + target + b" HTTP/1.1", f"Host: {parts.netloc}".encode(), b"Connection: close"]
    if body is not None:
        head += [b"Content-Type: application/json", f"Content-Length: {len(body)}".encode()]
    with socket.create_connection((parts.hostname or HOST, parts.port or 80), timeout=15) as s:
        s.sendall(b"\r\n".join(head) + b"\r\n\r\n" + (body or b""))
        data = b""
        while b"\r\n\r\n" not in data and (chunk := s.recv(65536)):
            data += chunk
        head_bytes, _, payload = data.partition(b"\r\n\r\n")
        length = 0
        for line in head_bytes.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(payload) < length and (chunk := s.recv(65536)):
            payload += chunk
    status = int(head_bytes.split(b" ", 2)[1])
    return status, json.loads(payload) if payload.strip() else {}


# Spelled on the wire (after /api/v1/kv/) -> the key.
SPELLINGS = [
    "a/./b",
    "a/../b",
    "t/..",
    "t/.",
    "a//b",
    "trailing/",
    "x%2Fy",
    "%2E%2E/z",
    "caf%C3%A9",
    "cafe%CC%81",
    "%F0%9F%98%80/%C3%BC",
    "p%25zz",
    "plus+and%20space",
]
BAD = [
    ("%zz", "invalid percent-encoding"),
    ("a%", "invalid percent-encoding"),
    ("%FE", "not valid UTF-8"),
    ("%ED%A0%80", "not valid UTF-8"),
    ("%01", "control character U+0001"),
    ("a%0Ab", "control character U+000A"),
    ("%1B", "control character U+001B"),
]


def test_keys_keep_every_byte_through_every_node(cluster: Cluster) -> None:
    leader = cluster.start_cluster(3)
    f1, f2 = [n for n in cluster.live() if n is not leader]
    expected = {unquote(s, errors="strict"): i for i, s in enumerate(SPELLINGS)}
    assert len(expected) == len(SPELLINGS)
    for i, spelled in enumerate(SPELLINGS):
        status, answer = raw_request(f1, "PUT", f"{API}/kv/{spelled}".encode(), json.dumps(i).encode())
        assert status == 200, (spelled, answer)
        assert answer["key"] == unquote(spelled, errors="strict")
    for node in (leader, f2, f1):
        with Client([node.url]) as c:
            for key, i in expected.items():
                assert c.get(key) == i, (node.node_id, key)
        listing = httpx.get(f"{node.url}{API}/kv", params={"keys_only": "true", "limit": "100"}, timeout=5).json()
        assert sorted(listing["keys"]) == sorted(expected), node.node_id
    # A client write through a follower, read back by raw spelling on the leader.
    with Client([f2.url]) as c:
        c.put("via/../client/./lib//", "ok")
    status, answer = raw_request(leader, "GET", f"{API}/kv/via/../client/./lib//".encode())
    assert status == 200 and answer == "ok"

    count = httpx.get(f"{leader.url}{API}/kv", params={"keys_only": "true"}, timeout=5).json()["count"]
    for node in (leader, f1, f2):
        for spelled, reason in BAD:
            for method, body in (("PUT", b"1"), ("GET", None), ("DELETE", None)):
                status, answer = raw_request(node, method, f"{API}/kv/{spelled}".encode(), body)
                assert status == 400, (node.node_id, method, spelled, answer)
                assert reason in answer["error"] and answer["outcome"] == "not_applied"
    assert httpx.get(f"{leader.url}{API}/kv", params={"keys_only": "true"}, timeout=5).json()["count"] == count
