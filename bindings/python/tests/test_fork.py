"""A child made by ``os.fork()`` (or ``multiprocessing`` with the "fork" start
method) gets copies of its parent's open stores. The library refuses every call on
such a copy with ``InvalidArgument`` naming fork(), and closing it in the child
leaves the files alone: before, an append through the copy overwrote the parent's
events appended after the fork, and a close cut them off the file.
"""

from __future__ import annotations

import os
import uuid

import pytest

import eventstore
from eventstore import ProposedEvent, Store


def child_checks(store: Store, reader: Store, go: int) -> int:
    """What the child does with its copies; the exit code says how far it got."""
    if os.read(go, 1) != b"g":
        return 20
    try:
        store.append(uuid.uuid4(), [ProposedEvent("FromChild", b"x")])
        return 21
    except eventstore.InvalidArgument as e:
        if "fork()" not in str(e):
            return 22
    try:
        list(store.read_all())
        return 23
    except eventstore.InvalidArgument:
        pass
    try:
        reader.wait(0, timeout=0)
        return 24
    except eventstore.InvalidArgument:
        pass
    reader.close()
    store.close()
    return 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads running
def test_a_forked_child_cannot_use_or_damage_its_parents_store(path) -> None:
    stream = uuid.uuid4()
    store = Store(path)
    store.append(stream, [ProposedEvent("BeforeFork", b"1")])
    reader = Store(path, read_only=True)
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = child_checks(store, reader, go_read)
        finally:
            os._exit(code)
    store.append(stream, [ProposedEvent("AfterFork", b"2")], expected_version=0)
    os.write(go_write, b"g")
    _, status = os.waitpid(pid, 0)
    os.close(go_read)
    os.close(go_write)
    assert os.WIFEXITED(status), status
    assert os.WEXITSTATUS(status) == 0, "the child's checks (see child_checks)"
    assert store.global_position == 2
    with pytest.raises(eventstore.Locked):
        Store(path)
    reader.close()
    store.close()
    with Store(path) as s:
        assert [e.event_type for e in s.read_all()] == ["BeforeFork", "AfterFork"]
