"""``MemoryKV``: a dict-backed ``KVStore`` with a sorted key index (pure; tests, simulator)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort

from beaver_vault.kv.state import KeyRecord


class MemoryKV:
    __slots__ = ("_rows", "_keys")

    def __init__(self, rows: dict[str, KeyRecord] | None = None) -> None:
        self._rows: dict[str, KeyRecord] = dict(rows or {})
        self._keys: list[str] = sorted(self._rows)

    def get(self, key: str) -> KeyRecord | None:
        return self._rows.get(key)

    def put(self, key: str, record: KeyRecord) -> None:
        if key not in self._rows:
            insort(self._keys, key)
        self._rows[key] = record

    def delete(self, key: str) -> None:
        if self._rows.pop(key, None) is not None:
            del self._keys[bisect_left(self._keys, key)]

    def scan(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        keys = self._keys
        i = bisect_left(keys, prefix)
        if after is not None:
            i = max(i, bisect_right(keys, after))
        out: list[tuple[str, KeyRecord]] = []
        while i < len(keys) and len(out) < limit and keys[i].startswith(prefix):
            out.append((keys[i], self._rows[keys[i]]))
            i += 1
        return out

    def items(self) -> list[tuple[str, KeyRecord]]:
        """Every row in key order."""
        return [(k, self._rows[k]) for k in self._keys]

    def copy(self) -> MemoryKV:
        return MemoryKV(self._rows)

    def __len__(self) -> int:
        return len(self._rows)
