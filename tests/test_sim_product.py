"""The simulator as a product: ``python -m sim --workload FILE`` (issue 13).

The two shipped examples pass on a range of seeds; their deliberately broken variants are
caught by their own invariants, with a REPRODUCE line that, run on its own, reproduces the same
failure, and a self-contained timeline picture of the failing run."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim.cli import main  # noqa: E402

EXAMPLES = ROOT / "sim" / "examples"


def _run(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    status = main(args, out=out, commit="test")
    return status, out.getvalue()


@pytest.mark.parametrize("name", ["bank", "lease"])
def test_each_example_passes_on_a_range_of_seeds(name: str, tmp_path: Path) -> None:
    status, text = _run(["--workload", str(EXAMPLES / f"{name}.py"), "--seeds", "0..7", "--timeline", str(tmp_path)])
    assert status == 0, text
    lines = [x for x in text.splitlines() if x.startswith("seed ")]
    assert len(lines) == 8 and all(": ok (" in x for x in lines), text
    assert "storage=sqlite" in text  # a quarter of the seeds run the production SQLite storage
    ok_counts = [int(m) for m in re.findall(r" ok=(\d+)", text)]
    assert min(ok_counts) >= 10  # the workload really ran operations
    assert not list(tmp_path.iterdir())  # no failure, no picture


def _failures(text: str) -> list[tuple[str, str, str]]:
    """(first detail line, timeline path, REPRODUCE line) per failed seed."""
    out = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("seed ") and "FAILED" in line:
            detail = lines[i + 1].strip()
            timeline = next(x for x in lines[i:] if x.strip().startswith("timeline: ")).split(": ", 1)[1]
            repro = next(x for x in lines[i:] if x.startswith("REPRODUCE: "))
            out.append((detail, timeline, repro))
    return out


def _replay(repro: str, tmp_path: Path) -> tuple[int, str]:
    argv = repro.removeprefix("REPRODUCE: python -m sim ").split()
    return _run([*argv, "--timeline", str(tmp_path / "replay")])


@pytest.mark.parametrize(
    ("name", "seeds", "needle"),
    [("bank_broken", "0..3", "balances add up to"), ("lease_broken", "0..9", "two holders")],
)
def test_a_broken_variant_is_caught_by_its_invariant_and_the_reproduce_line_replays_it(
    name: str, seeds: str, needle: str, tmp_path: Path
) -> None:
    status, text = _run(["--workload", str(EXAMPLES / f"{name}.py"), "--seeds", seeds, "--timeline", str(tmp_path)])
    assert status == 15, text
    failures = _failures(text)
    assert failures, text
    detail, timeline, repro = failures[0]
    assert needle in detail
    assert repro.startswith(f"REPRODUCE: python -m sim --workload {EXAMPLES / name}.py --seed ")
    # The REPRODUCE line alone gives the same failure, word for word.
    status2, text2 = _replay(repro, tmp_path)
    assert status2 == 15
    assert _failures(text2)[0][0] == detail
    # The timeline: one self-contained HTML page with an inline SVG of the run.
    page = Path(timeline).read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "</svg>" in page
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert page.count("<rect") >= 5  # the operations, one bar each
    assert f"{name} seed " in page and ": invariant</title>" in page
    assert "failure detected at" in page  # where in the run it broke


def test_the_reproduce_line_works_from_a_shell(tmp_path: Path) -> None:
    """The printed command, run as a process from the repository root, fails the same way."""
    status, text = _run(["--workload", str(EXAMPLES / "bank_broken.py"), "--seed", "0", "--timeline", str(tmp_path)])
    assert status == 15
    repro = _failures(text)[0][2]
    env = dict(os.environ, BEAVER_VAULT_COMMIT="test")
    argv = repro.removeprefix("REPRODUCE: python -m sim ").split()
    proc = subprocess.run(
        [sys.executable, "-m", "sim", *argv, "--timeline", str(tmp_path / "sh")],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 15, proc.stdout + proc.stderr
    assert _failures(proc.stdout)[0][0] == _failures(text)[0][0]


def test_same_workload_seed_same_output(tmp_path: Path) -> None:
    a = _run(["--workload", str(EXAMPLES / "lease_broken.py"), "--seeds", "0..4", "--timeline", str(tmp_path / "a")])
    b = _run(["--workload", str(EXAMPLES / "lease_broken.py"), "--seeds", "0..4", "--timeline", str(tmp_path / "b")])
    assert a[0] == b[0]
    assert a[1].replace(str(tmp_path / "a"), "D") == b[1].replace(str(tmp_path / "b"), "D")
    for page in (tmp_path / "a").iterdir():
        assert page.read_bytes() == (tmp_path / "b" / page.name).read_bytes()


def _workload(tmp_path: Path, body: str) -> str:
    path = tmp_path / "wl.py"
    path.write_text(body)
    return str(path)


def test_register_operations_go_to_the_linearizability_checker(tmp_path: Path) -> None:
    """A plain put/get/cas workload is checked by the project's checker: clean it passes, and
    with the planted stale-read bug the checker catches it (exit 12)."""
    wl = _workload(
        tmp_path,
        "CLIENTS = 4\nOPS = 300\n"
        "def client(c, i, rng):\n"
        "    n = 0\n"
        "    while True:\n"
        "        n += 1\n"
        "        key = f'k{rng.randint(0, 1)}'\n"
        "        if rng.random() < 0.5:\n"
        "            yield c.put(key, i * 100000 + n)\n"
        "        else:\n"
        "            yield c.get(key)\n",
    )
    status, text = _run(["--workload", wl, "--seeds", "0..2", "--timeline", str(tmp_path / "t")])
    assert status == 0 and text.count("history=linearizable") == 3, text
    for seed in range(20):
        status, text = _run(["--workload", wl, "--seed", str(seed), "--bug", "stale-read", "--timeline", str(tmp_path / "t")])
        if status != 0 and "(liveness" not in text:
            assert status == 12, text
            assert "--bug stale-read" in _failures(text)[0][2]
            return
    pytest.fail("stale-read not caught through a user workload in 20 seeds")


def test_workload_errors_are_reported_not_swallowed(tmp_path: Path) -> None:
    missing = _workload(tmp_path, "X = 1\n")
    assert _run(["--workload", missing, "--seed", "0"])[0] == 2
    assert _run(["--workload", str(tmp_path / "nope.py"), "--seed", "0"])[0] == 2
    raising = _workload(tmp_path, "def client(c, i, rng):\n    yield c.get('a')\n    raise ValueError('oops in workload')\n")
    status, text = _run(["--workload", raising, "--seed", "0", "--timeline", str(tmp_path / "t")])
    assert status == 10 and "oops in workload" in text
    bad_yield = _workload(tmp_path, "def client(c, i, rng):\n    yield 42\n")
    status, text = _run(["--workload", bad_yield, "--seed", "0", "--timeline", str(tmp_path / "t")])
    assert status == 10 and "not a Call" in text


def test_a_plain_seed_draws_its_timeline_with_the_checker_culprits_outlined(tmp_path: Path) -> None:
    page_path = tmp_path / "run.html"
    status, text = _run(["--seed", "2", "--bug", "stale-read", "--timeline", str(page_path)])
    assert status == 12, text
    page = page_path.read_text()
    assert "seed 2: linearizability</title>" in page
    assert page.count('stroke="#d62728" stroke-width="2">') >= 2  # the operations that cannot be ordered
    assert "CRASH" in page or "PARTITION" in page  # the world's faults are on it
