"""The exceptions: one class per C status code (``es_status``), plus
:class:`StoreClosed`, which the binding raises itself."""

from __future__ import annotations

import ctypes
import re
import uuid
from typing import Dict, NoReturn, Optional, Type

from . import _native


class EventStoreError(Exception):
    """Base of every error the library reports. ``status`` is the C status code
    (``es_status``), ``status_name`` its C name, ``message`` the library's description
    of the cause (also ``str(error)``)."""

    status: int = -1
    status_name: str = "ES_UNKNOWN"

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class InvalidArgument(EventStoreError, ValueError):
    """``ES_ERR_INVALID_ARGUMENT``: an argument the library (or the binding, before the
    call) refuses: an empty, over-long or invalid event type, no events, an expected
    version that is not ``ANY``, ``NO_STREAM``, ``STREAM_EXISTS`` or ``>= 0``, a
    count or page size out of range, a path with a NUL byte. Also a ``ValueError``."""

    status = _native.ES_ERR_INVALID_ARGUMENT
    status_name = "ES_ERR_INVALID_ARGUMENT"


class StoreClosed(InvalidArgument):
    """A call on a :class:`~eventstore.Store` that is closed, or being closed by another
    thread (``ES_ERR_INVALID_ARGUMENT``, like a NULL handle in C; a ``ValueError``, as
    for a closed Python file)."""


class IoError(EventStoreError):
    """``ES_ERR_IO``: the operating system refused a file operation; the message names
    the path and the OS error. A failed write or sync also poisons the store (see
    :class:`Poisoned`)."""

    status = _native.ES_ERR_IO
    status_name = "ES_ERR_IO"


class InvalidHeader(EventStoreError):
    """``ES_ERR_INVALID_HEADER``: the file is not an event store, or has a format
    version this library cannot read. The file is left unchanged."""

    status = _native.ES_ERR_INVALID_HEADER
    status_name = "ES_ERR_INVALID_HEADER"


class CorruptRecord(EventStoreError):
    """``ES_ERR_CORRUPT_RECORD``: damaged data with valid data after it (not a torn
    tail); the message gives the byte offset. The file is left unchanged."""

    status = _native.ES_ERR_CORRUPT_RECORD
    status_name = "ES_ERR_CORRUPT_RECORD"


class WrongExpectedVersion(EventStoreError):
    """``ES_ERR_WRONG_EXPECTED_VERSION``: the optimistic-concurrency check failed and
    nothing was written. ``expected`` is what the append asked for (``ANY``,
    ``NO_STREAM``, ``STREAM_EXISTS`` or a version); ``actual`` is the stream's last
    version, ``None`` when it had no events. ``stream_id`` is the stream whose check
    failed (for ``append_multi``, the one of its streams that conflicted), ``None``
    only if the library's message did not name it."""

    status = _native.ES_ERR_WRONG_EXPECTED_VERSION
    status_name = "ES_ERR_WRONG_EXPECTED_VERSION"

    def __init__(
        self,
        message: str,
        expected: int,
        actual: Optional[int],
        stream_id: Optional[uuid.UUID] = None,
    ) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual
        self.stream_id = stream_id


class StreamNotFound(EventStoreError):
    """``ES_ERR_STREAM_NOT_FOUND``: ``read_stream`` of a stream with no events."""

    status = _native.ES_ERR_STREAM_NOT_FOUND
    status_name = "ES_ERR_STREAM_NOT_FOUND"


class EventTooLarge(EventStoreError):
    """``ES_ERR_EVENT_TOO_LARGE``: an event's record (type, metadata, payload and a
    fixed overhead) exceeds 65,536 bytes. Nothing was written."""

    status = _native.ES_ERR_EVENT_TOO_LARGE
    status_name = "ES_ERR_EVENT_TOO_LARGE"


class Locked(EventStoreError):
    """``ES_ERR_LOCKED``: another ``Store`` (in this or another process) has the file
    open."""

    status = _native.ES_ERR_LOCKED
    status_name = "ES_ERR_LOCKED"


class Poisoned(EventStoreError):
    """``ES_ERR_POISONED``: an earlier write or sync on this store failed; appends are
    refused until it is closed and reopened. Reads keep working."""

    status = _native.ES_ERR_POISONED
    status_name = "ES_ERR_POISONED"


class InternalError(EventStoreError):
    """``ES_ERR_INTERNAL``: a bug inside the library (a caught panic)."""

    status = _native.ES_ERR_INTERNAL
    status_name = "ES_ERR_INTERNAL"


class ReadOnly(EventStoreError):
    """``ES_ERR_READ_ONLY`` (libeventstore 0.2): a write on a store opened read-only."""

    status = _native.ES_ERR_READ_ONLY
    status_name = "ES_ERR_READ_ONLY"


class DuplicateEventId(EventStoreError):
    """``ES_ERR_DUPLICATE_EVENT_ID`` (libeventstore 0.2): an event id of the append is
    already recorded and the append is not an exact retry. Nothing was written. The
    message names the id; ``event_id`` is it (``None`` only if the message did not
    name it)."""

    status = _native.ES_ERR_DUPLICATE_EVENT_ID
    status_name = "ES_ERR_DUPLICATE_EVENT_ID"

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message, status)
        self.event_id = _named_uuid(message, "duplicate event id ")


class EventNotFound(EventStoreError):
    """``ES_ERR_EVENT_NOT_FOUND`` (libeventstore 0.2): no event has that id."""

    status = _native.ES_ERR_EVENT_NOT_FOUND
    status_name = "ES_ERR_EVENT_NOT_FOUND"


BY_STATUS: Dict[int, Type[EventStoreError]] = {
    cls.status: cls
    for cls in (
        InvalidArgument,
        IoError,
        InvalidHeader,
        CorruptRecord,
        WrongExpectedVersion,
        StreamNotFound,
        EventTooLarge,
        Locked,
        Poisoned,
        InternalError,
        ReadOnly,
        DuplicateEventId,
        EventNotFound,
    )
}


_UUID = "([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"


def _named_uuid(message: str, prefix: str) -> Optional[uuid.UUID]:
    """The UUID right after ``prefix`` in a library message, if there is one."""
    found = re.search(re.escape(prefix) + _UUID, message)
    return uuid.UUID(found.group(1)) if found else None


def raise_for(lib: _native.Library, status: int) -> NoReturn:
    """Raises the exception for a failed call. Must run on the thread that made the
    call, before any other call into the library there (``es_last_error`` is
    thread-local)."""
    message = lib.es_last_error().decode("utf-8", "replace")
    if status == _native.ES_ERR_WRONG_EXPECTED_VERSION:
        expected = ctypes.c_int64()
        actual = ctypes.c_int64()
        lib.es_last_conflict(ctypes.byref(expected), ctypes.byref(actual))
        stream = (ctypes.c_uint8 * 16)()
        stream_id = (
            uuid.UUID(bytes=bytes(stream))
            if lib.es_last_conflict_stream(stream) == _native.ES_OK
            else None
        )
        raise WrongExpectedVersion(
            message,
            expected.value,
            None if actual.value < 0 else actual.value,
            stream_id,
        )
    cls = BY_STATUS.get(status)
    if cls is None:
        error = EventStoreError(f"unknown status {status}: {message}", status)
        error.status_name = lib.es_status_name(status).decode("ascii", "replace")
        raise error
    raise cls(message)
