"""How a run can fail, and the exit status of each kind (documented in ``sim/__init__``)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CRASH = 10  # an unexpected exception in the simulator or the production code
EXIT_SAFETY = 11  # a safety invariant broke (checked on every step)
EXIT_LINEARIZABILITY = 12  # the checker proved the client history not linearizable
EXIT_LIVENESS = 13  # after healing, the cluster did not converge / commit in time
EXIT_UNDECIDED = 14  # the checker could not decide the history, even with the larger recheck budget
EXIT_INVARIANT = 15  # a user workload's own invariant failed (python -m sim --workload)

EXIT_BY_KIND = {
    "ok": EXIT_OK,
    "crash": EXIT_CRASH,
    "safety": EXIT_SAFETY,
    "linearizability": EXIT_LINEARIZABILITY,
    "liveness": EXIT_LIVENESS,
    "undecided": EXIT_UNDECIDED,
    "invariant": EXIT_INVARIANT,
}


class SimFailure(Exception):
    """A failed check; ``kind`` is one of the keys of ``EXIT_BY_KIND``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class SimCrash(BaseException):
    """Raised from inside a node's disk or transport to crash it mid-``process()``.

    A BaseException so that no ``except Exception`` in the code under test can swallow it:
    the process dies where it stands, as with SIGKILL."""
