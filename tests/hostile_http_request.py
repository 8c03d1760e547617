"""Hostile HTTP cases about the request line and framing (see hostile_http.py): bad keys
(percent-encodings, control characters, sizes), framing conflicts, bad methods, bad query
parameters.
"""

from __future__ import annotations

from hostile_http_case import BACKUP, JOIN, KV, REMOVE, TRANSFER, TXN, WATCH, Case, json_body


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
             body=json_body({"success": [{"op": "put", "key": "a\u0001b", "value": 1}]})),
        Case("txn: key with ESC", "POST", TXN, 400, "control character u+001b",
             body=json_body({"compare": [{"key": "\u001b[2J", "target": "exists", "op": "==", "value": False}]})),
        Case("txn: key with a lone surrogate", "POST", TXN, 400, "lone surrogate",
             body=b'{"success": [{"op": "get", "key": "a\\udc80"}]}'),
        Case("txn: key over the key limit", "POST", TXN, 400, "1024 bytes",
             body=json_body({"success": [{"op": "delete", "key": "k" * 1100}]})),
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
             body=json_body({"NodeID": "node4", "RaftAddress": "127.0.0.1:1"})),
        Case("remove: dry_run twice", "POST", REMOVE + "?dry_run=true&dry_run=false", 400, "given more than once",
             body=json_body({"NodeID": "{follower}"})),
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
