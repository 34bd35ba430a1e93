"""Defect 4 of issue 12: ``close()`` while other threads are inside calls.

Before the fix ``close()`` freed the C handle under threads still reading it: a
use-after-free that killed the interpreter with SIGSEGV (3 crashes in 3 runs of the
reader scenario below). Each scenario runs in a child process, so that a crash shows
as a signal in its exit status instead of killing the test run, and is repeated many
times.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

COMMON = textwrap.dedent(
    """
    import sys, threading, time, uuid
    import eventstore
    from eventstore import ProposedEvent, Store, StoreClosed

    path = sys.argv[1]
    rounds = int(sys.argv[2])

    def fill(store, n):
        stream = uuid.uuid4()
        for _ in range(n // 100):
            store.append(stream, [ProposedEvent("E", b"p" * 200) for _ in range(100)])
    """
)

READERS = COMMON + textwrap.dedent(
    """
    with Store(path) as s:
        fill(s, 2000)
    closed_errors = 0
    for r in range(rounds):
        store = Store(path)
        started = threading.Barrier(5)
        outcome = []

        def reader(kind):
            started.wait()
            try:
                while True:
                    if kind == 0:
                        events = store.read_all()
                        assert len(events) == 2000, len(events)
                    elif kind == 1:
                        assert len(list(store.iter_all(page_size=300))) == 2000
                    elif kind == 2:
                        assert store.global_position == 2000
                    else:
                        assert len(store.read_all(1000, 500)) == 500
            except StoreClosed as e:
                assert "closed" in str(e), e
                outcome.append("closed")
            except BaseException as e:
                outcome.append(repr(e))

        threads = [threading.Thread(target=reader, args=(k % 4,)) for k in range(4)]
        for t in threads:
            t.start()
        started.wait()
        time.sleep(0.001 * (r % 7))
        store.close()
        assert store.closed
        for t in threads:
            t.join()
        assert outcome == ["closed"] * 4, outcome
        # Results read before the close stay valid.
    with Store(path) as s:
        assert s.global_position == 2000
    print("ok", rounds)
    """
)

WRITERS = COMMON + textwrap.dedent(
    """
    acknowledged = []
    lock = threading.Lock()
    for r in range(rounds):
        store = Store(path)
        started = threading.Barrier(4)
        outcome = []

        def writer():
            stream = uuid.uuid4()
            started.wait()
            try:
                while True:
                    event_id = uuid.uuid4()
                    store.append(stream, [ProposedEvent("W", b"w", event_id=event_id)])
                    with lock:
                        acknowledged.append(event_id)
            except StoreClosed:
                outcome.append("closed")
            except BaseException as e:
                outcome.append(repr(e))

        threads = [threading.Thread(target=writer) for _ in range(3)]
        for t in threads:
            t.start()
        started.wait()
        time.sleep(0.002 * (r % 5))
        store.close()
        for t in threads:
            t.join()
        assert outcome == ["closed"] * 3, outcome
    with Store(path) as s:
        stored = {e.event_id for e in s.read_all()}
    missing = [i for i in acknowledged if i not in stored]
    assert not missing, f"{len(missing)} acknowledged events lost"
    print("ok", rounds, len(acknowledged))
    """
)


def run(tmp_path: Path, script: str, rounds: int, timeout: float = 120) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "race.store"), str(rounds)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"child exited with {proc.returncode} (negative: killed by that signal)\n"
        f"stdout: {proc.stdout}\nstderr: {proc.stderr[-3000:]}"
    )
    return proc.stdout


@pytest.mark.parametrize("run_number", range(3))
def test_close_while_readers_are_inside_calls(tmp_path: Path, run_number: int):
    assert run(tmp_path, READERS, rounds=40).startswith("ok 40")


def test_close_while_writers_are_inside_appends_loses_no_acknowledged_event(tmp_path: Path):
    assert run(tmp_path, WRITERS, rounds=30).startswith("ok 30")


EXIT_WITH_THREADS_INSIDE = COMMON + textwrap.dedent(
    """
    store = Store(path)
    fill(store, 1000)
    started = threading.Barrier(4)

    def busy(kind):
        started.wait()
        stream = uuid.uuid4()
        try:
            while True:
                if kind:
                    store.read_all()
                else:
                    store.append(stream, [ProposedEvent("X", b"x")])
        except StoreClosed:
            pass

    for k in range(3):
        threading.Thread(target=busy, args=(k,), daemon=True).start()
    started.wait()
    time.sleep(0.01 * (rounds % 5))
    if sys.argv[3] == "close-at-exit":
        import atexit
        atexit.register(store.close)
    elif sys.argv[3] == "drop":
        del store  # the threads still hold it; the interpreter's exit finalises it
    print("exiting")
    """
)


@pytest.mark.parametrize("mode", ["close-at-exit", "drop", "keep"])
def test_interpreter_exit_with_threads_inside_calls(tmp_path: Path, mode: str):
    for r in range(8):
        path = tmp_path / f"exit{r}.store"
        proc = subprocess.run(
            [sys.executable, "-c", EXIT_WITH_THREADS_INSIDE, str(path), str(r), mode],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
        assert proc.stdout == "exiting\n"
        check = subprocess.run(
            [sys.executable, "-c", "import sys, eventstore\n"
             "with eventstore.Store(sys.argv[1]) as s:\n"
             "    assert len(s.read_all()) == s.global_position >= 1000\n",
             str(path)],
            capture_output=True, text=True, timeout=60,
        )
        assert check.returncode == 0, check.stderr[-3000:]


def test_garbage_collected_store_with_results_alive(tmp_path: Path):
    # Results keep their memory, not the store: reading them after the store is gone.
    import uuid

    import eventstore

    s = eventstore.Store(tmp_path / "gc.store")
    stream = uuid.uuid4()
    s.append(stream, [eventstore.ProposedEvent("E", b"payload-%d" % i) for i in range(50)])
    events = s.read_all()
    del s
    import gc

    gc.collect()
    assert [e.payload for e in events] == [b"payload-%d" % i for i in range(50)]
    assert all(e.stream_id == stream for e in events)


def test_call_guard_close_waits_for_calls_in_flight_and_refuses_new_ones():
    import threading
    import time

    from eventstore import StoreClosed
    from eventstore._store import _CallGuard

    guard = _CallGuard()
    guard.enter()  # a call in flight
    results = []
    first = threading.Thread(target=lambda: results.append(("first", guard.close(True))))
    first.start()
    time.sleep(0.05)
    assert first.is_alive()  # waiting for the call in flight
    with pytest.raises(StoreClosed):
        guard.enter()  # new calls are refused at once
    second = threading.Thread(target=lambda: results.append(("second", guard.close(True))))
    second.start()
    time.sleep(0.05)
    assert second.is_alive()
    guard.leave()  # the call in flight ends: the first closer owns the handle
    first.join(5)
    assert results == [("first", True)]
    time.sleep(0.05)
    assert second.is_alive()  # ... and the second waits until it is freed
    guard.closed()
    second.join(5)
    assert results == [("first", True), ("second", False)]
    assert guard.close(True) is False  # idempotent


def test_call_guard_without_waiting_leaves_a_busy_handle_alone():
    from eventstore._store import _CallGuard

    guard = _CallGuard()
    guard.enter()
    assert guard.close(False) is False  # never freed under a call
    guard.leave()
    idle = _CallGuard()
    assert idle.close(False) is True
