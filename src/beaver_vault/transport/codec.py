"""Binary wire format of the raft port: length-prefixed, versioned, bounded frames.

Pure: no I/O, no trio. ``encode_frame`` turns one message into one frame; ``FrameDecoder``
turns a byte stream (delivered in arbitrary pieces) back into ``(cluster_id, message)`` pairs.

Frame layout (all integers big-endian)::

    u32  body length (excludes these 4 bytes; 2 <= length <= max_frame_bytes - 4)
    body:
      u8   format version (FORMAT_VERSION)
      u8   message kind tag (one per dataclass in ``raft.messages``)
      str? sender's cluster id (u16 length, 0xFFFF = None, then UTF-8)
      Q*n  the message's integer fields (u64 each), then u8 with its bool fields as bit flags
      str  its string fields (u16 length + UTF-8; optional ones use the 0xFFFF sentinel)
      blob its bytes fields (u32 length + bytes)
      [u32 entry count, then per entry a header (u64 term, u64 index, u8 kind, u32 data
       length), then every entry's data in order: headers unpack in one call]

Every message kind is described by one ``_Layout`` (which fields are ints, bools, strings,
blobs, entries). At import time each layout is checked against the dataclass's fields, so
adding a field to ``raft.messages`` without teaching the codec fails loudly at once, not
silently on the wire.

Everything that comes off the wire is bounded: frame size, string lengths (ids 256 bytes,
addresses 512), entry count; trailing bytes, unknown versions, tags, flag bits or entry
kinds are rejected. Integers travel as u64 but their ranges are narrower, on both sides:
terms and log indexes (every field named ``term``/``*_term``/``index``/``*_index``/``commit``,
and each entry's term and index) are at most ``MAX_POSITION`` = 2**62; the other counters
(nonces, read contexts, sequence numbers) at most 2**63-1. Why: SQLite stores a signed
64-bit INTEGER. A node that accepted a term of 2**63 died storing it (OverflowError), and one
that accepted 2**63-1 stored it, then died at its next election storing 2**63. With terms
capped at 2**62 a node can campaign 2**62 more times before storage overflows: never. Errors are typed: ``EncodeError`` (we refuse to send this: a local
problem) and ``DecodeError`` (the peer sent something invalid), both ``CodecError``.
Decoding arbitrary bytes raises nothing else.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import Any, Final

from beaver_vault.raft.messages import (
    AdoptRequest,
    AdoptResponse,
    AppendRequest,
    AppendResponse,
    Entry,
    EntryKind,
    InstallSnapshot,
    Message,
    ProbeRequest,
    ProbeResponse,
    ReadIndexRequest,
    ReadIndexResponse,
    SnapshotAck,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)

FORMAT_VERSION: Final = 1
MAX_FRAME_BYTES_DEFAULT: Final = 16 * 1024 * 1024
MAX_ENTRIES_DEFAULT: Final = 65_536
MAX_ID_BYTES: Final = 256  # node ids and cluster ids
MAX_ADDRESS_BYTES: Final = 512
MAX_TEXT_BYTES: Final = 1024  # free text such as a refusal reason
PREFIX_BYTES: Final = 4

Decoded = tuple[str | None, Message]

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_HEAD = struct.Struct(">BB")  # version, kind tag
_ENTRY = struct.Struct(">QQBI")  # term, index, kind, data length
_NONE_LEN: Final = 0xFFFF
MAX_POSITION: Final = 2**62  # terms and log indexes (see the module docstring)
MAX_COUNTER: Final = 2**63 - 1  # nonces, read contexts, sequence numbers: SQLite's signed INTEGER
_ENTRY_KINDS: Final = {int(k): k for k in EntryKind}


class CodecError(ValueError):
    """A frame could not be encoded or decoded. Never crashes the node: count and drop."""


class EncodeError(CodecError):
    """Local: this message cannot be sent (a value out of range, a string or frame too long)."""


class DecodeError(CodecError):
    """Remote: the bytes received are not a valid frame (bad framing, version, limits)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Str:
    name: str
    limit: int
    optional: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class _Layout:
    tag: int
    cls: type
    ints: tuple[str, ...] = ()
    bools: tuple[str, ...] = ()
    strs: tuple[_Str, ...] = ()
    blobs: tuple[str, ...] = ()
    entries: str | None = None
    fixed: struct.Struct = dataclasses.field(init=False)
    get_ints: Callable[[Any], tuple[int, ...]] = dataclasses.field(init=False)
    limits: tuple[int, ...] = dataclasses.field(init=False)  # the largest value of each int field

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed", struct.Struct(">" + "Q" * len(self.ints) + "B"))
        object.__setattr__(self, "limits", tuple(_int_limit(n) for n in self.ints))
        names = self.ints

        def get_ints(msg: Any) -> tuple[int, ...]:
            return tuple(getattr(msg, n) for n in names)

        object.__setattr__(self, "get_ints", get_ints)
        declared = {f.name for f in dataclasses.fields(self.cls)}
        covered = [*self.ints, *self.bools, *(s.name for s in self.strs), *self.blobs]
        if self.entries:
            covered.append(self.entries)
        if sorted(covered) != sorted(declared):
            raise TypeError(
                f"codec layout of {self.cls.__name__} covers {sorted(covered)}, class has {sorted(declared)}"
            )
        if len(self.bools) > 8:
            raise TypeError("at most 8 bool fields fit the flags byte")


def _int_limit(name: str) -> int:
    if name in ("term", "index", "commit") or name.endswith(("_term", "_index")):
        return MAX_POSITION
    return MAX_COUNTER


def _out_of_range(layout: _Layout, values: tuple[int, ...]) -> str | None:
    """The first int field above its limit (``values`` may carry the flags byte last)."""
    for name, value, limit in zip(layout.ints, values, layout.limits, strict=False):
        if not 0 <= value <= limit:
            return f"{layout.cls.__name__}.{name} = {value} is out of range 0..{limit}"
    return None


def _ids(*names: str) -> tuple[_Str, ...]:
    return tuple(_Str(n, MAX_ID_BYTES) for n in names)


# Tags are part of the wire format: never renumber, only add.
_LAYOUTS: Final[tuple[_Layout, ...]] = (
    _Layout(
        1,
        VoteRequest,
        ints=("term", "last_log_index", "last_log_term"),
        bools=("pre_vote", "transfer"),
        strs=_ids("src", "dst"),
    ),
    _Layout(2, VoteResponse, ints=("term",), bools=("granted", "pre_vote"), strs=_ids("src", "dst")),
    _Layout(
        3,
        AppendRequest,
        ints=("term", "prev_index", "prev_term", "commit", "read_seq"),
        strs=_ids("src", "dst"),
        entries="entries",
    ),
    _Layout(
        4,
        AppendResponse,
        ints=("term", "match_index", "hint_index", "hint_term", "read_seq"),
        bools=("success",),
        strs=_ids("src", "dst"),
    ),
    _Layout(5, TimeoutNow, ints=("term",), strs=_ids("src", "dst")),
    _Layout(6, ProbeRequest, ints=("nonce",), strs=(*_ids("src", "dst"), _Str("reply_address", MAX_ADDRESS_BYTES))),
    _Layout(
        7,
        ProbeResponse,
        ints=("nonce",),
        bools=("pristine",),
        strs=(*_ids("src", "dst", "node_id", "cluster_id"), _Str("http_address", MAX_ADDRESS_BYTES)),
    ),
    _Layout(8, AdoptRequest, ints=("nonce",), strs=_ids("src", "dst", "cluster_id"), blobs=("members",)),
    _Layout(
        9, AdoptResponse, ints=("nonce",), bools=("ok",), strs=(*_ids("src", "dst"), _Str("reason", MAX_TEXT_BYTES))
    ),
    _Layout(10, ReadIndexRequest, ints=("term", "ctx"), strs=_ids("src", "dst")),
    _Layout(11, ReadIndexResponse, ints=("term", "ctx", "index"), bools=("ok",), strs=_ids("src", "dst")),
    _Layout(
        12,
        InstallSnapshot,
        ints=("term", "index", "snap_term", "seq"),
        bools=("done",),
        strs=_ids("src", "dst"),
        blobs=("data", "membership"),
    ),
    _Layout(13, SnapshotAck, ints=("term", "index", "seq"), bools=("ok",), strs=_ids("src", "dst")),
)
_BY_CLASS: Final = {layout.cls: layout for layout in _LAYOUTS}
_BY_TAG: Final = {layout.tag: layout for layout in _LAYOUTS}
_CLUSTER_ID = _Str("cluster_id", MAX_ID_BYTES, optional=True)

MESSAGE_TYPES: Final[tuple[type, ...]] = tuple(layout.cls for layout in _LAYOUTS)


# --------------------------------------------------------------------------- encoding


def _put_str(parts: list[bytes], spec: _Str, value: object) -> None:
    if value is None:
        if not spec.optional:
            raise EncodeError(f"{spec.name} must not be None")
        parts.append(_U16.pack(_NONE_LEN))
        return
    if not isinstance(value, str):
        raise EncodeError(f"{spec.name} must be a str, not {type(value).__name__}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"{spec.name} is not encodable as UTF-8") from exc
    if len(raw) > spec.limit:
        raise EncodeError(f"{spec.name} is {len(raw)} bytes, limit {spec.limit}")
    parts.append(_U16.pack(len(raw)))
    parts.append(raw)


def encode_frame(
    cluster_id: str | None,
    msg: Message,
    *,
    max_frame_bytes: int = MAX_FRAME_BYTES_DEFAULT,
    max_entries: int = MAX_ENTRIES_DEFAULT,
) -> bytes:
    """One complete frame (length prefix included) for ``msg`` stamped with ``cluster_id``."""
    layout = _BY_CLASS.get(type(msg))
    if layout is None:
        raise EncodeError(f"not a message type: {type(msg).__name__}")
    parts: list[bytes] = [b"", _HEAD.pack(FORMAT_VERSION, layout.tag)]
    _put_str(parts, _CLUSTER_ID, cluster_id)
    flags = 0
    for bit, name in enumerate(layout.bools):
        if getattr(msg, name):
            flags |= 1 << bit
    values = layout.get_ints(msg)
    try:
        parts.append(layout.fixed.pack(*values, flags))
    except struct.error as exc:
        raise EncodeError(f"{layout.cls.__name__}: integer field out of range") from exc
    problem = _out_of_range(layout, values)
    if problem is not None:
        raise EncodeError(problem)
    for spec in layout.strs:
        _put_str(parts, spec, getattr(msg, spec.name))
    for name in layout.blobs:
        blob = getattr(msg, name)
        if not isinstance(blob, bytes | bytearray):
            raise EncodeError(f"{name} must be bytes")
        if len(blob) > max_frame_bytes:
            raise EncodeError(f"{name} is {len(blob)} bytes, more than a frame holds")
        parts.append(_U32.pack(len(blob)))
        parts.append(bytes(blob))
    if layout.entries is not None:
        entries: tuple[Entry, ...] = getattr(msg, layout.entries)
        if len(entries) > max_entries:
            raise EncodeError(f"{len(entries)} entries, limit {max_entries}")
        parts.append(_U32.pack(len(entries)))
        pack = _ENTRY.pack
        try:
            parts.extend([pack(e.term, e.index, e.kind, len(e.data)) for e in entries])
        except struct.error as exc:
            raise EncodeError("entry term, index or kind out of range") from exc
        if entries and max(max(e.term, e.index) for e in entries) > MAX_POSITION:
            raise EncodeError(f"entry term or index above {MAX_POSITION}")
        parts.extend([e.data for e in entries])
    body_len = sum(map(len, parts))
    if body_len + PREFIX_BYTES > max_frame_bytes:
        raise EncodeError(f"frame of {body_len + PREFIX_BYTES} bytes exceeds {max_frame_bytes}")
    parts[0] = _U32.pack(body_len)
    return b"".join(parts)


# --------------------------------------------------------------------------- decoding


def _get_str(buf: bytes, off: int, end: int, spec: _Str) -> tuple[str | None, int]:
    if off + 2 > end:
        raise DecodeError(f"truncated {spec.name}")
    (n,) = _U16.unpack_from(buf, off)
    off += 2
    if n == _NONE_LEN and spec.optional:
        return None, off
    if n > spec.limit:
        raise DecodeError(f"{spec.name} is {n} bytes, limit {spec.limit}")
    if off + n > end:
        raise DecodeError(f"truncated {spec.name}")
    try:
        return buf[off : off + n].decode("utf-8"), off + n
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{spec.name} is not valid UTF-8") from exc


def _decode_body(buf: bytes, off: int, end: int, max_entries: int) -> Decoded:
    """Decode the body occupying ``buf[off:end]``."""
    if end - off < _HEAD.size:
        raise DecodeError("frame body too short")
    version, tag = _HEAD.unpack_from(buf, off)
    if version != FORMAT_VERSION:
        raise DecodeError(f"unsupported format version {version}")
    layout = _BY_TAG.get(tag)
    if layout is None:
        raise DecodeError(f"unknown message tag {tag}")
    off += _HEAD.size
    cluster_id, off = _get_str(buf, off, end, _CLUSTER_ID)
    fixed = layout.fixed
    if off + fixed.size > end:
        raise DecodeError("truncated fields")
    values = fixed.unpack_from(buf, off)
    off += fixed.size
    if len(values) > 1 and max(values[:-1]) > MAX_POSITION:
        problem = _out_of_range(layout, values)
        if problem is not None:
            raise DecodeError(problem)
    kwargs: dict[str, object] = dict(zip(layout.ints, values, strict=False))
    flags = values[-1]
    if flags >> len(layout.bools):
        raise DecodeError(f"unknown flag bits {flags:#x}")
    for bit, name in enumerate(layout.bools):
        kwargs[name] = bool(flags >> bit & 1)
    for spec in layout.strs:
        kwargs[spec.name], off = _get_str(buf, off, end, spec)
    for name in layout.blobs:
        if off + 4 > end:
            raise DecodeError(f"truncated {name}")
        (n,) = _U32.unpack_from(buf, off)
        off += 4
        if off + n > end:
            raise DecodeError(f"truncated {name}")
        kwargs[name] = buf[off : off + n]
        off += n
    if layout.entries is not None:
        kwargs[layout.entries], off = _decode_entries(buf, off, end, max_entries)
    if off != end:
        raise DecodeError(f"{end - off} trailing bytes")
    return cluster_id, layout.cls(**kwargs)


def _decode_entries(buf: bytes, off: int, end: int, max_entries: int) -> tuple[tuple[Entry, ...], int]:
    if off + 4 > end:
        raise DecodeError("truncated entry count")
    (count,) = _U32.unpack_from(buf, off)
    off += 4
    if count > max_entries:
        raise DecodeError(f"{count} entries, limit {max_entries}")
    # Each entry needs at least its header: reject absurd counts before allocating anything.
    if count * _ENTRY.size > end - off:
        raise DecodeError("truncated entries")
    # Headers are contiguous and the data follows them, so one iter_unpack reads them all.
    data_off = off + count * _ENTRY.size
    kinds = _ENTRY_KINDS
    out: list[Entry] = []
    append = out.append
    try:
        for term, index, kind, n in _ENTRY.iter_unpack(buf[off:data_off]):
            if term > MAX_POSITION or index > MAX_POSITION:
                raise DecodeError(f"entry term {term} or index {index} above {MAX_POSITION}")
            stop = data_off + n
            if stop > end:  # checked before slicing: a huge n must not copy anything
                raise DecodeError("truncated entry data")
            append(Entry(term, index, kinds[kind], buf[data_off:stop]))
            data_off = stop
    except KeyError as exc:
        raise DecodeError(f"unknown entry kind {exc.args[0]}") from None
    off = data_off
    return tuple(out), off


def decode_body(body: bytes, *, max_entries: int = MAX_ENTRIES_DEFAULT) -> Decoded:
    """Decode one frame body (without its length prefix)."""
    return _decode_body(bytes(body), 0, len(body), max_entries)


def decode_frame(
    frame: bytes, *, max_frame_bytes: int = MAX_FRAME_BYTES_DEFAULT, max_entries: int = MAX_ENTRIES_DEFAULT
) -> Decoded:
    """Decode exactly one complete frame (length prefix included)."""
    decoder = FrameDecoder(max_frame_bytes=max_frame_bytes, max_entries=max_entries)
    out = decoder.feed(frame)
    if len(out) != 1 or decoder.buffered_bytes:
        raise DecodeError("expected exactly one complete frame")
    return out[0]


class FrameDecoder:
    """Incremental decoder for one connection's byte stream.

    ``feed`` returns every frame completed by the new bytes. After a ``DecodeError`` the
    stream has lost framing for good: the decoder stays broken and the connection should be
    closed. The buffer never holds more than one incomplete frame plus the last piece fed,
    and an over-long length prefix is rejected as soon as its 4 bytes arrive.
    """

    __slots__ = ("_buf", "_need", "_broken", "max_frame_bytes", "max_entries")

    def __init__(self, *, max_frame_bytes: int = MAX_FRAME_BYTES_DEFAULT, max_entries: int = MAX_ENTRIES_DEFAULT):
        if max_frame_bytes < PREFIX_BYTES + _HEAD.size:
            raise ValueError("max_frame_bytes is too small")
        self.max_frame_bytes = max_frame_bytes
        self.max_entries = max_entries
        self._buf = bytearray()
        self._need = PREFIX_BYTES  # bytes the buffer must hold before another frame can complete
        self._broken = False

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Decoded]:
        if self._broken:
            raise DecodeError("stream already failed to decode")
        self._buf += data
        if len(self._buf) < self._need:
            return []
        # One copy per completed batch: decoding from immutable bytes gives entry data as
        # cheap slices, and the copy is bounded by one frame plus the piece just fed.
        buf = bytes(self._buf)
        size = len(buf)
        off = 0
        out: list[Decoded] = []
        try:
            while True:
                if size - off < PREFIX_BYTES:
                    need = PREFIX_BYTES
                    break
                (n,) = _U32.unpack_from(buf, off)
                if n + PREFIX_BYTES > self.max_frame_bytes:
                    raise DecodeError(f"frame of {n + PREFIX_BYTES} bytes exceeds {self.max_frame_bytes}")
                if n < _HEAD.size:
                    raise DecodeError(f"frame body of {n} bytes is too short")
                if size - off - PREFIX_BYTES < n:
                    need = PREFIX_BYTES + n
                    break
                start = off + PREFIX_BYTES
                out.append(_decode_body(buf, start, start + n, self.max_entries))
                off = start + n
        except DecodeError:
            self._broken = True
            self._buf = bytearray()
            raise
        del self._buf[:off]
        self._need = need
        return out
