"""The client subcommands of ``beaver-vault``, run as subprocesses against a real cluster.

Outputs are checked as a script would read them (``--json``) and as a person would (the plain
document for ``get``); exit codes as documented: 0 ok, 1 not found / precondition failed,
2 usage, 3 unavailable / unknown outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_cluster import Cluster, free_port, server_command

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cli") / "cluster")
    failed_before = request.session.testsfailed
    try:
        c.start_cluster(3)
        yield c
    finally:
        c.close()
        if request.session.testsfailed > failed_before:
            c.dump_logs()


@pytest.fixture(scope="module")
def endpoints(cluster: Cluster) -> str:
    return ",".join(n.url for n in cluster.nodes.values())


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEAVER_VAULT_")}
    env.update(extra)
    return env


def bv(*argv: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*server_command(), *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        timeout=60,
        check=False,
    )


def ok(*argv: str, stdin: str | None = None) -> str:
    done = bv(*argv, stdin=stdin)
    assert done.returncode == 0, (argv, done.returncode, done.stdout, done.stderr)
    return done.stdout


def js(*argv: str, stdin: str | None = None) -> Any:
    return json.loads(ok(*argv, "--json", stdin=stdin))


# --- without a cluster --------------------------------------------------------------------------


def test_help_documents_endpoints_and_exit_codes() -> None:
    for command in ("put", "get", "del", "list", "watch", "txn", "status", "members", "join", "remove"):
        text = ok(command, "--help")
        assert "BEAVER_VAULT_ENDPOINTS" in text and "exit codes:" in text and "3  unavailable" in text


def test_usage_errors_exit_2() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    assert bv("put", "--endpoints", dead, "k", "{not json").returncode == 2
    assert bv("put", "--endpoints", dead, "k", "1", "--if-absent", "--if-revision", "3").returncode == 2
    assert bv("del", "--endpoints", dead, "--prefix", "").returncode == 2  # would wipe the store
    assert bv("txn", "--endpoints", dead, '{"bogus": []}').returncode == 2
    assert bv("get").returncode == 2  # argparse: KEY missing
    assert bv("get", "--endpoints", "ftp://x", "k").returncode == 2


def test_no_reachable_node_exits_3() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    done = bv("get", "--endpoints", dead, "--attempts", "2", "k")
    assert done.returncode == 3 and "no node answered" in done.stderr
    done = bv("status", "--endpoints", dead, "--attempts", "1", "--json")
    assert done.returncode == 3 and json.loads(done.stdout)[0]["endpoint"] == dead


# --- against the cluster --------------------------------------------------------------------------


def test_put_then_get_prints_the_json_document(endpoints: str) -> None:
    assert ok("put", "--endpoints", endpoints, "users/1", '{"name": "a"}').startswith("OK (revision ")
    assert json.loads(ok("get", "--endpoints", endpoints, "users/1")) == {"name": "a"}
    put = js("put", "--endpoints", endpoints, "users/2", "-", stdin="[1, 2]")
    assert put["key"] == "users/2" and put["created"] is True and put["revision"] > 0
    meta = js("get", "--endpoints", endpoints, "--meta", "users/2")
    assert meta["value"] == [1, 2] and meta["mod_revision"] == put["revision"] and meta["version"] == 1
    assert js("get", "--endpoints", endpoints, "users/2") == [1, 2]
    js("put", "--endpoints", endpoints, "--string", "text", "hello world")
    assert ok("get", "--endpoints", endpoints, "text").strip() == '"hello world"'


def test_endpoints_from_the_environment(endpoints: str) -> None:
    done = bv("put", "env/k", "7", env=clean_env(BEAVER_VAULT_ENDPOINTS=endpoints))
    assert done.returncode == 0, done.stderr
    done = bv("get", "env/k", env=clean_env(BEAVER_VAULT_ENDPOINTS=endpoints))
    assert done.returncode == 0 and done.stdout.strip() == "7"


def test_not_found_and_precondition_failed_exit_1(endpoints: str) -> None:
    done = bv("get", "--endpoints", endpoints, "missing/key")
    assert done.returncode == 1 and "not found" in done.stderr and done.stdout == ""
    rev = js("put", "--endpoints", endpoints, "cas/k", "1")["revision"]
    done = bv("put", "--endpoints", endpoints, "--if-absent", "cas/k", "2")
    assert done.returncode == 1 and f"current revision: {rev}" in done.stderr
    done = bv("put", "--endpoints", endpoints, "--if-revision", str(rev + 1000), "cas/k", "2")
    assert done.returncode == 1
    assert js("put", "--endpoints", endpoints, "--if-revision", str(rev), "cas/k", "2")["revision"] > rev
    assert bv("del", "--endpoints", endpoints, "--if-revision", str(rev), "cas/k").returncode == 1


def test_del_and_prefix_delete(endpoints: str) -> None:
    for i in range(3):
        ok("put", "--endpoints", endpoints, f"gone/{i}", str(i))
    assert js("del", "--endpoints", endpoints, "gone/0")["deleted"] is True
    again = bv("del", "--endpoints", endpoints, "gone/0")
    assert again.returncode == 1 and "not found" in again.stderr
    assert js("del", "--endpoints", endpoints, "--prefix", "gone/")["deleted"] == 2
    assert js("list", "--endpoints", endpoints, "gone/")["count"] == 0


def test_list_all_pages_one_page_and_keys_only(endpoints: str) -> None:
    for i in range(5):
        ok("put", "--endpoints", endpoints, f"ls/{i}", json.dumps({"i": i}))
    lines = ok("list", "--endpoints", endpoints, "ls/", "--page-size", "2").splitlines()
    assert lines == [f'ls/{i}\t{{"i": {i}}}' for i in range(5)]
    doc = js("list", "--endpoints", endpoints, "ls/", "--page-size", "2")
    assert doc["count"] == 5 and [i["key"] for i in doc["items"]] == [f"ls/{i}" for i in range(5)]
    page = js("list", "--endpoints", endpoints, "ls/", "--limit", "2", "--after", "ls/1", "--keys-only")
    assert page["keys"] == ["ls/2", "ls/3"] and page["more"] is True and page["next_after"] == "ls/3"
    assert ok("list", "--endpoints", endpoints, "ls/", "--keys-only").split() == [f"ls/{i}" for i in range(5)]


def test_txn_from_an_argument_and_from_stdin(endpoints: str) -> None:
    ok("put", "--endpoints", endpoints, "txn/cas", '"b"')
    doc = {
        "compare": [{"key": "txn/cas", "target": "value", "op": "==", "value": "b"}],
        "success": [{"op": "put", "key": "txn/t1", "value": 1}, {"op": "put", "key": "txn/cas", "value": "c"}],
        "failure": [{"op": "get", "key": "txn/t1"}],
    }
    result = js("txn", "--endpoints", endpoints, json.dumps(doc))
    assert result["succeeded"] is True and len(result["results"]) == 2
    failed = bv("txn", "--endpoints", endpoints, stdin=json.dumps(doc))
    assert failed.returncode == 1 and failed.stdout.startswith("FAILED")
    assert json.loads(ok("get", "--endpoints", endpoints, "txn/t1")) == 1


def test_status_and_members(cluster: Cluster, endpoints: str) -> None:
    rows = js("status", "--endpoints", endpoints)
    assert sorted(r["status"]["node_id"] for r in rows) == ["node1", "node2", "node3"]
    dead = f"http://127.0.0.1:{free_port()}"
    done = bv("status", "--endpoints", f"{endpoints},{dead}", "--attempts", "1")
    assert done.returncode == 0 and "unreachable" in done.stdout and "leader" in done.stdout
    members = js("members", "--endpoints", endpoints)
    assert sorted(m["id"] for m in members) == ["node1", "node2", "node3"]
    table = ok("members", "--endpoints", endpoints).splitlines()
    assert table[0].split()[:2] == ["ID", "ROLE"] and len(table) == 4


def test_watch_prints_changes_and_stops_after_count(endpoints: str) -> None:
    start = js("put", "--endpoints", endpoints, "watch/a", "1")["revision"]
    ok("put", "--endpoints", endpoints, "watch/b", '{"x": 2}')
    ok("del", "--endpoints", endpoints, "watch/a")
    argv = ["watch", "--endpoints", endpoints, "watch/", "--from-revision", str(start)]
    lines = ok(*argv, "--json", "--count", "3", "--duration", "30").splitlines()
    events = [json.loads(line) for line in lines]
    assert [(e["type"], e["key"], e["value"]) for e in events] == [
        ("put", "watch/a", 1),
        ("put", "watch/b", {"x": 2}),
        ("delete", "watch/a", None),
    ]
    human = ok(*argv, "--count", "2", "--duration", "30").splitlines()
    assert human == [f"{start} put watch/a 1", f'{events[1]["revision"]} put watch/b {{"x": 2}}']


def test_watch_streams_live_changes_until_its_duration(endpoints: str) -> None:
    start = js("list", "--endpoints", endpoints, "live/", "--limit", "1")["revision"] + 1
    watcher = subprocess.Popen(
        [*server_command(), "watch", "--endpoints", endpoints, "live/", "--from-revision", str(start), "--json"]
        + ["--duration", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        ok("put", "--endpoints", endpoints, "live/1", "1")
        ok("put", "--endpoints", endpoints, "live/2", "2")
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 0, err
    assert [json.loads(line)["key"] for line in out.splitlines()] == ["live/1", "live/2"]
