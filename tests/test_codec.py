"""The raft-port wire format: every message kind round-trips; bad bytes only ever raise CodecError."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beaver_vault.raft import messages as m
from beaver_vault.raft.messages import AppendRequest, Entry, EntryKind, ProbeRequest, VoteRequest
from beaver_vault.transport.codec import (
    FORMAT_VERSION,
    MAX_ADDRESS_BYTES,
    MAX_COUNTER,
    MAX_ID_BYTES,
    MAX_POSITION,
    MESSAGE_TYPES,
    CodecError,
    DecodeError,
    EncodeError,
    FrameDecoder,
    decode_body,
    decode_frame,
    encode_frame,
)

ALL_TYPES = m.RAFT_MESSAGE_TYPES + m.HANDSHAKE_MESSAGE_TYPES

u64 = st.integers(min_value=0, max_value=2**64 - 1)
# Small values are what Raft really sends; keep them likely alongside the extremes (the
# codec's ranges: terms and indexes up to 2**62, other counters up to 2**63-1).
positions = st.one_of(st.integers(min_value=0, max_value=1000), st.integers(0, MAX_POSITION), st.just(MAX_POSITION))
counters = st.one_of(st.integers(min_value=0, max_value=1000), st.integers(0, MAX_COUNTER), st.just(MAX_COUNTER))
ints = positions
# At most 4 UTF-8 bytes per character, so these never exceed the byte limits.
ids = st.text(max_size=MAX_ID_BYTES // 4)
addresses = st.text(max_size=MAX_ADDRESS_BYTES // 4)
entries = st.lists(
    st.builds(Entry, term=ints, index=ints, kind=st.sampled_from(EntryKind), data=st.binary(max_size=300)),
    max_size=20,
).map(tuple)
cluster_ids = st.none() | ids


def _field_strategy(cls: type, f: dataclasses.Field[object]) -> st.SearchStrategy[object]:
    # Annotations are strings (``from __future__ import annotations``): map them by name so
    # a new field in raft.messages of an unknown type fails here instead of going untested.
    match f.type:
        case "int" if f.name in ("term", "index", "commit") or f.name.endswith(("_term", "_index")):
            return positions
        case "int":
            return counters
        case "bool":
            return st.booleans()
        case "NodeId" | "str" if "address" in f.name:
            return addresses
        case "NodeId" | "str":
            return ids if f.name != "reason" else st.text(max_size=256)
        case "NodeId | None":
            return st.none() | ids
        case "bytes":
            return st.binary(max_size=2000)
        case "tuple[Entry, ...]":
            return entries
    raise AssertionError(f"no strategy for {cls.__name__}.{f.name}: {f.type}")


def _message_strategy(cls: type) -> st.SearchStrategy[m.Message]:
    fields = {f.name: _field_strategy(cls, f) for f in dataclasses.fields(cls)}
    return st.builds(cls, **fields)


any_message = st.one_of(*(_message_strategy(cls) for cls in ALL_TYPES))


def test_codec_knows_every_message_type() -> None:
    assert set(MESSAGE_TYPES) == set(ALL_TYPES)


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
@given(data=st.data())
@settings(max_examples=150)
def test_round_trip_every_message_type(cls: type, data: st.DataObject) -> None:
    msg = data.draw(_message_strategy(cls))
    cluster_id = data.draw(cluster_ids)
    frame = encode_frame(cluster_id, msg)
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    assert frame[4] == FORMAT_VERSION
    got_cluster, got = decode_frame(frame)
    assert got_cluster == cluster_id
    assert got == msg
    assert type(got) is type(msg)


@given(st.lists(st.tuples(cluster_ids, any_message), max_size=8), st.data())
def test_stream_split_at_arbitrary_points(items: list[tuple[str | None, m.Message]], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(c, msg) for c, msg in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = FrameDecoder()
    out = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        out.extend(decoder.feed(stream[prev:cut]))
        prev = cut
    assert out == items
    assert decoder.buffered_bytes == 0


def test_entries_round_trip_with_arbitrary_bytes_and_kinds() -> None:
    es = tuple(Entry(7, i, kind, bytes(range(256)) * i) for i, kind in enumerate(EntryKind, start=1))
    msg = AppendRequest(7, "a", "b", 0, 0, es, 3, read_seq=MAX_COUNTER)
    assert decode_frame(encode_frame(None, msg)) == (None, msg)


# --------------------------------------------------------------------------- bad input


@given(st.binary(max_size=600))
@settings(max_examples=500)
def test_fuzz_arbitrary_bytes_only_raise_codec_error(blob: bytes) -> None:
    decoder = FrameDecoder(max_frame_bytes=1024)
    try:
        decoder.feed(blob)
    except CodecError:
        pass
    try:
        decode_body(blob)
    except CodecError:
        pass


@given(any_message, cluster_ids, st.data())
@settings(max_examples=300)
def test_fuzz_mutated_valid_frames_only_raise_codec_error(
    msg: m.Message, cluster_id: str | None, data: st.DataObject
) -> None:
    frame = bytearray(encode_frame(cluster_id, msg))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(4, len(frame) - 1))
        frame[pos] = data.draw(st.integers(0, 255))
    try:
        decode_frame(bytes(frame))
    except CodecError:
        pass


@given(any_message, cluster_ids, st.data())
def test_every_truncation_is_incomplete_not_an_error(
    msg: m.Message, cluster_id: str | None, data: st.DataObject
) -> None:
    frame = encode_frame(cluster_id, msg)
    cut = data.draw(st.integers(0, len(frame) - 1))
    decoder = FrameDecoder()
    assert decoder.feed(frame[:cut]) == []
    assert decoder.feed(frame[cut:]) == [(cluster_id, msg)]


@given(any_message, cluster_ids, st.data())
def test_body_with_a_shortened_length_prefix_is_rejected(
    msg: m.Message, cluster_id: str | None, data: st.DataObject
) -> None:
    frame = encode_frame(cluster_id, msg)
    body = frame[4:]
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(DecodeError):
        decode_body(body[:cut])
    with pytest.raises(DecodeError):
        FrameDecoder().feed(struct.pack(">I", cut) + body[:cut])


def test_trailing_bytes_are_rejected() -> None:
    frame = encode_frame("c", ProbeRequest("a", "b", 1))
    body = frame[4:] + b"\x00"
    with pytest.raises(DecodeError, match="trailing"):
        FrameDecoder().feed(struct.pack(">I", len(body)) + body)


def test_oversize_length_prefix_is_rejected_before_the_body_arrives() -> None:
    decoder = FrameDecoder(max_frame_bytes=1000)
    with pytest.raises(DecodeError, match="exceeds"):
        decoder.feed(struct.pack(">I", 997))
    # The stream has lost its framing: the decoder stays broken.
    with pytest.raises(DecodeError):
        decoder.feed(b"")


def test_largest_allowed_frame_passes() -> None:
    msg = AppendRequest(1, "a", "b", 0, 0, (Entry(1, 1, data=b""),), 0)
    size = len(encode_frame(None, msg))
    big = AppendRequest(1, "a", "b", 0, 0, (Entry(1, 1, data=b"z" * (5000 - size)),), 0)
    frame = encode_frame(None, big, max_frame_bytes=5000)
    assert len(frame) == 5000
    assert FrameDecoder(max_frame_bytes=5000).feed(frame) == [(None, big)]
    with pytest.raises(EncodeError):
        encode_frame(None, big, max_frame_bytes=4999)
    with pytest.raises(DecodeError):
        FrameDecoder(max_frame_bytes=4999).feed(frame)


def test_unknown_version_tag_and_flags_are_rejected() -> None:
    frame = bytearray(encode_frame("c", VoteRequest(1, "a", "b", 0, 0)))
    for pos, value, reason in [(4, 2, "version"), (5, 200, "tag"), (4 + 2 + 3 + 24, 0x80, "flag")]:
        bad = bytearray(frame)
        bad[pos] = value
        with pytest.raises(DecodeError, match=reason):
            decode_frame(bytes(bad))


def test_too_short_length_prefix_is_rejected() -> None:
    with pytest.raises(DecodeError, match="too short"):
        FrameDecoder().feed(b"\x00\x00\x00\x01\x01")


def test_entry_limits() -> None:
    msg = AppendRequest(1, "a", "b", 0, 0, tuple(Entry(1, i) for i in range(11)), 0)
    with pytest.raises(EncodeError):
        encode_frame(None, msg, max_entries=10)
    frame = encode_frame(None, msg)
    with pytest.raises(DecodeError, match="entries"):
        decode_frame(frame, max_entries=10)
    # A count that cannot fit the bytes present is refused before anything is allocated.
    head = encode_frame(None, AppendRequest(1, "a", "b", 0, 0, (), 0))
    body = head[4:-4] + struct.pack(">I", 60_000)
    with pytest.raises(DecodeError, match="truncated"):
        decode_body(body)
    bad_kind = bytearray(encode_frame(None, AppendRequest(1, "a", "b", 0, 0, (Entry(1, 1),), 0)))
    bad_kind[-5] = 9
    with pytest.raises(DecodeError, match="kind"):
        decode_frame(bytes(bad_kind))


def test_string_limits() -> None:
    with pytest.raises(EncodeError):
        encode_frame(None, ProbeRequest("x" * (MAX_ID_BYTES + 1), "b", 1))
    with pytest.raises(EncodeError):
        encode_frame("é" * (MAX_ID_BYTES // 2 + 1), ProbeRequest("a", "b", 1))
    long_address = m.ProbeResponse("a", "b", 1, "n", "c", "h" * (MAX_ADDRESS_BYTES + 1), True)
    with pytest.raises(EncodeError):
        encode_frame(None, long_address)
    ok = m.ProbeResponse("a", "b", 1, "n", "c", "h" * MAX_ADDRESS_BYTES, True)
    assert decode_frame(encode_frame(None, ok))[1] == ok
    with pytest.raises(EncodeError):
        encode_frame(None, ProbeRequest("\ud800", "b", 1))  # lone surrogate
    # On the wire: an id length beyond the limit, and invalid UTF-8.
    frame = bytearray(encode_frame(None, ProbeRequest("a", "b", 1)))
    over = bytearray(frame)
    over[6:8] = struct.pack(">H", MAX_ID_BYTES + 1)  # cluster id length
    with pytest.raises(DecodeError, match="limit"):
        decode_frame(bytes(over))
    frame = bytearray(encode_frame("c", ProbeRequest("a", "b", 1)))
    frame[8] = 0xFF  # the cluster id's single byte
    with pytest.raises(DecodeError, match="UTF-8"):
        decode_frame(bytes(frame))


@pytest.mark.parametrize("bad", [-1, MAX_POSITION + 1, 2**63 - 1, 2**63, 2**64])
def test_integers_out_of_range_are_encode_errors(bad: int) -> None:
    with pytest.raises(EncodeError):
        encode_frame(None, VoteRequest(bad, "a", "b", 0, 0))
    with pytest.raises(EncodeError):
        encode_frame(None, AppendRequest(1, "a", "b", 0, 0, (Entry(bad, 1),), 0))


def test_non_message_is_an_encode_error() -> None:
    with pytest.raises(EncodeError):
        encode_frame(None, Entry(1, 1))  # type: ignore[arg-type]


def test_codec_errors_are_value_errors_with_local_and_remote_kinds() -> None:
    assert issubclass(EncodeError, CodecError) and issubclass(DecodeError, CodecError)
    assert not issubclass(EncodeError, DecodeError)


def test_entry_lengths_pointing_past_the_frame_are_rejected_without_copying() -> None:
    head = encode_frame(None, AppendRequest(1, "a", "b", 0, 0, (), 0))[4:-4]
    count = 1000
    headers = struct.pack(">QQBI", 1, 1, 0, 2**32 - 1) * count
    body = head + struct.pack(">I", count) + headers + b"x" * 100
    # The next frame's bytes sit right behind this body in the decoder's buffer.
    stream = struct.pack(">I", len(body)) + body + encode_frame(None, ProbeRequest("a", "b", 1)) * 100
    with pytest.raises(DecodeError, match="truncated entry data"):
        FrameDecoder().feed(stream)
