//! The writer's checkpoint thread: off the append path, it freezes the delta, writes
//! it as a segment, syncs, appends a manifest, syncs, and swaps the frozen delta for
//! the segment under the index's write lock. It runs when the delta covers
//! [`CHECKPOINT_BYTES`] of log (the writer asks), every [`INTERVAL`] otherwise, and
//! once more at `close`; never while the unwritten log is under [`MIN_BYTES`] (a scan
//! of that costs less than a millisecond at open). A failure logs a warning and leaves
//! the delta in memory: the index is derived, so no append ever fails for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use super::format::SegmentMeta;
use super::{write_checkpoint, IndexWriter};
use crate::store::ids::IdKeys;
use crate::store::index::{rebuild_from_log, Frozen, Index, LogSource, Part, StreamMap};
use crate::store::types_table::TypeTable;

/// Log bytes of delta at which the writer asks for a checkpoint.
pub const CHECKPOINT_BYTES: u64 = 32 << 20;
/// Below this much unwritten log, nothing is checkpointed.
pub const MIN_BYTES: u64 = 1 << 20;
/// How often the thread looks when not asked.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// When checkpoints run (the constants above, smaller in tests).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Below this much unwritten log, nothing is checkpointed.
    pub min_bytes: u64,
    /// At this much log in the delta, the writer asks for a checkpoint.
    pub ask_bytes: u64,
    pub interval: Duration,
    /// A scan at open of more events than this keeps no id hashes (see
    /// `Delta::hashes_dropped`).
    pub keep_hashes: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_bytes: MIN_BYTES,
            ask_bytes: CHECKPOINT_BYTES,
            interval: INTERVAL,
            keep_hashes: crate::store::index::KEEP_HASHES,
        }
    }
}

/// What a checkpoint needs, shared by the thread and `close`.
pub(crate) struct Job {
    pub index: Arc<RwLock<Index>>,
    pub writer: Mutex<IndexWriter>,
    pub log: Arc<LogSource>,
    pub thresholds: Thresholds,
    /// When the last checkpoint failed: the thread waits an interval before the next
    /// try (a read-only directory must not make every group commit freeze a part).
    pub failed_at: Mutex<Option<std::time::Instant>>,
    /// Position ranges whose merge failed (their log range is damaged): never tried
    /// again, so that one damaged byte neither stops every later merge (the first
    /// candidate would be the same window forever) nor re-reads its range from the
    /// log at every checkpoint.
    pub failed_merges: Mutex<Vec<std::ops::Range<u64>>>,
}

impl Job {
    /// Writes a checkpoint if at least `min` bytes of log are not in a segment yet.
    /// Returns whether one was written.
    pub fn run(&self, min: u64) -> bool {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < self.thresholds.interval {
                return false;
            }
        }
        let (mut frozen, context) = {
            let mut ix = self.index.write().unwrap_or_else(|p| p.into_inner());
            if ix.unwritten_log_bytes() < min.max(1) {
                return false;
            }
            let frozen = match ix.freeze() {
                Some(f) => f,
                None => match ix.snapshot() {
                    Some(f) => f,
                    None => return false,
                },
            };
            let failed = self.failed_merges.lock().unwrap_or_else(|p| p.into_inner());
            let context = merge_candidate(&frozen.parts, &failed)
                .map(|range| (range, ix.merge_context(), ix.keys()));
            drop(failed);
            (frozen, context)
        };
        if let Some((range, (by_id, types), keys)) = context {
            self.merge(&mut frozen, range, &by_id, &types, keys);
        }
        match write_checkpoint(&mut w, &self.log, &frozen) {
            Ok(written) => {
                *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
                drop(frozen);
                self.index
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .install(&written);
                true
            }
            Err(e) => {
                *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(std::time::Instant::now());
                crate::log::log(
                    crate::log::Level::Warn,
                    &format!(
                        "writing the index file failed (the store is unaffected; the next \
                         checkpoint tries again): {e}"
                    ),
                );
                false
            }
        }
    }
}

/// Segments merged at most into one of this many events: a merge rebuilds the range
/// from the log in memory (some 45 bytes per event while it runs).
pub const MERGE_CAP: u64 = 1 << 20;

/// `⌊log₄ n⌋`.
fn tier(n: u64) -> u32 {
    (63 - n.max(1).leading_zeros()) / 2
}

/// Four adjacent segments of the same tier, together at most [`MERGE_CAP`] events,
/// overlapping no position range in `failed`.
fn merge_candidate(
    parts: &[Part],
    failed: &[std::ops::Range<u64>],
) -> Option<std::ops::Range<usize>> {
    let metas: Vec<Option<SegmentMeta>> = parts
        .iter()
        .map(|p| match p {
            Part::Disk(s) if s.rebuilt.get().is_none() => Some(s.meta),
            _ => None,
        })
        .collect();
    (0..metas.len().saturating_sub(3))
        .find(|&i| {
            let w = &metas[i..i + 4];
            w.iter().all(Option::is_some) && {
                let first = tier(w[0].expect("some").count);
                let (a, z) = (w[0].expect("some"), w[3].expect("some"));
                let (lo, hi) = (a.first, z.first + z.count);
                w.iter().all(|m| tier(m.expect("some").count) == first)
                    && w.iter().map(|m| m.expect("some").count).sum::<u64>() <= MERGE_CAP
                    && !failed.iter().any(|f| f.start < hi && lo < f.end)
            }
        })
        .map(|i| i..i + 4)
}

impl Job {
    /// Replaces `range` of `frozen.parts` (adjacent segments) by one in-memory part
    /// rebuilt from the log range they cover, to be written as one segment. A failure
    /// leaves the parts as they are.
    fn merge(
        &self,
        frozen: &mut Frozen,
        range: std::ops::Range<usize>,
        by_id: &StreamMap,
        types: &TypeTable,
        keys: IdKeys,
    ) {
        let old: Vec<Part> = frozen.parts[range.clone()].to_vec();
        let metas: Vec<SegmentMeta> = old
            .iter()
            .filter_map(|p| match p {
                Part::Disk(s) => Some(s.meta),
                Part::Mem(_) => None,
            })
            .collect();
        let (a, z) = (metas[0], metas[metas.len() - 1]);
        let meta = SegmentMeta {
            first: a.first,
            count: metas.iter().map(|m| m.count).sum(),
            log_start: a.log_start,
            log_end: z.log_end,
            ..SegmentMeta::default()
        };
        match rebuild_from_log(&self.log, &meta, by_id, types, keys) {
            Ok(d) => {
                let d = Arc::new(d);
                frozen.parts.splice(range, [Part::Mem(Arc::clone(&d))]);
                frozen.merged.push((d, old));
            }
            Err(e) => {
                crate::log::log(
                    crate::log::Level::Warn,
                    &format!(
                        "merging the index segments of positions {}..{} failed (they stay \
                         as they are, and are not merged again): {e}",
                        meta.first,
                        meta.first + meta.count
                    ),
                );
                self.failed_merges
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(meta.first..meta.first + meta.count);
            }
        }
    }
}

#[derive(Default)]
struct Signal {
    stop: bool,
    asked: bool,
}

/// The background thread of a writer.
pub(crate) struct Checkpointer {
    job: Arc<Job>,
    signal: Arc<(Mutex<Signal>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
    started: AtomicBool,
}

impl Checkpointer {
    /// The checkpointer of a writer. Its thread starts the first time the unwritten
    /// log reaches the minimum size: a small store never has one (nor pays for it,
    /// nor leaves one behind in a child it forks).
    pub fn start(job: Job) -> Checkpointer {
        Checkpointer {
            job: Arc::new(job),
            signal: Arc::default(),
            thread: Mutex::new(None),
            started: AtomicBool::new(false),
        }
    }

    fn spawn(&self) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let (j, s) = (Arc::clone(&self.job), Arc::clone(&self.signal));
        let thread = std::thread::Builder::new()
            .name("eventstore-index".into())
            .spawn(move || loop {
                {
                    let (lock, cv) = &*s;
                    let mut sig = lock.lock().unwrap_or_else(|p| p.into_inner());
                    if !sig.asked && !sig.stop {
                        sig = cv
                            .wait_timeout(sig, j.thresholds.interval)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                    if sig.stop {
                        return;
                    }
                    sig.asked = false;
                }
                // Asked (the delta passed the threshold) or periodic: the same floor.
                j.run(j.thresholds.min_bytes);
            });
        match thread {
            Ok(t) => *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(t),
            Err(e) => crate::log::log(
                crate::log::Level::Warn,
                &format!(
                    "could not start the index checkpoint thread ({e}): the index is \
                     written at close only"
                ),
            ),
        }
    }

    /// After a group commit (and at open): starts the thread once the delta covers
    /// the minimum, and asks for a checkpoint when it covers the threshold.
    pub fn ask_if(&self, delta_bytes: u64) {
        let t = &self.job.thresholds;
        if delta_bytes >= t.min_bytes.max(1) && !self.started.load(Ordering::Acquire) {
            self.spawn();
        }
        if delta_bytes >= t.ask_bytes {
            self.ask();
        }
    }

    /// Asks for a checkpoint soon.
    pub fn ask(&self) {
        let (lock, cv) = &*self.signal;
        let mut sig = lock.lock().unwrap_or_else(|p| p.into_inner());
        if !sig.asked {
            sig.asked = true;
            cv.notify_one();
        }
    }

    /// Stops the thread, then writes the final checkpoint (at `close`).
    pub fn finish(&mut self, checkpoint: bool) {
        {
            let (lock, cv) = &*self.signal;
            lock.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
            cv.notify_one();
        }
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        if checkpoint {
            // The last try at close, whatever failed before.
            *self.job.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
            self.job.run(self.job.thresholds.min_bytes);
        }
    }

    pub fn job(&self) -> &Job {
        &self.job
    }
}

impl Checkpointer {
    /// Forgets the index thread without stopping it: in a child made by `fork()`,
    /// which has a copy of this checkpointer but not the thread (joining it would wait
    /// forever). Only its handle leaks; nothing is written.
    pub fn abandon(&mut self) {
        if let Some(t) = self
            .thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            std::mem::forget(t);
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if self
            .thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            self.finish(false);
        }
    }
}
