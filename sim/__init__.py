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
* disk (``disk``): a ``MemoryStorage`` with sync latency (slow syncs delay the node), crash
  points inside ``process()`` (before/after save, after a send, before/after apply);
* clock: each node's ticker has its own period (skew); pauses freeze a node;
* randomness: every generator is ``random.Random(f"{seed}:{name}")`` (``params.derive``), so a
  consumer added later never shifts the draws of the others.

A run (``run``) has three phases: formation (n1 bootstraps, the others join one by one through
the production probe/adopt/config handshake), safety (faults from ``faults`` and clients from
``workload``), liveness (heal, restart everyone, then require convergence and a fresh write
within ``liveness_ticks`` ticks). Invariants are checked after every step of every node
(``world``): one leader per term, one vote per node per term, a committed entry never changes,
is held by every leader of a later term and never disappears from a majority, equal applied
index means equal key-value state. At the end the client history goes to the project's
linearizability checker (``beaver_vault.checker``).

Planted bugs (``--bug``) enter through seams the world injects, never through a branch in
production code: ``ack-before-fsync`` (a lying disk), ``forget-vote`` (a disk that drops the
vote) and ``stale-read`` (``DriverOptions(unsafe_leader_local_reads=True)``).

Command line
------------
``python -m sim --seed S [--nodes N] [--faults all|none|net,partition,crash,pause,skew,disk]
[--bug NAME] [-v] [--history FILE]`` runs one world: a header (seed, commit, every parameter),
with ``-v`` one line per event, a summary, and on failure exactly one ``REPRODUCE:`` line.

``python -m sim --seeds A..B [--max-seconds T] [--stop-on-failure]`` runs a swarm.

Exit status: 0 ok; 10 crash (an exception in the code under test or the simulator);
11 safety invariant; 12 not linearizable; 13 liveness (no convergence, no commit after
healing, cluster never formed, event storm); 2 usage. A swarm exits with the status of its
first failure. An ``unknown`` checker verdict (search budget spent) is not a failure; the
summary counts it.

Determinism: the same arguments give the same output byte for byte (tests run it twice).
Nothing here iterates a set or uses ``hash()``; the swarm alone reads wall time (budget, rate).
"""
