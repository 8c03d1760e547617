"""The end check: every member holds the same data.

After healing and the final reads, each member's whole key space is listed with a stale read
(``GET /api/v1/kv?prefix=&consistency=stale``, paginated), which is that node's own applied
state, with the applied index it was read at (``revision``). The cluster converged when every
member lists the same keys with the same values and revisions at the same applied index.
Followers may still be applying the last entries, so this is polled until it holds or the
deadline passes; then the differences are reported (key by key, at most a few).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from jepsen_like.cluster import Cluster, Node

PAGE = 1000
PAGES_MAX = 200  # a limit on everything: 200k keys is far beyond any run


def listing(node: Node, timeout_s: float = 5.0) -> tuple[int, dict[str, Any]] | None:
    """(applied index, {key: (value, create_revision, mod_revision, version)}) or None."""
    items: dict[str, Any] = {}
    after = ""
    revision = None
    with httpx.Client(timeout=timeout_s) as http:
        for _ in range(PAGES_MAX):
            params = {"prefix": "", "limit": str(PAGE), "consistency": "stale"}
            if after:
                params["after"] = after
            try:
                resp = http.get(node.url + "/api/v1/kv", params=params)
            except httpx.HTTPError:
                return None
            if resp.status_code != 200:
                return None
            body = resp.json()
            rev = int(body["revision"])
            if revision is None:
                revision = rev
            elif rev != revision:
                return None  # moved while we paged: try again
            for item in body["items"]:
                items[item["key"]] = (
                    item.get("value"),
                    item.get("create_revision"),
                    item.get("mod_revision"),
                    item.get("version"),
                )
            if not body.get("more"):
                return revision, items
            after = str(body.get("next_after") or "")
            if not after:
                return None
    return None


def differences(a: dict[str, Any], b: dict[str, Any], limit: int = 5) -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            out.append(f"{key}: {a.get(key)!r} vs {b.get(key)!r}")
            if len(out) >= limit:
                break
    return out


def check(cluster: Cluster, timeout_s: float = 30.0) -> tuple[bool, str]:
    """(converged, description)."""
    deadline = time.monotonic() + timeout_s
    last = "no listing yet"
    while True:
        members = cluster.members()
        views = {n.node_id: listing(n) for n in members}
        missing = [nid for nid, v in views.items() if v is None]
        if not missing:
            got = {nid: v for nid, v in views.items() if v is not None}
            indexes = {nid: v[0] for nid, v in got.items()}
            first_id = sorted(got)[0]
            ref = got[first_id][1]
            diff = {nid: differences(ref, v[1]) for nid, v in got.items() if v[1] != ref}
            if not diff and len(set(indexes.values())) == 1:
                return True, f"{len(got)} members identical: {len(ref)} keys at applied index {indexes[first_id]}"
            last = f"applied indexes {indexes}; differences from {first_id}: {diff}"
        else:
            last = f"no listing from {missing}"
        if time.monotonic() > deadline:
            return False, last
        time.sleep(0.5)
