"""Configuration tracking: which membership is in force, from the log's configuration entries.

A configuration takes effect when its entry is appended, not when it commits (single-server
changes, Raft thesis 4.1), so a follower whose log suffix is truncated must roll back to the
configuration before it. The tracker keeps the configurations at or after the log's
compaction point, in index order; the one at the compaction point stands for everything
before it (it is what a snapshot carries).

The rule a leader checks before proposing a change (``check_change``): at most one voter added
or removed at a time, so any majority of the old voters overlaps any majority of the new.
"""

from __future__ import annotations

from collections.abc import Iterable

from beaver_vault.errors import TooManyVoterChanges
from beaver_vault.raft.messages import Entry, EntryKind, Membership


class ConfigTracker:
    def __init__(self, entries: Iterable[Entry] = (), base: tuple[int, Membership] | None = None) -> None:
        # (index, configuration), in index order; the first may be a snapshot's configuration.
        self.configs: list[tuple[int, Membership]] = [base] if base is not None else []
        for e in entries:
            self.track(e)

    @property
    def membership(self) -> Membership:
        return self.configs[-1][1] if self.configs else Membership()

    @property
    def index(self) -> int:
        """Index of the entry of the configuration in force (0: none yet)."""
        return self.configs[-1][0] if self.configs else 0

    def track(self, entry: Entry) -> bool:
        """An entry was appended; True if it changed the configuration."""
        if entry.kind != EntryKind.CONFIG:
            return False
        self.configs.append((entry.index, Membership.decode(entry.data)))
        return True

    def rollback(self, first_removed: int) -> bool:
        """The log was truncated from ``first_removed``; True if the configuration changed."""
        changed = False
        while self.configs and self.configs[-1][0] >= first_removed:
            self.configs.pop()
            changed = True
        return changed

    def at(self, index: int) -> Membership:
        """The configuration in force at ``index`` (the latest config entry at or before it)."""
        found = Membership()
        for idx, m in self.configs:
            if idx <= index:
                found = m
        return found

    def compact(self, index: int) -> None:
        """The log was compacted up to ``index``: keep the configuration in force there."""
        base = self.at(index)
        self.configs = [(index, base)] + [(i, m) for i, m in self.configs if i > index]

    def reset(self, index: int, membership: Membership) -> None:
        """A snapshot replaced the whole log: its configuration is the only one."""
        self.configs = [(index, membership)]


def check_change(old: Membership, new: Membership) -> None:
    """Raise ``TooManyVoterChanges`` unless ``new`` adds or removes at most one voter."""
    if len(set(old.voters) ^ set(new.voters)) > 1:
        raise TooManyVoterChanges()
