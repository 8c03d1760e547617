"""A follower's forwarding over the pipelined protocol: ``LeaderLink``.

Theory of operation: a follower forwards what only the leader can do (``NotLeader`` with a
known leader) over ONE pipelined connection to the leader's client port, shared by every
request it forwards: frames forwarded in the same round go out in one send and come back
multiplexed. The leader's client port is the ``pipelined_address`` its ``GET /api/v1/status``
advertises (cached; asked again when a connection to it fails: the leader may have restarted
on another port). A forwarded frame carries ``fwd`` (this node's id) and the deadline headers
of ``deadline.py``; the leader never forwards it again. A forward that fails after its frame may
have left is ``unknown`` for a write (503, or 504 on a timeout), never a plain failure; one
that never left is ``not_applied`` with a ``retry-after``.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx
import trio

from beaver_vault.api.deadline import stamp
from beaver_vault.api.errors import RETRY_AFTER_S, json_text
from beaver_vault.api.pipelined_ops import READ_OPS
from beaver_vault.client._pipelined import AsyncPipe, PipeBroken, PipeRefused, advertised

FORWARDED_TO = "x-beaver-vault-forwarded-to"


class LeaderLink:
    """A follower's one pipelined connection to its leader's client port, shared by every
    request it forwards (see the module docstring)."""

    def __init__(
        self,
        node_id: str,
        timeout_s: float,
        *,
        peer_ssl: ssl.SSLContext | None = None,
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        self.node_id = node_id
        self.timeout_s = timeout_s
        self.peer_ssl = peer_ssl
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._addresses: dict[str, str | None] = {}  # leader http address -> its client port address
        self._pipes: dict[str, AsyncPipe] = {}
        self._lock = trio.Lock()
        self.forwarded = 0
        self.failed = 0

    async def aclose(self) -> None:
        pipes, self._pipes = self._pipes, {}
        for pipe in pipes.values():
            with trio.CancelScope(shield=True):
                await pipe.aclose()

    async def _address(self, leader_http: str) -> str | None:
        if leader_http in self._addresses:
            return self._addresses[leader_http]
        verify: ssl.SSLContext | bool = self.peer_ssl if self.peer_ssl is not None else True
        async with httpx.AsyncClient(timeout=httpx.Timeout(2.0), verify=verify, trust_env=False) as http:
            answer = await http.get(leader_http.rstrip("/") + "/api/v1/status")
        address = advertised(answer.json()) if answer.status_code == 200 else None
        if len(self._addresses) > 64:
            self._addresses.clear()
        self._addresses[leader_http] = address
        return address

    async def _pipe(self, leader_http: str) -> AsyncPipe | None:
        async with self._lock:
            address = await self._address(leader_http)
            if address is None:
                return None
            pipe = self._pipes.get(address)
            if pipe is not None and pipe.broken is None:
                return pipe
            if pipe is not None:
                del self._pipes[address]
                self._addresses.pop(leader_http, None)  # the leader may have restarted on a new port
                with trio.CancelScope(shield=True):
                    await pipe.aclose()
            try:
                pipe = await AsyncPipe.connect(address, ssl_context=self.peer_ssl, client=f"node:{self.node_id}")
            except BaseException:
                self._addresses.pop(leader_http, None)  # ask the leader again next time (a new port?)
                raise
            self._pipes[address] = pipe
            return pipe

    async def forward(
        self, leader_http: str, leader_id: str | None, header: dict[str, Any], body: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        op = header.get("op")
        is_write = op not in READ_OPS
        who = leader_id or leader_http
        sent = {k: v for k, v in header.items() if k != "id"}
        h = dict(header.get("h") or {})
        stamped: dict[str, str] = {}
        stamp(stamped, self.timeout_s, self._wall_ms)
        h.update({k.lower(): v for k, v in stamped.items()})
        sent["h"] = h
        sent["fwd"] = self.node_id
        self.forwarded += 1
        retry = {"retry-after": RETRY_AFTER_S}
        try:
            with trio.fail_after(self.timeout_s):
                try:
                    pipe = await self._pipe(leader_http)
                except (OSError, httpx.HTTPError, ValueError, PipeRefused, trio.TooSlowError) as exc:
                    self.failed += 1
                    doc = {"error": f"could not reach the leader {who}: {type(exc).__name__}", "outcome": "not_applied"}
                    return 503, retry, json_text({**doc, "leader_id": leader_id}).encode()
                if pipe is None:
                    self.failed += 1
                    doc = {"error": f"the leader {who} offers no pipelined port", "outcome": "not_applied"}
                    return 503, retry, json_text({**doc, "leader_id": leader_id}).encode()
                answer, out = await pipe.request(sent, body)
        except PipeBroken as exc:
            self.failed += 1
            return self._lost(exc.sent and is_write, who, leader_id, timed_out=False)
        except trio.TooSlowError:
            self.failed += 1
            return self._lost(is_write, who, leader_id, timed_out=True)
        status = answer.get("status")
        headers = answer.get("h") if isinstance(answer.get("h"), dict) else {}
        headers = {str(k): str(v) for k, v in (headers or {}).items()}
        if leader_id is not None:
            headers[FORWARDED_TO] = leader_id
        return (status if isinstance(status, int) else 502), headers, out or b""

    @staticmethod
    def _lost(unknown: bool, who: str, leader_id: str | None, *, timed_out: bool) -> tuple[int, dict[str, str], bytes]:
        if not unknown:
            doc = {"error": f"the leader {who} did not answer", "outcome": "not_applied", "leader_id": leader_id}
            return 503, {"retry-after": RETRY_AFTER_S}, json_text(doc).encode()
        what = "timed out" if timed_out else "lost its connection"
        doc = {
            "error": f"the forwarded request to the leader {who} {what}: it may or may not have been applied",
            "outcome": "unknown",
            "leader_id": leader_id,
        }
        return (504 if timed_out else 503), {}, json_text(doc).encode()
