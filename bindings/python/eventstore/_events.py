"""Event values: :class:`ProposedEvent` (to append), :class:`RecordedEvent` (read back),
:class:`AppendResult`; packing appends into C structures and reading C results.

Reads are cheap because a :class:`RecordedEvent` made by a read copies nothing: it
holds the C read result (one per read, shared by all of its events) and its index
there, and builds a field's Python value when the field is read. The C result is
released (``es_free``) when the last event made from it is gone.
"""

from __future__ import annotations

import ctypes
import struct
import uuid
from dataclasses import FrozenInstanceError, dataclass
from datetime import datetime, timedelta, timezone
from itertools import repeat
from typing import Any, Callable, Iterable, List, Optional, Tuple, Union, cast

from . import _native
from ._check import bytes_like, optional_uuid, u64
from ._check import event_type as utf8_event_type

BytesLike = Union[bytes, bytearray, memoryview]
"""What payloads and metadata may be given as (anything with the buffer protocol)."""

_MEM = _native.memory()
_W = _native.EVENT_WORDS
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)

# Word indexes of the fields of an es_event (see _native.es_event).
_GLOBAL_POSITION = 0
_STREAM_VERSION = 1
_RECORDED_AT = 2
_STREAM_ID = 3  # two words, RFC 4122 byte order
_EVENT_ID = 5  # two words
_TYPE, _TYPE_LEN = 7, 8
_METADATA, _METADATA_LEN = 9, 10
_PAYLOAD, _PAYLOAD_LEN = 11, 12


@dataclass(frozen=True)
class ProposedEvent:
    """An event to append.

    ``event_type`` is a non-empty ``str`` (at most 256 bytes in UTF-8); ``payload``
    and ``metadata`` are bytes-like (``bytes``, ``bytearray``, ``memoryview``...);
    ``event_id=None`` lets the library assign a fresh UUID. Wrong types raise
    ``TypeError`` here, at construction.
    """

    event_type: str
    payload: BytesLike = b""
    metadata: BytesLike = b""
    event_id: Optional[uuid.UUID] = None

    def __post_init__(self) -> None:
        # The UTF-8 form is kept for append (not a field: not in repr or ==).
        object.__setattr__(self, "_utf8", utf8_event_type(self.event_type))
        bytes_like(self.payload, "payload")
        bytes_like(self.metadata, "metadata")
        optional_uuid(self.event_id, "event_id")


@dataclass(frozen=True)
class AppendResult:
    """Where an append's events were placed: the first event's global position and
    stream version, and how many events were appended."""

    first_global_position: int
    first_stream_version: int
    count: int


def _address(data: bytes) -> int:
    """The address of a bytes object's contents (valid while it lives)."""
    # ctypes passes a bytes object as a pointer to its contents; cast reads it back.
    return ctypes.cast(cast(Any, data), ctypes.c_void_p).value or 0


class _Result:
    """One C read result (``es_events``): the memory its events' fields are read from.
    ``es_free`` runs when the last :class:`RecordedEvent` made from it is gone."""

    __slots__ = ("_events", "_free", "words", "raw")

    words: memoryview  # the es_event array as 64-bit words
    raw: memoryview  # the same as bytes

    def __init__(self, events: _native.es_events, free: Callable[[Any], None]) -> None:
        start = int(events.items)
        self.raw = _MEM[start : start + int(events.len) * _W * 8]
        self.words = self.raw.cast("Q")
        # Set last: __del__ frees only a result that was fully taken over.
        self._free = free
        self._events = ctypes.byref(events)  # keeps `events` alive too

    def __del__(self) -> None:
        # Runs once, when no event refers to the result any more; also at interpreter
        # exit, when module globals may be gone: it uses only what it holds.
        events = getattr(self, "_events", None)
        if events is not None:
            self._free(events)


class _Owned:
    """The memory of a :class:`RecordedEvent` built by its constructor (or unpickled):
    one es_event laid out in a Python buffer, pointing into a bytes object it keeps."""

    __slots__ = ("words", "raw", "_data")

    def __init__(
        self,
        global_position: int,
        stream_version: int,
        recorded_at_us: int,
        stream_id: bytes,
        event_id: bytes,
        event_type: bytes,
        metadata: bytes,
        payload: bytes,
    ) -> None:
        self._data = data = event_type + b"\0" + metadata + payload
        base = _address(data)
        lt, lm = len(event_type), len(metadata)
        self.raw = memoryview(
            struct.pack(
                "=QQQ16s16sQQQQQQ",
                global_position,
                stream_version,
                recorded_at_us,
                stream_id,
                event_id,
                base,
                lt,
                base + lt + 1,
                lm,
                base + lt + 1 + lm,
                len(payload),
            )
        )
        self.words = self.raw.cast("Q")


class RecordedEvent:
    """An event as stored in the log. Immutable; compares and hashes by its fields.

    Fields: ``global_position`` (0-based position in the whole log),
    ``stream_version`` (0-based version in its stream), ``recorded_at`` (the commit
    time, a UTC ``datetime`` with microseconds; one value per append), ``stream_id``
    and ``event_id`` (``uuid.UUID``), ``event_type`` (``str``), ``metadata`` and
    ``payload`` (``bytes``).

    An event returned by a read keeps that read's C buffer alive (shared by all events
    of the read) and builds each field's value when it is read: reading a field twice
    builds it twice (equal values). To keep a few events of a huge read without its
    buffer, copy them: ``copy.copy(event)`` holds only that event's bytes.
    """

    __slots__ = ("_r", "_i")

    _r: Any  # _Result or _Owned
    _i: int  # index of the event's first word

    def __init__(
        self,
        global_position: int,
        stream_version: int,
        recorded_at: datetime,
        stream_id: uuid.UUID,
        event_id: uuid.UUID,
        event_type: str,
        metadata: BytesLike,
        payload: BytesLike,
    ) -> None:
        if not isinstance(recorded_at, datetime):
            raise TypeError(f"recorded_at must be a datetime, not {type(recorded_at).__name__}")
        if recorded_at.tzinfo is None:
            recorded_at = recorded_at.replace(tzinfo=timezone.utc)
        if not isinstance(stream_id, uuid.UUID):
            raise TypeError(f"stream_id must be a uuid.UUID, not {type(stream_id).__name__}")
        if not isinstance(event_id, uuid.UUID):
            raise TypeError(f"event_id must be a uuid.UUID, not {type(event_id).__name__}")
        owned = _Owned(
            u64(global_position, "global_position"),
            u64(stream_version, "stream_version"),
            u64((recorded_at - _EPOCH) // _MICROSECOND, "recorded_at (microseconds since 1970)"),
            stream_id.bytes,
            event_id.bytes,
            utf8_event_type(event_type),
            bytes(bytes_like(metadata, "metadata")),
            bytes(bytes_like(payload, "payload")),
        )
        _set_r(self, owned)
        _set_i(self, 0)

    # The fields, read from the C result when asked for.

    @property
    def global_position(self) -> int:
        return int(self._r.words[self._i])

    @property
    def stream_version(self) -> int:
        return int(self._r.words[self._i + _STREAM_VERSION])

    @property
    def recorded_at(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self._r.words[self._i + _RECORDED_AT])

    @property
    def recorded_at_us(self) -> int:
        """``recorded_at`` as microseconds since the Unix epoch (what the store keeps)."""
        return int(self._r.words[self._i + _RECORDED_AT])

    @property
    def stream_id(self) -> uuid.UUID:
        at = (self._i + _STREAM_ID) * 8
        return uuid.UUID(bytes=self._r.raw[at : at + 16].tobytes())

    @property
    def event_id(self) -> uuid.UUID:
        at = (self._i + _EVENT_ID) * 8
        return uuid.UUID(bytes=self._r.raw[at : at + 16].tobytes())

    @property
    def event_type(self) -> str:
        w = self._r.words
        i = self._i
        p = w[i + _TYPE]
        return str(_MEM[p : p + w[i + _TYPE_LEN]], "utf-8")

    @property
    def metadata(self) -> bytes:
        w = self._r.words
        i = self._i
        p = w[i + _METADATA]
        return _MEM[p : p + w[i + _METADATA_LEN]].tobytes()

    @property
    def payload(self) -> bytes:
        w = self._r.words
        i = self._i
        p = w[i + _PAYLOAD]
        return _MEM[p : p + w[i + _PAYLOAD_LEN]].tobytes()

    # Value semantics, as the frozen dataclass this class replaces had.

    def _key(self) -> Tuple[Any, ...]:
        w = self._r.words
        i = self._i
        at = (i + _STREAM_ID) * 8
        return (
            w[i],
            w[i + _STREAM_VERSION],
            w[i + _RECORDED_AT],
            self._r.raw[at : at + 32].tobytes(),
            self.event_type,
            self.metadata,
            self.payload,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordedEvent):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"RecordedEvent(global_position={self.global_position!r}, "
            f"stream_version={self.stream_version!r}, recorded_at={self.recorded_at!r}, "
            f"stream_id={self.stream_id!r}, event_id={self.event_id!r}, "
            f"event_type={self.event_type!r}, metadata={self.metadata!r}, "
            f"payload={self.payload!r})"
        )

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        return (
            RecordedEvent,
            (
                self.global_position,
                self.stream_version,
                self.recorded_at,
                self.stream_id,
                self.event_id,
                self.event_type,
                self.metadata,
                self.payload,
            ),
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


# Slot setters that bypass the frozen __setattr__ (used by the constructor and reads).
_set_r: Callable[[RecordedEvent, Any], None] = getattr(RecordedEvent, "_r").__set__
_set_i: Callable[[RecordedEvent, int], None] = getattr(RecordedEvent, "_i").__set__
_new = object.__new__


def _event_at(result: _Result, index: int) -> RecordedEvent:
    event: RecordedEvent = _new(RecordedEvent)
    _set_r(event, result)
    _set_i(event, index)
    return event


def take(events: _native.es_events, free: Callable[[Any], None]) -> List[RecordedEvent]:
    """The events of a successful read; their memory stays with them (freed with the
    last one)."""
    n = int(events.len)
    if n == 0:
        free(ctypes.byref(events))
        return []
    result = _Result(events, free)
    return list(map(_event_at, repeat(result, n), range(0, n * _W, _W)))


# --- appends ----------------------------------------------------------------------------

_PROPOSED = struct.Struct(_native.PROPOSED_EVENT_FORMAT)
_NIL = bytes(16)


def pack(events: Iterable[ProposedEvent]) -> Tuple[bytes, bytes, int]:
    """Packs ``events`` into an ``es_proposed_event`` array. Returns the array, the
    buffer its pointers point into (keep both alive for the call) and the count."""
    if isinstance(events, (ProposedEvent, str, bytes)):
        raise TypeError(
            f"events must be an iterable of ProposedEvent (e.g. a list), "
            f"not one {type(events).__name__}"
        )
    try:
        items = events if type(events) is list else list(events)
    except TypeError:
        raise TypeError(
            f"events must be an iterable of ProposedEvent, not {type(events).__name__}"
        ) from None
    chunks: List[Any] = []
    sizes: List[Tuple[bytes, int, int, int]] = []
    for k, e in enumerate(items):
        if not isinstance(e, ProposedEvent):
            raise TypeError(f"events[{k}] must be a ProposedEvent, not {type(e).__name__}")
        t = getattr(e, "_utf8", None) or utf8_event_type(e.event_type)
        m = e.metadata
        p = e.payload
        # A mutable buffer is copied, so that no other thread can change its length
        # between the sizes taken here and the copy into `data` below.
        if type(m) is not bytes:
            m = bytes(bytes_like(m, "metadata"))
        if type(p) is not bytes:
            p = bytes(bytes_like(p, "payload"))
        chunks += (t, m, p)
        eid = e.event_id
        sizes.append((_NIL if eid is None else eid.bytes, len(t), len(m), len(p)))
    data = b"".join(chunks)
    at = _address(data)
    parts = []
    for eid_bytes, lt, lm, lp in sizes:
        parts.append(_PROPOSED.pack(eid_bytes, at, lt, at + lt, lm, at + lt + lm, lp))
        at += lt + lm + lp
    return b"".join(parts), data, len(items)
