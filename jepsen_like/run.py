"""``python -m jepsen_like``: one run from start to verdict.

Order: print the seed and parameters, probe every requested fault kind (and say loudly which
cannot run here), build the network namespaces if partitions are on, start the cluster, run
the clients and the nemesis until the time limit, heal everything, wait for a leader, read
every key, stop every process we started (by PID), tear the namespaces down, check the
history, print the verdict and a REPRODUCE line.

Exit codes: 0 linearizable; 1 not linearizable; 2 unknown (the checker's budget ran out);
3 the harness crashed or the cluster never started; 4 liveness: no leader after healing, a
server that exited on its own, or keys that could not be read at the end (the history was
still checked and was not found non-linearizable).
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
from jepsen_like import clock, netns
from jepsen_like.cluster import Cluster
from jepsen_like.nemesis import KINDS, Nemesis
from jepsen_like.workload import Keys, Recorder, Values, Workload, client_loop, final_reads

EXIT_LINEARIZABLE = 0
EXIT_NOT_LINEARIZABLE = 1
EXIT_UNKNOWN = 2
EXIT_CRASH = 3
EXIT_LIVENESS = 4


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
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 10**9)
    if args.keys < 1 or args.clients < 1 or args.time_limit <= 0:
        p.error("--keys, --clients and --time-limit must be positive")
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
        f"faults={','.join(args.kinds) or 'none'} keys={args.keys} clients={args.clients} "
        f"appends={'no' if args.no_append else 'yes'}"
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
    if "skew" in kinds:
        reason = clock.unavailable_reason(workdir)
        if reason is not None:
            unavailable["skew"] = reason
    return [k for k in kinds if k not in unavailable], unavailable


def run(args: argparse.Namespace, workdir: Path, history_path: Path, summary: dict[str, Any]) -> int:
    kinds, unavailable = probe_faults(args.kinds, workdir)
    for kind in args.kinds:
        if kind in unavailable:
            say(f"FAULT {kind}: NOT AVAILABLE HERE -- {unavailable[kind]} (this run goes on without it)")
        else:
            extra = f" ({clock.NOTE})" if kind == "skew" else ""
            say(f"FAULT {kind}: enabled{extra}")
    summary["faults_enabled"] = kinds
    summary["faults_unavailable"] = unavailable
    rng = random.Random(f"{args.seed}:setup")
    network = None
    if "partition" in kinds:
        network = netns.Network(f"bvj{os.getpid() % 100000}", args.nodes)
    clocks = None
    if "skew" in kinds:
        base = {i: round(rng.uniform(-60.0, 60.0), 3) for i in range(1, args.nodes + 1)}
        clocks = clock.Clocks(workdir, base)
        say(f"clock base offsets (s): {base}")
    cluster: Cluster | None = None
    try:
        if network is not None:
            network.setup()
            say(f"network namespaces: hub {network.hub}, nodes {', '.join(network.nodes)} (10.77.0.0/24)")
        cluster = Cluster(args.nodes, workdir, network=network, clocks=clocks, seed=args.seed, log=say)
        try:
            leader = cluster.start_all()
        except TimeoutError as e:
            say(f"cluster did not start: {e}\n{cluster.log_tails()}")
            say(f"VERDICT: crash (cluster did not start) seed={args.seed}")
            return EXIT_CRASH
        say(f"cluster up: {', '.join(f'{n.node_id}={n.url} pid {n.pid}' for n in cluster.nodes)}; leader {leader.node_id}")
        return drive(args, cluster, kinds, workdir, history_path, summary)
    finally:
        if cluster is not None:
            cluster.stop_all()
            say("stopped every server process this run started")
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
    urls = [n.url for n in cluster.nodes]
    workload = Workload(recorder, keys, Values(), lambda: urls, args.op_timeout, appends=not args.no_append)
    nemesis = Nemesis(cluster, kinds, args.seed, workdir / "nemesis.jsonl", say)
    stop = threading.Event()
    stop_at = time.monotonic() + args.time_limit
    threads = [
        threading.Thread(target=client_loop, args=(workload, p, args.seed, stop_at, stop), name=f"client-{p}")
        for p in range(args.clients)
    ]
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
    say(f"workload over: {summarise(recorder.counts)}")
    nemesis.heal()
    liveness: list[str] = list(cluster.unexpected_exits())
    try:
        leader = cluster.wait_leader(timeout_s=30.0)
        say(f"healed; leader {leader.node_id}")
    except TimeoutError as e:
        liveness.append(str(e))
        say(f"no leader after healing: {e}\n{cluster.log_tails()}")
    good, unread = final_reads(workload, first_process=args.clients + 1)
    say(f"final reads: {good} keys read, {len(unread)} unreadable{' ' + str(unread[:10]) if unread else ''}")
    if unread:
        liveness.append(f"{len(unread)} keys could not be read after healing")
    liveness += cluster.unexpected_exits()
    recorder.close()
    summary.update(
        counts={f"{f}:{t}": n for (f, t), n in sorted(recorder.counts.items())},
        faults_injected=nemesis.injected,
        nemesis_errors=nemesis.errors,
        liveness=liveness,
        history=str(history_path),
        workdir=str(workdir),
    )
    say(f"faults injected: {nemesis.injected}" + (f"; nemesis errors: {nemesis.errors}" if nemesis.errors else ""))
    history = load_history(history_path)
    deadline_at = time.monotonic() + args.check_timeout
    result = check_history(history, deadline=lambda: time.monotonic() >= deadline_at)
    summary["verdict"] = result.verdict
    summary["detail"] = result.detail
    say(f"checker: {result.verdict} {result.detail}")
    for line in result.explanation.splitlines():
        say(f"    {line}")
    if result.verdict == "not-linearizable":
        say(f"VERDICT: NOT LINEARIZABLE seed={args.seed} history={history_path} (workdir kept: {workdir})")
        return EXIT_NOT_LINEARIZABLE
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
