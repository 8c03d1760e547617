"""Operating errors: typed, expected, and mapped to HTTP in one place (``api/errors.py``).

Broken invariants are not here: they raise ``InvariantViolation`` and stop the node.
Pure module: the core, the driver, the runtime and the API all share these types.
"""

from __future__ import annotations


class BeaverVaultError(Exception):
    """Base of every operating error. ``outcome`` says whether the operation took effect."""

    outcome = "not_applied"  # "not_applied": certainly did not happen; "unknown": may have


class NotLeader(BeaverVaultError):
    def __init__(self, leader_id: str | None, leader_http: str | None = None) -> None:
        super().__init__(f"not the leader (leader: {leader_id or 'unknown'})")
        self.leader_id = leader_id
        self.leader_http = leader_http


class NoLeader(BeaverVaultError):
    def __init__(self, detail: str = "no leader is known") -> None:
        super().__init__(detail)


class Overloaded(BeaverVaultError):
    def __init__(self, detail: str = "too many requests in flight") -> None:
        super().__init__(detail)


class Rejected(BeaverVaultError):
    """The request was refused before entering the log (bad input, conflict, ...)."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.status = status


class ConfigBusy(Rejected):
    """Another membership change (a promotion included) is in flight: retry shortly."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, status=409)


class Unknown(BeaverVaultError):
    """Timeout, lost leadership or a dropped connection: it may or may not have happened."""

    outcome = "unknown"

    def __init__(self, detail: str = "outcome unknown") -> None:
        super().__init__(detail)


class InvariantViolation(RuntimeError):
    """A broken invariant. Never caught by request handlers: it stops the node."""
