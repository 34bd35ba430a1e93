//! The bulk-copy engine behind `import` and `salvage`: a store opened with its index
//! written at close only (`OpenOptions::index_at_close_only`).

mod common;

use std::collections::BTreeMap;

use common::{all, event, open_exact, temp_store};
use eventstore::inspect;
use eventstore::store::index_file_path;
use eventstore::{Error, ExpectedVersion, OpenOptions, Store};
use uuid::Uuid;

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
