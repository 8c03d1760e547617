"""A hostile machine on the network (fault class ``hostile``): corrupted and absurd frames.

"mallory" reaches every node's raft port and holds a certificate of the cluster's CA naming
"mallory" (the strongest position mutual TLS allows an outsider: a machine that is not a
member). Each strike opens one connection to one node and sends bytes over it. They go
through exactly what production runs on an inbound connection (``transport.codec`` and
``transport.inbound.admit`` with the certificate's identity, then ``NodeDriver.receive``), so
the swarm checks the real defences, not a model of them. What mallory sends:

* garbage bytes, and valid frames with a few bytes flipped;
* hand-built frames with terms or indexes SQLite cannot hold (2**63-1, 2**63, 2**64-1) or
  just above the codec's cap (2**62+1): they once killed nodes;
* messages that are absurd on their face (entries not contiguous, terms going backwards, a
  configuration entry that does not decode);
* forgeries: plausible Raft messages (appends with data of its choice, acknowledgements,
  vote requests with the transfer flag, TimeoutNow) claiming to come from a member -- the
  leader, say -- carrying the cluster id (which is public);
* the same messages under its own name, some after probing the node first (so the node
  knows its address: it must still not take Raft messages from a mere prober).

Not modelled: a member that turns hostile, and development mode without TLS (where anyone on
the host can claim any id: that mode is for loopback only). Every strike is counted in
``world.stats`` (``hostile_frames``, ``hostile_delivered``: messages that reached a driver).
Mallory never sends an AdoptRequest with a well-formed member list: adopting a pristine spare
into a made-up cluster, or re-introducing itself, is what a holder of a node certificate can
do (the PKI must issue node certificates only to nodes).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from beaver_vault.raft.messages import (
    AdoptRequest,
    AppendRequest,
    AppendResponse,
    Entry,
    EntryKind,
    Message,
    ProbeRequest,
    TimeoutNow,
    VoteRequest,
)
from beaver_vault.transport.codec import CodecError, FrameDecoder, encode_frame
from beaver_vault.transport.inbound import CLOSE, OK, admit
from sim.params import derive

if TYPE_CHECKING:
    from sim.machine import SimNode
    from sim.world import World

MALLORY = "mallory"
ABSURD_INTS = (2**63 - 1, 2**63, 2**64 - 1, 2**62 + 1)


class Hostile:
    # The connection's identity comes from mallory's certificate (mutual TLS). Tests turn this
    # off to show the swarm notices forgeries when nothing authenticates the sender.
    authenticated = True

    def __init__(self, world: World) -> None:
        self.w = world
        self.rng = derive(world.params.seed, "hostile")
        on = "hostile" in world.params.faults
        self.every_ms = self.rng.choice((5, 20, 100)) if on else 0
        self.running = False
        world.stats.setdefault("hostile_frames", 0)
        world.stats.setdefault("hostile_delivered", 0)

    def start(self) -> None:
        if self.every_ms and not self.running:
            self.running = True
            self.w.queue.after(self.every_ms, self._strike)

    def stop(self) -> None:
        self.running = False

    # ---------------------------------------------------------------- one connection

    def _strike(self) -> None:
        if not self.running:
            return
        self.w.queue.after(1 + int(self.rng.expovariate(1.0 / self.every_ms)), self._strike)
        targets = [n for n in self.w.nodes if n.driver is not None]
        if not targets:
            return
        node = self.rng.choice(targets)
        data = self._bytes_for(node)
        self.w.stats["hostile_frames"] += 1
        self._connection(node, data)

    def _connection(self, node: SimNode, data: bytes) -> None:
        """What the TCP transport does with one inbound connection carrying ``data``."""
        decoder = FrameDecoder()
        try:
            frames = decoder.feed(data)
        except CodecError:
            return  # bad framing: the connection is closed
        for cluster_id, msg in frames:
            d = node.driver
            if d is None:
                return
            peers = getattr(d.transport, "peers", {})
            verdict = admit(
                msg,
                frame_cluster_id=cluster_id,
                identity=MALLORY if self.authenticated else None,
                own_id=node.id,
                own_cluster_id=d.cluster_id,
                known_senders=peers,
            )
            if verdict in CLOSE:
                return
            if verdict != OK or msg.dst != node.id:
                continue
            self.w.stats["hostile_delivered"] += 1
            self.w.deliver(msg, cluster_id)

    # ---------------------------------------------------------------- what to send

    def _bytes_for(self, node: SimNode) -> bytes:
        r = self.rng
        d = node.driver
        assert d is not None
        cluster = d.cluster_id
        kind = r.randrange(7)
        if kind == 0:
            return r.randbytes(r.randint(0, 64))
        if kind == 1:
            return self._raw_vote(cluster, node.id, r.choice(ABSURD_INTS))
        if kind == 2:
            frame = bytearray(encode_frame(cluster, self._plausible(node, forged=r.random() < 0.5)))
            for _ in range(r.randint(1, 4)):
                frame[r.randrange(len(frame))] = r.randrange(256)
            return bytes(frame)
        if kind == 3:
            return encode_frame(cluster, self._absurd(node))
        if kind == 4:  # a forgery in a member's name
            return encode_frame(cluster, self._plausible(node, forged=True))
        if kind == 5:  # probe first, then speak as itself on the same connection
            probe = ProbeRequest(MALLORY, node.id, r.getrandbits(62), "mallory:7000")
            return encode_frame(cluster, probe) + encode_frame(cluster, self._plausible(node, forged=False))
        return encode_frame(cluster, self._plausible(node, forged=False))

    def _plausible(self, node: SimNode, *, forged: bool) -> Message:
        r = self.rng
        d = node.driver
        assert d is not None
        members = [m for m in d.core.membership.ids if m != node.id]
        src = r.choice(members) if forged and members else MALLORY
        term = d.core.term + r.choice((0, 0, 1, 5))
        last = d.core.log.last_index
        choice = r.randrange(5)
        if choice == 0:
            prev = max(d.core.log.offset, last - r.randint(0, 3))
            prev_term = min(term, d.core.log.term(prev))
            entries = tuple(
                Entry(term, prev + 1 + i, EntryKind.NORMAL, r.randbytes(r.randint(0, 16))) for i in range(r.randint(0, 3))
            )
            return AppendRequest(term, src, node.id, prev, prev_term, entries, last + r.randint(0, 5))
        if choice == 1:
            return AppendResponse(term, src, node.id, True, last + r.randint(0, 5))
        if choice == 2:
            return VoteRequest(term + 1, src, node.id, last + 100, term, pre_vote=r.random() < 0.5, transfer=True)
        if choice == 3:
            return TimeoutNow(term, src, node.id)
        return AdoptRequest(src, node.id, r.getrandbits(62), d.cluster_id or "x", b'{"members": 7}')

    def _absurd(self, node: SimNode) -> Message:
        r = self.rng
        term = 1 + r.randrange(50)
        choice = r.randrange(4)
        if choice == 0:  # not contiguous
            return AppendRequest(term, MALLORY, node.id, 3, 1, (Entry(term, 9),), 0)
        if choice == 1:  # terms going backwards
            return AppendRequest(term + 1, MALLORY, node.id, 0, 0, (Entry(term + 1, 1), Entry(term, 2)), 0)
        if choice == 2:  # a configuration that does not decode
            return AppendRequest(term, MALLORY, node.id, 0, 0, (Entry(term, 1, EntryKind.CONFIG, b"[[1]"),), 0)
        return VoteRequest(term, MALLORY, node.id, 0, term + 1)

    @staticmethod
    def _raw_vote(cluster: str | None, dst: str, term: int) -> bytes:
        """A VoteRequest frame built by hand: the encoder would refuse these values."""
        cid = (cluster or "").encode()
        body = struct.pack(">BBH", 1, 1, len(cid)) + cid + struct.pack(">QQQB", term, 0, 0, 0)
        for ident in (MALLORY.encode(), dst.encode()):
            body += struct.pack(">H", len(ident)) + ident
        return struct.pack(">I", len(body)) + body
