"""Command encoding: round trips, compactness, and every kind of bad input (strict decoding)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from beaver_vault.kv import commands
from beaver_vault.kv.commands import MAX_DEPTH, Append, Cas, CommandError, Delete, Put, canonical_json, decode, encode
from beaver_vault.kv.state import json_equal

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
keys = st.text(min_size=1, max_size=20)  # hypothesis text() never contains surrogates
command_st = st.one_of(
    st.builds(Put, keys, json_values),
    st.builds(Delete, keys),
    st.builds(Cas, keys, st.none() | json_values.filter(lambda v: v is not None), json_values),
    st.builds(Append, keys, json_values),
)


@given(command_st)
def test_round_trip(cmd: Any) -> None:
    data = encode(cmd)
    assert decode(data) == cmd
    assert encode(decode(data)) == data  # one encoding per command
    obj = json.loads(data)
    assert obj["v"] == 1 and obj["op"] == type(cmd).__name__.lower()
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
