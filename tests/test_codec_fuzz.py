"""Fuzzing the raft-port codec beyond tests/test_codec.py (issue 11, item 8).

tests/test_codec.py already fuzzes arbitrary bytes and single-byte mutations of valid frames
for "nothing but ``CodecError`` is raised". This module adds what it does not check:

* whatever decodes is within the ranges storage can hold: every term and log index at most
  ``MAX_POSITION``, every other counter at most ``MAX_COUNTER``, ids and addresses within their
  byte limits, entries within the count limit -- for structured mutations that target the
  integer fields (extreme u64 values written over any 8-byte window), insertions, deletions,
  duplicated spans and spliced frames, not only flipped bytes;
* a stream: frames cut at random points and fed piece by piece, with a hostile frame in the
  middle, yields the valid frames before it exactly, then ``DecodeError``, and the decoder stays
  broken afterwards (a connection never resynchronises on attacker-chosen bytes);
* a stream of random bytes fed in random pieces raises nothing but ``CodecError``.
"""

from __future__ import annotations

import dataclasses
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from test_codec import any_message, cluster_ids

from beaver_vault.raft import messages as m
from beaver_vault.raft.messages import Entry
from beaver_vault.transport.codec import (
    MAX_ADDRESS_BYTES,
    MAX_COUNTER,
    MAX_ENTRIES_DEFAULT,
    MAX_ID_BYTES,
    MAX_POSITION,
    MAX_TEXT_BYTES,
    CodecError,
    DecodeError,
    FrameDecoder,
    decode_frame,
    encode_frame,
)

EXTREMES = [0, 1, MAX_POSITION, MAX_POSITION + 1, 2**63 - 1, 2**63, 2**64 - 1]


def _is_position(name: str) -> bool:
    return name in ("term", "index", "commit") or name.endswith(("_term", "_index"))


def assert_in_range(cluster_id: str | None, msg: m.Message) -> None:
    """Everything a decoded message carries fits what the node may store and handle."""
    if cluster_id is not None:
        assert len(cluster_id.encode("utf-8")) <= MAX_ID_BYTES
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            limit = MAX_POSITION if _is_position(f.name) else MAX_COUNTER
            assert 0 <= value <= limit, (type(msg).__name__, f.name, value)
        elif isinstance(value, str):
            limit = MAX_ADDRESS_BYTES if "address" in f.name else max(MAX_ID_BYTES, MAX_TEXT_BYTES)
            if f.name in ("src", "dst", "node_id", "cluster_id", "leader_id"):
                limit = MAX_ID_BYTES
            assert len(value.encode("utf-8")) <= limit, (type(msg).__name__, f.name, len(value))
        elif isinstance(value, tuple):
            assert len(value) <= MAX_ENTRIES_DEFAULT
            for e in value:
                assert isinstance(e, Entry)
                assert 0 <= e.term <= MAX_POSITION and 0 <= e.index <= MAX_POSITION, (e.term, e.index)
                assert isinstance(e.data, bytes)


def decode_or_refuse(frame: bytes) -> None:
    try:
        cluster_id, msg = decode_frame(frame)
    except CodecError:
        return
    assert_in_range(cluster_id, msg)


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    msg = draw(any_message)
    frame = bytearray(encode_frame(draw(cluster_ids), msg))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["u64", "flip", "insert", "delete", "duplicate", "splice"]))
        body_start = 4
        pos = draw(st.integers(body_start, max(body_start, len(frame) - 1)))
        if kind == "u64" and len(frame) >= body_start + 8:
            pos = min(pos, len(frame) - 8)
            frame[pos : pos + 8] = struct.pack(">Q", draw(st.sampled_from(EXTREMES)))
        elif kind == "flip" and pos < len(frame):
            frame[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            frame[pos:pos] = draw(st.binary(min_size=1, max_size=9))
        elif kind == "delete":
            del frame[pos : pos + draw(st.integers(1, 9))]
        elif kind == "duplicate":
            frame[pos:pos] = frame[pos : pos + draw(st.integers(1, 16))]
        elif kind == "splice":
            other = encode_frame(draw(cluster_ids), draw(any_message))
            cut = draw(st.integers(4, len(other)))
            frame[pos:] = other[cut:]
    if len(frame) >= 4 and draw(st.booleans()):
        # Keep the length prefix consistent with the mutated body, so the body is decoded
        # (a wrong prefix is only "incomplete" or "trailing bytes").
        frame[0:4] = struct.pack(">I", len(frame) - 4)
    return bytes(frame)


@given(mutated_frames())
@settings(max_examples=200, deadline=None)
def test_mutated_frames_decode_only_to_in_range_messages(frame: bytes) -> None:
    decode_or_refuse(frame)


@given(st.sampled_from(m.RAFT_MESSAGE_TYPES + m.HANDSHAKE_MESSAGE_TYPES), st.data())
@settings(max_examples=40, deadline=None)
def test_every_u64_window_set_to_an_extreme_is_refused_or_in_range(cls: type, data: st.DataObject) -> None:
    """Overwrite each 8-byte window of a valid frame of ``cls`` in turn with an extreme value."""
    from test_codec import _message_strategy

    msg = data.draw(_message_strategy(cls))
    frame = encode_frame(data.draw(cluster_ids), msg)
    value = data.draw(st.sampled_from(EXTREMES))
    for pos in range(4, min(len(frame) - 7, 400)):
        mutated = frame[:pos] + struct.pack(">Q", value) + frame[pos + 8 :]
        decode_or_refuse(mutated)


@given(st.lists(st.tuples(cluster_ids, any_message), min_size=1, max_size=5), mutated_frames(), st.data())
@settings(max_examples=60, deadline=None)
def test_a_stream_with_a_hostile_frame_keeps_what_came_before_and_stays_broken(
    good: list[tuple[str | None, m.Message]], hostile: bytes, data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(c, msg) for c, msg in good)
    whole = stream + hostile
    decoder = FrameDecoder()
    got: list[tuple[str | None, m.Message]] = []
    failed = False
    pos = 0
    while pos < len(whole):
        step = data.draw(st.integers(1, max(1, len(whole) // 3)))
        try:
            got.extend(decoder.feed(whole[pos : pos + step]))
        except DecodeError:
            failed = True
            break
        pos += step
    # The valid frames come out exactly and in order; a piece that ends in the hostile frame
    # may take the valid frames completed with it down too (the connection is dropped anyway).
    if failed:
        assert got == good[: len(got)]
    else:
        assert got[: len(good)] == good
    for cluster_id, msg in got:
        assert_in_range(cluster_id, msg)
    if failed:
        try:
            decoder.feed(b"\x00\x00\x00\x02\x01\x01")
        except DecodeError:
            pass
        else:
            raise AssertionError("a decoder that failed must stay broken")


@given(st.lists(st.binary(min_size=1, max_size=64), max_size=20))
@settings(max_examples=150, deadline=None)
def test_random_byte_stream_in_pieces_only_raises_codec_error(pieces: list[bytes]) -> None:
    decoder = FrameDecoder(max_frame_bytes=4096)
    try:
        for piece in pieces:
            for cluster_id, msg in decoder.feed(piece):
                assert_in_range(cluster_id, msg)
    except CodecError:
        pass
