"""The register model: what each operation does to one key's value.

Values are compared by the equality of their parsed JSON form, with two care points that
Python's own ``==`` gets wrong for JSON: ``true`` is not ``1`` and ``false`` is not ``0``.
``freeze`` turns a parsed value into a hashable form with exactly JSON's equality, so that
states can be memoised; containers carry a tag so that no two JSON kinds collide.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from .history import JsonValue, Op

# Operation codes of the compiled form (small ints: the search loop dispatches on them).
READ = 0
WRITE = 1  # also delete (writes null)
CAS = 2
APPEND = 3

LIST_TAG = "l"
_LIST = LIST_TAG
_OBJECT = "o"
_BOOL = "b"


def freeze(value: JsonValue) -> Hashable:
    """A hashable form of a JSON value; two values are equal as JSON iff their forms are ==."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return (_BOOL, value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, list):
        return (_LIST, *(freeze(item) for item in value))
    return (_OBJECT, tuple(sorted((k, freeze(v)) for k, v in value.items())))


@dataclass(frozen=True, slots=True)
class Step:
    """One operation compiled for the search: ``code`` with its frozen operands."""

    code: int
    a: Hashable  # READ: the value read; WRITE: the value; CAS: expected; APPEND: the element
    b: Hashable = None  # CAS: the new value


def compile_op(op: Op) -> Step:
    if op.f == "read":
        return Step(READ, freeze(op.result))
    if op.f == "write":
        return Step(WRITE, freeze(op.value))
    if op.f == "delete":
        return Step(WRITE, None)
    if op.f == "cas":
        if not (isinstance(op.value, list) and len(op.value) == 2):
            raise ValueError(f"cas value must be [expected, new], got {op.value!r}")
        return Step(CAS, freeze(op.value[0]), freeze(op.value[1]))
    if op.f == "append":
        return Step(APPEND, freeze(op.value))
    raise ValueError(f"unknown f {op.f!r}")


def apply(step: Step, state: Hashable) -> tuple[bool, Hashable]:
    """``(legal, new_state)``: can the operation take effect on ``state`` (and with what result).

    A read is legal only if it returns the current value; a cas only if the current value
    equals ``expected`` (a cas that took effect necessarily succeeded: one that found another
    value changed nothing and is the same as not happening); an append only on null or a list.
    """
    code = step.code
    if code == WRITE:
        return True, step.a
    if code == READ:
        return state == step.a, state
    if code == CAS:
        if state == step.a:
            return True, step.b
        return False, state
    if state is None:
        return True, (_LIST, step.a)
    if isinstance(state, tuple) and state and state[0] == _LIST:
        return True, (*state, step.a)
    return False, state
