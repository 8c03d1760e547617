"""The state machine against a plain-dict model, over random sequences of operations.

The model keeps (document, create_revision, mod_revision, version, expires_at_ms) per key and
a table of remembered requests, and computes every expected result (watch events included)
from the specification, not from the implementation: cas and txn value compares use
*normalised* documents (numbers as exact fractions, objects as sorted pairs), independent of
``json_equal``. Results are compared strictly (``true`` is not ``1``, ``1.0`` is not ``1``).
Writes randomly carry idempotency requests from a small pool of ids, so repeats, purges by
age and per-client trimming all happen (with a small ``RequestPolicy``). Garbage commands must
leave everything unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from beaver_vault.kv import commands
from beaver_vault.kv.commands import CommandError, canonical_json, decode
from beaver_vault.kv.memory import MemoryKV
from beaver_vault.kv.records import RequestRecord
from beaver_vault.kv.state import KeyRecord, RequestPolicy, apply

KEYS = st.sampled_from(["a", "b", "dir/1", "dir/2", "é"])
PREFIXES = st.sampled_from(["", "dir/", "d", "é", "zz", "a"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from([1.0, -0.0, 2.5, 1e300]) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xyz"), inner, max_size=3),
    max_leaves=6,
)
POLICY = RequestPolicy(expiry_ms=1000, per_client=3, result_bytes_max=300)
REQUESTS = st.none() | st.tuples(st.sampled_from(["c1", "c2"]), st.sampled_from(["r0", "r1", "r2", "r3", "r4"]))
TTLS = st.sampled_from([None, None, 1, 300, 2000])


def norm(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return (type(v).__name__, v)
    if isinstance(v, int | float):
        return ("num", Fraction(v))
    if isinstance(v, list):
        return ("list", tuple(norm(x) for x in v))
    return ("obj", tuple(sorted((k, norm(x)) for k, x in v.items())))


def strict(v: Any) -> Any:
    """A form where == is exact JSON identity up to object key order (1 != 1.0 != true)."""
    if isinstance(v, float):
        return ("float", repr(v))
    if isinstance(v, list):
        return ("list", tuple(strict(x) for x in v))
    if isinstance(v, dict):
        return ("obj", tuple(sorted((k, strict(x)) for k, x in v.items())))
    return (type(v).__name__, v)


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
    b'{"v":1,"op":"put","key":"a","value":1,"expires_at_ms":-1}',
    b'{"v":1,"op":"put","key":"a","value":1,"if_mod_revision":true}',
    b'{"v":1,"op":"put","key":"a","value":1,"request":{"client":"c","id":"i"}}',
    b'{"v":1,"op":"expire","keys":[],"now_ms":1}',
    b'{"v":1,"op":"txn","compare":[],"success":[{"op":"put","key":"a","value":1,"ttl":5}],"failure":[]}',
    b'{"v":1,"op":"txn","compare":[{"key":"a","target":"exists","op":"<","value":true}],"success":[],"failure":[]}',
    b"[" * 10_000,
]


@dataclass(frozen=True)
class Row:
    doc: Any
    create: int
    mod: int
    version: int
    expires: int | None


def put_ev(key: str, doc: Any, rev: int) -> dict[str, Any]:
    return {"type": "put", "key": key, "value": doc, "revision": rev}


def del_ev(key: str, rev: int) -> dict[str, Any]:
    return {"type": "delete", "key": key, "value": None, "revision": rev}


def with_events(result: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    return {**result, "events": events} if events else result


class KVModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryKV()
        self.model: dict[str, Row] = {}
        self.requests: dict[tuple[str, str], tuple[int, int, str]] = {}  # -> (index, time, result json)
        self.index = 0
        self.now = 10_000

    # ------------------------------------------------------------------ plumbing

    def _apply(self, data: bytes) -> dict[str, Any]:
        self.index += 1
        result = apply(self.store, self.index, data, policy=POLICY)
        json.dumps(result, allow_nan=False)  # results are JSON-able
        return result

    def _request(self, req: tuple[str, str] | None) -> dict[str, Any] | None:
        return None if req is None else {"client": req[0], "id": req[1], "now_ms": self.now}

    def _purge(self, now: int) -> None:
        self.requests = {k: v for k, v in self.requests.items() if v[1] >= now - POLICY.expiry_ms}

    def _run(self, data: bytes, req: tuple[str, str] | None, model: Any) -> dict[str, Any]:
        """Apply ``data``; ``model()`` mutates the model and returns the expected result, unless
        the request is a remembered duplicate."""
        index = self.index + 1
        if req is not None:
            self._purge(self.now)
            if req in self.requests:
                expected = {**json.loads(self.requests[req][2]), "duplicate": True}
                event("duplicate" + (" (summary)" if "result_omitted" in expected else ""))
                actual = self._apply(data)
                assert strict(actual) == strict(expected)
                return actual
        expected = model()
        actual = self._apply(data)
        assert strict(actual) == strict(expected), (actual, expected)
        event(
            f"{actual.get('op')}: "
            + ", ".join(k for k in ("precondition_failed", "succeeded", "events") if actual.get(k))
        )
        if req is not None:
            kept = {k: v for k, v in expected.items() if k != "events"}
            text = canonical_json(kept)
            if len(text.encode()) > POLICY.result_bytes_max:
                kept = {k: v for k, v in kept.items() if not isinstance(v, list | dict)} | {"result_omitted": True}
                text = canonical_json(kept)
            self.requests[req] = (index, self.now, text)
            mine = sorted((v[0], k) for k, v in self.requests.items() if k[0] == req[0])
            for _, k in mine[: max(0, len(mine) - POLICY.per_client)]:
                del self.requests[k]
        return actual

    def _write(self, key: str, doc: Any, expires: int | None, keep_expiry: bool = False) -> bool:
        old = self.model.get(key)
        if keep_expiry:
            expires = None if old is None else old.expires
        if old is None:
            self.model[key] = Row(doc, self.index + 1, self.index + 1, 1, expires)
        else:
            self.model[key] = Row(doc, old.create, self.index + 1, old.version + 1, expires)
        return old is None

    def _mod(self, key: str) -> int:
        return self.model[key].mod if key in self.model else 0

    # ------------------------------------------------------------------ clock

    @rule(step=st.integers(-50, 1500))
    def tick(self, step: int) -> None:
        self.now = max(0, self.now + step)  # the leader's clock may step back a little

    # ------------------------------------------------------------------ single-key writes

    @rule(
        key=KEYS,
        value=json_values,
        cond=st.sampled_from(["none", "current", "zero", "other", "absent"]),
        other=st.integers(0, 60),
        ttl=TTLS,
        req=REQUESTS,
    )
    def put(self, key: str, value: Any, cond: str, other: int, ttl: int | None, req: Any) -> None:
        if_mod = {"none": None, "current": self._mod(key), "zero": 0, "other": other, "absent": None}[cond]
        if_absent = cond == "absent"
        expires = None if ttl is None else self.now + ttl

        def model() -> dict[str, Any]:
            cur = self._mod(key)
            if (if_mod is not None and cur != if_mod) or (if_absent and key in self.model):
                return {"op": "put", "key": key, "precondition_failed": True, "mod_revision": cur}
            created = self._write(key, value, expires)
            r: dict[str, Any] = {"op": "put", "key": key, "revision": self.index + 1, "created": created}
            if expires is not None:
                r["expires_at_ms"] = expires
            return with_events(r, [put_ev(key, value, self.index + 1)])

        data = commands.put(
            key, value, if_mod_revision=if_mod, if_absent=if_absent, expires_at_ms=expires, request=self._request(req)
        )
        self._run(data, req, model)

    @rule(key=KEYS, cond=st.sampled_from(["none", "current", "zero", "other"]), other=st.integers(0, 60), req=REQUESTS)
    def delete(self, key: str, cond: str, other: int, req: Any) -> None:
        if_mod = {"none": None, "current": self._mod(key), "zero": 0, "other": other}[cond]

        def model() -> dict[str, Any]:
            cur = self._mod(key)
            if if_mod is not None and cur != if_mod:
                return {"op": "delete", "key": key, "precondition_failed": True, "mod_revision": cur}
            existed = self.model.pop(key, None) is not None
            r = {"op": "delete", "key": key, "deleted": existed, "revision": self.index + 1}
            return with_events(r, [del_ev(key, self.index + 1)] if existed else [])

        self._run(commands.delete(key, if_mod_revision=if_mod, request=self._request(req)), req, model)

    @rule(
        key=KEYS,
        new=json_values,
        how=st.sampled_from(["absent", "current", "reordered", "lookalike", "random"]),
        other=json_values,
        req=REQUESTS,
    )
    def cas(self, key: str, new: Any, how: str, other: Any, req: Any) -> None:
        cur = self.model.get(key)
        if how == "absent":
            expected = None
        elif how == "current" and cur is not None:
            expected = cur.doc
        elif how == "reordered" and cur is not None and isinstance(cur.doc, dict):
            expected = dict(reversed(list(cur.doc.items())))  # same object, other key order
        elif how == "lookalike" and cur is not None and cur.doc is not None:
            expected = lookalike(cur.doc)  # equal in Python (True == 1, 1 == 1.0), maybe not in JSON
        else:
            expected = other

        def model() -> dict[str, Any]:
            cur = self.model.get(key)
            ok = cur is None if expected is None else cur is not None and norm(cur.doc) == norm(expected)
            if not ok:
                current, rev = (None, 0) if cur is None else (cur.doc, cur.mod)
                return {"op": "cas", "key": key, "succeeded": False, "revision": rev, "current": current}
            self._write(key, new, None, keep_expiry=True)
            r = {"op": "cas", "key": key, "succeeded": True, "revision": self.index + 1, "current": new}
            return with_events(r, [put_ev(key, new, self.index + 1)])

        self._run(commands.cas(key, expected, new, request=self._request(req)), req, model)

    @rule(key=KEYS, value=json_values, req=REQUESTS)
    def append(self, key: str, value: Any, req: Any) -> None:
        def model() -> dict[str, Any]:
            cur = self.model.get(key)
            if cur is not None and not isinstance(cur.doc, list):
                r = {"op": "append", "key": key, "revision": cur.mod}
                return r | {"error": "append: the current value is not a list", "code": "not_a_list"}
            new = [*(cur.doc if cur is not None else []), value]
            self._write(key, new, None, keep_expiry=True)
            r = {"op": "append", "key": key, "revision": self.index + 1, "value": new}
            return with_events(r, [put_ev(key, new, self.index + 1)])

        self._run(commands.append(key, value, request=self._request(req)), req, model)

    # ------------------------------------------------------------------ multi-key writes

    @rule(prefix=PREFIXES, req=REQUESTS)
    def delete_prefix(self, prefix: str, req: Any) -> None:
        def model() -> dict[str, Any]:
            gone = sorted(k for k in self.model if k.startswith(prefix))
            for k in gone:
                del self.model[k]
            r = {"op": "delete_prefix", "prefix": prefix, "deleted": len(gone), "revision": self.index + 1}
            return with_events(r, [del_ev(k, self.index + 1) for k in gone])

        self._run(commands.delete_prefix(prefix, request=self._request(req)), req, model)

    @rule(keys=st.lists(KEYS, min_size=1, max_size=4), lag=st.integers(-2500, 500))
    def expire(self, keys: list[str], lag: int) -> None:
        now = max(0, self.now - lag)  # the sweep may be proposed with an older reading

        def model() -> dict[str, Any]:
            self._purge(now)
            events = []
            for k in keys:
                row = self.model.get(k)
                if row is not None and row.expires is not None and row.expires <= now:
                    del self.model[k]
                    events.append(del_ev(k, self.index + 1))
            return with_events({"op": "expire", "deleted": len(events), "revision": self.index + 1}, events)

        self._run(commands.expire(keys, now), None, model)

    @rule(data=st.data(), req=REQUESTS)
    def txn(self, data: st.DataObject, req: Any) -> None:
        compares = data.draw(st.lists(self._compare_st(data), max_size=3))
        success = self._branch(data.draw(st.lists(self._op_st(), max_size=4)))
        failure = self._branch(data.draw(st.lists(self._op_st(), max_size=4)))

        def model() -> dict[str, Any]:
            rev = self.index + 1
            ok = all(self._holds(c) for c in compares)
            results: list[dict[str, Any]] = []
            events: list[dict[str, Any]] = []
            for op in success if ok else failure:
                key = op["key"]
                if op["op"] == "put":
                    exp = None if "ttl_ms" not in op else self.now + op["ttl_ms"]
                    created = self._write(key, op["value"], exp)
                    results.append({"op": "put", "key": key, "revision": rev, "created": created})
                    events.append(put_ev(key, op["value"], rev))
                elif op["op"] == "delete":
                    existed = self.model.pop(key, None) is not None
                    results.append({"op": "delete", "key": key, "deleted": existed, "revision": rev})
                    events += [del_ev(key, rev)] if existed else []
                else:
                    row = self.model.get(key)
                    if row is None:
                        results.append({"op": "get", "key": key, "found": False})
                    else:
                        g = {"op": "get", "key": key, "found": True, "value": row.doc, "create_revision": row.create}
                        g |= {"mod_revision": row.mod, "version": row.version}
                        results.append(g if row.expires is None else g | {"expires_at_ms": row.expires})
            r = {"op": "txn", "succeeded": ok, "results": results, "revision": rev}
            return with_events(r, events)

        data_bytes = commands.txn(compares, success, failure, now_ms=self.now, request=self._request(req))
        self._run(data_bytes, req, model)

    def _compare_st(self, data: st.DataObject) -> st.SearchStrategy[dict[str, Any]]:
        def build(key: str, target: str, op: str, raw: Any, pick: int) -> dict[str, Any]:
            row = self.model.get(key)
            if target == "value":
                value = row.doc if row is not None and pick % 2 == 0 else raw
            elif target == "exists":
                value, op = (row is not None) == (pick % 3 != 0), op if op in ("==", "!=") else "=="
            else:
                field = {"version": "version", "mod_revision": "mod", "create_revision": "create"}[target]
                actual = 0 if row is None else getattr(row, field)
                value = max(0, actual + pick % 3 - 1)
            return {"key": key, "target": target, "op": op, "value": value}

        targets = st.sampled_from(["value", "exists", "version", "mod_revision", "create_revision"])
        return st.builds(build, KEYS, targets, st.sampled_from(["==", "!=", "<", ">"]), json_values, st.integers(0, 5))

    def _op_st(self) -> st.SearchStrategy[dict[str, Any]]:
        put = st.builds(lambda k, v: {"op": "put", "key": k, "value": v}, KEYS, json_values)
        put_ttl = st.builds(
            lambda k, v, t: {"op": "put", "key": k, "value": v, "ttl_ms": t},
            KEYS,
            json_values,
            st.sampled_from([1, 900]),
        )
        other = st.builds(lambda o, k: {"op": o, "key": k}, st.sampled_from(["delete", "get"]), KEYS)
        return put | put_ttl | other

    @staticmethod
    def _branch(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Keep the first write of each key (a branch writes a key at most once)."""
        written: set[str] = set()
        out = []
        for op in ops:
            if op["op"] != "get":
                if op["key"] in written:
                    continue
                written.add(op["key"])
            out.append(op)
        return out

    def _holds(self, c: dict[str, Any]) -> bool:
        row = self.model.get(c["key"])
        op: str = c["op"]
        want = c["value"]
        if c["target"] == "value":
            if row is None:
                return False
            have = row.doc
            if op in ("==", "!="):
                return bool(norm(have) == norm(want)) == (op == "==")
            kinds = {norm(have)[0], norm(want)[0]}
            if kinds not in ({"num"}, {"str"}):
                return False
            a, b = (Fraction(have), Fraction(want)) if kinds == {"num"} else (have, want)
            return bool(a < b) if op == "<" else bool(a > b)
        if c["target"] == "exists":
            return bool((row is not None) == want) == (op == "==")
        field = {"version": "version", "mod_revision": "mod", "create_revision": "create"}[c["target"]]
        have_n = 0 if row is None else getattr(row, field)
        return bool({"==": have_n == want, "!=": have_n != want, "<": have_n < want, ">": have_n > want}[op])

    # ------------------------------------------------------------------ bad input

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
        raw = bytearray(commands.put(key, self.model[key].doc, request={"client": "c", "id": "x", "now_ms": 1}))
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
        self.garbage(bytes(raw))

    # ------------------------------------------------------------------ invariants

    @invariant()
    def store_matches_model(self) -> None:
        expected = [
            (k, KeyRecord(canonical_json(r.doc), r.create, r.mod, r.version, r.expires))
            for k, r in sorted(self.model.items())
        ]
        assert self.store.items() == expected
        assert self.store.scan("", None, 100) == expected
        assert self.store.scan("dir/", None, 100) == [kv for kv in expected if kv[0].startswith("dir/")]
        for _, rec in expected:
            assert 0 < rec.create_revision <= rec.mod_revision <= self.index
            assert rec.version <= rec.mod_revision - rec.create_revision + 1
        due = sorted((r.expires, k) for k, r in self.model.items() if r.expires is not None and r.expires <= self.now)
        assert self.store.expired_keys(self.now, 100) == [k for _, k in due]
        assert self.store.expired_keys(self.now, 1) == [k for _, k in due][:1]

    @invariant()
    def requests_match_model(self) -> None:
        expected = [(c, i, RequestRecord(*v)) for (c, i), v in sorted(self.requests.items())]
        assert self.store.requests() == expected


TestKVModel = KVModel.TestCase
TestKVModel.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
