"""Benchmark of the Python binding next to Python's own ``sqlite3`` module.

    python -m eventstore.bench [--events 100000] [--appends 600] [--batches 150]
                               [--runs 5] [--dir PATH]

Both sides store the same rows (a 16-byte stream id, a 12-byte event type, 32 bytes
of metadata, a 200-byte payload, spread over 1,000 streams), on the filesystem of
``--dir`` (default: the current directory; not a tmpfs, or syncs cost nothing).
SQLite runs in WAL mode with ``synchronous=FULL``, in a table with
``UNIQUE(stream_id, stream_version)``; each append is one ``BEGIN IMMEDIATE``
transaction holding the expected-version check and the inserts, as libeventstore's
append does.

Workloads (the issue-12 targets in brackets):

- ``read_all``: the whole log in one call, ``Store.read_all()`` against ``SELECT ...
  ORDER BY position`` + ``fetchall()`` [>= 1.5x sqlite3]; and the same followed by
  reading every event's payload (a reader that uses what it read).
- ``append 1``: durable single-event appends, one per call [>= 1.3x].
- ``append 100``: durable batches of 100 events [>= 1.7x].

Figures are events per second, the median of ``--runs`` runs (reads are warm: each
side reads once first). Appends are as quiet as the machine: other processes' dirty
data slows every sync.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from typing import Callable, List, Sequence, Tuple

import eventstore
from eventstore import NO_STREAM, ProposedEvent, Store

EVENT_TYPE = "OrderPlaced1"
METADATA = b"m" * 32
PAYLOAD_SIZE = 200
STREAMS = 1000
SCHEMA = """
CREATE TABLE events (
    position INTEGER PRIMARY KEY,
    stream_id BLOB NOT NULL,
    stream_version INTEGER NOT NULL,
    event_id BLOB NOT NULL,
    event_type TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    metadata BLOB NOT NULL,
    payload BLOB NOT NULL,
    UNIQUE (stream_id, stream_version)
)
"""
SELECT_ALL = (
    "SELECT position, stream_id, stream_version, event_id, event_type, recorded_at, "
    "metadata, payload FROM events ORDER BY position"
)


def payload(i: int) -> bytes:
    return (b"%08d" % i) * (PAYLOAD_SIZE // 8)


def open_sqlite(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


class SqliteStore:
    """The same appends on SQLite: check the expected version and insert, in one
    transaction."""

    def __init__(self, path: str) -> None:
        self.db = open_sqlite(path)
        self.db.execute(SCHEMA)

    def append(self, stream: bytes, rows: Sequence[Tuple[bytes, bytes]], expected: int) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            (last,) = db.execute(
                "SELECT max(stream_version) FROM events WHERE stream_id = ?", (stream,)
            ).fetchone()
            actual = -1 if last is None else last
            if expected != actual:
                raise RuntimeError(f"conflict: expected {expected}, actual {actual}")
            now = time.time_ns() // 1000
            db.executemany(
                "INSERT INTO events (stream_id, stream_version, event_id, event_type, "
                "recorded_at, metadata, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (stream, actual + 1 + k, os.urandom(16), EVENT_TYPE, now, metadata, body)
                    for k, (metadata, body) in enumerate(rows)
                ],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()


def median_rate(runs: int, count: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return count / statistics.median(times)


def fill(dir_: str, n: int) -> Tuple[str, str]:
    """A store and a SQLite database with the same n events, written in bulk."""
    es_path = os.path.join(dir_, "read.store")
    sq_path = os.path.join(dir_, "read.db")
    streams = [uuid.uuid4() for _ in range(STREAMS)]
    with Store(es_path) as store:
        version = [-1] * STREAMS
        i = 0
        while i < n:
            s = (i // 100) % STREAMS
            batch = [ProposedEvent(EVENT_TYPE, payload(i + k), METADATA) for k in range(min(100, n - i))]
            store.append(streams[s], batch, expected_version=version[s] if version[s] >= 0 else NO_STREAM)
            version[s] += len(batch)
            i += len(batch)
        rows = [
            (e.global_position, e.stream_id.bytes, e.stream_version, e.event_id.bytes,
             e.event_type, e.recorded_at_us, e.metadata, e.payload)
            for e in store.read_all()
        ]
    db = open_sqlite(sq_path)
    db.execute(SCHEMA)
    db.execute("BEGIN")
    db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute("COMMIT")
    db.close()
    return es_path, sq_path


Row = Tuple[str, float, float, float]


def bench_reads(dir_: str, n: int, runs: int) -> List[Row]:
    es_path, sq_path = fill(dir_, n)
    out: List[Row] = []
    with Store(es_path) as store:
        db = open_sqlite(sq_path)
        try:
            assert len(store.read_all()) == n
            assert len(db.execute(SELECT_ALL).fetchall()) == n

            def es_read() -> None:
                store.read_all()

            def sq_read() -> None:
                db.execute(SELECT_ALL).fetchall()

            def es_use() -> None:
                for e in store.read_all():
                    e.payload

            def sq_use() -> None:
                for r in db.execute(SELECT_ALL).fetchall():
                    r[7]

            es = median_rate(runs, n, es_read)
            sq = median_rate(runs, n, sq_read)
            out.append((f"read_all {n:,} events", es, sq, 1.5))
            es = median_rate(runs, n, es_use)
            sq = median_rate(runs, n, sq_use)
            out.append((f"read_all {n:,} + every payload", es, sq, 0.0))
        finally:
            db.close()
    return out


def bench_appends(dir_: str, appends: int, batch: int, runs: int, target: float) -> Row:
    streams = [uuid.uuid4() for _ in range(STREAMS)]
    events = [ProposedEvent(EVENT_TYPE, payload(k), METADATA) for k in range(batch)]
    rows = [(METADATA, payload(k)) for k in range(batch)]
    es_times, sq_times = [], []
    for run in range(runs):
        es_path = os.path.join(dir_, f"append{batch}-{run}.store")
        sq_path = os.path.join(dir_, f"append{batch}-{run}.db")
        with Store(es_path) as store:
            version = [-1] * STREAMS
            start = time.perf_counter()
            for i in range(appends):
                s = i % STREAMS
                v = version[s]
                store.append(streams[s], events, expected_version=v if v >= 0 else NO_STREAM)
                version[s] = v + batch
            es_times.append(time.perf_counter() - start)
        sq = SqliteStore(sq_path)
        try:
            version = [-1] * STREAMS
            start = time.perf_counter()
            for i in range(appends):
                s = i % STREAMS
                sq.append(streams[s].bytes, rows, version[s])
                version[s] += batch
            sq_times.append(time.perf_counter() - start)
        finally:
            sq.close()
    n = appends * batch
    return (
        f"append {batch} x {appends:,} (durable)",
        n / statistics.median(es_times),
        n / statistics.median(sq_times),
        target,
    )


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(prog="python -m eventstore.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events in the read store")
    parser.add_argument("--appends", type=int, default=600, help="single-event appends per run")
    parser.add_argument("--batches", type=int, default=150, help="batches of 100 per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", default=".", help="where the temporary files go")
    args = parser.parse_args(list(argv) or None)

    dir_ = tempfile.mkdtemp(prefix="eventstore-bench-", dir=args.dir)
    try:
        print(
            f"libeventstore {eventstore.library_version()} ({eventstore.library_path()}) "
            f"vs sqlite3 {sqlite3.sqlite_version} (WAL, synchronous=FULL); "
            f"Python {sys.version.split()[0]}; files in {dir_}; median of {args.runs} runs"
        )
        rows = bench_reads(dir_, args.events, args.runs)
        rows.append(bench_appends(dir_, args.appends, 1, args.runs, 1.3))
        rows.append(bench_appends(dir_, args.batches, 100, args.runs, 1.7))
    finally:
        shutil.rmtree(dir_, ignore_errors=True)
    print(f"{'workload':<36} {'eventstore ev/s':>16} {'sqlite3 ev/s':>14} {'ratio':>7}  target")
    met_all = True
    for name, es, sq, target in rows:
        ratio = es / sq
        if target:
            met = ratio >= target
            met_all &= met
            verdict = f">= {target}x {'met' if met else 'NOT MET'}"
        else:
            verdict = "-"
        print(f"{name:<36} {es:>16,.0f} {sq:>14,.0f} {ratio:>6.2f}x  {verdict}")
    print("all targets met" if met_all else "some targets not met")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
