"""The :class:`Store` and the guard that keeps ``close()`` from freeing its handle
under calls in flight."""

from __future__ import annotations

import ctypes
import struct
import sys
import threading
import uuid
import weakref
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import _check, _events, _follow, _log, _native
from ._errors import InvalidArgument, StoreClosed, raise_for
from ._events import AppendResult, ProposedEvent, RecordedEvent, StoreInfo, StreamInfo

_lib_lock = threading.Lock()
_lib: Optional[_native.Library] = None


def library() -> _native.Library:
    """The loaded library (loaded on first use)."""
    global _lib
    with _lib_lock:
        if _lib is None:
            lib = _native.load()
            _log.install(lib)
            _lib = lib
        return _lib


_OPEN, _CLOSING, _CLOSED = 0, 1, 2
_ALL = _native.U64_MAX
DEFAULT_PAGE = 1000
_RESULT = struct.Struct(_native.APPEND_RESULT_FORMAT)
_STREAM_APPEND = struct.Struct(_native.STREAM_APPEND_FORMAT)
_STREAM_INFO = struct.Struct(_native.STREAM_INFO_FORMAT)
_STORE_INFO = struct.Struct(_native.STORE_INFO_FORMAT)

MultiAppend = Union[
    Mapping[uuid.UUID, Tuple[int, Iterable[ProposedEvent]]],
    Iterable[Tuple[uuid.UUID, int, Iterable[ProposedEvent]]],
]
"""What :meth:`Store.append_multi` takes: ``{stream_id: (expected_version, events)}``
or an iterable of ``(stream_id, expected_version, events)``."""


def _result(out: Any, offset: int = 0) -> AppendResult:
    first_position, first_version, n, dedup = _RESULT.unpack_from(out, offset)
    return AppendResult(first_position, first_version, n, bool(dedup))


def _multi_entries(appends: Any) -> List[Tuple[uuid.UUID, Any, Any]]:
    """The (stream_id, expected_version, events) entries of an append_multi argument,
    in order, with their shapes checked (values are checked by the caller)."""
    if isinstance(appends, Mapping):
        entries = []
        for stream_id, value in appends.items():
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise TypeError(
                    f"appends[{stream_id!r}] must be an (expected_version, events) "
                    f"tuple, not {type(value).__name__}"
                )
            entries.append((stream_id, value[0], value[1]))
        return entries
    if isinstance(appends, (str, bytes)) or not isinstance(appends, Iterable):
        raise TypeError(
            "appends must be a dict {stream_id: (expected_version, events)} or a list "
            f"of (stream_id, expected_version, events) tuples, not {type(appends).__name__}"
        )
    entries = []
    for k, entry in enumerate(appends):
        if not isinstance(entry, (tuple, list)) or len(entry) != 3:
            raise TypeError(
                f"appends[{k}] must be a (stream_id, expected_version, events) tuple, "
                f"not {type(entry).__name__}"
            )
        entries.append((entry[0], entry[1], entry[2]))
    return entries


def _nothing() -> None:
    pass


def _need(lib: _native.Library, name: str) -> Callable[..., Any]:
    """A function of :data:`_native.OPTIONAL_SIGNATURES`, or a clear error."""
    if not lib.has(name):
        raise NotImplementedError(
            f"{name} is not in the loaded libeventstore ({lib.path}, version "
            f"{lib.es_version().decode()}): read-only handles, wait and subscriptions "
            "need a libeventstore 0.2 built with them"
        )
    fn: Callable[..., Any] = getattr(lib, name)
    return fn


def _start(value: Optional[int], name: str, backward: bool) -> int:
    """A read's start: ``None`` is the first event, or the last one backward."""
    if value is None:
        return _ALL if backward else 0
    return _check.u64(value, name)


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

    def close(self, wait: bool, wake: Callable[[], None] = lambda: None) -> bool:
        """Refuses new calls and waits until none is in flight. True when the caller
        now owns the handle and must free it (then calls :meth:`closed`); False when
        it was closed already (or is, by another thread: this waits for that), or
        when ``wait`` is false and calls are in flight (the handle is then left to the
        process's exit: it is never freed under a call).

        ``wake()`` is called (with calls in flight, so on a live handle) while
        waiting: it ends the calls that wait for new events (``es_wait``,
        ``es_subscription_next``), which would otherwise hold the close for as long
        as their timeout. It is called repeatedly, because a call that starts
        waiting just after a wake is not woken by it."""
        with self._lock:
            if self._state == _OPEN:
                self._state = _CLOSING
                while self._calls:
                    # At interpreter exit, threads frozen inside calls never leave.
                    if not wait or sys.is_finalizing():
                        return False
                    wake()
                    self._changed.wait(0.01)
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

    def __init__(
        self, path: _check.PathArg, read_only: bool = False, must_exist: bool = False
    ) -> None:
        self._guard = _CallGuard()
        self._handle: Optional[int] = None
        self._subscriptions: "weakref.WeakSet[_follow.Subscription]" = weakref.WeakSet()
        self._wakes = 0
        encoded = _check.path(path)
        read_only = _check.flag(read_only, "read_only")
        must_exist = _check.flag(must_exist, "must_exist")
        lib = library()
        handle = ctypes.c_void_p()
        flags = (_native.ES_OPEN_READ_ONLY if read_only else 0) | (
            _native.ES_OPEN_MUST_EXIST if must_exist else 0
        )
        if flags:
            status = _need(lib, "es_open_with")(encoded, flags, ctypes.byref(handle))
        else:
            status = lib.es_open(encoded, ctypes.byref(handle))
        if status:
            raise_for(lib, status)
        self._lib = lib
        self._handle = handle.value
        self.path = path
        self.read_only = read_only

    # --- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Closes the store. Idempotent, and safe while other threads are inside calls
        on it: new calls fail at once with :class:`~eventstore.StoreClosed`, calls in
        flight finish (an append in flight is durable when it returns; a
        :meth:`wait` or a subscription waiting for events is woken), then its
        subscriptions are closed, the file is closed and its lock released. Results
        already read stay valid."""
        self._close(wait=True)

    def _close(self, wait: bool) -> None:
        guard = getattr(self, "_guard", None)
        if guard is None or self._handle is None:
            return
        handle = self._handle
        lib = self._lib
        wake = getattr(lib, "es_wake", None) if lib.has("es_wake") else None
        if guard.close(wait, (lambda: wake(handle)) if wake is not None else _nothing):
            try:
                # No call is in flight: close the subscriptions (es_subscription_close
                # must come before es_close), then the handle. A subscription held by
                # a thread frozen at interpreter exit leaves the handle to the
                # process's end.
                if all(sub._release(wait) for sub in list(self._subscriptions)):
                    lib.es_close(handle)
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

    def _call_raw(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` inside the guard (for calls on a subscription of this store,
        which must not overlap ``es_close``)."""
        guard = self._guard
        guard.enter()
        try:
            return fn(*args)
        finally:
            guard.leave()

    def _read(self, fn: Callable[..., int], *args: Any) -> List[RecordedEvent]:
        """A read into an ``es_events`` (its last argument): the events, or the error."""
        out = _native.es_events()
        status = self._call(fn, *args, ctypes.byref(out))
        if status:
            raise_for(self._lib, status)
        return _events.take(out, self._lib.es_free)

    def _take(self, out: _native.es_events) -> List[RecordedEvent]:
        return _events.take(out, self._lib.es_free)

    def _wake_internal(self) -> None:
        """es_wake, if the store is open (else nothing is waiting on it any more)."""
        try:
            self._call(_need(self._lib, "es_wake"))
        except StoreClosed:
            pass

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
        return _result(out)

    def append_multi(self, appends: MultiAppend) -> Dict[uuid.UUID, AppendResult]:
        """Appends to several streams as one atomic unit: all of them or none, also
        across a crash, with one sync.

        ``appends`` is ``{stream_id: (expected_version, events)}`` or an iterable of
        ``(stream_id, expected_version, events)`` tuples. Its order is the append
        order: the events take contiguous global positions in that order, and streams
        it creates are created in that order. Returns ``{stream_id: AppendResult}`` in
        the same order. If any expected version is not satisfied,
        :class:`~eventstore.WrongExpectedVersion` names that stream (``stream_id``)
        and nothing is written.
        """
        entries = _multi_entries(appends)
        if not entries:
            raise InvalidArgument("appends must hold at least one stream")
        keep: List[bytes] = []  # packed arrays and the data they point into
        packed = []
        ids = []
        for stream_id, expected_version, events in entries:
            sid = _check.uuid_bytes(stream_id, "stream_id")
            expected = _check.expected_version(expected_version)
            array, data, count = _events.pack(events)
            keep += (array, data)
            ids.append(stream_id)
            packed.append(_STREAM_APPEND.pack(sid, expected, _events.address(array), count))
        array = b"".join(packed)
        out = ctypes.create_string_buffer(_RESULT.size * len(entries))
        status = self._call(self._lib.es_append_multi, array, len(entries), out)
        del keep
        if status:
            raise_for(self._lib, status)
        return {sid: _result(out, k * _RESULT.size) for k, sid in enumerate(ids)}

    # --- reading -------------------------------------------------------------------

    def read_stream(
        self,
        stream_id: uuid.UUID,
        from_version: Optional[int] = None,
        max_count: int = _ALL,
        backward: bool = False,
    ) -> List[RecordedEvent]:
        """Up to ``max_count`` events of the stream ``stream_id``, from version
        ``from_version`` on, in version order; with ``backward=True`` in descending
        order from ``from_version`` down. ``from_version=None`` starts at the first
        event (forward) or the last (backward). Raises
        :class:`~eventstore.StreamNotFound` when the stream has no events."""
        sid = _check.uuid_bytes(stream_id, "stream_id")
        backward = _check.flag(backward, "backward")
        start = _start(from_version, "from_version", backward)
        count = _check.u64(max_count, "max_count")
        fn = self._lib.es_read_stream_backward if backward else self._lib.es_read_stream
        return self._read(fn, sid, start, count)

    def read_all(
        self,
        from_position: Optional[int] = None,
        max_count: int = _ALL,
        backward: bool = False,
        *,
        stream_id: Optional[uuid.UUID] = None,
        event_types: Optional[Iterable[str]] = None,
        event_type_prefixes: Optional[Iterable[str]] = None,
    ) -> List[RecordedEvent]:
        """Up to ``max_count`` events of the whole log, from global position
        ``from_position`` on, in order; with ``backward=True`` in descending order
        from ``from_position`` down. ``from_position=None`` starts at the first event
        (forward) or the last (backward).

        Filters (forward only): ``stream_id`` keeps the events of one stream;
        ``event_types`` (a list of names) and ``event_type_prefixes`` (a list of
        prefixes) keep the events whose type is one of the names or starts with one
        of the prefixes. Events filtered out are judged from the index and not read."""
        backward = _check.flag(backward, "backward")
        start = _start(from_position, "from_position", backward)
        count = _check.u64(max_count, "max_count")
        if stream_id is None and event_types is None and event_type_prefixes is None:
            fn = self._lib.es_read_all_backward if backward else self._lib.es_read_all
            return self._read(fn, start, count)
        where = _follow.Filter(stream_id, event_types, event_type_prefixes)
        if backward:
            raise InvalidArgument("filters (stream_id, event_types...) apply to forward reads only")
        found, _ = self._read_filtered(where, start, count)
        return found

    def _read_filtered(
        self, where: "_follow.Filter", start: int, count: int
    ) -> Tuple[List[RecordedEvent], int]:
        """Up to ``count`` matching events from ``start`` on, and the position after
        what was examined. The C call may stop early on a work budget: this calls it
        again until ``count`` are found or it reaches the end (it no longer
        advances)."""
        fn = _need(self._lib, "es_read_all_filtered")
        found: List[RecordedEvent] = []
        at = start
        while len(found) < count:
            out = _native.es_events()
            after = ctypes.c_uint64()
            status = self._call(
                fn, at, count - len(found), where.ref(), ctypes.byref(out), ctypes.byref(after)
            )
            if status:
                raise_for(self._lib, status)
            found += self._take(out)
            if after.value == at:
                break
            at = after.value
        return found, at

    def read_event(self, event_id: uuid.UUID) -> RecordedEvent:
        """The event whose id is ``event_id``. Raises
        :class:`~eventstore.EventNotFound` when no event has that id."""
        eid = _check.uuid_bytes(event_id, "event_id")
        return self._read(self._lib.es_read_event, eid)[0]

    def iter_stream(
        self,
        stream_id: uuid.UUID,
        from_version: Optional[int] = None,
        page_size: int = DEFAULT_PAGE,
        backward: bool = False,
    ) -> Iterator[RecordedEvent]:
        """Iterates over a stream from ``from_version`` on (``backward=True``: down to
        version 0), reading ``page_size`` events per call; forward, it sees events
        appended while it runs. Arguments are checked at the call."""
        _check.uuid_bytes(stream_id, "stream_id")
        backward = _check.flag(backward, "backward")
        start = _start(from_version, "from_version", backward)
        size = _check.page_size(page_size)
        return self._pages(
            lambda at: self.read_stream(stream_id, at, size, backward), start, size, 1, backward
        )

    def iter_all(
        self,
        from_position: Optional[int] = None,
        page_size: int = DEFAULT_PAGE,
        backward: bool = False,
        *,
        stream_id: Optional[uuid.UUID] = None,
        event_types: Optional[Iterable[str]] = None,
        event_type_prefixes: Optional[Iterable[str]] = None,
    ) -> Iterator[RecordedEvent]:
        """Iterates over the whole log from ``from_position`` on (``backward=True``:
        down to position 0), reading ``page_size`` events per call; forward, it sees
        events appended while it runs. Filters as for :meth:`read_all`. Arguments are
        checked at the call."""
        backward = _check.flag(backward, "backward")
        start = _start(from_position, "from_position", backward)
        size = _check.page_size(page_size)
        if stream_id is None and event_types is None and event_type_prefixes is None:
            return self._pages(
                lambda at: self.read_all(at, size, backward), start, size, 0, backward
            )
        where = _follow.Filter(stream_id, event_types, event_type_prefixes)
        if backward:
            raise InvalidArgument("filters (stream_id, event_types...) apply to forward reads only")

        def filtered() -> Iterator[RecordedEvent]:
            at = start
            while True:
                page, after = self._read_filtered(where, at, size)
                yield from page
                if len(page) < size:
                    return
                at = after

        return filtered()

    # --- following -------------------------------------------------------------------

    def wait(self, position: int, timeout: Optional[float] = None) -> int:
        """Waits until the store holds more than ``position`` events (its
        :attr:`global_position` is greater), ``timeout`` seconds have passed
        (``None``: no limit), or :meth:`wake` is called; returns the global position
        then (so a timeout or a wake is "not greater than ``position``"). Appends in
        this or another process wake it as soon as they are acknowledged; it uses no
        CPU while it waits. Raises :class:`~eventstore.StoreClosed` if the store is
        closed meanwhile."""
        fn = _need(self._lib, "es_wait")
        at = _check.u64(position, "position")
        deadline = _follow.timeout_ms(timeout)
        wakes = self._wakes
        out = ctypes.c_uint64()
        while True:
            status = self._call(fn, at, _follow.slice_ms(deadline), ctypes.byref(out))
            if status:
                raise_for(self._lib, status)
            if out.value > at or self._wakes != wakes or _follow.expired(deadline):
                return out.value

    def wake(self) -> None:
        """Ends every :meth:`wait` and every subscription iteration waiting on this
        store, in any thread, at once (a wait returns the position, an iteration
        ends). Calls that start waiting afterwards wait normally."""
        fn = _need(self._lib, "es_wake")
        self._wakes += 1
        self._call(fn)

    def subscribe(
        self,
        from_position: int = 0,
        stream_id: Optional[uuid.UUID] = None,
        event_types: Optional[Iterable[str]] = None,
        event_type_prefixes: Optional[Iterable[str]] = None,
        timeout: Optional[float] = None,
        page_size: int = DEFAULT_PAGE,
    ) -> "_follow.Subscription":
        """A subscription: an iterator over every event from ``from_position`` on that
        the filters select (as for :meth:`read_all`), in order, exactly once — what is
        stored first, then new events as they are acknowledged. An iteration ends when
        ``timeout`` seconds pass without an event (``None``: it waits for ever), on
        :meth:`wake`, or when the subscription or the store is closed. Save
        ``subscription.position`` to resume later. Close it (or use ``with``) when
        done; :meth:`close` of the store closes it too."""
        _need(self._lib, "es_subscribe")
        start = _check.u64(from_position, "from_position")
        where = None
        if stream_id is not None or event_types is not None or event_type_prefixes is not None:
            where = _follow.Filter(stream_id, event_types, event_type_prefixes)
        _follow.timeout_ms(timeout)  # checked now
        size = _check.page_size(page_size)
        return _follow.Subscription(self, start, where, timeout, size)

    @staticmethod
    def _pages(
        read: Any, start: int, size: int, field: int, backward: bool = False
    ) -> Iterator[RecordedEvent]:
        at = start
        while True:
            page: List[RecordedEvent] = read(at)
            yield from page
            if len(page) < size:
                return
            last = page[-1]
            at = last.stream_version if field else last.global_position
            if backward:
                if at == 0:
                    return
                at -= 1
            else:
                at += 1

    def list_streams(
        self, from_index: int = 0, max_count: Optional[int] = None
    ) -> List[StreamInfo]:
        """Up to ``max_count`` streams (``None``: all) in order of creation, from the
        ``from_index``-th (0-based) on. The listing is a snapshot: streams created
        later come at the end, so paging never skips or repeats one."""
        start = _check.u64(from_index, "from_index")
        count = _ALL if max_count is None else _check.u64(max_count, "max_count")
        out = _native.es_streams()
        status = self._call(self._lib.es_list_streams, start, count, ctypes.byref(out))
        if status:
            raise_for(self._lib, status)
        try:
            n = int(out.len)
            if n == 0:
                return []
            at = int(out.items)
            raw = _events.memory_at(at, n * _STREAM_INFO.size)
        finally:
            self._lib.es_free_streams(ctypes.byref(out))
        return [
            StreamInfo(uuid.UUID(bytes=sid), last, first_pos, last_pos)
            for sid, last, first_pos, last_pos in _STREAM_INFO.iter_unpack(raw)
        ]

    def iter_streams(
        self, from_index: int = 0, page_size: int = DEFAULT_PAGE
    ) -> Iterator[StreamInfo]:
        """Iterates over every stream in order of creation from ``from_index`` on,
        listing ``page_size`` streams per call; it sees streams created while it runs.
        Arguments are checked at the call."""
        start = _check.u64(from_index, "from_index")
        size = _check.page_size(page_size)

        def pages() -> Iterator[StreamInfo]:
            at = start
            while True:
                page = self.list_streams(at, size)
                yield from page
                if len(page) < size:
                    return
                at += len(page)

        return pages()

    def info(self) -> StoreInfo:
        """Facts about the store, taken at one moment: format version, read-only and
        poisoned flags, event and stream counts, data size, what recovery cut off when
        this handle opened the file, and the index's memory."""
        out = ctypes.create_string_buffer(_native.OUTPUT_ROOM)
        status = self._call(self._lib.es_store_info_get, out)
        if status:
            raise_for(self._lib, status)
        fmt, read_only, poisoned, *counts = _STORE_INFO.unpack_from(out)
        events, streams, data, dropped, index = counts
        return StoreInfo(fmt, bool(read_only), bool(poisoned), events, streams, data, dropped, index)

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
