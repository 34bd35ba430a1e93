//! Support for tools that copy a log (the `eventstore` command's `import`, `salvage`
//! and `backup`): appending batches with the commit times they had in another log,
//! and copying the acknowledged prefix of a live store.
//!
//! Ordinary applications never need these: [`Store::append`] is the way to write.

use std::fs::OpenOptions as FsOpenOptions;
use std::path::Path;
use std::sync::Arc;

use uuid::Uuid;

use crate::codec::{self, UnsealedBatch, FILE_HEADER_LEN};
use crate::error::Error;
use crate::store::io::{self, read_exact_at};
use crate::store::writer::{Part, Request, Wakeup};
use crate::store::{lock, read_lock, Store};
use crate::types::{AppendResult, ExpectedVersion, ProposedEvent, ProposedEventRef};

/// One batch for [`Store::append_copied`]: the events of one stream, appended as one
/// atomic batch as by [`Store::append`], but stamped with `recorded_at` (µs since the
/// Unix epoch) instead of the commit's own time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedBatch {
    pub stream_id: Uuid,
    pub expected_version: ExpectedVersion,
    pub recorded_at: u64,
    /// Nil event ids are replaced with fresh v4 UUIDs, as by `append`.
    pub events: Vec<ProposedEvent>,
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

/// Bytes copied per read/write by [`Store::backup_to`].
const COPY_PIECE: usize = 4 << 20;

impl Store {
    /// Low-level, for tools that copy a log (import, salvage): appends `batches` in
    /// the order given, queued together so that they are committed by one group
    /// commit (one write, one `fdatasync`) unless a commit is already under way, each
    /// with its own commit time. Expected versions are checked in order, as for
    /// appends from many threads; a batch that fails its check fails alone, and the
    /// first failure is returned (the other batches may have been committed: callers
    /// that need all-or-nothing write into a new file and discard it on error).
    ///
    /// Commit times are taken as given, also when they are older than the last one:
    /// ordinary appends after them are never stamped earlier than the latest of them.
    /// Event ids are not checked for uniqueness (a store written by 0.1 may hold an id
    /// twice, and a copy keeps it so); ordinary appends after them still are.
    pub fn append_copied(&self, batches: Vec<CopiedBatch>) -> Result<Vec<AppendResult>, Error> {
        self.check_writable()?;
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let mut requests = Vec::with_capacity(batches.len());
        for b in batches {
            if b.events.is_empty() {
                return Err(Error::InvalidArgument(
                    "an append needs at least one event".into(),
                ));
            }
            let mut events = b.events;
            for e in &mut events {
                if e.event_id.is_nil() {
                    e.event_id = Uuid::new_v4();
                }
            }
            let refs: Vec<ProposedEventRef<'_>> =
                events.iter().map(ProposedEvent::as_ref).collect();
            for e in &refs {
                codec::check_event(e)?;
            }
            requests.push(Request {
                parts: vec![Part {
                    stream_id: b.stream_id,
                    expected: b.expected_version,
                }],
                batch: UnsealedBatch::encode(&b.stream_id, &refs)?,
                answer: Arc::default(),
                recorded_at: Some(b.recorded_at),
                // A copy keeps the log as it is: a 0.1 store may hold an id twice.
                check_ids: false,
            });
        }
        let slots: Vec<_> = requests.iter().map(|r| Arc::clone(&r.answer)).collect();
        let lead_now = {
            let mut queue = lock(&self.queue);
            queue.requests.extend(requests);
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
                Ok(mut r) => results.push(r.swap_remove(0)),
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
            let mut buf = vec![0u8; COPY_PIECE.min(len as usize)];
            let mut at = 0u64;
            while at < len {
                let n = (len - at).min(COPY_PIECE as u64) as usize;
                read_exact_at(self.file.as_ref(), &mut buf[..n], at).map_err(|e| {
                    Error::io(
                        format!("read {} at byte offset {at}", self.path.display()),
                        e,
                    )
                })?;
                io::write_all_at(&out, &buf[..n], at)
                    .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
                at += n as u64;
                progress(at, 2 * len);
            }
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
            std::fs::rename(&tmp, dest)
                .map_err(|e| Error::io(format!("rename {} to {shown}", tmp.display()), e))?;
            crate::inspect::sync_parent(dest)?;
            Ok(BackupReport { bytes: len, events })
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}
