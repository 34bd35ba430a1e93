"""Tests of the Python binding against the real shared library."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

import eventstore
from eventstore import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    ProposedEvent,
    Store,
)

REPO = Path(__file__).resolve().parents[3]


def ev(event_type: str = "Happened", payload: bytes = b"x", **kw) -> ProposedEvent:
    return ProposedEvent(event_type, payload, **kw)


def test_library_version_is_the_crate_version():
    cargo = (REPO / "Cargo.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', cargo, re.M).group(1)
    assert eventstore.library_version() == version


def test_append_and_read_round_trip(store: Store):
    stream = uuid.uuid4()
    given = uuid.uuid4()
    before = datetime.now(timezone.utc)
    result = store.append(
        stream,
        [ev("Opened", b"\x00\x01binary", metadata=b'{"m":1}', event_id=given), ev("Closed", b"")],
        expected_version=NO_STREAM,
    )
    assert (result.first_global_position, result.first_stream_version, result.count) == (0, 0, 2)
    events = store.read_stream(stream)
    assert [e.event_type for e in events] == ["Opened", "Closed"]
    assert events[0].payload == b"\x00\x01binary"
    assert events[0].metadata == b'{"m":1}'
    assert events[1].payload == b"" and events[1].metadata == b""
    assert events[0].event_id == given
    assert events[1].event_id != uuid.UUID(int=0)
    assert all(e.stream_id == stream for e in events)
    assert events[0].recorded_at == events[1].recorded_at
    assert events[0].recorded_at.tzinfo is not None
    assert events[0].recorded_at >= before.replace(microsecond=0)
    assert store.read_all() == events
    assert store.global_position == 2
    assert store.stream_version(stream) == 1


def test_unicode_event_types_survive(store: Store):
    stream = uuid.uuid4()
    store.append(stream, [ev("Überweisung-✓")])
    assert store.read_stream(stream)[0].event_type == "Überweisung-✓"


def test_expected_versions(store: Store):
    stream = uuid.uuid4()
    with pytest.raises(eventstore.WrongExpectedVersion) as err:
        store.append(stream, [ev()], expected_version=STREAM_EXISTS)
    assert err.value.actual is None and err.value.expected == STREAM_EXISTS
    store.append(stream, [ev()], expected_version=NO_STREAM)
    store.append(stream, [ev()], expected_version=0)
    store.append(stream, [ev()], expected_version=STREAM_EXISTS)
    store.append(stream, [ev()], expected_version=ANY)
    with pytest.raises(eventstore.WrongExpectedVersion) as err:
        store.append(stream, [ev()], expected_version=7)
    assert err.value.expected == 7
    assert err.value.actual == 3
    assert str(stream) in err.value.message
    assert isinstance(err.value, eventstore.EventStoreError)
    assert err.value.status == 5
    with pytest.raises(eventstore.WrongExpectedVersion) as err:
        store.append(stream, [ev()], expected_version=NO_STREAM)
    assert (err.value.expected, err.value.actual) == (NO_STREAM, 3)
    with pytest.raises(eventstore.InvalidArgument):
        store.append(stream, [ev()], expected_version=-3)
    with pytest.raises(TypeError):
        store.append(stream, [ev()], expected_version=True)
    assert store.stream_version(stream) == 3


def test_invalid_events(store: Store):
    stream = uuid.uuid4()
    with pytest.raises(eventstore.InvalidArgument):
        store.append(stream, [])
    with pytest.raises(eventstore.InvalidArgument) as err:
        store.append(stream, [ev("")])
    assert "empty" in err.value.message
    with pytest.raises(eventstore.InvalidArgument):
        store.append(stream, [ev("t" * 257)])
    with pytest.raises(eventstore.EventTooLarge) as err:
        store.append(stream, [ev("T", b"x" * 65536)])
    assert "65536" in err.value.message
    with pytest.raises(TypeError):
        store.append("not-a-uuid", [ev()])  # type: ignore[arg-type]
    assert store.global_position == 0


def test_stream_not_found_and_empty_reads(store: Store):
    missing = uuid.uuid4()
    with pytest.raises(eventstore.StreamNotFound) as err:
        store.read_stream(missing)
    assert str(missing) in err.value.message
    assert store.stream_version(missing) is None
    assert store.read_all() == []
    stream = uuid.uuid4()
    store.append(stream, [ev()])
    assert store.read_stream(stream, 5) == []
    assert store.read_stream(stream, 0, 0) == []
    assert store.read_all(10) == []


def test_paging_iterators(store: Store):
    a, b = uuid.uuid4(), uuid.uuid4()
    for i in range(10):
        store.append(a if i % 2 else b, [ev(payload=str(i).encode())])
    assert [e.global_position for e in store.iter_all(page_size=3)] == list(range(10))
    assert [e.global_position for e in store.iter_all(4, page_size=3)] == list(range(4, 10))
    assert [e.stream_version for e in store.iter_stream(a, page_size=2)] == [0, 1, 2, 3, 4]
    assert [e.payload for e in store.iter_stream(b, 3, page_size=1)] == [b"6", b"8"]
    pages = iter(store.iter_all(page_size=2))
    first = next(pages)
    store.append(a, [ev()])  # a lazy iterator sees what was appended after it started
    assert first.global_position == 0
    assert len(list(pages)) == 10


def test_reopen_keeps_everything(path: Path):
    stream = uuid.uuid4()
    with Store(path) as s:
        s.append(stream, [ev(payload=b"a"), ev(payload=b"b")])
        written = s.read_all()
    with Store(path) as s:
        assert s.read_all() == written
        assert s.append(stream, [ev()], expected_version=1).first_global_position == 2


def test_close_is_idempotent_and_closed_store_refuses_calls(path: Path):
    s = Store(path)
    s.append(uuid.uuid4(), [ev()])
    s.close()
    s.close()
    assert s.closed
    with pytest.raises(eventstore.InvalidArgument):
        s.read_all()
    with Store(path) as again:  # the lock was released
        assert again.global_position == 1


def test_garbage_collected_store_releases_the_lock(path: Path):
    s = Store(path)
    del s
    with Store(path) as again:
        assert again.global_position == 0


def test_locked(path: Path, store: Store):
    with pytest.raises(eventstore.Locked) as err:
        Store(path)
    assert "events.store" in err.value.message


def test_invalid_header(tmp_path: Path):
    p = tmp_path / "not-a-store"
    p.write_bytes(b"this is a text file, not an event store" * 3)
    with pytest.raises(eventstore.InvalidHeader):
        Store(p)
    assert p.read_bytes() == b"this is a text file, not an event store" * 3


def test_io_error_names_the_path(tmp_path: Path):
    p = tmp_path / "no" / "such" / "dir" / "events.store"
    with pytest.raises(eventstore.IoError) as err:
        Store(p)
    assert str(p) in err.value.message


def test_corrupt_record(path: Path):
    stream = uuid.uuid4()
    sizes = []
    for i in range(3):
        with Store(path) as s:
            s.append(stream, [ev(payload=b"p" * 100)])
        sizes.append(path.stat().st_size)
    data = bytearray(path.read_bytes())
    data[(sizes[0] + sizes[1]) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(eventstore.CorruptRecord) as err:
        Store(path)
    assert str(sizes[0]) in err.value.message  # the byte offset of the damaged batch
    assert path.read_bytes() == bytes(data)


def test_threads_share_one_store(store: Store):
    shared = uuid.uuid4()
    errors: list[BaseException] = []
    per_thread = 50

    def work(n: int) -> None:
        try:
            own = uuid.uuid4()
            for i in range(per_thread):
                store.append(own, [ev(payload=f"{n}:{i}".encode())], expected_version=i - 1 if i else NO_STREAM)
                while True:
                    seen = store.stream_version(shared)
                    try:
                        store.append(
                            shared,
                            [ev(payload=f"{n}:{i}".encode())],
                            expected_version=NO_STREAM if seen is None else seen,
                        )
                        break
                    except eventstore.WrongExpectedVersion:
                        continue
                assert len(store.read_stream(own)) == i + 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    contended = store.read_stream(shared)
    assert [e.stream_version for e in contended] == list(range(4 * per_thread))
    assert len({e.payload for e in contended}) == 4 * per_thread
    assert [e.global_position for e in store.read_all()] == list(range(8 * per_thread))


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_reads_do_not_leak(store: Store):
    stream = uuid.uuid4()
    store.append(stream, [ev(payload=b"z" * 2000) for _ in range(5)])
    for _ in range(10_000):  # warm up allocators
        store.read_all(0, 5)
    before = _rss_kib()
    for i in range(100_000):
        if i % 2:
            store.read_all(0, 5)
        else:
            store.read_stream(stream, 0, 5)
    grown = _rss_kib() - before
    # 100,000 reads of 10 KB each: a leak of the C buffers would add about 1 GB.
    assert grown < 4096, f"resident memory grew by {grown} KiB"


def test_missing_library_is_reported_with_what_was_tried(tmp_path: Path):
    bogus = tmp_path / "nowhere" / "libeventstore.so"
    env = dict(os.environ, EVENTSTORE_LIBRARY=str(bogus))
    code = "import eventstore\ntry:\n    eventstore.library_version()\nexcept eventstore.LibraryNotFound as e:\n    print(e)\n"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert str(bogus) in out.stdout
    assert "EVENTSTORE_LIBRARY" in out.stdout
