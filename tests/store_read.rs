//! Reads by stream and across the log (AC-12 to AC-15), and the batch read API.

mod common;

use common::{all, append_each, event, temp_store};
use eventstore::{Error, ExpectedVersion, Store};
use uuid::Uuid;

fn five_event_stream() -> (common::TempStore, Store, Uuid) {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    append_each(&store, &[s, s, s, s, s]);
    (t, store, s)
}

#[test]
fn ac12_read_stream_pages() {
    let (_t, store, s) = five_event_stream();
    let versions =
        |v: Vec<eventstore::RecordedEvent>| v.iter().map(|e| e.stream_version).collect::<Vec<_>>();
    assert_eq!(
        versions(store.read_stream(s, 0, 100).unwrap()),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(versions(store.read_stream(s, 2, 2).unwrap()), vec![2, 3]);
    assert!(store.read_stream(s, 10, 5).unwrap().is_empty());
    assert!(store.read_stream(s, 0, 0).unwrap().is_empty());
    assert_eq!(
        versions(store.read_stream(s, 4, u64::MAX).unwrap()),
        vec![4]
    );
    let missing = Uuid::new_v4();
    for max in [0, 1, u64::MAX] {
        match store.read_stream(missing, 0, max) {
            Err(e @ Error::StreamNotFound { .. }) => {
                assert!(e.to_string().contains(&missing.to_string()))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn ac13_read_all_pages() {
    let (_t, store, _) = five_event_stream();
    let positions =
        |v: Vec<eventstore::RecordedEvent>| v.iter().map(|e| e.global_position).collect::<Vec<_>>();
    assert_eq!(
        positions(store.read_all(0, 100).unwrap()),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(positions(store.read_all(3, 2).unwrap()), vec![3, 4]);
    assert!(store.read_all(100, 10).unwrap().is_empty());
    assert!(store.read_all(u64::MAX, u64::MAX).unwrap().is_empty());
    assert_eq!(
        positions(store.read_all(1, u64::MAX).unwrap()),
        vec![1, 2, 3, 4]
    );
    let t = temp_store();
    assert!(Store::open(&t.path)
        .unwrap()
        .read_all(0, 100)
        .unwrap()
        .is_empty());
}

#[test]
fn ac14_interleaved_streams_read_back_separately() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let written = append_each(&store, &[a, b, a, c, b]);
    assert_eq!(all(&store), written);
    let stream = |id| store.read_stream(id, 0, 100).unwrap();
    assert_eq!(stream(a), vec![written[0].clone(), written[2].clone()]);
    assert_eq!(stream(b), vec![written[1].clone(), written[4].clone()]);
    assert_eq!(stream(c), vec![written[3].clone()]);
    for (id, n) in [(a, 2), (b, 2), (c, 1)] {
        let versions: Vec<u64> = stream(id).iter().map(|e| e.stream_version).collect();
        assert_eq!(versions, (0..n).collect::<Vec<_>>());
    }
}

#[test]
fn ac15_versions_and_positions_of_a_populated_store() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    store
        .append(
            s,
            ExpectedVersion::NoStream,
            vec![event("A", b""), event("B", b""), event("C", b"")],
        )
        .unwrap();
    assert_eq!(store.stream_version(&s), Some(2));
    let others: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let t2 = temp_store();
    let store2 = Store::open(&t2.path).unwrap();
    append_each(&store2, &others);
    assert_eq!(store2.global_position(), 5);
}

#[test]
fn batch_reads_borrow_from_one_buffer_and_match_owned_reads() {
    let (_t, store, s) = five_event_stream();
    let batch = store.read_all_batch(1, 3).unwrap();
    assert_eq!(batch.len(), 3);
    let owned = store.read_all(1, 3).unwrap();
    for (view, e) in batch.iter().zip(&owned) {
        assert_eq!(view.to_recorded(), *e);
        assert_eq!(
            view.event_type_with_nul,
            format!("{}\0", e.event_type).as_bytes()
        );
    }
    let stream_batch = store.read_stream_batch(s, 3, 10).unwrap();
    assert_eq!(
        stream_batch.to_recorded(),
        store.read_stream(s, 3, 10).unwrap()
    );
    // Independent of the store once read.
    drop(store);
    assert_eq!(batch.get(0).global_position, 1);
}

#[test]
fn reads_of_large_payloads_across_many_batches_are_exact() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let streams: Vec<Uuid> = (0..7).map(|_| Uuid::new_v4()).collect();
    let mut expected = Vec::new();
    for i in 0..60usize {
        let s = streams[i % streams.len()];
        let payload: Vec<u8> = (0..(i * 997) % 60_000).map(|j| (i + j) as u8).collect();
        let batch = vec![event("Big", &payload), event("Small", &[i as u8])];
        expected.extend(store.append(s, ExpectedVersion::Any, batch).unwrap());
    }
    assert_eq!(all(&store), expected);
    for s in &streams {
        let mine: Vec<_> = expected
            .iter()
            .filter(|e| e.stream_id == *s)
            .cloned()
            .collect();
        assert_eq!(store.read_stream(*s, 0, u64::MAX).unwrap(), mine);
        assert_eq!(store.read_stream(*s, 3, 4).unwrap(), mine[3..7].to_vec());
    }
    store.close().unwrap();
    assert_eq!(all(&Store::open(&t.path).unwrap()), expected);
}

#[test]
fn readers_see_only_whole_prefixes_while_writers_append() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let s = Uuid::new_v4();
            for i in 0..150u64 {
                let batch = vec![event("X", &i.to_le_bytes()), event("Y", &i.to_le_bytes())];
                store.append(s, ExpectedVersion::Any, batch).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let seen = all(&store);
                assert_eq!(seen.len() % 2, 0, "a batch is seen whole or not at all");
                for (i, e) in seen.iter().enumerate() {
                    assert_eq!(e.global_position, i as u64);
                    assert_eq!(e.payload, ((i / 2) as u64).to_le_bytes());
                }
            }
        });
    });
    assert_eq!(store.global_position(), 300);
}
