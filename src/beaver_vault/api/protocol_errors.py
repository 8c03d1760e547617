"""JSON bodies for the requests the HTTP parser itself refuses.

Theory of operation: some requests never reach the application. Hypercorn's HTTP/1.1 parser
(h11) refuses a request line or header it cannot parse (a control character or a space in
the target, a header name with a space, a ``Content-Length`` that is not a number, a
``Transfer-Encoding`` other than chunked, ...) and Hypercorn answers with the parser's status
hint (400, 431, 501) and an EMPTY body. Every refusal of this API is a JSON body naming the
problem, so :func:`install` replaces Hypercorn's error answer with one that carries
``{"error": "malformed HTTP request: <the parser's reason>", "outcome": "not_applied"}``
(nothing reached the application, so nothing can have been applied). The status is the
parser's own (RFC 9112: 400; 501 for an unknown transfer coding; 431 for an oversized head).

The parser's reason is the ``h11.RemoteProtocolError`` being handled when Hypercorn sends its
answer (the answer is sent from inside its ``except`` block). If Hypercorn's internals ever
change shape, :func:`install` leaves them alone and says so: the empty answers come back,
nothing breaks.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from itertools import chain
from typing import Any

log = logging.getLogger(__name__)

_installed = False
_STATUSES = {s.value for s in HTTPStatus}


def error_body(status: int, reason: str) -> bytes:
    detail = reason.strip() or {431: "request head too large", 501: "unsupported transfer coding"}.get(
        status, "cannot parse the request"
    )
    text = f"malformed HTTP request: {detail}"[:300]
    return json.dumps({"error": text, "outcome": "not_applied"}, separators=(",", ":")).encode()


def install() -> bool:
    """Make Hypercorn's h11 protocol answer its own refusals with a JSON body. Idempotent."""
    global _installed
    if _installed:
        return True
    try:
        import h11
        from hypercorn.events import RawData
        from hypercorn.protocol.h11 import H11Protocol
    except ImportError:  # pragma: no cover - hypercorn is a dependency
        return False
    original: Callable[[Any, int], Awaitable[None]] | None = getattr(H11Protocol, "_send_error_response", None)
    if original is None or not hasattr(H11Protocol, "_send_h11_event"):
        log.warning("hypercorn's h11 protocol has changed: its parse errors keep their empty bodies")
        return False

    async def send_error_response(self: Any, status_code: int) -> None:
        error = sys.exc_info()[1]
        reason = str(error) if isinstance(error, h11.RemoteProtocolError) else ""
        body = error_body(status_code, reason)
        headers = chain(
            [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
            self.config.response_headers("h11"),
        )
        # Written as raw bytes, not through h11: once the peer's side of h11 is in ERROR (a bad
        # chunk in the middle of a body), h11 refuses to send anything and Hypercorn's own answer
        # was silently dropped; the application then answered 408 a body timeout later. The
        # connection is closed right after (Hypercorn sends Closed next).
        reason_phrase = HTTPStatus(status_code).phrase.encode() if status_code in _STATUSES else b"Error"
        head = b"HTTP/1.1 %d %s\r\n" % (status_code, reason_phrase)
        head += b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
        await self.send(RawData(data=head + body))

    H11Protocol._send_error_response = send_error_response  # type: ignore[method-assign]
    _installed = True
    return True
