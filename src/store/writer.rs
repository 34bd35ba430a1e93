//! The append path: group commit, preallocation, write, sync, poison.
//!
//! Appenders encode their batch on their own thread and queue it. The first to find
//! no leader at work becomes the leader; the others sleep on their own slot. The
//! leader takes the whole queue, checks each request's event ids (a retry or a
//! duplicate: `dedup.rs`) and expected versions in order (against the index and the
//! requests before it in the group; a multi-stream request fails whole if any of its
//! streams fails), places and seals the
//! accepted batches, writes them with one write and makes them durable with one
//! `fdatasync`, and publishes them to the index. Then it wakes every request of its
//! group with its own answer, and only then hands the leadership to the first request
//! that queued meanwhile: appenders woken first can queue their next append in time
//! to join the next group, which makes groups larger than handing over first. A
//! rejected request fails alone.
//!
//! Readers never take the writer lock: they see the index, which learns of a batch
//! only once it is durable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::codec::{self, BatchHeader, UnsealedBatch};
use crate::error::Error;
use crate::store::copy::CopiedBatch;
use crate::store::dedup::{self, GroupIds, Verdict};
use crate::store::ids::MAX_POSITION;
use crate::store::index::{Index, RecordLocation, Run, StreamIdHash};
use crate::store::io::{write_all_at, StorageFile};
use crate::types::{AppendResult, ExpectedVersion};

/// What an append gets: one result per stream, in the order given.
pub type Outcome = Result<Vec<AppendResult>, Error>;

/// Preallocation grows the file by at least this much at a time.
const MIN_PREALLOCATION: u64 = 256 << 10;
/// ... and by at most this much.
const MAX_PREALLOCATION: u64 = 64 << 20;
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
/// A group write at least this large grows the file itself instead of being
/// preallocated for: writing zeros first would double its bytes and its syncs, while
/// one journal commit for the size change costs little next to the write.
const LARGE_WRITE: usize = 64 << 10;

/// Where a queued request waits: for its answer, or to be made the leader.
#[derive(Default)]
pub struct Slot {
    state: Mutex<SlotState>,
    wake: Condvar,
    /// Whether the request sleeps on `wake`. Read and written only with `state`
    /// locked: a notify costs a system call, which most answers (to the leader's own
    /// request, to a tool's batches collected after the commit) need not pay.
    sleeping: AtomicBool,
}

#[derive(Default)]
enum SlotState {
    #[default]
    Waiting,
    Lead,
    Done(Outcome),
}

/// What woke a waiting request.
pub enum Wakeup {
    /// Lead the next group (the request is still queued).
    Lead,
    Done(Outcome),
}

pub type Answer = Arc<Slot>;

impl Slot {
    fn set(&self, state: SlotState) {
        let mut locked = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *locked = state;
        if self.sleeping.load(Ordering::Relaxed) {
            self.wake.notify_one();
        }
    }

    /// Leaves the request's answer and wakes it.
    pub fn answer(&self, result: Outcome) {
        self.set(SlotState::Done(result));
    }

    /// Wakes the request to lead the next group.
    pub fn promote(&self) {
        self.set(SlotState::Lead);
    }

    /// Answers the request with `result` unless it has an answer already.
    pub fn answer_if_waiting(&self, result: impl FnOnce() -> Outcome) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(*state, SlotState::Done(_)) {
            *state = SlotState::Done(result());
            if self.sleeping.load(Ordering::Relaxed) {
                self.wake.notify_one();
            }
        }
    }

    /// Sleeps until the request is answered or made the leader.
    pub fn wait(&self) -> Wakeup {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match std::mem::take(&mut *state) {
                SlotState::Waiting => {
                    self.sleeping.store(true, Ordering::Relaxed);
                    state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                    self.sleeping.store(false, Ordering::Relaxed);
                }
                SlotState::Lead => return Wakeup::Lead,
                SlotState::Done(result) => return Wakeup::Done(result),
            }
        }
    }

    /// Takes the answer, if there is one.
    pub fn take(&self) -> Option<Outcome> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match std::mem::take(&mut *state) {
            SlotState::Done(result) => Some(result),
            other => {
                *state = other;
                None
            }
        }
    }
}

/// One stream of a queued append.
pub struct Part {
    pub stream_id: Uuid,
    pub expected: ExpectedVersion,
}

/// One queued append: one or several streams (a multi-append), one batch.
pub struct Request {
    /// The streams, in the order of the batch's parts.
    pub parts: Vec<Part>,
    pub batch: UnsealedBatch,
    pub answer: Answer,
    /// The commit time to record instead of the group's (for tools that copy a log:
    /// see `store/copy.rs`); `None` for every ordinary append.
    pub recorded_at: Option<u64>,
    /// Whether the event ids are checked (a retry, a duplicate: `dedup.rs`). Every
    /// ordinary append checks them; tools that copy a log as it is (`store/copy.rs`)
    /// do not, since a store written by 0.1 may hold an id twice.
    pub check_ids: bool,
}

/// The answers a group commit owes, delivered by the caller once it has handed on
/// the leadership.
pub type Answers = Vec<(Answer, Outcome)>;

fn answer(out: &mut Answers, slot: Answer, result: Outcome) {
    out.push((slot, result));
}

/// State only the leader touches.
pub struct Writer {
    /// End of the committed data: where the next batch goes.
    pub end: u64,
    /// The file's length: `end` plus preallocated zeros.
    pub file_len: u64,
    pub preallocate: bool,
    /// The file's path, for error messages.
    path: String,
    last_recorded_at: u64,
    /// Why appends are refused, once a write or sync has failed.
    pub poisoned: Option<String>,
    /// The most the next preallocation asks for: shrinks after a preallocation
    /// fails (a nearly full disk), grows back after one succeeds.
    grow_cap: u64,
    buf: Vec<u8>,
    /// The file's format version: 1 until its first multi-stream batch.
    pub format_version: u16,
}

struct Accepted {
    answer: Answer,
    runs: Vec<Run>,
    results: Vec<AppendResult>,
    locations: std::ops::Range<usize>,
    /// `(stream id, event id)` of every event.
    ids: Vec<(Uuid, Uuid)>,
}

impl Writer {
    pub fn new(
        end: u64,
        file_len: u64,
        preallocate: bool,
        path: String,
        format_version: u16,
    ) -> Writer {
        Writer {
            format_version,
            end,
            file_len,
            preallocate,
            path,
            last_recorded_at: 0,
            poisoned: None,
            grow_cap: MAX_PREALLOCATION,
            buf: Vec::new(),
        }
    }

    /// Stamps no later commit earlier than `recorded_at` (the last stored event's).
    pub fn commit_times_from(&mut self, recorded_at: u64) {
        self.last_recorded_at = self.last_recorded_at.max(recorded_at);
    }

    /// Commits a group of requests and leaves an answer for each of them in `out`.
    pub fn commit_group(
        &mut self,
        file: &dyn StorageFile,
        salt: u64,
        index: &std::sync::RwLock<Index>,
        group: Vec<Request>,
        out: &mut Answers,
    ) {
        if let Some(cause) = &self.poisoned {
            for r in group {
                answer(
                    out,
                    r.answer,
                    Err(Error::Poisoned {
                        cause: cause.clone(),
                    }),
                );
            }
            return;
        }
        // A commit time never goes backwards, whatever the wall clock does.
        let recorded_at = now_micros().max(self.last_recorded_at);
        let group_start = self.end;
        self.buf.clear();
        let path = std::path::Path::new(&self.path);
        let mut locations =
            Vec::with_capacity(group.iter().map(|r| r.batch.count() as usize).sum());
        let mut accepted: Vec<Accepted> = Vec::with_capacity(group.len());
        // Exact retries of appends accepted earlier in this group: (slot, which one).
        let mut repeats: Vec<(Answer, usize)> = Vec::new();
        {
            let index = index.read().unwrap_or_else(|p| p.into_inner());
            let mut next_position = index.event_count();
            let mut in_group: HashMap<Uuid, u64, StreamIdHash> = HashMap::default();
            let mut group_ids = GroupIds::default();
            // Only appends that check ids look at the group's earlier ids: a group of
            // copied batches alone (`store/copy.rs`) need not track them.
            let track_ids = group.len() > 1 && group.iter().any(|r| r.check_ids);
            // Every stream's version before the group, looked up in one tight loop
            // first: with many streams each lookup misses the cache, and independent
            // lookups overlap their misses where lookups between the encoding of
            // batches wait for each in turn.
            let before: Vec<Option<u64>> = group
                .iter()
                .flat_map(|r| &r.parts)
                .map(|p| index.stream_version(&p.stream_id))
                .collect();
            let mut looked_up = 0;
            for r in group {
                let known = &before[looked_up..looked_up + r.parts.len()];
                looked_up += r.parts.len();
                let ids: Vec<(Uuid, Uuid)> = r.batch.record_ids().collect();
                let verdict = if r.check_ids {
                    dedup::classify(&index, file, path, &ids, r.batch.parts(), &group_ids)
                } else {
                    Ok(Verdict::Fresh)
                };
                match verdict {
                    Ok(Verdict::Fresh) => {}
                    Ok(Verdict::Retry(results)) => {
                        answer(out, r.answer, Ok(results));
                        continue;
                    }
                    Ok(Verdict::RetryOfGroup(k)) => {
                        repeats.push((r.answer, k));
                        continue;
                    }
                    Ok(Verdict::Duplicate { event_id, position }) => {
                        answer(
                            out,
                            r.answer,
                            Err(Error::DuplicateEventId { event_id, position }),
                        );
                        continue;
                    }
                    Err(e) => {
                        answer(out, r.answer, Err(e));
                        continue;
                    }
                }
                let mut first_versions = Vec::with_capacity(r.parts.len());
                let mut conflict = None;
                for (p, &known) in r.parts.iter().zip(known) {
                    let actual = match in_group.get(&p.stream_id) {
                        Some(&v) => Some(v),
                        None => known,
                    };
                    if !p.expected.admits(actual) {
                        conflict = Some(Error::WrongExpectedVersion {
                            stream_id: p.stream_id,
                            expected: p.expected,
                            actual,
                        });
                        break;
                    }
                    first_versions.push(actual.map_or(0, |v| v + 1));
                }
                if let Some(e) = conflict {
                    answer(out, r.answer, Err(e));
                    continue;
                }
                let count = u64::from(r.batch.count());
                if next_position + count - 1 > MAX_POSITION {
                    answer(
                        out,
                        r.answer,
                        Err(Error::InvalidArgument(format!(
                            "the log is full: it holds at most {} events",
                            MAX_POSITION + 1
                        ))),
                    );
                    continue;
                }
                let recorded_at = r.recorded_at.unwrap_or(recorded_at);
                let header = BatchHeader {
                    batch_len: r.batch.len() as u32,
                    first_position: next_position,
                    count: r.batch.count(),
                    recorded_at,
                    group_start,
                };
                let first_location = locations.len();
                r.batch
                    .seal_into(&mut self.buf, salt, header, &first_versions, |at, len| {
                        locations.push(RecordLocation::new(group_start + at as u64, len));
                    });
                let mut runs = Vec::with_capacity(r.parts.len());
                let mut results = Vec::with_capacity(r.parts.len());
                let mut position = next_position;
                for ((p, &n), &first_version) in
                    r.parts.iter().zip(r.batch.parts()).zip(&first_versions)
                {
                    let n = u64::from(n);
                    in_group.insert(p.stream_id, first_version + n - 1);
                    runs.push(Run {
                        stream_id: p.stream_id,
                        first_version,
                        count: n,
                    });
                    results.push(AppendResult {
                        first_global_position: position,
                        first_stream_version: first_version,
                        count: n,
                        recorded_at,
                        deduplicated: false,
                    });
                    position += n;
                }
                if track_ids {
                    group_ids.add(&ids, next_position);
                }
                accepted.push(Accepted {
                    answer: r.answer,
                    runs,
                    results,
                    locations: first_location..locations.len(),
                    ids,
                });
                next_position += count;
            }
        }
        if accepted.is_empty() {
            return;
        }
        let upgrade = self.format_version < codec::FORMAT_VERSION
            && accepted.iter().any(|a| a.runs.len() > 1);
        if let Err(e) = self.write_group(file, salt, group_start, upgrade) {
            for (slot, _) in repeats {
                answer(out, slot, Err(e.duplicate()));
            }
            for a in accepted {
                answer(out, a.answer, Err(e.duplicate()));
            }
            return;
        }
        self.end = group_start + self.buf.len() as u64;
        // Copied commit times may lie ahead of the clock: later appends never go back.
        self.last_recorded_at = accepted
            .iter()
            .map(|a| a.results[0].recorded_at)
            .fold(recorded_at, u64::max);
        {
            let mut index = index.write().unwrap_or_else(|p| p.into_inner());
            for a in &accepted {
                let published = index.push_append(
                    &a.runs,
                    locations[a.locations.clone()].iter().copied(),
                    a.ids.iter().map(|&(_, id)| id),
                );
                debug_assert!(published.is_ok(), "checked against this index above");
                index.push_types(locations[a.locations.clone()].iter().map(|l| {
                    crate::codec::record_type_bytes(
                        &self.buf[(l.offset() - group_start) as usize..],
                    )
                }));
            }
        }
        for (slot, k) in repeats {
            let mut results = accepted[k].results.clone();
            for r in &mut results {
                r.deduplicated = true;
            }
            answer(out, slot, Ok(results));
        }
        for a in accepted {
            answer(out, a.answer, Ok(a.results));
        }
    }

    /// Commits `batches` (copied from another log: see `store/copy.rs`) as one group,
    /// all or nothing: every batch is checked in order (expected versions against the
    /// index and the batches before it, room in the log) before anything is written;
    /// the first that fails fails the whole group, and nothing of it is written. No
    /// answer slot, result or id list is made per batch: the group has one outcome.
    /// Returns the position of the group's first event and its number of events.
    pub fn commit_copies(
        &mut self,
        file: &dyn StorageFile,
        salt: u64,
        index: &std::sync::RwLock<Index>,
        batches: &[CopiedBatch],
    ) -> Result<(u64, u64), Error> {
        if let Some(cause) = &self.poisoned {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        let group_start = self.end;
        self.buf.clear();
        let events: usize = batches.iter().map(|b| b.batch.count() as usize).sum();
        let mut locations = Vec::with_capacity(events);
        // Every run of the group, and where each batch's runs end.
        let mut runs: Vec<Run> = Vec::with_capacity(batches.len());
        let mut run_ends: Vec<usize> = Vec::with_capacity(batches.len());
        let mut multi = false;
        let first_position;
        let mut next_position;
        {
            let index = index.read().unwrap_or_else(|p| p.into_inner());
            first_position = index.event_count();
            next_position = first_position;
            let mut in_group: HashMap<Uuid, u64, StreamIdHash> = HashMap::default();
            // As in `commit_group`: the lookups in one loop first overlap their misses.
            let before: Vec<Option<u64>> = batches
                .iter()
                .flat_map(|b| b.parts.iter())
                .map(|p| index.stream_version(&p.stream_id))
                .collect();
            let mut first_versions = Vec::new();
            let mut looked_up = 0;
            for b in batches {
                let known = &before[looked_up..looked_up + b.parts.len()];
                looked_up += b.parts.len();
                first_versions.clear();
                for (p, &known) in b.parts.iter().zip(known) {
                    let actual = match in_group.get(&p.stream_id) {
                        Some(&v) => Some(v),
                        None => known,
                    };
                    if !p.expected.admits(actual) {
                        self.buf.clear();
                        return Err(Error::WrongExpectedVersion {
                            stream_id: p.stream_id,
                            expected: p.expected,
                            actual,
                        });
                    }
                    first_versions.push(actual.map_or(0, |v| v + 1));
                }
                let count = u64::from(b.batch.count());
                if next_position + count - 1 > MAX_POSITION {
                    self.buf.clear();
                    return Err(Error::InvalidArgument(format!(
                        "the log is full: it holds at most {} events",
                        MAX_POSITION + 1
                    )));
                }
                let header = BatchHeader {
                    batch_len: b.batch.len() as u32,
                    first_position: next_position,
                    count: b.batch.count(),
                    recorded_at: b.recorded_at,
                    group_start,
                };
                b.batch
                    .seal_into(&mut self.buf, salt, header, &first_versions, |at, len| {
                        locations.push(RecordLocation::new(group_start + at as u64, len));
                    });
                for ((p, &n), &first_version) in
                    b.parts.iter().zip(b.batch.parts()).zip(&first_versions)
                {
                    let n = u64::from(n);
                    in_group.insert(p.stream_id, first_version + n - 1);
                    runs.push(Run {
                        stream_id: p.stream_id,
                        first_version,
                        count: n,
                    });
                }
                multi |= b.parts.len() > 1;
                run_ends.push(runs.len());
                next_position += count;
            }
        }
        if batches.is_empty() {
            return Ok((first_position, 0));
        }
        let upgrade = multi && self.format_version < codec::FORMAT_VERSION;
        self.write_group(file, salt, group_start, upgrade)?;
        self.end = group_start + self.buf.len() as u64;
        // Copied commit times may lie ahead of the clock: later appends never go back.
        self.last_recorded_at = batches
            .iter()
            .map(|b| b.recorded_at)
            .fold(self.last_recorded_at, u64::max);
        {
            let mut index = index.write().unwrap_or_else(|p| p.into_inner());
            index.push_appends(
                &runs,
                &run_ends,
                &locations,
                batches
                    .iter()
                    .flat_map(|b| b.batch.record_ids().map(|(_, id)| id)),
            );
            index.push_types(locations.iter().map(|l| {
                crate::codec::record_type_bytes(&self.buf[(l.offset() - group_start) as usize..])
            }));
        }
        Ok((first_position, next_position - first_position))
    }

    /// Writes the group encoded in `self.buf` at `group_start` and makes it durable,
    /// after checking that the file is still in place and upgrading the header first
    /// when the group needs format version 2. A failure poisons the writer (logged):
    /// the caller answers every request of the group with it.
    fn write_group(
        &mut self,
        file: &dyn StorageFile,
        salt: u64,
        group_start: u64,
        upgrade: bool,
    ) -> Result<(), Error> {
        let written = self
            .check_in_place(file, group_start)
            .and_then(|()| {
                if upgrade {
                    self.upgrade_header(file, salt)
                } else {
                    Ok(())
                }
            })
            .and_then(|()| self.write_durably(file, group_start));
        if let Err(e) = &written {
            crate::log::log(
                crate::log::Level::Error,
                &format!(
                    "append to {} failed; the store is poisoned until reopened: {e}",
                    self.path
                ),
            );
            self.poisoned = Some(e.to_string());
        }
        written
    }

    /// Rewrites a version-1 header as version 2 (same salt) and syncs it, before the
    /// first batch that version 1 cannot express is written. The header is 32 bytes
    /// in the file's first sector, rewritten in place: a crash leaves the old header
    /// or the new one, and either reads every batch written before.
    fn upgrade_header(&mut self, file: &dyn StorageFile, salt: u64) -> Result<(), Error> {
        let header = codec::encode_file_header_version(salt, codec::FORMAT_VERSION);
        write_all_at(file, &header, 0)
            .and_then(|()| file.sync_data())
            .map_err(|e| {
                Error::io(
                    format!("rewrite the header of {} as format version 2", self.path),
                    e,
                )
            })?;
        self.format_version = codec::FORMAT_VERSION;
        crate::log::log(
            crate::log::Level::Info,
            &format!("{}: upgraded to format version 2", self.path),
        );
        Ok(())
    }

    /// Writes `self.buf` at `at` and makes it durable, preallocating first when a
    /// small write would grow the file, so that the commit's `fdatasync` has no size
    /// change to journal (a large write grows the file itself: see [`LARGE_WRITE`]).
    /// Only a failure to write or sync the batch itself fails the append: see
    /// [`Writer::preallocate_for`].
    fn write_durably(&mut self, file: &dyn StorageFile, at: u64) -> Result<(), Error> {
        let needed = at + self.buf.len() as u64;
        if self.preallocate && needed > self.file_len && self.buf.len() < LARGE_WRITE {
            self.preallocate_for(file, needed);
        }
        write_all_at(file, &self.buf, at).map_err(|e| {
            Error::io(
                format!(
                    "write {} bytes to {} at byte offset {at}",
                    self.buf.len(),
                    self.path
                ),
                e,
            )
        })?;
        file.sync_data()
            .map_err(|e| Error::io(format!("fdatasync {}", self.path), e))?;
        self.file_len = self.file_len.max(needed);
        Ok(())
    }

    /// Whether the file is still the store that others will open, before a group is
    /// written at `end` (its committed data's end): still linked in a directory (else
    /// an acknowledged append would vanish with the file when it closes; SQLite
    /// refuses writes to a database moved or deleted while open, with
    /// `SQLITE_READONLY_DBMOVED`), and not cut below `end` by someone else (else the
    /// write would leave a hole of zeros where acknowledged events were, and be
    /// acknowledged in turn). One `fstat` per group commit, next to its `fdatasync`.
    /// The failure poisons the handle as a failed write does; a reopen recovers what
    /// is left. Wrappers of the file seam (tests) are not checked.
    fn check_in_place(&self, file: &dyn StorageFile, end: u64) -> Result<(), Error> {
        let Some(f) = file.as_file() else {
            return Ok(());
        };
        let meta = f
            .metadata()
            .map_err(|e| Error::io(format!("fstat {}", self.path), e))?;
        if std::os::unix::fs::MetadataExt::nlink(&meta) == 0 {
            return Err(Error::io(
                format!(
                    "append to {}: the file was deleted while the store was open, so the \
                     append would be lost with it",
                    self.path
                ),
                std::io::Error::from_raw_os_error(libc::ENOENT),
            ));
        }
        if meta.len() < end {
            return Err(Error::io(
                format!(
                    "append to {}: the file was cut to {} bytes while the store was open \
                     (its events end at byte {end}); close and reopen it to recover what is left",
                    self.path,
                    meta.len()
                ),
                std::io::Error::from_raw_os_error(libc::EIO),
            ));
        }
        Ok(())
    }

    /// Grows the file with synced zeros to beyond `needed`: by an eighth of the file
    /// (at least [`MIN_PREALLOCATION`], at most [`MAX_PREALLOCATION`] and at most
    /// `self.grow_cap`). Preallocation is an optimisation, so when it cannot get its
    /// space (a nearly full disk, a quota, a file size limit) it shrinks: it gives back
    /// what the attempt wrote and tries a quarter of the size, down to just the page
    /// the write needs; when even that fails it steps aside and the batch's own write
    /// grows the file (its `fdatasync` then also syncs the size). The zeros lie past
    /// the committed data only, so neither a failed attempt nor a failed sync of them
    /// can touch an acknowledged byte; leftover zeros are cut by `close` and recovery.
    /// A failure shrinks the cap for the next appends, a success lets it grow again.
    fn preallocate_for(&mut self, file: &dyn StorageFile, needed: u64) {
        let mut grow = (needed / 8)
            .max(MIN_PREALLOCATION)
            .min(MAX_PREALLOCATION.min(self.grow_cap));
        loop {
            let target = (needed + grow).next_multiple_of(4096);
            match self.extend_with_zeros(file, target) {
                Ok(()) => {
                    self.file_len = target;
                    self.grow_cap = (self.grow_cap * 2).min(MAX_PREALLOCATION);
                    return;
                }
                Err(e) => {
                    // Give the space back, so that the batch (and other files) can
                    // have it. If that fails too, learn the real length.
                    let back = file.set_len(self.file_len);
                    if back.is_err() {
                        if let Ok(len) = file.file_len() {
                            self.file_len = len;
                        }
                    }
                    self.grow_cap = (grow / 4).max(4096);
                    let next = if grow > 4 * 4096 { grow / 4 } else { 0 };
                    let then = if grow == 0 {
                        "the append grows the file itself".to_string()
                    } else {
                        format!("trying {} bytes past the write", next)
                    };
                    crate::log::log(
                        crate::log::Level::Debug,
                        &format!(
                            "{}: preallocating to {target} bytes failed ({e}); {then}",
                            self.path
                        ),
                    );
                    if grow == 0 {
                        return;
                    }
                    grow = next;
                }
            }
        }
    }

    /// Writes zeros from the file's end to `target` and syncs them.
    fn extend_with_zeros(&self, file: &dyn StorageFile, target: u64) -> Result<(), Error> {
        let mut off = self.file_len;
        while off < target {
            let n = ZEROS.len().min((target - off) as usize);
            write_all_at(file, &ZEROS[..n], off).map_err(|e| {
                Error::io(format!("preallocate {} at byte offset {off}", self.path), e)
            })?;
            off += n as u64;
        }
        file.sync_data()
            .map_err(|e| Error::io(format!("fdatasync {} after preallocation", self.path), e))
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
