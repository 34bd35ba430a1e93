"""The :class:`Store` and the guard that keeps ``close()`` from freeing its handle
under calls in flight."""

from __future__ import annotations

import ctypes
import struct
import sys
import threading
import uuid
from typing import Any, Callable, Iterable, Iterator, List, Optional

from . import _check, _events, _native
from ._errors import StoreClosed, raise_for
from ._events import AppendResult, ProposedEvent, RecordedEvent

_lib_lock = threading.Lock()
_lib: Optional[_native.Library] = None


def library() -> _native.Library:
    """The loaded library (loaded on first use)."""
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = _native.load()
        return _lib


_OPEN, _CLOSING, _CLOSED = 0, 1, 2
_ALL = _native.U64_MAX
DEFAULT_PAGE = 1000
# The first fields of es_append_result (0.2 adds `deduplicated` after them).
_RESULT = struct.Struct("=QQQ")


class _CallGuard:
    """Counts the calls in flight on a handle, so that closing waits for them.

    Every call into the C library with the handle runs between :meth:`enter` and
    :meth:`leave`; :meth:`close` refuses new calls at once (they raise
    :class:`StoreClosed`) and returns when the last call in flight has left. The C
    handle is freed only after that, so no call ever runs on a freed handle.
    """

    __slots__ = ("_lock", "_changed", "_calls", "_state")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._calls = 0
        self._state = _OPEN

    def enter(self) -> None:
        with self._lock:
            if self._state != _OPEN:
                raise StoreClosed("the store is closed")
            self._calls += 1

    def leave(self) -> None:
        with self._lock:
            self._calls -= 1
            if self._calls == 0 and self._state == _CLOSING:
                self._changed.notify_all()

    def close(self, wait: bool) -> bool:
        """Refuses new calls and waits until none is in flight. True when the caller
        now owns the handle and must free it (then calls :meth:`closed`); False when
        it was closed already (or is, by another thread: this waits for that), or
        when ``wait`` is false and calls are in flight (the handle is then left to the
        process's exit: it is never freed under a call)."""
        with self._lock:
            if self._state == _OPEN:
                self._state = _CLOSING
                while self._calls:
                    # At interpreter exit, threads frozen inside calls never leave.
                    if not wait or sys.is_finalizing():
                        return False
                    self._changed.wait(0.1)
                return True
            while wait and self._state == _CLOSING and not sys.is_finalizing():
                self._changed.wait(0.1)
            return False

    def closed(self) -> None:
        with self._lock:
            self._state = _CLOSED
            self._changed.notify_all()

    @property
    def is_open(self) -> bool:
        return self._state == _OPEN


class Store:
    """An open event store file.

    ``Store(path)`` opens the file, creating it if needed and recovering it after a
    crash; ``path`` is a ``str``, ``bytes`` or ``os.PathLike``. Only one ``Store``, in
    any process, may have a file open at a time: a second open raises
    :class:`~eventstore.Locked`.

    A ``Store`` may be shared by any number of threads; calls release the GIL while the
    library works. Use it as a context manager, or call :meth:`close`. ``close()``
    waits for calls in flight on other threads to finish; calls made after it started
    raise :class:`~eventstore.StoreClosed`. A store that is garbage-collected open is
    closed then.
    """

    path: Any
    """The path as given to the constructor."""

    def __init__(self, path: _check.PathArg) -> None:
        self._guard = _CallGuard()
        self._handle: Optional[int] = None
        encoded = _check.path(path)
        lib = library()
        handle = ctypes.c_void_p()
        status = lib.es_open(encoded, ctypes.byref(handle))
        if status:
            raise_for(lib, status)
        self._lib = lib
        self._handle = handle.value
        self.path = path

    # --- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Closes the store. Idempotent, and safe while other threads are inside calls
        on it: new calls fail at once with :class:`~eventstore.StoreClosed`, calls in
        flight finish (an append in flight is durable when it returns), then the file
        is closed and its lock released. Results already read stay valid."""
        self._close(wait=True)

    def _close(self, wait: bool) -> None:
        guard = getattr(self, "_guard", None)
        if guard is None or self._handle is None:
            return
        if guard.close(wait):
            try:
                self._lib.es_close(self._handle)
            finally:
                guard.closed()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has started."""
        return self._handle is None or not self._guard.is_open

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # No call can be in flight here (each holds a reference to the store), except
        # at interpreter exit on a thread that the exit froze: then the handle is left
        # to the process's end rather than freed under it.
        self._close(wait=False)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<eventstore.Store {getattr(self, 'path', None)!r} {state}>"

    # --- calls ---------------------------------------------------------------------
    #
    # Every call that passes the handle goes through _call (or _read), inside the
    # guard; a wrapper of a new C function is one of these plus its argument checks.

    def _call(self, fn: Callable[..., int], *args: Any) -> int:
        """``fn(handle, *args)`` inside the guard; returns its status."""
        guard = self._guard
        guard.enter()
        try:
            return fn(self._handle, *args)
        finally:
            guard.leave()

    def _read(self, fn: Callable[..., int], *args: Any) -> List[RecordedEvent]:
        """A read into an ``es_events`` (its last argument): the events, or the error."""
        out = _native.es_events()
        status = self._call(fn, *args, ctypes.byref(out))
        if status:
            raise_for(self._lib, status)
        return _events.take(out, self._lib.es_free)

    # --- writing -------------------------------------------------------------------

    def append(
        self,
        stream_id: uuid.UUID,
        events: Iterable[ProposedEvent],
        expected_version: int = _native.ES_EXPECTED_ANY,
    ) -> AppendResult:
        """Appends ``events`` to the stream ``stream_id``, atomically and durably (on
        stable storage when this returns).

        ``expected_version`` is ``ANY``, ``NO_STREAM``, ``STREAM_EXISTS`` or the
        stream's last version; when the stream's state does not satisfy it,
        :class:`~eventstore.WrongExpectedVersion` is raised and nothing is written.
        """
        sid = _check.uuid_bytes(stream_id, "stream_id")
        expected = _check.expected_version(expected_version)
        array, data, count = _events.pack(events)
        out = ctypes.create_string_buffer(_native.OUTPUT_ROOM)
        status = self._call(self._lib.es_append, sid, expected, array, count, out)
        del data  # the buffer the array points into, kept alive until here
        if status:
            raise_for(self._lib, status)
        first_position, first_version, n = _RESULT.unpack_from(out)
        return AppendResult(first_position, first_version, n)

    # --- reading -------------------------------------------------------------------

    def read_stream(
        self, stream_id: uuid.UUID, from_version: int = 0, max_count: int = _ALL
    ) -> List[RecordedEvent]:
        """Up to ``max_count`` events of the stream ``stream_id``, from version
        ``from_version`` on, in version order. Raises
        :class:`~eventstore.StreamNotFound` when the stream has no events."""
        sid = _check.uuid_bytes(stream_id, "stream_id")
        start = _check.u64(from_version, "from_version")
        count = _check.u64(max_count, "max_count")
        return self._read(self._lib.es_read_stream, sid, start, count)

    def read_all(self, from_position: int = 0, max_count: int = _ALL) -> List[RecordedEvent]:
        """Up to ``max_count`` events of the whole log, from global position
        ``from_position`` on, in order."""
        start = _check.u64(from_position, "from_position")
        count = _check.u64(max_count, "max_count")
        return self._read(self._lib.es_read_all, start, count)

    def iter_stream(
        self, stream_id: uuid.UUID, from_version: int = 0, page_size: int = DEFAULT_PAGE
    ) -> Iterator[RecordedEvent]:
        """Iterates over a stream from ``from_version`` on, reading ``page_size``
        events per call; it sees events appended while it runs. Arguments are checked
        at the call."""
        _check.uuid_bytes(stream_id, "stream_id")
        start = _check.u64(from_version, "from_version")
        size = _check.page_size(page_size)
        return self._pages(lambda at: self.read_stream(stream_id, at, size), start, size, 1)

    def iter_all(
        self, from_position: int = 0, page_size: int = DEFAULT_PAGE
    ) -> Iterator[RecordedEvent]:
        """Iterates over the whole log from ``from_position`` on, reading
        ``page_size`` events per call; it sees events appended while it runs.
        Arguments are checked at the call."""
        start = _check.u64(from_position, "from_position")
        size = _check.page_size(page_size)
        return self._pages(lambda at: self.read_all(at, size), start, size, 0)

    @staticmethod
    def _pages(read: Any, start: int, size: int, field: int) -> Iterator[RecordedEvent]:
        at = start
        while True:
            page: List[RecordedEvent] = read(at)
            yield from page
            if len(page) < size:
                return
            last = page[-1]
            at = (last.stream_version if field else last.global_position) + 1

    def stream_version(self, stream_id: uuid.UUID) -> Optional[int]:
        """The stream's last version (0-based), ``None`` when it has no events."""
        sid = _check.uuid_bytes(stream_id, "stream_id")
        out = ctypes.c_uint64()
        status = self._call(self._lib.es_stream_version, sid, ctypes.byref(out))
        if status == _native.ES_ERR_STREAM_NOT_FOUND:
            return None
        if status:
            raise_for(self._lib, status)
        return out.value

    @property
    def global_position(self) -> int:
        """The number of events in the log, which is the next event's global
        position."""
        return int(self._call(self._lib.es_global_position))
