"""Hypothesis strategies for random hostile HTTP requests (tests/test_hostile_http.py on a real
cluster, tests/test_hostile_fuzz.py in process).

A drawn request is ``(method, target, headers, body)``: the target is the raw request target
(path and query, percent-escapes as drawn), headers a list of (name, value) and body bytes or
None. The strategies mix well-formed and broken pieces so that requests get past the first
checks and reach the later ones.

What they never draw, so that a run cannot harm the cluster it checks (these are legitimate
requests, not hostile ones): a write outside the ``fuzz/`` keys; a prefix delete of anything
but ``fuzz/...``; a join of a new node at a reachable-looking address (a real join would wait
for a node that does not exist); ``UpdateAddress: true``; a removal or a leadership transfer
naming a real member (an empty transfer body too, unless ``single_node``: alone, it is a 409).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

Request = tuple[str, bytes, list[tuple[str, str]], bytes | None]

METHODS = ["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "OPTIONS", "TRACE", "FROB"]
FIXED_PATHS = [
    "/api/v1/kv",
    "/api/v1/txn",
    "/api/v1/raft/join",
    "/api/v1/raft/remove",
    "/api/v1/raft/transfer-leadership",
    "/api/v1/raft/nodes",
    "/api/v1/status",
    "/api/v1/events",
    "/api/v1/stats",
    "/api/v1/backup",
    "/health",
    "/ready",
    "/metrics",
    "/openapi.json",
    "/api/v1/nope",
    "/api/v1/kv%2Ffuzz",
    "/api",
    "//api/v1/status",
]
POST_PATHS = {b"/api/v1/txn", b"/api/v1/raft/join", b"/api/v1/raft/remove", b"/api/v1/raft/transfer-leadership"}
KEY_PIECES = [
    "a", "b", "x1", "..", ".", "", "%41", "%2F", "%2E%2E", "%zz", "%", "%F", "%FF", "%FE", "%C3%A9", "%C0%AF",
    "%ED%A0%80", "%00", "%01", "%1B", "%7F", "%C2%85", "~", "+", "%20", "caf\u00e9", "\u00e9", "%E2%82%AC",
]  # fmt: skip
PARAM_NAMES = [
    "limit", "prefix", "after", "consistency", "ttl", "dry_run", "meta", "keys_only", "confirm",
    "from_revision", "last_event_id", "bogus",
]  # fmt: skip
PARAM_VALUES = [
    "", "0", "1", "-1", "abc", "1.5", "99999999999999999999", "true", "false", "maybe", "stale", "linearizable",
    "5s", "31d", "NaN", "fuzz/", "fuzz/a", "%zz", "%FF", "%00", "1:2", "p" * 1100,
]  # fmt: skip
HEADER_CHOICES = [
    ("Content-Type", ["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""]),
    ("If-Match", ['"1"', '"99999999999999999999"', "*", 'W/"1"', "abc", '"1", "2"']),
    ("If-None-Match", ["*", '"1"', "junk"]),
    ("Idempotency-Key", ["k1", "", "a b", 'a"b', "k" * 200]),
    ("X-Beaver-Vault-Client", ["c1", "", "a,b"]),
    ("Last-Event-ID", ["5", "5:1", "x", "5:0", "-1"]),
    ("Accept", ["*/*", "text/html"]),
]


def key_paths(draw: Any) -> str:
    pieces = draw(st.lists(st.sampled_from(KEY_PIECES), min_size=0, max_size=4))
    return "/api/v1/kv/fuzz/" + "/".join(pieces)


@st.composite
def targets(draw: Any) -> bytes:
    path = key_paths(draw) if draw(st.booleans()) else draw(st.sampled_from(FIXED_PATHS))
    params = draw(st.lists(st.tuples(st.sampled_from(PARAM_NAMES), st.sampled_from(PARAM_VALUES)), max_size=3))
    if path == "/api/v1/kv" and any(n == "prefix" for n, _ in params):
        # A prefix delete may only ever name fuzz/ keys (never the canaries, never everything).
        params = [(n, v) if n != "prefix" else (n, "fuzz/" + v) for n, v in params]
    query = "&".join(f"{n}={v}" for n, v in params)
    return (path + ("?" + query if query else "")).encode("utf-8")


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_docs = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
junk = st.one_of(json_scalars, st.lists(st.integers(), max_size=2), st.just({}))
FUZZ_KEYS = ["fuzz/a", "fuzz/b", "fuzz/\u00e9", "", "a\u0001b", "k" * 1100]


def join_bodies(members: list[str]) -> Any:
    bad_ids = ["", " ", "n" * 300, "a b", "x\ny", "../n", 5, None, ["node9"]]
    bad_addresses = ["", "nowhere", ":1", "h:0", "h:99999", "h:+1", "a b:1", 7, None, "h" * 300 + ":1"]
    member_move = st.fixed_dictionaries({"NodeID": st.sampled_from(members), "RaftAddress": st.just("127.0.0.1:1")})
    invalid = st.fixed_dictionaries(
        {"NodeID": st.sampled_from(["node9", *members, *bad_ids]), "RaftAddress": st.sampled_from(bad_addresses)}
    )
    extras = st.fixed_dictionaries(
        {},
        optional={
            "Force": st.one_of(st.booleans(), junk),
            "UpdateAddress": st.sampled_from([False, "true", 1, None, []]),
            "Bogus": junk,
        },
    )
    return st.tuples(st.one_of(member_move, invalid), extras).map(lambda t: {**t[0], **t[1]})


def remove_bodies(single_node: bool, members: list[str]) -> Any:
    ids = ["nobody", "", " ", 5, None, "n" * 300] + (members if single_node else [])
    return st.fixed_dictionaries(
        {"NodeID": st.sampled_from(ids)}, optional={"Force": st.one_of(st.booleans(), junk), "Extra": junk}
    )


def transfer_bodies(single_node: bool, members: list[str]) -> Any:
    ids: list[Any] = ["nobody", "", 5, [], "n" * 300] + (members + [None] if single_node else [])
    body = st.fixed_dictionaries({"NodeID": st.sampled_from(ids)}, optional={"Force": junk, "Target": junk})
    return st.one_of(body, st.just({})) if single_node else body


txn_ops = st.one_of(
    st.fixed_dictionaries(
        {"op": st.sampled_from(["put", "delete", "get", "patch", 1]), "key": st.sampled_from(FUZZ_KEYS)},
        optional={"value": json_docs, "ttl": st.one_of(st.sampled_from(["5s", "0", "-1", "31d"]), junk), "expires_at_ms": junk},
    ),
    junk,
)
txn_compares = st.one_of(
    st.fixed_dictionaries(
        {
            "key": st.sampled_from(FUZZ_KEYS),
            "target": st.sampled_from(["value", "exists", "version", "mod_revision", "create_revision", "lease"]),
            "op": st.sampled_from(["==", "!=", "<", ">", "<="]),
            "value": st.one_of(json_docs, st.integers(min_value=-5, max_value=2**64)),
        }
    ),
    junk,
)
txn_bodies = st.fixed_dictionaries(
    {},
    optional={
        "compare": st.one_of(st.lists(txn_compares, max_size=3), junk),
        "success": st.one_of(st.lists(txn_ops, max_size=3), junk),
        "failure": st.one_of(st.lists(txn_ops, max_size=3), junk),
        "else": junk,
    },
)


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def mutate(data: bytes, draw: Any) -> bytes:
    """A few random byte edits (flip, insert, delete) of an encoded document."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        if not out:
            break
        pos = draw(st.integers(0, len(out) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        if action == "flip":
            out[pos] = draw(st.integers(0, 255))
        elif action == "insert":
            out.insert(pos, draw(st.sampled_from(b'{}[],:"\\x0\xff')))
        elif action == "delete":
            del out[pos]
        else:
            out[pos:pos] = out[pos : pos + draw(st.integers(1, 8))]
    return bytes(out)


@st.composite
def bodies(draw: Any, single_node: bool, members: list[str]) -> bytes | None:
    doc = draw(
        st.one_of(
            json_docs,
            join_bodies(members),
            remove_bodies(single_node, members),
            transfer_bodies(single_node, members),
            txn_bodies,
        )
    )
    kind = draw(st.sampled_from(["json", "json", "mutated", "binary", "none", "duplicate"]))
    if kind == "none":
        return None
    if kind == "binary":
        data: bytes = draw(st.binary(max_size=64))
        return data
    data = encode(doc)
    if kind == "mutated":
        return mutate(data, draw)
    if kind == "duplicate" and isinstance(doc, dict) and doc:
        name = next(iter(doc))
        return data[:-1] + b", " + json.dumps(name).encode() + b": 1}"
    return data


@st.composite
def raw_requests(draw: Any, *, with_watch: bool = False, single_node: bool = False, members: list[str] | None = None) -> Request:
    ids = members if members is not None else (["node1"] if single_node else ["node1", "node2", "node3"])
    target = draw(targets())
    path = target.partition(b"?")[0]
    # Mostly a method the route has (else most requests would only ever meet the 405).
    if path in POST_PATHS:
        likely = ["POST"]
    elif path.startswith(b"/api/v1/kv/"):
        likely = ["GET", "PUT", "DELETE"]
    else:
        likely = ["GET", "DELETE"] if path == b"/api/v1/kv" else ["GET"]
    method = draw(st.sampled_from(METHODS)) if draw(st.integers(0, 3)) == 3 else draw(st.sampled_from(likely))
    if with_watch and draw(st.booleans()):
        target = b"/api/v1/watch?from_revision=" + draw(st.sampled_from([b"0", b"-1", b"x", b"1.5", b"9" * 20]))
    names = draw(st.lists(st.sampled_from(range(len(HEADER_CHOICES))), max_size=3, unique=True))
    headers = [(HEADER_CHOICES[i][0], draw(st.sampled_from(HEADER_CHOICES[i][1]))) for i in names]
    body = draw(bodies(single_node, ids)) if method not in ("GET", "HEAD", "TRACE") or draw(st.booleans()) else None
    path = target.partition(b"?")[0]
    if path == b"/api/v1/raft/transfer-leadership" and not single_node:
        # Any body that might name no target ({}, null NodeID, ...) would really move the
        # leadership: only bodies that name a non-member, possibly mangled.
        body = encode(draw(transfer_bodies(False, ids)))
        if draw(st.booleans()):
            body = mutate(body, draw)
            if not body.strip() or b"nobody" not in body and b"NodeID" not in body:
                body = b'{"NodeID": "nobody", "Force": "x"}'
    return method, target, headers, body
