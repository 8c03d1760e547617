"""Encoding of state-machine commands (pure). SKELETON: signatures are the contract."""

from __future__ import annotations

from typing import Any


def put(key: str, value: Any) -> bytes:
    raise NotImplementedError


def delete(key: str) -> bytes:
    raise NotImplementedError


def cas(key: str, expected: Any, new: Any) -> bytes:
    raise NotImplementedError


def append(key: str, value: Any) -> bytes:
    raise NotImplementedError
