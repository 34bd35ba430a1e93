//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use eventstore::store::io::StorageFile;

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

/// Which sync a [`Hooks::before_sync`] hook is called for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    Data,
    All,
}

type Hook<T> = Option<Box<dyn Fn(T) -> io::Result<()> + Send + Sync>>;

/// What a test does around a store file's I/O ([`hooked`]); every call also goes to
/// the file unless its hook fails it.
#[derive(Default)]
pub struct Hooks {
    /// Before each read: an error fails the read.
    pub before_read: Hook<()>,
    /// After each read, with the bytes it returned.
    pub after_read: Hook<usize>,
    /// Before each sync: an error fails the sync.
    pub before_sync: Hook<SyncKind>,
    /// Before each write: an error fails the write.
    pub before_write: Hook<()>,
}

struct Hooked {
    file: File,
    hooks: Hooks,
}

impl StorageFile for Hooked {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if let Some(h) = &self.hooks.before_read {
            h(())?;
        }
        let n = StorageFile::read_at(&self.file, buf, offset)?;
        if let Some(h) = &self.hooks.after_read {
            h(n)?;
        }
        Ok(n)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if let Some(h) = &self.hooks.before_write {
            h(())?;
        }
        StorageFile::write_at(&self.file, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if let Some(h) = &self.hooks.before_sync {
            h(SyncKind::Data)?;
        }
        self.file.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        if let Some(h) = &self.hooks.before_sync {
            h(SyncKind::All)?;
        }
        self.file.sync_all()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn file_len(&self) -> io::Result<u64> {
        StorageFile::file_len(&self.file)
    }
}

/// The `OpenOptions::storage` wrapper that routes the store's file through `hooks`.
pub fn hooked(hooks: Hooks) -> impl FnOnce(File) -> Box<dyn StorageFile> + Send + 'static {
    move |file| Box::new(Hooked { file, hooks })
}

/// When armed: where to say "written", and where to wait for "go on".
pub type Gate = Arc<Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>>;

/// Opens a writer (without preallocation) whose next `fdatasync`, once [`arm`]ed,
/// holds: the test learns when the writer has written its batch and is about to sync,
/// and says when the sync may go on.
pub fn open_held(path: &Path) -> (Store, Gate) {
    let gate: Gate = Default::default();
    let g = Arc::clone(&gate);
    let hooks = Hooks {
        before_sync: Some(Box::new(move |kind| {
            if kind == SyncKind::Data {
                if let Some((written, go_on)) = g.lock().unwrap().take() {
                    written.send(()).unwrap();
                    go_on.recv().unwrap();
                }
            }
            Ok(())
        })),
        ..Hooks::default()
    };
    let store = Store::open_with(
        path,
        OpenOptions::new().preallocate(false).storage(hooked(hooks)),
    )
    .expect("open");
    (store, gate)
}

/// Arms `gate` for the next sync: returns where "written" arrives and where to send
/// "go on".
pub fn arm(gate: &Gate) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (written_tx, written_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    *gate.lock().unwrap() = Some((written_tx, go_rx));
    (written_rx, go_tx)
}
