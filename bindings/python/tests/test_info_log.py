"""Issue 9, point 3: what recovery did is visible from Python: ``Store.info()`` and the
library's log on the ``logging`` logger ``eventstore``."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import eventstore
from eventstore import NO_STREAM, ProposedEvent, Store, StoreInfo


def test_info_of_a_fresh_and_a_filled_store(tmp_path: Path):
    path = tmp_path / "events.store"
    with Store(path) as store:
        info = store.info()
        assert isinstance(info, StoreInfo)
        assert (info.event_count, info.stream_count, info.recovered_bytes_dropped) == (0, 0, 0)
        assert info.read_only is False and info.poisoned is False
        assert info.format_version in (1, 2)
        a, b = uuid.uuid4(), uuid.uuid4()
        store.append(a, [ProposedEvent("E", b"x" * 100)] * 3, expected_version=NO_STREAM)
        store.append(b, [ProposedEvent("E")], expected_version=NO_STREAM)
        info = store.info()
        assert (info.event_count, info.stream_count) == (4, 2)
        assert info.data_bytes > 300
        assert info.index_bytes > 0
        with pytest.raises(dataclasses.FrozenInstanceError):
            info.event_count = 0  # type: ignore[misc]
    # data_bytes is what the file holds once closed (preallocation trimmed).
    assert info.data_bytes == path.stat().st_size
    with pytest.raises(eventstore.StoreClosed):
        store.info()


def test_info_has_every_field_of_es_store_info():
    names = [f.name for f in dataclasses.fields(StoreInfo)]
    assert names == [
        "format_version",
        "read_only",
        "poisoned",
        "event_count",
        "stream_count",
        "data_bytes",
        "recovered_bytes_dropped",
        "index_bytes",
    ]


def test_garbage_cut_by_recovery_is_in_info_and_logged(tmp_path: Path, caplog):
    path = tmp_path / "events.store"
    with Store(path) as store:
        store.append(uuid.uuid4(), [ProposedEvent("E", b"payload")])
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(bytes(range(1, 101)))  # 100 garbage bytes (not zeros: not preallocation)
    with caplog.at_level(logging.DEBUG, logger="eventstore"):
        with Store(path) as store:
            info = store.info()
    assert info.recovered_bytes_dropped == 100
    assert info.event_count == 1
    assert path.stat().st_size == size
    warnings = [
        r for r in caplog.records if r.name == "eventstore" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1, caplog.records
    message = warnings[0].getMessage()
    assert "100 bytes" in message and str(path) in message, message
    # A clean reopen cuts nothing and logs nothing.
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="eventstore"):
        with Store(path) as store:
            assert store.info().recovered_bytes_dropped == 0
    assert [r for r in caplog.records if r.name == "eventstore"] == []


def test_log_levels_map_to_logging_levels():
    from eventstore import _log

    assert _log.LEVELS == {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG}


def test_the_callback_never_raises_into_c(tmp_path: Path, caplog):
    """A handler that raises must not reach the library (nor print ctypes' "Exception
    ignored on calling ctypes callback function")."""
    from eventstore import _log

    class Boom(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("handler bug")

        def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802
            raise  # re-raise instead of printing: the callback must swallow it

    handler = Boom()
    _log.logger.addHandler(handler)
    try:
        # Called directly, as the library calls it: it returns None, whatever happens.
        assert _log._deliver(None, 2, b"message") is None
        assert _log._deliver(None, 99, None) is None
        assert _log._deliver(None, 2, b"\xff\xfe not utf-8") is None
        # And through the library.
        path = tmp_path / "events.store"
        with Store(path) as store:
            store.append(uuid.uuid4(), [ProposedEvent("E")])
        with open(path, "ab") as f:
            f.write(b"\x01" * 10)
        with Store(path) as store:
            assert store.info().recovered_bytes_dropped == 10
    finally:
        _log.logger.removeHandler(handler)


SCRIPT = r"""
import logging, sys, threading, uuid
import eventstore
path = sys.argv[1]
logging.basicConfig(level=logging.DEBUG, format="%(name)s %(levelname)s %(message)s")
store = eventstore.Store(path)
print("dropped", store.info().recovered_bytes_dropped, flush=True)
def spin():
    while True:
        store.append(uuid.uuid4(), [eventstore.ProposedEvent("E")])
threading.Thread(target=spin, daemon=True).start()
# Exit with a daemon thread appending and the store open: the callback is removed at
# exit and must not run Python during finalisation.
"""


def test_interpreter_exit_with_the_callback_set(tmp_path: Path):
    path = tmp_path / "events.store"
    with Store(path) as store:
        store.append(uuid.uuid4(), [ProposedEvent("E")])
    with open(path, "ab") as f:
        f.write(b"\x07" * 33)
    for round in range(5):
        run = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
        assert "Exception ignored" not in run.stderr, run.stderr
        if round == 0:
            # The cut was logged through the handler logging.basicConfig installed.
            assert "dropped 33" in run.stdout
            assert "eventstore WARNING" in run.stderr and "cut off 33 bytes" in run.stderr
    with Store(path) as store:
        assert store.info().event_count > 1


def test_recovery_warning_reaches_stderr_without_logging_configured(tmp_path: Path):
    """With no logging configuration, Python's last-resort handler prints warnings:
    a cut is never silent."""
    path = tmp_path / "events.store"
    with Store(path) as store:
        store.append(uuid.uuid4(), [ProposedEvent("E")])
    with open(path, "ab") as f:
        f.write(b"\x05" * 100)
    run = subprocess.run(
        [sys.executable, "-c", "import sys, eventstore; eventstore.Store(sys.argv[1]).close()",
         str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "cut off 100 bytes" in run.stderr, run.stderr
