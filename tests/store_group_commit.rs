//! Group commit under concurrency: many appenders share fsyncs, and a leader that
//! panics in the middle of a commit leaves no appender asleep.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use common::{event, hooked, temp_store, Hooks, SyncKind};
use eventstore::{Error, ExpectedVersion, OpenOptions, Store};
use uuid::Uuid;

fn seam_store(path: &std::path::Path) -> (Store, Arc<AtomicU64>, Arc<AtomicBool>) {
    let syncs = Arc::new(AtomicU64::new(0));
    let panic_next = Arc::new(AtomicBool::new(false));
    let (s, p) = (Arc::clone(&syncs), Arc::clone(&panic_next));
    // Counts `fdatasync`s; panics in one once `panic_next` is set.
    let options = OpenOptions::new().preallocate(false).storage(hooked(Hooks {
        before_sync: Some(Box::new(move |kind| {
            if kind == SyncKind::Data {
                s.fetch_add(1, Ordering::SeqCst);
                if p.swap(false, Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    panic!("injected panic in fdatasync");
                }
            }
            Ok(())
        })),
        ..Hooks::default()
    }));
    (Store::open_with(path, options).unwrap(), syncs, panic_next)
}

#[test]
fn concurrent_single_appends_are_all_committed_in_fewer_syncs() {
    let t = temp_store();
    let (store, syncs, _) = seam_store(&t.path);
    let threads = 8;
    let per_thread = 100u64;
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let stream = Uuid::new_v4();
                barrier.wait();
                for v in 0..per_thread {
                    let expected = if v == 0 {
                        ExpectedVersion::NoStream
                    } else {
                        ExpectedVersion::Exact(v - 1)
                    };
                    let r = store
                        .append(stream, expected, vec![event("E", b"x")])
                        .unwrap();
                    assert_eq!(r[0].stream_version, v);
                }
            });
        }
    });
    let total = threads as u64 * per_thread;
    assert_eq!(store.global_position(), total);
    let all = store.read_all(0, u64::MAX).unwrap();
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.global_position, i as u64);
    }
    // Every append is durable, yet groups share syncs (one sync per append at most).
    assert!(syncs.load(Ordering::SeqCst) <= total);
    drop(store);
    assert_eq!(Store::open(&t.path).unwrap().global_position(), total);
}

#[test]
fn a_leader_that_panics_leaves_no_appender_waiting() {
    let t = temp_store();
    let (store, _, panic_next) = seam_store(&t.path);
    store
        .append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("E", b"")])
        .unwrap();
    panic_next.store(true, Ordering::SeqCst);
    let outcomes: Vec<Result<Result<_, Error>, _>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    store.append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("E", b"")])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let panicked = outcomes.iter().filter(|o| o.is_err()).count();
    assert_eq!(panicked, 1, "only the leader panics");
    for o in outcomes.into_iter().flatten() {
        assert!(matches!(o, Err(Error::Poisoned { .. })), "{o:?}");
    }
    assert!(store.is_poisoned());
    assert!(matches!(
        store.append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("E", b"")]),
        Err(Error::Poisoned { .. })
    ));
    assert_eq!(store.read_all(0, u64::MAX).unwrap().len(), 1);
}
