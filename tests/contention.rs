//! Issue 4, point 7 (threads): appenders race on one stream with exact expected
//! versions. Exactly one append wins each version, versions have no gap and no
//! duplicate, before and after a reopen; readers running meanwhile only ever see a
//! prefix of the final log, growing. (The process half, `Locked` and a SIGKILLed holder,
//! is in `crash_kill9.rs`.)
//!
//! All writers start each round together (a barrier), so that their appends meet in one
//! group commit and the group's own version check is exercised. The store lives on the
//! real disk (not `/dev/shm`) so that fsyncs take time and groups form.
//!
//! Knobs: `ES_CONTENTION_THREADS` (default 8), `ES_CONTENTION_ROUNDS` (default 150 per
//! phase), `ES_CONTENTION_READERS` (default 2).

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use eventstore::{Error, ExpectedVersion, ProposedEvent, Store};
use support::*;
use uuid::Uuid;

/// One phase of the race; returns the winners as (first version, event ids).
fn race(
    store: &Store,
    stream: Uuid,
    phase: u64,
    rounds: u64,
) -> (Vec<(u64, Vec<Uuid>)>, usize, usize) {
    let threads = env_usize("ES_CONTENTION_THREADS", 8) as u64;
    let barrier = std::sync::Barrier::new(threads as usize);
    let readers = env_usize("ES_CONTENTION_READERS", 2);
    let wins = Mutex::new(Vec::new());
    let conflicts = AtomicUsize::new(0);
    let reads = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let snapshots = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..readers {
            s.spawn(|| {
                let mut last = 0usize;
                let mut mine = Vec::new();
                while !done.load(Ordering::SeqCst) {
                    let all = store.read_all(0, u64::MAX).expect("read_all");
                    assert!(all.len() >= last, "a reader saw the log shrink");
                    last = all.len();
                    let ids: Vec<Uuid> = all.iter().map(|e| e.event_id).collect();
                    mine.push(ids);
                    if let Ok(st) = store.read_stream(stream, 0, u64::MAX) {
                        for (i, e) in st.iter().enumerate() {
                            assert_eq!(e.stream_version, i as u64, "a reader saw a gap");
                        }
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
                snapshots.lock().unwrap().extend(mine);
            });
        }
        let writers: Vec<_> = (0..threads)
            .map(|t| {
                let (wins, conflicts, barrier) = (&wins, &conflicts, &barrier);
                s.spawn(move || {
                    let mut rng = Rng::new(seed() ^ (phase << 32) ^ t);
                    for attempt in 0..rounds {
                        // Everyone reads the version and appends at once.
                        barrier.wait();
                        let current = store.stream_version(&stream);
                        let expected =
                            current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                        let key = (phase << 40) | (t << 28) | attempt;
                        let events: Vec<ProposedEvent> = (0..rng.range(1, 3))
                            .map(|i| ProposedEvent {
                                event_id: event_id(key, i),
                                event_type: "Raced".into(),
                                metadata: vec![],
                                payload: key.to_le_bytes().to_vec(),
                            })
                            .collect();
                        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
                        match store.append(stream, expected, events) {
                            Ok(rec) => {
                                let want = current.map_or(0, |v| v + 1);
                                assert_eq!(rec[0].stream_version, want, "won at the wrong version");
                                wins.lock().unwrap().push((want, ids));
                            }
                            Err(Error::WrongExpectedVersion { .. }) => {
                                conflicts.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("append: {e}"),
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
    });
    let final_ids: Vec<Uuid> = store
        .read_all(0, u64::MAX)
        .unwrap()
        .iter()
        .map(|e| e.event_id)
        .collect();
    for snap in snapshots.into_inner().unwrap() {
        assert!(
            final_ids.starts_with(&snap),
            "a concurrent reader saw something that is not a prefix of the final log"
        );
    }
    (
        wins.into_inner().unwrap(),
        conflicts.into_inner(),
        reads.into_inner(),
    )
}

/// Winners must tile the stream's versions exactly: one per version, no gap, no overlap,
/// and the stream must hold exactly their events in that order.
fn check_winners(store: &Store, stream: Uuid, wins: &mut [(u64, Vec<Uuid>)]) {
    wins.sort_by_key(|w| w.0);
    let mut next = 0;
    let mut expected_ids = Vec::new();
    for (v, ids) in wins.iter() {
        assert_eq!(*v, next, "two winners for version {v}, or a gap before it");
        next += ids.len() as u64;
        expected_ids.extend(ids.iter().copied());
    }
    let events = store.read_stream(stream, 0, u64::MAX).unwrap();
    let got: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(
        got, expected_ids,
        "the stream is not exactly the winners' events"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.stream_version, i as u64);
        assert_eq!(e.global_position, i as u64);
    }
}

#[test]
fn exact_versions_have_one_winner_each_before_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contended.store");
    let stream = stream_id(7);
    let rounds = env_usize("ES_CONTENTION_ROUNDS", 150) as u64;
    let store = Store::open(&path).unwrap();
    let (mut wins, c1, r1) = race(&store, stream, 1, rounds);
    check_winners(&store, stream, &mut wins);
    store.close().unwrap();
    let store = Store::open(&path).unwrap();
    check_winners(&store, stream, &mut wins);
    let (more, c2, r2) = race(&store, stream, 2, rounds);
    wins.extend(more);
    check_winners(&store, stream, &mut wins);
    store.close().unwrap();
    let store = Store::open(&path).unwrap();
    check_winners(&store, stream, &mut wins);
    eprintln!(
        "contention: {} winning appends, {} conflicts rejected, {} concurrent reads, all prefixes; one winner per version before and after reopen",
        wins.len(),
        c1 + c2,
        r1 + r2
    );
}
