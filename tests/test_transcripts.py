"""Runs every Raft transcript (``tests/transcripts/*.txt``, see ``transcript_runner.py``), and
checks the runner itself: a wrong expectation fails with a readable diff, and the rewrite
switch (``BEAVER_VAULT_REWRITE_TRANSCRIPTS=1``) replaces it by the actual output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from transcript_runner import REWRITE_ENV, TranscriptError, check_file

HERE = Path(__file__).parent / "transcripts"
FILES = sorted(HERE.glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript(path: Path) -> None:
    check_file(path, rewrite=os.environ.get(REWRITE_ENV) == "1")


# --------------------------------------------------------------------------- the runner itself

SMALL = """\
# A comment, kept by the rewrite.
nodes n1 n2 n3
----
n1 state follower term=1 vote=- commit=1 leader=-
n2 state follower term=1 vote=- commit=1 leader=-
n3 state follower term=1 vote=- commit=1 leader=-

campaign n1
----
n1 state pre-candidate term=1 vote=- commit=1 leader=-
n1->n2 VoteRequest term=2 last=1@1 pre
n1->n3 VoteRequest term=2 last=1@1 pre

deliver n1->n2
----
n1->n2 VoteRequest term=2 last=1@1 pre
  n2->n1 VoteResponse term=2 granted pre
"""


def test_a_wrong_expectation_fails_with_a_diff_and_the_rewrite_fixes_it(tmp_path: Path) -> None:
    path = tmp_path / "small.txt"
    path.write_text(SMALL)
    check_file(path)  # as written, it passes
    wrong = SMALL.replace("n1->n3 VoteRequest term=2 last=1@1 pre", "n1->n3 VoteRequest term=3 last=1@1 pre")
    path.write_text(wrong)
    with pytest.raises(AssertionError) as e:
        check_file(path)
    msg = str(e.value)
    assert f"{path}:8: the output of 'campaign n1' differs" in msg
    assert "-n1->n3 VoteRequest term=3 last=1@1 pre" in msg and "+n1->n3 VoteRequest term=2 last=1@1 pre" in msg
    assert REWRITE_ENV in msg
    check_file(path, rewrite=True)
    assert path.read_text() == SMALL  # comments, commands and the other outputs are kept
    check_file(path)


def test_the_rewrite_fills_in_an_empty_expectation(tmp_path: Path) -> None:
    path = tmp_path / "new.txt"
    path.write_text("nodes n1 n2 n3\n----\n\ncampaign n1\n----\n\ndeliver n1->n2\n----\n")
    with pytest.raises(AssertionError, match="differs"):
        check_file(path)
    check_file(path, rewrite=True)
    assert path.read_text() == SMALL.replace("# A comment, kept by the rewrite.\n", "")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("campaign n1\n----\nok\n", "the first command must be `nodes ...`"),
        ("nodes n1 n2\n----\n\nfly n1\n----\nok\n", "unknown command 'fly'"),
        ("nodes n1 n2\n----\n\ncrash n1\n----\n\ntick n1\n----\nok\n", "n1 is down"),
        ("nodes n1 n2\n----\n\ndeliver n1->n2 Postcard\n----\nok\n", "not a route, a message kind or n=N"),
        ("nodes n1 n2\ncampaign n1\n", "line 1: command 'nodes n1 n2' is not followed by '----'"),
    ],
    ids=["no-world", "unknown-command", "node-down", "unknown-kind", "no-separator"],
)
def test_a_broken_scenario_names_its_line(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "broken.txt"
    path.write_text(text)
    with pytest.raises(TranscriptError, match=error) as e:
        check_file(path)
    assert str(e.value).startswith(f"{path}:")
