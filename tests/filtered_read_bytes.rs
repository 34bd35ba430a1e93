//! Issue 10, rule 5: a filtered read does not read the events it discards. Counted at
//! the store's file: the bytes a filtered read asks for are the matching records and
//! at most the batch framing between matches in consecutive batches, never a byte of
//! a record that does not match, however close it lies.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{event, hooked, temp_store, Hooks};
use eventstore::{codec, ExpectedVersion, Filter, OpenOptions, Store, RECORD_OVERHEAD};
use uuid::Uuid;

#[test]
fn a_filtered_read_reads_matches_and_framing_only() {
    let t = temp_store();
    let (reads, bytes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, b) = (Arc::clone(&reads), Arc::clone(&bytes));
    let store = Store::open_with(
        &t.path,
        OpenOptions::new().preallocate(false).storage(hooked(Hooks {
            after_read: Some(Box::new(move |n| {
                r.fetch_add(1, Ordering::SeqCst);
                b.fetch_add(n, Ordering::SeqCst);
                Ok(())
            })),
            ..Hooks::default()
        })),
    )
    .unwrap();
    let hit = || event("Hit", b"h");
    let small_miss = || event("Miss", b"");
    let big_miss = || event("Miss", &[7u8; 1000]);
    let s = Uuid::new_v4();
    // Matches back to back, around a small and a large discarded event, and in
    // consecutive batches (a frame between them).
    for events in [
        vec![hit(), hit(), small_miss(), hit(), big_miss(), hit()],
        vec![hit()],
        vec![small_miss()],
        vec![hit()],
    ] {
        store.append(s, ExpectedVersion::Any, events).unwrap();
    }
    reads.store(0, Ordering::SeqCst);
    bytes.store(0, Ordering::SeqCst);
    let (batch, next) = store
        .read_all_filtered(0, u64::MAX, &Filter::types(["Hit"]))
        .unwrap();
    assert_eq!(next, 9);
    let positions: Vec<u64> = batch.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, [0, 1, 3, 5, 6, 8]);
    let hit_bytes: usize = batch
        .iter()
        .map(|e| RECORD_OVERHEAD + e.event_type.len() + e.metadata.len() + e.payload.len())
        .sum();
    // Spans: {0, 1}, {3}, {5, frame, 6}, {8}: the discarded events, small or large,
    // and the batch holding one between 6 and 8, are never read.
    assert_eq!(reads.load(Ordering::SeqCst), 4, "one read per span");
    assert_eq!(
        bytes.load(Ordering::SeqCst),
        hit_bytes + codec::BATCH_OVERHEAD,
        "the matches and one batch frame"
    );
}
