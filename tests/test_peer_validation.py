"""Hostile peer input, pure pieces: the codec's integer ranges and the inbound gate.

A vote request with term 2**63 once killed a node (SQLite's INTEGER is signed 64-bit), and
one with 2**63-1 killed two (stored, then overflowed at the next election). Terms and indexes
are now at most 2**62 on the wire; whatever decodes is within range; absurd messages and
impostors are refused before they reach the node.
"""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beaver_vault.raft import messages as m
from beaver_vault.raft.messages import (
    AdoptRequest,
    AppendRequest,
    Entry,
    EntryKind,
    InstallSnapshot,
    Member,
    Membership,
    ProbeRequest,
    VoteRequest,
)
from beaver_vault.transport import inbound
from beaver_vault.transport.codec import (
    MAX_COUNTER,
    MAX_POSITION,
    CodecError,
    DecodeError,
    FrameDecoder,
    decode_frame,
    encode_frame,
)

ALL_TYPES = m.RAFT_MESSAGE_TYPES + m.HANDSHAKE_MESSAGE_TYPES


def _raw_vote(term: int, last_index: int = 0, last_term: int = 0) -> bytes:
    """A VoteRequest frame built by hand, the way a hostile script would (no range checks)."""
    body = bytearray(struct.pack(">BB", 1, 1))
    body += struct.pack(">H", 1) + b"c"  # cluster id
    body += struct.pack(">QQQB", term, last_index, last_term, 0)
    for ident in (b"evil", b"node2"):
        body += struct.pack(">H", len(ident)) + ident
    return struct.pack(">I", len(body)) + bytes(body)


@pytest.mark.parametrize("term", [2**63, 2**63 - 1, MAX_POSITION + 1, 2**64 - 1])
def test_absurd_terms_are_decode_errors(term: int) -> None:
    with pytest.raises(DecodeError, match="out of range"):
        decode_frame(_raw_vote(term))
    with pytest.raises(DecodeError, match="out of range"):
        decode_frame(_raw_vote(1, last_index=term))


def test_the_largest_term_passes() -> None:
    _, msg = decode_frame(_raw_vote(MAX_POSITION, MAX_POSITION, MAX_POSITION))
    assert isinstance(msg, VoteRequest) and msg.term == MAX_POSITION


def test_absurd_entry_positions_are_decode_errors() -> None:
    ok = encode_frame("c", AppendRequest(5, "a", "b", 0, 0, (Entry(5, 1),), 0))
    # The entry header follows the fixed fields and ids: find it by its known bytes.
    header = struct.pack(">QQBI", 5, 1, 0, 0)
    pos = ok.index(header)
    for term, index in [(2**63, 1), (5, 2**63 - 1), (MAX_POSITION + 1, 1)]:
        bad = ok[:pos] + struct.pack(">QQBI", term, index, 0, 0) + ok[pos + len(header) :]
        with pytest.raises(DecodeError, match="above"):
            decode_frame(bad)


def _within_range(msg: m.Message) -> bool:
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        position = f.name in ("term", "index", "commit") or f.name.endswith(("_term", "_index"))
        if not 0 <= value <= (MAX_POSITION if position else MAX_COUNTER):
            return False
    entries = getattr(msg, "entries", ())
    return all(e.term <= MAX_POSITION and e.index <= MAX_POSITION for e in entries)


@given(tag=st.sampled_from(range(1, 14)), blob=st.binary(min_size=0, max_size=400), data=st.data())
@settings(max_examples=400)
def test_fuzz_whatever_decodes_is_within_range_and_nothing_else_raises(tag: int, blob: bytes, data: st.DataObject) -> None:
    # A valid header makes the fuzzer reach the field decoding instead of failing on the tag.
    body = bytes([1, tag]) + blob
    frame = struct.pack(">I", len(body)) + body
    cut = data.draw(st.integers(0, len(frame)))
    decoder = FrameDecoder(max_frame_bytes=4096)
    try:
        out = decoder.feed(frame[:cut]) + decoder.feed(frame[cut:])
    except CodecError as exc:
        assert isinstance(exc, DecodeError)
        return
    for _, msg in out:
        assert _within_range(msg)
        inbound.problem(msg)  # never raises, whatever the message says


@given(cls=st.sampled_from(ALL_TYPES), data=st.data())
@settings(max_examples=200)
def test_fuzz_any_int_field_above_its_limit_is_refused_both_ways(cls: type, data: st.DataObject) -> None:
    ints = [f.name for f in dataclasses.fields(cls) if f.type == "int"]
    name = data.draw(st.sampled_from(ints))
    position = name in ("term", "index", "commit") or name.endswith(("_term", "_index"))
    limit = MAX_POSITION if position else MAX_COUNTER
    value = data.draw(st.integers(limit + 1, 2**64 - 1))
    kwargs: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        kwargs[f.name] = {"int": 0, "bool": False, "bytes": b"", "tuple[Entry, ...]": ()}.get(str(f.type), "x")
    kwargs["src"], kwargs["dst"] = "a", "b"
    good = cls(**kwargs)
    frame = encode_frame("c", good)
    kwargs[name] = value
    with pytest.raises(CodecError):
        encode_frame("c", cls(**kwargs))
    # The same frame with the field patched to the absurd value: refused on decode too.
    i = ints.index(name)
    fixed_at = frame.index(b"\x00\x01c", 4) + 3  # after the version/tag and cluster id "c"
    patched = frame[: fixed_at + 8 * i] + struct.pack(">Q", value) + frame[fixed_at + 8 * i + 8 :]
    with pytest.raises(DecodeError):
        decode_frame(patched)


MEMBERS = Membership((Member("a", "127.0.0.1:1"), Member("b", "127.0.0.1:2"))).encode()


@pytest.mark.parametrize(
    ("msg", "why"),
    [
        (AppendRequest(3, "a", "b", 1, 1, (Entry(1, 3),), 0), "index"),
        (AppendRequest(3, "a", "b", 1, 2, (Entry(1, 2),), 0), "term"),
        (AppendRequest(3, "a", "b", 1, 1, (Entry(4, 2),), 0), "term"),
        (AppendRequest(3, "a", "b", 1, 4, (), 0), "prev_term"),
        (AppendRequest(3, "a", "b", 0, 0, (Entry(3, 1, EntryKind.CONFIG, b"{not json"),), 0), "membership"),
        (AppendRequest(3, "a", "b", 0, 0, (Entry(3, 1, EntryKind.CONFIG, b"[[1,2]]"),), 0), "membership"),
        (AppendRequest(3, "a", "b", 0, 0, (Entry(3, 1, EntryKind.CONFIG, b"[" * 100000),), 0), "membership"),
        (VoteRequest(2, "a", "b", 5, 3), "last_log_term"),
        (VoteRequest(2, "a", "a", 0, 0), "itself"),
        (VoteRequest(2, "", "b", 0, 0), "empty"),
        (InstallSnapshot(2, "a", "b", 5, 3, 0, b"", False), "snapshot term"),
        (InstallSnapshot(2, "a", "b", 5, 1, 0, b"", True, b"\xff"), "membership"),
        (AdoptRequest("a", "b", 1, "c", b"{}"), "membership"),
        (AdoptRequest("a", "b", 1, "", MEMBERS), "cluster id"),
    ],
)
def test_absurd_messages_are_named_and_close_the_connection(msg: m.Message, why: str) -> None:
    reason = inbound.problem(msg)
    assert reason is not None and why in reason
    verdict = inbound.admit(
        msg, frame_cluster_id="c", identity=None, own_id="b", own_cluster_id="c", known_senders={"a"}
    )
    assert verdict == inbound.INVALID and verdict in inbound.CLOSE


def test_sane_messages_pass_problem() -> None:
    for msg in [
        AppendRequest(3, "a", "b", 1, 1, (Entry(1, 2), Entry(3, 3, EntryKind.CONFIG, MEMBERS)), 2),
        VoteRequest(2, "a", "b", 5, 2, pre_vote=True),
        InstallSnapshot(2, "a", "b", 5, 1, 1, b"xx", True, MEMBERS),
        AdoptRequest("a", "b", 1, "c", MEMBERS),
        AdoptRequest("a", "b", 1, "c"),
        ProbeRequest("a", "b", 7, "127.0.0.1:1"),
    ]:
        assert inbound.problem(msg) is None, msg


def test_admit_checks_identity_then_cluster_sender_and_destination() -> None:
    def verdict(msg: m.Message, identity: str | None = None, frame: str | None = "c") -> str:
        return inbound.admit(
            msg, frame_cluster_id=frame, identity=identity, own_id="b", own_cluster_id="c", known_senders={"a", "x"}
        )

    vote = VoteRequest(2, "a", "b", 0, 0)
    assert verdict(vote) == inbound.OK
    assert verdict(vote, identity="a") == inbound.OK
    # A certificate (or the connection's first message) names "x": it cannot speak as "a".
    assert verdict(vote, identity="x") == inbound.IMPOSTOR
    assert verdict(ProbeRequest("a", "b", 1), identity="x") == inbound.IMPOSTOR
    assert verdict(ProbeRequest("q", "b", 1)) == inbound.OK  # handshakes pass any cluster
    assert verdict(vote, frame="other") == inbound.WRONG_CLUSTER
    assert verdict(VoteRequest(2, "q", "b", 0, 0)) == inbound.UNKNOWN_SENDER
    assert verdict(VoteRequest(2, "a", "z", 0, 0)) == inbound.WRONG_DESTINATION
    assert inbound.IMPOSTOR in inbound.CLOSE and inbound.UNKNOWN_SENDER not in inbound.CLOSE
