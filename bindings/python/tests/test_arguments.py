"""Defects 1-3 of issue 12: every argument is checked before it reaches ctypes.

Out-of-range integers used to wrap silently (``read_all(from_position=2**64)``
returned every event), wrong types were copied into C structs (``bytes(5)`` is five
NUL bytes), and a path with a NUL byte opened a different file.
"""

from __future__ import annotations

import os
import pathlib
import uuid
from pathlib import Path

import pytest

import eventstore
from eventstore import ANY, NO_STREAM, STREAM_EXISTS, ProposedEvent, Store

U64 = 2**64 - 1
I64 = 2**63 - 1


@pytest.fixture
def filled(store: Store):
    stream = uuid.uuid4()
    store.append(stream, [ProposedEvent("E", str(i).encode()) for i in range(5)])
    return store, stream


# --- integers -------------------------------------------------------------------


@pytest.mark.parametrize("value", [2**64, 2**80, -1, -(2**63)])
def test_read_all_from_position_out_of_range(filled, value):
    store, _ = filled
    with pytest.raises((ValueError, OverflowError)) as err:
        store.read_all(from_position=value)
    assert "from_position" in str(err.value)
    assert "2**64" in str(err.value) or str(U64) in str(err.value)


@pytest.mark.parametrize("value", [2**64, -1])
def test_max_count_out_of_range(filled, value):
    store, stream = filled
    with pytest.raises((ValueError, OverflowError)) as err:
        store.read_all(0, value)
    assert "max_count" in str(err.value)
    with pytest.raises((ValueError, OverflowError)) as err:
        store.read_stream(stream, 0, value)
    assert "max_count" in str(err.value)


@pytest.mark.parametrize("value", [2**64, -1])
def test_from_version_out_of_range(filled, value):
    store, stream = filled
    with pytest.raises((ValueError, OverflowError)) as err:
        store.read_stream(stream, from_version=value)
    assert "from_version" in str(err.value)
    with pytest.raises((ValueError, OverflowError)) as err:
        list(store.iter_stream(stream, from_version=value))
    assert "from_version" in str(err.value)


def test_largest_values_in_range_are_accepted(filled):
    store, stream = filled
    assert store.read_all(U64) == []
    assert len(store.read_all(0, U64)) == 5
    assert store.read_stream(stream, U64) == []
    assert len(store.read_stream(stream, 0, U64)) == 5


@pytest.mark.parametrize("value", [2**63, 2**64, 2**100])
def test_expected_version_too_large(filled, value):
    store, stream = filled
    with pytest.raises((ValueError, OverflowError)) as err:
        store.append(stream, [ProposedEvent("E")], expected_version=value)
    assert "expected_version" in str(err.value)
    assert store.global_position == 5


def test_expected_version_negative_other_than_the_constants(filled):
    store, stream = filled
    for value in (-3, -5, -(2**63), -(2**64)):
        with pytest.raises(ValueError) as err:
            store.append(stream, [ProposedEvent("E")], expected_version=value)
        assert "expected_version" in str(err.value)
    assert store.global_position == 5


def test_expected_version_largest_is_a_conflict_not_a_wrap(filled):
    store, stream = filled
    with pytest.raises(eventstore.WrongExpectedVersion) as err:
        store.append(stream, [ProposedEvent("E")], expected_version=I64)
    assert err.value.expected == I64
    assert err.value.actual == 4


@pytest.mark.parametrize("value", [1.0, "1", None, b"1"])
def test_integer_arguments_of_the_wrong_type(filled, value):
    store, stream = filled
    calls = [
        lambda: store.read_all(value if value is not None else "1"),
        lambda: store.read_all(0, value),
        lambda: store.read_stream(stream, value if value is not None else "1"),
        lambda: store.read_stream(stream, 0, value),
        lambda: store.append(stream, [ProposedEvent("E")], expected_version=value),
        lambda: list(store.iter_all(page_size=value)),
        lambda: list(store.iter_stream(stream, page_size=value)),
    ]
    for call in calls:
        with pytest.raises(TypeError) as err:
            call()
        assert "must be an int" in str(err.value)
    assert store.global_position == 5


def test_bool_is_not_a_count(filled):
    store, stream = filled
    with pytest.raises(TypeError):
        store.read_all(True)
    with pytest.raises(TypeError):
        store.read_stream(stream, 0, False)
    with pytest.raises(TypeError):
        store.append(stream, [ProposedEvent("E")], expected_version=True)


def test_int_like_objects_are_accepted(filled):
    class Index:
        def __init__(self, n: int) -> None:
            self.n = n

        def __index__(self) -> int:
            return self.n

    store, stream = filled
    assert [e.global_position for e in store.read_all(Index(3))] == [3, 4]
    assert len(store.read_stream(stream, 0, Index(2))) == 2
    store.append(stream, [ProposedEvent("E")], expected_version=Index(4))


# --- iter page sizes (defect 3) -------------------------------------------------


@pytest.mark.parametrize("page_size", [0, -1, 2**64])
def test_page_size_is_validated(filled, page_size):
    store, stream = filled
    with pytest.raises(ValueError) as err:
        list(store.iter_all(page_size=page_size))
    assert "page_size" in str(err.value)
    with pytest.raises(ValueError) as err:
        list(store.iter_stream(stream, page_size=page_size))
    assert "page_size" in str(err.value)


def test_iter_argument_errors_are_raised_at_the_call_not_at_the_first_next(filled):
    store, stream = filled
    with pytest.raises(ValueError):
        store.iter_all(page_size=0)
    with pytest.raises(ValueError):
        store.iter_stream(stream, page_size=0)
    with pytest.raises(TypeError):
        store.iter_stream(str(stream))  # type: ignore[arg-type]


def test_iterators_page_to_the_end_with_page_size_one(filled):
    store, stream = filled
    assert [e.global_position for e in store.iter_all(page_size=1)] == list(range(5))
    assert [e.stream_version for e in store.iter_stream(stream, 2, page_size=1)] == [2, 3, 4]


# --- types of values ------------------------------------------------------------


def test_str_stream_id_is_a_type_error_that_says_what_to_do(store):
    text = str(uuid.uuid4())
    for call in (
        lambda: store.append(text, [ProposedEvent("E")]),
        lambda: store.read_stream(text),
        lambda: store.stream_version(text),
    ):
        with pytest.raises(TypeError) as err:
            call()
        assert "stream_id must be a uuid.UUID, not str" in str(err.value)
    assert store.global_position == 0


def test_bytes_event_type_is_a_type_error():
    with pytest.raises(TypeError) as err:
        ProposedEvent(b"Happened")  # type: ignore[arg-type]
    assert "event_type must be a str, not bytes" in str(err.value)


@pytest.mark.parametrize("bad", [{"a": 1}, "text", 5, [1, 2], None])
def test_payload_and_metadata_must_be_bytes_like(bad):
    with pytest.raises(TypeError) as err:
        ProposedEvent("E", bad)
    assert "payload must be bytes-like" in str(err.value)
    assert type(bad).__name__ in str(err.value)
    with pytest.raises(TypeError) as err:
        ProposedEvent("E", b"", bad)
    assert "metadata must be bytes-like" in str(err.value)


def test_bytes_like_payloads_are_stored_as_given(store):
    stream = uuid.uuid4()
    store.append(
        stream,
        [
            ProposedEvent("E", bytearray(b"ba"), memoryview(b"mv")),
            ProposedEvent("E", memoryview(b"xxsliced")[2:]),
        ],
    )
    events = store.read_stream(stream)
    assert (events[0].payload, events[0].metadata) == (b"ba", b"mv")
    assert events[1].payload == b"sliced"
    assert type(events[0].payload) is bytes


def test_event_id_must_be_a_uuid():
    with pytest.raises(TypeError) as err:
        ProposedEvent("E", event_id=str(uuid.uuid4()))  # type: ignore[arg-type]
    assert "event_id must be a uuid.UUID or None, not str" in str(err.value)


def test_append_rejects_what_is_not_a_proposed_event(store):
    stream = uuid.uuid4()
    for bad in (("E", b""), {"event_type": "E"}, "E"):
        with pytest.raises(TypeError) as err:
            store.append(stream, [ProposedEvent("E"), bad])  # type: ignore[list-item]
        assert "events[1] must be a ProposedEvent" in str(err.value)
    with pytest.raises(TypeError) as err:
        store.append(stream, ProposedEvent("E"))  # type: ignore[arg-type]
    assert "events must be an iterable of ProposedEvent" in str(err.value)
    assert store.global_position == 0


def test_event_type_of_a_subclass_of_str_is_stored(store):
    class Name(str):
        pass

    stream = uuid.uuid4()
    store.append(stream, [ProposedEvent(Name("Named"))])
    assert store.read_stream(stream)[0].event_type == "Named"


# --- paths (defect 2) -----------------------------------------------------------


@pytest.mark.parametrize("make", [str, os.fsencode, Path])
def test_path_with_a_nul_byte_is_a_value_error(tmp_path, make):
    target = tmp_path / "a\0b.store"
    with pytest.raises(ValueError) as err:
        Store(make(target))
    assert "null" in str(err.value) or "NUL" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # "a" was not created


@pytest.mark.parametrize("make", [str, os.fsencode, Path, pathlib.PurePosixPath])
def test_str_bytes_and_pathlike_paths_open_the_same_file(tmp_path, make):
    target = tmp_path / "p.store"
    with Store(make(target)) as s:
        s.append(uuid.uuid4(), [ProposedEvent("E")])
        assert s.path == make(target)
    with Store(target) as s:
        assert s.global_position == 1


def test_path_of_the_wrong_type(tmp_path):
    for bad in (None, 5, ["a"]):
        with pytest.raises(TypeError) as err:
            Store(bad)  # type: ignore[arg-type]
        assert "path" in str(err.value)


def test_non_utf8_bytes_path(tmp_path):
    target = os.fsencode(tmp_path) + b"/caf\xe9.store"
    with Store(target) as s:
        s.append(uuid.uuid4(), [ProposedEvent("E")])
    assert os.path.exists(target)


def test_expected_version_constants_are_the_c_values():
    assert (ANY, NO_STREAM, STREAM_EXISTS) == (-2, -1, -4)
