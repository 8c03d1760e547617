"""``python -m jepsen_like``: one run from start to verdict.

Order: print the seed and parameters, probe every requested fault kind (a kind that cannot
run here is an error, exit 5, unless ``--allow-missing-faults``), build the network namespaces
if partitions are on, start the cluster, run the clients and the nemesis until the time limit,
heal everything, restore the membership, wait for a leader, read every key, check that every
member converged to the same state, stop every process we started (by PID), tear the
namespaces down, check the history, write the timeline picture, print the verdict and a
REPRODUCE line.

Exit codes: 0 linearizable (and converged); 1 not linearizable; 2 unknown (the checker's
budget ran out); 3 the harness crashed or the cluster never started; 4 liveness: no leader
after healing, a server that exited on its own, or keys that could not be read at the end (the
history was still checked and was not found non-linearizable); 5 a requested fault cannot run
here; 6 the members' states differ at the end; 7 a write answered unknown took effect after a
newer acknowledged write (``report.late_unknown``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from beaver_vault.checker import check_history, load_history
from jepsen_like import clock, converge, disk, netns, report
from jepsen_like.cluster import Cluster
from jepsen_like.nemesis import KINDS, Nemesis
from jepsen_like.workload import Keys, Recorder, Values, Workload, client_loop, final_reads

EXIT_LINEARIZABLE = 0
EXIT_NOT_LINEARIZABLE = 1
EXIT_UNKNOWN = 2
EXIT_CRASH = 3
EXIT_LIVENESS = 4
EXIT_FAULT_UNAVAILABLE = 5
EXIT_DIVERGED = 6
EXIT_LATE_UNKNOWN = 7


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m jepsen_like",
        description="Real beaver-vault processes, real faults, HTTP clients, a linearizability check.",
    )
    p.add_argument("--nodes", type=int, choices=(3, 5), default=3)
    p.add_argument("--time-limit", type=float, default=30.0, metavar="S", help="seconds of workload")
    p.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    p.add_argument("--faults", default="kill,pause", help=f"comma list of {','.join(KINDS)}; 'none' for none")
    p.add_argument("--history", type=Path, default=None, metavar="FILE", help="default: <workdir>/history.jsonl")
    p.add_argument("--keys", type=int, default=6, help="active key slots")
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--ops-per-key", type=int, default=150, help="invocations before a key is retired")
    p.add_argument("--op-timeout", type=float, default=4.0, metavar="S", help="per-request client timeout")
    p.add_argument("--no-append", action="store_true", help="no list keys / append operations")
    p.add_argument("--workdir", type=Path, default=None, help="data, logs, nemesis log; always kept (default: a new temp dir)")
    p.add_argument("--check-timeout", type=float, default=120.0, metavar="S")
    p.add_argument("--summary", type=Path, default=None, metavar="FILE", help="write a JSON summary here")
    p.add_argument("--concurrent", type=int, default=1, metavar="N", help="up to N fault kinds at once per round")
    p.add_argument(
        "--allow-missing-faults", action="store_true", help="run without the requested faults this machine cannot inject"
    )
    p.add_argument(
        "--snapshot-threshold", type=int, default=None, metavar="N",
        help="servers compact their log every N entries (default: the server's; 200 with the snapshot fault)",
    )  # fmt: skip
    p.add_argument("--idempotent-every", type=int, default=3, metavar="K", help="every K-th client uses idempotency keys (0: none)")
    p.add_argument(
        "--pipelined-every",
        type=int,
        default=2,
        metavar="K",
        help="every K-th client talks the pipelined protocol instead of HTTP (0: none; default 2)",
    )
    p.add_argument("--timeline", type=Path, default=None, metavar="FILE", help="default: <workdir>/timeline.html")
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 10**9)
    if args.keys < 1 or args.clients < 1 or args.time_limit <= 0 or args.concurrent < 1:
        p.error("--keys, --clients, --concurrent and --time-limit must be positive")
    kinds = [] if args.faults.strip() in ("", "none") else [k.strip() for k in args.faults.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        p.error(f"unknown fault kinds {unknown}; choose from {', '.join(KINDS)}")
    args.kinds = list(dict.fromkeys(kinds))
    return args


def reproduce_line(args: argparse.Namespace) -> str:
    parts = [
        "python", "-m", "jepsen_like",
        "--nodes", str(args.nodes),
        "--time-limit", f"{args.time_limit:g}",
        "--seed", str(args.seed),
        "--faults", ",".join(args.kinds) or "none",
        "--keys", str(args.keys),
        "--clients", str(args.clients),
    ]  # fmt: skip
    if args.ops_per_key != 150:
        parts += ["--ops-per-key", str(args.ops_per_key)]
    if args.concurrent != 1:
        parts += ["--concurrent", str(args.concurrent)]
    if args.snapshot_threshold is not None:
        parts += ["--snapshot-threshold", str(args.snapshot_threshold)]
    if args.idempotent_every != 3:
        parts += ["--idempotent-every", str(args.idempotent_every)]
    if args.pipelined_every != 2:
        parts += ["--pipelined-every", str(args.pipelined_every)]
    if args.allow_missing_faults:
        parts.append("--allow-missing-faults")
    if args.no_append:
        parts.append("--no-append")
    return "REPRODUCE: " + shlex.join(parts)


def say(text: str) -> None:
    print(text, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="jepsen-like-"))
    workdir.mkdir(parents=True, exist_ok=True)
    history_path: Path = args.history or workdir / "history.jsonl"
    say(
        f"jepsen_like: seed={args.seed} nodes={args.nodes} time-limit={args.time_limit:g}s "
        f"faults={','.join(args.kinds) or 'none'} concurrent={args.concurrent} keys={args.keys} "
        f"clients={args.clients} appends={'no' if args.no_append else 'yes'}"
    )
    say(f"workdir: {workdir}  history: {history_path}")
    summary: dict[str, Any] = {"seed": args.seed, "reproduce": reproduce_line(args)}
    try:
        code = run(args, workdir, history_path, summary)
    except Exception:
        traceback.print_exc()
        say(f"VERDICT: crash (the harness failed) seed={args.seed}")
        code = EXIT_CRASH
    summary["exit_code"] = code
    if code != EXIT_LINEARIZABLE:
        say(reproduce_line(args))
    if args.summary is not None:
        args.summary.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return code


def probe_faults(kinds: list[str], workdir: Path) -> tuple[list[str], dict[str, str]]:
    """(kinds that work here, {kind: why not} for those that do not)."""
    unavailable: dict[str, str] = {}
    if "partition" in kinds:
        reason = netns.unavailable_reason()
        if reason is not None:
            unavailable["partition"] = reason
    if "disk" in kinds:
        reason = disk.unavailable_reason()
        if reason is not None:
            unavailable["disk"] = reason
    if "skew" in kinds or "clock" in kinds:
        reason = clock.unavailable_reason(workdir)
        if reason is not None:
            for kind in ("skew", "clock"):
                if kind in kinds:
                    unavailable[kind] = reason
    return [k for k in kinds if k not in unavailable], unavailable


def run(args: argparse.Namespace, workdir: Path, history_path: Path, summary: dict[str, Any]) -> int:
    kinds, unavailable = probe_faults(args.kinds, workdir)
    for kind in args.kinds:
        if kind in unavailable:
            then = "this run goes on without it" if args.allow_missing_faults else "an error"
            say(f"FAULT {kind}: NOT AVAILABLE HERE -- {unavailable[kind]} ({then})")
        else:
            extra = f" ({clock.NOTE})" if kind in ("skew", "clock") else ""
            say(f"FAULT {kind}: enabled{extra}")
    summary["faults_enabled"] = kinds
    summary["faults_unavailable"] = unavailable
    if unavailable and not args.allow_missing_faults:
        say(
            f"VERDICT: requested faults cannot run here: {', '.join(sorted(unavailable))} "
            "(install them: bash scripts/setup-env.sh as root; or pass --allow-missing-faults)"
        )
        return EXIT_FAULT_UNAVAILABLE
    rng = random.Random(f"{args.seed}:setup")
    spare = 1 if "membership" in kinds else 0
    slots = args.nodes + spare
    network = None
    if "partition" in kinds:
        network = netns.Network(f"bvj{os.getpid() % 100000}", slots)
    clocks = None
    if "skew" in kinds or "clock" in kinds:
        base = {i: round(rng.uniform(-60.0, 60.0), 3) for i in range(1, slots + 1)}
        clocks = clock.Clocks(workdir, base)
        say(f"clock base offsets (s): {base}")
    cluster: Cluster | None = None
    disks = disk.Disks(workdir, slots) if "disk" in kinds else None
    try:
        if disks is not None:
            disks.setup()
            say(f"lazyfs layers mounted under {workdir / 'mnt'} (un-fsynced writes are lost on a disk fault)")
        if network is not None:
            network.setup()
            say(f"network namespaces: hub {network.hub}, nodes {', '.join(network.nodes)} (10.77.0.0/24)")
        threshold = args.snapshot_threshold
        if threshold is None and "snapshot" in kinds:
            threshold = 200
        flags = ("--snapshot-threshold", str(threshold)) if threshold is not None else ()
        summary["snapshot_threshold"] = threshold
        cluster = Cluster(
            args.nodes, workdir, network=network, clocks=clocks, seed=args.seed, log=say, spare=spare, extra_flags=flags,
            disks=disks,
        )
        try:
            leader = cluster.start_all()
        except TimeoutError as e:
            say(f"cluster did not start: {e}\n{cluster.log_tails()}")
            say(f"VERDICT: crash (cluster did not start) seed={args.seed}")
            return EXIT_CRASH
        say(f"cluster up: {', '.join(f'{n.node_id}={n.url} pid {n.pid}' for n in cluster.members())}; leader {leader.node_id}")
        return drive(args, cluster, kinds, workdir, history_path, summary)
    finally:
        if cluster is not None:
            cluster.stop_all()
            say("stopped every server process this run started")
        if disks is not None:
            for p in disks.teardown():
                say(f"teardown problem: {p}")
        if network is not None:
            problems = network.teardown()
            for p in problems:
                say(f"teardown problem: {p}")


def drive(
    args: argparse.Namespace,
    cluster: Cluster,
    kinds: list[str],
    workdir: Path,
    history_path: Path,
    summary: dict[str, Any],
) -> int:
    recorder = Recorder(history_path)
    keys = Keys(args.keys, args.ops_per_key, lists=not args.no_append)

    def members() -> list[tuple[str, str]]:
        return [(n.node_id, n.url) for n in cluster.members() if not n.joining]

    workload = Workload(recorder, keys, Values(), members, args.op_timeout, appends=not args.no_append)
    nemesis_log = workdir / "nemesis.jsonl"
    nemesis = Nemesis(cluster, kinds, args.seed, nemesis_log, say, concurrent=args.concurrent, t0=recorder.t0_s)
    stop = threading.Event()
    stop_at = time.monotonic() + args.time_limit
    every = args.idempotent_every
    states: list[Any] = []

    def client(p: int) -> None:
        pipelined = args.pipelined_every > 0 and p % args.pipelined_every == 1 % args.pipelined_every
        states.append(
            client_loop(workload, p, args.seed, stop_at, stop, idempotent=every > 0 and p % every == 0, pipelined=pipelined)
        )

    threads = [threading.Thread(target=client, args=(p,), name=f"client-{p}") for p in range(args.clients)]
    nemesis_thread = threading.Thread(target=nemesis.run, args=(stop, stop_at), name="nemesis")
    for t in threads:
        t.start()
    nemesis_thread.start()
    try:
        nemesis_thread.join()
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join()
        nemesis_thread.join()
        raise
    workload_end_s = time.monotonic() - recorder.t0_s
    say(f"workload over: {summarise(recorder.counts)}")
    nemesis.heal()
    liveness: list[str] = list(cluster.unexpected_exits())
    try:
        done = cluster.reconcile(timeout_s=60.0)
        if done:
            nemesis.record("reconcile", what=done)
        leader = cluster.wait_leader(timeout_s=30.0)
        say(f"healed; leader {leader.node_id}; members {[n.node_id for n in cluster.members()]}")
    except TimeoutError as e:
        liveness.append(str(e))
        say(f"no leader or membership after healing: {e}\n{cluster.log_tails()}")
    good, unread = final_reads(workload, first_process=args.clients + 1)
    say(f"final reads: {good} keys read, {len(unread)} unreadable{' ' + str(unread[:10]) if unread else ''}")
    if unread:
        liveness.append(f"{len(unread)} keys could not be read after healing")
    converged, how = converge.check(cluster)
    say(f"convergence: {'every member holds the same state' if converged else 'MEMBERS DIFFER'}: {how}")
    snapshots = {n.node_id: (cluster.status(n) or {}).get("snapshot_index") for n in cluster.members()}
    say(f"snapshot index per member (log compacted up to): {snapshots}")
    liveness += cluster.unexpected_exits()
    recorder.close()
    events = report.load(history_path)
    avail = report.availability(events, workload_end_s)
    late = report.late_unknown(events)
    say(
        f"availability: mean {avail.mean_ok_per_s:.1f} ok ops/s, lowest second {avail.min_ok_per_s}, "
        f"longest window without a successful write {avail.longest_write_gap_s:.2f} s (from {avail.gap_start_s:.1f} s)"
    )
    say(f"late unknown writes (took effect after a newer acknowledged write): {len(late)}")
    for item in late[:10]:
        say(f"    {item}")
    moves = sum(getattr(c, "moves", 0) for c in states)
    pipelined_requests = sum(c.pipe.sent for c in states if getattr(c, "pipe", None) is not None)
    say(f"requests over the pipelined protocol: {pipelined_requests}")
    summary.update(
        pipelined_requests=pipelined_requests,
        counts={f"{f}:{t}": n for (f, t), n in sorted(recorder.counts.items())},
        faults_injected=nemesis.injected,
        nemesis_rounds=nemesis.rounds,
        max_concurrent_faults=nemesis.max_concurrent_seen,
        nemesis_errors=nemesis.errors,
        liveness=liveness,
        converged=converged,
        convergence=how,
        snapshot_index=snapshots,
        late_unknown=late,
        client_moves=moves,
        availability=avail.as_dict(),
        history=str(history_path),
        workdir=str(workdir),
    )
    say(f"faults injected: {nemesis.injected} in {nemesis.rounds} rounds (up to {nemesis.max_concurrent_seen} at once)"
        + (f"; nemesis errors: {nemesis.errors}" if nemesis.errors else ""))
    history = load_history(history_path)
    deadline_at = time.monotonic() + args.check_timeout
    result = check_history(history, deadline=lambda: time.monotonic() >= deadline_at)
    summary["verdict"] = result.verdict
    summary["detail"] = result.detail
    summary["ops"] = result.ops_checked
    say(f"checker: {result.verdict} {result.detail}")
    for line in result.explanation.splitlines():
        say(f"    {line}")
    timeline = args.timeline or workdir / "timeline.html"
    try:
        nemesis_events = report.load(nemesis_log) if nemesis_log.exists() else []
        title = f"jepsen_like seed {args.seed}: {args.nodes} nodes, faults {','.join(kinds) or 'none'}, {result.verdict}"
        timeline.write_text(report.timeline_html(title, avail, nemesis_events, workload_end_s, summary), encoding="utf-8")
        say(f"timeline: {timeline}")
    except (OSError, ValueError) as e:
        say(f"timeline not written: {e!r}")
    if result.verdict == "not-linearizable":
        say(f"VERDICT: NOT LINEARIZABLE seed={args.seed} history={history_path} (workdir kept: {workdir})")
        return EXIT_NOT_LINEARIZABLE
    if not converged:
        say(f"VERDICT: members diverged seed={args.seed} workdir={workdir}")
        return EXIT_DIVERGED
    if late:
        say(f"VERDICT: late unknown writes seed={args.seed} history={history_path}")
        return EXIT_LATE_UNKNOWN
    if liveness:
        for item in liveness:
            say(f"liveness: {item}")
        say(f"VERDICT: liveness failure ({result.verdict}) seed={args.seed} workdir={workdir}")
        return EXIT_LIVENESS
    if result.verdict != "linearizable":
        say(f"VERDICT: unknown seed={args.seed} history={history_path}")
        return EXIT_UNKNOWN
    say(f"VERDICT: linearizable seed={args.seed} ({result.ops_checked} operations on {result.keys_checked} keys)")
    return EXIT_LINEARIZABLE


def summarise(counts: dict[tuple[str, str], int]) -> str:
    fs = sorted({f for f, _ in counts})
    return "; ".join(
        f"{f} " + "/".join(f"{counts.get((f, t), 0)} {t}" for t in ("ok", "fail", "info")) for f in fs
    )


if __name__ == "__main__":
    sys.exit(main())
