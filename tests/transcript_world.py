"""The world behind the Raft transcripts (``transcript_runner.py`` describes the language).

Real ``RaftCore``s, each with a ``TranscriptStorage`` (``MemoryStorage`` whose state machine is
the list of applied payloads), and a network that is a list of messages in flight. ``World``
plays the node driver's part: ``process`` runs the effect loop (persist, send, apply,
advance) and the snapshot transfers are streamed and installed as ``node/driver.py`` does.
Everything it does is written, one line per event, to ``out``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from beaver_vault.errors import InvariantViolation
from beaver_vault.kv.state import KVStore
from beaver_vault.node.snapshots import SnapshotSender
from beaver_vault.raft.config import RaftConfig
from beaver_vault.raft.core import RaftCore, SnapshotMeta
from beaver_vault.raft.messages import (
    RAFT_MESSAGE_TYPES,
    AppendRequest,
    AppendResponse,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    Member,
    Membership,
    RaftMessage,
    ReadIndexRequest,
    ReadIndexResponse,
    SnapshotAck,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from beaver_vault.storage.memory import MemoryStorage

# As the driver's defaults (DriverOptions): resend the chunk in flight after this many silent
# ticks; abandon a transfer silent for longer than the timeout.
SNAPSHOT_RESEND_TICKS = 5
SNAPSHOT_TIMEOUT_TICKS = 100
KINDS = {t.__name__: t for t in RAFT_MESSAGE_TYPES}

R = TypeVar("R")


class TranscriptError(Exception):
    """The scenario itself is wrong (unknown command, bad argument, a node that is down)."""


# --------------------------------------------------------------------------- formatting


def fmt_membership(m: Membership) -> str:
    parts = ["voters=" + ",".join(m.voters)]
    learners = [x.id for x in m.members if not x.voter]
    if learners:
        parts.append("learners=" + ",".join(learners))
    if m.retired:
        parts.append("retired=" + ",".join(m.retired))
    return " ".join(parts)


def fmt_entry(e: Entry) -> str:
    if e.kind == EntryKind.NOOP:
        body = "noop"
    elif e.kind == EntryKind.CONFIG:
        body = "config " + fmt_membership(Membership.decode(e.data))
    else:
        body = json.dumps(e.data.decode(errors="replace"))
    return f"{e.index}@{e.term} {body}"


def fmt_entries(entries: Sequence[Entry]) -> str:
    return "[" + ", ".join(fmt_entry(e) for e in entries) + "]"


def fmt_message(m: RaftMessage) -> str:
    head = f"{m.src}->{m.dst} {type(m).__name__} term={m.term}"
    match m:
        case VoteRequest():
            tail = f"last={m.last_log_index}@{m.last_log_term}" + (" pre" if m.pre_vote else "")
            tail += " transfer" if m.transfer else ""
        case VoteResponse():
            tail = ("granted" if m.granted else "rejected") + (" pre" if m.pre_vote else "")
        case AppendRequest():
            tail = f"prev={m.prev_index}@{m.prev_term} commit={m.commit}"
            tail += f" entries={fmt_entries(m.entries)}" if m.entries else ""
            tail += f" read={m.read_seq}" if m.read_seq else ""
        case AppendResponse():
            if m.success:
                tail = f"ok match={m.match_index}"
            else:
                tail = f"reject prev={m.match_index} hint={m.hint_index}@{m.hint_term}"
            tail += f" read={m.read_seq}" if m.read_seq else ""
        case TimeoutNow():
            tail = ""
        case ReadIndexRequest():
            tail = f"ctx={m.ctx}"
        case ReadIndexResponse():
            tail = f"ctx={m.ctx} index={m.index} " + ("ok" if m.ok else "refused")
        case InstallSnapshot():
            tail = f"snap={m.index}@{m.snap_term} seq={m.seq} bytes={len(m.data)}"
            tail += " done config " + fmt_membership(Membership.decode(m.membership)) if m.done else ""
        case SnapshotAck():
            tail = f"snap={m.index} seq={m.seq} " + ("ok" if m.ok else "refused")
    return f"{head} {tail}".rstrip()


def or_dash(v: str | None) -> str:
    return v if v is not None else "-"


# --------------------------------------------------------------------------- storage


class TranscriptStorage(MemoryStorage):
    """``MemoryStorage`` (its save/compact/apply checks included) whose state machine is the list
    of applied client payloads, so snapshots carry something readable and small."""

    def __init__(self) -> None:
        super().__init__("transcript")
        self.state: list[str] = []

    def apply(self, entries: Sequence[Entry], fn: Callable[[KVStore, Entry], R]) -> list[R]:
        results = super().apply(entries, fn)
        self.state.extend(e.data.decode(errors="replace") for e in entries if e.kind == EntryKind.NORMAL)
        return results

    def snapshot_reader(self, chunk_bytes: int) -> tuple[int, Iterator[bytes]]:
        data = json.dumps(self.state).encode()
        return self.applied_index, iter([data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)])

    def install_finish(self, index: int, term: int, membership: bytes) -> None:
        state = json.loads(b"".join(self.staged))
        if not isinstance(state, list):
            raise InvariantViolation("snapshot does not hold a list of payloads")
        self.state = [str(s) for s in state]
        self.applied_index = index
        self.log = []
        self.snapshot_index, self.snapshot_term, self.snapshot_membership = index, term, membership
        self.staged = []

    def term_at(self, index: int) -> int:
        if index == self.snapshot_index:
            return self.snapshot_term
        if not self.snapshot_index < index <= self.last_index:
            raise TranscriptError(f"no entry at {index} (log {self.snapshot_index + 1}..{self.last_index})")
        return self.log[index - self.snapshot_index - 1].term

    def membership_at(self, index: int) -> bytes:
        found = self.snapshot_membership
        for e in self.log:
            if e.index <= index and e.kind == EntryKind.CONFIG:
                found = e.data
        return found


def _apply_nothing(store: KVStore, entry: Entry) -> None:
    return None


# --------------------------------------------------------------------------- the world


@dataclass
class Installer:
    leader: str
    term: int
    index: int
    snap_term: int
    next_seq: int = 1


@dataclass
class Node:
    id: str
    storage: TranscriptStorage
    core: RaftCore | None = None
    incarnation: int = 0
    shown: tuple[object, ...] = ()  # the state line last printed
    senders: dict[str, SnapshotSender] = field(default_factory=dict)
    installer: Installer | None = None


def flag_arg(value: str) -> bool:
    if value not in ("true", "false"):
        raise TranscriptError(f"expected true or false, got {value!r}")
    return value == "true"


def int_arg(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise TranscriptError(f"{what}: expected an integer, got {value!r}") from None


class World:
    def __init__(self, args: list[str]) -> None:
        ids = [a for a in args if "=" not in a]
        opts = dict(a.split("=", 1) for a in args if "=" in a)
        if not ids or len(set(ids)) != len(ids):
            raise TranscriptError("nodes: give distinct node ids")
        known = {"election", "heartbeat", "prevote", "checkquorum", "max-append", "max-inflight", "chunk", "seed"}
        if set(opts) - known:
            raise TranscriptError(f"nodes: unknown options {sorted(set(opts) - known)}")
        self.cfg = RaftConfig(
            election_ticks=int_arg(opts.get("election", "10"), "election"),
            heartbeat_ticks=int_arg(opts.get("heartbeat", "2"), "heartbeat"),
            pre_vote=flag_arg(opts.get("prevote", "true")),
            check_quorum=flag_arg(opts.get("checkquorum", "true")),
            max_append_entries=int_arg(opts.get("max-append", "512"), "max-append"),
            max_inflight=int_arg(opts.get("max-inflight", "64"), "max-inflight"),
        )
        self.chunk_bytes = int_arg(opts.get("chunk", "8"), "chunk")
        self.seed = opts.get("seed", "0")
        self.nodes: dict[str, Node] = {}
        self.net: list[RaftMessage] = []
        self.cut: set[frozenset[str]] = set()
        self.isolated: set[str] = set()
        self.out: list[str] = []
        self.indent = ""
        self.leaders_by_term: dict[int, str] = {}
        self.applied: dict[int, Entry] = {}  # every entry any node applied, by index
        boot = Entry(1, 1, EntryKind.CONFIG, Membership(tuple(Member(i, f"{i}:7000") for i in ids)).encode())
        for i in ids:
            storage = TranscriptStorage()
            storage.save(HardState(1, None, 1), [boot])
            storage.apply([boot], _apply_nothing)
            self.nodes[i] = Node(i, storage)
            self._start(self.nodes[i])
        for i in sorted(self.nodes):
            self._show_state(self.nodes[i], force=True)

    # ------------------------------------------------------------------ helpers

    def emit(self, line: str) -> None:
        self.out.append(self.indent + line)

    def node(self, nid: str) -> Node:
        n = self.nodes.get(nid)
        if n is None:
            raise TranscriptError(f"no node {nid!r} (nodes: {', '.join(sorted(self.nodes))})")
        return n

    def up(self, nid: str) -> tuple[Node, RaftCore]:
        n = self.node(nid)
        if n.core is None:
            raise TranscriptError(f"{nid} is down (restart it first)")
        return n, n.core

    def _start(self, n: Node) -> None:
        st = n.storage.load()
        snap = None
        if st.snapshot_index:
            snap = SnapshotMeta(st.snapshot_index, st.snapshot_term, Membership.decode(st.snapshot_membership))
        rng = random.Random(f"{self.seed}/{n.id}/{n.incarnation}")
        n.core = RaftCore(n.id, self.cfg, rng, st.hard_state, st.entries, st.applied_index, snap)
        n.shown = ()

    def _show_state(self, n: Node, force: bool = False) -> None:
        if n.core is None:
            return
        s = n.core.status()
        state = (s.role, s.term, s.vote, s.commit, s.leader_id)
        if force or state != n.shown:
            n.shown = state
            self.emit(f"{n.id} state {s.role} term={s.term} vote={or_dash(s.vote)} commit={s.commit} leader={or_dash(s.leader_id)}")
        if s.role == "leader":
            other = self.leaders_by_term.setdefault(s.term, n.id)
            if other != n.id:
                raise InvariantViolation(f"two leaders in term {s.term}: {other} and {n.id}")

    def send(self, m: RaftMessage) -> None:
        self.emit(fmt_message(m))
        self.net.append(m)

    def process(self, n: Node) -> None:
        """The driver's loop: while the core has something ready, persist, send, apply, advance."""
        core = n.core
        if core is None:
            return
        while True:
            self._show_state(n)
            if not core.has_ready():
                break
            rd = core.ready()
            if rd.hard_state is not None or rd.entries:
                n.storage.save(rd.hard_state, rd.entries)
                if rd.entries:
                    self.emit(f"{n.id} persist {fmt_entries(rd.entries)}")
            for m in rd.messages:
                self.send(m)
            if rd.committed:
                n.storage.apply(rd.committed, _apply_nothing)
                for e in rd.committed:
                    seen = self.applied.setdefault(e.index, e)
                    if seen != e:
                        raise InvariantViolation(f"{n.id} applied {fmt_entry(e)} where {fmt_entry(seen)} was applied")
                lo, hi = rd.committed[0].index, rd.committed[-1].index
                self.emit(f"{n.id} apply {lo}" if lo == hi else f"{n.id} apply {lo}..{hi}")
            for pid in rd.snapshots:
                self._start_sender(n, core, pid)
            for rs in rd.read_states:
                self.emit(f"{n.id} read ctx={rs.ctx} index={rs.index}")
            for ctx in rd.dropped_reads:
                self.emit(f"{n.id} read ctx={ctx} dropped")
            core.advance(rd)
        if n.senders and core.status().role != "leader":
            for pid in sorted(n.senders):
                self._stop_sender(n, core, pid, ok=False)

    # ------------------------------------------------------------------ snapshots (as node/driver.py)

    def _start_sender(self, n: Node, core: RaftCore, pid: str) -> None:
        st = core.status()
        if st.role != "leader":
            return
        n.senders.pop(pid, None)  # a new request replaces a transfer the core gave up on
        index, chunks = n.storage.snapshot_reader(self.chunk_bytes)
        parts = list(chunks)
        snd = SnapshotSender(pid, index, n.storage.term_at(index), n.storage.membership_at(index), iter(parts))
        n.senders[pid] = snd
        self.emit(f"{n.id} snapshot for {pid}: {index}@{snd.term} in {len(parts)} chunk(s)")
        self.send(snd.first(st.term, n.id))

    def _stop_sender(self, n: Node, core: RaftCore, pid: str, ok: bool) -> None:
        snd = n.senders.pop(pid, None)
        if snd is not None:
            self.emit(f"{n.id} snapshot for {pid}: " + ("sent" if ok else "abandoned"))
            core.snapshot_finished(pid, ok, snd.index if ok else 0)

    def _tick_senders(self, n: Node, core: RaftCore) -> None:
        for pid in sorted(n.senders):
            snd = n.senders[pid]
            snd.idle_ticks += 1
            st = core.status()
            if snd.idle_ticks > SNAPSHOT_TIMEOUT_TICKS:
                self._stop_sender(n, core, pid, ok=False)
            elif snd.idle_ticks % SNAPSHOT_RESEND_TICKS == 0 and st.role == "leader":
                self.send(snd.message(st.term, n.id))  # the chunk or its ack may be lost

    def _receive_ack(self, n: Node, core: RaftCore, ack: SnapshotAck) -> None:
        snd = n.senders.get(ack.src)
        if snd is None or ack.index != snd.index or ack.seq != snd.seq:
            return
        st = core.status()
        if st.role != "leader" or ack.term != st.term or not ack.ok:
            self._stop_sender(n, core, ack.src, ok=False)
            return
        nxt = snd.on_ack(ack, st.term, n.id)
        if nxt is None:
            self._stop_sender(n, core, ack.src, ok=True)
        else:
            self.send(nxt)

    def _holds(self, n: Node, index: int, term: int) -> bool:
        s = n.storage
        return s.snapshot_index <= index <= s.last_index and s.term_at(index) == term

    def _receive_chunk(self, n: Node, core: RaftCore, m: InstallSnapshot) -> None:
        st = core.status()

        def ack(ok: bool) -> None:
            self.send(SnapshotAck(st.term, n.id, m.src, m.index, m.seq, ok))

        if m.term != st.term or st.role != "follower":
            ack(False)
            return
        ins = n.installer
        same = ins is not None and (ins.leader, ins.term, ins.index) == (m.src, m.term, m.index)
        if m.seq == 0:
            if same:
                ack(True)  # a duplicate of the first chunk: keep what is staged
                return
            if m.index <= st.commit or self._holds(n, m.index, m.snap_term):
                n.installer = None
                ack(False)  # nothing to install: the log already holds that point
                return
            n.storage.install_begin(m.index)
            n.installer = Installer(m.src, m.term, m.index, m.snap_term)
        else:
            if ins is not None and same and m.seq < ins.next_seq:
                ack(True)  # a duplicate: already staged
                return
            if ins is None or not same or m.seq != ins.next_seq:
                ack(False)
                return
            ins.next_seq += 1
            if m.done and (m.index <= st.commit or self._holds(n, m.index, m.snap_term)):
                n.installer = None
                ack(False)  # appends overtook the transfer
                return
        n.storage.install_chunk(m.seq, m.data)
        if m.done:
            n.storage.install_finish(m.index, m.snap_term, m.membership)
            n.installer = None
            self.emit(f"{n.id} install snapshot {m.index}@{m.snap_term} state={json.dumps(n.storage.state)}")
            core.restore(m.index, m.snap_term, Membership.decode(m.membership))
        ack(True)

    # ------------------------------------------------------------------ the network

    def _select(self, args: list[str], allow_count: bool = True) -> tuple[list[int], str]:
        """Positions in ``self.net`` of the messages matching ``[ROUTE] [KIND...] [n=N]``."""
        src = dst = "*"
        kinds: set[type] = set()
        limit: int | None = None
        for a in args:
            if "->" in a:
                src, dst = a.split("->", 1)
            elif a.startswith("n=") and allow_count:
                limit = int_arg(a[2:], "n")
            elif a in KINDS:
                kinds.add(KINDS[a])
            else:
                raise TranscriptError(f"not a route, a message kind or n=N: {a!r}")
        picked = [
            k
            for k, m in enumerate(self.net)
            if src in ("*", m.src) and dst in ("*", m.dst) and (not kinds or type(m) in kinds)
        ]
        return (picked if limit is None else picked[:limit]), f"{src}->{dst}"

    def _blocked(self, m: RaftMessage) -> str | None:
        # A message already sent still arrives after its sender crashed; a crashed node gets nothing.
        if m.dst not in self.nodes or self.nodes[m.dst].core is None:
            return f"{m.dst} is down"
        if frozenset((m.src, m.dst)) in self.cut or m.src in self.isolated or m.dst in self.isolated:
            return "cut"
        return None

    def deliver(self, m: RaftMessage) -> None:
        why = self._blocked(m)
        if why is not None:
            self.emit(f"{fmt_message(m)} dropped ({why})")
            return
        self.emit(fmt_message(m))
        n, core = self.up(m.dst)
        self.indent = "  "
        try:
            core.step(m)
            if isinstance(m, InstallSnapshot):
                self._receive_chunk(n, core, m)
            elif isinstance(m, SnapshotAck):
                self._receive_ack(n, core, m)
            self.process(n)
        finally:
            self.indent = ""
