"""The state machine against a plain-dict model, over random sequences of operations.

The model keeps (document, create_revision, mod_revision, version) per key and decides cas
by comparing *normalised* documents (numbers as exact fractions, objects as sorted pairs), an
implementation independent of ``json_equal``. Garbage commands must leave everything unchanged.
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from beaver_vault.kv import commands
from beaver_vault.kv.commands import CommandError, canonical_json, decode
from beaver_vault.kv.memory import MemoryKV
from beaver_vault.kv.state import KeyRecord, apply

KEYS = st.sampled_from(["a", "b", "dir/1", "dir/2", "é"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from([1.0, -0.0, 2.5, 1e300]) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xyz"), inner, max_size=3),
    max_leaves=6,
)


def norm(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return (type(v).__name__, v)
    if isinstance(v, int | float):
        return ("num", Fraction(v))
    if isinstance(v, list):
        return ("list", tuple(norm(x) for x in v))
    return ("obj", tuple(sorted((k, norm(x)) for k, x in v.items())))


def lookalike(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, list):
        return [lookalike(x) for x in v]
    if isinstance(v, dict):
        return {k: lookalike(x) for k, x in v.items()}
    return v


GARBAGE = [
    b"",
    b"\x80",
    b"{}",
    b'{"v":1,"op":"put","key":"a","value":NaN}',
    b'{"v":1,"op":"put","key":"a","value":1,"extra":0}',
    b'{"v":9,"op":"delete","key":"a"}',
    b'{"v":1,"op":"delete","key":""}',
    b'{"v":1,"op":"put","key":"a","value":"\\ud83d"}',
    b"[" * 10_000,
]


class KVModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryKV()
        self.model: dict[str, tuple[Any, int, int, int]] = {}
        self.index = 0

    def _apply(self, data: bytes) -> dict[str, Any]:
        self.index += 1
        result = apply(self.store, self.index, data)
        json.dumps(result, allow_nan=False)  # results are JSON-able
        return result

    def _write(self, key: str, doc: Any) -> None:
        old = self.model.get(key)
        if old is None:
            self.model[key] = (doc, self.index, self.index, 1)
        else:
            self.model[key] = (doc, old[1], self.index, old[3] + 1)

    def _current(self, key: str) -> Any:
        return None if key not in self.model else self.model[key][0]

    @rule(key=KEYS, value=json_values)
    def put(self, key: str, value: Any) -> None:
        created = key not in self.model
        r = self._apply(commands.put(key, value))
        self._write(key, value)
        assert r == {"op": "put", "key": key, "revision": self.index, "created": created}

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        existed = self.model.pop(key, None) is not None
        r = self._apply(commands.delete(key))
        assert r == {"op": "delete", "key": key, "deleted": existed, "revision": self.index}

    @rule(
        key=KEYS,
        new=json_values,
        how=st.sampled_from(["absent", "current", "reordered", "lookalike", "random"]),
        other=json_values,
    )
    def cas(self, key: str, new: Any, how: str, other: Any) -> None:
        cur = self.model.get(key)
        if how == "absent":
            expected = None
        elif how == "current" and cur is not None:
            expected = cur[0]
        elif how == "reordered" and cur is not None and isinstance(cur[0], dict):
            expected = dict(reversed(list(cur[0].items())))  # same object, other key order
        elif how == "lookalike" and cur is not None and cur[0] is not None:
            expected = lookalike(cur[0])  # equal in Python (True == 1, 1 == 1.0), maybe not in JSON
        else:
            expected = other
        if expected is None:
            ok = cur is None
        else:
            ok = cur is not None and norm(cur[0]) == norm(expected)
        r = self._apply(commands.cas(key, expected, new))
        if ok:
            self._write(key, new)
            assert r == {"op": "cas", "key": key, "succeeded": True, "revision": self.index, "current": new}
        else:
            current, rev = (None, 0) if cur is None else (cur[0], cur[2])
            assert r == {"op": "cas", "key": key, "succeeded": False, "revision": rev, "current": current}

    @rule(key=KEYS, value=json_values)
    def append(self, key: str, value: Any) -> None:
        cur = self._current(key)
        r = self._apply(commands.append(key, value))
        if key in self.model and not isinstance(cur, list):
            assert r["code"] == "not_a_list" and "error" in r and r["key"] == key
            assert r["revision"] == self.model[key][2]
        else:
            new = [*(cur or []), value]
            self._write(key, new)
            assert r == {"op": "append", "key": key, "revision": self.index, "value": new}

    @rule(data=st.binary(max_size=40) | st.sampled_from(GARBAGE))
    def garbage(self, data: bytes) -> None:
        try:
            decode(data)
            return  # by chance a valid command: not garbage
        except CommandError:
            pass
        r = self._apply(data)
        assert set(r) == {"error", "code"} and r["code"] == "bad_command"

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def mangled(self, data: st.DataObject) -> None:
        """A valid command with one byte changed: either still valid (then skip) or an error."""
        key = data.draw(st.sampled_from(sorted(self.model)))
        raw = bytearray(commands.put(key, self._current(key)))
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
        self.garbage(bytes(raw))

    @invariant()
    def store_matches_model(self) -> None:
        expected = [(k, KeyRecord(canonical_json(doc), c, m, v)) for k, (doc, c, m, v) in sorted(self.model.items())]
        assert self.store.items() == expected
        assert self.store.scan("", None, 100) == expected
        assert self.store.scan("dir/", None, 100) == [kv for kv in expected if kv[0].startswith("dir/")]
        for _, rec in expected:
            assert 0 < rec.create_revision <= rec.mod_revision <= self.index
            assert rec.version <= rec.mod_revision - rec.create_revision + 1


TestKVModel = KVModel.TestCase
TestKVModel.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
