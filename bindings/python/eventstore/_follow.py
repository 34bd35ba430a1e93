"""Following the log: filters (``es_filter``), timeouts, and :class:`Subscription`."""

from __future__ import annotations

import ctypes
import math
import threading
import time
from typing import TYPE_CHECKING, Any, Iterable, Iterator, List, Optional, Tuple

from . import _check, _native
from ._errors import InvalidArgument, StoreClosed, raise_for
from ._events import RecordedEvent

if TYPE_CHECKING:
    from ._store import Store

SLICE_MS = 250
"""Waits are made of C waits of at most this long, so that a signal (Ctrl-C) is
handled within that time on the main thread; an append or a wake ends a C wait at
once, so this costs no latency (and a few wake-ups a second while idle)."""


class Filter:
    """An ``es_filter`` and the buffers it points into (kept alive with it)."""

    __slots__ = ("struct", "_keep")

    def __init__(
        self,
        stream_id: Any = None,
        event_types: Any = None,
        event_type_prefixes: Any = None,
    ) -> None:
        sid = None if stream_id is None else _check.uuid_bytes(stream_id, "stream_id")
        types = _strings(event_types, "event_types")
        prefixes = _strings(event_type_prefixes, "event_type_prefixes")
        self.struct = f = _native.es_filter()
        self._keep: Tuple[Any, ...] = (sid, types, prefixes)
        f.stream_id = sid
        if types is not None:
            f.event_types = types
            f.event_type_count = len(types)
        if prefixes is not None:
            f.event_type_prefixes = prefixes
            f.event_type_prefix_count = len(prefixes)

    def ref(self) -> Any:
        return ctypes.byref(self.struct)


def _strings(value: Any, name: str) -> Any:
    """A list of event types (or prefixes) as an ``es_string`` array; None for None."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(
            f"{name} must be a list of str (or None), not {type(value).__name__}"
            + (" (wrap one name in a list)" if isinstance(value, str) else "")
        )
    items = list(value)
    if not items:
        # C reads "no types" as "any type": refused, so that a list that ends up
        # empty never selects everything by accident.
        raise InvalidArgument(f"{name} must not be empty (give None to select any type)")
    encoded = []
    for k, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{k}] must be a str, not {type(item).__name__}")
        encoded.append(item.encode("utf-8"))
    array = (_native.es_string * len(encoded))()
    for k, data in enumerate(encoded):
        array[k].ptr = data
        array[k].len = len(data)
    return array


def timeout_ms(value: Any, name: str = "timeout") -> Optional[float]:
    """A timeout in seconds (``None``: no limit) as a deadline on ``time.monotonic``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise InvalidArgument(f"{name} must be >= 0 seconds (or None: no limit), got {value}")
    return time.monotonic() + min(float(value), 1e9)


def slice_ms(deadline: Optional[float]) -> int:
    """How long the next C wait may last: a slice, or what is left before the deadline."""
    if deadline is None:
        return SLICE_MS
    left = deadline - time.monotonic()
    return max(0, min(SLICE_MS, math.ceil(left * 1000)))


def expired(deadline: Optional[float]) -> bool:
    return deadline is not None and time.monotonic() >= deadline


class Subscription:
    """Every event from a position on that a filter selects, in order, exactly once:
    what is stored first, then new events as they are acknowledged.

    Made by :meth:`Store.subscribe`. Iterating yields :class:`RecordedEvent`\\ s; an
    iteration ends when ``timeout`` seconds pass without an event (``None``: never),
    when :meth:`Store.wake` is called, or when the subscription or its store is
    closed. Iterating again after a timeout or a wake continues where it stopped.
    :attr:`position` is where to resume from (``store.subscribe(from_position=...)``).
    """

    def __init__(
        self,
        store: "Store",
        from_position: int,
        filter: Optional[Filter],
        timeout: Optional[float],
        page_size: int,
    ) -> None:
        self._handle: Optional[int] = None
        self._lock = threading.Lock()  # one thread at a time in the C subscription
        self._store = store
        self._timeout = timeout
        self._page = page_size
        self._buffer: List[RecordedEvent] = []
        self._next = 0  # index of the next buffered event
        self._closing = False
        lib = store._lib
        out = ctypes.c_void_p()
        status = store._call(
            lib.es_subscribe, from_position, None if filter is None else filter.ref(),
            ctypes.byref(out),
        )
        if status:
            raise_for(lib, status)
        self._handle = out.value
        store._subscriptions.add(self)

    # --- events ----------------------------------------------------------------------

    def __iter__(self) -> Iterator[RecordedEvent]:
        return self

    def __next__(self) -> RecordedEvent:
        if self._next < len(self._buffer):
            event = self._buffer[self._next]
            self._next += 1
            return event
        events = self._fetch(self._page, self._timeout)
        if not events:
            raise StopIteration
        self._buffer = events
        self._next = 1
        return events[0]

    def next_batch(
        self, max_count: int = 1000, timeout: Optional[float] = None
    ) -> List[RecordedEvent]:
        """Up to ``max_count`` next events: at once when some are available, else the
        first to arrive within ``timeout`` seconds (``None``: no limit). ``[]`` when
        the time ran out, the store was woken, or the subscription is closed."""
        count = _check.page_size(max_count, "max_count")
        deadline = timeout_ms(timeout)
        if self._next < len(self._buffer):
            events = self._buffer[self._next : self._next + count]
            self._next += len(events)
            return events
        return self._fetch(count, None, deadline)

    def _fetch(
        self, count: int, timeout: Optional[float], deadline: Optional[float] = None
    ) -> List[RecordedEvent]:
        if deadline is None:
            deadline = timeout_ms(timeout)
        store = self._store
        lib = store._lib
        wakes = store._wakes
        with self._lock:
            while True:
                handle = self._handle
                if handle is None or self._closing:
                    return []
                out = _native.es_events()
                try:
                    status = store._call_raw(
                        lib.es_subscription_next, handle, count, slice_ms(deadline),
                        ctypes.byref(out),
                    )
                except StoreClosed:
                    return []  # the store is being closed: it closes this too
                if status:
                    raise_for(lib, status)
                events = store._take(out)
                if events:
                    self._buffer = []
                    self._next = 0
                    return events
                if store._wakes != wakes or expired(deadline):
                    return []

    # --- position and lifecycle --------------------------------------------------------

    @property
    def position(self) -> int:
        """The next global position this subscription examines: save it, and resume
        with ``store.subscribe(from_position=saved, ...)`` (same filter), neither
        repeating nor skipping an event. Events already fetched but not yet yielded
        count as not examined."""
        if self._next < len(self._buffer):
            return self._buffer[self._next].global_position
        with self._lock:
            handle = self._handle
            if handle is None:
                raise StoreClosed("the subscription is closed")
            return int(self._store._call_raw(self._store._lib.es_subscription_position, handle))

    @property
    def closed(self) -> bool:
        return self._handle is None or self._closing

    def close(self) -> None:
        """Closes the subscription; an iteration in progress on another thread ends.
        Idempotent. (Closing the store closes its subscriptions too.)"""
        if self._handle is None:
            return
        self._closing = True
        store = self._store
        # Wake a thread waiting in es_subscription_next (it then sees _closing).
        while not self._lock.acquire(timeout=0.01):
            store._wake_internal()
        try:
            handle, self._handle = self._handle, None
            if handle is not None:
                try:
                    store._call_raw(store._lib.es_subscription_close, handle)
                except StoreClosed:
                    # The store is being closed: it closes what is registered.
                    self._handle = handle
                    return
                store._subscriptions.discard(self)
        finally:
            self._lock.release()

    def _release(self, wait: bool) -> bool:
        """Closes the C subscription while the store is closing (no call on the store
        is in flight). False when it cannot be had (held by a thread frozen at
        interpreter exit)."""
        if not self._lock.acquire(timeout=-1 if wait else 0.5):
            return False
        try:
            handle, self._handle = self._handle, None
            self._closing = True
            if handle is not None:
                self._store._lib.es_subscription_close(handle)
            return True
        finally:
            self._lock.release()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # No thread can be inside a call on it (each holds a reference), except one
        # frozen by interpreter exit: then the store's close leaves it be.
        if getattr(self, "_handle", None) is not None and not self._lock.locked():
            try:
                self.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        return f"<eventstore.Subscription {'closed' if self.closed else 'open'}>"
