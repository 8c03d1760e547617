"""``python -m sim``: see ``sim/__init__`` for the theory of operation and exit statuses.

The commit shown in the header comes from ``BEAVER_VAULT_COMMIT`` or ``git rev-parse``: the
simulator's one subprocess, here and only here, never inside a run.
"""

import os
import subprocess

from sim.cli import main


def _commit() -> str:
    env = os.environ.get("BEAVER_VAULT_COMMIT")
    if env:
        return env
    try:
        r = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
    except OSError:
        return "unknown"
    return r.stdout.strip() or "unknown"


raise SystemExit(main(commit=_commit()))
