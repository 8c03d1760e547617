"""Transcript tests for the Raft core (in the style of etcd-io/raft's ``testdata/``).

A transcript (``tests/transcripts/*.txt``) is a scenario in plain text: commands, each followed
by a ``----`` line and the output it must produce, then a blank line. ``#`` lines between
blocks are comments. Every command is run against real ``RaftCore``s; this runner plays the
node driver's part for each of them: ``ready()`` -> persist (hard state + entries) into an
in-memory storage -> put the messages into the network -> apply the committed entries ->
``advance()``, and it streams snapshots chunk by chunk as ``node/driver.py`` does (the chunk
in flight is resent after 5 silent ticks, a transfer silent for 100 ticks is abandoned). A crashed
node restarts from what it persisted, nothing else.

    nodes n1 n2 n3 [election=10] [heartbeat=2] [prevote=true] [checkquorum=true]
                   [max-append=512] [max-inflight=64] [chunk=8] [seed=0]
        a fresh world: every node bootstrapped with the configuration 1@1 (all voters)
    add-node n4                    a pristine node (empty log, no configuration) joins the world
    tick NODES [N]                 N ticks (default 1) on each node (NODES: n1, n1,n2 or all)
    campaign n1                    n1 starts an election now (a pre-vote first with PreVote)
    propose n1 DATA                a client command (opaque bytes) proposed on n1
    read-index n1 CTX              a linearizable read point asked of n1 (CTX: an integer)
    transfer n1 n3                 n1 hands leadership over to n3
    add-learner n1 n4 | promote n1 n4 | remove n1 n3
                                   a membership change proposed on the leader n1
    compact n1 INDEX               n1 compacts its log up to INDEX (<= applied) into a snapshot
    crash n2 | restart n2          lose the core (and in-flight snapshot state); rebuild it from storage
    deliver [ROUTE] [KIND...] [n=N]  deliver the matching in-flight messages, oldest first
    drop [ROUTE] [KIND...] [n=N]     lose them
    reorder [ROUTE] [KIND...]        reverse the order of the matching in-flight messages
    stabilize                      deliver until nothing is in flight (no ticks)
    cut n1 n3 | isolate n3 | heal  links that lose every message delivered over them
    net                            the messages in flight, oldest first
    status [NODES]                 role, term, vote, commit, applied, log range; a leader's progress
    log n1                         what n1 persisted: hard state, snapshot, entries, state machine

ROUTE is ``SRC->DST`` with ``*`` for any node (``n1->*``); KIND is a message class name
(``AppendRequest``, ``VoteRequest``, ...). Messages from or to a crashed node, or over a cut
link, are dropped when delivered (and shown as dropped). Messages a step produced stay in
flight until a later ``deliver``/``stabilize``.

Output, one event per line (indented under the delivered message that caused it):
``n1 state ROLE term=T vote=V commit=C leader=L`` when one of those changed, ``n1 persist
ENTRIES``, ``n1 apply LO..HI``, ``n1 read ctx=C index=I`` (or ``dropped``), snapshot
transfers, and each message sent: ``n1->n2 KIND term=T ...``. ``3@2`` is index 3 of term 2.
The runner also checks on every step that no two leaders share a term and that no index is
ever applied with two different entries; a violation fails the transcript.

Determinism: every node's random source is ``random.Random("SEED/NODE/INCARNATION")``
injected into the core; nodes and messages are visited in a fixed order.

Rewriting: when a change of behaviour is intended, run
``BEAVER_VAULT_REWRITE_TRANSCRIPTS=1 .venv/bin/pytest tests/test_transcripts.py`` and the
expected outputs are replaced by the actual ones (commands and comments are kept); review the
diff with ``git diff tests/transcripts`` before committing it.
"""

from __future__ import annotations

import difflib
import json
import random
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from beaver_vault.errors import BeaverVaultError, InvariantViolation
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

REWRITE_ENV = "BEAVER_VAULT_REWRITE_TRANSCRIPTS"
SEPARATOR = "----"
MAX_DELIVERIES = 10_000  # per stabilize: a scenario that never settles is a bug, not a wait
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


def _opt(v: str | None) -> str:
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


def _flag(value: str) -> bool:
    if value not in ("true", "false"):
        raise TranscriptError(f"expected true or false, got {value!r}")
    return value == "true"


def _int(value: str, what: str) -> int:
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
            election_ticks=_int(opts.get("election", "10"), "election"),
            heartbeat_ticks=_int(opts.get("heartbeat", "2"), "heartbeat"),
            pre_vote=_flag(opts.get("prevote", "true")),
            check_quorum=_flag(opts.get("checkquorum", "true")),
            max_append_entries=_int(opts.get("max-append", "512"), "max-append"),
            max_inflight=_int(opts.get("max-inflight", "64"), "max-inflight"),
        )
        self.chunk_bytes = _int(opts.get("chunk", "8"), "chunk")
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
            self.emit(f"{n.id} state {s.role} term={s.term} vote={_opt(s.vote)} commit={s.commit} leader={_opt(s.leader_id)}")
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
                limit = _int(a[2:], "n")
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

    # ------------------------------------------------------------------ commands

    def run(self, words: list[str]) -> list[str]:
        self.out = []
        cmd, args = words[0], words[1:]
        handler = getattr(self, "cmd_" + cmd.replace("-", "_"), None)
        if handler is None:
            raise TranscriptError(f"unknown command {cmd!r}")
        handler(args)
        return self.out or ["ok"]

    def _args(self, args: list[str], lo: int, hi: int, usage: str) -> None:
        if not lo <= len(args) <= hi:
            raise TranscriptError(f"usage: {usage}")

    def _client_call(self, n: Node, fn: Callable[[], object], ok: Callable[[object], str]) -> None:
        try:
            result = fn()
        except BeaverVaultError as e:
            self.emit(f"{n.id} error: {e}")
        else:
            line = ok(result)
            if line:
                self.emit(line)
        self.process(n)

    def cmd_add_node(self, args: list[str]) -> None:
        self._args(args, 1, 1, "add-node ID")
        if args[0] in self.nodes:
            raise TranscriptError(f"{args[0]} exists already")
        n = self.nodes[args[0]] = Node(args[0], TranscriptStorage())
        self._start(n)
        self._show_state(n, force=True)

    def cmd_tick(self, args: list[str]) -> None:
        self._args(args, 1, 2, "tick NODES [N]")
        ids = sorted(i for i in self.nodes if self.nodes[i].core is not None) if args[0] == "all" else args[0].split(",")
        for _ in range(_int(args[1], "ticks") if len(args) > 1 else 1):
            for nid in ids:
                n, core = self.up(nid)
                core.tick()
                self._tick_senders(n, core)
                self.process(n)

    def cmd_campaign(self, args: list[str]) -> None:
        self._args(args, 1, 1, "campaign ID")
        n, core = self.up(args[0])
        core.campaign()
        self.process(n)

    def cmd_propose(self, args: list[str]) -> None:
        self._args(args, 2, 2, "propose ID DATA")
        n, core = self.up(args[0])

        def ok(r: object) -> str:
            assert isinstance(r, tuple)
            return f"{n.id} proposed {r[0]}@{r[1]}"

        self._client_call(n, lambda: core.propose(args[1].encode()), ok)

    def cmd_read_index(self, args: list[str]) -> None:
        self._args(args, 2, 2, "read-index ID CTX")
        n, core = self.up(args[0])
        ctx = _int(args[1], "ctx")
        self._client_call(n, lambda: core.read_index(ctx), lambda _: "")

    def cmd_transfer(self, args: list[str]) -> None:
        self._args(args, 2, 2, "transfer ID TARGET")
        n, core = self.up(args[0])
        self._client_call(n, lambda: core.transfer_leadership(args[1]), lambda _: "")

    def _config(self, args: list[str], usage: str, change: Callable[[Membership, str], Membership]) -> None:
        self._args(args, 2, 2, usage)
        n, core = self.up(args[0])
        new = change(core.membership, args[1])

        def ok(r: object) -> str:
            assert isinstance(r, tuple)
            return f"{n.id} proposed {r[0]}@{r[1]} config {fmt_membership(new)}"

        self._client_call(n, lambda: core.propose_config(new), ok)

    def cmd_add_learner(self, args: list[str]) -> None:
        self._config(args, "add-learner LEADER ID", lambda m, i: m.with_member(Member(i, f"{i}:7000", voter=False)))

    def cmd_promote(self, args: list[str]) -> None:
        self._config(args, "promote LEADER ID", lambda m, i: m.with_member(Member(i, f"{i}:7000")))

    def cmd_remove(self, args: list[str]) -> None:
        self._config(args, "remove LEADER ID", lambda m, i: m.without(i))

    def cmd_compact(self, args: list[str]) -> None:
        self._args(args, 2, 2, "compact ID INDEX")
        n, core = self.up(args[0])
        index = _int(args[1], "index")
        if not n.storage.snapshot_index < index <= n.storage.applied_index:
            raise TranscriptError(f"compact: {index} is not in ({n.storage.snapshot_index}, applied {n.storage.applied_index}]")
        n.storage.compact(index, n.storage.term_at(index), n.storage.membership_at(index))
        core.compact(index)
        self.emit(f"{n.id} compacted to {index}@{n.storage.snapshot_term}")
        self.process(n)

    def cmd_crash(self, args: list[str]) -> None:
        self._args(args, 1, 1, "crash ID")
        n, _ = self.up(args[0])
        n.core = None
        n.senders = {}
        n.installer = None
        self.emit(f"{n.id} down")

    def cmd_restart(self, args: list[str]) -> None:
        self._args(args, 1, 1, "restart ID")
        n = self.node(args[0])
        if n.core is not None:
            raise TranscriptError(f"{n.id} is running (crash it first)")
        n.incarnation += 1
        self._start(n)
        self.process(n)

    def cmd_deliver(self, args: list[str]) -> None:
        picked, _ = self._select(args)
        chosen = [self.net[k] for k in picked]
        for k in reversed(picked):
            del self.net[k]
        for m in chosen:
            self.deliver(m)

    def cmd_drop(self, args: list[str]) -> None:
        picked, _ = self._select(args)
        for k in picked:
            self.emit(f"{fmt_message(self.net[k])} dropped")
        for k in reversed(picked):
            del self.net[k]

    def cmd_reorder(self, args: list[str]) -> None:
        picked, _ = self._select(args, allow_count=False)
        msgs = [self.net[k] for k in reversed(picked)]
        for k, m in zip(picked, msgs, strict=True):
            self.net[k] = m
        for m in msgs:
            self.emit(fmt_message(m))

    def cmd_stabilize(self, args: list[str]) -> None:
        self._args(args, 0, 0, "stabilize")
        for _ in range(MAX_DELIVERIES):
            if not self.net:
                return
            self.deliver(self.net.pop(0))
        raise TranscriptError(f"stabilize: still messages in flight after {MAX_DELIVERIES} deliveries")

    def cmd_cut(self, args: list[str]) -> None:
        self._args(args, 2, 2, "cut A B")
        self.cut.add(frozenset((self.node(args[0]).id, self.node(args[1]).id)))

    def cmd_isolate(self, args: list[str]) -> None:
        self._args(args, 1, 1, "isolate ID")
        self.isolated.add(self.node(args[0]).id)

    def cmd_heal(self, args: list[str]) -> None:
        self._args(args, 0, 0, "heal")
        self.cut = set()
        self.isolated = set()

    def cmd_net(self, args: list[str]) -> None:
        self._args(args, 0, 0, "net")
        for m in self.net:
            self.emit(fmt_message(m))

    def cmd_status(self, args: list[str]) -> None:
        self._args(args, 0, 1, "status [NODES]")
        ids = sorted(self.nodes) if not args else args[0].split(",")
        for nid in ids:
            n = self.node(nid)
            if n.core is None:
                self.emit(f"{nid} down")
                continue
            s = n.core.status()
            self.emit(
                f"{nid} {s.role} term={s.term} vote={_opt(s.vote)} commit={s.commit} applied={s.applied} "
                f"leader={_opt(s.leader_id)} log={s.first_index}..{s.last_index} {fmt_membership(s.membership)}"
            )
            for p in s.peers:
                if p.id != nid:
                    self.emit(f"  {nid} progress {p.id} match={p.match} next={p.next} {p.state} inflight={p.inflight}")

    def cmd_log(self, args: list[str]) -> None:
        self._args(args, 1, 1, "log ID")
        s = self.node(args[0]).storage
        hs = s.hard_state
        self.emit(f"hardstate term={hs.term} vote={_opt(hs.vote)} commit={hs.commit}")
        if s.snapshot_index:
            m = Membership.decode(s.snapshot_membership)
            self.emit(f"snapshot {s.snapshot_index}@{s.snapshot_term} config {fmt_membership(m)}")
        for e in s.log:
            self.emit(fmt_entry(e))
        self.emit(f"applied={s.applied_index} state={json.dumps(s.state)}")


# --------------------------------------------------------------------------- files


@dataclass
class Block:
    line: int  # 1-based line of the command
    command: str
    expected: list[str]


def parse(text: str) -> list[str | Block]:
    """Text lines (comments, blank lines) and command blocks, in file order."""
    lines = text.splitlines()
    out: list[str | Block] = []
    k = 0
    while k < len(lines):
        line = lines[k]
        if not line.strip() or line.lstrip().startswith("#"):
            out.append(line)
            k += 1
            continue
        if k + 1 >= len(lines) or lines[k + 1] != SEPARATOR:
            raise TranscriptError(f"line {k + 1}: command {line!r} is not followed by {SEPARATOR!r}")
        j = k + 2
        while j < len(lines) and lines[j].strip():
            j += 1
        out.append(Block(k + 1, line, lines[k + 2 : j]))
        k = j
    return out


def render(parts: list[str | Block], outputs: dict[int, list[str]]) -> str:
    text: list[str] = []
    for p in parts:
        if isinstance(p, str):
            text.append(p)
        else:
            text += [p.command, SEPARATOR, *outputs.get(p.line, p.expected)]
    return "\n".join(text) + "\n"


def run_blocks(path: Path, parts: list[str | Block]) -> dict[int, list[str]]:
    """Run every command; the actual output of each block, by the block's line."""
    world: World | None = None
    outputs: dict[int, list[str]] = {}
    for p in parts:
        if not isinstance(p, Block):
            continue
        where = f"{path}:{p.line}: {p.command!r}"
        try:
            words = shlex.split(p.command)
            if words[0] == "nodes":
                world = World(words[1:])
                outputs[p.line] = world.out or ["ok"]
            elif world is None:
                raise TranscriptError("the first command must be `nodes ...`")
            else:
                outputs[p.line] = world.run(words)
        except TranscriptError as e:
            raise TranscriptError(f"{where}: {e}") from e
        except InvariantViolation as e:
            raise AssertionError(f"{where}: a Raft invariant broke: {e}") from e
    return outputs


def check_file(path: Path, rewrite: bool = False) -> None:
    """Run a transcript; raise AssertionError with a diff of the first differing block (or, when
    ``rewrite``, write the actual outputs into the file instead)."""
    __tracebackhide__ = True  # pytest: show the diff, not this function's source
    text = path.read_text()
    try:
        parts = parse(text)
    except TranscriptError as e:
        raise TranscriptError(f"{path}: {e}") from e
    outputs = run_blocks(path, parts)
    if rewrite:
        new = render(parts, outputs)
        if new != text:
            path.write_text(new)
        return
    wrong = [p for p in parts if isinstance(p, Block) and outputs[p.line] != p.expected]
    if not wrong:
        return
    first = wrong[0]
    diff = difflib.unified_diff(
        first.expected, outputs[first.line], f"expected (its line 1 is line {first.line + 2})", "actual", lineterm=""
    )
    more = f"\n({len(wrong) - 1} later block(s) differ too)" if len(wrong) > 1 else ""
    raise AssertionError(
        f"{path}:{first.line}: the output of {first.command!r} differs:\n"
        + "\n".join(diff)
        + more
        + f"\nIf the change is intended: {REWRITE_ENV}=1 .venv/bin/pytest tests/test_transcripts.py"
        " rewrites the expected outputs (then review git diff tests/transcripts)."
    )
