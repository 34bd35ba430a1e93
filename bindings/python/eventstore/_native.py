"""ctypes declarations of the libeventstore C ABI (``include/eventstore.h``).

This module only finds the shared library and declares its functions and structures;
:mod:`eventstore` builds the Python API on top of it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

ES_OK = 0
ES_ERR_INVALID_ARGUMENT = 1
ES_ERR_IO = 2
ES_ERR_INVALID_HEADER = 3
ES_ERR_CORRUPT_RECORD = 4
ES_ERR_WRONG_EXPECTED_VERSION = 5
ES_ERR_STREAM_NOT_FOUND = 6
ES_ERR_EVENT_TOO_LARGE = 7
ES_ERR_LOCKED = 8
ES_ERR_POISONED = 9
ES_ERR_INTERNAL = 10

ES_EXPECTED_ANY = -2
ES_EXPECTED_NO_STREAM = -1
ES_EXPECTED_STREAM_EXISTS = -4

LIBRARY_ENV = "EVENTSTORE_LIBRARY"


class es_uuid(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_uint8 * 16)]


class es_proposed_event(ctypes.Structure):
    _fields_ = [
        ("event_id", es_uuid),
        ("event_type", ctypes.c_void_p),
        ("event_type_len", ctypes.c_size_t),
        ("metadata", ctypes.c_void_p),
        ("metadata_len", ctypes.c_size_t),
        ("payload", ctypes.c_void_p),
        ("payload_len", ctypes.c_size_t),
    ]


class es_event(ctypes.Structure):
    _fields_ = [
        ("global_position", ctypes.c_uint64),
        ("stream_version", ctypes.c_uint64),
        ("recorded_at_us", ctypes.c_uint64),
        ("stream_id", es_uuid),
        ("event_id", es_uuid),
        ("event_type", ctypes.c_void_p),
        ("event_type_len", ctypes.c_size_t),
        ("metadata", ctypes.c_void_p),
        ("metadata_len", ctypes.c_size_t),
        ("payload", ctypes.c_void_p),
        ("payload_len", ctypes.c_size_t),
    ]


class es_events(ctypes.Structure):
    _fields_ = [
        ("items", ctypes.POINTER(es_event)),
        ("len", ctypes.c_size_t),
        ("owner", ctypes.c_void_p),
    ]


class es_append_result(ctypes.Structure):
    _fields_ = [
        ("first_global_position", ctypes.c_uint64),
        ("first_stream_version", ctypes.c_uint64),
        ("count", ctypes.c_uint64),
    ]


def _candidates() -> list[Path | str]:
    """Where the library is looked for, in order."""
    found: list[Path | str] = []
    env = os.environ.get(LIBRARY_ENV)
    if env:
        found.append(Path(env))
        return found
    here = Path(__file__).resolve()
    # bindings/python/eventstore/_native.py -> the repository root is three levels up.
    for root in here.parents[2:4]:
        found.append(root / "target" / "release" / "libeventstore.so")
    system = ctypes.util.find_library("eventstore")
    if system:
        found.append(system)
    return found


class LibraryNotFound(OSError):
    """The shared library could not be found or loaded."""


def load() -> ctypes.CDLL:
    """Loads libeventstore: from ``$EVENTSTORE_LIBRARY`` when set, else from the
    repository's ``target/release``, else from the system's library path."""
    tried = []
    for candidate in _candidates():
        if isinstance(candidate, Path) and not candidate.is_file():
            tried.append(f"{candidate} (no such file)")
            continue
        try:
            return _declare(ctypes.CDLL(str(candidate)))
        except OSError as e:
            tried.append(f"{candidate} ({e})")
    if not os.environ.get(LIBRARY_ENV):
        tried.append("the system library path (ctypes.util.find_library('eventstore'))")
    raise LibraryNotFound(
        "libeventstore not found; set EVENTSTORE_LIBRARY to the path of "
        "libeventstore.so or build it with `make lib`. Tried: " + "; ".join(tried)
    )


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    c = ctypes
    store_p = c.c_void_p
    sigs = {
        "es_open": (c.c_int32, [c.c_char_p, c.POINTER(store_p)]),
        "es_close": (None, [store_p]),
        "es_append": (
            c.c_int32,
            [
                store_p,
                c.POINTER(es_uuid),
                c.c_int64,
                c.POINTER(es_proposed_event),
                c.c_size_t,
                c.POINTER(es_append_result),
            ],
        ),
        "es_read_stream": (
            c.c_int32,
            [store_p, c.POINTER(es_uuid), c.c_uint64, c.c_uint64, c.POINTER(es_events)],
        ),
        "es_read_all": (c.c_int32, [store_p, c.c_uint64, c.c_uint64, c.POINTER(es_events)]),
        "es_free": (None, [c.POINTER(es_events)]),
        "es_stream_version": (
            c.c_int32,
            [store_p, c.POINTER(es_uuid), c.POINTER(c.c_uint64)],
        ),
        "es_global_position": (c.c_uint64, [store_p]),
        "es_last_error": (c.c_char_p, []),
        "es_status_name": (c.c_char_p, [c.c_int32]),
        "es_version": (c.c_char_p, []),
        "es_last_conflict": (c.c_int32, [c.POINTER(c.c_int64), c.POINTER(c.c_int64)]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib
