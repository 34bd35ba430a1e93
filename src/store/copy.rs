//! Support for tools that copy a log (the `eventstore` command's `import`, `salvage`
//! and `backup`): appending batches with the commit times they had in another log,
//! and copying the acknowledged prefix of a live store.
//!
//! Ordinary applications never need these: [`Store::append`] is the way to write.

use std::fs::OpenOptions as FsOpenOptions;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use uuid::Uuid;

use crate::codec::{self, UnsealedBatch, FILE_HEADER_LEN};
use crate::error::Error;
use crate::store::io::{self, read_exact_at};
use crate::store::writer::{Answer, Part, Request, Wakeup};
use crate::store::{lock, read_lock, Store};
use crate::types::{AppendResult, ExpectedVersion, ProposedEventRef, StreamAppend};

/// One batch for [`Store::append_copied`]: the events of one or several streams (the
/// runs of one batch of another log), appended as one atomic batch as by
/// [`Store::append_multi`], but stamped with `recorded_at` (µs since the Unix epoch)
/// instead of the commit's own time. The events are checked and encoded when the
/// batch is made, so that a tool can queue many batches without keeping the events.
pub struct CopiedBatch {
    pub(crate) parts: CopiedParts,
    pub(crate) batch: UnsealedBatch,
    pub(crate) recorded_at: u64,
}

/// The streams of a copied batch: most have one, kept without an allocation (a copy
/// makes millions of batches).
pub(crate) enum CopiedParts {
    One(Part),
    Many(Vec<Part>),
}

impl std::ops::Deref for CopiedParts {
    type Target = [Part];

    fn deref(&self) -> &[Part] {
        match self {
            CopiedParts::One(p) => std::slice::from_ref(p),
            CopiedParts::Many(v) => v,
        }
    }
}

impl CopiedParts {
    fn into_vec(self) -> Vec<Part> {
        match self {
            CopiedParts::One(p) => vec![p],
            CopiedParts::Many(v) => v,
        }
    }
}

impl std::fmt::Debug for CopiedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopiedBatch")
            .field(
                "streams",
                &self.parts.iter().map(|p| p.stream_id).collect::<Vec<_>>(),
            )
            .field("events", &self.batch.count())
            .field("bytes", &self.batch.len())
            .field("recorded_at", &self.recorded_at)
            .finish()
    }
}

impl CopiedBatch {
    /// A batch of one stream's `events`.
    pub fn new(
        stream_id: Uuid,
        expected_version: ExpectedVersion,
        recorded_at: u64,
        events: &[ProposedEventRef<'_>],
    ) -> Result<CopiedBatch, Error> {
        CopiedBatch::multi(
            recorded_at,
            &[StreamAppend {
                stream_id,
                expected_version,
                events,
            }],
        )
    }

    /// A batch of several streams' runs, in order, as one multi-stream append (format
    /// 2; a single run makes a batch any format can hold). Each run's expected version
    /// is checked when the batch is appended.
    ///
    /// `Error::InvalidArgument`: no runs, a run with no events, a stream given twice,
    /// or a batch too large; an event over the limits is `EventTooLarge` or
    /// `InvalidArgument` as for `append`. Nil event ids are replaced with fresh v4
    /// UUIDs, as by `append`; other ids are not checked at all (see
    /// [`Store::append_copied`]).
    pub fn multi(recorded_at: u64, runs: &[StreamAppend<'_>]) -> Result<CopiedBatch, Error> {
        if runs.is_empty() {
            return Err(Error::InvalidArgument(
                "an append needs at least one stream".into(),
            ));
        }
        for (i, r) in runs.iter().enumerate() {
            if r.events.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "run {i} (stream {}) of a copied batch has no events",
                    r.stream_id
                )));
            }
            for e in r.events {
                codec::check_event(e)?;
            }
        }
        if runs.len() > 1 {
            let mut streams = std::collections::HashSet::with_capacity(runs.len());
            if let Some(r) = runs.iter().find(|r| !streams.insert(r.stream_id)) {
                return Err(Error::InvalidArgument(format!(
                    "stream {} appears twice in one copied batch",
                    r.stream_id
                )));
            }
        }
        let batch = crate::store::writes::encode_appends(runs)?;
        Ok(CopiedBatch {
            parts: match runs {
                [r] => CopiedParts::One(Part {
                    stream_id: r.stream_id,
                    expected: r.expected_version,
                }),
                _ => CopiedParts::Many(
                    runs.iter()
                        .map(|r| Part {
                            stream_id: r.stream_id,
                            expected: r.expected_version,
                        })
                        .collect(),
                ),
            },
            batch,
            recorded_at,
        })
    }

    /// Events in the batch.
    pub fn count(&self) -> u32 {
        self.batch.count()
    }

    /// Bytes the batch takes in the log.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Never true: a batch holds at least one event.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// The commit time the batch is stamped with.
    pub fn recorded_at(&self) -> u64 {
        self.recorded_at
    }
}

/// What [`Store::backup_to`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupReport {
    /// Length of the copy: the file header and every batch acknowledged when the copy
    /// started.
    pub bytes: u64,
    /// Events in the copy.
    pub events: u64,
}

/// What [`Store::append_copied_group`] appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopiedGroup {
    /// Global position of the group's first event (the log's length before it).
    pub first_position: u64,
    /// Events appended: the log's length is now `first_position + events`.
    pub events: u64,
}

/// Bytes copied per read/write by [`Store::backup_to`].
const COPY_PIECE: usize = 4 << 20;

impl Store {
    /// Low-level, for tools that copy a log (import, salvage): appends `batches` in
    /// the order given, each as one batch (a multi-stream batch stays one batch, as
    /// its source was: a retry of that append against the copy is recognised), queued
    /// together so that they are committed by one group commit (one write, one
    /// `fdatasync`) unless a commit is already under way, each with its own commit
    /// time. Expected versions are checked in order, as for appends from many
    /// threads; a batch that fails its check fails alone, and the first failure is
    /// returned (the other batches may have been committed: callers that need
    /// all-or-nothing write into a new file and discard it on error). Returns, per
    /// batch, one result per stream as `append_multi` does.
    ///
    /// Commit times are taken as given, also when they are older than the last one:
    /// ordinary appends after them are never stamped earlier than the latest of them.
    /// Event ids are not checked for uniqueness (a store written by 0.1 may hold an id
    /// twice, and a copy keeps it so); ordinary appends after them still are.
    pub fn append_copied(
        &self,
        batches: Vec<CopiedBatch>,
    ) -> Result<Vec<Vec<AppendResult>>, Error> {
        self.check_writable()?;
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let mut slots = Vec::with_capacity(batches.len());
        let lead_now = {
            let mut queue = lock(&self.queue);
            queue.requests.reserve(batches.len());
            for b in batches {
                let answer = Answer::default();
                slots.push(Arc::clone(&answer));
                queue.requests.push(Request {
                    parts: b.parts.into_vec(),
                    batch: b.batch,
                    answer,
                    recorded_at: Some(b.recorded_at),
                    // A copy keeps the log as it is: a 0.1 store may hold an id twice.
                    check_ids: false,
                });
            }
            !std::mem::replace(&mut queue.leader, true)
        };
        if lead_now {
            self.lead();
        }
        // The requests were queued together and a leader takes the whole queue, so
        // they are all in one group: only the first of them can be made the leader.
        let mut results = Vec::with_capacity(slots.len());
        let mut first_error = None;
        for slot in slots {
            let result = match slot.take() {
                Some(result) => result,
                None => match slot.wait() {
                    Wakeup::Done(result) => result,
                    Wakeup::Lead => {
                        self.lead();
                        slot.take().unwrap_or_else(|| {
                            Err(Error::Poisoned {
                                cause: "an append was lost by the group commit (a bug)".into(),
                            })
                        })
                    }
                },
            };
            match result {
                Ok(r) => results.push(r),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }

    /// Low-level, for tools that copy a log into a new store (import): appends
    /// `batches` in the order given as one group commit (one write, one `fdatasync`),
    /// all or nothing, each batch still its own atomic batch with its own commit time
    /// (as by [`Store::append_copied`]). Cheaper than `append_copied` for many small
    /// batches: no answer, result or id list is made per batch, and the group has one
    /// outcome: where it begins and how many events it holds (a caller that needs each
    /// batch's positions counts them from [`CopiedBatch::count`]). The batches are
    /// borrowed: the caller frees them (or hands them back to the thread that made
    /// them, where freeing is cheaper) and may reuse the vector.
    ///
    /// Every batch is checked, in order, before anything is written: each run's
    /// expected version against the log and the batches before it in the group, and
    /// the room left in the log. The first batch that fails its check fails the whole
    /// group and nothing of the group is written: `Error::WrongExpectedVersion` (naming
    /// the stream, the expected and the actual version) or `Error::InvalidArgument`
    /// (the log is full). A failed write or sync poisons the store, as for any append
    /// (`Error::Io`, then `Error::Poisoned`); a read-only handle is `Error::ReadOnly`.
    /// An empty `batches` appends nothing and succeeds.
    ///
    /// The group holds the writer for its whole commit: ordinary appends from other
    /// threads wait for it (they are committed after it, in their own groups). Commit
    /// times and event ids are taken as given, as by `append_copied`.
    pub fn append_copied_group(&self, batches: &[CopiedBatch]) -> Result<CopiedGroup, Error> {
        self.check_writable()?;
        let mut writer = match self.writer.lock() {
            Ok(writer) => writer,
            Err(_) => {
                self.poisoned.store(true, Ordering::Release);
                return Err(Error::Poisoned {
                    cause: "an earlier append panicked during its group commit".into(),
                });
            }
        };
        let committed = writer.commit_copies(self.file.as_ref(), self.salt, &self.index, batches);
        if writer.poisoned.is_some() {
            self.poisoned.store(true, Ordering::Release);
        }
        self.format_version
            .store(writer.format_version, Ordering::Release);
        if let Ok((_, events)) = committed {
            if events > 0 {
                // As after every group commit: the new events are visible to followers,
                // and the index's checkpointer learns how far the log grew.
                self.published(writer.end);
                if let Some(c) = &self.checkpointer {
                    c.ask_if(read_lock(&self.index).delta_log_bytes());
                }
            }
        }
        drop(writer);
        let (first_position, events) = committed?;
        Ok(CopiedGroup {
            first_position,
            events,
        })
    }

    /// Makes room in the index for `additional` more events at once, so that a tool
    /// that knows how many events it is about to copy (import, salvage) does not pay
    /// for the index growing step by step: the event-id table of the events since the
    /// last index checkpoint grows by a quarter at a time, rehashing the ids it holds.
    /// Optional, and only a hint: appends grow the index as needed without it. Best
    /// called before the copy starts (the index is locked while the table is rebuilt).
    pub fn reserve(&self, additional: u64) -> Result<(), Error> {
        self.check_writable()?;
        let additional = usize::try_from(additional).map_err(|_| {
            Error::InvalidArgument(format!("cannot reserve room for {additional} events"))
        })?;
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .reserve_ids(additional);
        Ok(())
    }

    /// The positions of the batch (the one append) that holds the event at
    /// `position`: its first event's position up to (not including) the position after
    /// its last event; `None` when the log has no event there. Events of one batch were
    /// appended atomically together, with one commit time (`export` writes this, so
    /// that `import` rebuilds the same batches). Costs a walk over the batch's events
    /// in the index: a tool going through the log asks once per batch.
    pub fn batch_bounds(&self, position: u64) -> Option<std::ops::Range<u64>> {
        let index = read_lock(&self.index);
        let count = index.event_count();
        if position >= count {
            return None;
        }
        // The index may have to read its file (or rebuild a damaged segment from the
        // log); when even that fails, there is no answer to give.
        let starts = |p: u64| {
            index.is_append_start(p).map_err(|e| {
                tracing::warn!(error = %e, "batch_bounds: the index could not be read");
            })
        };
        let mut first = position;
        while first > 0 && !starts(first).ok()? {
            first -= 1;
        }
        let mut end = position + 1;
        while end < count && !starts(end).ok()? {
            end += 1;
        }
        Some(first..end)
    }

    /// The acknowledged log as it stands now: its length in bytes (the file header
    /// and every batch whose append has returned, which are whole and durable and
    /// never rewritten) and its number of events, taken together.
    pub fn acknowledged_len(&self) -> (u64, u64) {
        let index = read_lock(&self.index);
        let events = index.event_count();
        if events == 0 {
            return (FILE_HEADER_LEN as u64, 0);
        }
        (index.log_end(), events)
    }

    /// Copies the acknowledged log to a new file `dest` while appends go on: the
    /// bytes up to [`Store::acknowledged_len`] taken when the copy starts (whole
    /// batches only, none of them ever rewritten), through a temporary file beside
    /// `dest` that is synced, checked with [`crate::inspect::scan`] (every batch
    /// intact, every event there) and only then renamed to `dest`. No lock is held
    /// while copying. `dest` must not exist. `progress(done, total)` is called as
    /// bytes are copied and checked.
    pub fn backup_to(
        &self,
        dest: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<BackupReport, Error> {
        let (len, events) = self.acknowledged_len();
        let shown = dest.display();
        if dest.exists() {
            return Err(Error::InvalidArgument(format!(
                "{shown} already exists: a backup goes to a new file"
            )));
        }
        let tmp = crate::inspect::sibling(dest, "backup");
        let result = (|| {
            let out = FsOpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
            copy_bytes(
                self.file.as_ref(),
                &self.path,
                &out,
                &tmp,
                len,
                &mut |done| progress(done, 2 * len),
            )?;
            out.sync_all()
                .map_err(|e| Error::io(format!("fsync {}", tmp.display()), e))?;
            drop(out);
            let checked = crate::inspect::scan(&tmp, |b| {
                progress(len + b.offset + b.len, 2 * len);
                Ok(())
            })?;
            if !checked.is_clean() || checked.events != events || checked.valid_end != len {
                return Err(Error::CorruptRecord {
                    position: checked.events,
                    offset: checked.valid_end,
                    detail: format!(
                        "the backup copy does not check out ({} of {events} events, {} of {len} bytes intact): the source may be damaged, run `verify` on it",
                        checked.events, checked.valid_end
                    ),
                });
            }
            crate::store::io::rename_new(&tmp, dest).map_err(|e| {
                Error::io(
                    format!(
                        "rename {} to {shown} (a file appeared there meanwhile?)",
                        tmp.display()
                    ),
                    e,
                )
            })?;
            crate::inspect::sync_parent(dest)?;
            Ok(BackupReport { bytes: len, events })
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// Copies bytes `0..len` of `source` (the file at `source_path`) to the same offsets
/// of `out` (at `out_path`): in the kernel where it can (no copy through this
/// process's memory), through a buffer for what it could not; `progress` gets the
/// bytes done. Does not sync `out`.
pub(crate) fn copy_bytes(
    source: &dyn io::StorageFile,
    source_path: &Path,
    out: &std::fs::File,
    out_path: &Path,
    len: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(), Error> {
    let mut at = match source.as_file() {
        Some(file) => copy_in_kernel(file, out, len, progress).map_err(|e| {
            Error::io(
                format!("copy {} to {}", source_path.display(), out_path.display()),
                e,
            )
        })?,
        None => 0,
    };
    let mut buf = vec![0u8; COPY_PIECE.min((len - at) as usize)];
    while at < len {
        let n = (len - at).min(COPY_PIECE as u64) as usize;
        read_exact_at(source, &mut buf[..n], at).map_err(|e| {
            Error::io(
                format!("read {} at byte offset {at}", source_path.display()),
                e,
            )
        })?;
        io::write_all_at(out, &buf[..n], at)
            .map_err(|e| Error::io(format!("write {}", out_path.display()), e))?;
        at += n as u64;
        progress(at);
    }
    Ok(())
}

/// Copies bytes `0..len` of `source` to the same offsets of `dest` with
/// `copy_file_range` (in the kernel: no copy through this process), in pieces,
/// reporting the bytes done. Returns how far it got: `len`, or less where the kernel
/// cannot copy between these files (another file system, an old kernel): the caller
/// copies the rest itself. An I/O error is an error.
fn copy_in_kernel(
    source: &std::fs::File,
    dest: &std::fs::File,
    len: u64,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut at = 0u64;
    while at < len {
        let mut from = at as libc::loff_t;
        let mut to = at as libc::loff_t;
        let piece = (len - at).min(COPY_PIECE as u64 * 16) as usize;
        // SAFETY: both descriptors are open files borrowed for the call; the offsets
        // are local variables the kernel updates; no memory of this process is read
        // or written.
        let n = unsafe {
            libc::copy_file_range(
                source.as_raw_fd(),
                &mut from,
                dest.as_raw_fd(),
                &mut to,
                piece,
                0,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL) => Ok(at),
                _ => Err(e),
            };
        }
        if n == 0 {
            // The source ended early: let the buffered copy report it.
            return Ok(at);
        }
        at += n as u64;
        progress(at);
    }
    Ok(at)
}
