"""Command encoding: round trips, compactness, and every kind of bad input (strict decoding)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from beaver_vault.kv import commands
from beaver_vault.kv.commands import (
    MAX_DEPTH,
    Append,
    Cas,
    CommandError,
    Delete,
    DeletePrefix,
    Expire,
    Put,
    Request,
    Txn,
    canonical_json,
    decode,
    encode,
    parse_ttl_ms,
    validate_txn,
)
from beaver_vault.kv.state import json_equal
from beaver_vault.kv.txn import MAX_TXN_OPS, Compare, TxnDelete, TxnGet, TxnPut

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
keys = st.text(min_size=1, max_size=20)  # hypothesis text() never contains surrogates
revs = st.none() | st.integers(0, 2**63 - 1)
requests = st.none() | st.builds(
    Request, st.text(min_size=1, max_size=8), st.text(min_size=1, max_size=8), st.integers(0, 2**63 - 1)
)
compares = st.builds(Compare, keys, st.just("value"), st.sampled_from(["==", "!=", "<", ">"]), json_values) | st.builds(
    Compare,
    keys,
    st.sampled_from(["version", "mod_revision", "create_revision"]),
    st.sampled_from(["<", "=="]),
    st.integers(0, 99),
)
txn_ops = st.one_of(st.builds(TxnPut, keys, json_values, revs), st.builds(TxnDelete, keys), st.builds(TxnGet, keys))


def _distinct_writes(ops: list[Any]) -> tuple[Any, ...]:
    seen: set[str] = set()
    out = []
    for op in ops:
        if not isinstance(op, TxnGet) and op.key in seen:
            continue
        seen.add(op.key) if not isinstance(op, TxnGet) else None
        out.append(op)
    return tuple(out)


branches = st.lists(txn_ops, max_size=4).map(_distinct_writes)
command_st = st.one_of(
    st.builds(Put, keys, json_values),
    st.builds(Put, keys, json_values, revs, st.booleans(), revs, requests),
    st.builds(Delete, keys),
    st.builds(Delete, keys, revs, requests),
    st.builds(Cas, keys, st.none() | json_values.filter(lambda v: v is not None), json_values, requests),
    st.builds(Append, keys, json_values, requests),
    st.builds(DeletePrefix, st.text(max_size=10), requests),
    st.builds(Expire, st.lists(keys, min_size=1, max_size=5).map(tuple), st.integers(0, 2**63 - 1)),
    st.builds(Txn, st.lists(compares, max_size=3).map(tuple), branches, branches, requests),
)
OP_NAMES = {
    Put: "put",
    Delete: "delete",
    Cas: "cas",
    Append: "append",
    DeletePrefix: "delete_prefix",
    Expire: "expire",
    Txn: "txn",
}


@given(command_st)
def test_round_trip(cmd: Any) -> None:
    data = encode(cmd)
    assert decode(data) == cmd
    assert encode(decode(data)) == data  # one encoding per command
    obj = json.loads(data)
    assert obj["v"] == 1 and obj["op"] == OP_NAMES[type(cmd)]
    assert data == canonical_json(obj).encode()  # compact, not ASCII-escaped


def test_wire_format_transcript() -> None:
    assert (
        commands.put("k", {"b": 1, "a": [True, None]})
        == b'{"v":1,"op":"put","key":"k","value":{"b":1,"a":[true,null]}}'
    )
    assert commands.delete("d/é") == '{"v":1,"op":"delete","key":"d/é"}'.encode()
    assert commands.cas("k", None, 1) == b'{"v":1,"op":"cas","key":"k","new":1}'
    assert commands.cas("k", "x", 2) == b'{"v":1,"op":"cas","key":"k","expected":"x","new":2}'
    assert commands.append("l", 1.5) == b'{"v":1,"op":"append","key":"l","value":1.5}'


def test_canonical_json() -> None:
    assert canonical_json({"z": 1, "a": "é", "n": [1.0, None]}) == '{"z":1,"a":"é","n":[1.0,null]}'
    for bad in (float("nan"), float("inf"), [float("-inf")]):
        with pytest.raises(ValueError):
            canonical_json(bad)


@pytest.mark.parametrize(
    "make",
    [
        lambda: commands.put("", 1),
        lambda: commands.put(7, 1),  # type: ignore[arg-type]
        lambda: commands.put("a\ud800", 1),
        lambda: commands.put("k", float("nan")),
        lambda: commands.put("k", {"x": float("inf")}),
        lambda: commands.put("k", "lone \udfff"),
        lambda: commands.put("k", {1, 2}),
        lambda: commands.put("k", b"bytes"),
        lambda: commands.put("k" * (64 * 1024 + 1), 1),
        lambda: commands.cas("k", float("nan"), 1),
        lambda: commands.append("k", object()),
    ],
)
def test_encoders_reject_bad_input(make: Any) -> None:
    with pytest.raises(ValueError):  # CommandError is a ValueError
        make()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"not json",
        b"[]",
        b'"put"',
        b'{"op":"put","key":"k","value":1}',  # no version
        b'{"v":2,"op":"put","key":"k","value":1}',
        b'{"v":true,"op":"put","key":"k","value":1}',
        b'{"v":1,"op":"frobnicate","key":"k"}',
        b'{"v":1,"op":"put","key":"k"}',  # missing value
        b'{"v":1,"op":"put","key":"k","value":1,"ttl":5}',  # unknown field: never silently ignored
        b'{"v":1,"op":"delete","key":""}',
        b'{"v":1,"op":"delete","key":3}',
        b'{"v":1,"op":"delete","key":"\\ud800"}',
        b'{"v":1,"op":"put","key":"k","value":NaN}',
        b'{"v":1,"op":"put","key":"k","value":-Infinity}',
        b'{"v":1,"op":"put","key":"k","value":1e999}',
        b'{"v":1,"op":"put","key":"k","value":"\\udfff"}',
        b'{"v":1,"op":"cas","key":"k","expected":null,"new":1}',  # absent is spelled by omission
        b'{"v":1,"op":"put","key":"k","value":' + b"1" * 5000 + b"}",  # int too long to parse
        b'{"v":1,"op":"put","key":"k","value":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b"[" * 1_000_000,
    ],
)
def test_decode_rejects(data: bytes) -> None:
    with pytest.raises(CommandError):
        decode(data)


def _nested(depth: int) -> bytes:
    return b'{"v":1,"op":"put","key":"k","value":' + b"[" * depth + b"]" * depth + b"}"


def test_depth_limit_is_exact_and_independent_of_the_stack() -> None:
    assert decode(_nested(MAX_DEPTH)) == Put("k", json.loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH))
    with pytest.raises(CommandError):
        decode(_nested(MAX_DEPTH + 1))

    def deep(n: int) -> Any:  # decode from a deep call stack: same answer
        return decode(_nested(MAX_DEPTH)) if n == 0 else deep(n - 1)

    deep(400)
    # brackets inside strings do not count
    s = "[" * (MAX_DEPTH * 2)
    assert decode(commands.put("k", [s])) == Put("k", [s])


def test_json_equal() -> None:
    assert json_equal({"a": 1, "b": [1.0]}, {"b": [1], "a": 1.0})
    assert not json_equal(True, 1) and not json_equal(0, False) and not json_equal(None, False)
    assert not json_equal([1, 2], [2, 1]) and not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert not json_equal("1", 1) and not json_equal([], {})


# --------------------------------------------------------------------------- new commands

REQ = {"client": "c", "id": "k1", "now_ms": 5}


def test_new_wire_format_transcript() -> None:
    assert commands.put("k", 1, if_mod_revision=3, if_absent=True, expires_at_ms=9, request=REQ) == (
        b'{"v":1,"op":"put","key":"k","value":1,"if_mod_revision":3,"if_absent":true,"expires_at_ms":9,'
        b'"request":{"client":"c","id":"k1","now_ms":5}}'
    )
    assert commands.put("k", 1) == b'{"v":1,"op":"put","key":"k","value":1}'  # old form unchanged
    assert commands.delete("k", if_mod_revision=0) == b'{"v":1,"op":"delete","key":"k","if_mod_revision":0}'
    assert commands.delete_prefix("") == b'{"v":1,"op":"delete_prefix","prefix":""}'
    assert commands.expire(["a", "b"], 7) == b'{"v":1,"op":"expire","keys":["a","b"],"now_ms":7}'
    assert commands.txn(
        [{"key": "cas", "target": "value", "op": "==", "value": "b"}],
        [{"op": "put", "key": "t1", "value": 1, "ttl": "2s"}],
        [{"op": "get", "key": "t1"}],
        now_ms=1000,
    ) == (
        b'{"v":1,"op":"txn","compare":[{"key":"cas","target":"value","op":"==","value":"b"}],'
        b'"success":[{"op":"put","key":"t1","value":1,"expires_at_ms":3000}],"failure":[{"op":"get","key":"t1"}]}'
    )


def test_validate_txn_normalises() -> None:
    body = {
        "compare": [{"key": "k", "target": "exists", "op": "!=", "value": False}],
        "success": [{"op": "put", "key": "k", "value": {"a": [1]}, "ttl": 1.5}, {"op": "get", "key": "k"}],
    }
    assert validate_txn(body) == {
        "compare": [{"key": "k", "target": "exists", "op": "!=", "value": False}],
        "success": [{"op": "put", "key": "k", "value": {"a": [1]}, "ttl_ms": 1500}, {"op": "get", "key": "k"}],
        "failure": [],
    }
    norm = validate_txn(body)
    data = commands.txn(**norm, now_ms=10)
    assert json.loads(data)["success"][0]["expires_at_ms"] == 1510
    assert validate_txn(norm) == norm  # idempotent


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be an object"),
        ({"compare": [], "sucess": []}, "unknown fields"),
        ({"compare": {}}, "must be a list"),
        ({"compare": [{"key": "k", "target": "size", "op": "==", "value": 1}]}, "target must be one of"),
        ({"compare": [{"key": "k", "target": "value", "op": "<=", "value": 1}]}, "op must be one of"),
        ({"compare": [{"key": "k", "target": "exists", "op": "<", "value": True}]}, "exists compares"),
        ({"compare": [{"key": "k", "target": "version", "op": "==", "value": True}]}, "must be an integer"),
        ({"compare": [{"key": "k", "target": "version", "op": "==", "value": -1}]}, "between 0"),
        ({"compare": [{"key": "k", "target": "value", "op": "=="}]}, "missing fields"),
        ({"success": [{"op": "put", "key": "k"}]}, "missing fields"),
        ({"success": [{"op": "frob", "key": "k"}]}, "op must be put, delete or get"),
        ({"success": [{"op": "get", "key": ""}]}, "must not be empty"),
        ({"success": [{"op": "put", "key": "k", "value": 1}, {"op": "delete", "key": "k"}]}, "written twice"),
        ({"success": [{"op": "put", "key": "k", "value": 1, "ttl": "5x"}]}, "not a duration"),
        ({"success": [{"op": "put", "key": "k", "value": 1, "ttl": 0}]}, "positive"),
        ({"success": [{"op": "put", "key": "k", "value": 1, "ttl": 1, "expires_at_ms": 5}]}, "at most one"),
        ({"success": [{"op": "put", "key": "k", "value": float("nan")}]}, "not a JSON document"),
        ({"success": [{"op": "get", "key": f"k{i}"} for i in range(MAX_TXN_OPS + 1)]}, "at most 128"),
        ({"success": [{"op": "put", "key": "k", "value": "x" * (1024 * 1024)}]}, "larger than"),
        ({"success": [{"op": "put", "key": "k", "value": json.loads("[" * 300 + "]" * 300)}]}, "nested"),
    ],
)
def test_validate_txn_rejects(body: Any, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        validate_txn(body)


def test_txn_ttl_needs_now_and_depth_limit_matches_decode() -> None:
    with pytest.raises(CommandError, match="no now_ms"):
        commands.txn([], [{"op": "put", "key": "k", "value": 1, "ttl": 5}], [])
    deep = json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    data = commands.txn(
        [{"key": "k", "target": "value", "op": "==", "value": deep}], [{"op": "put", "key": "k", "value": deep}], []
    )
    assert isinstance(decode(data), Txn)
    with pytest.raises(CommandError):
        commands.put("k", [deep])  # encoders refuse what decode would refuse


def test_parse_ttl_ms() -> None:
    assert [parse_ttl_ms(t) for t in (30, 0.5, "30s", "30", "250ms", "1.5m", "2h", "1d", 0.0001)] == [
        30_000,
        500,
        30_000,
        30_000,
        250,
        90_000,
        7_200_000,
        86_400_000,
        1,
    ]
    for bad in (True, -1, 0, "", "1y", "-5s", float("inf"), None, "999999d", [1]):
        with pytest.raises(CommandError):
            parse_ttl_ms(bad)


@pytest.mark.parametrize(
    "data",
    [
        b'{"v":1,"op":"put","key":"k","value":1,"if_absent":false}',  # false is spelled by omission
        b'{"v":1,"op":"put","key":"k","value":1,"if_mod_revision":null}',
        b'{"v":1,"op":"put","key":"k","value":1,"expires_at_ms":1.5}',
        b'{"v":1,"op":"put","key":"k","value":1,"expires_at_ms":9223372036854775808}',  # beyond SQLite INTEGER
        b'{"v":1,"op":"put","key":"k","value":1,"request":null}',
        b'{"v":1,"op":"put","key":"k","value":1,"request":{"client":"","id":"i","now_ms":1}}',
        b'{"v":1,"op":"put","key":"k","value":1,"request":{"client":"c","id":"i","now_ms":1,"x":0}}',
        b'{"v":1,"op":"delete","key":"k","if_absent":true}',
        b'{"v":1,"op":"delete_prefix"}',
        b'{"v":1,"op":"delete_prefix","prefix":1}',
        b'{"v":1,"op":"expire","keys":"k","now_ms":1}',
        b'{"v":1,"op":"expire","keys":["k"]}',
        b'{"v":1,"op":"expire","keys":["k"],"now_ms":1,"request":{"client":"c","id":"i","now_ms":1}}',
        b'{"v":1,"op":"txn","compare":[],"success":[]}',
        b'{"v":1,"op":"txn","compare":[],"success":[{"op":"put","key":"k","value":1,"ttl_ms":5}],"failure":[]}',
        b'{"v":1,"op":"txn","compare":[],"success":[],"failure":[],"extra":1}',
        b'{"v":1,"op":"txn","compare":[],"success":[{"op":"get","key":"k","value":1}],"failure":[]}',
        b'{"v":1,"op":"txn","compare":[],"success":[],"failure":' + b"[" * 300 + b"]" * 300 + b"}",
        b'{"v":1,"op":"put","key":"k","value":' + b"[" * (MAX_DEPTH + 2) + b"]" * (MAX_DEPTH + 2) + b"}",
    ],
)
def test_decode_rejects_new_forms(data: bytes) -> None:
    with pytest.raises(CommandError):
        decode(data)


def test_json_helpers_write_exactly_what_json_dumps_writes() -> None:
    """``canonical_json``, ``json_str`` and the API's ``json_text`` use encoders made once;
    their text must stay byte for byte ``json.dumps``'s with the same options (it is stored
    in the log and the state, and compared across nodes)."""
    import json
    import random

    from beaver_vault.api.errors import json_text
    from beaver_vault.kv.values import canonical_json, json_str

    rng = random.Random(3)
    chars = ["a", "é", '"', "\\", "\n", "\x00", "\x1f", "\x7f", "\u2028", "✓", "\ud800", "/", " ", "😀"]
    for _ in range(3000):
        t = "".join(rng.choice(chars) for _ in range(rng.randrange(0, 10)))
        assert json_str(t) == json.dumps(t, ensure_ascii=False)
        v = {"k": t, "n": [1, 2.5, -0.0, None, True, 10**20, t], t: {"x": -3}}
        assert canonical_json(v) == json.dumps(v, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        assert json_text(v) == json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    for bad in (float("nan"), float("inf"), [float("-inf")]):
        with pytest.raises(ValueError):
            canonical_json(bad)


def test_compact_encoders_raise_what_json_dumps_raises_and_keep_no_state() -> None:
    """The encoders made once (``kv.values.compact_encoder``: the C encoder built once, no
    circular-reference scratch dict) raise exactly what ``json.dumps`` raises, a cycle
    included, and encode correctly after any of those errors."""
    import json

    from beaver_vault.api.errors import json_text
    from beaver_vault.client._calls import encode_json
    from beaver_vault.jsontext import compact_encoder
    from beaver_vault.kv.values import canonical_json

    def dumps(v: object) -> str:
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)

    cycle: list[object] = [1]
    cycle.append(cycle)
    looped: dict[str, object] = {"a": {}}
    looped["a"] = {"b": [looped]}
    deep: object = []
    for _ in range(100_000):
        deep = [deep]
    bad_values = [cycle, looped, {"x": object()}, {1j: 2}, {"f": float("nan")}, deep]
    for enc in (compact_encoder(allow_nan=True), json_text, lambda v: encode_json(v).decode()):
        for bad in bad_values:
            try:
                expected: object = dumps(bad)
            except Exception as e:  # noqa: BLE001 - whatever json.dumps raises
                expected = (type(e), str(e))
            try:
                got: object = enc(bad)
            except Exception as e:  # noqa: BLE001
                got = (type(e), str(e))
            assert got == expected
            assert enc({"after": [bad is deep, 1.5]}) == dumps({"after": [bad is deep, 1.5]})
    with pytest.raises(ValueError, match="Circular reference detected"):
        canonical_json(cycle)
    assert canonical_json({"k": ["v", 2]}) == '{"k":["v",2]}'


def test_one_key_writes_are_told_from_their_first_bytes() -> None:
    """``is_one_key_write`` (which applies may run on the event loop): puts and deletes of one
    key, whatever their options, and nothing that may touch many rows or parse a large value."""
    from beaver_vault.kv.commands import is_one_key_write

    req = {"client": "c", "id": "1", "now_ms": 5}
    light = [
        commands.put("k", {"a": [1]}),
        commands.put("op", 1, if_mod_revision=3, expires_at_ms=9, request=req),
        commands.put("k", None, if_absent=True),
        commands.delete("k"),
        commands.delete("delete", if_mod_revision=0, request=req),
    ]
    heavy = [
        commands.delete_prefix("k"),
        commands.delete_prefix(""),
        commands.expire(("a", "b"), 5),
        commands.append("k", 1),
        commands.cas("k", None, 1),
        commands.txn([], [{"op": "put", "key": "k", "value": 1}], [], now_ms=1),
        b"",
        b"not json",
        b'{"op":"put","v":1,"key":"k","value":1}',  # decodes as a put, but not as ``encode`` writes one
    ]
    assert all(is_one_key_write(d) for d in light)
    assert not any(is_one_key_write(d) for d in heavy)
    for d in light:
        assert type(decode(d)).__name__ in ("Put", "Delete")
