"""What a decoded peer message must satisfy before it reaches the node. Pure: no I/O.

The codec already bounds sizes and integer ranges (terms and indexes <= 2**62). This module
adds the checks that look at one message as a whole, and at who sent it:

``problem(msg)``: the message is internally absurd -- an empty or self-addressed id, entries
that are not contiguous after ``prev_index``, an entry or a log position from a later term
than the message's own, a configuration (membership) blob that does not decode. Any of these
would either crash the driver (``Membership.decode`` of garbage) or corrupt the log, and no
correct node ever sends one: the connection it came on is closed.

``admit(...)``: the whole inbound gate, shared by the TCP transport and the simulator's
hostile peer (``sim/hostile.py``), so the simulator exercises the very checks production
runs. In order:

1. ``problem(msg)`` -> ``INVALID`` (close the connection);
2. the sender's identity: with mutual TLS, ``identity`` is the node id the peer's certificate
   names and every message must say ``src == identity``; without TLS (development mode on
   loopback) the first message of a connection binds it to its ``src`` and a later message
   claiming another sender is refused. Either way -> ``IMPOSTOR`` (close the connection);
3. handshake messages (probe/adopt, used to join a node) pass;
4. Raft messages need our cluster id (``WRONG_CLUSTER``), a sender we know as a member or a
   joiner (``UNKNOWN_SENDER``) and our id as destination (``WRONG_DESTINATION``): dropped,
   the connection stays (a peer may lag a configuration behind).
"""

from __future__ import annotations

import json
from collections.abc import Container
from typing import Final

from beaver_vault.raft.messages import (
    AdoptRequest,
    AppendRequest,
    EntryKind,
    InstallSnapshot,
    Membership,
    Message,
    NodeId,
    VoteRequest,
    is_handshake,
)

OK: Final = "ok"
INVALID: Final = "invalid"
IMPOSTOR: Final = "impostor"
WRONG_CLUSTER: Final = "wrong_cluster"
UNKNOWN_SENDER: Final = "unknown_sender"
WRONG_DESTINATION: Final = "wrong_destination"
# Verdicts after which the connection is closed: its sender is broken or hostile.
CLOSE: Final = frozenset({INVALID, IMPOSTOR})

MAX_MEMBERS: Final = 1000  # members in one configuration blob


def membership_problem(data: bytes) -> str | None:
    """Why ``data`` is not a usable ``Membership.encode()`` blob (None: it is)."""
    try:
        obj = json.loads(data)
        rows = obj["members"] if isinstance(obj, dict) else obj
        if not isinstance(rows, list) or len(rows) > MAX_MEMBERS:
            return "membership is not a bounded list of members"
        for row in rows:
            if not (isinstance(row, list) and len(row) == 4 and all(isinstance(v, str) for v in row[:3])):
                return "membership row is not [id, raft_address, http_address, voter]"
            if not row[0] or not isinstance(row[3], bool):
                return "membership row has an empty id or a non-boolean voter flag"
        if isinstance(obj, dict):
            retired = obj["retired"]
            if not isinstance(retired, list) or not all(isinstance(r, str) for r in retired):
                return "membership retired list is not a list of ids"
        Membership.decode(data)
    except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
        return f"membership does not decode: {type(exc).__name__}"
    return None


def problem(msg: Message) -> str | None:
    """Why ``msg`` is absurd on its own (None: nothing found). Integer ranges are the codec's."""
    if not msg.src or not msg.dst:
        return "empty sender or destination id"
    if msg.src == msg.dst:
        return "a message addressed by a node to itself"
    match msg:
        case AppendRequest():
            if msg.prev_term > msg.term:
                return f"prev_term {msg.prev_term} is after the message's term {msg.term}"
            last_term = msg.prev_term
            for i, e in enumerate(msg.entries):
                if e.index != msg.prev_index + 1 + i:
                    return f"entry {i} has index {e.index}, expected {msg.prev_index + 1 + i}"
                if not last_term <= e.term <= msg.term:
                    return f"entry {e.index} has term {e.term} outside {last_term}..{msg.term}"
                last_term = e.term
                if e.kind == EntryKind.CONFIG and (why := membership_problem(e.data)) is not None:
                    return f"entry {e.index}: {why}"
        case VoteRequest():
            if msg.last_log_term > msg.term:
                return f"last_log_term {msg.last_log_term} is after the term {msg.term}"
        case InstallSnapshot():
            if msg.snap_term > msg.term:
                return f"snapshot term {msg.snap_term} is after the message's term {msg.term}"
            if msg.done and (why := membership_problem(msg.membership)) is not None:
                return why
        case AdoptRequest():
            if not msg.cluster_id:
                return "adopt request without a cluster id"
            if msg.members and (why := membership_problem(msg.members)) is not None:
                return why
        case _:
            pass
    return None


def admit(
    msg: Message,
    *,
    frame_cluster_id: str | None,
    identity: NodeId | None,
    own_id: NodeId,
    own_cluster_id: str | None,
    known_senders: Container[NodeId],
) -> str:
    """The verdict on one inbound message: ``OK`` or the reason it is dropped (see above).
    ``identity`` is the authenticated sender of the connection (certificate, or the first
    message's ``src`` in development mode); the caller binds it when it was None."""
    if problem(msg) is not None:
        return INVALID
    if identity is not None and msg.src != identity:
        return IMPOSTOR
    if is_handshake(msg):
        return OK
    if own_cluster_id is None or frame_cluster_id != own_cluster_id:
        return WRONG_CLUSTER
    if msg.src not in known_senders:
        return UNKNOWN_SENDER
    if msg.dst != own_id:
        return WRONG_DESTINATION
    return OK
