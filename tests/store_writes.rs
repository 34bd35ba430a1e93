//! Issue 11: writes an application can trust. Durable exact idempotency, atomic
//! multi-stream appends, format 2 and the 0.1 store, lookups by id, backward reads,
//! the stream listing.

mod common;

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use common::{all, event, hooked, temp_store, Hooks, SyncKind};
use eventstore::{
    AppendResult, Error, ExpectedVersion, OpenOptions, ProposedEvent, ProposedEventRef, Store,
    StreamAppend,
};
use uuid::Uuid;

fn ev(id: u128, ty: &str) -> ProposedEvent {
    ProposedEvent {
        event_id: Uuid::from_u128(id),
        event_type: ty.to_string(),
        metadata: vec![],
        payload: format!("payload of {id}").into_bytes(),
    }
}

fn refs(events: &[ProposedEvent]) -> Vec<ProposedEventRef<'_>> {
    events.iter().map(ProposedEvent::as_ref).collect()
}

fn multi<'a>(
    parts: &'a [(Uuid, ExpectedVersion, Vec<ProposedEventRef<'a>>)],
) -> Vec<StreamAppend<'a>> {
    parts
        .iter()
        .map(|(s, e, events)| StreamAppend {
            stream_id: *s,
            expected_version: *e,
            events,
        })
        .collect()
}

fn version_byte(path: &Path) -> u8 {
    std::fs::read(path).unwrap()[6]
}

// ---------------------------------------------------------------------------------
// Idempotency

#[test]
fn a_retry_after_reopen_returns_the_original_result_and_writes_nothing() {
    let t = temp_store();
    let s = Uuid::from_u128(1);
    let batch = vec![ev(10, "A"), ev(11, "B")];
    let first = {
        let store = Store::open(&t.path).unwrap();
        store
            .append(s, ExpectedVersion::Any, vec![ev(1, "Before")])
            .unwrap();
        let r = store
            .append_refs(s, ExpectedVersion::Exact(0), &refs(&batch))
            .unwrap();
        assert!(!r.deduplicated);
        store.close().unwrap();
        r
    };
    let store = Store::open(&t.path).unwrap();
    let len = std::fs::metadata(&t.path).unwrap().len();
    let again = store
        .append_refs(s, ExpectedVersion::Exact(0), &refs(&batch))
        .unwrap();
    assert!(again.deduplicated);
    assert_eq!(
        (
            again.first_global_position,
            again.first_stream_version,
            again.count,
            again.recorded_at
        ),
        (
            first.first_global_position,
            first.first_stream_version,
            first.count,
            first.recorded_at
        )
    );
    assert_eq!(store.global_position(), 3, "nothing was written");
    store.close().unwrap();
    assert_eq!(std::fs::metadata(&t.path).unwrap().len(), len);
}

#[test]
fn a_retry_whose_expected_version_is_now_stale_is_still_the_original_success() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::from_u128(2);
    let batch = vec![ev(20, "A")];
    let first = store
        .append_refs(s, ExpectedVersion::NoStream, &refs(&batch))
        .unwrap();
    store
        .append(s, ExpectedVersion::Exact(0), vec![ev(21, "Later")])
        .unwrap();
    // NoStream no longer holds, and neither would Exact(0): the retry of a success is
    // a success.
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Exact(0)] {
        let again = store.append_refs(s, expected, &refs(&batch)).unwrap();
        assert!(again.deduplicated);
        assert_eq!(again.first_global_position, first.first_global_position);
        assert_eq!(again.recorded_at, first.recorded_at);
    }
    assert_eq!(store.global_position(), 2);
    // The owned API gives the same answer, with the original placement.
    let recorded = store.append(s, ExpectedVersion::NoStream, batch).unwrap();
    assert_eq!(recorded[0].global_position, 0);
    assert_eq!(store.global_position(), 2);
}

#[test]
fn a_partial_overlap_is_a_duplicate_naming_the_id_and_writes_nothing() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::from_u128(3);
    store
        .append(s, ExpectedVersion::Any, vec![ev(30, "A"), ev(31, "B")])
        .unwrap();
    let cases: Vec<(Uuid, Vec<ProposedEvent>, u128)> = vec![
        // One old id among new ones.
        (s, vec![ev(32, "C"), ev(31, "B")], 31),
        // A prefix of the original append.
        (s, vec![ev(30, "A")], 30),
        // The original plus one more.
        (s, vec![ev(30, "A"), ev(31, "B"), ev(33, "D")], 30),
        // The same ids in another order.
        (s, vec![ev(31, "B"), ev(30, "A")], 31),
        // The same ids on another stream.
        (Uuid::from_u128(99), vec![ev(30, "A"), ev(31, "B")], 30),
    ];
    for (stream, events, dup) in cases {
        match store.append(stream, ExpectedVersion::Any, events) {
            Err(Error::DuplicateEventId { event_id, position }) => {
                assert_eq!(event_id, Uuid::from_u128(dup));
                assert_eq!(position, (dup - 30) as u64);
                let text = Error::DuplicateEventId { event_id, position }.to_string();
                assert!(text.contains(&event_id.to_string()), "{text}");
            }
            other => panic!("expected a duplicate of {dup}, got {other:?}"),
        }
        assert_eq!(store.global_position(), 2, "nothing written");
    }
    assert!(store.read_stream(Uuid::from_u128(99), 0, 1).is_err());
    // Nil ids are never duplicates: they get fresh ones.
    let nil = ProposedEvent {
        event_id: Uuid::nil(),
        ..ev(0, "N")
    };
    store
        .append(s, ExpectedVersion::Any, vec![nil.clone(), nil])
        .unwrap();
    assert_eq!(store.global_position(), 4);
}

#[test]
fn the_same_id_twice_in_one_call_is_an_invalid_argument() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    match store.append(a, ExpectedVersion::Any, vec![ev(40, "A"), ev(40, "B")]) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains(&Uuid::from_u128(40).to_string())),
        other => panic!("{other:?}"),
    }
    let (ea, eb) = (vec![ev(41, "A")], vec![ev(41, "B")]);
    let parts = [
        (a, ExpectedVersion::Any, refs(&ea)),
        (b, ExpectedVersion::Any, refs(&eb)),
    ];
    assert!(matches!(
        store.append_multi(&multi(&parts)),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(store.global_position(), 0);
}

#[test]
fn retries_racing_the_original_from_8_threads_write_once() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let rounds = 40u128;
    for round in 0..rounds {
        let (a, b) = (
            Uuid::from_u128(round * 2 + 1),
            Uuid::from_u128(round * 2 + 2),
        );
        let ea = vec![ev(1000 + round * 4, "A"), ev(1001 + round * 4, "A")];
        let eb = vec![ev(1002 + round * 4, "B")];
        let barrier = Barrier::new(8);
        let results: Vec<Vec<AppendResult>> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (store, barrier, ea, eb) = (&store, &barrier, &ea, &eb);
                    sc.spawn(move || {
                        barrier.wait();
                        if round % 2 == 0 || i % 2 == 0 {
                            let parts = [
                                (a, ExpectedVersion::NoStream, refs(ea)),
                                (b, ExpectedVersion::NoStream, refs(eb)),
                            ];
                            // When a single append of stream a won, this is a duplicate.
                            match store.append_multi(&multi(&parts)) {
                                Ok(r) => r,
                                Err(Error::DuplicateEventId { .. }) if round % 2 == 1 => vec![],
                                Err(e) => panic!("{e}"),
                            }
                        } else {
                            // A single append with the same ids on stream a is not the
                            // same append: it is a duplicate or it is the original.
                            match store.append_refs(a, ExpectedVersion::NoStream, &refs(ea)) {
                                Ok(r) => vec![r],
                                Err(Error::DuplicateEventId { .. }) => vec![],
                                Err(e) => panic!("{e}"),
                            }
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let written: Vec<&Vec<AppendResult>> = results
            .iter()
            .filter(|r| r.iter().any(|x| !x.deduplicated))
            .collect();
        assert_eq!(
            written.len(),
            1,
            "round {round}: exactly one write: {results:?}"
        );
        let original = written[0];
        if round % 2 == 0 {
            assert!(results.iter().all(|r| r.len() == 2), "all eight succeed");
        }
        for r in results.iter().filter(|r| !r.is_empty()) {
            assert_eq!(r.len(), original.len(), "only exact retries succeed");
            {
                for (x, o) in r.iter().zip(original) {
                    assert_eq!(
                        (
                            x.first_global_position,
                            x.first_stream_version,
                            x.count,
                            x.recorded_at
                        ),
                        (
                            o.first_global_position,
                            o.first_stream_version,
                            o.count,
                            o.recorded_at
                        )
                    );
                }
            }
        }
    }
    // Every event id is in the log exactly once.
    let ids: Vec<Uuid> = all(&store).iter().map(|e| e.event_id).collect();
    let unique: HashSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len());
    assert!(ids.len() >= rounds as usize * 2);
}

// ---------------------------------------------------------------------------------
// Multi-stream appends

fn open_counting(path: &Path) -> (Store, Arc<AtomicUsize>) {
    let syncs = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&syncs);
    let store = Store::open_with(
        path,
        OpenOptions::new().preallocate(false).storage(hooked(Hooks {
            before_sync: Some(Box::new(move |_| {
                s.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })),
            ..Hooks::default()
        })),
    )
    .unwrap();
    (store, syncs)
}

#[test]
fn a_multi_append_is_contiguous_per_stream_and_costs_one_sync() {
    let t = temp_store();
    let (store, syncs) = open_counting(&t.path);
    let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
    store
        .append(a, ExpectedVersion::NoStream, vec![ev(1, "A0")])
        .unwrap();
    let before = syncs.load(Ordering::SeqCst);
    let (ea, eb, ec) = (
        vec![ev(2, "A1"), ev(3, "A2")],
        vec![ev(4, "B0")],
        vec![ev(5, "C0"), ev(6, "C1"), ev(7, "C2")],
    );
    let parts = [
        (b, ExpectedVersion::NoStream, refs(&eb)),
        (a, ExpectedVersion::Exact(0), refs(&ea)),
        (c, ExpectedVersion::Any, refs(&ec)),
    ];
    let results = store.append_multi(&multi(&parts)).unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst) - before, 1, "one sync");
    let placed: Vec<(u64, u64, u64, bool)> = results
        .iter()
        .map(|r| {
            (
                r.first_global_position,
                r.first_stream_version,
                r.count,
                r.deduplicated,
            )
        })
        .collect();
    assert_eq!(
        placed,
        vec![(1, 0, 1, false), (2, 1, 2, false), (4, 0, 3, false)]
    );
    assert!(results
        .iter()
        .all(|r| r.recorded_at == results[0].recorded_at));
    let log: Vec<(u64, Uuid, u64)> = all(&store)
        .iter()
        .map(|e| (e.global_position, e.stream_id, e.stream_version))
        .collect();
    assert_eq!(
        log,
        vec![
            (0, a, 0),
            (1, b, 0),
            (2, a, 1),
            (3, a, 2),
            (4, c, 0),
            (5, c, 1),
            (6, c, 2)
        ]
    );
    // Its retry, after reopen too.
    let again = store.append_multi(&multi(&parts)).unwrap();
    assert!(again.iter().all(|r| r.deduplicated));
    assert_eq!(
        again
            .iter()
            .map(|r| r.first_global_position)
            .collect::<Vec<_>>(),
        vec![1, 2, 4]
    );
    store.close().unwrap();
    let store = Store::open(&t.path).unwrap();
    let again = store.append_multi(&multi(&parts)).unwrap();
    assert!(again.iter().all(|r| r.deduplicated));
    assert_eq!(again[2].first_stream_version, 0);
    // Its parts alone are not the same append.
    assert!(matches!(
        store.append_refs(b, ExpectedVersion::Any, &refs(&eb)),
        Err(Error::DuplicateEventId { .. })
    ));
    assert_eq!(store.global_position(), 7);
}

#[test]
fn a_conflict_on_the_second_stream_writes_nothing_and_names_it() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    store
        .append(b, ExpectedVersion::NoStream, vec![ev(1, "B0")])
        .unwrap();
    let (ea, eb) = (vec![ev(2, "A0")], vec![ev(3, "B1")]);
    let parts = [
        (a, ExpectedVersion::NoStream, refs(&ea)),
        (b, ExpectedVersion::Exact(5), refs(&eb)),
    ];
    match store.append_multi(&multi(&parts)) {
        Err(Error::WrongExpectedVersion {
            stream_id,
            expected,
            actual,
        }) => {
            assert_eq!(stream_id, b);
            assert_eq!(expected, ExpectedVersion::Exact(5));
            assert_eq!(actual, Some(0));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.global_position(), 1);
    assert_eq!(
        store.stream_version(&a),
        None,
        "the first stream was not written"
    );
    // The same ids are free to use: nothing of the failed append was recorded.
    let parts = [
        (a, ExpectedVersion::NoStream, refs(&ea)),
        (b, ExpectedVersion::Exact(0), refs(&eb)),
    ];
    let r = store.append_multi(&multi(&parts)).unwrap();
    assert!(!r[0].deduplicated && !r[1].deduplicated);
}

#[test]
fn multi_append_arguments_are_checked() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let a = Uuid::from_u128(1);
    let e = vec![ev(1, "A")];
    let e2 = vec![ev(2, "A")];
    assert!(matches!(
        store.append_multi(&[]),
        Err(Error::InvalidArgument(_))
    ));
    let twice = [
        (a, ExpectedVersion::Any, refs(&e)),
        (a, ExpectedVersion::Any, refs(&e2)),
    ];
    match store.append_multi(&multi(&twice)) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("twice"), "{m}"),
        other => panic!("{other:?}"),
    }
    let empty = [
        (a, ExpectedVersion::Any, refs(&e)),
        (Uuid::from_u128(2), ExpectedVersion::Any, vec![]),
    ];
    assert!(matches!(
        store.append_multi(&multi(&empty)),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(store.global_position(), 0);
}

#[test]
fn a_one_entry_multi_append_is_the_single_append() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let a = Uuid::from_u128(1);
    let e = vec![ev(1, "A"), ev(2, "B")];
    let single = store
        .append_refs(a, ExpectedVersion::NoStream, &refs(&e))
        .unwrap();
    let parts = [(a, ExpectedVersion::NoStream, refs(&e))];
    let r = store.append_multi(&multi(&parts)).unwrap();
    assert_eq!(r.len(), 1);
    assert!(r[0].deduplicated);
    assert_eq!(r[0].first_global_position, single.first_global_position);
    assert_eq!(r[0].recorded_at, single.recorded_at);
    assert_eq!(store.global_position(), 2);
}

// ---------------------------------------------------------------------------------
// Format 2 and the 0.1 store

/// The header check of 0.1 (`codec::decode_header` and `decode_file_header` at commit
/// b906609), copied: the only version it reads is 1.
fn decode_file_header_v01(bytes: &[u8]) -> Result<u64, &'static str> {
    if bytes.len() < 8 || bytes[..6] != *b"EVSTOR" {
        return Err("InvalidHeader");
    }
    let version = u16::from_le_bytes([bytes[6], bytes[7]]);
    if version != 1 {
        return Err("InvalidHeader");
    }
    let crc = u32::from_le_bytes(bytes[28..32].try_into().unwrap());
    if bytes.len() < 32 || crc32fast::hash(&bytes[..28]) != crc {
        return Err("InvalidHeader");
    }
    Ok(u64::from_le_bytes(bytes[8..16].try_into().unwrap()))
}

/// What `tests/fixtures/v0.1.store` holds: written by 0.1 (commit b906609) with this
/// loop (its generator is in the fixture's commit message).
/// (stream id, event id, type, metadata, payload) of one fixture event.
type FixtureEvent = (Uuid, Uuid, String, Vec<u8>, Vec<u8>);

fn fixture_events() -> Vec<FixtureEvent> {
    let streams = [
        Uuid::from_u128(0xA1),
        Uuid::from_u128(0xB2),
        Uuid::from_u128(0xC3),
    ];
    let mut k = 0u128;
    let mut out = Vec::new();
    for round in 0..6u64 {
        for (s, stream) in streams.iter().enumerate() {
            if (round as usize + s) % 2 == 1 {
                continue;
            }
            let n = 1 + ((round as usize + s) % 3);
            for i in 0..n {
                k += 1;
                out.push((
                    *stream,
                    Uuid::from_u128(0xE000 + k),
                    format!("Type{s}"),
                    if i % 2 == 0 {
                        vec![]
                    } else {
                        format!("m{k}").into_bytes()
                    },
                    format!("payload {k} of stream {s} round {round}").into_bytes(),
                ));
            }
        }
    }
    out
}

fn fixture_copy(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("v01.store");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v0.1.store");
    std::fs::copy(src, &path).unwrap();
    path
}

#[test]
fn a_store_written_by_0_1_opens_reads_and_stays_version_1_until_a_multi_append() {
    let t = temp_store();
    let path = fixture_copy(t.dir.path());
    let original = std::fs::read(&path).unwrap();
    assert!(
        decode_file_header_v01(&original).is_ok(),
        "the fixture is a 0.1 file"
    );
    let want = fixture_events();
    let store = Store::open(&path).unwrap();
    let got = all(&store);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(
            (
                &g.stream_id,
                &g.event_id,
                &g.event_type,
                &g.metadata,
                &g.payload
            ),
            (&w.0, &w.1, &w.2, &w.3, &w.4)
        );
    }
    // Its ids are indexed: lookups and retries work on 0.1 data.
    let e = store.read_event(want[3].1).unwrap();
    assert_eq!(e.global_position, 3);
    let first = &got[0];
    let retry = store
        .append(
            first.stream_id,
            ExpectedVersion::NoStream,
            vec![ProposedEvent {
                event_id: first.event_id,
                event_type: first.event_type.clone(),
                metadata: first.metadata.clone(),
                payload: first.payload.clone(),
            }],
        )
        .unwrap();
    assert_eq!(retry[0].global_position, 0);
    // A single-stream append keeps it a version-1 file, readable by 0.1.
    store
        .append(
            Uuid::from_u128(0xA1),
            ExpectedVersion::Any,
            vec![ev(1, "New")],
        )
        .unwrap();
    store.close().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes[..32], original[..32], "header untouched");
    assert!(decode_file_header_v01(&bytes).is_ok());
    // The first multi-stream append upgrades it to version 2, which 0.1 refuses.
    let store = Store::open(&path).unwrap();
    let (ea, eb) = (vec![ev(2, "X")], vec![ev(3, "Y")]);
    let parts = [
        (Uuid::from_u128(0xB2), ExpectedVersion::Any, refs(&ea)),
        (Uuid::from_u128(0xD4), ExpectedVersion::NoStream, refs(&eb)),
    ];
    store.append_multi(&multi(&parts)).unwrap();
    store.close().unwrap();
    assert_eq!(version_byte(&path), 2);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(decode_file_header_v01(&bytes), Err("InvalidHeader"));
    assert_eq!(bytes[8..16], original[8..16], "same salt");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.global_position(), want.len() as u64 + 3);
    assert_eq!(store.read_event(want[0].1).unwrap().global_position, 0);
    assert_eq!(store.stream_version(&Uuid::from_u128(0xD4)), Some(0));
}

#[test]
fn new_stores_are_version_2_and_0_1_refuses_them() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    store
        .append(Uuid::from_u128(1), ExpectedVersion::Any, vec![ev(1, "A")])
        .unwrap();
    store.close().unwrap();
    assert_eq!(version_byte(&t.path), 2);
    let bytes = std::fs::read(&t.path).unwrap();
    assert_eq!(decode_file_header_v01(&bytes), Err("InvalidHeader"));
    // The same bytes with version 1 (and its CRC) would be read by 0.1: the copy of
    // its rule is faithful, and only the version refuses.
    let mut as_v1 = bytes.clone();
    as_v1[..32].copy_from_slice(&eventstore::codec::encode_file_header_version(
        u64::from_le_bytes(bytes[8..16].try_into().unwrap()),
        1,
    ));
    assert!(decode_file_header_v01(&as_v1).is_ok());
}

/// A store with one single-stream batch and one multi-stream append; its bytes.
fn store_with_a_multi_append(path: &Path) -> Vec<u8> {
    let store = Store::open(path).unwrap();
    store
        .append(Uuid::from_u128(1), ExpectedVersion::Any, vec![ev(1, "A")])
        .unwrap();
    let (ea, eb) = (vec![ev(2, "X")], vec![ev(3, "Y")]);
    let parts = [
        (Uuid::from_u128(1), ExpectedVersion::Any, refs(&ea)),
        (Uuid::from_u128(2), ExpectedVersion::Any, refs(&eb)),
    ];
    store.append_multi(&multi(&parts)).unwrap();
    store.close().unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn a_valid_multi_stream_batch_behind_a_version_1_header_fails_the_open() {
    // A version-1 header in front of a multi-stream batch cannot come from a crash
    // (the header is synced as version 2 first): valid data is not cut off, the open
    // fails and the file is left unchanged.
    let t = temp_store();
    let mut bytes = store_with_a_multi_append(&t.path);
    let salt = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    bytes[..32].copy_from_slice(&eventstore::codec::encode_file_header_version(salt, 1));
    std::fs::write(&t.path, &bytes).unwrap();
    match Store::open(&t.path) {
        Err(Error::CorruptRecord {
            position, detail, ..
        }) => {
            assert_eq!(position, 1);
            assert!(detail.contains("version 1"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&t.path).unwrap(), bytes);
}

#[test]
fn a_header_torn_during_the_upgrade_is_repaired_as_version_1() {
    let t = temp_store();
    let path = fixture_copy(t.dir.path());
    let original = std::fs::read(&path).unwrap();
    let salt = u64::from_le_bytes(original[8..16].try_into().unwrap());
    let new = eventstore::codec::encode_file_header_version(salt, 2);
    for torn_at in [7, 20, 29, 30, 31] {
        let mut bytes = original.clone();
        bytes[..torn_at].copy_from_slice(&new[..torn_at]);
        std::fs::write(&path, &bytes).unwrap();
        let store = Store::open(&path).unwrap_or_else(|e| panic!("torn at {torn_at}: {e}"));
        assert_eq!(store.global_position(), fixture_events().len() as u64);
        store.close().unwrap();
        let repaired = std::fs::read(&path).unwrap();
        assert_eq!(
            repaired[..32],
            original[..32],
            "torn at {torn_at}: repaired as v1"
        );
        assert!(decode_file_header_v01(&repaired).is_ok());
    }
}

#[test]
fn a_damaged_version_byte_in_front_of_multi_stream_batches_is_refused() {
    // Version 2 with its byte 6 turned into 1 looks like a torn upgrade, but the file
    // holds a multi-stream batch, so its header was synced as version 2: damage.
    let t = temp_store();
    let mut bytes = store_with_a_multi_append(&t.path);
    bytes[6] = 1;
    std::fs::write(&t.path, &bytes).unwrap();
    assert!(matches!(
        Store::open(&t.path),
        Err(Error::InvalidHeader { .. })
    ));
    assert_eq!(std::fs::read(&t.path).unwrap(), bytes, "left unchanged");
}

// ---------------------------------------------------------------------------------
// Lookups

#[test]
fn read_event_finds_present_ids_and_not_absent_or_nil_ones() {
    let t = temp_store();
    let ids: Vec<Uuid> = {
        let store = Store::open(&t.path).unwrap();
        let mut ids = Vec::new();
        // Enough events to grow the id table many times over (it starts at 16 slots).
        for b in 0..60u128 {
            let events: Vec<ProposedEvent> = (0..50).map(|i| ev(5000 + b * 50 + i, "E")).collect();
            ids.extend(events.iter().map(|e| e.event_id));
            store
                .append(Uuid::from_u128(b % 7), ExpectedVersion::Any, events)
                .unwrap();
        }
        for (p, id) in ids.iter().enumerate() {
            assert_eq!(store.read_event(*id).unwrap().global_position, p as u64);
        }
        // Retries of early appends are still recognised after the growth.
        let first: Vec<ProposedEvent> = (0..50).map(|i| ev(5000 + i, "E")).collect();
        let r = store
            .append(Uuid::from_u128(0), ExpectedVersion::NoStream, first)
            .unwrap();
        assert_eq!(r[0].global_position, 0);
        // The delta's id table (9-12 B/event) plus each id's 8-byte hash, kept for
        // growing the table without reading the log back (issue 14).
        let stats = store.index_stats();
        assert!(
            stats.id_bytes as f64 / stats.events as f64 <= 20.0,
            "{stats:?}"
        );
        store.close().unwrap();
        ids
    };
    let store = Store::open(&t.path).unwrap();
    for (p, id) in ids.iter().enumerate() {
        let e = store.read_event(*id).unwrap();
        assert_eq!((e.global_position, e.event_id), (p as u64, *id));
    }
    for absent in [Uuid::from_u128(1), Uuid::new_v4(), Uuid::nil()] {
        match store.read_event(absent) {
            Err(Error::EventNotFound { event_id }) => assert_eq!(event_id, absent),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn backward_reads_at_both_ends_and_past_them() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    assert!(store.read_all_backward(u64::MAX, 10).unwrap().is_empty());
    assert!(matches!(
        store.read_stream_backward(a, u64::MAX, 10),
        Err(Error::StreamNotFound { .. })
    ));
    for i in 0..10u128 {
        let s = if i % 3 == 0 { b } else { a };
        store
            .append(s, ExpectedVersion::Any, vec![ev(100 + i, "E")])
            .unwrap();
    }
    let positions = |v: Vec<eventstore::RecordedEvent>| -> Vec<u64> {
        v.iter().map(|e| e.global_position).collect()
    };
    assert_eq!(
        positions(store.read_all_backward(u64::MAX, u64::MAX).unwrap()),
        (0..10).rev().collect::<Vec<_>>()
    );
    assert_eq!(
        positions(store.read_all_backward(9, 3).unwrap()),
        vec![9, 8, 7]
    );
    assert_eq!(
        positions(store.read_all_backward(500, 2).unwrap()),
        vec![9, 8]
    );
    assert_eq!(
        positions(store.read_all_backward(1, 5).unwrap()),
        vec![1, 0]
    );
    assert_eq!(positions(store.read_all_backward(0, 5).unwrap()), vec![0]);
    assert!(store.read_all_backward(5, 0).unwrap().is_empty());
    // Stream a holds positions 1, 2, 4, 5, 7, 8 as versions 0..=5.
    let versions = |v: Vec<eventstore::RecordedEvent>| -> Vec<(u64, u64)> {
        v.iter()
            .map(|e| (e.stream_version, e.global_position))
            .collect()
    };
    assert_eq!(
        versions(store.read_stream_backward(a, u64::MAX, 3).unwrap()),
        vec![(5, 8), (4, 7), (3, 5)]
    );
    assert_eq!(
        versions(store.read_stream_backward(a, 1, 10).unwrap()),
        vec![(1, 2), (0, 1)]
    );
    assert_eq!(
        versions(store.read_stream_backward(a, 0, 10).unwrap()),
        vec![(0, 1)]
    );
    assert_eq!(
        versions(store.read_stream_backward(a, 6, 1).unwrap()),
        vec![(5, 8)]
    );
    assert!(store.read_stream_backward(a, 3, 0).unwrap().is_empty());
    assert_eq!(
        versions(store.read_stream_backward(b, u64::MAX, u64::MAX).unwrap()),
        vec![(3, 9), (2, 6), (1, 3), (0, 0)]
    );
    // Backward equals forward reversed.
    let mut fwd = store.read_stream(a, 0, u64::MAX).unwrap();
    fwd.reverse();
    assert_eq!(
        store.read_stream_backward(a, u64::MAX, u64::MAX).unwrap(),
        fwd
    );
}

#[test]
fn listing_100000_streams_in_pages_gives_creation_order() {
    let t = temp_store();
    let n = 100_000u128;
    let per_call = 2_000u128;
    // A stream id order unrelated to creation order.
    let stream = |i: u128| Uuid::from_u128((i * 0x9e37_79b9_7f4a_7c15) ^ 0x5555);
    let payload: Vec<ProposedEvent> = (0..n).map(|i| ev(1_000_000 + i, "Created")).collect();
    {
        let store = Store::open(&t.path).unwrap();
        for c in 0..n / per_call {
            let parts: Vec<(Uuid, ExpectedVersion, Vec<ProposedEventRef<'_>>)> = (c * per_call
                ..(c + 1) * per_call)
                .map(|i| {
                    (
                        stream(i),
                        ExpectedVersion::NoStream,
                        vec![payload[i as usize].as_ref()],
                    )
                })
                .collect();
            store.append_multi(&multi(&parts)).unwrap();
        }
        // A second event on stream 7 does not move it in the listing.
        store
            .append(stream(7), ExpectedVersion::Exact(0), vec![ev(9, "Again")])
            .unwrap();
        store.close().unwrap();
    }
    let store = Store::open(&t.path).unwrap();
    assert_eq!(store.stream_count(), n as u64);
    let mut seen = 0u64;
    let page = 7_777;
    loop {
        let listed = store.list_streams(seen, page);
        for (k, info) in listed.iter().enumerate() {
            let i = seen + k as u64;
            assert_eq!(info.stream_id, stream(u128::from(i)));
            if i == 7 {
                assert_eq!(
                    (
                        info.last_version,
                        info.first_global_position,
                        info.last_global_position
                    ),
                    (1, 7, n as u64)
                );
            } else {
                assert_eq!(
                    (
                        info.last_version,
                        info.first_global_position,
                        info.last_global_position
                    ),
                    (0, i, i)
                );
            }
        }
        seen += listed.len() as u64;
        if (listed.len() as u64) < page {
            break;
        }
    }
    assert_eq!(seen, n as u64);
    assert!(store.list_streams(n as u64, 10).is_empty());
    assert!(store.list_streams(0, 0).is_empty());
    assert!(store.list_streams(u64::MAX, u64::MAX).is_empty());
}

#[test]
fn events_of_a_store_with_many_ids_are_all_indexed_at_open() {
    // Sized at open: a reopened store answers for every id without growing.
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::from_u128(1);
    let events: Vec<ProposedEvent> = (0..3000).map(|i| ev(70_000 + i, "E")).collect();
    store.append(s, ExpectedVersion::Any, events).unwrap();
    store.close().unwrap();
    let store = Store::open(&t.path).unwrap();
    let stats = store.index_stats();
    // A small store (< 1 MiB) keeps no index file: its ids are in the delta, a table
    // sized once at open (9-12 B/event) and each id's hash (8 B).
    let per_event = stats.id_bytes as f64 / 3000.0;
    assert!((17.0..=20.0).contains(&per_event), "{per_event} B/event");
    assert_eq!(
        store
            .read_event(Uuid::from_u128(72_999))
            .unwrap()
            .global_position,
        2999
    );
    match store.append(
        s,
        ExpectedVersion::Any,
        vec![event("X", b""), ev(70_001, "E")],
    ) {
        Err(Error::DuplicateEventId { position, .. }) => assert_eq!(position, 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn growing_the_id_index_reads_nothing_from_the_log() {
    // A new store's id table has 16 slots: the 15th id makes it grow. Before issue 14
    // that read the ids of the 14 events back from the file (and a failed read failed
    // the append); now the delta keeps the ids' hashes and rehashes them in memory.
    let t = temp_store();
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = Arc::clone(&fail);
    let store = Store::open_with(
        &t.path,
        OpenOptions::new().storage(hooked(Hooks {
            before_read: Some(Box::new(move |()| {
                if f.load(Ordering::SeqCst) {
                    return Err(io::Error::from_raw_os_error(libc::EIO));
                }
                Ok(())
            })),
            ..Hooks::default()
        })),
    )
    .unwrap();
    let s = Uuid::from_u128(1);
    for i in 0..14u128 {
        store
            .append(s, ExpectedVersion::Any, vec![ev(600 + i, "E")])
            .unwrap();
    }
    fail.store(true, Ordering::SeqCst);
    let r = store
        .append(s, ExpectedVersion::Any, vec![ev(700, "E")])
        .unwrap();
    assert_eq!(r[0].global_position, 14);
    assert!(!store.is_poisoned());
    fail.store(false, Ordering::SeqCst);
    for i in 0..14u128 {
        assert_eq!(
            store
                .read_event(Uuid::from_u128(600 + i))
                .unwrap()
                .global_position,
            i as u64
        );
    }
    store.close().unwrap();
    assert_eq!(Store::open(&t.path).unwrap().global_position(), 15);
}

#[test]
fn requests_of_one_group_see_each_others_ids() {
    // The first append's sync is slow; three appends queue behind it and form the next
    // group in this order: Y, an exact retry of Y, and Z reusing one id of Y.
    let t = temp_store();
    let delay = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let d = Arc::clone(&delay);
    let store = Store::open_with(
        &t.path,
        OpenOptions::new().preallocate(false).storage(hooked(Hooks {
            // Every `fdatasync` takes `d` ms while it is non-zero.
            before_sync: Some(Box::new(move |kind| {
                if kind == SyncKind::Data {
                    let ms = d.load(Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
                Ok(())
            })),
            ..Hooks::default()
        })),
    )
    .unwrap();
    let (x, y, z) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
    let ey = vec![ev(801, "Y"), ev(802, "Y")];
    let ez = vec![ev(803, "Z"), ev(802, "Z")];
    delay.store(400, Ordering::SeqCst);
    let results = std::thread::scope(|sc| {
        let first = sc.spawn(|| store.append(x, ExpectedVersion::Any, vec![ev(800, "X")]));
        std::thread::sleep(std::time::Duration::from_millis(100));
        let y1 = sc.spawn(|| store.append_refs(y, ExpectedVersion::NoStream, &refs(&ey)));
        std::thread::sleep(std::time::Duration::from_millis(60));
        let y2 = sc.spawn(|| store.append_refs(y, ExpectedVersion::NoStream, &refs(&ey)));
        std::thread::sleep(std::time::Duration::from_millis(60));
        let z1 = sc.spawn(|| store.append_refs(z, ExpectedVersion::Any, &refs(&ez)));
        std::thread::sleep(std::time::Duration::from_millis(60));
        delay.store(0, Ordering::SeqCst);
        (
            first.join().unwrap(),
            y1.join().unwrap(),
            y2.join().unwrap(),
            z1.join().unwrap(),
        )
    });
    let (first, y1, y2, z1) = results;
    assert_eq!(first.unwrap()[0].global_position, 0);
    let (mut y1, mut y2) = (y1.unwrap(), y2.unwrap());
    // Queued 60 ms apart, the first is the original; under a very loaded machine
    // the threads may queue the other way round, which changes nothing else.
    if y1.deduplicated {
        std::mem::swap(&mut y1, &mut y2);
    }
    assert!(!y1.deduplicated && y2.deduplicated);
    assert_eq!(
        (y2.first_global_position, y2.count, y2.recorded_at),
        (y1.first_global_position, y1.count, y1.recorded_at)
    );
    assert_eq!(y1.first_global_position, 1);
    match z1 {
        Err(Error::DuplicateEventId { event_id, position }) => {
            assert_eq!(event_id, Uuid::from_u128(802));
            assert_eq!(position, 2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.global_position(), 3);
}

#[test]
fn store_info_reports_the_format_version_before_and_after_the_upgrade() {
    let t = temp_store();
    let path = fixture_copy(t.dir.path());
    let store = Store::open(&path).unwrap();
    assert_eq!(store.info().format_version, 1);
    let (ea, eb) = (vec![ev(2, "X")], vec![ev(3, "Y")]);
    let parts = [
        (Uuid::from_u128(0xB2), ExpectedVersion::Any, refs(&ea)),
        (Uuid::from_u128(0xD4), ExpectedVersion::NoStream, refs(&eb)),
    ];
    store.append_multi(&multi(&parts)).unwrap();
    assert_eq!(store.info().format_version, 2);
    let t2 = temp_store();
    assert_eq!(Store::open(&t2.path).unwrap().info().format_version, 2);
}

#[test]
fn inspect_and_salvage_keep_the_streams_of_a_multi_append() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    store
        .append(a, ExpectedVersion::Any, vec![ev(1, "A0")])
        .unwrap();
    let (ea, eb) = (vec![ev(2, "A1"), ev(3, "A2")], vec![ev(4, "B0")]);
    let parts = [
        (b, ExpectedVersion::NoStream, refs(&eb)),
        (a, ExpectedVersion::Exact(0), refs(&ea)),
    ];
    store.append_multi(&multi(&parts)).unwrap();
    store
        .append(b, ExpectedVersion::Exact(0), vec![ev(5, "B1")])
        .unwrap();
    let original = all(&store);
    store.close().unwrap();
    let mut seen = Vec::new();
    let found = eventstore::inspect::scan(&t.path, |batch| {
        seen.push(batch.streams.to_vec());
        Ok(())
    })
    .unwrap();
    assert!(found.is_clean(), "{:?}", found.ranges);
    assert_eq!(seen[1], vec![(b, 0, 1), (a, 1, 2)]);
    let dest = t.dir.path().join("salvaged.store");
    eventstore::inspect::salvage(&t.path, &dest, &mut |_, _| {}).unwrap();
    let copy = Store::open(&dest).unwrap();
    let key = |e: &eventstore::RecordedEvent| {
        (
            e.global_position,
            e.stream_id,
            e.stream_version,
            e.event_id,
            e.recorded_at,
        )
    };
    assert_eq!(
        all(&copy).iter().map(key).collect::<Vec<_>>(),
        original.iter().map(key).collect::<Vec<_>>()
    );
}

#[test]
fn copied_batches_keep_a_duplicated_id_and_salvage_copies_them() {
    // A store written by 0.1 may hold an id twice; the tools that copy a log keep it
    // (append_copied does not check ids), and ordinary appends still refuse it.
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::from_u128(1);
    let copied = |recorded_at| {
        eventstore::CopiedBatch::new(
            s,
            ExpectedVersion::Any,
            recorded_at,
            &[ev(77, "Same").as_ref()],
        )
        .unwrap()
    };
    store
        .append_copied(vec![copied(1_000), copied(2_000)])
        .unwrap();
    assert_eq!(store.global_position(), 2);
    assert_eq!(
        store
            .read_event(Uuid::from_u128(77))
            .unwrap()
            .global_position,
        0
    );
    assert!(matches!(
        store.append(
            Uuid::from_u128(2),
            ExpectedVersion::Any,
            vec![ev(77, "Same")]
        ),
        Err(Error::DuplicateEventId { .. })
    ));
    store.close().unwrap();
    let dest = t.dir.path().join("salvaged.store");
    eventstore::inspect::salvage(&t.path, &dest, &mut |_, _| {}).unwrap();
    assert_eq!(Store::open(&dest).unwrap().global_position(), 2);
}
