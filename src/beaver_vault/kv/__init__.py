"""Beaver-Vault: kv — the replicated state machine (pure: standard library only).

Theory of operation. A client write becomes a *command*: compact, versioned JSON bytes built
by ``kv.commands`` (``put``, ``delete``, ``cas``, ``append``). The bytes are opaque to Raft;
once an entry commits, every node calls ``kv.state.apply(store, index, data)`` inside its
storage's apply transaction. ``apply`` is deterministic and total: the same (state, index,
bytes) gives the same result and the same writes on every node, and bad bytes give an error
result that changes nothing instead of an exception. The entry's Raft index is the revision:
a key records the index that created it, the index that last changed it, and how many writes
it has seen. The key-value rows live behind the ``KVStore`` protocol (``MemoryKV`` here for
tests and the simulator; the SQLite storage provides its own inside a transaction).
"""

from beaver_vault.kv.commands import Append, Cas, Command, CommandError, Delete, Put, canonical_json, decode, encode
from beaver_vault.kv.memory import MemoryKV
from beaver_vault.kv.state import KeyRecord, KVStore, apply, json_equal

__all__ = [
    "Append",
    "Cas",
    "Command",
    "CommandError",
    "Delete",
    "Put",
    "canonical_json",
    "decode",
    "encode",
    "KeyRecord",
    "KVStore",
    "MemoryKV",
    "apply",
    "json_equal",
]
