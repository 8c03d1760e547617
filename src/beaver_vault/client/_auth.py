"""Credentials and the ``/api/v1/auth`` calls (sans-I/O, shared by both clients).

A client made with ``user``/``password`` sends HTTP Basic on every request, one made with
``token`` sends ``Authorization: Bearer``; watches included. The header is built once here and
merged into every request by the I/O loops, so no call can forget it.
"""

from __future__ import annotations

import base64
from typing import Any

from beaver_vault.client._calls import JSON_HEADERS, encode_json
from beaver_vault.client._retry import API, Call, Reply

AUTH = f"{API}/auth"


def auth_headers(user: str | None = None, password: str | None = None, token: str | None = None) -> dict[str, str]:
    """The ``Authorization`` header for these credentials ({} for none)."""
    if token is not None and user is not None:
        raise ValueError("give a token or a user and password, not both")
    if token is not None:
        if not token or any(c.isspace() for c in token):
            raise ValueError("a token is one word without spaces")
        return {"Authorization": f"Bearer {token}"}
    if user is not None:
        if ":" in user:
            raise ValueError("a user name cannot contain ':'")
        if password is None:
            raise ValueError("a user needs a password")
        raw = f"{user}:{password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}
    if password is not None:
        raise ValueError("a password needs a user")
    return {}


def _json(r: Reply) -> Any:
    return r.json()


def auth_call(method: str, path: str, body: Any = None) -> Call[Any]:
    """A call to ``/api/v1/auth/<path>`` answering its JSON body. Changes are writes (an unknown
    outcome is reported as such); they carry no idempotency key, so a retried create may
    answer 409 "exists" for a change that did happen."""
    write = method != "GET"
    data = None if body is None else encode_json(body)
    headers = JSON_HEADERS if data is not None else ()
    return Call(method, f"{AUTH}/{path.lstrip('/')}", _json, body=data, headers=headers, write=write)
