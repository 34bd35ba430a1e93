//! Recovery of files large enough to be scanned with read-ahead (several chunks):
//! batches cut by chunk edges, a batch larger than a chunk, a torn tail, and damage
//! in the middle of the file.

mod common;

use std::os::unix::fs::FileExt;

use common::{event, temp_store};
use eventstore::{Error, ExpectedVersion, Store};
use uuid::Uuid;

/// Writes ~11 MB: single events of varying size over a few streams, with a batch of
/// 40 x 40 KB (1.6 MB, larger than a read chunk) in the middle. Returns the number
/// of events and each event's payload length.
fn populate(store: &Store) -> Vec<usize> {
    let streams = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    let mut lens = Vec::new();
    for i in 0..9000usize {
        if i == 4000 {
            let big: Vec<_> = (0..40)
                .map(|k| event("Big", &vec![k as u8; 40_000]))
                .collect();
            lens.extend(std::iter::repeat_n(40_000, 40));
            store.append(streams[0], ExpectedVersion::Any, big).unwrap();
        }
        let len = 100 + (i * 37) % 1700;
        store
            .append(
                streams[i % 3],
                ExpectedVersion::Any,
                vec![event("E", &vec![i as u8; len])],
            )
            .unwrap();
        lens.push(len);
    }
    lens
}

fn check(store: &Store, lens: &[usize]) {
    assert_eq!(store.global_position(), lens.len() as u64);
    let all = store.read_all_batch(0, u64::MAX).unwrap();
    for (i, (e, &len)) in all.iter().zip(lens).enumerate() {
        assert_eq!(e.global_position, i as u64);
        assert_eq!(e.payload.len(), len);
    }
}

#[test]
fn a_large_store_reopens_whole_and_a_torn_tail_is_cut() {
    let t = temp_store();
    let lens = {
        let store = Store::open(&t.path).unwrap();
        populate(&store)
    };
    let size = std::fs::metadata(&t.path).unwrap().len();
    assert!(size > 8 << 20, "{size}");
    check(&Store::open(&t.path).unwrap(), &lens);

    // Cut the last batch short. The index file's last manifest covers it (close
    // checkpointed it) and its header is still in place: the cut destroyed
    // acknowledged data, and open refuses rather than cut more.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&t.path)
        .unwrap();
    file.set_len(size - 10).unwrap();
    drop(file);
    let cut = std::fs::read(&t.path).unwrap();
    match Store::open(&t.path) {
        Err(eventstore::Error::CorruptRecord { detail, .. }) => {
            assert!(detail.contains("acknowledged"), "{detail}")
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(
        std::fs::read(&t.path).unwrap(),
        cut,
        "the refused open wrote"
    );
    // Without the index file nothing says the batch was acknowledged: it is a torn
    // tail, dropped on open.
    let mut index = t.path.clone().into_os_string();
    index.push("-index");
    std::fs::remove_file(index).unwrap();
    let store = Store::open(&t.path).unwrap();
    check(&store, &lens[..lens.len() - 1]);
    drop(store);
    assert!(std::fs::metadata(&t.path).unwrap().len() < size - 10);
}

#[test]
fn damage_in_the_middle_of_a_large_store_fails_the_open_and_leaves_it() {
    let t = temp_store();
    let lens = {
        let store = Store::open(&t.path).unwrap();
        populate(&store)
    };
    let before = std::fs::read(&t.path).unwrap();
    let index = {
        let mut p = t.path.clone().into_os_string();
        p.push("-index");
        std::path::PathBuf::from(p)
    };
    assert!(
        index.exists(),
        "a store of more than 1 MiB is checkpointed at close"
    );
    for at in [
        before.len() / 4 + 777,
        before.len() / 2 + 12345,
        (1 << 20) + 3,
        3 * before.len() / 4,
    ] {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&t.path)
            .unwrap();
        file.write_all_at(&[before[at] ^ 0x5a], at as u64).unwrap();
        // With the index file (issue 14) open trusts the covered prefix: it opens,
        // and a read that meets a damaged record fails (never a wrong event).
        if index.exists() {
            // (A byte of a batch frame is in no record: every read is then whole.)
            let store = Store::open(&t.path).unwrap();
            match store.read_all(0, u64::MAX) {
                Err(Error::CorruptRecord { .. }) => {}
                Ok(_) => check(&store, &lens),
                Err(e) => panic!("damage at {at}: {e}"),
            }
            drop(store);
        }
        // Without it, open scans everything and judges the damage as before.
        let _ = std::fs::remove_file(&index);
        match Store::open(&t.path) {
            Err(Error::CorruptRecord { offset, .. }) => {
                assert!(
                    offset <= at as u64 && at as u64 - offset < 2_000_000,
                    "{offset} vs {at}"
                )
            }
            other => panic!("damage at {at}: expected CorruptRecord, got {other:?}"),
        }
        assert_eq!(std::fs::read(&t.path).unwrap().len(), before.len());
        // Repair the byte: the store opens whole again.
        file.write_all_at(&[before[at]], at as u64).unwrap();
        drop(file);
        check(&Store::open(&t.path).unwrap(), &lens);
    }
}
