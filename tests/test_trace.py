"""The write-path trace (``node/trace.py``): off unless ``BV_TRACE_DIR`` is set; then one line
per mark, in a file per process, stamped with the machine-wide monotonic clock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from beaver_vault.node import trace
from beaver_vault.raft.messages import AppendRequest, Entry

SCRIPT = """
from beaver_vault.node import trace
from beaver_vault.raft.messages import AppendRequest, Entry
assert trace.on()
trace.mark("propose", 7)
t = trace.TracingTransport(type("T", (), {"send": lambda self, m: None, "x": 1})())
t.send(AppendRequest(2, "n1", "n2", 6, 2, (Entry(2, 7),), 6))
assert t.x == 1
"""


def test_off_by_default_and_marks_nothing() -> None:
    assert "BV_TRACE_DIR" not in os.environ
    assert not trace.on()
    trace.mark("propose", 1)  # no file, no error


def test_one_line_per_mark_with_the_monotonic_clock(tmp_path: Path) -> None:
    env = {**os.environ, "BV_TRACE_DIR": str(tmp_path)}
    before = time.monotonic_ns()
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    (path,) = tmp_path.glob("trace.*")
    lines = [line.split(" ") for line in path.read_text().splitlines()]
    assert [line[1:] for line in lines] == [["propose", "7"], ["send", "AppendRequest", "n1", "n2", "1", "7", "6"]]
    assert all(before <= int(line[0]) <= time.monotonic_ns() for line in lines)


def test_describe_names_what_a_timeline_needs() -> None:
    assert trace.describe(AppendRequest(2, "n1", "n2", 6, 2, (), 5)) == ("AppendRequest", "n1", "n2", 0, "-", 5)
    assert trace.describe(Entry(1, 1))[0] == "Entry"
