"""The hostile-input cases of the HTTP API, as data (run by tests/test_hostile_http.py).

Each :class:`Case` is one request a hostile or broken client might send and the exact answer
the API owes it: the status, and words the JSON error must contain (so that it names the
problem). Unless ``appends`` is set, the request must not append anything to the log. The
classes (issue 11, item 8): every route x malformed JSON, wrong types, huge/negative/NaN
numbers, missing/extra fields, duplicate JSON keys, wrong content types, oversized bodies,
headers and URLs, bad percent-encodings and control characters in keys, framing conflicts,
bad methods, bad query parameters, transaction edge cases, membership abuse, watch abuse,
backup abuse.

Not here, because they are covered where the machinery lives (linked, not duplicated):
forged and absurd raft-port frames, connection slots and partial-frame budgets
(tests/test_tcp_hostile.py, tests/test_peer_validation.py, tests/test_sim_hostile.py); keys
stored exactly as sent (``..``, ``//``, Unicode forms: tests/test_keys.py); slow watchers, per
client watch limits, rate limits and socket closing (tests/test_http_limits.py); restoring a
corrupt or truncated backup file (tests/test_backup_restore.py: restore is an offline command,
not a route).

Placeholders in a case's path and body, filled in by the test once the cluster runs:
``{leader}``, ``{follower}`` (node ids), ``{leader_raft}``, ``{follower_raft}`` (their raft
addresses).
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


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()


# Malformed documents: (label, body, words of the error). Every route that reads a JSON
# body answers each with 400.
MALFORMED: list[tuple[str, bytes, str]] = [
    ("unclosed object", b"{", "not valid json"),
    ("missing value", b'{"NodeID": }', "not valid json"),
    ("bare word", b"tru", "not valid json"),
    ("single quotes", b"{'NodeID': 'x'}", "not valid json"),
    ("two documents", b'{"a": 1} {"b": 2}', "not valid json"),
    ("trailing comma", b'{"a": 1,}', "not valid json"),
    ("byte order mark", b'\xef\xbb\xbf{"a": 1}', "not valid json"),
    ("NaN", b"NaN", "nan is not valid json"),
    ("Infinity in a list", b"[Infinity]", "infinity is not valid json"),
    ("-Infinity", b'{"a": -Infinity}', "-infinity is not valid json"),
    ("1e400 overflows", b'{"a": 1e400}', "out of range"),
    ("-1e400 overflows", b"-1e400", "out of range"),
    ("5000-digit integer", b"1" + b"0" * 5000, "not acceptable json"),
    ("nesting 200 deep", b"[" * 200 + b"]" * 200, "nesting is deeper"),
    ("nesting 100000 deep", b"[" * 100_000 + b"]" * 100_000, "nesting is deeper"),
    ("lone surrogate escape", b'{"a": "\\ud800"}', "lone surrogate"),
    ("invalid UTF-8", b'{"a": "\xff\xfe"}', "not valid utf-8"),
    ("overlong UTF-8", b'{"a": "\xc0\xaf"}', "not valid utf-8"),
    ("NUL byte", b"\x00", "not valid json"),
    ("duplicate names", b'{"a": 1, "a": 2}', "duplicate name 'a'"),
    ("duplicate names nested", b'{"x": [{"b": 1, "b": 1}]}', "duplicate name 'b'"),
    ("empty body", b"", "body is empty"),
    ("whitespace body", b" \r\n\t ", "body is empty"),
]

# The routes that read a JSON body, with a key to write to for PUT.
BODY_ROUTES: list[tuple[str, str, str]] = [
    ("put", "PUT", KV + "hostile/malformed"),
    ("txn", "POST", TXN),
    ("join", "POST", JOIN),
    ("remove", "POST", REMOVE),
    ("transfer", "POST", TRANSFER),
]


def malformed_cases() -> list[Case]:
    out: list[Case] = []
    for route, method, path in BODY_ROUTES:
        for label, body, says in MALFORMED:
            if route == "transfer" and not body.strip():
                continue  # an empty body is a valid transfer request (the leader picks the target)
            out.append(Case(f"{route}: {label}", method, path, 400, says, body=body))
    # A few through a follower as well: it refuses them itself, before forwarding anything.
    for label, body, says in MALFORMED[:: 4]:
        out.append(Case(f"put via follower: {label}", "PUT", KV + "hostile/malformed", 400, says, body=body, node="follower"))
    out.append(Case("txn via follower: duplicate names", "POST", TXN, 400, "duplicate name", body=b'{"success": [], "success": []}', node="follower"))
    return out


def wrong_type_cases() -> list[Case]:
    c: list[Case] = []
    not_objects = [("a list", b"[1, 2]"), ("a string", b'"node4"'), ("a number", b"42"), ("null", b"null"), ("true", b"true")]
    for route, path in (("txn", TXN), ("join", JOIN), ("remove", REMOVE), ("transfer", TRANSFER)):
        for label, body in not_objects:
            c.append(Case(f"{route}: body is {label}", "POST", path, 400, "object", body=body))
    join_types: list[tuple[str, dict[str, object], str]] = [
        ("NodeID a number", {"NodeID": 4, "RaftAddress": "127.0.0.1:1"}, "'nodeid' must be a string"),
        ("NodeID null", {"NodeID": None, "RaftAddress": "127.0.0.1:1"}, "'nodeid' must be a string"),
        ("NodeID a list", {"NodeID": ["node4"], "RaftAddress": "127.0.0.1:1"}, "'nodeid' must be a string"),
        ("NodeID an object", {"NodeID": {"id": "node4"}, "RaftAddress": "127.0.0.1:1"}, "'nodeid' must be a string"),
        ("NodeID true", {"NodeID": True, "RaftAddress": "127.0.0.1:1"}, "'nodeid' must be a string"),
        ("RaftAddress a number", {"NodeID": "node4", "RaftAddress": 7004}, "'raftaddress' must be a string"),
        ("Force a string", {"NodeID": "node4", "RaftAddress": "127.0.0.1:1", "Force": "yes"}, "'force' must be true or false"),
        ("Force a number", {"NodeID": "node4", "RaftAddress": "127.0.0.1:1", "Force": 1}, "'force' must be true or false"),
        ("UpdateAddress a string", {"NodeID": "node4", "RaftAddress": "127.0.0.1:1", "UpdateAddress": "true"}, "'updateaddress' must be true or false"),
        ("UpdateAddress null", {"NodeID": "node4", "RaftAddress": "127.0.0.1:1", "UpdateAddress": None}, "'updateaddress' must be true or false"),
    ]
    for label, body, says in join_types:
        c.append(Case(f"join: {label}", "POST", JOIN, 400, says, body=_j(body)))
    c.append(Case("remove: NodeID a number", "POST", REMOVE, 400, "'nodeid' must be a string", body=_j({"NodeID": 2})))
    c.append(Case("remove: Force a string", "POST", REMOVE, 400, "'force' must be true or false", body=_j({"NodeID": "{follower}", "Force": "no"})))
    c.append(Case("transfer: NodeID a number", "POST", TRANSFER, 400, "'nodeid' must be a string", body=_j({"NodeID": 3})))
    c.append(Case("transfer: Force a list", "POST", TRANSFER, 400, "'force' must be true or false", body=_j({"NodeID": "{leader}", "Force": []})))
    return c


def missing_extra_field_cases() -> list[Case]:
    return [
        Case("join: empty object", "POST", JOIN, 400, "missing field 'nodeid'", body=b"{}"),
        Case("join: no NodeID", "POST", JOIN, 400, "missing field 'nodeid'", body=_j({"RaftAddress": "127.0.0.1:1"})),
        Case("join: no RaftAddress", "POST", JOIN, 400, "missing field 'raftaddress'", body=_j({"NodeID": "node4"})),
        Case("join: lowercase names", "POST", JOIN, 400, "unknown field", body=_j({"node_id": "node4", "raft_address": "127.0.0.1:1"})),
        Case("join: extra field", "POST", JOIN, 400, "unknown field(s) 'admin'", body=_j({"NodeID": "node4", "RaftAddress": "127.0.0.1:1", "Admin": True})),
        Case("join: misspelt UpdateAddress", "POST", JOIN, 400, "unknown field(s) 'updateaddress'", body=_j({"NodeID": "{follower}", "RaftAddress": "127.0.0.1:1", "updateAddress": True})),
        Case("remove: empty object", "POST", REMOVE, 400, "missing field 'nodeid'", body=b"{}"),
        Case("remove: extra field", "POST", REMOVE, 400, "unknown field(s) 'force!'", body=_j({"NodeID": "nobody", "Force!": True})),
        Case("transfer: extra field", "POST", TRANSFER, 400, "unknown field(s) 'target'", body=_j({"Target": "{follower}"})),
        Case("txn: extra field", "POST", TXN, 400, "unknown fields", body=_j({"success": [], "else": []})),
        Case("txn: put without value", "POST", TXN, 400, "missing fields ['value']", body=_j({"success": [{"op": "put", "key": "k"}]})),
        Case("txn: put without key", "POST", TXN, 400, "missing fields ['key']", body=_j({"success": [{"op": "put", "value": 1}]})),
        Case("txn: get with a value", "POST", TXN, 400, "unknown fields ['value']", body=_j({"success": [{"op": "get", "key": "k", "value": 1}]})),
        Case("txn: compare without op", "POST", TXN, 400, "missing fields ['op']", body=_j({"compare": [{"key": "k", "target": "version", "value": 1}]})),
    ]


def number_cases() -> list[Case]:
    c: list[Case] = []
    for label, limit, says in [
        ("zero", "0", "between 1 and 1000"),
        ("negative", "-1", "non-negative integer"),
        ("not a number", "abc", "non-negative integer"),
        ("a fraction", "1.5", "non-negative integer"),
        ("above the maximum", "1001", "between 1 and 1000"),
        ("20 digits", "99999999999999999999", "non-negative integer"),
        ("empty", "", "non-negative integer"),
        ("NaN", "NaN", "non-negative integer"),
        ("unicode digits", "%D9%A3", "non-negative integer"),
    ]:
        c.append(Case(f"list: limit {label}", "GET", f"/api/v1/kv?limit={limit}", 400, says))
    for label, ttl, says in [
        ("negative", "-1", "not a duration"),
        ("zero", "0", "ttl must be positive"),
        ("not a duration", "abc", "not a duration"),
        ("NaN", "NaN", "not a duration"),
        ("inf", "inf", "not a duration"),
        ("1e400", "1e400", "not a duration"),
        ("beyond the API maximum", "31d", "ttl must be at most"),
        ("absurd", "999999999999999d", "ttl longer than"),
        ("unknown unit", "5y", "not a duration"),
    ]:
        c.append(Case(f"put: ttl {label}", "PUT", f"{KV}hostile/ttl?ttl={ttl}", 400, says, body=b"1"))
    for label, header, says in [
        ("20 digits", '"99999999999999999999"', "one quoted revision"),
        ("negative", '"-1"', "one quoted revision"),
        ("unquoted", "5", "one quoted revision"),
        ("a list", '"1", "2"', "one quoted revision"),
        ("star", "*", "if-match: * is not supported"),
        ("weak", 'W/"1"', "weak tags"),
    ]:
        c.append(Case(f"put: If-Match {label}", "PUT", KV + "hostile/cond", 400, says, body=b"1", headers=(("If-Match", header),)))
    c.append(Case("delete: If-Match NaN", "DELETE", KV + "hostile/cond", 400, "one quoted revision", headers=(("If-Match", '"NaN"'),)))
    # Numbers inside a transaction.
    for label, value, says in [
        ("negative version", -1, "between 0 and"),
        ("version 2**63", 2**63, "between 0 and"),
        ("version a fraction", 1.5, "must be an integer"),
        ("version a string", "1", "must be an integer"),
        ("version true", True, "must be an integer"),
    ]:
        body = _j({"compare": [{"key": "k", "target": "version", "op": "==", "value": value}]})
        c.append(Case(f"txn: compare {label}", "POST", TXN, 400, says, body=body))
    for label, op, says in [
        ("ttl negative", {"ttl": -5}, "ttl must be positive"),
        ("ttl zero", {"ttl": 0}, "ttl must be positive"),
        ("ttl 1e308", {"ttl": 1e308}, "ttl longer than"),
        ("ttl beyond the API maximum", {"ttl": "31d"}, "ttl must be at most"),
        ("ttl_ms zero", {"ttl_ms": 0}, "ttl_ms must be positive"),
        ("expires_at_ms negative", {"expires_at_ms": -1}, "between 0 and"),
        ("ttl and expires_at_ms", {"ttl": 5, "expires_at_ms": 5}, "at most one of"),
    ]:
        body = _j({"success": [{"op": "put", "key": "hostile/ttl", "value": 1, **op}]})
        c.append(Case(f"txn: {label}", "POST", TXN, 400, says, body=body))
    c.append(Case("txn: ttl NaN", "POST", TXN, 400, "nan is not valid json", body=b'{"success": [{"op": "put", "key": "k", "value": 1, "ttl": NaN}]}'))
    return c


def content_type_cases() -> list[Case]:
    return [
        # The seed's curl sends its JSON as a form: any content type is read as JSON, so a
        # valid document is accepted whatever the header says (the suite's own writes).
        Case("put: form content type, JSON body (the seed's curl)", "PUT", KV + "hostile/ct/form", 200,
             body=b'{"ok": 1}', headers=(("Content-Type", "application/x-www-form-urlencoded"),), appends=True),
        Case("put: text/plain, JSON body", "PUT", KV + "hostile/ct/text", 200, body=b"[1]",
             headers=(("Content-Type", "text/plain"),), appends=True),
        Case("put: a real form body", "PUT", KV + "hostile/ct/x", 400, "not valid json", body=b"a=1&b=2",
             headers=(("Content-Type", "application/x-www-form-urlencoded"),)),
        Case("put: multipart body", "PUT", KV + "hostile/ct/x", 400, "not valid json",
             body=b'--b\r\nContent-Disposition: form-data; name="v"\r\n\r\n1\r\n--b--\r\n',
             headers=(("Content-Type", "multipart/form-data; boundary=b"),)),
        Case("put: XML", "PUT", KV + "hostile/ct/x", 400, "not valid json", body=b"<a>1</a>",
             headers=(("Content-Type", "application/xml"),)),
        Case("put: UTF-16 JSON", "PUT", KV + "hostile/ct/x", 400, "not valid utf-8", body='{"a": 1}'.encode("utf-16"),
             headers=(("Content-Type", "application/json; charset=utf-16"),)),
        Case("join: a real form body", "POST", JOIN, 400, "not valid json", body=b"NodeID=node4&RaftAddress=127.0.0.1:1",
             headers=(("Content-Type", "application/x-www-form-urlencoded"),)),
        Case("txn: octet-stream garbage", "POST", TXN, 400, "not valid utf-8", body=bytes(range(256)),
             headers=(("Content-Type", "application/octet-stream"),)),
    ]


def size_cases() -> list[Case]:
    big = b'"' + b"x" * (MiB + 10) + b'"'
    chunked = b"".join(b"%x\r\n" % 65536 + b"y" * 65536 + b"\r\n" for _ in range(17)) + b"0\r\n\r\n"
    return [
        Case("put: body over 1 MiB", "PUT", KV + "hostile/big", 413, "larger than", body=big),
        Case("txn: body over 1 MiB", "POST", TXN, 413, "larger than", body=big),
        Case("join: body over 1 MiB", "POST", JOIN, 413, "larger than", body=big),
        Case("put: declared 2 GiB, nothing sent", "PUT", KV + "hostile/big", 413, "larger than",
             headers=(("Content-Length", str(2 * 1024 * MiB)),), content_length=False),
        Case("put: chunked body over 1 MiB", "PUT", KV + "hostile/big", 413, "larger than", body=chunked,
             headers=(("Transfer-Encoding", "chunked"),), content_length=False),
        Case("get: one 9 KB header", "GET", KV + "hostile/h", 431, "request headers are", headers=(("X-Big", "h" * 9000),)),
        Case("get: 300 small headers", "GET", KV + "hostile/h", 431, "request headers are",
             headers=tuple((f"X-H{i}", "v" * 20) for i in range(300))),
        Case("put: 9 KB header", "PUT", KV + "hostile/h", 431, "request headers are", body=b"1", headers=(("X-Big", "h" * 9000),)),
        Case("get: 9 KB URL", "GET", KV + "u" * 9000, 414, "request url is"),
        Case("list: 9 KB query", "GET", "/api/v1/kv?prefix=" + "p" * 9000, 414, "request url is"),
        Case("get: 1100-byte key", "GET", KV + "k" * 1100, 400, "the limit is 1024 bytes"),
        Case("put: 1100-byte key", "PUT", KV + "k" * 1100, 400, "the limit is 1024 bytes", body=b"1"),
        Case("put: 400 x 3-byte characters", "PUT", KV + "%E2%82%AC" * 400, 400, "the limit is 1024 bytes", body=b"1"),
        Case("list: prefix over the key limit", "GET", "/api/v1/kv?prefix=" + "p" * 1100, 400, "prefix is longer"),
        Case("list: after over the key limit", "GET", "/api/v1/kv?after=" + "a" * 1100, 400, "after is longer"),
        Case("delete prefix: prefix over the key limit", "DELETE", "/api/v1/kv?confirm=true&prefix=" + "p" * 1100, 400, "prefix is longer"),
        Case("put: body that never arrives", "PUT", KV + "hostile/slow", 408, "did not arrive",
             headers=(("Content-Length", "100"),), content_length=False, trickle=b"[1," * 33),
        Case("join: body that never arrives", "POST", JOIN, 408, "did not arrive",
             headers=(("Content-Length", "100"),), content_length=False, trickle=b" " * 100),
    ]


def key_cases() -> list[Case]:
    bad = [
        ("%zz", "invalid percent-encoding"),
        ("a%", "invalid percent-encoding"),
        ("a%4", "invalid percent-encoding"),
        ("%G1", "invalid percent-encoding"),
        ("%%41", "invalid percent-encoding"),
        ("%FE", "not valid utf-8"),
        ("%FF", "not valid utf-8"),
        ("%C0%AF", "not valid utf-8"),
        ("%E2%82", "not valid utf-8"),
        ("%ED%A0%80", "not valid utf-8"),
        ("%F4%90%80%80", "not valid utf-8"),
        ("%00", "control character u+0000"),
        ("a%01b", "control character u+0001"),
        ("%1B%5B31m", "control character u+001b"),
        ("line%0Abreak", "control character u+000a"),
        ("cr%0D", "control character u+000d"),
        ("tab%09", "control character u+0009"),
        ("del%7F", "control character u+007f"),
        ("c1%C2%80", "control character u+0080"),
        ("c1%C2%9F", "control character u+009f"),
    ]
    c: list[Case] = []
    for raw, says in bad:
        c.append(Case(f"get key {raw}", "GET", KV + raw, 400, says))
        c.append(Case(f"put key {raw}", "PUT", KV + raw, 400, says, body=b"1"))
    for raw, says in bad[:6]:
        c.append(Case(f"delete key {raw}", "DELETE", KV + raw, 400, says))
        c.append(Case(f"put key {raw} via follower", "PUT", KV + raw, 400, says, body=b"1", node="follower"))
    c += [
        Case("get: empty key", "GET", KV, 400, "key must not be empty"),
        Case("put: empty key", "PUT", KV, 400, "key must not be empty", body=b"1"),
        Case("put: percent-encoded prefix", "PUT", "/api/v1/kv%2Fk", 400, "spelled literally", body=b"1"),
        Case("get: raw control byte in the path", "GET", b"/api/v1/kv/a\x01b", 400, "malformed http request"),
        Case("get: raw space in the path", "GET", b"/api/v1/kv/a b", 400, "malformed http request"),
        Case("put: raw DEL byte in the path", "PUT", b"/api/v1/kv/a\x7fb", 400, "malformed http request", body=b"1"),
        Case("get: raw 0xFF in the path", "GET", b"/api/v1/kv/a\xffb", 400, "malformed http request"),
        Case("txn: key with a control character", "POST", TXN, 400, "control character u+0001",
             body=_j({"success": [{"op": "put", "key": "a\u0001b", "value": 1}]})),
        Case("txn: key with ESC", "POST", TXN, 400, "control character u+001b",
             body=_j({"compare": [{"key": "\u001b[2J", "target": "exists", "op": "==", "value": False}]})),
        Case("txn: key with a lone surrogate", "POST", TXN, 400, "lone surrogate",
             body=b'{"success": [{"op": "get", "key": "a\\udc80"}]}'),
        Case("txn: key over the key limit", "POST", TXN, 400, "1024 bytes",
             body=_j({"success": [{"op": "delete", "key": "k" * 1100}]})),
    ]
    return c


def framing_cases() -> list[Case]:
    return [
        Case("put: Content-Length and Transfer-Encoding", "PUT", KV + "hostile/smuggle", 400,
             "both content-length and transfer-encoding",
             headers=(("Content-Length", "5"), ("Transfer-Encoding", "chunked")), body=b"1\r\n7\r\n0\r\n\r\n",
             content_length=False),
        Case("txn: Transfer-Encoding then Content-Length", "POST", TXN, 400, "both content-length and transfer-encoding",
             headers=(("Transfer-Encoding", "chunked"), ("Content-Length", "2")), body=b"2\r\n{}\r\n0\r\n\r\n",
             content_length=False),
        Case("put: two different Content-Lengths", "PUT", KV + "hostile/smuggle", 400, "malformed http request",
             headers=(("Content-Length", "1"), ("Content-Length", "2")), body=b"12", content_length=False),
        Case("put: Content-Length not a number", "PUT", KV + "hostile/smuggle", 400, "malformed http request",
             headers=(("Content-Length", "1x"),), body=b"1", content_length=False),
        Case("put: negative Content-Length", "PUT", KV + "hostile/smuggle", 400, "malformed http request",
             headers=(("Content-Length", "-1"),), body=b"1", content_length=False),
        Case("put: Transfer-Encoding gzip", "PUT", KV + "hostile/smuggle", 501, "malformed http request",
             headers=(("Transfer-Encoding", "gzip"),), body=b"1", content_length=False),
        Case("put: bad chunk size", "PUT", KV + "hostile/smuggle", 400, "malformed http request",
             headers=(("Transfer-Encoding", "chunked"),), body=b"zz\r\n1\r\n0\r\n\r\n", content_length=False),
        Case("get: header name with a space", "GET", KV + "hostile/h", 400, "malformed http request",
             headers=(("Bad Header", "x"),)),
        Case("get: header without a colon", "GET", KV + "hostile/h", 400, "malformed http request",
             headers=(("NoColonHere", None),)),
    ]


def method_cases() -> list[Case]:
    c = [
        Case("PATCH a key", "PATCH", KV + "hostile/m", 405, "method patch is not allowed", body=b"1"),
        Case("POST a key", "POST", KV + "hostile/m", 405, "method post is not allowed", body=b"1"),
        Case("TRACE a key", "TRACE", KV + "hostile/m", 405, "method trace is not allowed"),
        Case("an invented method", "FROB", KV + "hostile/m", 405, "method frob is not allowed"),
        Case("PUT the listing", "PUT", "/api/v1/kv", 405, "method put is not allowed", body=b"1"),
        Case("POST the listing", "POST", "/api/v1/kv", 405, "method post is not allowed", body=b"1"),
        Case("GET a transaction", "GET", TXN, 405, "method get is not allowed"),
        Case("PUT a transaction", "PUT", TXN, 405, "method put is not allowed", body=b"{}"),
        Case("GET join", "GET", JOIN, 405, "method get is not allowed"),
        Case("DELETE remove", "DELETE", REMOVE, 405, "method delete is not allowed"),
        Case("PUT transfer", "PUT", TRANSFER, 405, "method put is not allowed", body=b"{}"),
        Case("POST nodes", "POST", "/api/v1/raft/nodes", 405, "method post is not allowed", body=b"{}"),
        Case("DELETE status", "DELETE", "/api/v1/status", 405, "method delete is not allowed"),
        Case("POST health", "POST", "/health", 405, "method post is not allowed", body=b"{}"),
        Case("PUT metrics", "PUT", "/metrics", 405, "method put is not allowed", body=b"1"),
        Case("POST a watch", "POST", WATCH, 405, "method post is not allowed", body=b"{}"),
        Case("POST a backup", "POST", BACKUP, 405, "method post is not allowed", body=b"{}"),
        Case("PUT a backup (a restore over HTTP)", "PUT", BACKUP, 405, "method put is not allowed", body=b"{}"),
        Case("DELETE a backup", "DELETE", BACKUP, 405, "method delete is not allowed"),
        Case("unknown API version", "GET", "/api/v2/kv/x", 404, "no such route"),
        Case("upper-case route", "GET", "/api/v1/KV/x", 404, "no such route"),
        Case("unknown route", "POST", "/api/v1/raft/promote", 404, "no such route", body=b"{}"),
        Case("a backup sub-path", "GET", BACKUP + "/../../etc/passwd", 404, "no such route"),
    ]
    return c


def query_cases() -> list[Case]:
    c = [
        Case("get: consistency bogus", "GET", KV + "canary/0?consistency=bogus", 400, "consistency must be one of"),
        Case("get: consistency empty", "GET", KV + "canary/0?consistency=", 400, "consistency must be one of"),
        Case("get: consistency upper-case", "GET", KV + "canary/0?consistency=STALE", 400, "consistency must be one of"),
        Case("get: consistency given twice", "GET", KV + "canary/0?consistency=stale&consistency=linearizable", 400,
             "given more than once"),
        Case("list: consistency bogus", "GET", "/api/v1/kv?consistency=eventual", 400, "consistency must be one of"),
        Case("list: limit given twice", "GET", "/api/v1/kv?limit=1&limit=1000", 400, "'limit' is given more than once"),
        Case("list: prefix given twice", "GET", "/api/v1/kv?prefix=a&prefix=b", 400, "'prefix' is given more than once"),
        Case("list: keys_only maybe", "GET", "/api/v1/kv?keys_only=maybe", 400, "keys_only must be true or false"),
        Case("get: meta maybe", "GET", KV + "canary/0?meta=2", 400, "meta must be true or false"),
        Case("put: ttl given twice", "PUT", KV + "hostile/q?ttl=5s&ttl=10s", 400, "'ttl' is given more than once", body=b"1"),
        Case("delete prefix: no confirm", "DELETE", "/api/v1/kv?prefix=canary/", 400, "needs confirm=true"),
        Case("delete prefix: confirm maybe", "DELETE", "/api/v1/kv?prefix=canary/&confirm=perhaps", 400,
             "confirm must be true or false"),
        Case("delete prefix: confirm false", "DELETE", "/api/v1/kv?prefix=canary/&confirm=false", 400, "needs confirm=true"),
        Case("delete prefix: no prefix", "DELETE", "/api/v1/kv?confirm=true", 400, "prefix parameter is required"),
        Case("delete prefix: confirm twice", "DELETE", "/api/v1/kv?prefix=canary/&confirm=true&confirm=false", 400,
             "given more than once"),
        Case("join: dry_run maybe", "POST", JOIN + "?dry_run=maybe", 400, "dry_run must be true or false",
             body=_j({"NodeID": "node4", "RaftAddress": "127.0.0.1:1"})),
        Case("remove: dry_run twice", "POST", REMOVE + "?dry_run=true&dry_run=false", 400, "given more than once",
             body=_j({"NodeID": "{follower}"})),
        Case("transfer: dry_run 2", "POST", TRANSFER + "?dry_run=2", 400, "dry_run must be true or false", body=b"{}"),
        Case("backup: consistency bogus", "GET", BACKUP + "?consistency=bogus", 400, "consistency must be one of"),
        Case("backup: consistency empty", "GET", BACKUP + "?consistency=", 400, "consistency must be one of"),
        Case("backup: consistency twice", "GET", BACKUP + "?consistency=stale&consistency=stale", 400, "given more than once"),
    ]
    headers = [
        ("put: If-Match and If-None-Match", (("If-Match", '"1"'), ("If-None-Match", "*")), "not both"),
        ("put: If-None-Match a tag", (("If-None-Match", '"5"'),), "if-none-match on a write must be *"),
        ("put: Idempotency-Key empty", (("Idempotency-Key", ""),), "idempotency-key must not be empty"),
        ("put: Idempotency-Key with a space", (("Idempotency-Key", "a b"),), "visible ascii"),
        ("put: Idempotency-Key with a quote", (("Idempotency-Key", 'a"b'),), "visible ascii"),
        ("put: Idempotency-Key of 200 characters", (("Idempotency-Key", "k" * 200),), "longer than 128"),
        ("put: client name non-ASCII", (("Idempotency-Key", "k1"), ("X-Beaver-Vault-Client", "cli\u00e9nt")), "visible ascii"),
    ]
    for label, hdrs, says in headers:
        c.append(Case(label, "PUT", KV + "hostile/hdr", 400, says, body=b"1", headers=hdrs))
    c.append(Case("delete: If-None-Match", "DELETE", KV + "hostile/hdr", 400, "not supported on this method",
                  headers=(("If-None-Match", "*"),)))
    c.append(Case("txn: Idempotency-Key with a comma", "POST", TXN, 400, "visible ascii", body=b"{}",
                  headers=(("Idempotency-Key", "a,b"),)))
    return c


def txn_cases() -> list[Case]:
    def t(label: str, body: object, says: str) -> Case:
        return Case(f"txn: {label}", "POST", TXN, 400, says, body=body if isinstance(body, bytes) else _j(body))

    return [
        t("compare is an object", {"compare": {"key": "k"}}, "compare must be a list"),
        t("success is a string", {"success": "put"}, "success must be a list"),
        t("failure is null", {"failure": None}, "failure must be a list"),
        t("op missing", {"success": [{"key": "k"}]}, "op must be put, delete or get"),
        t("op unknown", {"success": [{"op": "patch", "key": "k"}]}, "op must be put, delete or get"),
        t("op is a list", {"success": [["put", "k", 1]]}, "op must be put, delete or get"),
        t("key empty", {"success": [{"op": "put", "key": "", "value": 1}]}, "must not be empty"),
        t("key a number", {"success": [{"op": "delete", "key": 5}]}, "must be a string"),
        t("same key written twice", {"success": [{"op": "put", "key": "k", "value": 1}, {"op": "delete", "key": "k"}]},
          "written twice"),
        t("129 operations", {"success": [{"op": "get", "key": f"k{i}"} for i in range(129)]}, "at most 128"),
        t("target unknown", {"compare": [{"key": "k", "target": "lease", "op": "==", "value": 1}]}, "target must be one of"),
        t("op <=", {"compare": [{"key": "k", "target": "version", "op": "<=", "value": 1}]}, "op must be one of"),
        t("exists compared with 1", {"compare": [{"key": "k", "target": "exists", "op": "==", "value": 1}]},
          "exists compares true or false"),
        t("exists with <", {"compare": [{"key": "k", "target": "exists", "op": "<", "value": True}]},
          "exists compares true or false"),
        t("compare with an extra field", {"compare": [{"key": "k", "target": "version", "op": "==", "value": 1, "x": 1}]},
          "unknown fields ['x']"),
        t("duplicate names in an op", b'{"success": [{"op": "put", "op": "delete", "key": "k", "value": 1}]}',
          "duplicate name 'op'"),
        t("duplicate branch", b'{"success": [], "success": [{"op": "delete", "key": "canary/0"}]}', "duplicate name 'success'"),
        t("value nested too deep", b'{"success": [{"op": "put", "key": "k", "value": ' + b"[" * 80 + b"]" * 80 + b"}]}",
          "nesting is deeper"),
    ]


def membership_cases() -> list[Case]:
    def j(label: str, body: dict[str, object], status: int, says: str, node: str = "leader") -> Case:
        return Case(f"join: {label}", "POST", JOIN, status, says, body=_j(body), node=node)

    return [
        j("empty NodeID", {"NodeID": "", "RaftAddress": "127.0.0.1:1"}, 400, "must not be empty"),
        j("blank NodeID", {"NodeID": "   ", "RaftAddress": "127.0.0.1:1"}, 400, "must not be empty"),
        j("300-byte NodeID", {"NodeID": "n" * 300, "RaftAddress": "127.0.0.1:1"}, 400, "longer than 256 bytes"),
        j("65-character NodeID", {"NodeID": "n" * 65, "RaftAddress": "127.0.0.1:1"}, 400, "not a valid node id"),
        j("NodeID with a newline", {"NodeID": "node\nfour", "RaftAddress": "127.0.0.1:1"}, 400, "not a valid node id"),
        j("NodeID with a slash", {"NodeID": "../node1", "RaftAddress": "127.0.0.1:1"}, 400, "not a valid node id"),
        j("NodeID with a space", {"NodeID": "node 4", "RaftAddress": "127.0.0.1:1"}, 400, "not a valid node id"),
        j("NodeID with ESC", {"NodeID": "n\u001b[0m", "RaftAddress": "127.0.0.1:1"}, 400, "not a valid node id"),
        j("NodeID non-ASCII", {"NodeID": "n\u00f6de", "RaftAddress": "127.0.0.1:1"}, 400, "not a valid node id"),
        j("empty RaftAddress", {"NodeID": "node4", "RaftAddress": ""}, 400, "must not be empty"),
        j("RaftAddress without a port", {"NodeID": "node4", "RaftAddress": "127.0.0.1"}, 400, "host:port"),
        j("RaftAddress port 0", {"NodeID": "node4", "RaftAddress": "127.0.0.1:0"}, 400, "host:port"),
        j("RaftAddress port 99999", {"NodeID": "node4", "RaftAddress": "127.0.0.1:99999"}, 400, "host:port"),
        j("RaftAddress port with a sign", {"NodeID": "node4", "RaftAddress": "127.0.0.1:+80"}, 400, "host:port"),
        j("RaftAddress unicode digits", {"NodeID": "node4", "RaftAddress": "127.0.0.1:\u0663\u0663"}, 400, "host:port"),
        j("RaftAddress 20-digit port", {"NodeID": "node4", "RaftAddress": "h:" + "9" * 20}, 400, "host:port"),
        j("RaftAddress without a host", {"NodeID": "node4", "RaftAddress": ":7000"}, 400, "host:port"),
        j("RaftAddress with a space", {"NodeID": "node4", "RaftAddress": "evil host:7000"}, 400, "host:port"),
        j("RaftAddress with a newline", {"NodeID": "node4", "RaftAddress": "h\n:7000"}, 400, "host:port"),
        j("RaftAddress a URL", {"NodeID": "node4", "RaftAddress": "http://h:7000"}, 400, "host:port"),
        j("RaftAddress 300 bytes", {"NodeID": "node4", "RaftAddress": "h" * 295 + ":7000"}, 400, "longer than 256 bytes"),
        j("another member's address", {"NodeID": "node4", "RaftAddress": "{follower_raft}"}, 409, "already belongs to member"),
        j("the leader's address", {"NodeID": "node4", "RaftAddress": "{leader_raft}"}, 409, "already belongs to member"),
        j("re-point a member", {"NodeID": "{follower}", "RaftAddress": "127.0.0.1:1"}, 409, '"updateaddress": true'),
        j("re-point a member onto another member", {"NodeID": "{follower}", "RaftAddress": "{leader_raft}"}, 409,
          "already belongs to member"),
        j("re-point the leader", {"NodeID": "{leader}", "RaftAddress": "127.0.0.1:1"}, 409, '"updateaddress": true'),
        j("re-point via a follower", {"NodeID": "{leader}", "RaftAddress": "127.0.0.1:2"}, 409, '"updateaddress": true', "follower"),
        j("UpdateAddress for a stranger", {"NodeID": "stranger", "RaftAddress": "127.0.0.1:1", "UpdateAddress": True},
          404, "stranger is not a member"),
        j("UpdateAddress onto another member", {"NodeID": "{follower}", "RaftAddress": "{leader_raft}", "UpdateAddress": True},
          409, "already belongs to member"),
        # A join again with the same id and address changes nothing (200, nothing appended).
        Case("join: a member again, same address", "POST", JOIN, 200, body=_j({"NodeID": "{follower}", "RaftAddress": "{follower_raft}"})),
        Case("remove: unknown node", "POST", REMOVE, 404, "nobody is not a member", body=_j({"NodeID": "nobody"})),
        Case("remove: unknown node, forced", "POST", REMOVE, 404, "ghost is not a member", body=_j({"NodeID": "ghost", "Force": True})),
        Case("remove: empty NodeID", "POST", REMOVE, 400, "must not be empty", body=_j({"NodeID": ""})),
        Case("remove: dry run of an unknown node", "POST", REMOVE + "?dry_run=true", 404, "not a member",
             body=_j({"NodeID": "nobody"})),
        Case("transfer: to a non-member", "POST", TRANSFER, 400, "nobody is not a voting member", body=_j({"NodeID": "nobody"})),
        Case("transfer: to a non-member, forced", "POST", TRANSFER, 400, "not a voting member",
             body=_j({"NodeID": "ghost", "Force": True})),
        Case("transfer: empty NodeID", "POST", TRANSFER, 400, "must not be empty", body=_j({"NodeID": ""})),
        Case("transfer: 300-byte NodeID", "POST", TRANSFER, 400, "longer than 256 bytes", body=_j({"NodeID": "n" * 300})),
    ]


def watch_cases() -> list[Case]:
    def w(label: str, query: str, says: str, headers: tuple[tuple[str, str], ...] = ()) -> Case:
        return Case(f"watch: {label}", "GET", WATCH + query, 400, says, headers=headers)

    return [
        w("from_revision 0", "?from_revision=0", "between 1 and"),
        w("from_revision negative", "?from_revision=-1", "non-negative integer"),
        w("from_revision a word", "?from_revision=abc", "non-negative integer"),
        w("from_revision a fraction", "?from_revision=1.5", "non-negative integer"),
        w("from_revision 20 digits", "?from_revision=99999999999999999999", "non-negative integer"),
        w("from_revision NaN", "?from_revision=NaN", "non-negative integer"),
        w("from_revision twice", "?from_revision=1&from_revision=2", "given more than once"),
        w("prefix twice", "?prefix=a&prefix=b", "given more than once"),
        w("Last-Event-ID a word", "", "last-event-id must be a revision", (("Last-Event-ID", "abc"),)),
        w("Last-Event-ID negative", "", "last-event-id must be a revision", (("Last-Event-ID", "-5"),)),
        w("Last-Event-ID R:0", "", "last-event-id must be r or r:n", (("Last-Event-ID", "5:0"),)),
        w("Last-Event-ID R:word", "", "last-event-id must be r or r:n", (("Last-Event-ID", "5:x"),)),
        w("Last-Event-ID 20 digits", "", "last-event-id must be a revision", (("Last-Event-ID", "9" * 20),)),
        w("last_event_id parameter bad", "?last_event_id=1:2:3", "last-event-id must be r or r:n"),
        w("prefix over the key limit", "?prefix=" + "p" * 1100, "longer than"),
        Case("watch/ws: a plain GET", "GET", WATCH + "/ws", 400, "websocket endpoint"),
        Case("watch/ws: a bogus upgrade", "GET", WATCH + "/ws", 400, "websocket endpoint",
             headers=(("Upgrade", "websocket"), ("Connection", "Upgrade"))),
    ]


def all_cases() -> list[Case]:
    cases = (
        malformed_cases()
        + wrong_type_cases()
        + missing_extra_field_cases()
        + number_cases()
        + content_type_cases()
        + size_cases()
        + key_cases()
        + framing_cases()
        + method_cases()
        + query_cases()
        + txn_cases()
        + membership_cases()
        + watch_cases()
    )
    names = [c.name for c in cases]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise AssertionError(f"duplicate case names: {sorted(dupes)}")
    return cases


CASES = all_cases()
