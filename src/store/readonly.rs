//! Read-only handles: open the file read-only, take no lock, never write; scan like
//! recovery but ignore (never repair) a torn tail; later extend the index by resuming
//! the scan, up to the writer's published durable end.
//!
//! The visibility rule: a read-only handle reads up to
//! - the durable end published in the side file, while a writer is live (so a batch
//!   written but not yet synced is never seen, whole or in part);
//! - the valid prefix of the file, while no writer is live (what the next writer's
//!   recovery would keep). A scan made that way is kept only if no writer became live
//!   during it; otherwise it is redone up to the published end.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::SystemTime;

use uuid::Uuid;

use crate::codec::{self, FILE_HEADER_LEN};
use crate::error::Error;
use crate::store::index::{Index, IndexBuilder, LogSource, RecordLocation, Run};
use crate::store::io::{self, StorageFile};
use crate::store::ondisk;
use crate::store::recovery::{self, Sink};
use crate::store::shared::{self, SideFile};
use std::sync::Arc;

/// The state of a read-only handle.
#[derive(Debug)]
pub(crate) struct Follower {
    side_path: PathBuf,
    tail: Mutex<Tail>,
    /// Delta log bytes at which the handle re-reads the latest manifest.
    reload_bytes: u64,
}

#[derive(Debug, Default)]
struct Tail {
    /// The store's salt, once the file has a header.
    salt: Option<u64>,
    /// The file's format version (a writer may raise it from 1 to 2 while we follow).
    version: u16,
    /// End of what the index holds.
    end: u64,
    /// `group_start` of the last batch the index holds (recovery's judgement of what
    /// follows it needs it).
    last_group: Option<u64>,
    /// What the file looked like when it was last scanned without a live writer, so
    /// that an unchanged file (and its torn tail) is not scanned again.
    seen: Option<FileStamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    generation: Option<u64>,
}

/// Where a scan may go.
enum Bound {
    /// Up to the writer's published end, every batch must check out.
    Published(shared::Published),
    /// No writer: up to the end of the file, a torn tail ignored.
    File(u64, FileStamp),
}

impl Follower {
    pub fn new(path: &Path, reload_bytes: u64) -> Follower {
        Follower {
            side_path: shared::side_path(path),
            tail: Mutex::new(Tail::default()),
            reload_bytes,
        }
    }

    /// The format version of the file's header as last read.
    pub fn version(&self) -> u16 {
        self.tail.lock().unwrap_or_else(|p| p.into_inner()).version
    }

    /// Opens the index of a read-only handle: everything visible now.
    pub fn open(
        &self,
        raw: &File,
        file: &dyn StorageFile,
        side: &OnceLock<SideFile>,
        path: &Path,
    ) -> Result<Index, Error> {
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        if !self.learn_salt(&mut tail, file, path)? {
            return Ok(Index::default());
        }
        let salt = tail.salt.expect("learnt");
        loop {
            let bound = self.bound(raw, file, side, salt, path)?;
            let (limit, stamp) = match bound {
                Bound::Published(p) => (p.end, None),
                Bound::File(len, stamp) => (len, Some(stamp)),
            };
            let source = Arc::new(LogSource {
                file: raw.try_clone().map_err(|e| {
                    Error::io(format!("duplicate the handle of {}", path.display()), e)
                })?,
                salt,
                version: codec::FORMAT_VERSION,
            });
            // Through the index file when one binds to what is visible (opened
            // read-only, never written); else the whole visible log.
            let (mut builder, start, last_group) =
                match ondisk::load(path, file, limit, salt, Arc::clone(&source), false) {
                    Ok(l) => (IndexBuilder::on(l.index), l.covered, Some(l.last_group)),
                    Err(why) => {
                        tracing::debug!(%why, "read-only open without the index file");
                        (IndexBuilder::default(), FILE_HEADER_LEN as u64, None)
                    }
                };
            let scanned = recovery::scan_into(
                file,
                limit,
                salt,
                tail.version,
                start,
                last_group,
                &mut builder,
            )?;
            let (end, torn) = (scanned.end, scanned.torn_tail);
            if let Bound::Published(p) = bound {
                check_published(end, torn, builder.event_count(), p)?;
            } else if shared::writer_is_live(raw).map_err(|e| lock_error(path, e))? {
                // A writer started during the scan: what it wrote may not be durable.
                continue;
            } else if end < limit {
                refuse_acknowledged_tail(
                    path,
                    file,
                    limit,
                    salt,
                    end,
                    builder.event_count(),
                    &torn,
                )?;
            }
            tail.end = end;
            tail.last_group = scanned.last_group;
            tail.seen = stamp;
            let mut index = builder.build();
            index.set_log(source);
            return Ok(index);
        }
    }

    /// Extends `index` with what became visible since the last call.
    pub fn refresh(
        &self,
        raw: &File,
        file: &dyn StorageFile,
        side: &OnceLock<SideFile>,
        index: &RwLock<Index>,
        path: &Path,
    ) -> Result<(), Error> {
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        if tail.salt.is_none() {
            if !self.learn_salt(&mut tail, file, path)? {
                return Ok(());
            }
            tail.end = FILE_HEADER_LEN as u64;
        }
        let salt = tail.salt.expect("learnt");
        loop {
            let bound = self.bound(raw, file, side, salt, path)?;
            if tail.version < codec::FORMAT_VERSION {
                // The writer rewrites (and syncs) the header as version 2 before the
                // first batch that needs it: read it again once the bound is known.
                self.learn_salt(&mut tail, file, path)?;
            }
            let limit = match &bound {
                Bound::Published(p) if p.end < tail.end => {
                    return Err(Error::io(
                        format!(
                            "follow {}: the writer publishes a durable end ({}) before what \
                             this handle has read ({}); the store was cut back",
                            path.display(),
                            p.end,
                            tail.end
                        ),
                        std::io::Error::from_raw_os_error(libc::ESTALE),
                    ))
                }
                Bound::Published(p) if p.end == tail.end => return Ok(()),
                Bound::Published(p) => p.end,
                Bound::File(_, stamp) if tail.seen == Some(*stamp) => return Ok(()),
                Bound::File(len, _) => *len,
            };
            let base = index.read().unwrap_or_else(|p| p.into_inner());
            let mut pending = Pending::new(&base);
            let (end, torn, last_group) = if limit > tail.end {
                let scanned = recovery::scan_into(
                    file,
                    limit,
                    salt,
                    tail.version,
                    tail.end,
                    tail.last_group,
                    &mut pending,
                )?;
                (scanned.end, scanned.torn_tail, scanned.last_group)
            } else {
                (tail.end, None, tail.last_group)
            };
            let count = pending.event_count();
            match bound {
                Bound::Published(p) => check_published(end, torn, count, p)?,
                Bound::File(..) => {
                    if shared::writer_is_live(raw).map_err(|e| lock_error(path, e))? {
                        continue;
                    }
                    if end < limit {
                        refuse_acknowledged_tail(path, file, limit, salt, end, count, &torn)?;
                    }
                }
            }
            let additions = pending.into_additions();
            drop(base);
            if !additions.batches.is_empty() {
                let mut ix = index.write().unwrap_or_else(|p| p.into_inner());
                additions.apply(&mut ix);
            }
            tail.end = end;
            tail.last_group = last_group;
            tail.seen = match bound {
                Bound::File(_, stamp) => Some(stamp),
                Bound::Published(_) => None,
            };
            let delta = index
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .unwritten_log_bytes();
            if delta >= self.reload_bytes {
                self.reload(file, index, path, salt, tail.version, end);
            }
            return Ok(());
        }
    }

    /// Replaces the index by the latest manifest of the index file plus a scan of what
    /// follows it up to `end` (what this handle has already checked), when that covers
    /// more than the index holds: the delta the handle built from its own scans is
    /// dropped, so its memory stays bounded like the writer's. Nothing changes when
    /// the file offers nothing newer or anything disagrees (the handle goes on with
    /// its delta).
    fn reload(
        &self,
        file: &dyn StorageFile,
        index: &RwLock<Index>,
        path: &Path,
        salt: u64,
        version: u16,
        end: u64,
    ) {
        let (source, covered_now, count) = {
            let ix = index.read().unwrap_or_else(|p| p.into_inner());
            match ix.log_source() {
                Some(s) => (s, ix.disk_covered(), ix.event_count()),
                None => return,
            }
        };
        let Ok(loaded) = ondisk::load(path, file, end, salt, Arc::clone(&source), false) else {
            return;
        };
        if loaded.covered <= covered_now {
            return;
        }
        let mut builder = IndexBuilder::on(loaded.index);
        match recovery::scan_into(
            file,
            end,
            salt,
            version,
            loaded.covered,
            Some(loaded.last_group),
            &mut builder,
        ) {
            Ok(s) if s.end == end && builder.event_count() == count => {
                let mut fresh = builder.build();
                fresh.set_log(source);
                *index.write().unwrap_or_else(|p| p.into_inner()) = fresh;
            }
            _ => {}
        }
    }

    /// Reads the header if the file has one yet; `false` for a file that is still
    /// empty (or holds the first bytes of a header being created): an empty store.
    fn learn_salt(
        &self,
        tail: &mut Tail,
        file: &dyn StorageFile,
        path: &Path,
    ) -> Result<bool, Error> {
        let shown = path.display();
        let len = file
            .file_len()
            .map_err(|e| Error::io(format!("stat {shown}"), e))?;
        let mut head = vec![0u8; FILE_HEADER_LEN.min(len as usize)];
        io::read_exact_at(file, &mut head, 0)
            .map_err(|e| Error::io(format!("read the header of {shown}"), e))?;
        match codec::decode_file_header_version(&head) {
            Ok((salt, version)) => {
                if tail.salt.is_none() {
                    tail.end = FILE_HEADER_LEN as u64;
                }
                tail.salt = Some(salt);
                tail.version = version;
                Ok(true)
            }
            // A header torn while a writer upgraded it to version 2 (the writer repairs
            // it on its next open): it can only hold single-stream batches, read as
            // version 1.
            Err(_) if tail.salt.is_none() && codec::torn_upgrade(&head).is_some() => {
                tail.salt = codec::torn_upgrade(&head);
                tail.version = codec::FORMAT_VERSION_1;
                tail.end = FILE_HEADER_LEN as u64;
                Ok(true)
            }
            Err(_) if tail.salt.is_some() => Ok(true),
            Err(_) if len <= FILE_HEADER_LEN as u64 && codec::is_interrupted_creation(&head) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// How far a scan may go now.
    fn bound(
        &self,
        raw: &File,
        file: &dyn StorageFile,
        side: &OnceLock<SideFile>,
        salt: u64,
        path: &Path,
    ) -> Result<Bound, Error> {
        let side_file = self.side(side, path)?;
        if shared::writer_is_live(raw).map_err(|e| lock_error(path, e))? {
            let refused = |why: &str| {
                Error::io(
                    format!(
                        "open {} read-only beside its live writer: {why}, so the durable \
                         end is unknown",
                        path.display()
                    ),
                    std::io::Error::from_raw_os_error(libc::ENOLCK),
                )
            };
            let Some(side_file) = side_file else {
                return Err(refused(&format!(
                    "the writer publishes no side file ({} is missing or unreadable)",
                    self.side_path.display()
                )));
            };
            if !shared::writer_publishes(raw).map_err(|e| lock_error(path, e))? {
                // A side file is there, but not the live writer's (it could not open
                // it): its page is stale.
                return Err(refused(&format!(
                    "the writer could not open its side file {}",
                    self.side_path.display()
                )));
            }
            let page = side_file.read();
            if !side_file
                .held_by_a_writer()
                .map_err(|e| lock_error(path, e))?
            {
                // The live writer publishes into the side file of another name of the
                // store (a hard link); this one is an earlier writer's, and stale.
                return Err(refused(&format!(
                    "{} is not the live writer's side file (it opened the store by another \
                     name, such as a hard link: open it by the writer's name)",
                    self.side_path.display()
                )));
            }
            return match page {
                Some(p) if p.salt == salt => Ok(Bound::Published(p)),
                Some(_) => Err(refused(&format!(
                    "{} belongs to another store",
                    self.side_path.display()
                ))),
                None => Err(refused(&format!(
                    "{} holds no valid page",
                    self.side_path.display()
                ))),
            };
        }
        // No writer on this file. When the path names another file now (the store was
        // restored or recreated under it), following this one would wait forever on a
        // file nobody writes any more: say so instead.
        if let (Ok(here), Ok(now)) = (raw.metadata(), std::fs::metadata(path)) {
            use std::os::unix::fs::MetadataExt;
            if (here.dev(), here.ino()) != (now.dev(), now.ino()) {
                return Err(Error::io(
                    format!(
                        "follow {}: the store file was replaced by another (restored or \
                         recreated) since this handle opened it; open it again to follow \
                         the new one",
                        path.display()
                    ),
                    std::io::Error::from_raw_os_error(libc::ESTALE),
                ));
            }
        }
        let meta_len = file
            .file_len()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        let stamp = FileStamp {
            len: meta_len,
            modified: raw.metadata().ok().and_then(|m| m.modified().ok()),
            generation: side_file.and_then(|s| s.read()).map(|p| p.generation),
        };
        Ok(Bound::File(meta_len, stamp))
    }

    /// The side file, mapped on first sight (it may appear when a writer starts).
    fn side<'s>(
        &self,
        side: &'s OnceLock<SideFile>,
        path: &Path,
    ) -> Result<Option<&'s SideFile>, Error> {
        if let Some(s) = side.get() {
            return Ok(Some(s));
        }
        match SideFile::open_for_reader(&self.side_path) {
            Ok(Some(s)) => Ok(Some(side.get_or_init(|| s))),
            Ok(None) => Ok(None),
            // Unreadable (permissions): as if absent; beside a live writer that refuses.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(None),
            Err(e) => Err(Error::io(
                format!(
                    "map the side file {} of {}",
                    self.side_path.display(),
                    path.display()
                ),
                e,
            )),
        }
    }
}

/// What a writer's open would refuse to cut (`format.md`, rule 3 with an index file)
/// is damage to a reader too, at open as when it catches up later: `CorruptRecord` at
/// `end` (event `position`), not a torn tail to stop before.
fn refuse_acknowledged_tail(
    path: &Path,
    file: &dyn StorageFile,
    limit: u64,
    salt: u64,
    end: u64,
    position: u64,
    torn: &Option<String>,
) -> Result<(), Error> {
    match ondisk::acknowledged_past(path, file, limit, salt, end) {
        None => Ok(()),
        Some(why) => Err(Error::CorruptRecord {
            position,
            offset: end,
            detail: format!(
                "{}; {why}: the bytes from here on are damaged acknowledged data, not a \
                 torn write",
                torn.as_deref().unwrap_or("the batches end here")
            ),
        }),
    }
}

fn lock_error(path: &Path, e: std::io::Error) -> Error {
    Error::io(
        format!("test whether a writer has {} open", path.display()),
        e,
    )
}

/// The data up to a published durable end must check out exactly.
fn check_published(
    end: u64,
    torn: Option<String>,
    count: u64,
    p: shared::Published,
) -> Result<(), Error> {
    if end != p.end || count != p.count {
        return Err(Error::CorruptRecord {
            position: count,
            offset: end,
            detail: format!(
                "{}; the writer published {} events ending at byte offset {}",
                torn.unwrap_or_else(|| "the data disagrees with the side file".into()),
                p.count,
                p.end
            ),
        });
    }
    Ok(())
}

/// Batches found by a resumed scan, checked against the index they will extend.
struct Pending<'a> {
    base: &'a Index,
    next_versions: HashMap<Uuid, u64>,
    additions: Additions,
}

#[derive(Default)]
struct Additions {
    /// Each batch: its runs (one per stream) and its range of `locations`.
    batches: Vec<(Vec<Run>, std::ops::Range<usize>)>,
    locations: Vec<RecordLocation>,
    /// Per event: its id (noted before its batch is accepted; see `truncate_ids`).
    ids: Vec<Uuid>,
    types: Vec<u8>,
    type_ends: Vec<usize>,
}

impl<'a> Pending<'a> {
    fn new(base: &'a Index) -> Self {
        Pending {
            base,
            next_versions: HashMap::new(),
            additions: Additions::default(),
        }
    }

    fn into_additions(self) -> Additions {
        self.additions
    }

    fn next_version(&self, stream_id: &Uuid) -> u64 {
        match self.next_versions.get(stream_id) {
            Some(&v) => v,
            None => self.base.stream_version(stream_id).map_or(0, |v| v + 1),
        }
    }
}

impl Sink for Pending<'_> {
    fn event_count(&self) -> u64 {
        self.base.event_count() + self.additions.locations.len() as u64
    }

    fn push_id(&mut self, id: &Uuid) {
        self.additions.ids.push(*id);
    }

    fn truncate_ids(&mut self) {
        let n = self.additions.locations.len();
        self.additions.ids.truncate(n);
    }

    fn push_runs(&mut self, runs: &[Run], locations: &[RecordLocation]) -> Result<(), (Uuid, u64)> {
        for r in runs {
            let next = self.next_version(&r.stream_id);
            if next != r.first_version {
                return Err((r.stream_id, next));
            }
        }
        for r in runs {
            self.next_versions
                .insert(r.stream_id, r.first_version + r.count);
        }
        let a = &mut self.additions;
        let start = a.locations.len();
        a.locations.extend_from_slice(locations);
        a.batches.push((runs.to_vec(), start..a.locations.len()));
        Ok(())
    }

    fn push_types<'t>(&mut self, names: impl Iterator<Item = &'t [u8]>) {
        let a = &mut self.additions;
        for name in names {
            a.types.extend_from_slice(name);
            a.type_ends.push(a.types.len());
        }
    }
}

impl Additions {
    fn apply(self, index: &mut Index) {
        debug_assert_eq!(self.ids.len(), self.locations.len());
        for (runs, range) in self.batches {
            let pushed = index.push_append(
                &runs,
                self.locations[range.clone()].iter().copied(),
                self.ids[range.clone()].iter().copied(),
            );
            debug_assert!(pushed.is_ok(), "checked against this index by the scan");
            let types = &self.types;
            let ends = &self.type_ends;
            index.push_types(range.map(|i| {
                let start = if i == 0 { 0 } else { ends[i - 1] };
                &types[start..ends[i]]
            }));
        }
    }
}

impl super::Store {
    /// [`super::Store::open_with`] for `OpenOptions::read_only`.
    pub(super) fn open_read_only(
        path: &Path,
        options: super::OpenOptions,
    ) -> Result<super::Store, Error> {
        let shown = path.display().to_string();
        let raw = File::open(path).map_err(|e| Error::io(format!("open {shown} read-only"), e))?;
        let handle = raw
            .try_clone()
            .map_err(|e| Error::io(format!("duplicate the handle of {shown}"), e))?;
        let file: Box<dyn StorageFile> = match options.wrapper {
            Some(wrap) => wrap(handle),
            None => Box::new(handle),
        };
        let follower = Follower::new(path, options.checkpoints.ask_bytes);
        let side = OnceLock::new();
        let index = follower.open(&raw, file.as_ref(), &side, path)?;
        // Of the header as it was read (an empty file: the version a writer gives it).
        let format_version = {
            let mut head = [0u8; codec::HEADER_LEN];
            match io::read_exact_at(file.as_ref(), &mut head, 0) {
                Ok(()) => codec::decode_header(&head).unwrap_or(codec::FORMAT_VERSION),
                Err(_) => codec::FORMAT_VERSION,
            }
        };
        let end = follower.tail.lock().unwrap_or_else(|p| p.into_inner()).end;
        Ok(super::Store {
            writer: std::sync::Mutex::new(super::writer::Writer::new(
                end,
                end,
                false,
                shown,
                format_version,
            )),
            path: path.to_path_buf(),
            file,
            _lock: raw,
            salt: 0,
            follower: Some(follower),
            side,
            wakeup: super::follow::Wakeup::default(),
            index: std::sync::Arc::new(RwLock::new(index)),
            checkpointer: None,
            queue: std::sync::Mutex::new(super::Queue::default()),
            closed: false,
            fork_generation: super::fork::generation(),
            format_version: std::sync::atomic::AtomicU16::new(format_version),
            // A read-only handle never cuts anything off.
            recovered_bytes_dropped: 0,
            poisoned: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether this handle was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.follower.is_some()
    }

    /// Refuses writes on a read-only handle.
    pub(super) fn check_writable(&self) -> Result<(), Error> {
        self.check_process()?;
        if self.is_read_only() {
            return Err(Error::ReadOnly {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Whether this handle belongs to this process: `InvalidArgument` for a copy
    /// inherited by a child made by `fork()` (see `fork.rs`), which must open the store
    /// again. Writes check it; the C ABI checks it on every call.
    pub(crate) fn check_process(&self) -> Result<(), Error> {
        if self.fork_generation == super::fork::generation() {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "{}: this handle was opened by a parent process before fork(); a child process cannot use it: open the store again in the child",
            self.path.display()
        )))
    }

    /// Extends a read-only handle's index with what became visible (no-op for the
    /// writer, whose index is the source).
    pub(crate) fn refresh(&self) -> Result<(), Error> {
        match &self.follower {
            None => Ok(()),
            Some(f) => {
                f.refresh(
                    &self._lock,
                    self.file.as_ref(),
                    &self.side,
                    &self.index,
                    &self.path,
                )?;
                // The writer may have upgraded the header (version 1 to 2) meanwhile.
                self.format_version
                    .fetch_max(f.version(), std::sync::atomic::Ordering::AcqRel);
                Ok(())
            }
        }
    }

    /// [`Self::refresh`] for calls that cannot report a failure: the next read that
    /// meets it reports it.
    pub(crate) fn refresh_quietly(&self) {
        if let Err(e) = self.refresh() {
            tracing::debug!(error = %e, "a read-only handle could not catch up");
        }
    }
}
