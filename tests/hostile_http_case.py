"""What one hostile-input case of the HTTP API is (:class:`Case`), the routes the cases aim at,
and ``json_body``. The cases themselves: hostile_http_body.py (request bodies),
hostile_http_request.py (keys, framing, methods, queries) and hostile_http_routes.py
(transactions, membership, watch); all of them together: hostile_http.CASES.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

KV = "/api/v1/kv/"
JOIN = "/api/v1/raft/join"
REMOVE = "/api/v1/raft/remove"
TRANSFER = "/api/v1/raft/transfer-leadership"
TXN = "/api/v1/txn"
WATCH = "/api/v1/watch"
BACKUP = "/api/v1/backup"
MiB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str | bytes  # the request target exactly as sent (query included)
    status: int
    says: str = ""  # words the error message must contain (case-insensitive)
    body: bytes | None = None
    headers: tuple[tuple[str, str | None], ...] = ()
    content_length: bool = True  # False: the case sets its own framing headers
    node: str = "leader"  # or "follower": where the request is sent
    appends: bool = False  # an accepted write (the suite's own): the log may grow
    trickle: bytes | None = None  # sent slowly after the request (a body that never arrives)

    @property
    def id(self) -> str:
        return self.name


def json_body(obj: object) -> bytes:
    """A request body: ``obj`` as JSON."""
    return json.dumps(obj).encode()
