//! The read path checks records in groups of four (their CRCs side by side): a damaged
//! record is reported as itself, with `check_record`'s message, wherever it falls in a
//! group (first to fourth) or among the last few checked one by one, through every
//! read that returns records: whole-log reads, filtered reads and subscriptions.

mod common;

use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::{event, open_exact, temp_store};
use eventstore::Error;
use eventstore::{EventBatch, ExpectedVersion, Filter, Store};
use uuid::Uuid;

const EVENTS: u64 = 11;

fn expect_damage_at(what: &str, got: Result<usize, Error>, victim: u64) {
    match got {
        Err(Error::CorruptRecord {
            position, detail, ..
        }) => {
            assert_eq!(position, victim, "{what}: reported for the damaged record");
            assert_eq!(detail, "record checksum mismatch", "{what}");
        }
        other => panic!("{what}, damage at {victim}: expected CorruptRecord, got {other:?}"),
    }
}

fn drain(store: &Store, filter: Filter) -> Result<usize, Error> {
    let mut sub = store.subscribe(0, filter);
    let mut batch = EventBatch::default();
    let mut n = 0;
    loop {
        sub.next_batch_into(u64::MAX, Some(Duration::ZERO), &mut batch)?;
        if batch.is_empty() {
            return Ok(n);
        }
        n += batch.len();
    }
}

#[test]
fn damage_in_any_slot_of_a_group_of_four_is_reported_for_that_record() {
    let t = temp_store();
    let store = open_exact(&t.path);
    // One append: the records lie back to back, read by one span, checked as groups
    // 0-3 and 4-7, then 8, 9, 10 one by one. Payloads of different lengths.
    let events = (0..EVENTS)
        .map(|i| event("Same", &vec![i as u8 + 1; 150 + 37 * i as usize]))
        .collect();
    store
        .append(Uuid::new_v4(), ExpectedVersion::Any, events)
        .unwrap();
    let sound = store.read_all(0, EVENTS).unwrap();
    assert_eq!(sound.len() as u64, EVENTS);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&t.path)
        .unwrap();
    let bytes = std::fs::read(&t.path).unwrap();
    for victim in 0..EVENTS {
        let e = &sound[victim as usize];
        let at = bytes
            .windows(16)
            .position(|w| w == e.event_id.as_bytes())
            .unwrap() as u64
            + 100; // inside the payload
        let original = bytes[at as usize];
        file.write_all_at(&[original ^ 0x10], at).unwrap();
        expect_damage_at(
            "read_all",
            store.read_all_batch(0, u64::MAX).map(|b| b.len()),
            victim,
        );
        expect_damage_at("subscription", drain(&store, Filter::all()), victim);
        expect_damage_at(
            "filtered subscription",
            drain(&store, Filter::types(["Same"])),
            victim,
        );
        expect_damage_at(
            "read_all_filtered",
            store
                .read_all_filtered(0, u64::MAX, &Filter::types(["Same"]))
                .map(|(b, _)| b.len()),
            victim,
        );
        // The records before it are sound and read.
        assert_eq!(store.read_all(0, victim).unwrap().len() as u64, victim);
        file.write_all_at(&[original], at).unwrap();
        assert_eq!(drain(&store, Filter::all()).unwrap() as u64, EVENTS);
    }
}
