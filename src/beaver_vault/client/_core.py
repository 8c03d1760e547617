"""The sans-I/O core shared by :class:`~beaver_vault.client.Client` and
:class:`~beaver_vault.client.AsyncClient`: one namespace over its three parts, ``_retry``
(endpoints, actions and outcomes, the retry policy), ``_calls`` (results and one call builder
per operation) and ``_watch`` (Server-Sent Events, watch cursor and session).

Theory of operation
-------------------
Nothing here touches a socket, a clock or a sleep. An operation is described by a
:class:`Call`: the HTTP method, path, query, body and headers to send, whether it is a write,
and a ``parse`` function turning a 2xx :class:`Reply` into the typed result. The retry policy
is one generator, :func:`run_call`, that *yields actions* (:class:`Send` to one endpoint,
:class:`Sleep` for a backoff) and *receives outcomes* (a :class:`Reply`, or a :class:`Failed`
transport error). The sync and the async client each own a tiny loop that performs those
actions with ``httpx.Client`` / ``httpx.AsyncClient`` and ``time.sleep`` / ``anyio.sleep``;
every decision (which node, whether to retry, how long to wait, which error to raise) is made
here, once.

Retry rules (bounded by :attr:`RetryPolicy.max_attempts`):

* The connection could not be opened (refused, connect timeout): nothing was sent, so any
  call moves on to the next endpoint at once; only after every endpoint failed in a row does
  it back off.
* The request may have been sent (read timeout, connection reset, ...): a read is retried; a
  write is retried only because it carries an ``Idempotency-Key`` (every write built here
  does, one fresh key per call, reused by every attempt of that call), so the cluster applies
  it at most once. If the budget runs out, the call raises ``UnknownOutcome``.
* 503/504/408/429 answers are retried after a backoff (``Retry-After`` honoured, capped).
  An ``outcome: unknown`` answer marks the call "maybe applied": should the budget run out,
  even a later "not applied" answer is reported as ``UnknownOutcome``.
* Any other answer is final: 2xx is parsed, 4xx becomes its typed error at once.

Watches use :class:`WatchSession`: it picks the endpoint and ``from_revision`` for each
(re)connection, decodes Server-Sent Events line by line (:class:`SSEDecoder`) and filters out
what a reconnection replays (:class:`WatchCursor`), so the caller sees every change once, in
order, across node failures.
"""


from __future__ import annotations

from beaver_vault.client._calls import (
    JSON_HEADERS,
    DeletePrefixResult,
    DeleteResult,
    KeyValue,
    NodeList,
    Page,
    PutResult,
    TxnResult,
    WatchEvent,
    delete_call,
    delete_prefix_call,
    encode_json,
    get_call,
    get_meta_call,
    join_call,
    key_value_from,
    kv_path,
    list_call,
    members_call,
    put_call,
    remove_call,
    status_call,
    transfer_leadership_call,
    ttl_param,
    txn_call,
    what_if_call,
)
from beaver_vault.client._retry import (
    API,
    CLIENT_HEADER,
    IDEMPOTENCY_HEADER,
    RETRYABLE_STATUSES,
    Action,
    Call,
    Endpoints,
    Failed,
    Outcome,
    Reply,
    RetryPolicy,
    Send,
    Sleep,
    backoff,
    failed_from,
    json_or_none,
    new_idempotency_key,
    normalize_endpoints,
    reply_from,
    run_call,
)
from beaver_vault.client._watch import (
    SSEDecoder,
    SSEMessage,
    StreamEnded,
    WatchCursor,
    WatchSession,
)

__all__ = [
    "API",
    "Action",
    "Call",
    "DeletePrefixResult",
    "DeleteResult",
    "Endpoints",
    "Failed",
    "CLIENT_HEADER",
    "IDEMPOTENCY_HEADER",
    "JSON_HEADERS",
    "KeyValue",
    "NodeList",
    "Outcome",
    "Page",
    "PutResult",
    "RETRYABLE_STATUSES",
    "Reply",
    "RetryPolicy",
    "SSEDecoder",
    "SSEMessage",
    "Send",
    "Sleep",
    "StreamEnded",
    "TxnResult",
    "WatchCursor",
    "WatchEvent",
    "WatchSession",
    "backoff",
    "delete_call",
    "delete_prefix_call",
    "encode_json",
    "failed_from",
    "get_call",
    "get_meta_call",
    "join_call",
    "json_or_none",
    "key_value_from",
    "kv_path",
    "list_call",
    "members_call",
    "new_idempotency_key",
    "normalize_endpoints",
    "put_call",
    "remove_call",
    "reply_from",
    "run_call",
    "status_call",
    "transfer_leadership_call",
    "what_if_call",
    "ttl_param",
    "txn_call",
]
