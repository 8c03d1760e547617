"""Run parameters: everything a run depends on, drawn from the seed.

A run is fully described by ``(seed, nodes, faults, bug)``. Every other number (fault rates,
delays, tick skew, workload size) is drawn here from the generator named ``params``, so a
swarm explores a different fault mix per seed and ``--seed S`` alone replays it. The header
prints every field, so a failing run documents the world it ran in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

FAULT_CLASSES = ("net", "partition", "crash", "pause", "skew", "disk", "churn", "hostile")
BUGS = ("ack-before-fsync", "stale-read", "forget-vote", "dup-retry", "ack-before-durable")
STORAGES = ("memory", "sqlite")
SQLITE_EVERY = 4  # one seed in four runs every node on the production SQLite storage


def drawn_storage(seed: int) -> str:
    """The storage a seed runs on unless ``--storage`` forces one (its own generator, so the
    choice shifts no other draw)."""
    return "sqlite" if derive(seed, "storage").randrange(SQLITE_EVERY) == 0 else "memory"


def derive(seed: int, name: str) -> random.Random:
    """The one way to make a generator: named, so adding a new consumer of randomness does not
    shift the draws of the others (string seeds hash with SHA-512: stable across runs)."""
    return random.Random(f"{seed}:{name}")


def parse_faults(text: str) -> tuple[str, ...]:
    """``all``, ``none`` or a comma list of fault classes (kept in canonical order)."""
    text = text.strip()
    if text == "all":
        return FAULT_CLASSES
    if text in ("none", ""):
        return ()
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(wanted - set(FAULT_CLASSES))
    if unknown:
        raise ValueError(f"unknown fault class(es): {', '.join(unknown)} (choose from {', '.join(FAULT_CLASSES)})")
    return tuple(f for f in FAULT_CLASSES if f in wanted)


def faults_text(faults: tuple[str, ...]) -> str:
    if faults == FAULT_CLASSES:
        return "all"
    return ",".join(faults) if faults else "none"


@dataclass(frozen=True, slots=True)
class Params:
    seed: int
    nodes: int
    faults: tuple[str, ...]
    bug: str | None
    storage: str  # memory (MemoryStorage) or sqlite (the production SQLiteStorage, see sim.sqlite_disk)
    # time base
    tick_ms: int  # nominal tick period; each node's own period is skewed around it
    # bytes of recent log entries each node keeps in memory (None: all); older ones are read
    # from its disk by the storage worker when a follower needs them
    log_cache_bytes: int | None
    # chance a delivered message is only stepped, its Ready processed a millisecond later with
    # whatever else arrived meanwhile (the runtime steps inputs as they come and processes them
    # in batches)
    batch_inputs: float
    tick_ms_by_node: tuple[int, ...]
    election_ticks: int
    heartbeat_ticks: int
    # network
    delay_min_ms: int
    delay_max_ms: int
    loss: float
    dup: float
    spike_p: float  # chance a message is held back (reordering past later messages)
    spike_max_ms: int
    # partitions, crashes, pauses (mean interval between two faults; 0 = off)
    partition_every_ms: int
    partition_max_ms: int
    crash_every_ms: int
    downtime_max_ms: int
    vote_crash_p: float  # chance an armed crash strikes right after the node grants a vote
    pause_every_ms: int
    pause_max_ms: int
    # disk
    sync_max_ms: int  # an ordinary fsync takes 0..sync_max_ms
    slow_sync_p: float
    slow_sync_max_ms: int
    lazy_flush_max_ms: int  # ack-before-fsync: how long written data stays volatile
    snapshot_threshold: int  # the driver compacts past this many log entries (small: snapshots happen)
    snapshot_chunk_bytes: int  # small: a snapshot travels in many chunks (crashes land between them)
    snapshot_timeout_ticks: int
    install_crash_p: float  # chance a crash is armed inside a snapshot install (between chunks, after it)
    # membership churn (the "churn" fault class): joins, removals, re-joins, transfers
    spares: int  # extra machines, never in the first configuration, that may join later
    churn_every_ms: int
    force_remove_p: float
    wipe_rejoin_p: float  # a removed node re-joins with a wiped disk (else with its old data)
    # workload and phases
    clients: int
    ops: int
    keys: int
    op_timeout_ms: int
    write_retries: int  # a write whose outcome is unknown is retried this often, with the same request id
    follower_read_p: float  # chance a read goes to a random node (a follower serves it via ReadIndex)
    safety_ms: int
    liveness_ticks: int

    def describe(self) -> list[str]:
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "faults":
                value = faults_text(value)
            elif isinstance(value, float):
                value = f"{value:.3f}"
            elif isinstance(value, tuple):
                value = ",".join(str(v) for v in value)
            out.append(f"{f.name}={value}")
        return out


def draw(
    seed: int,
    nodes: int | None,
    faults: tuple[str, ...],
    bug: str | None,
    *,
    clients: int | None = None,
    ops: int | None = None,
    storage: str | None = None,
) -> Params:
    """Draw a world from the seed. Fault classes not enabled get rate zero; the rates of the
    enabled ones vary per seed so a swarm covers gentle and brutal worlds alike. ``clients``,
    ``ops`` and ``storage`` override the drawn values (every draw is still made, so the rest of
    the world is the seed's own)."""
    r = derive(seed, "params")
    drawn = r.choice((3, 3, 5, 5, 5, 7))  # always drawn, so --nodes N replays a swarm's seed exactly
    n = nodes if nodes is not None else drawn
    on = set(faults)
    tick_ms = 20
    skew = "skew" in on
    ticks = tuple(r.randint(14, 28) if skew else tick_ms for _ in range(n))
    net = "net" in on
    part = "partition" in on
    crash = "crash" in on
    pause = "pause" in on
    disk = "disk" in on
    # The planted bugs need their trigger to be common enough for a 200-seed swarm to hit it:
    # they shape the draw, never the production code.
    crash_every = r.choice((400, 800, 1500, 3000)) if crash else 0
    downtime = r.choice((30, 200, 1000)) if crash else 0
    vote_crash_p = r.choice((0.0, 0.1, 0.3)) if crash else 0.0
    if bug == "forget-vote" and crash:
        crash_every, downtime, vote_crash_p = r.choice((200, 400)), r.choice((5, 20)), 0.8
    lazy_flush = 0
    if bug == "ack-before-fsync":
        lazy_flush = r.choice((300, 1000, 3000))
    # Small thresholds in many seeds: compaction and catch-up by snapshot happen often.
    snapshot_threshold = r.choice((10_000, 100, 50, 30, 20))
    op_timeout_ms = r.choice((500, 1000, 2000))
    churn = "churn" in on
    write_retries = r.choice((0, 1, 3, 3))
    follower_read_p = r.choice((0.0, 0.3, 0.7))
    if bug == "dup-retry":
        # The planted client bug shows when retries happen: retries on, appends frequent.
        write_retries, op_timeout_ms = 3, r.choice((300, 500))
    return Params(
        seed=seed,
        nodes=n,
        faults=faults,
        bug=bug,
        storage=storage if storage is not None else drawn_storage(seed),
        tick_ms=tick_ms,
        # Its own generator: adding this draw shifts none of the others.
        log_cache_bytes=derive(seed, "log-cache").choice((None, 0, 200, 1000, 5000)),
        batch_inputs=derive(seed, "batch-inputs").choice((0.0, 0.3, 0.8)),
        tick_ms_by_node=ticks,
        election_ticks=10,
        heartbeat_ticks=2,
        delay_min_ms=1,
        delay_max_ms=r.choice((5, 10, 20)) if net else 5,
        loss=r.choice((0.0, 0.01, 0.05, 0.15)) if net else 0.0,
        dup=r.choice((0.0, 0.02, 0.1)) if net else 0.0,
        spike_p=r.choice((0.0, 0.02, 0.1)) if net else 0.0,
        spike_max_ms=r.choice((50, 200)),
        partition_every_ms=r.choice((500, 1000, 2500)) if part else 0,
        partition_max_ms=r.choice((300, 1000, 3000)) if part else 0,
        crash_every_ms=crash_every,
        downtime_max_ms=downtime,
        vote_crash_p=vote_crash_p,
        pause_every_ms=r.choice((800, 2000, 5000)) if pause else 0,
        pause_max_ms=r.choice((100, 500, 1500)) if pause else 0,
        sync_max_ms=r.choice((0, 1, 3)) if disk else 0,
        slow_sync_p=r.choice((0.0, 0.01, 0.05)) if disk else 0.0,
        slow_sync_max_ms=r.choice((50, 300)) if disk else 0,
        lazy_flush_max_ms=lazy_flush,
        snapshot_threshold=snapshot_threshold,
        snapshot_chunk_bytes=r.choice((512, 2048, 256 * 1024)),
        snapshot_timeout_ticks=r.choice((20, 100)),
        install_crash_p=r.choice((0.0, 0.2, 0.5)) if crash else 0.0,
        spares=r.choice((1, 2)) if churn else 0,
        churn_every_ms=r.choice((300, 800, 2000)) if churn else 0,
        force_remove_p=r.choice((0.0, 0.1, 0.3)) if churn else 0.0,
        wipe_rejoin_p=r.choice((0.5, 0.9)) if churn else 0.0,
        clients=_pick(r.randint(3, 8), clients),
        ops=_pick(r.randint(200, 400), ops),
        keys=r.randint(3, 8),
        op_timeout_ms=op_timeout_ms,
        write_retries=write_retries,
        follower_read_p=follower_read_p,
        safety_ms=r.choice((6000, 8000, 10000)),
        liveness_ticks=400,
    )


def reproduce(p: Params) -> str:
    """The one command line that replays the run drawn as ``p``."""
    line = f"REPRODUCE: python -m sim --seed {p.seed} --nodes {p.nodes} --faults {faults_text(p.faults)}"
    if p.bug:
        line += f" --bug {p.bug}"
    extra = overrides(p)
    if extra:
        line += " " + " ".join(extra)
    return line


def _pick(drawn: int, override: int | None) -> int:
    return drawn if override is None else override


def overrides(p: Params) -> list[str]:
    """Command-line flags that reproduce ``p``'s departures from its seed's own draw."""
    base = draw(p.seed, p.nodes, p.faults, p.bug)
    out = []
    if p.clients != base.clients:
        out += ["--clients", str(p.clients)]
    if p.ops != base.ops:
        out += ["--ops", str(p.ops)]
    if p.storage != base.storage:
        out += ["--storage", p.storage]
    return out
