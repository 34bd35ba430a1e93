//! The read-only scan (`inspect::scan`), salvage, `Store::append_copied` and
//! `Store::backup_to` (issue 13's library support).

mod common;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{all, event, file_len, open_exact, temp_store};
use eventstore::inspect::{self, Inspection, RangeKind};
use eventstore::{
    CopiedBatch, Error, ExpectedVersion, HeaderCause, ProposedEvent, RecordedEvent, Store,
};
use uuid::Uuid;

/// A batch's (offset, len, first position, count).
type Placed = (u64, u64, u64, u32);

/// A store of `batches` appends (each its own group commit) of 1 to 3 events over 3
/// streams; returns every event and each batch's (offset, len, first position, count).
fn build(path: &Path, batches: usize) -> (Vec<RecordedEvent>, Vec<Placed>) {
    let store = open_exact(path);
    let streams = [Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3)];
    for i in 0..batches {
        let n = 1 + i % 3;
        let events = (0..n)
            .map(|k| {
                event(
                    &format!("Type{}", k % 2),
                    format!("{{\"i\":{i},\"k\":{k}}}").as_bytes(),
                )
            })
            .collect();
        store
            .append(streams[i % 3], ExpectedVersion::Any, events)
            .unwrap();
    }
    let events = all(&store);
    store.close().unwrap();
    (events, layout(path))
}

fn layout(path: &Path) -> Vec<Placed> {
    let mut out = Vec::new();
    let found = inspect::scan(path, |b| {
        out.push((b.offset, b.len, b.first_position, b.count));
        Ok(())
    })
    .unwrap();
    assert!(found.is_clean(), "{found:?}");
    out
}

fn scan_all(path: &Path) -> (Inspection, Vec<RecordedEvent>) {
    let mut events = Vec::new();
    let found = inspect::scan(path, |b| {
        events.extend(b.events().map(|e| e.to_recorded()));
        Ok(())
    })
    .unwrap();
    (found, events)
}

/// The fields salvage keeps (positions and versions may move).
fn kept(e: &RecordedEvent) -> (Uuid, Uuid, u64, String, Vec<u8>, Vec<u8>) {
    (
        e.event_id,
        e.stream_id,
        e.recorded_at,
        e.event_type.clone(),
        e.metadata.clone(),
        e.payload.clone(),
    )
}

/// Salvages `path` into a new store and checks the result: it opens, scans clean,
/// and holds exactly `expected` (in order), and the report counts them.
fn salvage_and_check(path: &Path, expected: &[RecordedEvent]) -> inspect::SalvageReport {
    let dest = path.with_extension("salvaged");
    let before = fs::read(path).unwrap();
    let report = inspect::salvage(path, &dest, &mut |_, _| {}).unwrap();
    assert_eq!(
        fs::read(path).unwrap(),
        before,
        "salvage modified its source"
    );
    assert_eq!(report.kept_events, expected.len() as u64);
    let (copy, _) = scan_all(&dest);
    assert!(copy.is_clean(), "{copy:?}");
    let store = Store::open(&dest).unwrap();
    let got = all(&store);
    assert_eq!(
        got.iter().map(kept).collect::<Vec<_>>(),
        expected.iter().map(kept).collect::<Vec<_>>()
    );
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.global_position, i as u64);
    }
    report
}

#[test]
fn scan_of_a_sound_store_lists_every_batch_and_no_range() {
    let t = temp_store();
    let (events, batches) = build(&t.path, 30);
    let (found, seen) = scan_all(&t.path);
    assert!(found.is_clean() && found.is_sound());
    assert_eq!(found.batches, 30);
    assert_eq!(found.events, events.len() as u64);
    assert_eq!(found.valid_events, events.len() as u64);
    assert_eq!(found.streams, 3);
    assert_eq!(found.valid_end, fs::metadata(&t.path).unwrap().len());
    assert_eq!(seen, events);
    assert_eq!(batches[0].0, 32);
    assert_eq!(found.first_recorded_at, Some(events[0].recorded_at));
    assert_eq!(
        found.last_recorded_at,
        Some(events.last().unwrap().recorded_at)
    );
}

#[test]
fn a_flipped_byte_in_the_middle_is_one_damaged_batch_and_salvage_keeps_the_rest() {
    let t = temp_store();
    let (events, batches) = build(&t.path, 30);
    let (offset, len, first, count) = batches[12];
    let mut bytes = fs::read(&t.path).unwrap();
    bytes[(offset + len / 2) as usize] ^= 0x40;
    fs::write(&t.path, &bytes).unwrap();
    assert!(matches!(
        Store::open(&t.path),
        Err(Error::CorruptRecord { offset: o, .. }) if o == offset
    ));

    let (found, seen) = scan_all(&t.path);
    assert!(!found.is_sound());
    assert_eq!(found.ranges.len(), 1, "{:?}", found.ranges);
    let r = &found.ranges[0];
    assert_eq!((r.start, r.end), (offset, offset + len));
    assert_eq!(r.first_lost_position, first);
    assert_eq!(r.lost_events, Some(u64::from(count)));
    assert_eq!(r.kind, RangeKind::Damage);
    assert_eq!(found.valid_end, offset);
    assert_eq!(found.valid_events, first);
    let survivors: Vec<RecordedEvent> = events
        .iter()
        .filter(|e| e.global_position < first || e.global_position >= first + u64::from(count))
        .cloned()
        .collect();
    assert_eq!(seen, survivors);

    let report = salvage_and_check(&t.path, &survivors);
    assert_eq!(report.kept_batches, 29);
    assert_eq!(report.renumbered_from, Some(first + u64::from(count)));
    assert_eq!(report.inspection.lost_events(), u64::from(count));
}

#[test]
fn a_zeroed_range_over_several_batches_is_reported_with_its_positions() {
    let t = temp_store();
    let (events, batches) = build(&t.path, 40);
    // From the middle of batch 10 to the middle of batch 14.
    let from = batches[10].0 + 20;
    let to = batches[14].0 + 30;
    let mut bytes = fs::read(&t.path).unwrap();
    bytes[from as usize..to as usize].fill(0);
    fs::write(&t.path, &bytes).unwrap();

    let (found, _) = scan_all(&t.path);
    assert_eq!(found.ranges.len(), 1, "{:?}", found.ranges);
    let r = &found.ranges[0];
    assert_eq!((r.start, r.end), (batches[10].0, batches[15].0));
    assert_eq!(r.first_lost_position, batches[10].2);
    assert_eq!(r.lost_events, Some(batches[15].2 - batches[10].2));
    assert_eq!(r.kind, RangeKind::Damage);
    let survivors: Vec<RecordedEvent> = events
        .iter()
        .filter(|e| e.global_position < batches[10].2 || e.global_position >= batches[15].2)
        .cloned()
        .collect();
    salvage_and_check(&t.path, &survivors);
}

#[test]
fn a_cut_in_the_middle_of_a_batch_followed_by_valid_batches_is_found() {
    let t = temp_store();
    let (events, batches) = build(&t.path, 25);
    let bytes = fs::read(&t.path).unwrap();
    // Batch 7 loses its second half, and batch 8 disappears: batch 9 follows the cut.
    let cut = (batches[7].0 + batches[7].1 / 2) as usize;
    let mut damaged = bytes[..cut].to_vec();
    damaged.extend_from_slice(&bytes[batches[9].0 as usize..]);
    fs::write(&t.path, &damaged).unwrap();

    let (found, _) = scan_all(&t.path);
    assert_eq!(found.ranges.len(), 1, "{:?}", found.ranges);
    let r = &found.ranges[0];
    assert_eq!((r.start, r.end), (batches[7].0, cut as u64));
    assert_eq!(r.first_lost_position, batches[7].2);
    assert_eq!(r.lost_events, Some(batches[9].2 - batches[7].2));
    assert_eq!(r.kind, RangeKind::Damage);
    let survivors: Vec<RecordedEvent> = events
        .iter()
        .filter(|e| e.global_position < batches[7].2 || e.global_position >= batches[9].2)
        .cloned()
        .collect();
    salvage_and_check(&t.path, &survivors);
}

#[test]
fn whole_batches_missing_without_damaged_bytes_are_a_zero_length_range() {
    let t = temp_store();
    let (events, batches) = build(&t.path, 12);
    let bytes = fs::read(&t.path).unwrap();
    let mut damaged = bytes[..batches[4].0 as usize].to_vec();
    damaged.extend_from_slice(&bytes[batches[6].0 as usize..]);
    fs::write(&t.path, &damaged).unwrap();
    let (found, _) = scan_all(&t.path);
    assert_eq!(found.ranges.len(), 1, "{:?}", found.ranges);
    let r = &found.ranges[0];
    assert_eq!((r.start, r.end), (batches[4].0, batches[4].0));
    assert_eq!(r.lost_events, Some(batches[6].2 - batches[4].2));
    assert_eq!(r.kind, RangeKind::Damage);
    let survivors: Vec<RecordedEvent> = events
        .iter()
        .filter(|e| e.global_position < batches[4].2 || e.global_position >= batches[6].2)
        .cloned()
        .collect();
    salvage_and_check(&t.path, &survivors);
}

#[test]
fn a_torn_tail_and_trailing_zeros_are_not_damage() {
    let t = temp_store();
    let (events, batches) = build(&t.path, 10);
    let bytes = fs::read(&t.path).unwrap();
    let last = batches[9];
    // Torn: the last batch cut short.
    fs::write(&t.path, &bytes[..(last.0 + last.1 - 10) as usize]).unwrap();
    let (found, _) = scan_all(&t.path);
    assert!(found.is_sound());
    assert_eq!(found.ranges.len(), 1);
    assert_eq!(found.ranges[0].kind, RangeKind::TornTail);
    assert_eq!(found.ranges[0].lost_events, None);
    assert_eq!(found.ranges[0].first_lost_position, last.2);
    let kept: Vec<RecordedEvent> = events
        .iter()
        .filter(|e| e.global_position < last.2)
        .cloned()
        .collect();
    salvage_and_check(&t.path, &kept);

    // Zeros: preallocated space.
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0u8; 70_000]);
    fs::write(&t.path, &padded).unwrap();
    let (found, _) = scan_all(&t.path);
    assert!(found.is_sound());
    assert_eq!(found.ranges.len(), 1);
    assert_eq!(found.ranges[0].kind, RangeKind::Unused);
    assert_eq!(found.valid_end, bytes.len() as u64);
    assert_eq!(found.events, events.len() as u64);
}

#[test]
fn a_damaged_file_header_is_a_range_and_its_batches_are_salvaged() {
    let t = temp_store();
    let (events, _) = build(&t.path, 8);
    let mut bytes = fs::read(&t.path).unwrap();
    bytes[20] ^= 1; // a reserved byte: the header checksum fails, the salt is intact
    fs::write(&t.path, &bytes).unwrap();
    assert!(matches!(
        Store::open(&t.path),
        Err(Error::InvalidHeader { .. })
    ));
    let (found, seen) = scan_all(&t.path);
    assert_eq!(found.ranges[0].start, 0);
    assert_eq!(found.ranges[0].end, 32);
    assert!(!found.is_sound());
    assert_eq!(seen, events);
    salvage_and_check(&t.path, &events);
}

#[test]
fn a_file_that_is_not_a_store_is_invalid_header() {
    let t = temp_store();
    fs::write(&t.path, vec![b'x'; 4096]).unwrap();
    assert!(matches!(
        inspect::scan(&t.path, |_| Ok(())),
        Err(Error::InvalidHeader {
            cause: HeaderCause::NotAStore,
            ..
        })
    ));
    fs::write(&t.path, b"").unwrap();
    assert!(matches!(
        inspect::scan(&t.path, |_| Ok(())),
        Err(Error::InvalidHeader {
            cause: HeaderCause::NotAStore,
            ..
        })
    ));
    let missing = t.dir.path().join("missing.store");
    assert!(matches!(
        inspect::scan(&missing, |_| Ok(())),
        Err(Error::Io { .. })
    ));
    let dest = t.dir.path().join("x.salvaged");
    assert!(inspect::salvage(&missing, &dest, &mut |_, _| {}).is_err());
    assert!(!dest.exists(), "a failed salvage leaves no file");
    assert_eq!(
        fs::read_dir(t.dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
}

#[test]
fn salvage_refuses_an_existing_destination() {
    let t = temp_store();
    build(&t.path, 3);
    let dest = t.dir.path().join("taken.store");
    fs::write(&dest, b"mine").unwrap();
    assert!(matches!(
        inspect::salvage(&t.path, &dest, &mut |_, _| {}),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(fs::read(&dest).unwrap(), b"mine");
}

#[test]
fn append_copied_keeps_ids_and_commit_times_and_later_appends_do_not_go_back() {
    let t = temp_store();
    let store = open_exact(&t.path);
    let s = Uuid::from_u128(9);
    let future = 4_000_000_000_000_000u64; // year 2096
    let first = [event("A", b"1"), event("B", b"2")];
    let second = [event("C", b"3")];
    fn refs(events: &[ProposedEvent]) -> Vec<eventstore::ProposedEventRef<'_>> {
        events.iter().map(ProposedEvent::as_ref).collect()
    }
    let batches = vec![
        CopiedBatch::new(s, ExpectedVersion::NoStream, 1_000, &refs(&first)).unwrap(),
        CopiedBatch::new(s, ExpectedVersion::Exact(1), future, &refs(&second)).unwrap(),
    ];
    let ids: Vec<Uuid> = first.iter().chain(&second).map(|e| e.event_id).collect();
    let results = store.append_copied(batches).unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[1][0].first_global_position, 2);
    let later = store
        .append(s, ExpectedVersion::Exact(2), vec![event("D", b"4")])
        .unwrap();
    assert!(later[0].recorded_at >= future);
    let got = all(&store);
    assert_eq!(
        got.iter().map(|e| e.event_id).take(3).collect::<Vec<_>>(),
        ids
    );
    assert_eq!(
        got.iter()
            .map(|e| e.recorded_at)
            .take(3)
            .collect::<Vec<_>>(),
        [1_000, 1_000, future]
    );
    // A failed check is reported; the batch is not written.
    let err = store
        .append_copied(vec![CopiedBatch::new(
            s,
            ExpectedVersion::NoStream,
            5,
            &refs(&[event("E", b"5")]),
        )
        .unwrap()])
        .unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { .. }));
    assert_eq!(store.global_position(), 4);
    drop(store);
    // Nor do appends of a later writer go back, behind a time it did not stamp.
    let store = Store::open(&t.path).unwrap();
    let reopened = store
        .append(s, ExpectedVersion::Exact(3), vec![event("F", b"6")])
        .unwrap();
    assert!(
        reopened[0].recorded_at >= later[0].recorded_at,
        "{} then {} after a reopen",
        later[0].recorded_at,
        reopened[0].recorded_at
    );
}

#[test]
fn acknowledged_len_is_the_end_of_the_last_batch() {
    let t = temp_store();
    let store = open_exact(&t.path);
    assert_eq!(store.acknowledged_len(), (32, 0));
    store
        .append(
            Uuid::from_u128(1),
            ExpectedVersion::Any,
            vec![event("A", b"x")],
        )
        .unwrap();
    store
        .append(
            Uuid::from_u128(2),
            ExpectedVersion::Any,
            vec![event("A", b"y"), event("B", b"z")],
        )
        .unwrap();
    assert_eq!(
        store.acknowledged_len(),
        (fs::metadata(&t.path).unwrap().len(), 3)
    );
}

/// The backup test: 4 threads append while the backup copies. The copy opens,
/// scans clean (whole batches only), and holds a prefix of the log: every event
/// acknowledged before the backup started, each identical to the live store's.
#[test]
fn backup_while_four_threads_append_holds_a_prefix_of_whole_batches() {
    let t = temp_store();
    let store = Arc::new(Store::open(&t.path).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4u128)
        .map(|w| {
            let store = Arc::clone(&store);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let stream = Uuid::from_u128(100 + w);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let n = 1 + (i % 4) as usize;
                    let events = (0..n)
                        .map(|k| event("Tick", format!("w{w} i{i} k{k}").as_bytes()))
                        .collect();
                    store.append(stream, ExpectedVersion::Any, events).unwrap();
                    i += 1;
                }
                i
            })
        })
        .collect();
    for round in 0..3 {
        while store.global_position() < 200 * (round + 1) {
            std::thread::yield_now();
        }
        let acknowledged_before = store.global_position();
        let dest = t.dir.path().join(format!("backup-{round}.store"));
        let report = store.backup_to(&dest, &mut |_, _| {}).unwrap();
        assert!(report.events >= acknowledged_before);
        let (found, copied) = scan_all(&dest);
        assert!(found.is_clean(), "{found:?}");
        assert_eq!(found.events, report.events);
        assert_eq!(fs::metadata(&dest).unwrap().len(), report.bytes);
        let live = store.read_all(0, report.events).unwrap();
        assert_eq!(copied, live, "the copy is a prefix of the live log");
        let reopened = Store::open(&dest).unwrap();
        assert_eq!(reopened.global_position(), report.events);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        assert!(w.join().unwrap() > 0);
    }
    assert!(store
        .backup_to(&t.dir.path().join("backup-0.store"), &mut |_, _| {})
        .is_err());
}

#[test]
fn reserve_sizes_the_id_table_once_and_the_store_works_on() {
    let t = temp_store();
    let store = open_exact(&t.path);
    let s = Uuid::from_u128(3);
    let first = event("A", b"1");
    store
        .append(s, ExpectedVersion::NoStream, vec![first.clone()])
        .unwrap();
    let before = store.index_stats().id_bytes;
    store.reserve(100_000).unwrap();
    let after = store.index_stats().id_bytes;
    // Room for 100,000 more ids at once (8 bytes each, at most 90% full).
    assert!(after >= before + 100_000 * 8, "{before} -> {after}");
    // Appending up to it does not grow the table again.
    let many: Vec<ProposedEvent> = (0..50_000).map(|_| event("B", b"2")).collect();
    let ids: Vec<Uuid> = many.iter().map(|e| e.event_id).collect();
    store.append(s, ExpectedVersion::Exact(0), many).unwrap();
    assert_eq!(store.index_stats().id_bytes, after);
    // The ids recorded before and after are found; a retry is still recognised.
    assert_eq!(store.read_event(first.event_id).unwrap().global_position, 0);
    assert_eq!(
        store.read_event(ids[49_999]).unwrap().global_position,
        50_000
    );
    let retry = store.append(s, ExpectedVersion::Any, vec![first]).unwrap();
    assert_eq!(retry[0].global_position, 0);
    assert_eq!(store.global_position(), 50_001, "a retry writes nothing");
    // A hint only: reserving less than there is room for changes nothing.
    store.reserve(10).unwrap();
    assert_eq!(store.index_stats().id_bytes, after);
    drop(store);
    let reader = Store::open_with(&t.path, eventstore::OpenOptions::new().read_only()).unwrap();
    assert!(matches!(reader.reserve(10), Err(Error::ReadOnly { .. })));
}

#[test]
fn a_copied_multi_stream_batch_is_one_batch_and_a_retry_of_it_is_recognised() {
    let t = temp_store();
    let store = open_exact(&t.path);
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let ea = [event("A", b"1"), event("A", b"2")];
    let eb = [event("B", b"3")];
    let ra: Vec<_> = ea.iter().map(ProposedEvent::as_ref).collect();
    let rb: Vec<_> = eb.iter().map(ProposedEvent::as_ref).collect();
    let runs = |expected| {
        [
            eventstore::StreamAppend {
                stream_id: a,
                expected_version: expected,
                events: &ra,
            },
            eventstore::StreamAppend {
                stream_id: b,
                expected_version: expected,
                events: &rb,
            },
        ]
    };
    let batch = CopiedBatch::multi(7_000, &runs(ExpectedVersion::NoStream)).unwrap();
    assert_eq!((batch.count(), batch.recorded_at()), (3, 7_000));
    let results = store.append_copied(vec![batch]).unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0]
            .iter()
            .map(|r| (r.first_global_position, r.first_stream_version, r.count))
            .collect::<Vec<_>>(),
        [(0, 0, 2), (2, 0, 1)]
    );
    assert_eq!(store.batch_bounds(1), Some(0..3));
    assert_eq!(store.batch_bounds(3), None);
    // One batch on disk, of two streams, with the given commit time.
    drop(store);
    let mut batches = Vec::new();
    inspect::scan(&t.path, |b| {
        batches.push((b.count, b.streams.len(), b.recorded_at));
        Ok(())
    })
    .unwrap();
    assert_eq!(batches, [(3, 2, 7_000)]);
    // The same append, retried by an application, is a retry, not a duplicate.
    let store = open_exact(&t.path);
    let again = store.append_multi(&runs(ExpectedVersion::Any)).unwrap();
    assert!(again.iter().all(|r| r.deduplicated));
    assert_eq!(store.global_position(), 3);
    // A stream twice, or a run with no events, is refused when the batch is made.
    let twice = [runs(ExpectedVersion::Any)[0], runs(ExpectedVersion::Any)[0]];
    assert!(matches!(
        CopiedBatch::multi(1, &twice),
        Err(Error::InvalidArgument(_))
    ));
    let empty = [eventstore::StreamAppend {
        stream_id: a,
        expected_version: ExpectedVersion::Any,
        events: &[],
    }];
    assert!(matches!(
        CopiedBatch::multi(1, &empty),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        CopiedBatch::multi(1, &[]),
        Err(Error::InvalidArgument(_))
    ));
}

/// A wrapper that hides the file: `as_file` is `None`, so a backup reads through it.
struct Hidden(std::fs::File);

impl eventstore::store::io::StorageFile for Hidden {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<usize> {
        std::os::unix::fs::FileExt::write_at(&self.0, buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
    fn sync_all(&self) -> std::io::Result<()> {
        self.0.sync_all()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn file_len(&self) -> std::io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

/// A backup is the source's acknowledged bytes exactly, copied in the kernel from a
/// plain file and through a buffer from a wrapped one, with progress up to the end.
#[test]
fn backup_copies_the_acknowledged_bytes_in_the_kernel_or_through_a_buffer() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    for i in 0..300u32 {
        let events = (0..1 + i % 3)
            .map(|k| event("T", format!("{i}-{k}").as_bytes()))
            .collect();
        store
            .append(
                Uuid::from_u128(u128::from(i % 7)),
                ExpectedVersion::Any,
                events,
            )
            .unwrap();
    }
    let (len, events) = store.acknowledged_len();
    let wrapped = Store::open_with(
        &t.path,
        eventstore::OpenOptions::new()
            .read_only()
            .storage(|f| Box::new(Hidden(f))),
    )
    .unwrap();
    // The writer keeps space preallocated past the data: the copy stops at `len`.
    let source = fs::read(&t.path).unwrap();
    assert!(source.len() as u64 >= len);
    for (name, handle) in [("plain.store", &store), ("wrapped.store", &wrapped)] {
        let dest = t.dir.path().join(name);
        let mut last = (0, 0);
        let report = handle
            .backup_to(&dest, &mut |done, total| last = (done, total))
            .unwrap();
        assert_eq!((report.bytes, report.events), (len, events), "{name}");
        assert_eq!(fs::read(&dest).unwrap(), &source[..len as usize], "{name}");
        assert_eq!(last, (2 * len, 2 * len), "{name}");
    }
}

/// Salvage copies the intact prefix of its source (from the header to the first lost
/// range) byte for byte, salt, offsets and positions included, and appends only what
/// follows a lost range; a source whose first batch is lost gets a new store of a
/// salt of its own, every batch appended. Its progress only goes forward.
#[test]
fn salvage_copies_the_intact_prefix_byte_for_byte() {
    let t = temp_store();
    let (events, batches) = build(&t.path, 30);
    let source = fs::read(&t.path).unwrap();
    let end = batches.last().map(|&(o, l, _, _)| o + l).unwrap() as usize;
    let salvage = |dest: &Path| {
        let mut last = (0u64, 0u64);
        let report = inspect::salvage(&t.path, dest, &mut |done, total| {
            assert!(
                done >= last.0 && done <= total,
                "{done}/{total} after {last:?}"
            );
            last = (done, total);
        })
        .unwrap();
        (report, fs::read(dest).unwrap())
    };

    // Sound: the copy is the source's log, byte for byte.
    let (report, copy) = salvage(&t.path.with_extension("sound"));
    assert_eq!(report.kept_events, events.len() as u64);
    assert_eq!(report.kept_batches, 30);
    assert_eq!(copy, source[..end]);

    // Damaged in the middle: the batches before the damage are copied as they are;
    // the ones after are appended again, a position lower.
    let (offset, len, first, count) = batches[12];
    let mut bytes = source.clone();
    bytes[(offset + len / 2) as usize] ^= 0x40;
    fs::write(&t.path, &bytes).unwrap();
    let survivors: Vec<RecordedEvent> = events
        .iter()
        .filter(|e| e.global_position < first || e.global_position >= first + u64::from(count))
        .cloned()
        .collect();
    let dest = t.path.with_extension("middle");
    let (report, copy) = salvage(&dest);
    assert_eq!(copy[..offset as usize], source[..offset as usize]);
    assert_ne!(copy[offset as usize..], bytes[(offset + len) as usize..end]);
    assert_eq!(report.kept_batches, 29);
    assert_eq!(report.renumbered_from, Some(first + u64::from(count)));
    let got = all(&Store::open(&dest).unwrap());
    assert_eq!(
        got.iter().map(kept).collect::<Vec<_>>(),
        survivors.iter().map(kept).collect::<Vec<_>>()
    );
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, e)| e.global_position == i as u64));

    // The first batch lost: nothing to copy as it is; a new salt.
    let (offset, len, _, count) = batches[0];
    let mut bytes = source.clone();
    bytes[(offset + len / 2) as usize] ^= 0x40;
    fs::write(&t.path, &bytes).unwrap();
    let dest = t.path.with_extension("first");
    let (report, copy) = salvage(&dest);
    assert_ne!(
        copy[8..16],
        source[8..16],
        "a new store has a salt of its own"
    );
    assert_eq!(report.kept_events, events.len() as u64 - u64::from(count));
    assert_eq!(report.renumbered_from, Some(u64::from(count)));
    let got = all(&Store::open(&dest).unwrap());
    assert_eq!(
        got.iter().map(kept).collect::<Vec<_>>(),
        events[count as usize..]
            .iter()
            .map(kept)
            .collect::<Vec<_>>()
    );
}

/// One batch of `stream` for `append_copied_group`, expecting `expected`, stamped `at`.
fn copied(
    stream: Uuid,
    expected: ExpectedVersion,
    at: u64,
    events: &[ProposedEvent],
) -> CopiedBatch {
    let refs: Vec<_> = events.iter().map(ProposedEvent::as_ref).collect();
    CopiedBatch::new(stream, expected, at, &refs).unwrap()
}

#[test]
fn append_copied_group_commits_every_batch_whole_with_its_own_commit_time() {
    let t = temp_store();
    let store = open_exact(&t.path);
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let future = 4_000_000_000_000_000u64;
    let e1 = [event("A", b"1"), event("A", b"2")];
    let e2 = [event("B", b"3")];
    let e3 = [event("A", b"4")];
    let (m1, m2) = ([event("A", b"5")], [event("B", b"6"), event("B", b"7")]);
    let (r1, r2): (Vec<_>, Vec<_>) = (
        m1.iter().map(ProposedEvent::as_ref).collect(),
        m2.iter().map(ProposedEvent::as_ref).collect(),
    );
    let multi = CopiedBatch::multi(
        future,
        &[
            eventstore::StreamAppend {
                stream_id: a,
                expected_version: ExpectedVersion::Exact(2),
                events: &r1,
            },
            eventstore::StreamAppend {
                stream_id: b,
                expected_version: ExpectedVersion::Exact(0),
                events: &r2,
            },
        ],
    )
    .unwrap();
    let batches = vec![
        copied(a, ExpectedVersion::NoStream, 1_000, &e1),
        copied(b, ExpectedVersion::NoStream, 2_000, &e2),
        // Checked against the batch before it in the same group.
        copied(a, ExpectedVersion::Exact(1), 3_000, &e3),
        multi,
    ];
    let group = store.append_copied_group(&batches).unwrap();
    assert_eq!(
        group,
        eventstore::CopiedGroup {
            first_position: 0,
            events: 7
        }
    );
    assert_eq!(store.global_position(), 7);
    // Positions, stream versions, ids and commit times as given.
    let got = all(&store);
    let ids: Vec<Uuid> = e1
        .iter()
        .chain(&e2)
        .chain(&e3)
        .chain(&m1)
        .chain(&m2)
        .map(|e| e.event_id)
        .collect();
    assert_eq!(got.iter().map(|e| e.event_id).collect::<Vec<_>>(), ids);
    assert_eq!(
        got.iter()
            .map(|e| (e.stream_id, e.stream_version, e.recorded_at))
            .collect::<Vec<_>>(),
        [
            (a, 0, 1_000),
            (a, 1, 1_000),
            (b, 0, 2_000),
            (a, 2, 3_000),
            (a, 3, future),
            (b, 1, future),
            (b, 2, future)
        ]
    );
    assert_eq!(store.read_event(ids[3]).unwrap().global_position, 3);
    assert_eq!(store.batch_bounds(5), Some(4..7));
    // Appends after it are never stamped earlier than its latest commit time, and
    // find the versions it left.
    let later = store
        .append(b, ExpectedVersion::Exact(2), vec![event("C", b"8")])
        .unwrap();
    assert!(later[0].recorded_at >= future);
    // Nothing to append is no error.
    assert_eq!(
        store.append_copied_group(&[]).unwrap(),
        eventstore::CopiedGroup {
            first_position: 8,
            events: 0
        }
    );
    drop(store);
    // Four batches on disk as given, then the ordinary one.
    let mut on_disk = Vec::new();
    let scan = inspect::scan(&t.path, |b| {
        on_disk.push((b.count, b.streams.len(), b.recorded_at));
        Ok(())
    })
    .unwrap();
    assert!(scan.is_clean());
    assert_eq!(
        on_disk[..4],
        [(2, 1, 1_000), (1, 1, 2_000), (1, 1, 3_000), (3, 2, future)]
    );
    assert_eq!(on_disk.len(), 5);
    let store = Store::open(&t.path).unwrap();
    assert_eq!(store.global_position(), 8);
}

#[test]
fn append_copied_group_writes_nothing_when_a_batch_in_the_middle_conflicts() {
    let t = temp_store();
    let store = open_exact(&t.path);
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    store
        .append(a, ExpectedVersion::NoStream, vec![event("A", b"0")])
        .unwrap();
    let len = file_len(&t.path);
    // The second batch expects a stream that the log already has to be new.
    let group = vec![
        copied(b, ExpectedVersion::NoStream, 1, &[event("B", b"1")]),
        copied(a, ExpectedVersion::NoStream, 2, &[event("A", b"2")]),
        copied(b, ExpectedVersion::Exact(0), 3, &[event("B", b"3")]),
    ];
    match store.append_copied_group(&group) {
        Err(Error::WrongExpectedVersion {
            stream_id,
            expected,
            actual,
        }) => {
            assert_eq!(stream_id, a);
            assert_eq!(expected, ExpectedVersion::NoStream);
            assert_eq!(actual, Some(0));
        }
        other => panic!("expected a version conflict, got {other:?}"),
    }
    // The third expects a version that only an earlier batch of the group would make.
    let group = vec![
        copied(b, ExpectedVersion::NoStream, 1, &[event("B", b"1")]),
        copied(b, ExpectedVersion::Exact(1), 2, &[event("B", b"2")]),
    ];
    match store.append_copied_group(&group) {
        Err(Error::WrongExpectedVersion {
            stream_id, actual, ..
        }) => assert_eq!((stream_id, actual), (b, Some(0))),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    // Nothing of either group was written or indexed.
    assert_eq!(store.global_position(), 1);
    assert_eq!(file_len(&t.path), len);
    assert!(matches!(
        store.read_stream(b, 0, 10),
        Err(Error::StreamNotFound { .. })
    ));
    // The store goes on: the same group, mended, commits.
    let group = vec![
        copied(b, ExpectedVersion::NoStream, 1, &[event("B", b"1")]),
        copied(b, ExpectedVersion::Exact(0), 2, &[event("B", b"2")]),
    ];
    let done = store.append_copied_group(&group).unwrap();
    assert_eq!((done.first_position, done.events), (1, 2));
    drop(store);
    let scan = inspect::scan(&t.path, |_| Ok(())).unwrap();
    assert!(scan.is_clean());
    assert_eq!(scan.events, 3);
}

#[test]
fn append_copied_group_refuses_an_invalid_batch_and_a_read_only_handle() {
    let t = temp_store();
    let s = Uuid::from_u128(1);
    // An invalid batch is refused when it is made, before any group.
    assert!(matches!(
        CopiedBatch::new(s, ExpectedVersion::NoStream, 1, &[]),
        Err(Error::InvalidArgument(_))
    ));
    let empty_type = ProposedEvent {
        event_type: String::new(),
        ..event("A", b"x")
    };
    assert!(CopiedBatch::new(s, ExpectedVersion::NoStream, 1, &[empty_type.as_ref()]).is_err());
    let store = open_exact(&t.path);
    store
        .append_copied_group(&[copied(s, ExpectedVersion::NoStream, 1, &[event("A", b"1")])])
        .unwrap();
    drop(store);
    let reader = Store::open_with(&t.path, eventstore::OpenOptions::new().read_only()).unwrap();
    let batch = copied(s, ExpectedVersion::Exact(0), 2, &[event("A", b"2")]);
    assert!(matches!(
        reader.append_copied_group(&[batch]),
        Err(Error::ReadOnly { .. })
    ));
    assert_eq!(reader.global_position(), 1);
}

/// A failed group commit poisons the handle, as for every append: here the store
/// file was deleted under its writer (the writer's check before each group write).
#[test]
fn append_copied_group_to_a_deleted_store_fails_and_poisons_the_handle() {
    let t = temp_store();
    let s = Uuid::from_u128(1);
    let store = open_exact(&t.path);
    store
        .append_copied_group(&[copied(s, ExpectedVersion::NoStream, 1, &[event("A", b"1")])])
        .unwrap();
    fs::remove_file(&t.path).unwrap();
    let next = [copied(s, ExpectedVersion::Exact(0), 2, &[event("A", b"2")])];
    match store.append_copied_group(&next) {
        Err(Error::Io { context, .. }) => assert!(context.contains("deleted"), "{context}"),
        other => panic!("a group for a deleted store: {other:?}"),
    }
    assert!(matches!(
        store.append_copied_group(&next),
        Err(Error::Poisoned { .. })
    ));
    assert!(store.info().poisoned);
    assert_eq!(
        store.global_position(),
        1,
        "nothing of the group was indexed"
    );
}
