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

/// A file seam whose `sync_data` can be held: the test learns when the writer has
/// written its batch and is about to sync, and says when the sync may go on.
pub struct HeldSync {
    pub file: std::fs::File,
    pub gate: Gate,
}

/// When armed: where to say "written", and where to wait for "go on".
pub type Gate = std::sync::Arc<
    std::sync::Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
>;

impl eventstore::store::io::StorageFile for HeldSync {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        eventstore::store::io::StorageFile::read_at(&self.file, buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<usize> {
        eventstore::store::io::StorageFile::write_at(&self.file, buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if let Some((written, go_on)) = self.gate.lock().unwrap().take() {
            written.send(()).unwrap();
            go_on.recv().unwrap();
        }
        self.file.sync_data()
    }
    fn sync_all(&self) -> std::io::Result<()> {
        self.file.sync_all()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)
    }
    fn file_len(&self) -> std::io::Result<u64> {
        eventstore::store::io::StorageFile::file_len(&self.file)
    }
}
