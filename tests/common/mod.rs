//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use eventstore::{ExpectedVersion, OpenOptions, ProposedEvent, RecordedEvent, Store};
use uuid::Uuid;

pub fn event(event_type: &str, payload: &[u8]) -> ProposedEvent {
    ProposedEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.to_string(),
        metadata: b"{\"by\":\"test\"}".to_vec(),
        payload: payload.to_vec(),
    }
}

pub struct TempStore {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn temp_store() -> TempStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.store");
    TempStore { dir, path }
}

/// Opens without preallocation, so that the file's length is exactly its data while
/// the store is open (tests that measure batch boundaries need that).
pub fn open_exact(path: &Path) -> Store {
    Store::open_with(path, OpenOptions::new().preallocate(false)).expect("open")
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").len()
}

/// Appends one event per call to the given streams, in order; returns what was recorded.
pub fn append_each(store: &Store, streams: &[Uuid]) -> Vec<RecordedEvent> {
    streams
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let payload = format!("payload {i}");
            store
                .append(
                    *s,
                    ExpectedVersion::Any,
                    vec![event("Happened", payload.as_bytes())],
                )
                .expect("append")
                .remove(0)
        })
        .collect()
}

/// Every event of the log.
pub fn all(store: &Store) -> Vec<RecordedEvent> {
    store.read_all(0, u64::MAX).expect("read_all")
}
