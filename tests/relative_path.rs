//! A store opened by a relative path, in a process that changes its working directory
//! afterwards (as daemons do). Alone in its own test binary: the working directory
//! belongs to the whole process.

mod common;

use common::event;
use eventstore::{ExpectedVersion, Store};
use uuid::Uuid;

#[test]
fn a_chdir_after_open_moves_nothing_the_store_writes() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    // Another store of the same name where the process goes next.
    let theirs = elsewhere.path().join("events.store");
    {
        let s = Store::open(&theirs).unwrap();
        s.append(
            Uuid::from_u128(2),
            ExpectedVersion::Any,
            vec![event("Theirs", b"t")],
        )
        .unwrap();
    }
    let before: Vec<_> = std::fs::read_dir(elsewhere.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let their_bytes = std::fs::read(&theirs).unwrap();

    std::env::set_current_dir(home.path()).unwrap();
    let store = Store::open(std::path::Path::new("events.store")).unwrap();
    assert_eq!(store.path(), home.path().join("events.store"));
    std::env::set_current_dir(elsewhere.path()).unwrap();
    // Over a MiB, so that closing writes an index file.
    let batch = (0..1500).map(|_| event("Mine", &[3; 1000])).collect();
    store
        .append(Uuid::from_u128(1), ExpectedVersion::Any, batch)
        .unwrap();
    store.close().unwrap();

    let after: Vec<_> = std::fs::read_dir(elsewhere.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(after, before, "nothing new where the process went");
    assert_eq!(std::fs::read(&theirs).unwrap(), their_bytes);
    assert!(
        eventstore::store::index_file_path(&home.path().join("events.store")).is_file(),
        "the index file lies beside the store"
    );
    let reopened = Store::open(&home.path().join("events.store")).unwrap();
    assert_eq!(reopened.global_position(), 1500);
}
