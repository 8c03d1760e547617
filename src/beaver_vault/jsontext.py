"""Compact JSON text, the same as ``json.dumps`` writes it, with encoders made once.

A leaf of the standard library only: the state machine (``kv``), the frames (``wire``), the
API's answers, the watch hub and the client all encode through it, and the client must not
import the state machine to do so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

encode_string: Callable[[str], str] = json.encoder.encode_basestring  # json.dumps(str, ensure_ascii=False)


def compact_encoder(*, allow_nan: bool) -> Callable[[Any], str]:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan)``,
    the same text and the same errors, at a fraction of the cost. ``json.dumps`` with any
    option builds a ``JSONEncoder`` per call, and ``JSONEncoder.encode`` builds its C encoder
    (and a closure) per call again: half the cost of encoding a 100-byte object. Here the C
    encoder is made once, without the check for circular references (its scratch dict would
    be shared by every call); a cycle ends in ``RecursionError``, and then the value is encoded
    again by ``JSONEncoder``, which raises what ``json.dumps`` raises (a cycle's ValueError, or
    RecursionError for a value nested too deeply)."""
    slow = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return slow.encode
    fast = make(None, slow.default, encode_string, None, ":", ",", False, False, allow_nan)

    def encode(value: Any) -> str:
        if type(value) is str:
            return encode_string(value)
        try:
            return "".join(fast(value, 0))
        except RecursionError:
            return slow.encode(value)

    return encode
