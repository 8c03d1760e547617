"""The linearizability checker's input and command line: reading histories (typed errors that
name the file and line), pairing events into operations, ``python -m beaver_vault.checker``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from checker_helpers import Event, hard_key, op

from beaver_vault.checker import HistoryError, check_history, load_history, parse_events, parse_lines

# --- reading histories ----------------------------------------------------------------------------


def _error(lines: list[str]) -> HistoryError:
    with pytest.raises(HistoryError) as info:
        parse_lines(lines, "h.jsonl")
    return info.value


@pytest.mark.parametrize(
    ("lines", "line", "words"),
    [
        (["{not json"], 1, "not JSON"),
        (["[1, 2]"], 1, "object"),
        (['{"process": 1, "type": "ok", "f": "read", "key": "k", "value": 1}'], 1, "without an open invoke"),
        (
            [
                '{"process": 1, "type": "invoke", "f": "read", "key": "k", "value": null}',
                '{"process": 1, "type": "invoke", "f": "read", "key": "k", "value": null}',
            ],
            2,
            "still open",
        ),
        (['{"process": 1, "type": "invoke", "f": "incr", "key": "k", "value": 1}'], 1, "unknown f"),
        (['{"process": "a", "type": "invoke", "f": "read", "key": "k"}'], 1, "process"),
        (['{"process": true, "type": "invoke", "f": "read", "key": "k"}'], 1, "process"),
        (['{"process": 1, "type": "invoke", "f": "read", "key": 5}'], 1, "key"),
        (['{"process": 1, "type": "start", "f": "read", "key": "k"}'], 1, "type"),
        (['{"process": 1, "type": "invoke", "f": "read", "key": "k", "time": "noon"}'], 1, "time"),
        (['{"process": 1, "type": "invoke", "f": "cas", "key": "k", "value": [1]}'], 1, "cas"),
        (['{"process": 1, "type": "invoke", "f": "cas", "key": "k", "value": 3}'], 1, "cas"),
        (['{"process": 1, "type": "invoke", "f": "write", "key": "k"}'], 1, "value"),
        (['{"process": 1, "type": "invoke", "f": "write", "key": "k", "value": NaN}'], 1, "not JSON"),
        (
            [
                "",
                '{"process": 1, "type": "invoke", "f": "write", "key": "k", "value": 1}',
                '{"process": 1, "type": "ok", "f": "write", "key": "j", "value": 1}',
            ],
            3,
            "does not match",
        ),
    ],
)
def test_bad_input_is_a_typed_error_naming_file_and_line(lines: list[str], line: int, words: str) -> None:
    error = _error(lines)
    assert error.source == "h.jsonl" and error.line == line
    assert words in str(error) and str(error).startswith(f"h.jsonl:{line}: ")


def test_parse_events_pairs_operations() -> None:
    history = parse_events(
        [
            {"process": 1, "type": "invoke", "f": "write", "key": "k", "value": 1, "time": 10},
            {"process": 2, "type": "invoke", "f": "read", "key": "k", "value": None},
            {"process": 1, "type": "fail", "f": "write", "key": "k", "value": 1, "time": 20},
            {"process": 2, "type": "ok", "f": "read", "key": "k", "value": None},
            {"process": 3, "type": "invoke", "f": "delete", "key": "k"},
        ]
    )
    write, read, delete = history.ops
    assert (write.outcome, write.invoke_line, write.complete_line, write.invoke_time, write.complete_time) == (
        "fail",
        1,
        3,
        10,
        20,
    )
    assert (read.outcome, read.result, read.invoke_index, read.complete_index) == ("ok", None, 1, 3)
    assert (delete.outcome, delete.complete_index) == ("info", None)
    assert history.events == 5
    with pytest.raises(HistoryError, match="<memory>:1"):
        parse_events([{"process": 1}])
    with pytest.raises(TypeError):
        check_history([1, 2])  # type: ignore[list-item]


def test_load_history(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in op(1, "write", "k", 1)) + "\n")
    assert len(load_history(path).ops) == 1 and load_history(str(path)).source == str(path)
    with pytest.raises(HistoryError, match="cannot read"):
        load_history(tmp_path / "missing.jsonl")


# --- the command line --------------------------------------------------------------------------------


def _write(path: Path, events: list[Event]) -> str:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return str(path)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "beaver_vault.checker", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    return {
        "good": _write(tmp_path / "good.jsonl", [*op(1, "write", "k", 1), *op(2, "read", "k", result=1)]),
        "bad": _write(
            tmp_path / "bad.jsonl", [*op(1, "write", "k", 1), *op(1, "write", "k", 2), *op(2, "read", "k", result=1)]
        ),
        "hard": _write(tmp_path / "hard.jsonl", hard_key("k")),
        "broken": str(tmp_path / "broken.jsonl"),
    }


def test_cli_linearizable(files: dict[str, str]) -> None:
    proc = _cli(files["good"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{files['good']}: linearizable")
    assert len(proc.stdout.splitlines()) == 1


def test_cli_not_linearizable_with_explanation(files: dict[str, str]) -> None:
    proc = _cli(files["good"], files["bad"])
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{files['good']}: linearizable")
    assert lines[1].startswith(f"{files['bad']}: not-linearizable key 'k'")
    assert lines[2:] and all(line.startswith("    ") for line in lines[2:])
    assert "process 2 read -> 1" in proc.stdout


def test_cli_unknown(files: dict[str, str]) -> None:
    proc = _cli("--step-budget", "100", files["hard"], files["good"])
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.splitlines()[0].split(" ")[:2] == [f"{files['hard']}:", "unknown"]
    proc = _cli("--timeout", "0", files["good"])
    assert proc.returncode == 2 and f"{files['good']}: unknown" in proc.stdout
    proc = _cli("--step-budget", "100", files["hard"], files["bad"])
    assert proc.returncode == 1


def test_cli_unreadable_input(files: dict[str, str]) -> None:
    Path(files["broken"]).write_text('{"process": 1, "type": "invoke", "f": "read", "key": "k"}\n{oops\n')
    proc = _cli(files["good"], files["broken"])
    assert proc.returncode == 3
    assert f"{files['broken']}:2: not JSON" in proc.stderr
    assert f"{files['good']}: linearizable" in proc.stdout and files["broken"] not in proc.stdout
    proc = _cli(files["broken"] + ".missing")
    assert proc.returncode == 3 and "cannot read" in proc.stderr
