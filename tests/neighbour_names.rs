//! Stores whose names are those of another store's companion files: `<a>-shm` (its
//! side file), `<a>-index` (its index file) and `<a>-index.tmp` (where that is
//! written). Store `a`'s writer must never write, replace or remove them. Before, a
//! writer of `a` wrote its side page over the header of a store called `a-shm`
//! (which then failed to open as "not an event store"), and its index checkpoints
//! removed `a-index.tmp` and renamed over `a-index`.

mod common;

use common::event;
use eventstore::{ExpectedVersion, Store};
use uuid::Uuid;

#[test]
fn a_writer_leaves_alone_the_stores_named_after_its_companion_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let names = ["a-shm", "a-index", "a-index.tmp"];
    let mut originals = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let path = dir.path().join(name);
        {
            let s = Store::open(&path).unwrap();
            s.append(
                Uuid::from_u128(k as u128 + 10),
                ExpectedVersion::Any,
                vec![event("Neighbour", name.as_bytes())],
            )
            .unwrap();
        }
        originals.push((path.clone(), std::fs::read(&path).unwrap()));
    }
    // Store `a`, large enough to checkpoint its index (at close and when reopened),
    // opened twice.
    for round in 0..2 {
        let store = Store::open(&a).unwrap();
        let batch = (0..1500).map(|_| event("Mine", &[round; 1000])).collect();
        store
            .append(Uuid::from_u128(1), ExpectedVersion::Any, batch)
            .unwrap();
        store.checkpoint_index(0);
        store.close().unwrap();
    }
    for (path, bytes) in &originals {
        assert_eq!(
            &std::fs::read(path).unwrap(),
            bytes,
            "{} was changed",
            path.display()
        );
        let s = Store::open(path).unwrap();
        assert_eq!(s.global_position(), 1, "{}", path.display());
    }
    assert_eq!(Store::open(&a).unwrap().global_position(), 3000);
}
