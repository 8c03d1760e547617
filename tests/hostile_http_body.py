"""Hostile HTTP cases about request bodies (see hostile_http.py): malformed JSON on every route
that reads a body, wrong types, missing and extra fields, huge, negative and NaN numbers,
wrong content types, oversized bodies and headers.
"""

from __future__ import annotations

from hostile_http_case import JOIN, KV, REMOVE, TRANSFER, TXN, Case, MiB, json_body

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
        c.append(Case(f"join: {label}", "POST", JOIN, 400, says, body=json_body(body)))
    c.append(Case("remove: NodeID a number", "POST", REMOVE, 400, "'nodeid' must be a string", body=json_body({"NodeID": 2})))
    c.append(Case("remove: Force a string", "POST", REMOVE, 400, "'force' must be true or false", body=json_body({"NodeID": "{follower}", "Force": "no"})))
    c.append(Case("transfer: NodeID a number", "POST", TRANSFER, 400, "'nodeid' must be a string", body=json_body({"NodeID": 3})))
    c.append(Case("transfer: Force a list", "POST", TRANSFER, 400, "'force' must be true or false", body=json_body({"NodeID": "{leader}", "Force": []})))
    return c


def missing_extra_field_cases() -> list[Case]:
    return [
        Case("join: empty object", "POST", JOIN, 400, "missing field 'nodeid'", body=b"{}"),
        Case("join: no NodeID", "POST", JOIN, 400, "missing field 'nodeid'", body=json_body({"RaftAddress": "127.0.0.1:1"})),
        Case("join: no RaftAddress", "POST", JOIN, 400, "missing field 'raftaddress'", body=json_body({"NodeID": "node4"})),
        Case("join: lowercase names", "POST", JOIN, 400, "unknown field", body=json_body({"node_id": "node4", "raft_address": "127.0.0.1:1"})),
        Case("join: extra field", "POST", JOIN, 400, "unknown field(s) 'admin'", body=json_body({"NodeID": "node4", "RaftAddress": "127.0.0.1:1", "Admin": True})),
        Case("join: misspelt UpdateAddress", "POST", JOIN, 400, "unknown field(s) 'updateaddress'", body=json_body({"NodeID": "{follower}", "RaftAddress": "127.0.0.1:1", "updateAddress": True})),
        Case("remove: empty object", "POST", REMOVE, 400, "missing field 'nodeid'", body=b"{}"),
        Case("remove: extra field", "POST", REMOVE, 400, "unknown field(s) 'force!'", body=json_body({"NodeID": "nobody", "Force!": True})),
        Case("transfer: extra field", "POST", TRANSFER, 400, "unknown field(s) 'target'", body=json_body({"Target": "{follower}"})),
        Case("txn: extra field", "POST", TXN, 400, "unknown fields", body=json_body({"success": [], "else": []})),
        Case("txn: put without value", "POST", TXN, 400, "missing fields ['value']", body=json_body({"success": [{"op": "put", "key": "k"}]})),
        Case("txn: put without key", "POST", TXN, 400, "missing fields ['key']", body=json_body({"success": [{"op": "put", "value": 1}]})),
        Case("txn: get with a value", "POST", TXN, 400, "unknown fields ['value']", body=json_body({"success": [{"op": "get", "key": "k", "value": 1}]})),
        Case("txn: compare without op", "POST", TXN, 400, "missing fields ['op']", body=json_body({"compare": [{"key": "k", "target": "version", "value": 1}]})),
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
        body = json_body({"compare": [{"key": "k", "target": "version", "op": "==", "value": value}]})
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
        body = json_body({"success": [{"op": "put", "key": "hostile/ttl", "value": 1, **op}]})
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
