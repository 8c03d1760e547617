"""Majority arithmetic."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def majority(n: int) -> int:
    return n // 2 + 1


def committed_index(voters: Iterable[str], match: Mapping[str, int]) -> int:
    """The largest index stored on a majority of ``voters`` (0 with no voters)."""
    values = sorted((match.get(v, 0) for v in voters), reverse=True)
    if not values:
        return 0
    return values[majority(len(values)) - 1]


def has_quorum(voters: Iterable[str], yes: Iterable[str]) -> bool:
    vs = set(voters)
    return bool(vs) and len(vs & set(yes)) >= majority(len(vs))
