"""Watches, sans I/O: Server-Sent Events decoding (:class:`SSEDecoder`), the cursor that hides
what a reconnection replays (:class:`WatchCursor`), and the decisions of a watch across
reconnections (:class:`WatchSession`); the clients perform its I/O."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from beaver_vault.client._calls import WatchEvent
from beaver_vault.client._retry import RETRYABLE_STATUSES, Endpoints, Reply, RetryPolicy, backoff, json_or_none
from beaver_vault.client.errors import ClusterError, Unavailable, WatchCompacted, error_from_reply

# --- watches --------------------------------------------------------------------------------------


@dataclass(slots=True)
class SSEMessage:
    event: str = "message"
    data: str = ""
    id: str | None = None


class SSEDecoder:
    """Server-Sent Events, one line at a time (the line without its end-of-line characters).
    A blank line dispatches the message being built; ``:`` lines are comments (keep-alives)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> SSEMessage | None:
        if line == "":
            if not self._data and not self._event:
                return None
            message = SSEMessage(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._id = "", [], None
            return message
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None


@dataclass(slots=True)
class WatchCursor:
    """Where a watch stands, so a reconnection neither skips nor repeats a change.

    Several events can share one revision (a transaction, a prefix delete), so the position is
    (last revision seen, how many of its events were seen). A reconnection asks again from that
    revision (inclusive) and drops the events of it already delivered, plus anything older.
    """

    next_revision: int | None  # where to start when nothing was seen yet (None: server default)
    last_revision: int | None = None
    seen_at_last: int = 0
    _skip: int = 0

    def from_revision(self) -> int | None:
        return self.last_revision if self.last_revision is not None else self.next_revision

    def reconnected(self) -> None:
        self._skip = self.seen_at_last

    def accept(self, event: WatchEvent) -> bool:
        if self.last_revision is None or event.revision > self.last_revision:
            self.last_revision, self.seen_at_last, self._skip = event.revision, 1, 0
            return True
        if event.revision < self.last_revision:
            return False
        if self._skip > 0:
            self._skip -= 1
            return False
        self.seen_at_last += 1
        return True


@dataclass(slots=True)
class WatchSession:
    """The decisions of a watch; the clients perform its I/O.

    Loop: ``connect()`` gives (endpoint, query); the client opens the stream and reports
    ``opened(reply_or_none)``; it feeds each line to ``feed`` and hands out the events returned;
    when the stream ends or breaks it calls ``broken(error)``, sleeps the seconds returned and
    connects again. ``broken`` raises ``Unavailable`` after ``watch_max_reconnects`` failed
    connections in a row; ``feed``/``opened`` raise ``WatchCompacted`` or another final error.
    """

    prefix: str
    cursor: WatchCursor
    endpoints: Endpoints
    policy: RetryPolicy
    rng: random.Random
    decoder: SSEDecoder = field(default_factory=SSEDecoder)
    failures: int = 0
    backoff_step: int = 0
    last_error: str | None = None
    _endpoint: str = ""

    def connect(self) -> tuple[str, list[tuple[str, str | int | float | bool | None]]]:
        self._endpoint = self.endpoints.current()
        self.decoder = SSEDecoder()
        self.cursor.reconnected()
        params: list[tuple[str, str | int | float | bool | None]] = [("prefix", self.prefix)]
        start = self.cursor.from_revision()
        if start is not None:
            params.append(("from_revision", str(start)))
        return self._endpoint, params

    def opened(self, reply: Reply | None) -> bool:
        """``reply`` is None for a 200 stream; else the full error answer. True: read the stream."""
        if reply is None:
            self.endpoints.succeeded(self._endpoint)
            self.failures = 0
            return True
        if reply.status not in RETRYABLE_STATUSES:
            raise error_from_reply(reply.status, json_or_none(reply.content), endpoint=reply.endpoint, write=False)
        self.last_error = f"HTTP {reply.status} from {reply.endpoint}"
        self.endpoints.failed(self._endpoint)
        self.failures += 1
        return False

    def feed(self, line: str) -> list[WatchEvent]:
        message = self.decoder.feed(line)
        if message is None or not message.data:
            return []
        try:
            data = json.loads(message.data)
        except ValueError:
            raise ClusterError(f"{self._endpoint}: watch event is not JSON: {message.data[:200]!r}") from None
        if not isinstance(data, dict):
            return []
        if message.event == "error" or data.get("type") == "error" or ("error" in data and "key" not in data):
            return self._server_error(data)
        try:
            event = WatchEvent(str(data["type"]), str(data["key"]), data.get("value"), int(data["revision"]))
        except (KeyError, TypeError, ValueError):
            raise ClusterError(f"{self._endpoint}: malformed watch event {data!r:.200}") from None
        if not self.cursor.accept(event):
            return []
        self.backoff_step = 0
        return [event]

    def _server_error(self, data: Mapping[str, Any]) -> list[WatchEvent]:
        text = str(data.get("error") or data.get("reason") or data)
        lowered = text.lower()
        if data.get("code") in ("compacted", 410) or "re-list" in lowered or "compact" in lowered or "older" in lowered:
            raise WatchCompacted(text, status=410, body=dict(data), endpoint=self._endpoint)
        # Anything else (a slow watcher cut off, a node shutting down): resume from the cursor.
        self.last_error = text
        raise _StreamEnded(text)

    def broken(self, error: BaseException | None) -> float:
        """The stream ended (``error`` None: closed by the server). Seconds to wait before reconnecting."""
        if error is not None:
            self.last_error = f"{type(error).__name__}: {error}"
            self.endpoints.failed(self._endpoint)
            self.failures += 1
        if self.failures >= self.policy.watch_max_reconnects:
            raise Unavailable(
                f"watch {self.prefix!r}: {self.failures} reconnections failed in a row (last: {self.last_error})",
                outcome="not_applied",
            )
        delay = backoff(self.policy, self.rng, self.backoff_step)
        self.backoff_step += 1
        return delay


class _StreamEnded(Exception):
    """Raised by ``WatchSession.feed`` when the server ended the stream with a resumable reason."""


StreamEnded = _StreamEnded
