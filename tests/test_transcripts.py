"""Runs every Raft transcript (``tests/transcripts/*.txt``, see ``transcript_runner.py``), and
checks the runner itself: a wrong expectation fails with a readable diff, and the rewrite
switch (``BEAVER_VAULT_REWRITE_TRANSCRIPTS=1``) replaces it by the actual output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from transcript_runner import REWRITE_ENV, check_file

HERE = Path(__file__).parent / "transcripts"
FILES = sorted(HERE.glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript(path: Path) -> None:
    check_file(path, rewrite=os.environ.get(REWRITE_ENV) == "1")
