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

Layout: ``transcript_world.py`` holds the world (cores, storage, network, the driver's part);
this module the commands above and the file format (``check_file`` runs one file).

Rewriting: when a change of behaviour is intended, run
``BEAVER_VAULT_REWRITE_TRANSCRIPTS=1 .venv/bin/pytest tests/test_transcripts.py`` and the
expected outputs are replaced by the actual ones (commands and comments are kept); review the
diff with ``git diff tests/transcripts`` before committing it.
"""

from __future__ import annotations

import difflib
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transcript_world import (
    Node,
    TranscriptError,
    TranscriptStorage,
    World,
    fmt_entry,
    fmt_membership,
    fmt_message,
    int_arg,
    or_dash,
)

from beaver_vault.errors import BeaverVaultError, InvariantViolation
from beaver_vault.raft.messages import Member, Membership

REWRITE_ENV = "BEAVER_VAULT_REWRITE_TRANSCRIPTS"
SEPARATOR = "----"
MAX_DELIVERIES = 10_000  # per stabilize: a scenario that never settles is a bug, not a wait


class Transcript(World):
    """The commands of the transcript language, on top of the world."""

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
        for _ in range(int_arg(args[1], "ticks") if len(args) > 1 else 1):
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
        ctx = int_arg(args[1], "ctx")
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
        index = int_arg(args[1], "index")
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
                f"{nid} {s.role} term={s.term} vote={or_dash(s.vote)} commit={s.commit} applied={s.applied} "
                f"leader={or_dash(s.leader_id)} log={s.first_index}..{s.last_index} {fmt_membership(s.membership)}"
            )
            for p in s.peers:
                if p.id != nid:
                    self.emit(f"  {nid} progress {p.id} match={p.match} next={p.next} {p.state} inflight={p.inflight}")

    def cmd_log(self, args: list[str]) -> None:
        self._args(args, 1, 1, "log ID")
        s = self.node(args[0]).storage
        hs = s.hard_state
        self.emit(f"hardstate term={hs.term} vote={or_dash(hs.vote)} commit={hs.commit}")
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
    world: Transcript | None = None
    outputs: dict[int, list[str]] = {}
    for p in parts:
        if not isinstance(p, Block):
            continue
        where = f"{path}:{p.line}: {p.command!r}"
        try:
            words = shlex.split(p.command)
            if words[0] == "nodes":
                world = Transcript(words[1:])
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
