"""Beaver-Vault: storage — everything a node keeps across restarts, behind one contract.

Theory of operation. ``storage.base.Storage`` is the only thing the node driver sees. One
storage object holds the cluster id, the Raft hard state and log, and the key-value rows with
their applied index. The driver calls ``save`` once per Ready (log suffix + hard state, durable
when it returns: group commit), then ``apply`` for committed entries: the kv function runs
inside ONE transaction that also advances the applied index, so after any crash an entry has
been applied exactly once. ``reset`` wipes everything and sets a cluster id in one durable
step (adoption by a join). Two implementations pass the same contract tests:

* ``memory.MemoryStorage`` — in memory, deterministic, no I/O; unit tests and the simulator,
  which models unsynced writes and crashes on top of it (``clone()`` a durable copy);
* ``sqlite.SQLiteStorage`` — SQLite in WAL mode with ``synchronous=FULL``; production.

``python -m beaver_vault.storage.inspect PATH`` prints what a database file holds.
"""
