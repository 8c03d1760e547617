"""Beaver-Vault's deterministic simulator (``python -m sim``).

Theory of operation
-------------------
One seed makes the whole world. The simulator runs 3 to 7 production ``NodeDriver`` objects
(production Raft core, key-value state machine and join handshake) in ONE process, on ONE
thread, with no Trio and no real time: an event heap over integer virtual milliseconds
(``events``) with a deterministic tie-break decides what happens next. It replaces only what
production gets from the outside world:

* network (``network``): delay, loss, duplication, reordering, symmetric and one-way
  partitions, partitions isolating the leader, healing;
* disk (``disk``, or ``sqlite_disk`` for SQLite seeds): a ``MemoryStorage`` with sync latency (slow syncs delay the node), crash
  points inside ``process()`` (before/after save, after a send, before/after apply);
* clock: each node's ticker has its own period (skew); pauses freeze a node;
* randomness: every generator is ``random.Random(f"{seed}:{name}")`` (``params.derive``), so a
  consumer added later never shifts the draws of the others.

Per seed the world also draws (``params``): membership churn (``churn``: spare machines join,
members are removed -- the leader too, sometimes forced -- removed machines re-join with a
wiped disk, leadership is transferred; one change at a time through the production driver),
snapshot threshold and chunk size (small in many seeds, so compaction and catch-up by snapshot
are common; crashes are armed between two chunks of an install and right after it), follower
reads (clients read from random nodes; a follower asks the leader for a read index) and
exactly-once retries (a write whose outcome is unknown is retried with the SAME request id
against whoever leads now; the planted ``dup-retry`` retries with a fresh id).

A run (``run``) has three phases: formation (n1 bootstraps, the others join one by one through
the production probe/adopt/config handshake), safety (faults from ``faults`` and clients from
``workload``), liveness (heal, restart everyone, then require convergence and a fresh write
within ``liveness_ticks`` ticks; the members of the committed configuration must converge,
removed machines are restarted but excluded). Invariants are checked after every step of every
node (``invariants``, called by ``world``): one leader per term, one vote per node (per disk) per term, a committed entry
never changes, is held by every leader of a later term and never disappears from a majority of
its configuration, equal applied index means equal key-value state (also for a node restarted
from snapshot + log), a leader is a voter of its own configuration and never one whose removal
was committed (unless a newer configuration re-added it). At the end the client history goes to the project's
linearizability checker (``beaver_vault.checker``).

Planted bugs (``--bug``) enter through seams the world injects, never through a branch in
production code: ``ack-before-fsync`` (a lying disk), ``forget-vote`` (a disk that drops the
vote), ``stale-read`` (``bugs.LeaderLocalReads``: a subclass of the production driver that
answers reads from local state) and ``dup-retry`` (the simulated client retries a write with a
fresh request id).

Command line
------------
``python -m sim --seed S [--nodes N] [--faults all|none|net,partition,crash,pause,skew,disk,churn]
[--bug NAME] [-v] [--history FILE]`` runs one world: a header (seed, commit, every parameter),
with ``-v`` one line per event, a summary, and on failure exactly one ``REPRODUCE:`` line.

``python -m sim --seeds A..B [--max-seconds T] [--stop-on-failure]`` runs a swarm.

Exit status: 0 ok; 10 crash (an exception in the code under test or the simulator);
11 safety invariant; 12 not linearizable; 13 liveness (no convergence, no commit after
healing, cluster never formed, event storm); 14 undecided history; 15 a user workload's
invariant (``--workload``); 2 usage. A swarm exits with the status of its first failure.

An undecided history is never a pass: a history the checker cannot decide within
``run.CHECKER_STEP_BUDGET`` steps per key is checked again with ``run.RECHECK_STEP_BUDGET``
(20M steps, a count, not a time, so every machine gives the same verdict); still undecided, the
seed fails with kind ``undecided``. The built-in workload's size (3..8 clients, 200..400
operations, 3..8 keys) is decided by the first budget in every seed tried (0 of 300 clean seeds
needed the recheck); ``--clients``/``--ops`` make larger runs, and the REPRODUCE line keeps them.

Storage: one seed in four (``params.drawn_storage``, its own generator) runs every node on the
production ``SQLiteStorage`` with the fsync boundary held in simulated time (``sqlite_disk``);
``--storage memory|sqlite`` forces one. ``--workload FILE`` runs a user's workload instead of
the built-in clients (``product``, ``workload_api``, examples in ``sim/examples``);
``--timeline FILE`` writes an HTML picture of the run (``timeline``).

Determinism: the same arguments give the same output byte for byte (tests run it twice).
Nothing here iterates a set or uses ``hash()``; the swarm alone reads wall time (budget, rate).
"""
