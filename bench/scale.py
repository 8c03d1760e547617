"""Scale benchmark (issue 9): a 3-node cluster holding many keys and large values.

    .venv/bin/python bench/scale.py                              # the issue's size: 1M keys + 400 x 1 MiB
    .venv/bin/python bench/scale.py --keys 100000 --big-values 40 --seconds 5   # scaled down

One run, real ``beaver-vault server`` processes on loopback (``tests/e2e_cluster.py``), the
raw-socket closed-loop client of ``bench/load.py``:

1. the write rate over 1,000 keys at 1, 16 and 64 clients (100-byte JSON values);
2. loading: ``--keys`` keys of 100 B through transactions of ``--txn-size`` puts by
   ``--loaders`` concurrent loaders, then ``--big-values`` values of ``--big-value-bytes``;
3. the write rate at 16 clients over the big keyspace and over the 1,000 keys, in ``--rounds``
   alternating pairs of phases (big, small, big, small, ...) so that a drift in the machine's
   speed over the run (it is shared) falls on both alike; each rate is the operations of all its
   phases over their summed time, and their ratio is the issue's target (>= 0.9);
4. a 4th node joins (``POST /raft/join`` to the leader, answered once it is a voter): the
   join's answer and how long until it had applied the leader's commit index.

Throughout: each node's RSS (sampled every ``--rss-every-s``; the peak is reported), the term
on every node (before the first write and at the end: it must not move), and at the end the
event loop's lateness p99 from each node's ``/metrics`` (the histogram covers the whole run).
The figures are printed and, with ``--json FILE``, written as JSON. ``run(...)`` is also what
``tests/test_scale_small.py`` calls with small sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from e2e_cluster import Cluster, Node, wait_for  # noqa: E402
from load import VALUE, Conn, PhaseResult, put_request, run_phase  # noqa: E402

HOST = "127.0.0.1"
SMALL_KEYS = 1000


@dataclass
class ScaleResult:
    params: dict[str, Any]
    rate_1k: dict[int, float] = field(default_factory=dict)  # clients -> writes/s, before loading
    load_s: float = 0.0
    load_keys_per_s: float = 0.0
    big_load_s: float = 0.0
    rate_big_16: float = 0.0
    p99_big_16_ms: float = 0.0
    rate_1k_after_16: float = 0.0
    ratio: float = 0.0
    rounds: list[tuple[float, float]] = field(default_factory=list)  # (big, 1k) writes/s per round
    rss_peak_mb: dict[str, float] = field(default_factory=dict)
    rss_end_mb: dict[str, float] = field(default_factory=dict)
    terms_before: dict[str, int] = field(default_factory=dict)
    terms_after: dict[str, int] = field(default_factory=dict)
    lateness_p99_ms: dict[str, float] = field(default_factory=dict)
    join_status: int = 0
    join_answer_s: float = 0.0
    join_caught_up_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"params: {self.params}",
            "1k-key writes/s before loading: " + ", ".join(f"{c} clients {r:.0f}" for c, r in sorted(self.rate_1k.items())),
            f"load: {self.params['keys']} keys in {self.load_s:.1f} s ({self.load_keys_per_s:.0f} keys/s); "
            f"{self.params['big_values']} big values in {self.big_load_s:.1f} s",
            f"writes/s at 16 clients over the big keyspace: {self.rate_big_16:.0f} (p99 {self.p99_big_16_ms:.1f} ms); "
            f"over 1k keys in the same run: {self.rate_1k_after_16:.0f}; ratio {self.ratio:.2f} (target >= 0.9); "
            f"per round (big/1k): " + ", ".join(f"{b:.0f}/{k:.0f}" for b, k in self.rounds),
            "RSS peak MB: " + ", ".join(f"{n} {v:.0f}" for n, v in sorted(self.rss_peak_mb.items())) + " (target <= 150)",
            "RSS end MB: " + ", ".join(f"{n} {v:.0f}" for n, v in sorted(self.rss_end_mb.items())),
            f"terms before: {self.terms_before}; after: {self.terms_after} "
            f"({'unchanged' if self.terms_unchanged() else 'MOVED'})",
            "event-loop lateness p99 ms: "
            + ", ".join(f"{n} {v:.0f}" for n, v in sorted(self.lateness_p99_ms.items()))
            + " (target < 50; bucket upper bound)",
            f"4th node: join answered {self.join_status} after {self.join_answer_s:.1f} s; "
            f"caught up {self.join_caught_up_s:.1f} s after the join was asked (target: 200, <= 60 s)",
        ]
        if self.errors:
            lines.append(f"errors: {self.errors}")
        return "\n".join(lines)

    def terms_unchanged(self) -> bool:
        return all(self.terms_after.get(n) == t for n, t in self.terms_before.items())


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler:
    """Samples every live node's RSS in a thread; keeps each node's peak."""

    def __init__(self, cluster: Cluster, every_s: float) -> None:
        self.cluster = cluster
        self.every_s = every_s
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)

    def sample(self) -> dict[str, float]:
        now = {}
        for n in list(self.cluster.nodes.values()):
            if n.proc is not None and n.proc.poll() is None:
                v = rss_mb(n.proc.pid)
                now[n.node_id] = v
                self.peak[n.node_id] = max(self.peak.get(n.node_id, 0.0), v)
        return now

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def txn_body(keys: list[str]) -> bytes:
    ops = ",".join(f'{{"op":"put","key":"{k}","value":{VALUE.decode()}}}' for k in keys)
    return f'{{"compare":[],"success":[{ops}]}}'.encode()


def txn_request(host: str, body: bytes) -> bytes:
    return (
        f"POST /api/v1/txn HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def big_request(host: str, key: str, nbytes: int) -> bytes:
    body = json.dumps("b" * (nbytes - 2)).encode()
    return (
        f"PUT /api/v1/kv/{key} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def key_name(i: int) -> str:
    return f"s/{i:08d}"


async def _send_until_ok(conn: Conn, req: bytes, label: str, errors: dict[str, int]) -> None:
    """Send ``req`` until it is answered 200 (at most 50 tries, 0.2 s apart), counting the others
    in ``errors`` under ``label``."""
    for _attempt in range(50):
        try:
            status, _ = await conn.request(req)
        except (OSError, ConnectionError, trio.BrokenResourceError):
            await conn.aclose()
            status = 599
        if status == 200:
            return
        errors[f"{label} {status}"] = errors.get(f"{label} {status}", 0) + 1
        await trio.sleep(0.2)


async def _load(port: int, keys: int, txn_size: int, loaders: int, errors: dict[str, int]) -> None:
    batches = (keys + txn_size - 1) // txn_size

    async def loader(c: int) -> None:
        conn = Conn(HOST, port)
        try:
            for b in range(c, batches, loaders):
                names = [key_name(i) for i in range(b * txn_size, min(keys, (b + 1) * txn_size))]
                await _send_until_ok(conn, txn_request(HOST, txn_body(names)), "load", errors)
        finally:
            await conn.aclose()

    async with trio.open_nursery() as nursery:
        for c in range(loaders):
            nursery.start_soon(loader, c)


async def _load_big(port: int, count: int, nbytes: int, errors: dict[str, int]) -> None:
    conn = Conn(HOST, port)
    try:
        for i in range(count):
            await _send_until_ok(conn, big_request(HOST, f"big/{i:04d}", nbytes), "big", errors)
    finally:
        await conn.aclose()


def lateness_p99_ms(node: Node) -> float:
    """The p99 of ``beaver_vault_event_loop_lateness_seconds`` (its bucket's upper bound), ms."""
    text = httpx.get(f"{node.url}/metrics", timeout=10).text
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith("beaver_vault_event_loop_lateness_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return 0.0
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= 0.99 * total:
            return bound * 1000
    return float("inf")


def terms(cluster: Cluster) -> dict[str, int]:
    out = {}
    for n in cluster.live():
        st = n.status(timeout_s=10)
        if st is not None:
            out[n.node_id] = int(st["term"])
    return out


def run(
    root: Path,
    *,
    keys: int,
    big_values: int,
    big_value_bytes: int,
    seconds: float,
    rounds: int = 3,
    loaders: int = 4,
    txn_size: int = 128,
    clients: tuple[int, ...] = (1, 16, 64),
    join: bool = True,
    rss_every_s: float = 0.5,
    node_args: tuple[str, ...] = (),
    quiet: bool = False,
) -> ScaleResult:
    params = {
        "keys": keys,
        "big_values": big_values,
        "big_value_bytes": big_value_bytes,
        "seconds": seconds,
        "rounds": rounds,
        "loaders": loaders,
        "txn_size": txn_size,
        "node_args": list(node_args),
    }
    res = ScaleResult(params)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    body_max = str(max(2 * 1024 * 1024, big_value_bytes + 64 * 1024))
    flags = ("--max-body-bytes", body_max, "--request-timeout-s", "10", "--forward-timeout-s", "15", *node_args)
    cluster = Cluster(root, extra_args=flags)
    try:
        leader = cluster.start_cluster(3)
        port = leader.http_port
        with RssSampler(cluster, rss_every_s) as rss:
            small = [put_request(HOST, f"k{i}") for i in range(SMALL_KEYS)]
            trio.run(_preload_small, port, small)
            res.terms_before = terms(cluster)
            say(f"cluster up, leader {leader.node_id}, terms {res.terms_before}")
            pids = {n.node_id: n.proc.pid for n in cluster.live() if n.proc is not None}
            for c in clients:
                r = run_phase(f"writes, {SMALL_KEYS} keys", HOST, port, small, c, seconds, servers=pids)
                res.rate_1k[c] = r.ops_per_s
                _count(res.errors, r.statuses)
            t0 = time.monotonic()
            trio.run(_load, port, keys, txn_size, loaders, res.errors)
            res.load_s = time.monotonic() - t0
            res.load_keys_per_s = keys / res.load_s if res.load_s else 0.0
            say(f"loaded {keys} keys in {res.load_s:.1f} s; RSS {rss.sample()}")
            t0 = time.monotonic()
            trio.run(_load_big, port, big_values, big_value_bytes, res.errors)
            res.big_load_s = time.monotonic() - t0
            say(f"loaded {big_values} x {big_value_bytes} B in {res.big_load_s:.1f} s; RSS {rss.sample()}")
            big = [put_request(HOST, key_name(i)) for i in range(0, keys, max(1, keys // 20_000))] if keys else small
            ops = {"big": 0, "small": 0}
            wall = {"big": 0.0, "small": 0.0}
            big_latencies: list[float] = []
            for _ in range(max(1, rounds)):
                rb = run_phase(f"writes, {keys} keys", HOST, port, big, 16, seconds, servers=pids)
                rs = run_phase(f"writes, {SMALL_KEYS} keys (after loading)", HOST, port, small, 16, seconds, servers=pids)
                res.rounds.append((rb.ops_per_s, rs.ops_per_s))
                big_latencies += rb.latencies
                for kind, r in (("big", rb), ("small", rs)):
                    ops[kind] += r.ops
                    wall[kind] += r.wall_s
                    _count(res.errors, r.statuses)
            res.rate_big_16 = ops["big"] / wall["big"] if wall["big"] else 0.0
            res.rate_1k_after_16 = ops["small"] / wall["small"] if wall["small"] else 0.0
            res.p99_big_16_ms = PhaseResult("big", 16, latencies=big_latencies).pct_ms(0.99)
            res.ratio = res.rate_big_16 / res.rate_1k_after_16 if res.rate_1k_after_16 else 0.0
            if join:
                _join_fourth(cluster, leader, res)
                say(f"4th node: {res.join_status} after {res.join_answer_s:.1f} s, caught up after {res.join_caught_up_s:.1f} s")
            res.terms_after = terms(cluster)
            res.rss_end_mb = rss.sample()
        res.rss_peak_mb = dict(rss.peak)
        for n in cluster.live():
            res.lateness_p99_ms[n.node_id] = lateness_p99_ms(n)
    finally:
        cluster.close()
    say(res.summary())
    return res


async def _preload_small(port: int, requests: list[bytes]) -> None:
    conn = Conn(HOST, port)
    try:
        for req in requests:
            await conn.request(req)
    finally:
        await conn.aclose()


def _count(errors: dict[str, int], statuses: dict[int, int]) -> None:
    for status, n in statuses.items():
        errors[f"write {status}"] = errors.get(f"write {status}", 0) + n


def _join_fourth(cluster: Cluster, leader: Node, res: ScaleResult) -> None:
    node4 = cluster.add("node4")
    node4.start()
    node4.wait_ready(timeout_s=60)
    t0 = time.monotonic()
    try:
        r = httpx.post(
            f"{leader.url}/api/v1/raft/join",
            json={"NodeID": "node4", "RaftAddress": node4.raft_address},
            timeout=1800,
        )
        res.join_status = r.status_code
    except httpx.HTTPError as e:
        res.errors[f"join {type(e).__name__}"] = 1
    res.join_answer_s = time.monotonic() - t0
    st = leader.status(timeout_s=10) or {}
    target = int(st.get("commit_index", 0))

    def caught_up() -> bool:
        s = node4.status(timeout_s=5)
        return s is not None and int(s["applied_index"]) >= target

    try:
        wait_for("node4 caught up", caught_up, 600, interval_s=0.1)
    except AssertionError:
        res.errors["join not caught up"] = 1
    res.join_caught_up_s = time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--big-values", type=int, default=400)
    p.add_argument("--big-value-bytes", type=int, default=1024 * 1024)
    p.add_argument("--seconds", type=float, default=10.0, help="each measured write phase")
    p.add_argument("--rounds", type=int, default=3, help="alternating pairs of big-keyspace / 1k-key phases")
    p.add_argument("--loaders", type=int, default=4)
    p.add_argument("--txn-size", type=int, default=128)
    p.add_argument("--clients", default="1,16,64", help="client counts of the 1k-key write rate")
    p.add_argument("--no-join", action="store_true")
    p.add_argument("--node-arg", action="append", default=[], help="extra flag for every node (repeatable)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--dir", type=Path, help="where the nodes' data goes (default: a temporary directory)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="beaver-vault-scale-", dir=a.dir) as tmp:
        res = run(
            Path(tmp),
            keys=a.keys,
            big_values=a.big_values,
            big_value_bytes=a.big_value_bytes,
            seconds=a.seconds,
            rounds=a.rounds,
            loaders=a.loaders,
            txn_size=a.txn_size,
            clients=tuple(int(c) for c in a.clients.split(",")),
            join=not a.no_join,
            node_args=tuple(a.node_arg),
        )
    if a.json:
        a.json.write_text(json.dumps(asdict(res), indent=2, default=str))


if __name__ == "__main__":
    main()
