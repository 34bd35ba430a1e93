//! The append path: group commit, preallocation, write, sync, poison.
//!
//! Appenders encode their batch on their own thread and queue it. The first to find
//! no leader at work becomes the leader; the others sleep on their own slot. The
//! leader takes the whole queue, checks each request's expected version in order
//! (against the index and the requests before it in the group), places and seals the
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
use std::sync::{Arc, Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::codec::{BatchHeader, UnsealedBatch};
use crate::error::Error;
use crate::store::index::{Index, RecordLocation};
use crate::store::io::{write_all_at, StorageFile};
use crate::types::{AppendResult, ExpectedVersion};

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
}

#[derive(Default)]
enum SlotState {
    #[default]
    Waiting,
    Lead,
    Done(Result<AppendResult, Error>),
}

/// What woke a waiting request.
pub enum Wakeup {
    /// Lead the next group (the request is still queued).
    Lead,
    Done(Result<AppendResult, Error>),
}

pub type Answer = Arc<Slot>;

impl Slot {
    fn set(&self, state: SlotState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
        self.wake.notify_one();
    }

    /// Leaves the request's answer and wakes it.
    pub fn answer(&self, result: Result<AppendResult, Error>) {
        self.set(SlotState::Done(result));
    }

    /// Wakes the request to lead the next group.
    pub fn promote(&self) {
        self.set(SlotState::Lead);
    }

    /// Answers the request with `result` unless it has an answer already.
    pub fn answer_if_waiting(&self, result: impl FnOnce() -> Result<AppendResult, Error>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(*state, SlotState::Done(_)) {
            *state = SlotState::Done(result());
            self.wake.notify_one();
        }
    }

    /// Sleeps until the request is answered or made the leader.
    pub fn wait(&self) -> Wakeup {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match std::mem::take(&mut *state) {
                SlotState::Waiting => {
                    state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                SlotState::Lead => return Wakeup::Lead,
                SlotState::Done(result) => return Wakeup::Done(result),
            }
        }
    }

    /// Takes the answer, if there is one.
    pub fn take(&self) -> Option<Result<AppendResult, Error>> {
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

/// One queued append.
pub struct Request {
    pub stream_id: Uuid,
    pub expected: ExpectedVersion,
    pub batch: UnsealedBatch,
    pub answer: Answer,
}

/// The answers a group commit owes, delivered by the caller once it has handed on
/// the leadership.
pub type Answers = Vec<(Answer, Result<AppendResult, Error>)>;

fn answer(out: &mut Answers, slot: Answer, result: Result<AppendResult, Error>) {
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
    buf: Vec<u8>,
}

struct Accepted {
    answer: Answer,
    stream_id: Uuid,
    result: AppendResult,
    locations: std::ops::Range<usize>,
}

impl Writer {
    pub fn new(end: u64, file_len: u64, preallocate: bool, path: String) -> Writer {
        Writer {
            end,
            file_len,
            preallocate,
            path,
            last_recorded_at: 0,
            poisoned: None,
            buf: Vec::new(),
        }
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
        let mut locations = Vec::new();
        let mut accepted = Vec::with_capacity(group.len());
        {
            let index = index.read().unwrap_or_else(|p| p.into_inner());
            let mut next_position = index.event_count();
            let mut in_group: HashMap<Uuid, u64> = HashMap::new();
            for r in group {
                let actual = match in_group.get(&r.stream_id) {
                    Some(&v) => Some(v),
                    None => index.stream_version(&r.stream_id),
                };
                if !r.expected.admits(actual) {
                    answer(
                        out,
                        r.answer,
                        Err(Error::WrongExpectedVersion {
                            stream_id: r.stream_id,
                            expected: r.expected,
                            actual,
                        }),
                    );
                    continue;
                }
                let first_version = actual.map_or(0, |v| v + 1);
                let count = u64::from(r.batch.count());
                let header = BatchHeader {
                    batch_len: r.batch.len() as u32,
                    first_position: next_position,
                    count: r.batch.count(),
                    recorded_at,
                    group_start,
                };
                let first_location = locations.len();
                r.batch
                    .seal_into(&mut self.buf, salt, header, first_version, |at, len| {
                        locations.push(RecordLocation::new(group_start + at as u64, len));
                    });
                in_group.insert(r.stream_id, first_version + count - 1);
                accepted.push(Accepted {
                    answer: r.answer,
                    stream_id: r.stream_id,
                    result: AppendResult {
                        first_global_position: next_position,
                        first_stream_version: first_version,
                        count,
                        recorded_at,
                    },
                    locations: first_location..locations.len(),
                });
                next_position += count;
            }
        }
        if accepted.is_empty() {
            return;
        }
        if let Err(e) = self.write_durably(file, group_start) {
            tracing::error!(error = %e, "append failed; the store is poisoned until reopened");
            self.poisoned = Some(e.to_string());
            for a in accepted {
                answer(out, a.answer, Err(e.duplicate()));
            }
            return;
        }
        self.end = group_start + self.buf.len() as u64;
        self.last_recorded_at = recorded_at;
        {
            let mut index = index.write().unwrap_or_else(|p| p.into_inner());
            for a in &accepted {
                let published = index.push_batch(
                    a.stream_id,
                    a.result.first_stream_version,
                    locations[a.locations.clone()].iter().copied(),
                );
                debug_assert!(published.is_ok(), "checked against this index above");
                index.push_types(locations[a.locations.clone()].iter().map(|l| {
                    crate::codec::record_type_bytes(
                        &self.buf[(l.offset() - group_start) as usize..],
                    )
                }));
            }
        }
        for a in accepted {
            answer(out, a.answer, Ok(a.result));
        }
    }

    /// Writes `self.buf` at `at` and makes it durable, preallocating first when a
    /// small write would grow the file, so that the commit's `fdatasync` has no size
    /// change to journal (a large write grows the file itself: see [`LARGE_WRITE`]).
    fn write_durably(&mut self, file: &dyn StorageFile, at: u64) -> Result<(), Error> {
        let needed = at + self.buf.len() as u64;
        if self.preallocate && needed > self.file_len && self.buf.len() < LARGE_WRITE {
            let grow = (needed / 8).clamp(MIN_PREALLOCATION, MAX_PREALLOCATION);
            let target = (needed + grow).next_multiple_of(4096);
            let mut off = self.file_len;
            while off < target {
                let n = ZEROS.len().min((target - off) as usize);
                write_all_at(file, &ZEROS[..n], off).map_err(|e| {
                    Error::io(format!("preallocate {} at byte offset {off}", self.path), e)
                })?;
                off += n as u64;
            }
            file.sync_data().map_err(|e| {
                Error::io(format!("fdatasync {} after preallocation", self.path), e)
            })?;
            self.file_len = target;
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
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
