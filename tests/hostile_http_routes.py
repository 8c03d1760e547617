"""Hostile HTTP cases aimed at one route's rules (see hostile_http.py): transaction edge cases,
membership abuse (join, remove, transfer), watch abuse.
"""

from __future__ import annotations

from hostile_http_case import JOIN, REMOVE, TRANSFER, TXN, WATCH, Case, json_body


def txn_cases() -> list[Case]:
    def t(label: str, body: object, says: str) -> Case:
        return Case(f"txn: {label}", "POST", TXN, 400, says, body=body if isinstance(body, bytes) else json_body(body))

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
        return Case(f"join: {label}", "POST", JOIN, status, says, body=json_body(body), node=node)

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
        Case("join: a member again, same address", "POST", JOIN, 200, body=json_body({"NodeID": "{follower}", "RaftAddress": "{follower_raft}"})),
        Case("remove: unknown node", "POST", REMOVE, 404, "nobody is not a member", body=json_body({"NodeID": "nobody"})),
        Case("remove: unknown node, forced", "POST", REMOVE, 404, "ghost is not a member", body=json_body({"NodeID": "ghost", "Force": True})),
        Case("remove: empty NodeID", "POST", REMOVE, 400, "must not be empty", body=json_body({"NodeID": ""})),
        Case("remove: dry run of an unknown node", "POST", REMOVE + "?dry_run=true", 404, "not a member",
             body=json_body({"NodeID": "nobody"})),
        Case("transfer: to a non-member", "POST", TRANSFER, 400, "nobody is not a voting member", body=json_body({"NodeID": "nobody"})),
        Case("transfer: to a non-member, forced", "POST", TRANSFER, 400, "not a voting member",
             body=json_body({"NodeID": "ghost", "Force": True})),
        Case("transfer: empty NodeID", "POST", TRANSFER, 400, "must not be empty", body=json_body({"NodeID": ""})),
        Case("transfer: 300-byte NodeID", "POST", TRANSFER, 400, "longer than 256 bytes", body=json_body({"NodeID": "n" * 300})),
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
