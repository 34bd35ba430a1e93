"""RecordedEvent: built lazily over the C result, yet a value like the frozen
dataclass it replaces (fields, ==, hash, repr, immutability, pickle, copy)."""

from __future__ import annotations

import copy
import dataclasses
import gc
import pickle
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from eventstore import ProposedEvent, RecordedEvent, Store


@pytest.fixture
def events(tmp_path: Path):
    with Store(tmp_path / "e.store") as s:
        stream = uuid.uuid4()
        s.append(
            stream,
            [
                ProposedEvent("Opened", b"\x00payload\xff", b'{"m": 1}', uuid.UUID(int=7)),
                ProposedEvent("Ünïcode-✓", b"", b""),
            ],
        )
        s.append(uuid.uuid4(), [ProposedEvent("Other", b"x" * 1000)])
        yield stream, s.read_all()


def test_fields_have_their_types_and_values(events):
    stream, (a, b, c) = events
    assert (a.global_position, a.stream_version) == (0, 0)
    assert (b.global_position, b.stream_version) == (1, 1)
    assert (c.global_position, c.stream_version) == (2, 0)
    assert a.stream_id == stream and isinstance(a.stream_id, uuid.UUID)
    assert a.event_id == uuid.UUID(int=7)
    assert a.event_type == "Opened" and b.event_type == "Ünïcode-✓"
    assert type(a.event_type) is str
    assert a.payload == b"\x00payload\xff" and type(a.payload) is bytes
    assert a.metadata == b'{"m": 1}'
    assert b.payload == b"" and b.metadata == b""
    assert c.payload == b"x" * 1000
    assert isinstance(a.recorded_at, datetime) and a.recorded_at.tzinfo == timezone.utc
    assert a.recorded_at == b.recorded_at
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert a.recorded_at == epoch + timedelta(microseconds=a.recorded_at_us)


def test_constructed_event_equals_the_read_one(events):
    _, (a, b, _) = events
    made = RecordedEvent(
        global_position=a.global_position,
        stream_version=a.stream_version,
        recorded_at=a.recorded_at,
        stream_id=a.stream_id,
        event_id=a.event_id,
        event_type=a.event_type,
        metadata=a.metadata,
        payload=a.payload,
    )
    assert made == a and a == made
    assert hash(made) == hash(a)
    assert made != b
    assert repr(made) == repr(a)
    assert made.payload == a.payload and made.event_type == "Opened"
    assert len({a, made, b}) == 2


def test_repr_names_every_field(events):
    _, (a, _, _) = events
    text = repr(a)
    for field in ("global_position=0", "stream_version=0", "recorded_at=datetime",
                  "stream_id=UUID(", "event_id=UUID('00000000-0000-0000-0000-000000000007')",
                  "event_type='Opened'", "metadata=b'{\"m\": 1}'", "payload=b'\\x00payload\\xff'"):
        assert field in text, field


def test_events_are_immutable(events):
    _, (a, _, _) = events
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.payload = b"changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a._i = 13  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del a.event_type  # type: ignore[misc]
    assert a.payload == b"\x00payload\xff"


def test_pickle_and_copy_hold_the_values(events):
    _, all_ = events
    for e in all_:
        assert pickle.loads(pickle.dumps(e)) == e
        assert copy.copy(e) == e and copy.deepcopy(e) == e
        assert copy.copy(e)._r is not e._r  # a copy holds only its own bytes


def test_events_outlive_the_store_and_each_other(tmp_path: Path):
    with Store(tmp_path / "o.store") as s:
        s.append(uuid.uuid4(), [ProposedEvent("E", b"%d" % i * 50) for i in range(100)])
        events = s.read_all()
    kept = events[57]
    del events
    gc.collect()
    assert kept.payload == b"57" * 50
    assert kept.global_position == 57


def test_naive_recorded_at_is_taken_as_utc():
    naive = datetime(2024, 5, 6, 7, 8, 9, 123456)
    e = RecordedEvent(1, 2, naive, uuid.UUID(int=1), uuid.UUID(int=2), "T", b"m", b"p")
    assert e.recorded_at == naive.replace(tzinfo=timezone.utc)
    assert e.recorded_at_us == 1714979289123456


def test_constructor_checks_types():
    now = datetime.now(timezone.utc)
    with pytest.raises(TypeError):
        RecordedEvent(0, 0, now, "not-a-uuid", uuid.uuid4(), "T", b"", b"")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        RecordedEvent(0, 0, now, uuid.uuid4(), uuid.uuid4(), b"T", b"", b"")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        RecordedEvent(0, 0, 5, uuid.uuid4(), uuid.uuid4(), "T", b"", b"")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RecordedEvent(-1, 0, now, uuid.uuid4(), uuid.uuid4(), "T", b"", b"")


def test_comparison_with_other_types():
    e = RecordedEvent(0, 0, datetime.now(timezone.utc), uuid.uuid4(), uuid.uuid4(), "T", b"", b"")
    assert e != (0, 0)
    assert e != "T"
    with pytest.raises(TypeError):
        e < e  # type: ignore[operator]  # no ordering, as the dataclass had none
