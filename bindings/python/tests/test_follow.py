"""Issue 10 in Python: read-only handles (in other processes), wait/wake, subscriptions
with filters, and close() with followers in flight."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import eventstore
from eventstore import ProposedEvent, Store, Subscription


def ev(event_type: str = "E", payload: bytes = b"x") -> ProposedEvent:
    return ProposedEvent(event_type, payload)


def later(seconds: float, fn) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        fn()

    t = threading.Thread(target=run)
    t.start()
    return t


# --- opening ---------------------------------------------------------------------------


def test_read_only_handle_beside_the_writer_refuses_appends(path: Path, store: Store):
    a = uuid.uuid4()
    store.append(a, [ev("A")])
    with Store(path, read_only=True) as reader:
        assert reader.read_only and reader.info().read_only
        assert not store.info().read_only
        assert [e.event_type for e in reader.read_all()] == ["A"]
        with pytest.raises(eventstore.ReadOnly) as err:
            reader.append(a, [ev()])
        assert err.value.status == 11
        with pytest.raises(eventstore.ReadOnly):
            reader.append_multi({a: (eventstore.ANY, [ev()])})
        store.append(a, [ev("B")])
        assert [e.event_type for e in reader.read_all()] == ["A", "B"]
    assert store.global_position == 2


def test_must_exist_and_read_only_do_not_create(tmp_path: Path):
    missing = tmp_path / "missing.store"
    with pytest.raises(eventstore.IoError):
        Store(missing, must_exist=True)
    with pytest.raises(eventstore.IoError):
        Store(missing, read_only=True)
    assert not missing.exists()
    with Store(missing):
        pass
    with Store(missing, must_exist=True) as s:
        assert s.global_position == 0


def test_open_flags_must_be_bools(path: Path):
    with pytest.raises(TypeError, match="read_only must be a bool"):
        Store(path, read_only=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must_exist must be a bool"):
        Store(path, must_exist="yes")  # type: ignore[arg-type]
    assert not path.exists()


def test_read_only_open_of_a_0444_file(path: Path):
    with Store(path) as s:
        s.append(uuid.uuid4(), [ev("A")])
    os.chmod(path, 0o444)
    try:
        with Store(path, read_only=True) as r:
            assert [e.event_type for e in r.read_all()] == ["A"]
    finally:
        os.chmod(path, 0o644)


# --- wait / wake -------------------------------------------------------------------------


def test_wait_is_woken_by_an_append_from_another_thread(store: Store):
    s = uuid.uuid4()
    store.append(s, [ev()])
    t = later(0.2, lambda: store.append(s, [ev(), ev()]))
    start = time.monotonic()
    assert store.wait(1) == 3
    took = time.monotonic() - start
    t.join()
    assert 0.15 < took < 5
    # Already past: returns at once.
    assert store.wait(0, timeout=0) == 3


def test_wait_times_out_and_wake_ends_it(store: Store):
    start = time.monotonic()
    assert store.wait(0, timeout=0.3) == 0
    assert 0.25 < time.monotonic() - start < 5
    t = later(0.2, store.wake)
    start = time.monotonic()
    assert store.wait(0) == 0  # no timeout: only the wake ends it
    assert time.monotonic() - start < 5
    t.join()


def test_wait_argument_checks(store: Store):
    with pytest.raises((ValueError, OverflowError), match="position"):
        store.wait(-1)
    with pytest.raises(OverflowError, match="position"):
        store.wait(2**64)
    with pytest.raises(TypeError, match="timeout must be a number"):
        store.wait(0, timeout="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timeout must be a number"):
        store.wait(0, timeout=True)  # type: ignore[arg-type]
    with pytest.raises(eventstore.InvalidArgument, match="timeout"):
        store.wait(0, timeout=-1)
    with pytest.raises(eventstore.InvalidArgument, match="timeout"):
        store.wait(0, timeout=float("nan"))


def test_close_wakes_a_waiting_thread(path: Path):
    store = Store(path)
    outcome: list[object] = []

    def waiter() -> None:
        try:
            outcome.append(store.wait(0))
        except eventstore.StoreClosed as e:
            outcome.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    start = time.monotonic()
    store.close()
    assert time.monotonic() - start < 2  # not held by the wait (it has no timeout)
    t.join(5)
    assert not t.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], (int, eventstore.StoreClosed))
    with Store(path):  # the lock was released
        pass


def test_call_guard_wakes_calls_in_flight_while_closing():
    from eventstore._store import _CallGuard

    guard = _CallGuard()
    guard.enter()
    wakes: list[int] = []

    def wake() -> None:
        wakes.append(1)
        if len(wakes) == 3:
            threading.Thread(target=guard.leave).start()

    assert guard.close(True, wake) is True
    assert len(wakes) >= 3


# --- filters -------------------------------------------------------------------------------


@pytest.fixture
def mixed(store: Store):
    a, b = uuid.uuid4(), uuid.uuid4()
    for i in range(30):
        store.append(a if i % 2 else b, [ev(["OrderPlaced", "OrderShipped", "Paid"][i % 3])])
    return store, a, b


def test_read_all_filters(mixed):
    store, a, b = mixed
    everything = store.read_all()
    paid = store.read_all(event_types=["Paid"])
    assert paid == [e for e in everything if e.event_type == "Paid"] and len(paid) == 10
    orders = store.read_all(event_type_prefixes=["Order"])
    assert orders == [e for e in everything if e.event_type.startswith("Order")]
    of_a = store.read_all(stream_id=a)
    assert of_a == [e for e in everything if e.stream_id == a] == store.read_stream(a)
    both = store.read_all(5, 3, stream_id=b, event_types=["Paid"], event_type_prefixes=["OrderS"])
    expected = [
        e for e in everything
        if e.global_position >= 5 and e.stream_id == b and e.event_type in ("Paid", "OrderShipped")
    ]
    assert both == expected[:3]
    assert store.read_all(event_types=["Nothing"]) == []
    assert store.read_all(event_type_prefixes=[""]) == everything  # "" matches every type
    assert store.read_all(stream_id=uuid.uuid4()) == []
    assert store.read_all(0, 0, event_types=["Paid"]) == []
    assert list(store.iter_all(page_size=3, event_types=["Paid"])) == paid
    assert list(store.iter_all(7, page_size=1, stream_id=a)) == [
        e for e in of_a if e.global_position >= 7
    ]


def test_filter_argument_checks(mixed):
    store, a, _ = mixed
    with pytest.raises(TypeError, match=r"event_types must be a list of str.*wrap one name"):
        store.read_all(event_types="Paid")
    with pytest.raises(TypeError, match=r"event_types\[1\] must be a str"):
        store.read_all(event_types=["Paid", b"Order"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="event_type_prefixes must be a list"):
        store.subscribe(event_type_prefixes=5)  # type: ignore[arg-type]
    with pytest.raises(eventstore.InvalidArgument, match="must not be empty"):
        store.read_all(event_types=[])
    with pytest.raises(eventstore.InvalidArgument, match="must not be empty"):
        store.subscribe(event_type_prefixes=[])
    with pytest.raises(TypeError, match="stream_id must be a uuid.UUID"):
        store.read_all(stream_id=str(a))  # type: ignore[arg-type]
    with pytest.raises(eventstore.InvalidArgument, match="forward reads only"):
        store.read_all(backward=True, event_types=["Paid"])
    with pytest.raises(eventstore.InvalidArgument, match="forward reads only"):
        store.iter_all(backward=True, stream_id=a)


# --- subscriptions ---------------------------------------------------------------------------


def test_subscription_catches_up_then_follows_live(store: Store):
    s = uuid.uuid4()
    store.append(s, [ev("A0"), ev("A1")])
    with store.subscribe(timeout=5) as sub:
        assert isinstance(sub, Subscription)
        got = [next(sub).event_type, next(sub).event_type]
        t = later(0.2, lambda: store.append(s, [ev("A2")]))
        live = next(sub)
        t.join()
        assert got + [live.event_type] == ["A0", "A1", "A2"]
        assert live.position == live.global_position == 2
        assert sub.position == 3


def test_subscription_timeout_ends_iteration_and_iterating_again_continues(store: Store):
    s = uuid.uuid4()
    store.append(s, [ev("A")])
    with store.subscribe(timeout=0.2) as sub:
        start = time.monotonic()
        assert [e.event_type for e in sub] == ["A"]
        assert 0.15 < time.monotonic() - start < 5
        store.append(s, [ev("B")])
        assert [e.event_type for e in sub] == ["B"]
        assert sub.next_batch(10, timeout=0) == []
        store.append(s, [ev("C"), ev("D")])
        assert [e.event_type for e in sub.next_batch(1)] == ["C"]
        assert [e.event_type for e in sub.next_batch(10)] == ["D"]


def test_subscription_filters_and_resume_from_saved_position(mixed):
    store, a, _ = mixed
    wanted = [e for e in store.read_all() if e.stream_id == a and e.event_type.startswith("Order")]
    with store.subscribe(stream_id=a, event_type_prefixes=["Order"], timeout=0.1, page_size=4) as sub:
        first = [next(sub) for _ in range(3)]  # part of a page: one event stays buffered
        saved = sub.position
    assert first == wanted[:3]
    assert saved == wanted[3].global_position
    store.append(a, [ev("OrderCancelled"), ev("Paid")])
    with store.subscribe(saved, stream_id=a, event_type_prefixes=["Order"], timeout=0.1) as sub:
        rest = list(sub)
        end = sub.position
    assert rest == wanted[3:] + [store.read_all(30, 1)[0]]
    assert [e.event_type for e in rest][-1] == "OrderCancelled"
    assert end == store.global_position  # past the non-matching "Paid" too
    with store.subscribe(end, timeout=0.05) as sub:
        assert list(sub) == []


def test_subscribe_argument_checks(store: Store):
    with pytest.raises((ValueError, OverflowError), match="from_position"):
        store.subscribe(-1)
    with pytest.raises(TypeError, match="from_position must be an int"):
        store.subscribe(None)  # type: ignore[arg-type]
    with pytest.raises(eventstore.InvalidArgument, match="timeout"):
        store.subscribe(timeout=-0.5)
    with pytest.raises(eventstore.InvalidArgument, match="page_size"):
        store.subscribe(page_size=0)
    with store.subscribe() as sub:
        with pytest.raises(eventstore.InvalidArgument, match="max_count"):
            sub.next_batch(0)
        with pytest.raises(TypeError, match="timeout"):
            sub.next_batch(1, timeout="soon")  # type: ignore[arg-type]


def test_wake_ends_a_subscription_iteration(store: Store):
    with store.subscribe() as sub:  # no timeout
        t = later(0.2, store.wake)
        start = time.monotonic()
        assert list(sub) == []
        assert time.monotonic() - start < 5
        t.join()
        assert not sub.closed


def test_closing_a_subscription_from_another_thread_ends_its_iteration(store: Store):
    sub = store.subscribe()
    got: list[object] = []
    t = threading.Thread(target=lambda: got.extend(sub))
    t.start()
    time.sleep(0.2)
    sub.close()
    t.join(5)
    assert not t.is_alive() and got == [] and sub.closed
    sub.close()  # idempotent
    assert list(sub) == []
    with pytest.raises(eventstore.StoreClosed):
        sub.position


def test_store_close_closes_its_subscriptions_and_wakes_followers(path: Path):
    store = Store(path)
    s = uuid.uuid4()
    store.append(s, [ev("A")])
    follower = store.subscribe()
    idle = store.subscribe(event_types=["Nothing"])
    got: list[str] = []
    t = threading.Thread(target=lambda: got.extend(e.event_type for e in follower))
    t.start()
    time.sleep(0.2)
    start = time.monotonic()
    store.close()
    assert time.monotonic() - start < 2
    t.join(5)
    assert not t.is_alive()
    assert got == ["A"]
    assert follower.closed and idle.closed
    assert list(idle) == []
    idle.close()
    with Store(path) as again:  # the writer's lock was released
        assert again.global_position == 1


def test_forgotten_subscriptions_are_closed_by_gc(store: Store):
    store.append(uuid.uuid4(), [ev()])
    for _ in range(50):
        sub = store.subscribe(timeout=0)
        assert len(list(sub)) == 1
        del sub
    gc.collect()
    assert len(store._subscriptions) == 0


FOLLOWER = r"""
import json, sys, eventstore
path, count = sys.argv[1], int(sys.argv[2])
with eventstore.Store(path, read_only=True, must_exist=True) as store:
    try:
        store.append(__import__("uuid").uuid4(), [eventstore.ProposedEvent("X")])
        read_only = False
    except eventstore.ReadOnly:
        read_only = True
    print("ready", flush=True)
    seen = []
    with store.subscribe(event_type_prefixes=["Tick"], timeout=20) as sub:
        for event in sub:
            seen.append((event.position, event.event_type, event.payload.decode()))
            if len(seen) == count:
                break
        position = sub.position
print(json.dumps({"read_only": read_only, "seen": seen, "position": position}))
"""


def test_a_read_only_process_follows_a_writer_with_subscribe(path: Path, store: Store):
    s = uuid.uuid4()
    store.append(s, [ev("Tick", b"0"), ev("Noise")])
    child = subprocess.Popen(
        [sys.executable, "-c", FOLLOWER, str(path), "40"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    for i in range(1, 40):
        store.append(s, [ev("Noise"), ev("Tick", str(i).encode())])
        if i % 10 == 0:
            time.sleep(0.05)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    result = json.loads(out)
    assert result["read_only"] is True
    ticks = [(e.position, e.event_type, e.payload.decode()) for e in store.read_all()
             if e.event_type == "Tick"]
    assert [tuple(x) for x in result["seen"]] == ticks  # every one, once, in order
    assert result["position"] == ticks[-1][0] + 1


EXIT_WITH_FOLLOWER = r"""
import sys, threading, uuid, eventstore
store = eventstore.Store(sys.argv[1])
store.append(uuid.uuid4(), [eventstore.ProposedEvent("E")])
sub = store.subscribe()
threading.Thread(target=lambda: [None for _ in sub], daemon=True).start()
threading.Thread(target=lambda: store.wait(10), daemon=True).start()
print("ok", flush=True)
"""


def test_interpreter_exit_with_followers_in_flight(path: Path):
    for _ in range(3):
        run = subprocess.run(
            [sys.executable, "-c", EXIT_WITH_FOLLOWER, str(path)],
            capture_output=True, text=True, timeout=60,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "ok"
    with Store(path) as s:
        assert s.global_position == 3


CLOSE_RACE = r"""
import sys, threading, time, uuid
import eventstore
from eventstore import ProposedEvent, Store, StoreClosed
path, rounds = sys.argv[1], int(sys.argv[2])
stream = uuid.uuid4()
for r in range(rounds):
    store = Store(path)
    reader = Store(path, read_only=True)
    subs = [store.subscribe(), reader.subscribe(event_types=["E"]), store.subscribe(timeout=0.01)]
    go = threading.Barrier(6)
    def follow(sub):
        go.wait()
        while not sub.closed:
            for _ in sub:
                pass
    def waiter(s):
        go.wait()
        try:
            while True:
                s.wait(s.global_position)
        except StoreClosed:
            pass
    def appender():
        go.wait()
        try:
            while True:
                store.append(stream, [ProposedEvent("E")])
        except StoreClosed:
            pass
    threads = [threading.Thread(target=follow, args=(s,)) for s in subs]
    threads += [threading.Thread(target=waiter, args=(reader,)), threading.Thread(target=appender)]
    for t in threads:
        t.start()
    go.wait()
    time.sleep(0.02 * (r % 3))
    if r % 2:
        subs[1].close()
        reader.close()
        store.close()
    else:
        store.close()
        reader.close()
    for t in threads:
        t.join(10)
        assert not t.is_alive(), "a follower was not ended by close()"
    assert all(s.closed for s in subs)
print("ok")
"""


def test_close_races_followers_many_rounds(path: Path):
    """close() of the writer and of a read-only handle while subscriptions iterate,
    wait() waits and an appender appends: never a crash, never a hang."""
    run = subprocess.run(
        [sys.executable, "-c", CLOSE_RACE, str(path), "30"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, (run.returncode, run.stderr[-3000:])
    assert run.stdout.strip() == "ok"
