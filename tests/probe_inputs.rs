//! An outside check of what appends accept and how retries meet failures.
//!
//! - An event type with a NUL byte goes through every Rust append path and is refused
//!   with `InvalidArgument` naming the event (index and id); nothing is written.
//! - A group commit that fails (an injected write or `fdatasync` error through the
//!   `StorageFile` seam), then the same append retried on a fresh handle: the store
//!   holds exactly one copy, and the retry's answer places it where it is.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{hooked, temp_store, Hooks, SyncKind};
use eventstore::{
    CopiedBatch, Error, ExpectedVersion, OpenOptions, ProposedEvent, Store, StreamAppend,
};
use uuid::Uuid;

fn ev(id: u128, event_type: &str) -> ProposedEvent {
    ProposedEvent {
        event_id: Uuid::from_u128(id),
        event_type: event_type.into(),
        metadata: b"m".to_vec(),
        payload: b"p".to_vec(),
    }
}

fn refused_naming(r: Result<impl std::fmt::Debug, Error>, names: &[&str]) {
    match r {
        Err(Error::InvalidArgument(m)) => {
            for n in names {
                assert!(m.contains(n), "{m:?} should name {n:?}");
            }
        }
        other => panic!("expected InvalidArgument naming {names:?}, got {other:?}"),
    }
}

#[test]
fn a_nul_in_an_event_type_is_refused_by_every_append_naming_the_event() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::from_u128(1);
    store
        .append(s, ExpectedVersion::NoStream, vec![ev(1, "Ok")])
        .unwrap();
    let len = std::fs::metadata(&t.path).unwrap().len();
    let bad = Uuid::from_u128(0xbad).to_string();
    refused_naming(
        store.append(
            s,
            ExpectedVersion::Any,
            vec![ev(2, "Fine"), ev(0xbad, "A\0B")],
        ),
        &["events[1]", &bad, "NUL"],
    );
    let good = ev(3, "Fine");
    let nul = ev(0xbad, "\0");
    refused_naming(
        store.append_refs(s, ExpectedVersion::Any, &[nul.as_ref()]),
        &["events[0]", &bad, "NUL"],
    );
    let (g, n) = ([good.as_ref()], [good.as_ref(), nul.as_ref()]);
    refused_naming(
        store.append_multi(&[
            StreamAppend {
                stream_id: Uuid::from_u128(2),
                expected_version: ExpectedVersion::Any,
                events: &g,
            },
            StreamAppend {
                stream_id: Uuid::from_u128(3),
                expected_version: ExpectedVersion::Any,
                events: &n[..],
            },
        ]),
        &["appends[1].events[1]", &bad, "NUL"],
    );
    // A copied batch is checked when it is made, before any store sees it.
    let (fine, bad_copy) = (ev(5, "Fine"), ev(0xbad, "X\0"));
    match CopiedBatch::new(
        Uuid::from_u128(4),
        ExpectedVersion::Any,
        1,
        &[fine.as_ref(), bad_copy.as_ref()],
    ) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("NUL"), "{m}"),
        other => panic!("CopiedBatch::new: expected InvalidArgument, got {other:?}"),
    }
    // Nothing written by any of them, and the store goes on.
    assert_eq!(store.global_position(), 1);
    assert!(!store.is_poisoned());
    assert_eq!(std::fs::metadata(&t.path).unwrap().len(), len);
    store
        .append(s, ExpectedVersion::Exact(0), vec![ev(0xbad, "Fixed")])
        .unwrap();
    assert_eq!(store.global_position(), 2);
}

/// Opens `path` with a seam that fails the next write or `fdatasync` once `armed`.
fn open_failing(path: &std::path::Path, armed: Arc<AtomicBool>, at_sync: bool) -> Store {
    let fail = move || {
        if armed.swap(false, Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    };
    let hooks = if at_sync {
        Hooks {
            before_sync: Some(Box::new(
                move |k| {
                    if k == SyncKind::Data {
                        fail()
                    } else {
                        Ok(())
                    }
                },
            )),
            ..Hooks::default()
        }
    } else {
        Hooks {
            before_write: Some(Box::new(move |()| fail())),
            ..Hooks::default()
        }
    };
    Store::open_with(
        path,
        OpenOptions::new().preallocate(false).storage(hooked(hooks)),
    )
    .unwrap()
}

fn retry_after_a_failed_commit(at_sync: bool) {
    let t = temp_store();
    let armed = Arc::new(AtomicBool::new(false));
    let store = open_failing(&t.path, Arc::clone(&armed), at_sync);
    let (a, b) = (Uuid::from_u128(10), Uuid::from_u128(11));
    store
        .append(a, ExpectedVersion::NoStream, vec![ev(1, "First")])
        .unwrap();
    let batch_a = [ev(2, "A1"), ev(3, "A2")];
    let batch_b = [ev(4, "B0")];
    let (ra, rb): (Vec<_>, Vec<_>) = (
        batch_a.iter().map(ProposedEvent::as_ref).collect(),
        batch_b.iter().map(ProposedEvent::as_ref).collect(),
    );
    let parts = [
        StreamAppend {
            stream_id: a,
            expected_version: ExpectedVersion::Exact(0),
            events: &ra,
        },
        StreamAppend {
            stream_id: b,
            expected_version: ExpectedVersion::NoStream,
            events: &rb,
        },
    ];
    armed.store(true, Ordering::SeqCst);
    match store.append_multi(&parts) {
        Err(Error::Io { .. }) => {}
        other => panic!("the injected fault fails the commit: {other:?}"),
    }
    drop(store);
    // The application retries the same append on a fresh handle.
    let store = Store::open(&t.path).unwrap();
    let results = store.append_multi(&parts).unwrap();
    let again = store.append_multi(&parts).unwrap();
    assert!(
        again.iter().all(|r| r.deduplicated),
        "a second retry writes nothing"
    );
    let all = store.read_all(0, u64::MAX).unwrap();
    let ids: Vec<u128> = all.iter().map(|e| e.event_id.as_u128()).collect();
    assert_eq!(ids, [1, 2, 3, 4], "exactly one copy, in order");
    assert_eq!(results[0].first_global_position, 1);
    assert_eq!(results[0].first_stream_version, 1);
    assert_eq!(results[1].first_global_position, 3);
    assert_eq!(results[1].first_stream_version, 0);
    for (r, g) in results.iter().zip(&again) {
        assert_eq!(
            (r.first_global_position, r.first_stream_version, r.count),
            (g.first_global_position, g.first_stream_version, g.count)
        );
    }
    drop(store);
    assert_eq!(Store::open(&t.path).unwrap().global_position(), 4);
}

#[test]
fn a_commit_whose_fdatasync_failed_retried_on_a_fresh_handle_is_stored_once() {
    retry_after_a_failed_commit(true);
}

#[test]
fn a_commit_whose_write_failed_retried_on_a_fresh_handle_is_stored_once() {
    retry_after_a_failed_commit(false);
}

/// A writer opens regular files only: a FIFO, a character device or a block device
/// (whose length reads as 0, like a new store's) is refused with an error saying what
/// it is, and nothing is written to it or created beside it.
#[test]
fn a_writer_refuses_what_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.store");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let link = dir.path().join("null.store");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    for (path, kind) in [(&fifo, "a FIFO"), (&link, "a character device")] {
        match Store::open(path) {
            Err(Error::Io { context, .. }) => {
                assert!(context.contains("not a regular file"), "{context}");
                assert!(context.contains(kind), "{context}");
            }
            other => panic!("{}: {other:?}", path.display()),
        }
    }
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["fifo.store", "null.store"],
        "nothing created beside them"
    );
}
