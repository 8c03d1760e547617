"""A small typed Python client for Beaver-Vault, blocking (:class:`Client`) and async
(:class:`AsyncClient`, for Trio and asyncio).

Theory of operation
-------------------
The client talks to the HTTP API of the nodes (``/api/v1``) and depends on httpx alone, never
on server internals. It is given every node's URL; any node will do, since followers forward
writes to the leader and serve linearizable reads through it. Three layers:

* ``_core`` (sans-I/O): what each operation sends and how its answer is read, the retry plan
  (which node, when to retry, how long to back off, which error to raise), and the watch state
  (Server-Sent Events decoding and the resume cursor). Shared by both flavours.
* ``sync`` / ``aio``: the I/O loops that perform the core's actions with ``httpx.Client`` or
  ``httpx.AsyncClient`` (plus ``time.sleep`` / ``anyio.sleep``).
* ``errors``: :class:`ClusterError` and its subclasses.

Failover and exactly-once writes: a node that refuses the connection is skipped at once for the
next one. A request that may already have been sent is retried only because every write carries
an ``Idempotency-Key`` (fresh per call, the same for all its attempts), with which the cluster
applies a write at most once and replays its original answer, and ``X-Beaver-Vault-Client``,
a random name per process (renewed in a forked child): the cluster remembers the last 1,000
requests of each client name, so other processes' writes cannot crowd this one's out. Retries are bounded
(:class:`RetryPolicy`); when they run out, a write that might have happened raises
:class:`UnknownOutcome`, otherwise :class:`Unavailable`.

Authentication: ``Client(urls, user="alice", password="...")`` (HTTP Basic) or
``Client(urls, token="bv_...")`` (Bearer) sends the credential with every request, watches
included; a refusal raises :class:`Unauthorized` (401) or :class:`Forbidden` (403).

Example::

    from beaver_vault.client import Client, PreconditionFailed

    with Client(["http://127.0.0.1:8000", "http://127.0.0.1:8001"]) as vault:
        rev = vault.put("users/1", {"name": "a"}).revision
        try:
            vault.put("users/1", {"name": "b"}, if_revision=rev)
        except PreconditionFailed as e:
            print("someone else wrote it at", e.current_revision)
        for event in vault.watch("users/", from_revision=rev):
            print(event.type, event.key, event.value)
"""

from beaver_vault.client._core import (
    DeletePrefixResult,
    DeleteResult,
    KeyValue,
    Page,
    PutResult,
    RetryPolicy,
    TxnResult,
    WatchEvent,
)
from beaver_vault.client.aio import AsyncClient, AsyncPager, AsyncWatch
from beaver_vault.client.errors import (
    BadRequest,
    ClusterError,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    Unauthorized,
    Unavailable,
    UnknownOutcome,
    WatchCompacted,
)
from beaver_vault.client.sync import Client, Watch

__all__ = [
    "AsyncClient",
    "AsyncPager",
    "AsyncWatch",
    "BadRequest",
    "Client",
    "ClusterError",
    "Conflict",
    "DeletePrefixResult",
    "DeleteResult",
    "Forbidden",
    "KeyValue",
    "NotFound",
    "Page",
    "PreconditionFailed",
    "PutResult",
    "RetryPolicy",
    "TxnResult",
    "Unauthorized",
    "Unavailable",
    "UnknownOutcome",
    "Watch",
    "WatchCompacted",
    "WatchEvent",
]
