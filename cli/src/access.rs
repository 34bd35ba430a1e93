//! How the tool opens and reads a store, through the library's API: one place for
//! the opens, the filters and the walks over the log that several commands share.

use std::path::Path;

use eventstore::codec::RecordView;
use eventstore::{EventBatch, Filter, OpenOptions, RecordedEvent, Store, StreamInfo};

use crate::fail::{Fail, Result, EXIT_FOUND};

/// Events read per page at most; the first page is small (`FIRST_PAGE`) and each next
/// one twice as large, so that `--limit 10` or `tail -n 10` reads a few events, and a
/// whole-log walk few large pages.
const PAGE: u64 = 1 << 16;
const FIRST_PAGE: u64 = 64;

/// Opens an existing store for a read command, read-only (`OpenOptions::read_only`):
/// no lock is taken and nothing is written or cut off, so it works beside a writer
/// in any process and sees exactly the acknowledged events. Never creates a file.
pub fn open_for_read(path: &Path) -> Result<Store> {
    must_exist(path)?;
    crate::progress::while_running("opening the store", || {
        Store::open_with(path, OpenOptions::new().read_only())
    })
    .map_err(|e| Fail::store(path, e))
}

/// Opens (and with `create`, creates) a store for a writing command.
pub fn open_for_write(path: &Path, create: bool) -> Result<Store> {
    if !create {
        must_exist(path)?;
    }
    crate::progress::while_running("opening the store", || {
        Store::open_with(path, OpenOptions::new())
    })
    .map_err(|e| Fail::store(path, e))
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

/// Whether a writer (in any process) has the store open now: `Store::writer_is_live`,
/// which tests the live mark every writer holds. Unknown (an error testing it) is no.
pub fn writer_open(store: &Store) -> bool {
    store.writer_is_live().unwrap_or(false)
}

/// Whether `e` passes `filter` (for the walks the library has no filtered form of:
/// backward reads).
pub fn matches(filter: &Filter, e: &RecordView<'_>) -> bool {
    filter.stream_id.is_none_or(|s| s == e.stream_id)
        && filter.type_matches(e.event_type.as_bytes())
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

/// The sizes of the pages a walk reads: small first, doubling up to `PAGE`.
struct Pages(u64);

impl Pages {
    fn new() -> Pages {
        Pages(FIRST_PAGE)
    }

    fn next(&mut self) -> u64 {
        let n = self.0;
        self.0 = (n * 2).min(PAGE);
        n
    }
}

/// Calls `visit` with every event in `range` that matches `filter`, in order (or in
/// reverse with `range.backward`), until it says stop. Returns the event count of the
/// log when the walk started (where following goes on): events acknowledged later
/// are not shown.
pub fn read_matching(
    store: &Store,
    filter: &Filter,
    range: Range,
    visit: &mut dyn FnMut(&RecordView<'_>) -> Result<Flow>,
) -> Result<u64> {
    let path = store.path().to_path_buf();
    let fail = |e| Fail::store(&path, e);
    let end = store.global_position();
    if let Some(s) = filter.stream_id {
        // An unknown stream is an error, also when the range is empty.
        if store.stream_version(&s).is_none() {
            return Err(fail(eventstore::Error::StreamNotFound { stream_id: s }));
        }
    }
    let last = range.to.min(end.saturating_sub(1));
    if end == 0 || range.from > last {
        return Ok(end);
    }
    let mut pages = Pages::new();
    if range.backward {
        // Newest first: `read_stream_backward` / `read_all_backward`, page by page; the
        // library has no filtered backward read, so types are matched here.
        let mut from = match filter.stream_id {
            Some(s) => store.stream_version(&s).unwrap_or(0),
            None => last,
        };
        loop {
            let page = match filter.stream_id {
                Some(s) => store.read_stream_backward(s, from, pages.next()),
                None => store.read_all_backward(from, pages.next()),
            }
            .map_err(fail)?;
            // Newest first, as the library returns them.
            for e in &page {
                if e.global_position < range.from {
                    return Ok(end);
                }
                let e = view(e);
                if e.global_position <= last
                    && matches(filter, &e)
                    && matches!(visit(&e)?, Flow::Stop)
                {
                    return Ok(end);
                }
            }
            let Some(oldest) = page.last() else {
                return Ok(end);
            };
            let at = match filter.stream_id {
                Some(_) => oldest.stream_version,
                None => oldest.global_position,
            };
            if at == 0 {
                return Ok(end);
            }
            from = at - 1;
        }
    }
    let mut position = range.from;
    if filter.stream_id.is_none() && !filter.selects_types() {
        // Everything: plain pages, read into one reused batch.
        let mut batch = EventBatch::default();
        while position <= last {
            let n = pages.next().min(last + 1 - position);
            store
                .read_all_batch_into(position, n, &mut batch)
                .map_err(fail)?;
            for e in batch.iter() {
                if matches!(visit(&e)?, Flow::Stop) {
                    return Ok(end);
                }
            }
            if batch.is_empty() {
                break;
            }
            position += batch.len() as u64;
        }
        return Ok(end);
    }
    // Filtered: `read_all_filtered` judges each event from the index (stream, type id)
    // and reads only the matching records.
    while position <= last {
        let (batch, next) = store
            .read_all_filtered(position, pages.next(), filter)
            .map_err(fail)?;
        for e in batch.iter() {
            if e.global_position > last || matches!(visit(&e)?, Flow::Stop) {
                return Ok(end);
            }
        }
        if next <= position {
            break;
        }
        position = next;
    }
    Ok(end)
}

/// A view of an event read whole (by a backward read), to show it as any other.
pub fn view(e: &RecordedEvent) -> RecordView<'_> {
    RecordView {
        global_position: e.global_position,
        stream_version: e.stream_version,
        recorded_at: e.recorded_at,
        stream_id: e.stream_id,
        event_id: e.event_id,
        event_type: &e.event_type,
        event_type_with_nul: &[],
        metadata: &e.metadata,
        payload: &e.payload,
    }
}

/// Every stream from the `from`th in creation order, at most `limit`, through
/// `Store::list_streams`, a page at a time; `visit` may stop the walk.
pub fn list_streams(
    store: &Store,
    from: u64,
    limit: Option<u64>,
    visit: &mut dyn FnMut(u64, &StreamInfo) -> Result<Flow>,
) -> Result<()> {
    let mut index = from;
    let mut left = limit.unwrap_or(u64::MAX);
    while left > 0 {
        let page = store.list_streams(index, left.min(PAGE));
        if page.is_empty() {
            break;
        }
        for s in &page {
            if let Flow::Stop = visit(index, s)? {
                return Ok(());
            }
            index += 1;
        }
        left -= page.len() as u64;
    }
    Ok(())
}

/// The first position of the batch of each event a command shows (the JSON key
/// `batch_position`), through `Store::batch_bounds`: asked once per batch, since events
/// come in order (or in reverse order) and the last answer is kept.
#[derive(Default)]
pub struct BatchOf(std::ops::Range<u64>);

impl BatchOf {
    pub fn of(&mut self, store: &Store, position: u64) -> u64 {
        if !self.0.contains(&position) {
            // Unknown only for an event the handle has not read: it is its own batch.
            self.0 = store
                .batch_bounds(position)
                .unwrap_or(position..position + 1);
        }
        self.0.start
    }
}
