"""Reading operation histories (``shared/HISTORY-FORMAT.md``) into ``Op`` values.

Events are paired per process: an ``invoke`` opens a process's operation, the next
``ok``/``fail``/``info`` of that process closes it. Everything that would make a verdict
meaningless (a completion without an invoke, a second invoke while one is open, an unknown
``f``, a mistyped field) raises ``HistoryError`` naming the source and the line: a corrupt
history must never turn into a wrong verdict.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import TypeAlias

# A parsed JSON document (what ``json.loads`` returns).
JsonValue: TypeAlias = "None | bool | int | float | str | list[JsonValue] | dict[str, JsonValue]"

FUNCTIONS = frozenset({"read", "write", "cas", "delete", "append"})
TYPES = frozenset({"invoke", "ok", "fail", "info"})


class HistoryError(ValueError):
    """The history cannot be read. ``source`` and ``line`` (1-based; 0 = whole file) say where."""

    def __init__(self, source: str, line: int, message: str) -> None:
        where = f"{source}:{line}" if line > 0 else source
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class Op:
    """One operation: an invoke paired with its completion.

    ``invoke_index``/``complete_index`` are positions in the event sequence and define real
    time (A precedes B when A's completion comes before B's invoke); ``complete_index`` is
    None when the history ended with the operation still open (it then counts as ``info``).
    ``*_line`` are the 1-based line numbers in the source, for messages only.
    """

    id: int  # 0-based, in invoke order
    process: int
    f: str
    key: str
    value: JsonValue  # the invoked value ([expected, new] for cas, null for a read)
    outcome: str  # "ok", "fail" or "info"
    result: JsonValue  # the completion's value: what a read returned (None unless ok)
    invoke_index: int
    complete_index: int | None
    invoke_line: int
    complete_line: int | None
    invoke_time: int | None = None
    complete_time: int | None = None

    def describe(self) -> str:
        """One readable line: ``process 3 write 'k1' 7 (invoked line 12, ok line 40)``."""
        if self.f == "read":
            what = f"read -> {_show(self.result)}" if self.outcome == "ok" else "read"
        elif self.f == "cas":
            exp, new = self.value if isinstance(self.value, list) else (None, None)
            what = f"cas {_show(exp)} -> {_show(new)}"
        elif self.f == "delete":
            what = "delete"
        else:
            what = f"{self.f} {_show(self.value)}"
        if self.complete_line is None:
            end = "never completed (info)"
        else:
            end = f"{self.outcome} line {self.complete_line}"
        return f"process {self.process} {what} on {self.key!r} (invoked line {self.invoke_line}, {end})"


@dataclass(frozen=True, slots=True)
class History:
    """A whole parsed history: operations in invoke order, and where they came from."""

    source: str
    ops: tuple[Op, ...]
    events: int


def _show(value: JsonValue) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 60 else text[:57] + "..."


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _check_json(value: object, where: str) -> JsonValue:
    """Return ``value`` if it is a JSON document (as ``json.loads`` makes them), else raise."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is not a finite number")
        return value
    if isinstance(value, list):
        return [_check_json(item, where) for item in value]
    if isinstance(value, dict):
        out: dict[str, JsonValue] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where} has a non-string object key {k!r}")
            out[k] = _check_json(v, where)
        return out
    raise ValueError(f"{where} is not a JSON value ({type(value).__name__})")


def _optional_int(event: Mapping[str, object], name: str) -> int | None:
    if name not in event or event[name] is None:
        return None
    value = event[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"field {name!r} must be an integer, got {value!r}")
    return value


@dataclass(slots=True)
class _Open:
    id: int
    process: int
    f: str
    key: str
    value: JsonValue
    index: int
    line: int
    time: int | None


def parse_events(events: Iterable[Mapping[str, object]], source: str = "<memory>") -> History:
    """Pair the events of a history (dicts in the file format) into operations.

    Lines are counted from 1 in the order given. Raises ``HistoryError`` on bad input.
    """
    return _parse(((i + 1, e) for i, e in enumerate(events)), source)


def parse_lines(lines: Iterable[str], source: str = "<memory>") -> History:
    """Parse JSON Lines text (one event per line; blank lines are skipped)."""

    def decoded() -> Iterator[tuple[int, Mapping[str, object]]]:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                event = json.loads(text, parse_constant=_reject_constant)
            except (ValueError, RecursionError) as e:
                raise HistoryError(source, number, f"not JSON: {e}") from None
            if not isinstance(event, dict):
                raise HistoryError(source, number, f"expected a JSON object, got {type(event).__name__}")
            yield number, event

    return _parse(decoded(), source)


def load_history(path: str | PurePath) -> History:
    """Read a JSON Lines history file. Raises ``HistoryError`` (also for I/O errors, line 0)."""
    source = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_lines(handle, source)
    except OSError as e:
        raise HistoryError(source, 0, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise HistoryError(source, 0, f"not UTF-8 text: {e}") from None


def _parse(numbered: Iterable[tuple[int, Mapping[str, object]]], source: str) -> History:
    open_ops: dict[int, _Open] = {}
    done: list[Op] = []
    next_id = 0
    index = -1
    for index, (line, event) in enumerate(numbered):
        try:
            if not isinstance(event, Mapping):
                raise ValueError(f"expected an object, got {type(event).__name__}")
            process = event.get("process")
            if not isinstance(process, int) or isinstance(process, bool):
                raise ValueError(f"field 'process' must be an integer, got {process!r}")
            kind = event.get("type")
            if not isinstance(kind, str) or kind not in TYPES:
                raise ValueError(f"field 'type' must be one of invoke/ok/fail/info, got {kind!r}")
            f = event.get("f")
            if not isinstance(f, str) or f not in FUNCTIONS:
                raise ValueError(f"unknown f {f!r} (expected read, write, cas, delete or append)")
            key = event.get("key")
            if not isinstance(key, str):
                raise ValueError(f"field 'key' must be a string, got {key!r}")
            value = _check_json(event.get("value"), "field 'value'")
            time = _optional_int(event, "time")
            if f == "cas" and (kind == "invoke" or "value" in event):
                if not (isinstance(value, list) and len(value) == 2):
                    raise ValueError(f"a cas value must be a list [expected, new], got {value!r}")
            if kind == "invoke":
                if f in ("write", "append", "cas") and "value" not in event:
                    raise ValueError(f"a {f} invoke needs a 'value'")
                previous = open_ops.get(process)
                if previous is not None:
                    raise ValueError(
                        f"process {process} invokes again while its {previous.f} "
                        f"invoked on line {previous.line} is still open"
                    )
                open_ops[process] = _Open(next_id, process, f, key, value, index, line, time)
                next_id += 1
                continue
            opened = open_ops.pop(process, None)
            if opened is None:
                raise ValueError(f"{kind} completion for process {process} without an open invoke")
            if opened.f != f or opened.key != key:
                raise ValueError(
                    f"{kind} completion ({f} {key!r}) does not match process {process}'s "
                    f"open {opened.f} {opened.key!r} invoked on line {opened.line}"
                )
            if kind == "ok" and f == "read" and "value" not in event:
                raise ValueError("an ok read needs the 'value' it read")
        except ValueError as e:
            raise HistoryError(source, line, str(e)) from None
        done.append(
            Op(
                id=opened.id,
                process=process,
                f=f,
                key=key,
                value=opened.value,
                outcome=kind,
                result=value if kind == "ok" else None,
                invoke_index=opened.index,
                complete_index=index,
                invoke_line=opened.line,
                complete_line=line,
                invoke_time=opened.time,
                complete_time=time,
            )
        )
    for opened in open_ops.values():
        done.append(
            Op(
                id=opened.id,
                process=opened.process,
                f=opened.f,
                key=opened.key,
                value=opened.value,
                outcome="info",
                result=None,
                invoke_index=opened.index,
                complete_index=None,
                invoke_line=opened.line,
                complete_line=None,
                invoke_time=opened.time,
            )
        )
    done.sort(key=lambda op: op.id)
    return History(source=source, ops=tuple(done), events=index + 1)
