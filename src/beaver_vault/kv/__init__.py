"""Beaver-Vault: kv — the replicated state machine (pure: standard library only).

Theory of operation. A client write becomes a *command*: compact, versioned JSON bytes built
by ``kv.commands`` (``put``/``delete`` with optional preconditions and expiry, ``cas``,
``append``, ``delete_prefix``, ``txn``, and the leader's ``expire``). The bytes are opaque to
Raft; once an entry commits, every node calls ``kv.state.apply(store, index, data)`` inside its
storage's apply transaction. ``apply`` is deterministic and total: the same (state, index,
bytes) gives the same result and the same writes on every node, and bad bytes give an error
result that changes nothing instead of an exception. No clock is read here: every time the
state machine sees (TTL expiries, request ages) was stamped into the command by the leader.

The entry's Raft index is the revision: a key records the index that created it, the index
that last changed it, how many writes it has seen, and when it expires. Results carry watch
``events`` for every change. Recent idempotent requests are remembered in the store itself so
a retried write applies once. The rows live behind the ``KVStore`` protocol (``MemoryKV`` here
for tests and the simulator; the SQLite storage provides its own inside a transaction).

Modules: ``values`` (shared validation, ``Request``, TTL parsing), ``records`` (rows, the store
protocol), ``commands`` (encode/decode), ``txn`` (transactions), ``state`` (apply), ``memory``.
"""

from beaver_vault.kv.commands import (
    Append,
    Cas,
    Command,
    CommandError,
    Delete,
    DeletePrefix,
    Expire,
    Put,
    Request,
    Txn,
    canonical_json,
    decode,
    encode,
    parse_ttl_ms,
    validate_txn,
)
from beaver_vault.kv.memory import MemoryKV
from beaver_vault.kv.records import KeyRecord, KVStore, RequestRecord
from beaver_vault.kv.state import RequestPolicy, apply, json_equal

__all__ = [
    "Append",
    "Cas",
    "Command",
    "CommandError",
    "Delete",
    "DeletePrefix",
    "Expire",
    "Put",
    "Request",
    "Txn",
    "canonical_json",
    "decode",
    "encode",
    "parse_ttl_ms",
    "validate_txn",
    "KeyRecord",
    "KVStore",
    "MemoryKV",
    "RequestPolicy",
    "RequestRecord",
    "apply",
    "json_equal",
]
