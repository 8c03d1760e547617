"""Raft transport speed: codec encode/decode rates and msgs/s between two TcpTransports.

    .venv/bin/python bench/transport_speed.py [--seconds 3]

Both transports run in ONE process and one trio.run, so the loopback figure includes the
sender's and the receiver's work on one core: a conservative bound. The sender keeps a
window of messages in flight (well under the queue bound) so nothing is dropped; the drop
counters are printed to prove it.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from functools import partial

import trio

from beaver_vault.raft.messages import AppendRequest, AppendResponse, Entry, Message
from beaver_vault.transport.codec import FrameDecoder, encode_frame
from beaver_vault.transport.tcp import TcpTransport

VALUE = b"v" * 100
WINDOW = 256


def append(n_entries: int, index: int = 1) -> AppendRequest:
    entries = tuple(Entry(3, index + i, data=VALUE) for i in range(n_entries))
    return AppendRequest(3, "a", "b", index - 1, 3, entries, index - 1, read_seq=index)


def rate(fn: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(100):
            fn()
        count += 100
    return count / elapsed


def bench_codec(seconds: float) -> None:
    print("codec (one core, per message):")
    cases: list[tuple[str, Message]] = [
        ("AppendResponse", AppendResponse(3, "b", "a", True, 100, read_seq=7)),
        ("AppendRequest, 1 entry", append(1)),
        ("AppendRequest, 64 entries", append(64)),
    ]
    for name, msg in cases:
        frame = encode_frame("cluster-1", msg)
        decoder = FrameDecoder()
        enc = rate(partial(encode_frame, "cluster-1", msg), seconds / 6)
        dec = rate(partial(decoder.feed, frame), seconds / 6)
        print(f"  {name:<28} {len(frame):>6} B   encode {enc:>10,.0f}/s   decode {dec:>10,.0f}/s")


async def bench_loopback(n_entries: int, seconds: float) -> None:
    received = 0
    progress = trio.Event()

    def deliver(msg: Message) -> None:
        nonlocal received, progress
        received += 1
        progress.set()

    a = TcpTransport(
        "a", bind_host="127.0.0.1", bind_port=0, deliver=lambda m: None, cluster_id="c", rng=random.Random(1)
    )
    b = TcpTransport("b", bind_host="127.0.0.1", bind_port=0, deliver=deliver, cluster_id="c", rng=random.Random(2))
    async with trio.open_nursery() as nursery:
        port_a = await nursery.start(a.run)
        port_b = await nursery.start(b.run)
        a.set_peers({"b": f"127.0.0.1:{port_b}"})
        b.set_peers({"a": f"127.0.0.1:{port_a}"})
        msgs = [append(n_entries, 1 + i * n_entries) for i in range(64)]
        sent = 0
        # Warm up: establish the connection.
        a.send(msgs[0])
        sent = 1
        while received < 1:
            progress = trio.Event()
            await progress.wait()
        start = time.perf_counter()
        base = received
        while (elapsed := time.perf_counter() - start) < seconds:
            while sent - received < WINDOW:
                a.send(msgs[sent % 64])
                sent += 1
            progress = trio.Event()
            await progress.wait()
        count = received - base
        sa, sb = a.statistics(), b.statistics()
        drops = sa.dropped_queue_full + sa.dropped_unreachable + sb.bad_frames + sb.dropped_unknown_sender
        print(
            f"  AppendRequest, {n_entries:>2} x 100 B entries: {count / elapsed:>9,.0f} msgs/s"
            f"  ({count * n_entries / elapsed:>10,.0f} entries/s, {sa.sent} frames sent, drops {drops})"
        )
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args()
    bench_codec(args.seconds)
    print("loopback, two transports in one process (window of", WINDOW, "messages):")
    for n in (1, 64):
        trio.run(bench_loopback, n, args.seconds)


if __name__ == "__main__":
    main()
