"""``MemoryKV``: a dict-backed ``KVStore`` (pure; tests, the simulator, ``MemoryStorage``).

Indices kept beside the rows so every query is ordered and cheap: a sorted key list (scans),
a sorted ``(expires_at_ms, key)`` list (``expired_keys``), and for remembered requests a
sorted ``(time_ms, index, client, id)`` list (purge by age) plus per-client id sets (trim).

``UndoKV`` is a ``KVStore`` view over a ``MemoryKV`` that journals the inverse of every change,
so a failed apply batch can be undone exactly: the memory analogue of a rolled-back
transaction (``MemoryStorage.apply`` uses it).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort

from beaver_vault.kv.records import KeyRecord, RequestRecord, written

_Req = tuple[str, str]  # (client, request id)


class MemoryKV:
    __slots__ = ("_rows", "_keys", "_expiry", "_requests", "_by_time", "_by_client", "_auth")

    def __init__(self, rows: dict[str, KeyRecord] | None = None) -> None:
        self._rows: dict[str, KeyRecord] = dict(rows or {})
        self._keys: list[str] = sorted(self._rows)
        self._expiry: list[tuple[int, str]] = sorted(
            (r.expires_at_ms, k) for k, r in self._rows.items() if r.expires_at_ms is not None
        )
        self._requests: dict[_Req, RequestRecord] = {}
        self._by_time: list[tuple[int, int, str, str]] = []
        self._by_client: dict[str, set[str]] = {}
        self._auth: dict[tuple[str, str], str] = {}  # (kind, name) -> doc (kv.auth)

    # ------------------------------------------------------------------ key rows

    def get(self, key: str) -> KeyRecord | None:
        return self._rows.get(key)

    def put(self, key: str, record: KeyRecord) -> None:
        old = self._rows.get(key)
        if old is None:
            insort(self._keys, key)
        else:
            self._unindex_expiry(key, old)
        self._rows[key] = record
        if record.expires_at_ms is not None:
            insort(self._expiry, (record.expires_at_ms, key))

    def put_value(self, key: str, value_json: str, index: int, expires_at_ms: int | None) -> bool:
        cur = self._rows.get(key)
        self.put(key, written(cur, value_json, index, expires_at_ms))
        return cur is None

    def delete(self, key: str) -> None:
        old = self._rows.pop(key, None)
        if old is not None:
            del self._keys[bisect_left(self._keys, key)]
            self._unindex_expiry(key, old)

    def _unindex_expiry(self, key: str, old: KeyRecord) -> None:
        if old.expires_at_ms is not None:
            del self._expiry[bisect_left(self._expiry, (old.expires_at_ms, key))]

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

    def expired_keys(self, now_ms: int, limit: int) -> list[str]:
        """Keys whose ``expires_at_ms <= now_ms``, soonest first (ties by key), at most ``limit``."""
        if limit < 0:
            raise ValueError("limit must be >= 0")
        end = bisect_left(self._expiry, (now_ms + 1,))  # (t,) sorts before every (t, key)
        return [k for _, k in self._expiry[: min(end, limit)]]

    def items(self) -> list[tuple[str, KeyRecord]]:
        """Every row in key order."""
        return [(k, self._rows[k]) for k in self._keys]

    # ------------------------------------------------------------------ remembered requests

    def get_request(self, client: str, request_id: str) -> RequestRecord | None:
        return self._requests.get((client, request_id))

    def put_request(self, client: str, request_id: str, record: RequestRecord) -> None:
        self.delete_request(client, request_id)
        self._requests[(client, request_id)] = record
        insort(self._by_time, (record.time_ms, record.index, client, request_id))
        self._by_client.setdefault(client, set()).add(request_id)

    def delete_request(self, client: str, request_id: str) -> RequestRecord | None:
        old = self._requests.pop((client, request_id), None)
        if old is not None:
            del self._by_time[bisect_left(self._by_time, (old.time_ms, old.index, client, request_id))]
            ids = self._by_client[client]
            ids.discard(request_id)
            if not ids:
                del self._by_client[client]
        return old

    def purge_requests(self, before_ms: int) -> int:
        return len(self.purge_request_records(before_ms))

    def purge_request_records(self, before_ms: int) -> list[tuple[str, str, RequestRecord]]:
        """Like ``purge_requests``, returning what was forgotten (for undo)."""
        end = bisect_left(self._by_time, (before_ms,))
        victims = [(c, i) for _, _, c, i in self._by_time[:end]]
        return self._forget(victims)

    def trim_requests(self, client: str, keep: int) -> int:
        return len(self.trim_request_records(client, keep))

    def trim_request_records(self, client: str, keep: int) -> list[tuple[str, str, RequestRecord]]:
        """Like ``trim_requests``, returning what was forgotten (for undo)."""
        ids = self._by_client.get(client, set())
        if len(ids) <= keep:
            return []
        oldest = sorted(ids, key=lambda i: (self._requests[(client, i)].index, i))
        return self._forget([(client, i) for i in oldest[: len(ids) - keep]])

    def trim_all_requests(self, keep: int) -> int:
        return len(self.trim_all_request_records(keep))

    def trim_all_request_records(self, keep: int) -> list[tuple[str, str, RequestRecord]]:
        """Like ``trim_all_requests``, returning what was forgotten (for undo). As the SQLite
        store does: the (keep+1)-th newest time and everything older, so requests remembered at
        the same millisecond as the cut go with it (more than the excess on a tie)."""
        excess = len(self._by_time) - keep
        if excess <= 0:
            return []
        cut_ms = self._by_time[excess - 1][0]
        end = bisect_left(self._by_time, (cut_ms + 1,))
        return self._forget([(c, i) for _, _, c, i in self._by_time[:end]])

    def _forget(self, victims: list[_Req]) -> list[tuple[str, str, RequestRecord]]:
        out = []
        for c, i in victims:
            old = self.delete_request(c, i)
            if old is not None:
                out.append((c, i, old))
        return out

    def requests(self) -> list[tuple[str, str, RequestRecord]]:
        """Every remembered request, ordered by (client, id)."""
        return [(c, i, r) for (c, i), r in sorted(self._requests.items())]

    # ------------------------------------------------------------------ auth records

    def auth_get(self, kind: str, name: str) -> str | None:
        return self._auth.get((kind, name))

    def auth_put(self, kind: str, name: str, doc: str) -> None:
        self._auth[(kind, name)] = doc

    def auth_delete(self, kind: str, name: str) -> None:
        self._auth.pop((kind, name), None)

    def auth_scan(self, kind: str) -> list[tuple[str, str]]:
        return sorted((n, d) for (k, n), d in self._auth.items() if k == kind)

    # ------------------------------------------------------------------ whole store

    def copy(self) -> MemoryKV:
        other = MemoryKV(self._rows)
        for c, i, r in self.requests():
            other.put_request(c, i, r)
        other._auth = dict(self._auth)
        return other

    def __len__(self) -> int:
        return len(self._rows)


class UndoKV:
    """A ``KVStore`` view over ``kv`` that journals the inverse of each change; ``rollback()``
    restores ``kv`` exactly as it was when the view was made."""

    __slots__ = ("_kv", "_undo", "_undo_requests", "_undo_auth")

    def __init__(self, kv: MemoryKV) -> None:
        self._kv = kv
        self._undo: dict[str, KeyRecord | None] = {}  # each key's first prior record
        self._undo_requests: list[tuple[str, str, RequestRecord | None]] = []  # prior states, in order
        self._undo_auth: dict[tuple[str, str], str | None] = {}  # each auth record's first prior doc

    def get(self, key: str) -> KeyRecord | None:
        return self._kv.get(key)

    def put(self, key: str, record: KeyRecord) -> None:
        if key not in self._undo:
            self._undo[key] = self._kv.get(key)
        self._kv.put(key, record)

    def put_value(self, key: str, value_json: str, index: int, expires_at_ms: int | None) -> bool:
        if key not in self._undo:
            self._undo[key] = self._kv.get(key)
        return self._kv.put_value(key, value_json, index, expires_at_ms)

    def delete(self, key: str) -> None:
        if key not in self._undo:
            self._undo[key] = self._kv.get(key)
        self._kv.delete(key)

    def scan(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
        return self._kv.scan(prefix, after, limit)

    def get_request(self, client: str, request_id: str) -> RequestRecord | None:
        return self._kv.get_request(client, request_id)

    def put_request(self, client: str, request_id: str, record: RequestRecord) -> None:
        self._undo_requests.append((client, request_id, self._kv.get_request(client, request_id)))
        self._kv.put_request(client, request_id, record)

    def purge_requests(self, before_ms: int) -> int:
        gone = self._kv.purge_request_records(before_ms)
        self._undo_requests.extend(gone)
        return len(gone)

    def trim_requests(self, client: str, keep: int) -> int:
        gone = self._kv.trim_request_records(client, keep)
        self._undo_requests.extend(gone)
        return len(gone)

    def auth_get(self, kind: str, name: str) -> str | None:
        return self._kv.auth_get(kind, name)

    def auth_put(self, kind: str, name: str, doc: str) -> None:
        self._undo_auth.setdefault((kind, name), self._kv.auth_get(kind, name))
        self._kv.auth_put(kind, name, doc)

    def auth_delete(self, kind: str, name: str) -> None:
        self._undo_auth.setdefault((kind, name), self._kv.auth_get(kind, name))
        self._kv.auth_delete(kind, name)

    def auth_scan(self, kind: str) -> list[tuple[str, str]]:
        return self._kv.auth_scan(kind)

    def trim_all_requests(self, keep: int) -> int:
        gone = self._kv.trim_all_request_records(keep)
        self._undo_requests.extend(gone)
        return len(gone)

    def rollback(self) -> None:
        for (kind, name), doc in self._undo_auth.items():
            if doc is None:
                self._kv.auth_delete(kind, name)
            else:
                self._kv.auth_put(kind, name, doc)
        self._undo_auth.clear()
        for key, old in self._undo.items():
            if old is None:
                self._kv.delete(key)
            else:
                self._kv.put(key, old)
        self._undo.clear()
        for client, request_id, prior in reversed(self._undo_requests):
            if prior is None:
                self._kv.delete_request(client, request_id)
            else:
                self._kv.put_request(client, request_id, prior)
        self._undo_requests.clear()
