"""The Jepsen-like harness: its outcome mapping (pure) and one bounded real-process sample run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from beaver_vault.checker import load_history

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # jepsen_like/ lives at the repository root, beside src/

from jepsen_like.outcome import Exchange, classify  # noqa: E402

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


# ---------------------------------------------------------------- a real run


@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_sample_run_with_kills_and_pauses_is_linearizable(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    summary_path = tmp_path / "summary.json"
    argv = [
        sys.executable, "-m", "jepsen_like",
        "--nodes", "3", "--time-limit", "20", "--seed", "20240601",
        "--faults", "kill,pause", "--keys", "6", "--clients", "5",
        "--history", str(history), "--workdir", str(tmp_path / "run"), "--summary", str(summary_path),
    ]  # fmt: skip
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=140)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "VERDICT: linearizable" in proc.stdout
    summary = json.loads(summary_path.read_text())
    assert summary["verdict"] == "linearizable"
    assert sum(summary["faults_injected"].values()) >= 1, summary
    ops = load_history(history).ops
    for f in ("read", "write", "cas", "delete", "append"):
        assert any(op.f == f and op.outcome == "ok" for op in ops), f"no ok {f}"
