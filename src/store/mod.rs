//! `Store`: one append-only file, opened with recovery, written by group commit, read
//! through an index of file offsets.
//!
//! Threads: a `Store` is `Send + Sync`. Appends from many threads are committed in
//! groups (see [`writer`]); reads run concurrently with appends and never wait for an
//! fsync.

mod copy;
pub(crate) use copy::copy_bytes;
mod dedup;
mod follow;
mod fork;
pub mod ids;
pub mod index;
mod info;
pub mod io;
pub(crate) mod ondisk;
pub(crate) mod read;
mod readonly;
mod recovery;
pub(crate) mod shared;
pub mod types_table;
mod writer;
mod writes;

use std::fs::{File, OpenOptions as FsOpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use uuid::Uuid;

use crate::codec::{self, FILE_HEADER_LEN};
use crate::error::Error;
use crate::types::{AppendResult, ExpectedVersion, ProposedEvent, ProposedEventRef, RecordedEvent};

pub use self::copy::{BackupReport, CopiedBatch, CopiedGroup};
pub use self::follow::Subscription;
use self::index::Index;
pub use self::index::{IndexStats, StreamInfo};
pub use self::info::StoreInfo;
use self::io::StorageFile;
pub(crate) use self::read::advise_huge;
pub use self::read::{EventBatch, EventBatchIter};
pub use self::types_table::Filter;
use self::writer::{Request, Writer};

/// The path of the side file a writer keeps beside the store at `path` (`<path>-shm`,
/// see `docs/format.md`): for tools that build a store under a temporary name and must
/// remove its side file before renaming it (nobody follows a temporary store).
pub fn side_file_path(path: &Path) -> PathBuf {
    shared::side_path(path)
}

/// The path of the index file a writer keeps beside the store at `path`
/// (`<path>-index`, derived data: see `docs/format.md`). A tool that builds a store
/// under a temporary name and renames it should rename this file along (it stays
/// valid: it is bound to the log's salt and content, not to its name) or remove it.
pub fn index_file_path(path: &Path) -> PathBuf {
    ondisk::index_path(path)
}

/// Moves the derived index file of a closed store built at `from` to where the store
/// at `to` looks for it (after the store itself was renamed from `from` to `to`). No
/// index file is fine (small stores have none); one that cannot be moved is removed
/// instead, since the store's open rebuilds it from the log.
pub fn move_index_file(from: &Path, to: &Path) {
    let (src, dst) = (index_file_path(from), index_file_path(to));
    if ondisk::replaceable(&dst).is_err() || std::fs::rename(&src, &dst).is_err() {
        let _ = std::fs::remove_file(&src);
    }
}

/// Wraps the opened file in another [`StorageFile`] (for tests and instrumentation).
pub type StorageWrapper = Box<dyn FnOnce(File) -> Box<dyn StorageFile> + Send>;

/// How to open a store. `Store::open(path)` uses the defaults.
pub struct OpenOptions {
    preallocate: bool,
    wrapper: Option<StorageWrapper>,
    read_only: bool,
    must_exist: bool,
    checkpoints: ondisk::checkpoint::Thresholds,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            preallocate: true,
            wrapper: None,
            read_only: false,
            must_exist: false,
            checkpoints: ondisk::checkpoint::Thresholds::default(),
        }
    }
}

impl OpenOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether appends grow the file in large zero-filled steps, so that each commit's
    /// `fdatasync` has no size change to journal (default: true). The extra space is
    /// cut off again by `close`, and by recovery after a crash.
    pub fn preallocate(mut self, on: bool) -> Self {
        self.preallocate = on;
        self
    }

    /// Opens a read-only handle: the file is opened read-only and never written,
    /// truncated or locked; it may be open beside a writer in any process, from a user
    /// who may only read it. It sees exactly the acknowledged events (a batch written
    /// but not yet synced is invisible); a torn tail is ignored, not repaired. Appends
    /// fail with `Error::ReadOnly`. Nothing is created: a missing file is an I/O error
    /// (`NotFound`), a zero-length file an empty store.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// When the writer checkpoints its index into `<path>-index`: not while less than
    /// `min_bytes` of log are outside it (default 1 MiB), at once when `ask_bytes` are
    /// (default 32 MiB), else every `interval` (default 10 s), and at `close`. For
    /// tests and tools; the defaults suit every store.
    #[doc(hidden)]
    pub fn index_checkpoints(
        mut self,
        min_bytes: u64,
        ask_bytes: u64,
        interval: std::time::Duration,
    ) -> Self {
        self.checkpoints = ondisk::checkpoint::Thresholds {
            min_bytes,
            ask_bytes,
            interval,
            ..self.checkpoints
        };
        self
    }

    /// For tools that build a new store in one go (`eventstore import`, `salvage`):
    /// no index checkpoint until `close`, which writes the index file once, from
    /// memory. Background checkpoints would otherwise write a part every 32 MiB of
    /// log and merge parts by reading the log back, which a copy of gigabytes pays
    /// for many times over. The price: the in-memory index of every event appended
    /// stays in memory until `close` (about 45 bytes per event: `eventstore import` of
    /// 10M events peaks at 470 MB, against 160 MB with checkpoints), and a crash before
    /// `close` leaves no index file (the next open scans the log, as for any store
    /// without one).
    #[doc(hidden)]
    pub fn index_at_close_only(self) -> Self {
        self.index_checkpoints(
            ondisk::checkpoint::MIN_BYTES,
            u64::MAX,
            std::time::Duration::from_secs(u64::from(u32::MAX)),
        )
    }

    /// A scan at open of more than `events` events (no usable index file) keeps no id
    /// hashes in memory (default 2^16; for tests).
    #[doc(hidden)]
    pub fn index_keep_hashes(mut self, events: usize) -> Self {
        self.checkpoints.keep_hashes = events;
        self
    }

    /// Fails with an I/O error (`NotFound`) instead of creating a missing store.
    pub fn must_exist(mut self) -> Self {
        self.must_exist = true;
        self
    }

    /// Routes all file I/O after the lock is taken through `wrap(file)`.
    pub fn storage(
        mut self,
        wrap: impl FnOnce(File) -> Box<dyn StorageFile> + Send + 'static,
    ) -> Self {
        self.wrapper = Some(Box::new(wrap));
        self
    }
}

/// An open event store. Dropping it closes it (see [`Store::close`]).
///
/// A handle belongs to the process that opened it: in a child made by `fork()`, its
/// copy refuses writes (`Error::InvalidArgument` naming `fork()`) and closing the copy
/// leaves the files alone; open the store again in the child.
pub struct Store {
    path: PathBuf,
    file: Box<dyn StorageFile>,
    /// Holds the exclusive `flock` and the live mark for as long as the store is open
    /// (a read-only handle: the file opened read-only, which holds no lock).
    _lock: File,
    salt: u64,
    /// The state of a read-only handle; `None` for the writer.
    follower: Option<readonly::Follower>,
    /// The mapped side file (`<path>-shm`): the writer's from its open on (unless it
    /// could not be created), a reader's from when it first finds one.
    side: OnceLock<shared::SideFile>,
    wakeup: follow::Wakeup,
    index: Arc<RwLock<Index>>,
    /// The writer's index-file checkpoints (`ondisk/checkpoint.rs`); `None` for a
    /// read-only handle.
    checkpointer: Option<ondisk::checkpoint::Checkpointer>,
    writer: Mutex<Writer>,
    queue: Mutex<Queue>,
    closed: bool,
    /// The file's format version, from its header; 2 once the writer has upgraded a
    /// version-1 file (copied from the writer after each group commit, readable
    /// without waiting for the writer lock).
    format_version: std::sync::atomic::AtomicU16,
    /// Bytes this open's recovery cut off the end of the file (0: none).
    recovered_bytes_dropped: u64,
    /// Set once appends are refused (a failed write or sync, a panic): readable
    /// without waiting for the writer lock.
    poisoned: AtomicBool,
    /// The process generation the handle was opened in (see `fork.rs`): a copy of it
    /// in a child made by `fork()` refuses writes and leaves the files alone.
    fork_generation: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("events", &self.global_position())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at `path`, creating it if it does not exist, and recovers it:
    /// a torn tail left by a crash is cut off; damage followed by valid data fails with
    /// `Error::CorruptRecord` and leaves the file untouched. Takes an exclusive lock:
    /// a second open of the same file fails with `Error::Locked` until this one closes.
    pub fn open(path: &Path) -> Result<Store, Error> {
        Self::open_with(path, OpenOptions::default())
    }

    /// [`Store::open`] with options.
    ///
    /// A `path` that is a symbolic link is followed to the store file itself, whose
    /// side file and index file lie beside it, so that every name of a store leads to
    /// the same ones; a relative path is made absolute, so that a later `chdir` of the
    /// process does not move where the index file is written. The handle reports that
    /// path ([`Store::path`]).
    pub fn open_with(path: &Path, options: OpenOptions) -> Result<Store, Error> {
        let followed = follow_links(path);
        // An unreadable working directory leaves the path as given: the open then
        // reports what it finds there.
        let path = &std::path::absolute(&followed).unwrap_or(followed);
        if options.read_only {
            return Self::open_read_only(path, options);
        }
        let shown = path.display().to_string();
        let lock = FsOpenOptions::new()
            .read(true)
            .write(true)
            .create(!options.must_exist)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(format!("open {shown}"), e))?;
        // Only a regular file is a store: a block device's length reads as 0, which
        // would make the open write a new store's header over whatever it holds.
        let kind = lock
            .metadata()
            .map_err(|e| Error::io(format!("stat {shown}"), e))?
            .file_type();
        if !kind.is_file() {
            return Err(Error::io(
                format!(
                    "open {shown}: not a regular file ({}); a store is one",
                    file_kind(kind)
                ),
                std::io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("lock {shown}"), e))
            }
        }
        let handle = lock
            .try_clone()
            .map_err(|e| Error::io(format!("duplicate the handle of {shown}"), e))?;
        let file: Box<dyn StorageFile> = match options.wrapper {
            Some(wrap) => wrap(handle),
            None => Box::new(handle),
        };
        let file_len = file
            .file_len()
            .map_err(|e| Error::io(format!("stat {shown}"), e))?;

        let mut head = vec![0u8; FILE_HEADER_LEN.min(file_len as usize)];
        io::read_exact_at(file.as_ref(), &mut head, 0)
            .map_err(|e| Error::io(format!("read the header of {shown}"), e))?;
        let log_source = |salt: u64| -> Result<Arc<index::LogSource>, Error> {
            Ok(Arc::new(index::LogSource {
                file: lock
                    .try_clone()
                    .map_err(|e| Error::io(format!("duplicate the handle of {shown}"), e))?,
                salt,
                // Rebuilding a segment reads batches as version 2, which reads every
                // batch version 1 does.
                version: codec::FORMAT_VERSION,
            }))
        };
        let mut index_writer = None;
        let (salt, version, mut scan) = match codec::decode_file_header_version(&head) {
            Ok((salt, version)) => {
                let source = log_source(salt)?;
                let scan = match ondisk::load(
                    path,
                    file.as_ref(),
                    file_len,
                    salt,
                    Arc::clone(&source),
                    true,
                ) {
                    Ok(loaded) => {
                        index_writer = loaded.writer;
                        recovery::scan_from(
                            file.as_ref(),
                            file_len,
                            salt,
                            version,
                            index::IndexBuilder::on(loaded.index),
                            loaded.covered,
                            Some(loaded.last_group),
                        )?
                    }
                    Err(why) => {
                        // Not through `crate::log`: the usual case for small stores,
                        // not worth a C callback's attention.
                        tracing::debug!(path = %shown, %why, "no usable index file; scanning the log");
                        recovery::scan_from(
                            file.as_ref(),
                            file_len,
                            salt,
                            version,
                            index::IndexBuilder::default()
                                .keep_hashes(options.checkpoints.keep_hashes),
                            FILE_HEADER_LEN as u64,
                            None,
                        )?
                    }
                };
                (salt, version, scan)
            }
            Err(_) if file_len > FILE_HEADER_LEN as u64 && codec::torn_upgrade(&head).is_some() => {
                let salt = codec::torn_upgrade(&head).expect("checked");
                let scan = repair_torn_header(file.as_ref(), file_len, salt, path)?;
                (salt, codec::FORMAT_VERSION_1, scan)
            }
            // Only a file no longer than a header can be an interrupted creation: `head`
            // is just the first bytes of a longer file, whose damaged header (salt or
            // CRC) must fail the open rather than have the store re-initialised over it.
            Err(_)
                if file_len <= FILE_HEADER_LEN as u64 && codec::is_interrupted_creation(&head) =>
            {
                let salt = initialise(file.as_ref(), path)?;
                let scan = recovery::Scan {
                    index: Index::default(),
                    end: FILE_HEADER_LEN as u64,
                    torn_tail: None,
                    multi_stream_batches: 0,
                };
                (salt, codec::FORMAT_VERSION, scan)
            }
            Err(Error::InvalidHeader { cause, .. }) => {
                return Err(Error::InvalidHeader {
                    path: path.to_path_buf(),
                    cause,
                })
            }
            Err(e) => return Err(e),
        };
        let file_len = file_len.max(FILE_HEADER_LEN as u64);
        let mut recovered_bytes_dropped = 0;
        if scan.end < file_len {
            // Without an index file, damage reaching into the last write looks like a
            // torn write; a manifest covering the bytes to be cut proves they were
            // acknowledged, and then cutting them would destroy acknowledged data.
            if let Some(why) =
                ondisk::acknowledged_past(path, file.as_ref(), file_len, salt, scan.end)
            {
                return Err(Error::CorruptRecord {
                    position: scan.index.event_count(),
                    offset: scan.end,
                    detail: format!(
                        "{}; {why}: the bytes from here on are damaged acknowledged data, \
                         not a torn write (the file is left as it is; if the log was \
                         restored from an older copy beside a newer index file, delete \
                         the index file)",
                        scan.torn_tail.as_deref().unwrap_or("the batches end here")
                    ),
                });
            }
            file.set_len(scan.end)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io(format!("truncate {shown} to {} bytes", scan.end), e))?;
            recovered_bytes_dropped = file_len - scan.end;
            let why = match &scan.torn_tail {
                Some(why) => format!("a torn tail: {why}"),
                None => "preallocated space".into(),
            };
            crate::log::log(
                crate::log::Level::Warn,
                &format!(
                    "recovery of {shown}: cut off {recovered_bytes_dropped} bytes at byte offset {} ({why})",
                    scan.end
                ),
            );
        }
        let side = OnceLock::new();
        match shared::SideFile::open_for_writer(
            &shared::side_path(path),
            &lock,
            salt,
            scan.end,
            scan.index.event_count(),
        ) {
            Ok(s) => {
                let _ = side.set(s);
            }
            Err(e) => crate::log::log(
                crate::log::Level::Warn,
                &format!(
                    "no side file {}-shm ({e}): read-only handles cannot follow this writer",
                    shown
                ),
            ),
        }
        // Only now, with the side file ready, do readers learn that a writer is live.
        shared::hold_live_mark(&lock, side.get().is_some())
            .map_err(|e| Error::io(format!("take the live mark of {shown}"), e))?;
        let source = log_source(salt)?;
        scan.index.set_log(Arc::clone(&source));
        let keys = scan.index.keys();
        let index = Arc::new(RwLock::new(scan.index));
        let checkpointer = ondisk::checkpoint::Checkpointer::start(ondisk::checkpoint::Job {
            index: Arc::clone(&index),
            writer: Mutex::new(
                index_writer.unwrap_or_else(|| ondisk::IndexWriter::fresh(path, salt, keys)),
            ),
            log: source,
            thresholds: options.checkpoints,
            failed_at: Mutex::new(None),
            failed_merges: Mutex::new(Vec::new()),
        });
        checkpointer.ask_if(read_lock(&index).delta_log_bytes());
        let store = Store {
            checkpointer: Some(checkpointer),
            follower: None,
            side,
            wakeup: follow::Wakeup::default(),
            writer: Mutex::new(Writer::new(
                scan.end,
                scan.end,
                options.preallocate,
                shown,
                version,
            )),
            path: path.to_path_buf(),
            file,
            _lock: lock,
            salt,
            index,
            queue: Mutex::new(Queue::default()),
            closed: false,
            fork_generation: fork::generation(),
            format_version: std::sync::atomic::AtomicU16::new(version),
            recovered_bytes_dropped,
            poisoned: AtomicBool::new(false),
        };
        store.resume_commit_times();
        Ok(store)
    }

    /// Commit times never go back along the log, across opens too: a writer stamps no
    /// append earlier than the last event already stored (whose time a clock stepped
    /// back, a restored VM or an imported log may have put ahead of the wall clock).
    /// Best effort: a last event that cannot be read leaves the wall clock alone.
    fn resume_commit_times(&self) {
        let count = self.global_position();
        if count == 0 {
            return;
        }
        if let Ok(last) = self.read_all_batch(count - 1, 1) {
            if let Some(event) = last.iter().next() {
                lock(&self.writer).commit_times_from(event.recorded_at);
            }
        }
    }

    /// The store file's path: the one it was opened with, made absolute, with a
    /// symbolic link followed (see [`Store::open_with`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `proposed_events` to a stream as one atomic batch, if the stream's state
    /// satisfies `expected_version`, and returns them as recorded. When it returns `Ok`
    /// the batch is on stable storage. Nil event ids are replaced with fresh v4 UUIDs.
    ///
    /// Event ids are unique in a store: an exact retry of an acknowledged append (same
    /// stream, same ids, same order) writes nothing and returns the events where they
    /// were recorded, whatever `expected_version` says now; any other reuse of an id is
    /// `Error::DuplicateEventId` (see [`Store::append_multi`]).
    pub fn append(
        &self,
        stream_id: Uuid,
        expected_version: ExpectedVersion,
        proposed_events: Vec<ProposedEvent>,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let mut events = proposed_events;
        for e in &mut events {
            if e.event_id.is_nil() {
                e.event_id = Uuid::new_v4();
            }
        }
        let refs: Vec<ProposedEventRef<'_>> = events.iter().map(ProposedEvent::as_ref).collect();
        let result = self.append_refs(stream_id, expected_version, &refs)?;
        drop(refs);
        Ok(events
            .into_iter()
            .enumerate()
            .map(|(i, e)| RecordedEvent {
                event_id: e.event_id,
                stream_id,
                stream_version: result.first_stream_version + i as u64,
                global_position: result.first_global_position + i as u64,
                recorded_at: result.recorded_at,
                event_type: e.event_type,
                metadata: e.metadata,
                payload: e.payload,
            })
            .collect())
    }

    /// [`Store::append`] for borrowed events: no copy of the events is made besides
    /// their encoding, and only the placement of the batch is returned (with
    /// `deduplicated` set for an exact retry). The same as a one-stream
    /// [`Store::append_multi`].
    pub fn append_refs(
        &self,
        stream_id: Uuid,
        expected_version: ExpectedVersion,
        events: &[ProposedEventRef<'_>],
    ) -> Result<AppendResult, Error> {
        let mut results = self.append_multi(&[crate::types::StreamAppend {
            stream_id,
            expected_version,
            events,
        }])?;
        Ok(results.swap_remove(0))
    }

    fn commit(&self, request: Request) -> writer::Outcome {
        let slot = Arc::clone(&request.answer);
        let lead_now = {
            let mut queue = lock(&self.queue);
            queue.requests.push(request);
            !std::mem::replace(&mut queue.leader, true)
        };
        if !lead_now {
            match slot.wait() {
                writer::Wakeup::Done(result) => return result,
                writer::Wakeup::Lead => {}
            }
        }
        self.lead();
        slot.take().unwrap_or_else(|| {
            Err(Error::Poisoned {
                cause: "an append was lost by the group commit (a bug)".into(),
            })
        })
    }

    /// Commits everything queued as one group, wakes the group's requests with their
    /// answers, then hands the leadership on.
    fn lead(&self) {
        let group = {
            let mut queue = lock(&self.queue);
            if queue.last_group > 1 && queue.requests.len() < queue.last_group {
                // Other appenders were at work a moment ago and have not queued yet
                // (they are being woken): give them the CPU once so that they join
                // this group instead of waiting a whole fsync for the next one.
                drop(queue);
                std::thread::yield_now();
                queue = lock(&self.queue);
            }
            queue.last_group = queue.requests.len();
            std::mem::take(&mut queue.requests)
        };
        let mut guard = LeadGuard {
            queue: &self.queue,
            slots: group.iter().map(|r| Arc::clone(&r.answer)).collect(),
            answers: Vec::with_capacity(group.len()),
        };
        match self.writer.lock() {
            Ok(mut writer) => {
                writer.commit_group(
                    self.file.as_ref(),
                    self.salt,
                    &self.index,
                    group,
                    &mut guard.answers,
                );
                if writer.poisoned.is_some() {
                    self.poisoned.store(true, Ordering::Release);
                }
                self.format_version
                    .store(writer.format_version, Ordering::Release);
                // Before anyone is answered: an acknowledged event is visible everywhere.
                self.published(writer.end);
                if let Some(c) = &self.checkpointer {
                    c.ask_if(read_lock(&self.index).delta_log_bytes());
                }
            }
            Err(_) => {
                self.poisoned.store(true, Ordering::Release);
                for r in group {
                    guard.answers.push((
                        r.answer,
                        Err(Error::Poisoned {
                            cause: "an earlier append panicked".into(),
                        }),
                    ));
                }
            }
        }
        // Dropping the guard hands on the leadership and delivers the answers.
    }

    /// Events of a stream from `from_version`, at most `max_count` of them, in version
    /// order. A stream with no events is `Error::StreamNotFound`; a start past its end
    /// gives an empty result.
    pub fn read_stream(
        &self,
        stream_id: Uuid,
        from_version: u64,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, Error> {
        Ok(self
            .read_stream_batch(stream_id, from_version, max_count)?
            .to_recorded())
    }

    /// Events of the whole log from `from_position`, at most `max_count`, in order.
    pub fn read_all(
        &self,
        from_position: u64,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, Error> {
        Ok(self.read_all_batch(from_position, max_count)?.to_recorded())
    }

    /// [`Store::read_stream`] into one buffer, without an allocation per event.
    pub fn read_stream_batch(
        &self,
        stream_id: Uuid,
        from_version: u64,
        max_count: u64,
    ) -> Result<EventBatch, Error> {
        let mut batch = EventBatch::default();
        self.read_stream_batch_into(stream_id, from_version, max_count, &mut batch)?;
        Ok(batch)
    }

    /// [`Store::read_all`] into one buffer, without an allocation per event.
    pub fn read_all_batch(&self, from_position: u64, max_count: u64) -> Result<EventBatch, Error> {
        let mut batch = EventBatch::default();
        self.read_all_batch_into(from_position, max_count, &mut batch)?;
        Ok(batch)
    }

    /// [`Store::read_stream_batch`] into `batch`, replacing what it held and reusing
    /// its memory: a reader that reads page after page into one batch touches no
    /// fresh memory once the batch is large enough. On an error `batch` is left empty.
    pub fn read_stream_batch_into(
        &self,
        stream_id: Uuid,
        from_version: u64,
        max_count: u64,
        batch: &mut EventBatch,
    ) -> Result<(), Error> {
        if let Err(e) = self.refresh() {
            batch.clear();
            return Err(e);
        }
        let located = read_lock(&self.index).locate_stream(&stream_id, from_version, max_count);
        let located = match located {
            Ok(l) => l,
            Err(e) => {
                batch.clear();
                return Err(e);
            }
        };
        let Some(located) = located else {
            batch.clear();
            return Err(Error::StreamNotFound { stream_id });
        };
        let expect = read::Expected::Stream {
            id: stream_id,
            first_version: from_version,
        };
        read::read_located(
            self.file.as_ref(),
            &self.path,
            &located,
            expect,
            batch,
            None,
        )
    }

    /// [`Store::read_all_batch`] into `batch`, replacing what it held and reusing its
    /// memory (see [`Store::read_stream_batch_into`]). On an error `batch` is left empty.
    pub fn read_all_batch_into(
        &self,
        from_position: u64,
        max_count: u64,
        batch: &mut EventBatch,
    ) -> Result<(), Error> {
        if let Err(e) = self.refresh() {
            batch.clear();
            return Err(e);
        }
        let located = read_lock(&self.index).locate_range(from_position, max_count);
        let (first, locations) = match located {
            Ok(l) => l,
            Err(e) => {
                batch.clear();
                return Err(e);
            }
        };
        read::read_range(
            self.file.as_ref(),
            &self.path,
            first,
            &locations,
            batch,
            None,
        )
    }

    /// [`Store::read_stream_batch`], calling `visit` with each record as soon as it is
    /// verified (for the C ABI, which builds its event table then).
    pub(crate) fn read_stream_batch_visit(
        &self,
        stream_id: Uuid,
        from_version: u64,
        max_count: u64,
        visit: read::Visitor<'_>,
    ) -> Result<EventBatch, Error> {
        self.read_stream_span_visit(stream_id, |_| (from_version, max_count), visit)
    }

    /// Reads the versions of `stream_id` that `span` picks, `(first, count)` from the
    /// stream's event count (after the catch-up of a read-only handle), into a new
    /// batch in ascending order, calling `visit` with each record as it is verified.
    /// A stream with no events is `Error::StreamNotFound`.
    pub(crate) fn read_stream_span_visit(
        &self,
        stream_id: Uuid,
        span: impl FnOnce(u64) -> (u64, u64),
        visit: read::Visitor<'_>,
    ) -> Result<EventBatch, Error> {
        self.refresh()?;
        let located = {
            let index = read_lock(&self.index);
            let last = index
                .stream_version(&stream_id)
                .ok_or(Error::StreamNotFound { stream_id })?;
            let (from, count) = span(last + 1);
            let located = index
                .locate_stream(&stream_id, from, count)?
                .ok_or(Error::StreamNotFound { stream_id })?;
            (from, located)
        };
        let (from, located) = located;
        let mut batch = EventBatch::default();
        read::read_located(
            self.file.as_ref(),
            &self.path,
            &located,
            read::Expected::Stream {
                id: stream_id,
                first_version: from,
            },
            &mut batch,
            Some(visit),
        )?;
        Ok(batch)
    }

    /// [`Store::read_all_batch`], calling `visit` with each record as soon as it is
    /// verified (for the C ABI).
    pub(crate) fn read_all_batch_visit(
        &self,
        from_position: u64,
        max_count: u64,
        visit: read::Visitor<'_>,
    ) -> Result<EventBatch, Error> {
        self.read_span_visit(|_| (from_position, max_count), visit)
    }

    /// Reads the positions `span` picks, `(first, count)` from the index (after the
    /// catch-up of a read-only handle), into a new batch in ascending order, calling
    /// `visit` with each record as it is verified.
    pub(crate) fn read_span_visit(
        &self,
        span: impl FnOnce(&Index) -> (u64, u64),
        visit: read::Visitor<'_>,
    ) -> Result<EventBatch, Error> {
        self.refresh()?;
        let (first, locations) = {
            let index = read_lock(&self.index);
            let (from, count) = span(&index);
            index.locate_range(from, count)?
        };
        let mut batch = EventBatch::default();
        read::read_range(
            self.file.as_ref(),
            &self.path,
            first,
            &locations,
            &mut batch,
            Some(visit),
        )?;
        Ok(batch)
    }

    /// The last version (0-based) of a stream; `None` when it has no events.
    pub fn stream_version(&self, stream_id: &Uuid) -> Option<u64> {
        self.refresh_quietly();
        read_lock(&self.index).stream_version(stream_id)
    }

    /// The number of events in the log, which is the next global position.
    pub fn global_position(&self) -> u64 {
        self.refresh_quietly();
        read_lock(&self.index).event_count()
    }

    /// Writes a checkpoint of the index now if at least `min_bytes` of log lie outside
    /// the index file (the writer; a read-only handle never writes). Returns whether
    /// one was written. For tests and tools: the writer's thread does this by itself.
    #[doc(hidden)]
    pub fn checkpoint_index(&self, min_bytes: u64) -> bool {
        match &self.checkpointer {
            Some(c) if !self.is_poisoned() => c.job().run(min_bytes),
            _ => false,
        }
    }

    /// Number of parts of the index before its delta (segments of the index file, or
    /// frozen parts being written). For tests and tools.
    #[doc(hidden)]
    pub fn index_parts(&self) -> usize {
        read_lock(&self.index).part_count()
    }

    /// How large the in-memory index is.
    pub fn index_stats(&self) -> IndexStats {
        read_lock(&self.index).stats()
    }

    /// Whether an earlier failure has made the store refuse appends. Never waits.
    pub fn is_poisoned(&self) -> bool {
        // A panic in a group commit poisons the writer's mutex before the flag is set.
        self.poisoned.load(Ordering::Acquire) || self.writer.is_poisoned()
    }

    /// Closes the store: writes the final checkpoint of the index file (when at least
    /// 1 MiB of log lies outside it), cuts the file back to its committed data
    /// (dropping preallocated space), syncs, and releases the lock. Dropping a store does the
    /// same but cannot report a failure.
    pub fn close(mut self) -> Result<(), Error> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), Error> {
        let result = self.cut_and_sync();
        if let Err(e) = &result {
            crate::log::log(
                crate::log::Level::Error,
                &format!("closing the store failed (the next open recovers): {e}"),
            );
        }
        result
    }

    fn cut_and_sync(&mut self) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        if self.check_process().is_err() {
            // A copy inherited through fork(): the parent still owns the files (its
            // log may have grown past this copy's end, which a cut would destroy), and
            // the index thread was not copied, so it cannot be stopped or joined.
            if let Some(c) = self.checkpointer.as_mut() {
                c.abandon();
            }
            return Ok(());
        }
        if self.follower.is_some() {
            // A read-only handle never writes the file.
            return Ok(());
        }
        let poisoned = self.is_poisoned();
        if let Some(c) = self.checkpointer.as_mut() {
            // The final checkpoint: the next open scans only what follows it.
            c.finish(!poisoned);
        }
        let writer = self.writer.get_mut().unwrap_or_else(|p| p.into_inner());
        let (end, file_len) = (writer.end, writer.file_len);
        let current = self.file.file_len().unwrap_or(file_len);
        if current > end {
            self.file
                .set_len(end)
                .and_then(|()| self.file.sync_all())
                .map_err(|e| {
                    Error::io(
                        format!("truncate {} to {end} bytes on close", self.path.display()),
                        e,
                    )
                })?;
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // `close` logs its own failure; a drop has no one else to tell.
        let _ = self.shut_down();
    }
}

/// What a file that is not a regular file is, for messages.
fn file_kind(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_block_device() {
        "a block device"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "a file of another kind"
    }
}

/// `path` with its last component's symbolic links followed (relative targets taken
/// from the link's directory), as SQLite does for its journal and WAL: the files kept
/// beside a store are named after the file, not after one of its names. Directories
/// on the way need no resolving (their files are the same ones by any route). A loop
/// or an unreadable link stops the walk; the open then reports what it finds there.
fn follow_links(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        let is_link = std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink());
        let Some(target) = is_link.then(|| std::fs::read_link(&p).ok()).flatten() else {
            break;
        };
        p = match p.parent() {
            Some(dir) if target.is_relative() => dir.join(target),
            _ => target,
        };
    }
    p
}

/// Opens a file whose header a crash may have torn while upgrading it to version 2
/// (see `codec::torn_upgrade`). Then no batch needs version 2: the file is scanned
/// (as version 2, which reads everything version 1 does) and, if it holds no
/// multi-stream batch, its header is rewritten as the version-1 header it was and
/// synced. A file with multi-stream batches had a synced version-2 header: this one is
/// damaged, which is `InvalidHeader`, and the file is left unchanged.
fn repair_torn_header(
    file: &dyn StorageFile,
    file_len: u64,
    salt: u64,
    path: &Path,
) -> Result<recovery::Scan, Error> {
    let shown = path.display();
    let scan = recovery::scan(file, file_len, salt, codec::FORMAT_VERSION)?;
    if scan.multi_stream_batches > 0 {
        return Err(Error::InvalidHeader {
            path: path.to_path_buf(),
            cause: crate::error::HeaderCause::DamagedChecksum,
        });
    }
    crate::log::log(
        crate::log::Level::Warn,
        &format!("{shown}: repairing a header torn while it was upgraded to format version 2"),
    );
    let header = codec::encode_file_header_version(salt, codec::FORMAT_VERSION_1);
    io::write_all_at(file, &header, 0)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("repair the header of {shown}"), e))?;
    Ok(scan)
}

/// Writes the header of a new store and makes the file and its name durable.
fn initialise(file: &dyn StorageFile, path: &Path) -> Result<u64, Error> {
    let shown = path.display();
    let salt = u64::from_le_bytes(Uuid::new_v4().as_bytes()[..8].try_into().expect("8 bytes"));
    let header = codec::encode_file_header(salt);
    file.set_len(0)
        .and_then(|()| io::write_all_at(file, &header, 0))
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("write the header of {shown}"), e))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    io::sync_dir(dir).map_err(|e| Error::io(format!("fsync directory {}", dir.display()), e))?;
    Ok(salt)
}

/// The appends waiting for the next group commit, and whether a leader is at work.
#[derive(Default)]
struct Queue {
    requests: Vec<Request>,
    leader: bool,
    /// How many requests the last group held.
    last_group: usize,
}

/// Ends a leader's turn, also when its group commit panics: every request of the
/// group gets its answer (one the commit never answered gets `Poisoned`, so that no
/// appender is left waiting), then the leadership goes to the first request queued
/// meanwhile, or lapses.
struct LeadGuard<'a> {
    queue: &'a Mutex<Queue>,
    slots: Vec<writer::Answer>,
    answers: writer::Answers,
}

impl Drop for LeadGuard<'_> {
    fn drop(&mut self) {
        for (slot, result) in self.answers.drain(..) {
            slot.answer(result);
        }
        if std::thread::panicking() {
            crate::log::log(
                crate::log::Level::Error,
                "an append panicked during its group commit (a bug); the store is poisoned until reopened",
            );
            for slot in &self.slots {
                slot.answer_if_waiting(|| {
                    Err(Error::Poisoned {
                        cause: "an append panicked during its group commit".into(),
                    })
                });
            }
        }
        let mut queue = lock(self.queue);
        match queue.requests.first() {
            Some(next) => next.answer.promote(),
            None => queue.leader = false,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_lock(l: &RwLock<Index>) -> std::sync::RwLockReadGuard<'_, Index> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
