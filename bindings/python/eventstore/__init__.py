"""Python binding of libeventstore, an embedded crash-safe event store.

Pure Python over the C ABI with :mod:`ctypes`; no compiler is needed at install time.
The shared library is found through ``$EVENTSTORE_LIBRARY`` or the repository's
``target/release`` (see :func:`eventstore._native.load`).

Example::

    import uuid
    import eventstore

    with eventstore.Store("orders.store") as store:
        order = uuid.uuid4()
        store.append(order, [eventstore.ProposedEvent("OrderPlaced", b'{"total": 42}')],
                     expected_version=eventstore.NO_STREAM)
        for event in store.read_stream(order):
            print(event.global_position, event.stream_version, event.event_type)

A :class:`Store` may be shared by many threads. Calls release the GIL while the
library works.
"""

from __future__ import annotations

import ctypes
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator, Optional, Sequence, Union

from . import _native
from ._native import LibraryNotFound

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "Store",
    "ProposedEvent",
    "RecordedEvent",
    "AppendResult",
    "EventStoreError",
    "InvalidArgument",
    "IoError",
    "InvalidHeader",
    "CorruptRecord",
    "WrongExpectedVersion",
    "StreamNotFound",
    "EventTooLarge",
    "Locked",
    "Poisoned",
    "InternalError",
    "LibraryNotFound",
    "library_version",
]

ANY = _native.ES_EXPECTED_ANY
"""Append whatever the stream's state."""
NO_STREAM = _native.ES_EXPECTED_NO_STREAM
"""The stream must not have any events yet."""
STREAM_EXISTS = _native.ES_EXPECTED_STREAM_EXISTS
"""The stream must have at least one event."""

ExpectedVersion = int
"""``ANY``, ``NO_STREAM``, ``STREAM_EXISTS`` or a version ``>= 0``."""

_DEFAULT_PAGE = 1000
_ALL = 2**64 - 1

_lib_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None


def _library() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = _native.load()
        return _lib


def library_version() -> str:
    """The version of the loaded libeventstore, e.g. ``"0.1.0"``."""
    return _library().es_version().decode()


# --- errors ---------------------------------------------------------------------


class EventStoreError(Exception):
    """Base of every error the library reports; ``status`` is the C status code and
    ``message`` the library's description of the cause."""

    status: int = -1

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class InvalidArgument(EventStoreError):
    status = _native.ES_ERR_INVALID_ARGUMENT


class IoError(EventStoreError):
    status = _native.ES_ERR_IO


class InvalidHeader(EventStoreError):
    status = _native.ES_ERR_INVALID_HEADER


class CorruptRecord(EventStoreError):
    status = _native.ES_ERR_CORRUPT_RECORD


class WrongExpectedVersion(EventStoreError):
    """The optimistic-concurrency check failed. ``expected`` is what the append asked
    for (``ANY``, ``NO_STREAM``, ``STREAM_EXISTS`` or a version); ``actual`` is the
    stream's last version, ``None`` when it had no events."""

    status = _native.ES_ERR_WRONG_EXPECTED_VERSION

    def __init__(self, message: str, expected: int, actual: Optional[int]):
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class StreamNotFound(EventStoreError):
    status = _native.ES_ERR_STREAM_NOT_FOUND


class EventTooLarge(EventStoreError):
    status = _native.ES_ERR_EVENT_TOO_LARGE


class Locked(EventStoreError):
    status = _native.ES_ERR_LOCKED


class Poisoned(EventStoreError):
    status = _native.ES_ERR_POISONED


class InternalError(EventStoreError):
    status = _native.ES_ERR_INTERNAL


_BY_STATUS = {
    cls.status: cls
    for cls in (
        InvalidArgument,
        IoError,
        InvalidHeader,
        CorruptRecord,
        StreamNotFound,
        EventTooLarge,
        Locked,
        Poisoned,
        InternalError,
    )
}


def _raise_for(lib: ctypes.CDLL, status: int) -> None:
    """Raises the exception for a failed call; must run on the calling thread."""
    message = lib.es_last_error().decode("utf-8", "replace")
    if status == _native.ES_ERR_WRONG_EXPECTED_VERSION:
        expected = ctypes.c_int64()
        actual = ctypes.c_int64()
        lib.es_last_conflict(ctypes.byref(expected), ctypes.byref(actual))
        raise WrongExpectedVersion(
            message, expected.value, None if actual.value < 0 else actual.value
        )
    cls = _BY_STATUS.get(status)
    if cls is None:
        raise EventStoreError(f"unknown status {status}: {message}", status)
    raise cls(message)


# --- values ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProposedEvent:
    """An event to append. ``event_id=None`` lets the library assign a fresh UUID."""

    event_type: str
    payload: bytes = b""
    metadata: bytes = b""
    event_id: Optional[uuid.UUID] = None


@dataclass(frozen=True)
class RecordedEvent:
    """An event as stored in the log."""

    global_position: int
    stream_version: int
    recorded_at: datetime
    stream_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    metadata: bytes
    payload: bytes


@dataclass(frozen=True)
class AppendResult:
    """Where an append's events were placed."""

    first_global_position: int
    first_stream_version: int
    count: int


def _c_uuid(value: uuid.UUID) -> _native.es_uuid:
    if not isinstance(value, uuid.UUID):
        raise TypeError(f"expected uuid.UUID, got {type(value).__name__}")
    out = _native.es_uuid()
    ctypes.memmove(out.bytes, value.bytes, 16)
    return out


def _py_uuid(value: _native.es_uuid) -> uuid.UUID:
    return uuid.UUID(bytes=bytes(value.bytes))


def _copy_events(events: _native.es_events) -> list[RecordedEvent]:
    out = []
    for i in range(events.len):
        e = events.items[i]
        micros = e.recorded_at_us
        out.append(
            RecordedEvent(
                global_position=e.global_position,
                stream_version=e.stream_version,
                recorded_at=datetime.fromtimestamp(micros // 1_000_000, tz=timezone.utc).replace(
                    microsecond=micros % 1_000_000
                ),
                stream_id=_py_uuid(e.stream_id),
                event_id=_py_uuid(e.event_id),
                event_type=ctypes.string_at(e.event_type, e.event_type_len).decode("utf-8"),
                metadata=ctypes.string_at(e.metadata, e.metadata_len) if e.metadata_len else b"",
                payload=ctypes.string_at(e.payload, e.payload_len) if e.payload_len else b"",
            )
        )
    return out


def _expected_code(expected_version: ExpectedVersion) -> int:
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise TypeError("expected_version must be ANY, NO_STREAM, STREAM_EXISTS or an int >= 0")
    return expected_version


# --- the store ------------------------------------------------------------------


class Store:
    """An open event store file. Use as a context manager, or call :meth:`close`;
    a store that is garbage-collected while open is closed then.

    Opening creates the file if needed and recovers it after a crash. Only one
    ``Store`` (in any process) may have a file open at a time: a second open raises
    :class:`Locked`.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"]):
        self._lib = _library()
        self._handle = ctypes.c_void_p()
        self._close_lock = threading.Lock()
        encoded = os.fsencode(path)
        status = self._lib.es_open(encoded, ctypes.byref(self._handle))
        if status != _native.ES_OK:
            _raise_for(self._lib, status)
        self.path = path

    # lifecycle

    def close(self) -> None:
        """Closes the store (idempotent). Results already read stay valid."""
        with self._close_lock:
            handle, self._handle = self._handle, ctypes.c_void_p()
        if handle:
            self._lib.es_close(handle)

    @property
    def closed(self) -> bool:
        return not self._handle

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None):
            self.close()

    def _h(self) -> ctypes.c_void_p:
        if not self._handle:
            raise InvalidArgument("the store is closed")
        return self._handle

    # writing

    def append(
        self,
        stream_id: uuid.UUID,
        events: Sequence[ProposedEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Appends ``events`` to a stream atomically and durably. Raises
        :class:`WrongExpectedVersion` when the stream's state does not satisfy
        ``expected_version``; nothing is written then."""
        events = list(events)
        code = _expected_code(expected_version)
        array = (_native.es_proposed_event * max(len(events), 1))()
        keep = []  # the bytes objects the C structs point into
        for slot, event in zip(array, events):
            if not isinstance(event, ProposedEvent):
                raise TypeError(f"expected ProposedEvent, got {type(event).__name__}")
            type_bytes = event.event_type.encode("utf-8")
            metadata = bytes(event.metadata)
            payload = bytes(event.payload)
            keep += [type_bytes, metadata, payload]
            slot.event_id = _c_uuid(event.event_id) if event.event_id else _native.es_uuid()
            slot.event_type = ctypes.cast(ctypes.c_char_p(type_bytes), ctypes.c_void_p)
            slot.event_type_len = len(type_bytes)
            slot.metadata = ctypes.cast(ctypes.c_char_p(metadata), ctypes.c_void_p)
            slot.metadata_len = len(metadata)
            slot.payload = ctypes.cast(ctypes.c_char_p(payload), ctypes.c_void_p)
            slot.payload_len = len(payload)
        result = _native.es_append_result()
        sid = _c_uuid(stream_id)
        status = self._lib.es_append(
            self._h(), ctypes.byref(sid), code, array, len(events), ctypes.byref(result)
        )
        if status != _native.ES_OK:
            _raise_for(self._lib, status)
        del keep
        return AppendResult(
            result.first_global_position, result.first_stream_version, result.count
        )

    # reading

    def read_stream(
        self, stream_id: uuid.UUID, from_version: int = 0, max_count: int = _ALL
    ) -> list[RecordedEvent]:
        """Up to ``max_count`` events of a stream from ``from_version``. Raises
        :class:`StreamNotFound` when the stream has no events."""
        out = _native.es_events()
        sid = _c_uuid(stream_id)
        status = self._lib.es_read_stream(
            self._h(), ctypes.byref(sid), from_version, max_count, ctypes.byref(out)
        )
        return self._take(status, out)

    def read_all(self, from_position: int = 0, max_count: int = _ALL) -> list[RecordedEvent]:
        """Up to ``max_count`` events of the whole log from ``from_position``."""
        out = _native.es_events()
        status = self._lib.es_read_all(self._h(), from_position, max_count, ctypes.byref(out))
        return self._take(status, out)

    def _take(self, status: int, out: _native.es_events) -> list[RecordedEvent]:
        if status != _native.ES_OK:
            _raise_for(self._lib, status)
        try:
            return _copy_events(out)
        finally:
            self._lib.es_free(ctypes.byref(out))

    def iter_stream(
        self, stream_id: uuid.UUID, from_version: int = 0, page_size: int = _DEFAULT_PAGE
    ) -> Iterator[RecordedEvent]:
        """Lazily pages through a stream, ``page_size`` events per call."""
        version = from_version
        while True:
            page = self.read_stream(stream_id, version, page_size)
            yield from page
            if len(page) < page_size:
                return
            version = page[-1].stream_version + 1

    def iter_all(
        self, from_position: int = 0, page_size: int = _DEFAULT_PAGE
    ) -> Iterator[RecordedEvent]:
        """Lazily pages through the whole log, ``page_size`` events per call."""
        position = from_position
        while True:
            page = self.read_all(position, page_size)
            yield from page
            if len(page) < page_size:
                return
            position = page[-1].global_position + 1

    def stream_version(self, stream_id: uuid.UUID) -> Optional[int]:
        """The stream's last version (0-based), ``None`` when it has no events."""
        out = ctypes.c_uint64()
        sid = _c_uuid(stream_id)
        status = self._lib.es_stream_version(self._h(), ctypes.byref(sid), ctypes.byref(out))
        if status == _native.ES_ERR_STREAM_NOT_FOUND:
            return None
        if status != _native.ES_OK:
            _raise_for(self._lib, status)
        return out.value

    @property
    def global_position(self) -> int:
        """The number of events in the log: the next global position."""
        return self._lib.es_global_position(self._h())
