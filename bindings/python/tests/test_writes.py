"""Issue 11 in Python: idempotent retries, atomic appends to several streams, reads by
id, backward reads and stream listing."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

import eventstore
from eventstore import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    ProposedEvent,
    Store,
    StreamInfo,
)

U64 = 2**64 - 1


def ev(event_type: str = "E", payload: bytes = b"x", event_id: uuid.UUID | None = None):
    return ProposedEvent(event_type, payload, event_id=event_id or uuid.uuid4())


# --- idempotent retries -------------------------------------------------------------


def test_retry_is_deduplicated_even_after_reopen(path: Path):
    stream = uuid.uuid4()
    batch = [ev("A"), ev("B")]
    with Store(path) as store:
        first = store.append(stream, batch, expected_version=NO_STREAM)
        assert first == AppendResult(0, 0, 2, False)
        again = store.append(stream, batch, expected_version=NO_STREAM)
        assert again == AppendResult(0, 0, 2, True)
        assert store.global_position == 2
    with Store(path) as store:
        assert store.append(stream, batch, expected_version=NO_STREAM).deduplicated
        assert store.global_position == 2


def test_retry_with_a_stale_expected_version_is_deduplicated(store: Store):
    stream = uuid.uuid4()
    batch = [ev("A")]
    store.append(stream, batch, expected_version=NO_STREAM)
    store.append(stream, [ev("B")], expected_version=0)
    # NO_STREAM is stale now; the retry of a success is still a success.
    result = store.append(stream, batch, expected_version=NO_STREAM)
    assert result == AppendResult(0, 0, 1, True)
    assert [e.event_type for e in store.read_stream(stream)] == ["A", "B"]


def test_partial_overlap_is_refused_naming_the_id(store: Store):
    stream = uuid.uuid4()
    reused = uuid.uuid4()
    store.append(stream, [ev("A", event_id=reused)])
    with pytest.raises(eventstore.DuplicateEventId) as err:
        store.append(stream, [ev("B"), ev("C", event_id=reused)])
    assert str(reused) in str(err.value)
    assert err.value.event_id == reused
    assert err.value.status == 12
    assert store.global_position == 1


def test_same_id_twice_in_one_call_is_invalid(store: Store):
    same = uuid.uuid4()
    with pytest.raises(eventstore.InvalidArgument):
        store.append(uuid.uuid4(), [ev(event_id=same), ev(event_id=same)])
    assert store.global_position == 0


def test_retries_racing_from_threads_write_once(store: Store):
    stream = uuid.uuid4()
    batch = [ev("A"), ev("B")]
    results: list[AppendResult] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        results.append(store.append(stream, batch, expected_version=NO_STREAM))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.deduplicated for r in results) == [False] + [True] * 7
    assert {(r.first_global_position, r.count) for r in results} == {(0, 2)}
    assert store.global_position == 2


# --- append_multi --------------------------------------------------------------------


def test_append_multi_returns_results_in_the_given_order(store: Store):
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    store.append(b, [ev("B0")])
    results = store.append_multi(
        {c: (NO_STREAM, [ev("C0"), ev("C1")]), a: (ANY, [ev("A0")]), b: (0, [ev("B1")])}
    )
    assert list(results) == [c, a, b]
    assert results[c] == AppendResult(1, 0, 2, False)
    assert results[a] == AppendResult(3, 0, 1, False)
    assert results[b] == AppendResult(4, 1, 1, False)
    assert [e.event_type for e in store.read_all()] == ["B0", "C0", "C1", "A0", "B1"]
    # Streams it creates are created in the order given.
    assert [s.stream_id for s in store.list_streams()] == [b, c, a]


def test_append_multi_accepts_a_list_of_tuples_and_retries(store: Store):
    a, b = uuid.uuid4(), uuid.uuid4()
    appends = [(a, NO_STREAM, [ev("A")]), (b, NO_STREAM, [ev("B")])]
    first = store.append_multi(appends)
    assert list(first) == [a, b]
    assert not any(r.deduplicated for r in first.values())
    again = store.append_multi(appends)
    assert list(again) == [a, b]
    assert all(r.deduplicated for r in again.values())
    assert [r.first_global_position for r in again.values()] == [0, 1]
    assert store.global_position == 2


def test_append_multi_conflict_on_second_stream_writes_nothing(store: Store):
    a, b = uuid.uuid4(), uuid.uuid4()
    store.append(b, [ev("B0")])
    with pytest.raises(eventstore.WrongExpectedVersion) as err:
        store.append_multi({a: (NO_STREAM, [ev("A0")]), b: (NO_STREAM, [ev("B1")])})
    assert err.value.stream_id == b
    assert str(b) in str(err.value)
    assert (err.value.expected, err.value.actual) == (NO_STREAM, 0)
    assert store.global_position == 1
    assert store.stream_version(a) is None
    assert store.list_streams() == [StreamInfo(b, 0, 0, 0)]


def test_single_append_conflict_names_its_stream(store: Store):
    s = uuid.uuid4()
    with pytest.raises(eventstore.WrongExpectedVersion) as err:
        store.append(s, [ev()], expected_version=STREAM_EXISTS)
    assert err.value.stream_id == s


def test_nul_and_invalid_utf8_event_types_are_refused_naming_the_event(store: Store):
    a, b = uuid.uuid4(), uuid.uuid4()
    store.append(a, [ev("Ok")])
    bad = uuid.uuid4()
    with pytest.raises(eventstore.InvalidArgument) as err:
        store.append(a, [ev("Fine"), ev("A\0B", event_id=bad)])
    assert "events[1]" in str(err.value) and str(bad) in str(err.value)
    assert "NUL" in str(err.value)
    with pytest.raises(eventstore.InvalidArgument) as err:
        store.append_multi({a: (ANY, [ev("Fine")]), b: (ANY, [ev("\0", event_id=bad)])})
    assert "appends[1].events[0]" in str(err.value) and str(bad) in str(err.value)
    # A lone surrogate has no UTF-8 form: refused before the call, naming the type.
    with pytest.raises(eventstore.InvalidArgument) as err:
        ev("bad\ud800")
    assert "event_type" in str(err.value) and "UTF-8" in str(err.value)
    assert store.global_position == 1


def test_conflict_stream_comes_from_the_library_not_the_message():
    """``WrongExpectedVersion.stream_id`` is what ``es_last_conflict_stream`` says,
    even when the message names another UUID (or none)."""
    from eventstore import _errors, _native

    real = uuid.uuid4()

    class Lib:
        def es_last_error(self) -> bytes:
            return f"es_append: stream {uuid.uuid4()} metadata mentions a uuid".encode()

        def es_last_conflict(self, expected, actual) -> int:
            return _native.ES_OK

        def es_last_conflict_stream(self, out) -> int:
            for i, b in enumerate(real.bytes):
                out[i] = b
            return _native.ES_OK

    with pytest.raises(eventstore.WrongExpectedVersion) as err:
        _errors.raise_for(Lib(), _native.ES_ERR_WRONG_EXPECTED_VERSION)  # type: ignore[arg-type]
    assert err.value.stream_id == real


def test_append_multi_duplicate_id_across_streams_writes_nothing(store: Store):
    a, b = uuid.uuid4(), uuid.uuid4()
    taken = uuid.uuid4()
    store.append(uuid.uuid4(), [ev(event_id=taken)])
    with pytest.raises(eventstore.DuplicateEventId) as err:
        store.append_multi({a: (ANY, [ev()]), b: (ANY, [ev(event_id=taken)])})
    assert err.value.event_id == taken
    assert store.global_position == 1


def test_append_multi_refuses_bad_arguments_before_c(store: Store):
    a = uuid.uuid4()
    with pytest.raises(eventstore.InvalidArgument, match="at least one stream"):
        store.append_multi({})
    with pytest.raises(eventstore.InvalidArgument, match="at least one stream"):
        store.append_multi([])
    with pytest.raises(TypeError, match="stream_id must be a uuid.UUID"):
        store.append_multi({str(a): (ANY, [ev()])})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"\(expected_version, events\) tuple"):
        store.append_multi({a: [ev()]})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"appends\[0\] must be a \(stream_id"):
        store.append_multi([(a, [ev()])])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="appends must be a dict"):
        store.append_multi(5)  # type: ignore[arg-type]
    with pytest.raises(OverflowError, match="expected_version"):
        store.append_multi({a: (2**63, [ev()])})
    with pytest.raises(eventstore.InvalidArgument, match="expected_version"):
        store.append_multi({a: (-3, [ev()])})
    with pytest.raises(TypeError, match="expected_version must be an int"):
        store.append_multi({a: ("0", [ev()])})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"events\[0\] must be a ProposedEvent"):
        store.append_multi({a: (ANY, ["E"])})  # type: ignore[list-item]
    # Refused by the library, with its message.
    with pytest.raises(eventstore.InvalidArgument):
        store.append_multi({a: (ANY, [])})
    with pytest.raises(eventstore.InvalidArgument):
        store.append_multi([(a, ANY, [ev()]), (a, ANY, [ev()])])
    assert store.global_position == 0


def test_append_multi_on_a_closed_store(store: Store):
    store.close()
    with pytest.raises(eventstore.StoreClosed):
        store.append_multi({uuid.uuid4(): (ANY, [ev()])})


# --- read_event ----------------------------------------------------------------------


def test_read_event_present_and_absent(store: Store):
    s = uuid.uuid4()
    wanted = uuid.uuid4()
    store.append(s, [ev("A"), ev("B", b"the one", event_id=wanted), ev("C")])
    event = store.read_event(wanted)
    assert (event.event_id, event.event_type, event.payload) == (wanted, "B", b"the one")
    assert (event.global_position, event.stream_version, event.stream_id) == (1, 1, s)
    missing = uuid.uuid4()
    with pytest.raises(eventstore.EventNotFound) as err:
        store.read_event(missing)
    assert str(missing) in str(err.value)
    with pytest.raises(eventstore.EventNotFound):
        store.read_event(uuid.UUID(int=0))
    with pytest.raises(TypeError, match="event_id must be a uuid.UUID"):
        store.read_event(str(wanted))  # type: ignore[arg-type]


# --- backward reads -------------------------------------------------------------------


@pytest.fixture
def two_streams(store: Store):
    a, b = uuid.uuid4(), uuid.uuid4()
    for i in range(5):
        store.append(a, [ev(f"A{i}")])
        store.append(b, [ev(f"B{i}")])
    return store, a, b


def types(events) -> list[str]:
    return [e.event_type for e in events]


def test_read_all_backward_at_both_ends(two_streams):
    store, _, _ = two_streams
    assert [e.global_position for e in store.read_all(backward=True)] == list(range(9, -1, -1))
    assert types(store.read_all(backward=True, max_count=2)) == ["B4", "A4"]
    assert types(store.read_all(9, 1, backward=True)) == ["B4"]
    assert types(store.read_all(U64, 1, backward=True)) == ["B4"]
    assert types(store.read_all(100, 1, backward=True)) == ["B4"]  # past the end: the last
    assert types(store.read_all(0, 5, backward=True)) == ["A0"]
    assert types(store.read_all(1, 5, backward=True)) == ["B0", "A0"]
    assert store.read_all(5, 0, backward=True) == []
    # Forward defaults are unchanged.
    assert types(store.read_all(max_count=1)) == ["A0"]


def test_read_stream_backward_at_both_ends(two_streams):
    store, a, _ = two_streams
    assert types(store.read_stream(a, backward=True)) == ["A4", "A3", "A2", "A1", "A0"]
    assert types(store.read_stream(a, 4, 2, backward=True)) == ["A4", "A3"]
    assert types(store.read_stream(a, 99, 1, backward=True)) == ["A4"]
    assert types(store.read_stream(a, 0, backward=True)) == ["A0"]
    assert types(store.read_stream(a, 2, backward=True)) == ["A2", "A1", "A0"]
    with pytest.raises(eventstore.StreamNotFound):
        store.read_stream(uuid.uuid4(), backward=True)


def test_backward_reads_of_an_empty_store(store: Store):
    assert store.read_all(backward=True) == []
    assert list(store.iter_all(backward=True)) == []


def test_iter_backward_pages_down_to_zero(two_streams):
    store, a, _ = two_streams
    assert [e.global_position for e in store.iter_all(page_size=3, backward=True)] == list(
        range(9, -1, -1)
    )
    assert [e.global_position for e in store.iter_all(4, page_size=2, backward=True)] == [
        4, 3, 2, 1, 0,
    ]
    assert types(store.iter_stream(a, page_size=2, backward=True)) == [
        "A4", "A3", "A2", "A1", "A0",
    ]
    assert types(store.iter_stream(a, 1, page_size=1, backward=True)) == ["A1", "A0"]
    # Exactly one page's worth ends cleanly at version 0.
    assert types(store.iter_stream(a, page_size=5, backward=True)) == [
        "A4", "A3", "A2", "A1", "A0",
    ]


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_backward_must_be_a_bool(two_streams, bad):
    store, a, _ = two_streams
    for call in (
        lambda: store.read_all(backward=bad),
        lambda: store.read_stream(a, backward=bad),
        lambda: store.iter_all(backward=bad),
        lambda: store.iter_stream(a, backward=bad),
    ):
        with pytest.raises(TypeError, match="backward must be a bool"):
            call()


@pytest.mark.parametrize("value", [2**64, -1])
def test_backward_start_out_of_range(two_streams, value):
    store, a, _ = two_streams
    with pytest.raises((ValueError, OverflowError), match="from_position"):
        store.read_all(value, backward=True)
    with pytest.raises((ValueError, OverflowError), match="from_version"):
        store.read_stream(a, value, backward=True)


# --- list_streams ----------------------------------------------------------------------


def test_list_streams_in_creation_order_with_paging(store: Store):
    ids = [uuid.uuid4() for _ in range(25)]
    for k, s in enumerate(ids):
        store.append(s, [ev() for _ in range(1 + k % 3)])
    store.append(ids[0], [ev()])  # a later event of the first stream
    listed = store.list_streams()
    assert [s.stream_id for s in listed] == ids
    first = listed[0]
    assert first == StreamInfo(ids[0], 1, 0, store.global_position - 1)
    assert (listed[1].last_version, listed[1].first_global_position) == (1, 1)
    assert listed[1].last_global_position == 2
    pages = [store.list_streams(i, 10) for i in range(0, 30, 10)]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [s for p in pages for s in p] == listed
    assert store.list_streams(25) == []
    assert store.list_streams(U64) == []
    assert store.list_streams(3, 0) == []
    assert list(store.iter_streams(page_size=7)) == listed
    assert list(store.iter_streams(20, page_size=5)) == listed[20:]
    assert list(store.iter_streams(page_size=25)) == listed


def test_list_streams_of_an_empty_store(store: Store):
    assert store.list_streams() == []
    assert list(store.iter_streams()) == []


def test_list_streams_argument_checks(store: Store):
    with pytest.raises((ValueError, OverflowError), match="from_index"):
        store.list_streams(-1)
    with pytest.raises(OverflowError, match="from_index"):
        store.list_streams(2**64)
    with pytest.raises((ValueError, OverflowError), match="max_count"):
        store.list_streams(0, -1)
    with pytest.raises(TypeError, match="from_index must be an int"):
        store.list_streams("0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_count must be an int"):
        store.list_streams(0, 1.5)  # type: ignore[arg-type]
    with pytest.raises(eventstore.InvalidArgument, match="page_size"):
        store.iter_streams(page_size=0)
    store.close()
    with pytest.raises(eventstore.StoreClosed):
        store.list_streams()


def test_a_start_of_none_is_the_first_event_forward(two_streams):
    store, a, _ = two_streams
    assert store.read_all(None) == store.read_all(0)
    assert store.read_stream(a, None) == store.read_stream(a, 0)
    assert list(store.iter_all(None)) == store.read_all()


def test_a_library_without_a_0_2_function_is_refused_naming_it():
    from eventstore import _native

    class Fn:
        pass

    class Old:
        """A 0.1 library: every function but those of 0.2."""

        def __getattr__(self, name: str):
            if name in ("es_append_multi", "es_list_streams") or name not in _native.SIGNATURES:
                raise AttributeError(name)
            return Fn()

    with pytest.raises(eventstore.LibraryNotFound, match="has no es_append_multi"):
        _native.Library(Old(), "/old/libeventstore.so")  # type: ignore[arg-type]
