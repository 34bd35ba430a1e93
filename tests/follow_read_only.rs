//! Read-only handles in this process (issue 10, points 1 and 3): what they open, what
//! they see, what they never do. The cross-process half is `follow_process.rs`.

mod common;

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use common::{all, arm, event, hooked, open_held, temp_store, Hooks};
use eventstore::{Error, ExpectedVersion, OpenOptions, Store};
use uuid::Uuid;

fn read_only(path: &std::path::Path) -> Result<Store, Error> {
    Store::open_with(path, OpenOptions::new().read_only())
}

fn side(path: &std::path::Path) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("-shm");
    s.into()
}

#[test]
fn a_reader_opens_beside_the_writer_sees_every_acknowledged_event_and_refuses_appends() {
    let t = temp_store();
    let writer = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    writer
        .append(s, ExpectedVersion::NoStream, vec![event("A", b"1")])
        .unwrap();
    let reader = read_only(&t.path).expect("a read-only open is not Locked");
    assert!(reader.is_read_only() && !writer.is_read_only());
    assert!(reader.info().read_only && !writer.info().read_only);
    assert_eq!(reader.info().event_count, 1);
    assert_eq!(reader.global_position(), 1);
    let second = read_only(&t.path).expect("any number of readers");
    writer
        .append(
            s,
            ExpectedVersion::Exact(0),
            vec![event("B", b"2"), event("C", b"3")],
        )
        .unwrap();
    assert_eq!(
        reader.global_position(),
        3,
        "an acknowledged append is visible at once"
    );
    assert_eq!(all(&reader), all(&writer));
    assert_eq!(
        reader.read_stream(s, 1, 10).unwrap(),
        writer.read_stream(s, 1, 10).unwrap()
    );
    assert_eq!(reader.stream_version(&s), Some(2));
    assert_eq!(second.read_all(0, 10).unwrap().len(), 3);
    let len = std::fs::metadata(&t.path).unwrap().len();
    match reader.append(s, ExpectedVersion::Any, vec![event("X", b"")]) {
        Err(Error::ReadOnly { path }) => assert_eq!(path, t.path),
        other => panic!("expected ReadOnly, got {other:?}"),
    }
    assert_eq!(
        std::fs::metadata(&t.path).unwrap().len(),
        len,
        "nothing written"
    );
    drop(reader);
    drop(second);
    // The writer goes on undisturbed.
    writer
        .append(s, ExpectedVersion::Exact(2), vec![event("D", b"4")])
        .unwrap();
    writer.close().unwrap();
    // A writer's open is not refused because readers are open.
    let reader = read_only(&t.path).unwrap();
    let w2 = Store::open(&t.path).expect("a writer opens beside a reader");
    assert_eq!(w2.global_position(), 4);
    assert_eq!(reader.global_position(), 4);
}

#[test]
fn a_read_only_open_creates_nothing_and_must_exist_refuses_a_missing_store() {
    let t = temp_store();
    match read_only(&t.path) {
        Err(Error::Io { source, .. }) => assert_eq!(source.kind(), io::ErrorKind::NotFound),
        other => panic!("expected NotFound, got {other:?}"),
    }
    match Store::open_with(&t.path, OpenOptions::new().must_exist()) {
        Err(Error::Io { source, .. }) => assert_eq!(source.kind(), io::ErrorKind::NotFound),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!t.path.exists() && !side(&t.path).exists());
    // A zero-length file is an empty store, which a writer may then initialise.
    File::create(&t.path).unwrap();
    let reader = read_only(&t.path).unwrap();
    assert_eq!(reader.global_position(), 0);
    assert_eq!(
        std::fs::metadata(&t.path).unwrap().len(),
        0,
        "not initialised by a reader"
    );
    assert!(!side(&t.path).exists(), "a reader creates no side file");
    let writer = Store::open_with(&t.path, OpenOptions::new().must_exist()).unwrap();
    writer
        .append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("A", b"")])
        .unwrap();
    assert_eq!(reader.global_position(), 1);
    assert!(side(&t.path).exists(), "the writer made the side file");
}

#[test]
fn a_torn_tail_is_ignored_never_repaired_and_damage_is_corrupt_record() {
    let t = temp_store();
    let writer = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    for i in 0..3u8 {
        writer
            .append(s, ExpectedVersion::Any, vec![event("A", &[i; 100])])
            .unwrap();
    }
    writer.close().unwrap();
    let clean = std::fs::read(&t.path).unwrap();
    // A crashed writer's tail: half a batch.
    let mut torn = clean.clone();
    // Three batches of equal size follow the 32-byte header.
    let last_batch_start = clean.len() - (clean.len() - 32) / 3;
    torn.extend_from_slice(&clean[last_batch_start..clean.len() - 20]);
    std::fs::write(&t.path, &torn).unwrap();
    let reader = read_only(&t.path).unwrap();
    assert_eq!(reader.global_position(), 3);
    assert_eq!(reader.read_all(0, 10).unwrap().len(), 3);
    drop(reader);
    assert_eq!(
        std::fs::read(&t.path).unwrap(),
        torn,
        "a reader never repairs"
    );
    // Damage followed by valid data.
    let mut damaged = clean.clone();
    damaged[40] ^= 0xff;
    std::fs::write(&t.path, &damaged).unwrap();
    match read_only(&t.path) {
        Err(Error::CorruptRecord { .. }) => {}
        other => panic!("expected CorruptRecord, got {other:?}"),
    }
    assert_eq!(std::fs::read(&t.path).unwrap(), damaged);
}

#[test]
fn a_batch_written_but_not_synced_is_invisible_to_readers() {
    let t = temp_store();
    let (writer, gate) = open_held(&t.path);
    let s = Uuid::new_v4();
    writer
        .append(s, ExpectedVersion::NoStream, vec![event("A", b"synced")])
        .unwrap();
    let reader = read_only(&t.path).unwrap();
    let (written_rx, go_tx) = arm(&gate);
    std::thread::scope(|scope| {
        let appending = scope.spawn(|| {
            writer
                .append(
                    s,
                    ExpectedVersion::Exact(0),
                    vec![event("B", b"held"), event("C", b"held")],
                )
                .unwrap()
        });
        written_rx.recv().unwrap();
        // The batch is in the file (the page cache) but not synced. Observe, let the
        // sync go on, then judge (a failed assertion must not leave the writer held).
        let len = std::fs::metadata(&t.path).unwrap().len();
        let seen = (
            reader.global_position(),
            reader.read_all(0, 10).unwrap().len(),
            read_only(&t.path).unwrap().global_position(),
            writer.global_position(),
            reader.wait(1, Some(Duration::from_millis(50))).unwrap(),
        );
        let fresh = read_only(&t.path).unwrap();
        go_tx.send(()).unwrap();
        assert!(len > 32 + 200, "the held batch is written ({len} bytes)");
        assert_eq!(
            seen,
            (1, 1, 1, 1, 1),
            "(in-process reader, its read_all, a reader opened then, the writer's own \
             handle, a waiter) must not see the unsynced batch"
        );
        let recorded = appending.join().unwrap();
        assert_eq!(recorded.len(), 2);
        assert_eq!(reader.global_position(), 3, "visible once acknowledged");
        assert_eq!(fresh.read_all(1, 10).unwrap().len(), 2);
    });
}

#[test]
fn a_writer_that_crashed_leaves_a_readable_store() {
    // The writer's process is gone but its bytes stay: simulated by leaking a writer
    // whose file then gets a torn batch, then by a reader that outlives a closed writer.
    let t = temp_store();
    let writer = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    writer
        .append(s, ExpectedVersion::Any, vec![event("A", b"x")])
        .unwrap();
    let reader = read_only(&t.path).unwrap();
    drop(writer);
    // No writer is live now: the reader reads the valid prefix of the file.
    assert_eq!(reader.global_position(), 1);
    let w2 = Store::open(&t.path).unwrap();
    w2.append(s, ExpectedVersion::Exact(0), vec![event("B", b"y")])
        .unwrap();
    assert_eq!(
        reader.global_position(),
        2,
        "a reader outlives a writer and follows the next"
    );
    assert_eq!(reader.read_stream(s, 0, 10).unwrap().len(), 2);
}

#[test]
fn filtered_reads_select_by_type_prefix_and_stream_and_report_where_to_go_on() {
    let t = temp_store();
    let writer = Store::open(&t.path).unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    for i in 0..30u32 {
        let ty = ["OrderPlaced", "OrderShipped", "Invoice"][i as usize % 3];
        let stream = if i % 2 == 0 { a } else { b };
        writer
            .append(
                stream,
                ExpectedVersion::Any,
                vec![event(ty, &i.to_le_bytes())],
            )
            .unwrap();
    }
    let reader = read_only(&t.path).unwrap();
    for store in [&writer, &reader] {
        let f = eventstore::Filter::types(["Invoice"]);
        let (batch, next) = store.read_all_filtered(0, 4, &f).unwrap();
        let got: Vec<u64> = batch.iter().map(|e| e.global_position).collect();
        assert_eq!(got, vec![2, 5, 8, 11]);
        assert_eq!(next, 12);
        let (batch, next) = store.read_all_filtered(next, 100, &f).unwrap();
        assert_eq!(batch.len(), 6);
        assert_eq!(next, 30, "past everything examined");
        let (batch, next) = store.read_all_filtered(30, 100, &f).unwrap();
        assert!(batch.is_empty());
        assert_eq!(next, 30);
        let (batch, next) = store.read_all_filtered(99, 100, &f).unwrap();
        assert!(batch.is_empty());
        assert_eq!(next, 99, "never less than the start");
        let pre = eventstore::Filter::prefixes(["Order"]);
        let (batch, _) = store.read_all_filtered(0, 100, &pre).unwrap();
        assert_eq!(batch.len(), 20);
        assert!(batch.iter().all(|e| e.event_type.starts_with("Order")));
        let mut sf = eventstore::Filter::stream(a);
        sf.event_types = vec!["OrderShipped".into()];
        let (batch, next) = store.read_all_filtered(0, 100, &sf).unwrap();
        let got: Vec<u64> = batch.iter().map(|e| e.global_position).collect();
        assert_eq!(got, vec![4, 10, 16, 22, 28]);
        assert_eq!(next, 30);
        let (batch, next) = store.read_all_filtered(0, 2, &sf).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(next, 11);
        let none = eventstore::Filter::stream(Uuid::new_v4());
        let (batch, next) = store.read_all_filtered(3, 100, &none).unwrap();
        assert!(batch.is_empty());
        assert_eq!(next, 30);
        let (batch, next) = store.read_all_filtered(0, 0, &pre).unwrap();
        assert!(batch.is_empty());
        assert_eq!(next, 0, "max_count 0 examines nothing");
        let (batch, next) = store
            .read_all_filtered(5, 10, &eventstore::Filter::all())
            .unwrap();
        assert_eq!(batch.len(), 10);
        assert_eq!(next, 15);
    }
}

#[test]
fn a_filter_does_not_read_the_records_it_discards() {
    let t = temp_store();
    let writer = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    let payload = vec![7u8; 1000];
    for i in 0..400 {
        let ty = if i % 100 == 0 { "Rare" } else { "Common" };
        writer
            .append(s, ExpectedVersion::Any, vec![event(ty, &payload)])
            .unwrap();
    }
    writer.close().unwrap();
    let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let r = Arc::clone(&read);
    let reader = Store::open_with(
        &t.path,
        OpenOptions::new().read_only().storage(hooked(Hooks {
            after_read: Some(Box::new(move |n| {
                r.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            })),
            ..Hooks::default()
        })),
    )
    .unwrap();
    read.store(0, std::sync::atomic::Ordering::Relaxed);
    let (batch, next) = reader
        .read_all_filtered(0, 1000, &eventstore::Filter::types(["Rare"]))
        .unwrap();
    assert_eq!(batch.len(), 4);
    assert_eq!(next, 400);
    let bytes = read.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        bytes < 4 * 1200,
        "read {bytes} bytes for 4 matching records of ~1100 bytes (the log holds ~440 KB)"
    );
}

#[test]
fn the_index_stays_within_24_bytes_per_event() {
    let t = temp_store();
    let writer = Store::open(&t.path).unwrap();
    let streams: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();
    for i in 0..200 {
        let evs = (0..500)
            .map(|k| event(["A", "B", "C"][(i + k) % 3], b"p"))
            .collect();
        writer
            .append(streams[i % 10], ExpectedVersion::Any, evs)
            .unwrap();
    }
    writer.close().unwrap();
    for store in [Store::open(&t.path).unwrap(), read_only(&t.path).unwrap()] {
        let stats = store.index_stats();
        assert_eq!(stats.events, 100_000);
        let per_event = (stats.heap_bytes - stats.id_bytes) as f64 / stats.events as f64;
        assert!(
            per_event <= 24.0,
            "{per_event} bytes per event without the id table"
        );
        let in_all = stats.heap_bytes as f64 / stats.events as f64;
        assert!(in_all <= 36.0, "{in_all} bytes per event in all");
    }
}

#[test]
fn beside_a_writer_without_a_side_file_a_reader_is_refused_never_shown_unsynced_data() {
    let t = temp_store();
    // Something that cannot be the side file: the writer runs without one.
    std::fs::create_dir(side(&t.path)).unwrap();
    let writer = Store::open(&t.path).unwrap();
    writer
        .append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("A", b"")])
        .unwrap();
    match read_only(&t.path) {
        Err(Error::Io { context, .. }) => {
            assert!(context.contains("live writer"), "{context}");
            assert!(context.contains("-shm"), "{context}");
        }
        other => panic!("expected an I/O error naming the side file, got {other:?}"),
    }
    // Its own handle still waits and wakes (on its process-local word).
    std::thread::scope(|scope| {
        let h = scope.spawn(|| writer.wait(1, Some(Duration::from_secs(30))).unwrap());
        std::thread::sleep(Duration::from_millis(30));
        writer
            .append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("B", b"")])
            .unwrap();
        assert_eq!(h.join().unwrap(), 2);
    });
    drop(writer);
    // No writer: the valid prefix is all there is, no side file needed.
    assert_eq!(read_only(&t.path).unwrap().global_position(), 2);
}

#[test]
fn a_reader_that_found_no_side_file_wakes_once_a_writer_appears() {
    let t = temp_store();
    {
        let w = Store::open(&t.path).unwrap();
        w.append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("A", b"")])
            .unwrap();
    }
    std::fs::remove_file(side(&t.path)).unwrap();
    let reader = read_only(&t.path).unwrap();
    std::thread::scope(|scope| {
        let h = scope.spawn(|| reader.wait(1, Some(Duration::from_secs(30))).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        let w = Store::open(&t.path).unwrap();
        let t0 = std::time::Instant::now();
        w.append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("B", b"")])
            .unwrap();
        assert_eq!(h.join().unwrap(), 2);
        assert!(t0.elapsed() < Duration::from_secs(5));
    });
}

#[test]
fn a_reader_follows_multi_stream_appends_a_format_upgrade_and_finds_events_by_id() {
    let t = temp_store();
    // A version-1 store (written by 0.1), upgraded by the first multi-stream append
    // while a reader follows it.
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v0.1.store"),
        &t.path,
    )
    .unwrap();
    let reader = read_only(&t.path).unwrap();
    let before = reader.global_position();
    assert!(before > 0);
    let writer = Store::open(&t.path).unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (ea, eb) = (event("A", b"1"), event("B", b"2"));
    let (ra, rb) = ([ea.as_ref()], [eb.as_ref()]);
    writer
        .append_multi(&[
            eventstore::StreamAppend {
                stream_id: a,
                expected_version: ExpectedVersion::NoStream,
                events: &ra,
            },
            eventstore::StreamAppend {
                stream_id: b,
                expected_version: ExpectedVersion::NoStream,
                events: &rb,
            },
        ])
        .unwrap();
    assert_eq!(reader.global_position(), before + 2);
    assert_eq!(
        reader.info().format_version,
        2,
        "the reader saw the upgrade"
    );
    assert_eq!(reader.read_event(eb.event_id).unwrap().stream_id, b);
    assert_eq!(reader.stream_version(&a), Some(0));
    assert_eq!(
        reader.list_streams(0, u64::MAX),
        writer.list_streams(0, u64::MAX)
    );
    assert_eq!(
        reader.read_all_backward(u64::MAX, 2).unwrap(),
        writer.read_all_backward(u64::MAX, 2).unwrap()
    );
    // Many more, so that the reader's id table grows while it follows.
    for i in 0..3000u32 {
        writer
            .append(a, ExpectedVersion::Any, vec![event("C", &i.to_le_bytes())])
            .unwrap();
    }
    let last = writer.read_all_backward(u64::MAX, 1).unwrap().remove(0);
    assert_eq!(reader.read_event(last.event_id).unwrap(), last);
    let first_new = writer.read_event(ea.event_id).unwrap();
    assert_eq!(reader.read_event(ea.event_id).unwrap(), first_new);
}

/// A store reached by two names (a symbolic link, a hard link) has one writer's side
/// file and index file, whichever name each handle used: a side file left at one name
/// by an earlier writer must never pass for the live writer's, which would hide every
/// event acknowledged since and never wake its readers.
#[test]
fn a_store_reached_by_another_name_is_followed_through_the_live_writers_side_file() {
    let t = temp_store();
    let link = t.dir.path().join("by-link.store");
    std::os::unix::fs::symlink(&t.path, &link).unwrap();
    let hard = t.dir.path().join("by-hard-link.store");
    let s = Uuid::new_v4();
    {
        // Earlier writers, by each name, leave side files at each.
        for name in [&t.path, &link] {
            let w = Store::open(name).unwrap();
            w.append(s, ExpectedVersion::Any, vec![event("Early", b"")])
                .unwrap();
        }
    }
    std::fs::hard_link(&t.path, &hard).unwrap();
    {
        let w = Store::open(&hard).unwrap();
        w.append(s, ExpectedVersion::Any, vec![event("Early", b"")])
            .unwrap();
    }
    for (writer_name, reader_name) in [
        (&link, &t.path),
        (&t.path, &link),
        (&hard, &t.path),
        (&t.path, &hard),
        (&hard, &link),
    ] {
        let writer = Store::open(writer_name).unwrap();
        writer
            .append(s, ExpectedVersion::Any, vec![event("Late", b"")])
            .unwrap();
        let expected = writer.global_position();
        let what = format!("writer by {writer_name:?}, reader by {reader_name:?}");
        match read_only(reader_name) {
            Ok(reader) => {
                assert_eq!(reader.global_position(), expected, "{what}");
                std::thread::scope(|scope| {
                    let h = scope.spawn(|| reader.wait(expected, Some(Duration::from_secs(20))));
                    std::thread::sleep(Duration::from_millis(30));
                    writer
                        .append(s, ExpectedVersion::Any, vec![event("Later", b"")])
                        .unwrap();
                    assert_eq!(h.join().unwrap().unwrap(), expected + 1, "{what}: woken");
                });
            }
            // Refusing is fine where two names cannot be told to be one (hard links),
            // as long as the error says why.
            Err(Error::Io { context, .. }) => {
                assert!(
                    reader_name == &hard || writer_name == &hard,
                    "{what}: {context}"
                );
                assert!(context.contains("side file"), "{what}: {context}");
            }
            Err(e) => panic!("{what}: {e}"),
        }
        drop(writer);
    }
}

/// A reader that was open before a writer's last (checkpointed, acknowledged) batch
/// and catches up after it was damaged judges it as a new open does: damage
/// (`CorruptRecord`), never a torn tail to stop before without a word. Before, the
/// handle that was already open showed one event fewer than the log acknowledged, and
/// no error, where a new handle refused the store.
#[test]
fn a_reader_catching_up_refuses_a_damaged_acknowledged_tail_as_an_open_does() {
    let t = temp_store();
    let s = Uuid::new_v4();
    {
        // Enough log for the writer to keep an index file.
        let w = Store::open(&t.path).unwrap();
        let first = (0..2000).map(|_| event("First", &[1; 1000])).collect();
        w.append(s, ExpectedVersion::Any, first).unwrap();
    }
    let reader = read_only(&t.path).unwrap();
    assert_eq!(reader.global_position(), 2000);
    {
        let w = Store::open(&t.path).unwrap();
        let second = (0..1500).map(|_| event("Second", &[2; 1000])).collect();
        w.append(s, ExpectedVersion::Any, second).unwrap();
        // Closed cleanly: the index file's last manifest covers the second batch.
    }
    assert!(
        std::fs::metadata(index_path(&t.path)).is_ok(),
        "an index file"
    );
    // Rot in the last batch's last byte (its frame's checksum).
    let len = std::fs::metadata(&t.path).unwrap().len();
    let f = File::options()
        .read(true)
        .write(true)
        .open(&t.path)
        .unwrap();
    let mut b = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, len - 1).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[b[0] ^ 0x40], len - 1).unwrap();
    drop(f);
    let fresh = read_only(&t.path);
    assert!(
        matches!(fresh, Err(Error::CorruptRecord { .. })),
        "a new handle: {fresh:?}"
    );
    let caught_up = reader.wait(2000, Some(Duration::ZERO));
    match caught_up {
        Err(Error::CorruptRecord {
            position, detail, ..
        }) => {
            assert_eq!(position, 2000, "{detail}");
            assert!(detail.contains("acknowledged"), "{detail}");
        }
        other => panic!("the open handle catching up: {other:?}"),
    }
}

fn index_path(path: &std::path::Path) -> std::path::PathBuf {
    eventstore::store::index_file_path(path)
}

/// A store file replaced under a reader (a backup restored over it, the store
/// recreated) is not followed silently: the old file no longer grows, so a reader that
/// went on waiting on it would never see another event. Its next read or wait says
/// that the file was replaced; a new handle follows the new file.
#[test]
fn a_reader_of_a_store_replaced_under_it_is_told_so() {
    let t = temp_store();
    let s = Uuid::new_v4();
    {
        let w = Store::open(&t.path).unwrap();
        w.append(s, ExpectedVersion::Any, vec![event("Old", b"")])
            .unwrap();
    }
    let reader = read_only(&t.path).unwrap();
    assert_eq!(reader.global_position(), 1);
    // A copy, renamed over the store (as a restore does), then written to.
    let copy = t.dir.path().join("restored.store");
    std::fs::copy(&t.path, &copy).unwrap();
    std::fs::rename(&copy, &t.path).unwrap();
    {
        let w = Store::open(&t.path).unwrap();
        w.append(s, ExpectedVersion::Any, vec![event("New", b"")])
            .unwrap();
    }
    match reader.wait(1, Some(Duration::from_millis(200))) {
        Err(Error::Io { context, .. }) => assert!(context.contains("replaced"), "{context}"),
        other => panic!("the reader of the replaced file: {other:?}"),
    }
    assert_eq!(read_only(&t.path).unwrap().global_position(), 2);
}
