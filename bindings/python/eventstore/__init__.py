"""Python binding of libeventstore, an embedded crash-safe event store.

``pip install`` builds the library (Rust) into this package; ``$EVENTSTORE_LIBRARY``
overrides which library is loaded. See README.md for the whole API.

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

from . import _native
from ._errors import (
    CorruptRecord,
    DuplicateEventId,
    EventNotFound,
    EventStoreError,
    EventTooLarge,
    InternalError,
    InvalidArgument,
    InvalidHeader,
    IoError,
    Locked,
    Poisoned,
    ReadOnly,
    StoreClosed,
    StreamNotFound,
    WrongExpectedVersion,
)
from ._events import AppendResult, ProposedEvent, RecordedEvent
from ._native import LibraryNotFound
from ._store import Store, library

__version__ = "0.1.0"

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
    "StoreClosed",
    "IoError",
    "InvalidHeader",
    "CorruptRecord",
    "WrongExpectedVersion",
    "StreamNotFound",
    "EventTooLarge",
    "Locked",
    "Poisoned",
    "InternalError",
    "ReadOnly",
    "DuplicateEventId",
    "EventNotFound",
    "LibraryNotFound",
    "library_version",
    "library_path",
]

ANY: int = _native.ES_EXPECTED_ANY
"""Append whatever the stream's state."""
NO_STREAM: int = _native.ES_EXPECTED_NO_STREAM
"""The stream must not have any events yet."""
STREAM_EXISTS: int = _native.ES_EXPECTED_STREAM_EXISTS
"""The stream must have at least one event."""


def library_version() -> str:
    """The version of the loaded libeventstore, e.g. ``"0.1.0"``."""
    return str(library().es_version().decode())


def library_path() -> str:
    """The file the library was loaded from (see README, "How the library is found")."""
    return library().path
