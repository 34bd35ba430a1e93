"""ctypes declarations of the libeventstore C ABI (``include/eventstore.h``), and
where the shared library is found.

This is the one place that knows the C names: status codes, constants, structure
layouts and function signatures (:data:`SIGNATURES`). A function added to the C
library is declared here by one entry in :data:`SIGNATURES` (plus its structures);
:mod:`eventstore` builds the Python API on top.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple, Type, Union

# --- status codes (es_status; values fixed forever) ------------------------------------

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
# Statuses of 0.2 (API.md "Additions of 0.2"): the exceptions exist already, so that a
# library that returns them is reported with the right class.
ES_ERR_READ_ONLY = 11
ES_ERR_DUPLICATE_EVENT_ID = 12
ES_ERR_EVENT_NOT_FOUND = 13

# --- constants ------------------------------------------------------------------------

ES_EXPECTED_ANY = -2
ES_EXPECTED_NO_STREAM = -1
ES_EXPECTED_STREAM_EXISTS = -4
ES_MAX_EVENT_SIZE = 65536
ES_MAX_EVENT_TYPE_LEN = 256
ES_OPEN_READ_ONLY = 1
ES_OPEN_MUST_EXIST = 2
ES_LOG_ERROR = 1
ES_LOG_WARN = 2
ES_LOG_INFO = 3
ES_LOG_DEBUG = 4

U64_MAX = 2**64 - 1
I64_MAX = 2**63 - 1

LIBRARY_ENV = "EVENTSTORE_LIBRARY"
LIBRARY_FILE = "libeventstore.so"

# --- structures -----------------------------------------------------------------------


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
        ("items", ctypes.c_void_p),  # const es_event *: read through eventstore._events
        ("len", ctypes.c_size_t),
        ("owner", ctypes.c_void_p),
    ]


class es_append_result(ctypes.Structure):
    _fields_ = [
        ("first_global_position", ctypes.c_uint64),
        ("first_stream_version", ctypes.c_uint64),
        ("count", ctypes.c_uint64),
        ("deduplicated", ctypes.c_uint32),
    ]


class es_stream_append(ctypes.Structure):
    _fields_ = [
        ("stream_id", es_uuid),
        ("expected_version", ctypes.c_int64),
        ("events", ctypes.c_void_p),  # const es_proposed_event *
        ("count", ctypes.c_size_t),
    ]


class es_stream_info(ctypes.Structure):
    _fields_ = [
        ("stream_id", es_uuid),
        ("last_version", ctypes.c_uint64),
        ("first_global_position", ctypes.c_uint64),
        ("last_global_position", ctypes.c_uint64),
    ]


class es_streams(ctypes.Structure):
    _fields_ = [
        ("items", ctypes.c_void_p),  # const es_stream_info *: read with STREAM_INFO_FORMAT
        ("len", ctypes.c_size_t),
        ("owner", ctypes.c_void_p),
    ]


class es_store_info(ctypes.Structure):
    _fields_ = [
        ("format_version", ctypes.c_uint32),
        ("read_only", ctypes.c_uint32),
        ("poisoned", ctypes.c_uint32),
        ("event_count", ctypes.c_uint64),
        ("stream_count", ctypes.c_uint64),
        ("data_bytes", ctypes.c_uint64),
        ("recovered_bytes_dropped", ctypes.c_uint64),
        ("index_bytes", ctypes.c_uint64),
    ]


class es_string(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_char_p), ("len", ctypes.c_size_t)]


class es_filter(ctypes.Structure):
    _fields_ = [
        ("stream_id", ctypes.c_char_p),  # const es_uuid *: 16 bytes, or NULL
        ("event_types", ctypes.POINTER(es_string)),
        ("event_type_count", ctypes.c_size_t),
        ("event_type_prefixes", ctypes.POINTER(es_string)),
        ("event_type_prefix_count", ctypes.c_size_t),
    ]


# typedef void (*es_log_fn)(void *context, int32_t level, const char *message);
es_log_fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int32, ctypes.c_char_p)


# The binding packs es_proposed_event arrays with `struct` and reads es_event arrays as
# 64-bit words (eventstore._events); these checks tie that to the layouts above.
PROPOSED_EVENT_FORMAT = "=16sQQQQQQ"
EVENT_WORDS = 13
APPEND_RESULT_FORMAT = "=QQQI4x"
STREAM_APPEND_FORMAT = "=16sqQQ"
STREAM_INFO_FORMAT = "=16sQQQ"
STORE_INFO_FORMAT = "=III4xQQQQQ"
assert ctypes.sizeof(ctypes.c_void_p) == 8, "libeventstore's binding needs a 64-bit platform"
assert ctypes.sizeof(es_proposed_event) == 64
assert ctypes.sizeof(es_event) == EVENT_WORDS * 8
assert es_event.payload_len.offset == 12 * 8
assert ctypes.sizeof(es_append_result) == struct.calcsize(APPEND_RESULT_FORMAT) == 32
assert ctypes.sizeof(es_stream_append) == struct.calcsize(STREAM_APPEND_FORMAT) == 40
assert ctypes.sizeof(es_stream_info) == struct.calcsize(STREAM_INFO_FORMAT) == 40
assert ctypes.sizeof(es_store_info) == struct.calcsize(STORE_INFO_FORMAT) == 56

# Output structures that later versions may extend (0.2 added a field to
# es_append_result; es_store_info may grow) are given this much room, so that a newer
# library loaded through EVENTSTORE_LIBRARY can never write past them. (es_append_multi's
# results are an array: their stride is fixed, so they get no such room.)
OUTPUT_ROOM = 128

# --- functions: the one table of signatures -----------------------------------------

_c = ctypes
_store = _c.c_void_p  # es_store *
_uuid = _c.c_char_p  # const es_uuid *: 16 bytes in RFC 4122 order (a bytes object)
_sub = _c.c_void_p  # es_subscription *

SIGNATURES: Dict[str, Tuple[Any, List[Any]]] = {
    "es_open": (_c.c_int32, [_c.c_char_p, _c.POINTER(_store)]),
    "es_close": (None, [_store]),
    # es_append(store, stream_id, expected_version, events, count, out_result); the
    # events are a packed es_proposed_event array (a bytes object), out_result a buffer
    # of OUTPUT_ROOM bytes.
    "es_append": (
        _c.c_int32,
        [_store, _uuid, _c.c_int64, _c.c_char_p, _c.c_size_t, _c.c_void_p],
    ),
    "es_read_stream": (
        _c.c_int32,
        [_store, _uuid, _c.c_uint64, _c.c_uint64, _c.POINTER(es_events)],
    ),
    "es_read_all": (_c.c_int32, [_store, _c.c_uint64, _c.c_uint64, _c.POINTER(es_events)]),
    "es_free": (None, [_c.POINTER(es_events)]),
    "es_stream_version": (_c.c_int32, [_store, _uuid, _c.POINTER(_c.c_uint64)]),
    "es_global_position": (_c.c_uint64, [_store]),
    "es_last_error": (_c.c_char_p, []),
    "es_last_conflict": (_c.c_int32, [_c.POINTER(_c.c_int64), _c.POINTER(_c.c_int64)]),
    "es_last_conflict_stream": (_c.c_int32, [_c.POINTER(_c.c_uint8)]),
    "es_status_name": (_c.c_char_p, [_c.c_int32]),
    "es_version": (_c.c_char_p, []),
    # --- 0.2 (issues 9 and 11) ---
    "es_store_info_get": (_c.c_int32, [_store, _c.c_void_p]),  # out: OUTPUT_ROOM bytes
    "es_set_log_callback": (None, [es_log_fn, _c.c_void_p]),
    # es_append_multi(store, appends, count, out_results): appends a packed
    # es_stream_append array (bytes), out_results a buffer of count * 32 bytes.
    "es_append_multi": (_c.c_int32, [_store, _c.c_char_p, _c.c_size_t, _c.c_void_p]),
    "es_read_stream_backward": (
        _c.c_int32,
        [_store, _uuid, _c.c_uint64, _c.c_uint64, _c.POINTER(es_events)],
    ),
    "es_read_all_backward": (
        _c.c_int32,
        [_store, _c.c_uint64, _c.c_uint64, _c.POINTER(es_events)],
    ),
    "es_read_event": (_c.c_int32, [_store, _uuid, _c.POINTER(es_events)]),
    "es_list_streams": (
        _c.c_int32,
        [_store, _c.c_uint64, _c.c_uint64, _c.POINTER(es_streams)],
    ),
    "es_free_streams": (None, [_c.POINTER(es_streams)]),
    # --- 0.2, issue 10 (following the log) ---
    "es_open_with": (_c.c_int32, [_c.c_char_p, _c.c_uint32, _c.POINTER(_store)]),
    "es_wait": (_c.c_int32, [_store, _c.c_uint64, _c.c_int64, _c.POINTER(_c.c_uint64)]),
    "es_wake": (None, [_store]),
    "es_subscribe": (
        _c.c_int32,
        [_store, _c.c_uint64, _c.POINTER(es_filter), _c.POINTER(_sub)],
    ),
    "es_subscription_next": (
        _c.c_int32,
        [_sub, _c.c_uint64, _c.c_int64, _c.POINTER(es_events)],
    ),
    "es_subscription_position": (_c.c_uint64, [_sub]),
    "es_subscription_close": (None, [_sub]),
    "es_read_all_filtered": (
        _c.c_int32,
        [
            _store,
            _c.c_uint64,
            _c.c_uint64,
            _c.POINTER(es_filter),
            _c.POINTER(es_events),
            _c.POINTER(_c.c_uint64),
        ],
    ),
}
"""name -> (restype, argtypes). Every function the binding calls is declared here and
must exist in the library. Functions a newer library may have go in
:data:`OPTIONAL_SIGNATURES`."""

OPTIONAL_SIGNATURES: Dict[str, Tuple[Any, List[Any]]] = {}
"""Declared when the loaded library exports them (``Library.has(name)`` tells); for
functions newer than the oldest library the binding supports."""


class LibraryNotFound(OSError):
    """The shared library could not be found or loaded; the message lists every place
    that was tried."""


class Library:
    """The loaded shared library: its path and its declared functions as attributes."""

    path: str

    def __init__(self, cdll: ctypes.CDLL, path: str) -> None:
        self._cdll = cdll
        self.path = path
        self._optional: Dict[str, bool] = {}
        for name, (restype, argtypes) in SIGNATURES.items():
            try:
                fn = getattr(cdll, name)
            except AttributeError:
                raise LibraryNotFound(
                    f"{path} is not a usable libeventstore: it has no {name}"
                ) from None
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)
        for name, (restype, argtypes) in OPTIONAL_SIGNATURES.items():
            fn = getattr(cdll, name, None)
            self._optional[name] = fn is not None
            if fn is not None:
                fn.restype = restype
                fn.argtypes = argtypes
                setattr(self, name, fn)

    def has(self, name: str) -> bool:
        """Whether the library exports ``name`` (for :data:`OPTIONAL_SIGNATURES`)."""
        return name in SIGNATURES or self._optional.get(name, False)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        # Only reached for names not set in __init__: an undeclared or absent function.
        raise AttributeError(
            f"libeventstore at {self.path} has no declared function {name!r}"
        )


def package_library() -> Path:
    """Where ``pip install`` puts the library: inside this package."""
    return Path(__file__).resolve().parent / LIBRARY_FILE


def candidates() -> List[Union[Path, str]]:
    """Where the library is looked for, in order."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        # A bare file name is looked up by the dynamic loader, as ctypes.CDLL does.
        return [Path(env) if os.sep in env else env]
    found: List[Union[Path, str]] = [package_library()]
    # Not installed, but imported from a checkout (bindings/python/eventstore): the
    # repository's own build, release first.
    root = Path(__file__).resolve().parents[3]
    if (root / "Cargo.toml").is_file():
        found += [root / "target" / p / LIBRARY_FILE for p in ("release", "debug")]
    system = ctypes.util.find_library("eventstore")
    if system:
        found.append(system)
    return found


def load() -> Library:
    """Loads libeventstore: from ``$EVENTSTORE_LIBRARY`` when it is set (and only from
    there), else the copy inside this package (put there by ``pip install``), else a
    repository checkout's ``target/release`` or ``target/debug``, else the system's
    library path."""
    tried = []
    for candidate in candidates():
        if isinstance(candidate, Path) and not candidate.is_file():
            tried.append(f"{candidate} (no such file)")
            continue
        try:
            cdll = ctypes.CDLL(str(candidate))
        except OSError as e:
            tried.append(f"{candidate} ({e})")
            continue
        return Library(cdll, str(candidate))
    if not os.environ.get(LIBRARY_ENV):
        tried.append("the system library path (ctypes.util.find_library('eventstore'))")
    raise LibraryNotFound(
        "libeventstore not found: reinstall the package (`pip install` builds the "
        f"library into it) or set {LIBRARY_ENV} to the path of {LIBRARY_FILE}. "
        "Tried: " + "; ".join(tried)
    )


def memory() -> memoryview:
    """A byte view of the whole address space.

    Slicing it reads nothing; only ``view[address:address + n]`` that the caller then
    copies (``.tobytes()``, ``str(..., "utf-8")``, ``.cast("Q")[i]``) is read, and the
    callers read only memory that a live C result owns. It replaces a
    ``ctypes.string_at`` call (about twice as slow) per field.
    """
    whole: Type[ctypes.Array[ctypes.c_char]] = ctypes.c_char * sys.maxsize
    return memoryview(whole.from_address(0)).cast("B")

