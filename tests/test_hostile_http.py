"""The hostile-input suite on a real 3-node cluster (issue 11, item 8).

One cluster of real ``beaver-vault server`` processes per module. Canary keys are written
first; then every case of ``tests/hostile_http.py`` is sent byte for byte on its own connection
(``tests/hostile_raw.py``), and each asserts:

* the exact status, and for a refusal a JSON body whose ``error`` names the problem (the
  case's words) with ``outcome`` ``not_applied``, and a connection closed as asked;
* every node still up (``GET /health`` on all three);
* nothing appended: the leader's term, commit index and last log index are what they were
  before the case (unless the case is one of the suite's own accepted writes);
* every 25 cases and at the end: the canaries read back identical (same document, same
  revision) from every node, and the members and their addresses unchanged.

Then a Hypothesis run of random requests (``tests/hostile_strategies.py``) against the same
cluster: no 5xx, JSON refusals, nothing appended by a refusal, every node up.

Raft-port forgeries are tested in tests/test_tcp_hostile.py and tests/test_peer_validation.py,
not here (see the case module's docstring for the other links).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_cluster import HOST, Cluster, Node
from hostile_http import CASES, Case
from hostile_raw import Reply, exchange, request_bytes
from hostile_strategies import raw_requests
from hypothesis import HealthCheck, given, settings

from beaver_vault.api.keys import quote_key

# Elections are rare (1 s timeout) so that "nothing appended" is about the requests, not about
# a loaded machine's missed heartbeats; bodies time out after 1 s so the slow-body cases are quick.
FLAGS = (
    "--tick-ms", "25", "--election-ticks", "40", "--heartbeat-ticks", "2",
    "--request-timeout-s", "3", "--forward-timeout-s", "5", "--shutdown-timeout-s", "1",
    "--body-timeout-s", "1",
)  # fmt: skip

CANARIES: dict[str, Any] = {
    "canary/0": {"a": 1, "nested": [1, 2, {"b": None}]},
    "canary/1": "plain text",
    "canary/unicode/caf\u00e9": ["\u00e9", "\U0001f600"],
    "canary/dots/../x": 42,
    "canary//double": True,
    "canary/trailing/": None,
    "canary/percent%41": 1.5,
    "canary/big": "x" * 10_000,
}
CHECK_EVERY = 25


@dataclass
class World:
    cluster: Cluster
    leader: Node
    follower: Node
    http: httpx.Client
    canaries: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # key -> (body, ETag)
    members: list[tuple[str, str, bool]] = field(default_factory=list)
    cases_run: int = 0
    last_position: tuple[int, int, int] | None = None  # read after the previous case

    def fill(self, data: str | bytes | None) -> Any:
        if data is None:
            return None
        subs = {
            "{leader}": self.leader.node_id,
            "{follower}": self.follower.node_id,
            "{leader_raft}": self.leader.raft_address,
            "{follower_raft}": self.follower.raft_address,
        }
        for k, v in subs.items():
            data = data.replace(k, v) if isinstance(data, str) else data.replace(k.encode(), v.encode())
        return data

    def position(self) -> tuple[int, int, int]:
        st = self.leader.status(timeout_s=5.0)
        assert st is not None, "the leader does not answer its status"
        assert st["role"] == "leader", f"{self.leader.node_id} is no longer the leader: {st}"
        return st["term"], st["commit_index"], st["last_log_index"]

    def assert_all_up(self) -> None:
        for node in self.cluster.nodes.values():
            assert node.alive(), f"{node.node_id} exited:\n{node.log_tail(30)}"
            r = self.http.get(node.url + "/health", timeout=5.0)
            assert r.status_code == 200 and r.json()["status"] == "ok", (node.node_id, r.status_code, r.text[:200])

    def member_view(self) -> list[tuple[str, str, bool]]:
        r = self.http.get(self.leader.url + "/api/v1/raft/nodes", timeout=5.0)
        assert r.status_code == 200, r.text
        return sorted((n["id"], n["raft_address"], n["voter"]) for n in r.json()["nodes"])

    def write_canaries(self) -> None:
        for key, value in CANARIES.items():
            r = self.http.put(self.leader.url + "/api/v1/kv/" + quote_key(key), content=json.dumps(value))
            assert r.status_code == 200, (key, r.status_code, r.text)
        for key in CANARIES:
            r = self.http.get(self.leader.url + "/api/v1/kv/" + quote_key(key))
            assert r.status_code == 200 and r.json() == CANARIES[key], (key, r.text[:200])
            self.canaries[key] = (r.content, r.headers["ETag"])
        self.members = self.member_view()

    def check_canaries(self) -> None:
        for node in self.cluster.nodes.values():
            for key, (body, etag) in self.canaries.items():
                r = self.http.get(node.url + "/api/v1/kv/" + quote_key(key))
                assert (r.status_code, r.content, r.headers.get("ETag")) == (200, body, etag), (node.node_id, key, r.text[:200])
            listing = self.http.get(node.url + "/api/v1/kv", params={"prefix": "canary/", "keys_only": "true"}).json()
            assert sorted(listing["keys"]) == sorted(CANARIES), (node.node_id, listing)
        assert self.member_view() == self.members, "the members or their addresses changed"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[World]:
    cluster = Cluster(Path(tmp_path_factory.mktemp("hostile")) / "cluster", extra_args=FLAGS)
    failed_before = request.session.testsfailed
    try:
        leader = cluster.start_cluster(3)
        follower = next(n for n in cluster.nodes.values() if n.node_id != leader.node_id)
        with httpx.Client(timeout=10.0) as http:
            w = World(cluster, leader, follower, http)
            w.write_canaries()
            yield w
    finally:
        cluster.close()
        if request.session.testsfailed > failed_before:
            cluster.dump_logs()


# Refusals that leave (part of) a request unread must close the connection (the answer says
# ``Connection: close`` and the socket is really closed): checked on a keep-alive request.
MUST_CLOSE = {408, 413, 501}


def must_close(case: Case) -> bool:
    return case.status in MUST_CLOSE or (case.status == 400 and "malformed http request" in case.says) or (
        "content-length and transfer-encoding" in case.says
    )


def send(world: World, node: Node, case: Case) -> Reply:
    keep_alive = must_close(case)
    raw = request_bytes(
        case.method,
        world.fill(case.path),
        host=f"{HOST}:{node.http_port}",
        headers=tuple((n, v if v is None else world.fill(v)) for n, v in case.headers),
        body=world.fill(case.body),
        content_length=case.content_length,
        close=not keep_alive,
    )
    trickle = (case.trickle, 0.03) if case.trickle is not None else None
    return exchange(HOST, node.http_port, raw, trickle=trickle, close_wait_s=3.0 if keep_alive else 0)


def assert_refusal(reply: Reply, case: Case, where: str) -> None:
    assert (reply.header("content-type") or "").startswith("application/json"), (where, reply.headers, reply.body[:200])
    body = reply.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], (where, body)
    assert case.says.lower() in body["error"].lower(), (where, "error does not say", case.says, body)
    assert body.get("outcome", "not_applied") == "not_applied", (where, body)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_case(world: World, case: Case) -> None:
    node = world.leader if case.node == "leader" else world.follower
    where = f"{case.name} ({case.method} on {node.node_id})"
    # Nothing but the cases writes, so the position read after the previous case is this
    # case's "before" (one status call per case instead of two).
    before = world.last_position or world.position()
    reply = send(world, node, case)
    assert reply.status == case.status, (where, reply.status, reply.body[:300])
    if case.status >= 400:
        assert_refusal(reply, case, where)
    if must_close(case):
        assert (reply.header("connection") or "").lower() == "close", (where, reply.headers)
        assert reply.closed, (where, "the answer says Connection: close but the connection stayed open")
    world.assert_all_up()
    after = world.last_position = world.position()
    if not case.appends:
        assert after == before, (where, "the log changed (term, commit, last index)", before, after)
    world.cases_run += 1
    if world.cases_run % CHECK_EVERY == 0:
        world.check_canaries()


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(req=raw_requests(with_watch=False))
def test_random_requests_on_the_cluster(world: World, req: tuple[str, bytes, list[tuple[str, str]], bytes | None]) -> None:
    method, target, headers, body = req
    node = world.follower if len(target) % 3 == 0 else world.leader
    before = world.position()
    world.last_position = None
    raw = request_bytes(method, target, host=f"{HOST}:{node.http_port}", headers=headers, body=body)
    reply = exchange(HOST, node.http_port, raw, close_wait_s=0)
    where = f"{method} {target[:120]!r} headers={headers} body={(body or b'')[:120]!r}"
    assert reply.status < 500, (where, reply.status, reply.body[:300])
    if reply.status >= 400:
        assert (reply.header("content-type") or "").startswith("application/json"), (where, reply.status, reply.body[:200])
        assert isinstance(reply.json().get("error"), str), (where, reply.body[:200])
        if reply.status not in (409, 412):  # these may go through the log by design (changing nothing)
            assert world.position() == before, (where, "a refused request changed the log")
    world.assert_all_up()


def test_zz_canaries_members_and_log_after_everything(world: World) -> None:
    """Last (by name and by order): the canaries read back identical from every node, the
    members and addresses are those of the start, and every node is up."""
    assert world.cases_run == len(CASES)
    world.check_canaries()
    world.assert_all_up()
