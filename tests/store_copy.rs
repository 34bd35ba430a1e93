//! The bulk-copy engine behind `import` and `salvage`: a store opened with its index
//! written at close only (`OpenOptions::index_at_close_only`), and groups of copied
//! batches appended on a second thread (`Store::append_copied_in_background`).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{all, event, open_exact, temp_store};
use eventstore::inspect;
use eventstore::store::index_file_path;
use eventstore::{CopiedBatch, Error, ExpectedVersion, OpenOptions, ProposedEventRef, Store};
use uuid::Uuid;

fn copied(stream: Uuid, expected: ExpectedVersion, at: u64, n: usize) -> CopiedBatch {
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    let events: Vec<ProposedEventRef<'_>> = ids
        .iter()
        .map(|id| ProposedEventRef {
            event_id: *id,
            event_type: "Copied",
            metadata: b"",
            payload: b"{}",
        })
        .collect();
    CopiedBatch::new(stream, expected, at, &events).unwrap()
}

#[test]
fn a_store_with_its_index_at_close_only_checkpoints_once_at_close() {
    let t = temp_store();
    let store = Store::open_with(&t.path, OpenOptions::new().index_at_close_only()).unwrap();
    // 40 MiB of log: past the 32 MiB at which a store asks for a checkpoint.
    let payload = vec![b'p'; 4000];
    let stream = Uuid::from_u128(7);
    for _ in 0..45 {
        let batch = (0..256).map(|_| event("Big", &payload)).collect();
        store.append(stream, ExpectedVersion::Any, batch).unwrap();
    }
    assert!(std::fs::metadata(&t.path).unwrap().len() > 40 << 20);
    assert_eq!(store.index_parts(), 0, "no checkpoint before close");
    assert!(!index_file_path(&t.path).exists());
    let events = all(&store);
    store.close().unwrap();
    assert!(index_file_path(&t.path).exists(), "close writes the index");
    let store = open_exact(&t.path);
    assert!(store.index_parts() >= 1, "opened from its index file");
    assert_eq!(all(&store), events);
    assert_eq!(store.read_stream(stream, 0, u64::MAX).unwrap(), events);
}

#[test]
fn a_salvaged_copy_has_an_exact_index() {
    let t = temp_store();
    let dir = t.path.parent().unwrap().to_path_buf();
    let store = open_exact(&t.path);
    let streams: Vec<Uuid> = (1..=50u128).map(Uuid::from_u128).collect();
    // 6,250 events (3 MiB of log) over 50 streams, 1 to 4 per batch, one group each:
    // more than the 1 MiB a store keeps outside its index file.
    let payload = vec![b'q'; 400];
    for i in 0..2500usize {
        let batch = (0..1 + i % 4).map(|_| event("T", &payload)).collect();
        store
            .append(streams[i * 7 % 50], ExpectedVersion::Any, batch)
            .unwrap();
    }
    let source = all(&store);
    store.close().unwrap();
    let dest = dir.join("copy.store");
    let report = inspect::salvage(&t.path, &dest, &mut |_, _| {}).unwrap();
    assert_eq!(report.kept_events, source.len() as u64);
    assert!(index_file_path(&dest).exists());

    let copy = open_exact(&dest);
    assert!(
        copy.index_parts() >= 1,
        "opened from the index written at close"
    );
    assert_eq!(all(&copy), source, "every position: same event");
    let mut by_stream: BTreeMap<Uuid, Vec<_>> = BTreeMap::new();
    for e in &source {
        by_stream.entry(e.stream_id).or_default().push(e.clone());
    }
    for (stream, events) in &by_stream {
        assert_eq!(&copy.read_stream(*stream, 0, u64::MAX).unwrap(), events);
        assert_eq!(copy.stream_version(stream), Some(events.len() as u64 - 1));
    }
    for e in source.iter().step_by(97) {
        assert_eq!(&copy.read_event(e.event_id).unwrap(), e, "by id");
    }
    // The copy's id index refuses a duplicate as the source's does.
    let dup = eventstore::ProposedEvent {
        event_id: source[123].event_id,
        ..event("T", b"{}")
    };
    assert!(matches!(
        copy.append(streams[0], ExpectedVersion::Any, vec![dup]),
        Err(Error::DuplicateEventId { .. })
    ));
}

#[test]
fn groups_appended_in_background_stop_at_the_first_failure() {
    let t = temp_store();
    let store = open_exact(&t.path);
    let a = Uuid::from_u128(1);
    let b = Uuid::from_u128(2);
    let (produced, appended) = store.append_copied_in_background(|copier| {
        assert!(copier.send(vec![copied(a, ExpectedVersion::NoStream, 10, 2)], 1));
        assert!(copier.send(vec![copied(b, ExpectedVersion::NoStream, 11, 1)], 2));
        // A stream that has events already: this group fails.
        copier.send(vec![copied(a, ExpectedVersion::NoStream, 12, 1)], 3);
        // Whatever follows is never appended; the copier says so once the group
        // before failed.
        let mut sent_after = 0;
        while copier.send(vec![copied(b, ExpectedVersion::Exact(0), 13, 1)], 4) {
            sent_after += 1;
            assert!(sent_after < 10_000, "the copier never stopped");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        "produced"
    });
    assert_eq!(produced, "produced");
    match appended {
        Err((Error::WrongExpectedVersion { stream_id, .. }, tag)) => {
            assert_eq!((stream_id, tag), (a, 3));
        }
        other => panic!("expected the third group's conflict, got {other:?}"),
    }
    let events = all(&store);
    assert_eq!(events.len(), 3, "the two groups before the failure only");
    assert_eq!(
        events.iter().map(|e| e.recorded_at).collect::<Vec<_>>(),
        [10, 10, 11],
        "in the order handed over, with their commit times"
    );
    assert_eq!(store.stream_version(&b), Some(0));
}

#[test]
fn groups_appended_in_background_all_land_in_order() {
    let t = temp_store();
    let store = open_exact(&t.path);
    let a = Uuid::from_u128(1);
    let ((), appended) = store.append_copied_in_background(|copier| {
        for g in 0..50u64 {
            let batches = (0..20u64)
                .map(|k| {
                    let v = g * 20 + k;
                    let expected = match v {
                        0 => ExpectedVersion::NoStream,
                        v => ExpectedVersion::Exact(v - 1),
                    };
                    copied(a, expected, 1000 + v, 1)
                })
                .collect();
            assert!(copier.send(batches, g));
        }
    });
    appended.unwrap();
    let events = all(&store);
    assert_eq!(events.len(), 1000);
    for (v, e) in events.iter().enumerate() {
        assert_eq!(
            (e.stream_version, e.recorded_at),
            (v as u64, 1000 + v as u64)
        );
    }
    store.close().unwrap();
    assert!(Path::new(&t.path).exists());
}
