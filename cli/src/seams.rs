//! Where the tool meets the library, one function per concept, so that each can switch
//! to the 0.2 API that replaces it without touching the commands:
//!
//! | function | today | later |
//! |---|---|---|
//! | [`open_for_read`] | `Store::open` (exclusive lock: fails with `Locked` beside a writer) | `OpenOptions::read_only()` |
//! | [`writer_open`] | always false (we hold the lock) | the store's own report |
//! | [`read_matching`] | `read_all` / `read_stream` pages, filtered here | `read_all_filtered`, backward reads |
//! | [`wait_for_more`] | a 50 ms poll of `global_position` | `Store::wait` |
//! | [`list_streams`] | one read of the whole log | `Store::list_streams` |

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use eventstore::codec::RecordView;
use eventstore::{EventBatch, OpenOptions, Store, Uuid};

use crate::fail::{Fail, Result, EXIT_FOUND};

/// Events read per page.
const PAGE: u64 = 1 << 16;

/// Opens an existing store for a read command. Never creates a file.
///
/// Today this is a normal open: it takes the exclusive lock (so it fails with
/// `Locked` beside a running writer) and, like every open, cuts off a torn tail or
/// preallocated space. With read-only opens it will do neither.
pub fn open_for_read(path: &Path) -> Result<Store> {
    must_exist(path)?;
    Store::open(path).map_err(|e| Fail::store(path, e, false))
}

/// Opens (and with `create`, creates) a store for a writing command.
pub fn open_for_write(path: &Path, create: bool) -> Result<Store> {
    if !create {
        must_exist(path)?;
    }
    Store::open_with(path, OpenOptions::new()).map_err(|e| Fail::store(path, e, true))
}

/// Fails unless `path` is an existing regular file of at least a header's length (a
/// shorter one would be initialised as a new store by an open).
pub fn must_exist(path: &Path) -> Result<()> {
    let p = path.display();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(Fail::new(
            EXIT_FOUND,
            format!("{p} is a directory, not a store file; check the path"),
        )),
        Ok(m) if m.len() < eventstore::codec::FILE_HEADER_LEN as u64 => Err(Fail::new(
            EXIT_FOUND,
            format!(
                "{p} is not an event store ({} bytes, shorter than a store header); check the path",
                m.len()
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Fail::new(
            EXIT_FOUND,
            format!("{p}: no such file; check the path (read commands never create a store)"),
        )),
        Err(e) => Err(Fail::new(
            crate::fail::EXIT_IO,
            format!("{p}: {e}; check the path and its permissions"),
        )),
    }
}

/// Whether another process has the store open for writing. A read command that got
/// this far holds the store's lock itself, so today the answer is always no.
pub fn writer_open(_store: &Store) -> bool {
    false
}

/// Which events a read command shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub stream: Option<Uuid>,
    /// Exact type names; empty with no prefixes: every type.
    pub types: Vec<String>,
    pub prefixes: Vec<String>,
}

impl Filter {
    /// The rule of `es_filter`: the stream matches, and (no types and no prefixes are
    /// given, or the type equals one or starts with one).
    pub fn matches(&self, e: &RecordView<'_>) -> bool {
        if self.stream.is_some_and(|s| s != e.stream_id) {
            return false;
        }
        (self.types.is_empty() && self.prefixes.is_empty())
            || self.types.iter().any(|t| t == e.event_type)
            || self
                .prefixes
                .iter()
                .any(|p| e.event_type.starts_with(p.as_str()))
    }
}

/// A range of global positions, both ends included.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub from: u64,
    pub to: u64,
    pub backward: bool,
}

/// What a visitor wants next.
pub enum Flow {
    More,
    Stop,
}

/// Calls `visit` with every event in `range` that matches `filter`, in order (or in
/// reverse with `range.backward`), until it says stop. Returns the global position
/// after the last event examined going forward (where following goes on).
pub fn read_matching(
    store: &Store,
    filter: &Filter,
    range: Range,
    visit: &mut dyn FnMut(&RecordView<'_>) -> Result<Flow>,
) -> Result<u64> {
    let path = store.path().to_path_buf();
    let end = store.global_position();
    let last = range.to.min(end.saturating_sub(1));
    if end == 0 || range.from > last {
        if let Some(s) = filter.stream {
            // An unknown stream is an error even when the range is empty.
            store
                .read_stream_batch(s, 0, 0)
                .map_err(|e| Fail::store(&path, e, false))?;
        }
        return Ok(end.max(range.from));
    }
    let mut batch = EventBatch::default();
    if let Some(stream) = filter.stream {
        // By version: a stream's positions grow with its versions.
        let newest = store.stream_version(&stream).ok_or_else(|| {
            Fail::store(
                &path,
                eventstore::Error::StreamNotFound { stream_id: stream },
                false,
            )
        })?;
        let pages: Box<dyn Iterator<Item = u64>> = if range.backward {
            Box::new((0..=newest / PAGE).rev().map(|p| p * PAGE))
        } else {
            Box::new((0..=newest / PAGE).map(|p| p * PAGE))
        };
        for first_version in pages {
            store
                .read_stream_batch_into(stream, first_version, PAGE, &mut batch)
                .map_err(|e| Fail::store(&path, e, false))?;
            if visit_page(&batch, filter, range, visit)? {
                break;
            }
        }
        return Ok(end);
    }
    let first_page = range.from / PAGE;
    let last_page = last / PAGE;
    let pages: Box<dyn Iterator<Item = u64>> = if range.backward {
        Box::new((first_page..=last_page).rev())
    } else {
        Box::new(first_page..=last_page)
    };
    for page in pages {
        store
            .read_all_batch_into(page * PAGE, PAGE, &mut batch)
            .map_err(|e| Fail::store(&path, e, false))?;
        if visit_page(&batch, filter, range, visit)? {
            break;
        }
    }
    Ok(end)
}

/// Visits the matching events of one page in the range's direction; true: stop.
fn visit_page(
    batch: &EventBatch,
    filter: &Filter,
    range: Range,
    visit: &mut dyn FnMut(&RecordView<'_>) -> Result<Flow>,
) -> Result<bool> {
    let mut one = |e: RecordView<'_>| -> Result<bool> {
        if e.global_position < range.from || e.global_position > range.to || !filter.matches(&e) {
            return Ok(false);
        }
        Ok(matches!(visit(&e)?, Flow::Stop))
    };
    if range.backward {
        for i in (0..batch.len()).rev() {
            if one(batch.get(i))? {
                return Ok(true);
            }
        }
    } else {
        for e in batch.iter() {
            if one(e)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Waits until the store holds more than `position` events, or `timeout` passes;
/// returns the event count then. A short poll until `Store::wait` lands (it sleeps
/// without CPU and sees appends from other processes).
pub fn wait_for_more(store: &Store, position: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let now = store.global_position();
        if now > position || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One stream, as `streams` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRow {
    pub stream_id: Uuid,
    pub events: u64,
    pub last_version: u64,
    pub first_position: u64,
    pub last_position: u64,
}

/// Every stream in order of creation (its first event), computed from one read of the
/// whole log until `Store::list_streams` lands. `progress(done)` counts events read.
pub fn list_streams(store: &Store, progress: &mut dyn FnMut(u64)) -> Result<Vec<StreamRow>> {
    let mut rows: Vec<StreamRow> = Vec::new();
    let mut at: HashMap<Uuid, usize> = HashMap::new();
    let mut done = 0u64;
    read_matching(
        store,
        &Filter::default(),
        Range {
            from: 0,
            to: u64::MAX,
            backward: false,
        },
        &mut |e| {
            match at.get(&e.stream_id) {
                Some(&i) => {
                    let row = &mut rows[i];
                    row.events += 1;
                    row.last_version = e.stream_version;
                    row.last_position = e.global_position;
                }
                None => {
                    at.insert(e.stream_id, rows.len());
                    rows.push(StreamRow {
                        stream_id: e.stream_id,
                        events: 1,
                        last_version: e.stream_version,
                        first_position: e.global_position,
                        last_position: e.global_position,
                    });
                }
            }
            done += 1;
            if done.is_multiple_of(65536) {
                progress(done);
            }
            Ok(Flow::More)
        },
    )?;
    Ok(rows)
}
