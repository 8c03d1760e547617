"""Jepsen-like testing of REAL Beaver-Vault processes (``python -m jepsen_like --help``).

Theory of operation: ``run`` starts ``beaver-vault server`` processes (``cluster``) on loopback,
or each in a network namespace of its own when partitions are on (``netns``), optionally under
libfaketime (``clock``). Client threads (``workload``) send reads, writes, compare-and-sets,
deletes and appends over HTTP to random nodes and record a history in the shared format
(``shared/HISTORY-FORMAT.md``); ``outcome`` is the one pure function that turns an HTTP
exchange into ok / fail / info. A seeded ``nemesis`` kills, pauses, partitions and skews
nodes meanwhile. At the end everything is healed, every key is read once more, every process
we started is stopped by PID, and ``beaver_vault.checker`` decides whether the history is
linearizable. Only the CLI (as a subprocess), HTTP and the checker are used, never internals.
"""
