//! A long run of positions (a read or a subscription page of 511 events or more, a
//! filtered scan's chunk of type ids) reads its index pages (locations, type ids) from
//! the index file in one `pread`, past the page cache. Those pages are checked like
//! cached ones: a damaged byte anywhere in the index file is refused (the segment
//! rebuilt from the log), and every read still returns exactly the log's events.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::temp_store;
use eventstore::{EventBatch, ExpectedVersion, Filter, OpenOptions, ProposedEvent, Store};
use uuid::Uuid;

const EVENTS: u64 = 2000;

fn index_path(store: &std::path::Path) -> PathBuf {
    eventstore::store::index_file_path(store)
}

/// Every event `filter` selects through subscription pages of `page` events, as
/// (position, payload).
fn drain_filtered(store: &Store, page: u64, filter: Filter) -> Vec<(u64, Vec<u8>)> {
    let mut sub = store.subscribe(0, filter);
    let mut batch = EventBatch::default();
    let mut out = Vec::new();
    loop {
        sub.next_batch_into(page, Some(Duration::ZERO), &mut batch)
            .unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(
            batch
                .iter()
                .map(|e| (e.global_position, e.payload.to_vec())),
        );
    }
}

fn drain(store: &Store, page: u64) -> Vec<(u64, Vec<u8>)> {
    drain_filtered(store, page, Filter::all())
}

/// Type of the event at position `p`.
fn kind(p: u64) -> &'static str {
    if p.is_multiple_of(3) {
        "Walk"
    } else {
        "Run"
    }
}

#[test]
fn location_pages_read_in_runs_are_checked_and_damage_is_rebuilt_from_the_log() {
    let t = temp_store();
    let store = Store::open_with(
        &t.path,
        OpenOptions::new().index_checkpoints(0, u64::MAX, Duration::from_secs(3600)),
    )
    .unwrap();
    for chunk in 0..EVENTS / 10 {
        let events = (0..10)
            .map(|k| ProposedEvent {
                event_id: Uuid::nil(),
                event_type: kind(chunk * 10 + k).into(),
                metadata: vec![],
                payload: format!("event {}", chunk * 10 + k).into_bytes(),
            })
            .collect();
        store
            .append(
                Uuid::from_u128(u128::from(chunk % 7) + 1),
                ExpectedVersion::Any,
                events,
            )
            .unwrap();
    }
    store.close().unwrap();
    let model: Vec<(u64, Vec<u8>)> = (0..EVENTS)
        .map(|p| (p, format!("event {p}").into_bytes()))
        .collect();
    let walks: Vec<(u64, Vec<u8>)> = model
        .iter()
        .filter(|(p, _)| kind(*p) == "Walk")
        .cloned()
        .collect();
    let log = std::fs::read(&t.path).unwrap();
    let index = std::fs::read(index_path(&t.path)).unwrap();
    let read_only = || Store::open_with(&t.path, OpenOptions::new().read_only()).unwrap();
    {
        let intact = read_only();
        assert!(
            intact.index_stats().heap_bytes < 8000,
            "the locations come from the index file"
        );
        for page in [511, 1000, u64::MAX] {
            assert_eq!(drain(&intact, page), model, "intact, pages of {page}");
            let walk = drain_filtered(&intact, page, Filter::types(["Walk"]));
            assert_eq!(walk, walks, "intact, filtered, pages of {page}");
        }
    }
    // One flipped byte per 4 KiB page, at a different place in each page.
    for (n, at) in (0..index.len()).step_by(4096 + 89).enumerate() {
        std::fs::write(&t.path, &log).unwrap();
        let mut bad = index.clone();
        bad[at] ^= 0x20;
        std::fs::write(index_path(&t.path), &bad).unwrap();
        let store = read_only();
        let page = [511, 1000, 1500][n % 3];
        assert_eq!(drain(&store, page), model, "flip at {at}, pages of {page}");
        let walk = drain_filtered(&store, u64::MAX, Filter::types(["Walk"]));
        assert_eq!(walk, walks, "flip at {at}, filtered");
        let all = store.read_all(0, u64::MAX).unwrap();
        assert_eq!(all.len() as u64, EVENTS, "flip at {at}");
    }
}
