"""The Jepsen-like harness: its pure parts (outcome mapping, reports, fault topologies, client
affinity) and one bounded real-process sample run under combined faults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from beaver_vault.checker import load_history

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # jepsen_like/ lives at the repository root, beside src/

from jepsen_like import report  # noqa: E402
from jepsen_like.nemesis import Nemesis  # noqa: E402
from jepsen_like.outcome import Exchange, classify  # noqa: E402
from jepsen_like.workload import ClientState  # noqa: E402

# ---------------------------------------------------------------- outcome mapping (pure)


def kind(f: str, ex: Exchange, key: str = "k", invoked: object = 7) -> tuple[str, object]:
    c = classify(f, key, invoked, ex)
    return c.type, c.value


def test_200_is_ok_and_a_read_carries_the_body() -> None:
    assert kind("write", Exchange(200, '{"key":"k","revision":3,"created":true}')) == ("ok", 7)
    assert kind("delete", Exchange(200, '{"deleted":false}'), invoked=None) == ("ok", None)
    assert kind("read", Exchange(200, "[1, 2]"), invoked=None) == ("ok", [1, 2])
    assert kind("read", Exchange(200, "null"), invoked=None) == ("ok", None)


def test_a_read_of_an_absent_key_is_null_but_other_404s_are_not() -> None:
    assert kind("read", Exchange(404, '{"error":"key \'k\' not found","key":"k"}'), invoked=None) == ("ok", None)
    assert kind("read", Exchange(404, '{"error":"not found"}'), invoked=None) == ("info", None)
    assert kind("read", Exchange(404, "<html>"), invoked=None) == ("info", None)
    assert kind("write", Exchange(404, '{"error":"x","key":"k"}')) == ("info", 7)


def test_transactions_succeeded_or_compare_failed() -> None:
    assert kind("cas", Exchange(200, '{"succeeded":true,"results":[]}'), invoked=[1, 2]) == ("ok", [1, 2])
    assert kind("cas", Exchange(200, '{"succeeded":false,"results":[]}'), invoked=[1, 2]) == ("fail", [1, 2])
    assert kind("append", Exchange(200, '{"succeeded":false}')) == ("fail", 7)
    assert kind("append", Exchange(200, '{"results":[]}')) == ("info", 7)
    assert kind("cas", Exchange(200, "not json"), invoked=[1, 2]) == ("info", [1, 2])


def test_error_bodies_follow_their_outcome() -> None:
    not_applied = '{"error":"no leader","outcome":"not_applied"}'
    unknown = '{"error":"timed out","outcome":"unknown"}'
    for f in ("write", "cas", "delete", "append", "read"):
        assert kind(f, Exchange(503, not_applied))[0] == "fail"
        assert kind(f, Exchange(412, not_applied))[0] == "fail"
        assert kind(f, Exchange(504, unknown))[0] == "info"
        assert kind(f, Exchange(503, unknown))[0] == "info"
        assert kind(f, Exchange(500, '{"error":"internal"}'))[0] == "info"  # no outcome: unclear
        assert kind(f, Exchange(502, "Bad Gateway"))[0] == "info"
        assert kind(f, Exchange(302, ""))[0] == "info"


def test_transport_errors_are_info_unless_nothing_was_sent() -> None:
    for error in ("ReadTimeout", "RemoteProtocolError", "ReadError", "WriteTimeout", "PoolTimeout"):
        assert kind("write", Exchange(None, error=error)) == ("info", 7)
        assert kind("cas", Exchange(None, error=error), invoked=[1, 2]) == ("info", [1, 2])
    assert kind("write", Exchange(None, error="ConnectError", connect_failed=True)) == ("fail", 7)


# ---------------------------------------------------------------- reports (pure)

S = 1_000_000_000


def ev(p: int, t: str, f: str, key: str, value: object, sec: float) -> dict[str, object]:
    return {"process": p, "type": t, "f": f, "key": key, "value": value, "time": int(sec * S)}


def test_availability_counts_per_second_and_finds_the_longest_write_gap() -> None:
    events = [
        ev(1, "invoke", "write", "a", 1, 0.1), ev(1, "ok", "write", "a", 1, 0.2),
        ev(1, "invoke", "read", "a", None, 0.3), ev(1, "ok", "read", "a", 1, 0.4),
        ev(1, "invoke", "write", "a", 2, 0.5), ev(1, "info", "write", "a", 2, 3.5),
        ev(1, "invoke", "cas", "a", [1, 3], 3.6), ev(1, "ok", "cas", "a", [1, 3], 4.2),
        ev(2, "invoke", "write", "a", 4, 4.3), ev(2, "fail", "write", "a", 4, 4.4),
    ]  # fmt: skip
    a = report.availability(events, end_s=5.0)
    assert a.ok_per_s == [2, 0, 0, 0, 1]
    assert a.info_per_s == [0, 0, 0, 1, 0] and a.fail_per_s == [0, 0, 0, 0, 1]
    assert abs(a.longest_write_gap_s - 4.0) < 1e-9 and abs(a.gap_start_s - 0.2) < 1e-9
    assert a.min_ok_per_s == 0


def test_late_unknown_write_is_found_only_after_a_newer_acknowledged_write() -> None:
    late = [
        ev(1, "invoke", "write", "k", 1, 0.0), ev(1, "info", "write", "k", 1, 1.0),
        ev(2, "invoke", "write", "k", 2, 1.5), ev(2, "ok", "write", "k", 2, 1.6),
        ev(3, "invoke", "read", "k", None, 2.0), ev(3, "ok", "read", "k", 1, 2.1),
    ]  # fmt: skip
    found = report.late_unknown(late)
    assert len(found) == 1 and "unknown write of 1" in found[0]
    # The newer write was invoked BEFORE the unknown answer: concurrent, nothing unexpected.
    concurrent = [
        ev(1, "invoke", "write", "k", 1, 0.0), ev(2, "invoke", "write", "k", 2, 0.5),
        ev(2, "ok", "write", "k", 2, 0.6), ev(1, "info", "write", "k", 1, 1.0),
        ev(3, "invoke", "read", "k", None, 2.0), ev(3, "ok", "read", "k", 1, 2.1),
    ]  # fmt: skip
    assert report.late_unknown(concurrent) == []


def test_timeline_is_self_contained_html_with_faults_and_bars() -> None:
    events = [ev(1, "invoke", "write", "a", 1, 0.1), ev(1, "ok", "write", "a", 1, 0.2)]
    nemesis = [
        {"t": 0.5, "action": "kill", "node": "n1"},
        {"t": 0.6, "action": "partition", "mode": "ring"},
        {"t": 1.5, "action": "heal", "what": ["restart n1"]},
        {"t": 1.7, "action": "remove", "node": "n2"},
    ]
    intervals = report.fault_intervals(nemesis, 3.0)
    assert ("kill", 0.5, 1.5) in [(lane, a, b) for lane, _, a, b in intervals]
    assert any(lane == "membership" for lane, *_ in intervals)
    page = report.timeline_html("t", report.availability(events, 3.0), nemesis, 3.0, {"seed": 1})
    assert page.startswith("<!doctype html>") and "<svg" in page and "</svg>" in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing loaded from elsewhere


# ---------------------------------------------------------------- fault topologies (pure)


class FakeNet:
    def __init__(self) -> None:
        self.links: set[tuple[int, int]] = set()
        self.partitioned: set[int] = set()

    def cut(self, links: object) -> None:
        self.links = set(links)  # type: ignore[call-overload]


class FakeNode:
    def __init__(self, index: int) -> None:
        self.index = index
        self.node_id = f"n{index}"
        self.joining = False

    def running(self) -> bool:
        return True


class FakeCluster:
    def __init__(self, n: int) -> None:
        self.nodes = [FakeNode(i) for i in range(1, n + 1)]
        self.network = FakeNet()
        self.clocks = None
        self.size = n

    def members(self) -> list[FakeNode]:
        return self.nodes

    def guess_leader(self) -> FakeNode:
        return self.nodes[0]


def partitions(n: int, tmp_path: Path, seeds: range) -> dict[str, list[set[tuple[int, int]]]]:
    out: dict[str, list[set[tuple[int, int]]]] = {}
    for seed in seeds:
        cluster = FakeCluster(n)
        nem = Nemesis(cluster, ["partition"], seed, tmp_path / f"n{seed}.jsonl", say=lambda _: None)  # type: ignore[arg-type]
        nem._partition()
        mode = json.loads((tmp_path / f"n{seed}.jsonl").read_text().splitlines()[-1])["mode"]
        out.setdefault(mode, []).append(cluster.network.links)
    return out


def test_partition_modes_cut_the_links_they_claim(tmp_path: Path) -> None:
    found = partitions(5, tmp_path, range(60))
    assert set(found) == {"isolate-leader", "isolate-one", "halves", "ring", "bridge", "one-way"}
    ids = range(1, 6)
    for links in found["ring"]:  # each node still hears exactly its two neighbours
        for i in ids:
            assert sum((j, i) not in links for j in ids if j != i) == 2
    for links in found["bridge"]:  # one node hears everyone; the two sides do not hear each other
        hears_all = [i for i in ids if not any((j, i) in links for j in ids)]
        assert len(hears_all) == 1 and links
    for links in found["one-way"]:  # one direction only
        assert links and all((b, a) not in links for a, b in links)
    for links in found["halves"]:
        assert all((b, a) in links for a, b in links)
    assert "ring" not in partitions(3, tmp_path, range(40))  # a ring of 3 cuts nothing


# ---------------------------------------------------------------- client affinity (pure)


def test_a_client_stays_on_its_node_and_moves_on_in_member_order() -> None:
    members = [("n1", "u1"), ("n2", "u2"), ("n3", "u3")]
    c = ClientState(4, 0, None, idempotent=True)  # type: ignore[arg-type]
    c.pick(members)
    assert (c.node, c.url) == ("n2", "u2")  # process 4 -> member 4 mod 3
    c.pick(members)
    assert c.node == "n2"
    c.move_on(members)
    assert c.node == "n3" and c.moves == 1
    c.pick([("n1", "u1"), ("n2", "u2")])  # n3 was removed: back to the affinity slot
    assert c.node == "n1"
    keys = {c.idempotency_headers()["Idempotency-Key"] for _ in range(3)}
    assert len(keys) == 3
    assert ClientState(1, 0, None, idempotent=False).idempotency_headers() == {}  # type: ignore[arg-type]


# ---------------------------------------------------------------- a requested fault that cannot run


def test_a_requested_fault_that_cannot_run_is_an_error(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "jepsen_like", "--faults", "kill,partition", "--time-limit", "1",
            "--workdir", str(tmp_path / "w")]  # fmt: skip
    env = {"PATH": str(tmp_path / "empty"), "PYTHONPATH": str(ROOT / "src")}  # no `ip`, no `nft`
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "FAULT partition: NOT AVAILABLE HERE" in proc.stdout and "--allow-missing-faults" in proc.stdout


# ---------------------------------------------------------------- a real run


@pytest.mark.e2e
@pytest.mark.timeout(170)
def test_sample_run_with_combined_faults_is_linearizable_and_converges(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    summary_path = tmp_path / "summary.json"
    argv = [
        sys.executable, "-m", "jepsen_like",
        "--nodes", "3", "--time-limit", "15", "--seed", "20240601",
        "--faults", "kill,pause,membership,restart-all", "--concurrent", "2", "--keys", "6", "--clients", "6",
        "--history", str(history), "--workdir", str(tmp_path / "run"), "--summary", str(summary_path),
    ]  # fmt: skip
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=160)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "VERDICT: linearizable" in proc.stdout
    summary = json.loads(summary_path.read_text())
    assert summary["verdict"] == "linearizable" and summary["converged"] is True
    assert sum(summary["faults_injected"].values()) >= 2, summary
    assert summary["max_concurrent_faults"] == 2, summary
    assert summary["late_unknown"] == []
    assert summary["availability"]["mean_ok_per_s"] > 0
    assert summary["pipelined_requests"] > 0  # every second client talks the pipelined protocol
    ops = load_history(history).ops
    for f in ("read", "write", "cas", "delete"):
        assert any(op.f == f and op.outcome == "ok" for op in ops), f"no ok {f}"
    lines = [json.loads(line) for line in history.read_text().splitlines()]
    assert all(line.get("node", "").startswith("n") for line in lines)  # each op says where it went
    page = (tmp_path / "run" / "timeline.html").read_text()
    assert "<svg" in page
