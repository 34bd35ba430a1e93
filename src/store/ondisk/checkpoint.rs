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

use super::{write_checkpoint, IndexWriter};
use crate::store::index::{Index, LogSource};

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
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_bytes: MIN_BYTES,
            ask_bytes: CHECKPOINT_BYTES,
            interval: INTERVAL,
        }
    }
}

/// What a checkpoint needs, shared by the thread and `close`.
pub(crate) struct Job {
    pub index: Arc<RwLock<Index>>,
    pub writer: Mutex<IndexWriter>,
    pub log: Arc<LogSource>,
    pub thresholds: Thresholds,
}

impl Job {
    /// Writes a checkpoint if at least `min` bytes of log are not in a segment yet.
    /// Returns whether one was written.
    pub fn run(&self, min: u64) -> bool {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let frozen = {
            let mut ix = self.index.write().unwrap_or_else(|p| p.into_inner());
            if ix.unwritten_log_bytes() < min.max(1) {
                return false;
            }
            match ix.freeze() {
                Some(f) => f,
                None => match ix.snapshot() {
                    Some(f) => f,
                    None => return false,
                },
            }
        };
        match write_checkpoint(&mut w, &self.log, &frozen) {
            Ok(written) => {
                drop(frozen);
                self.index
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .install(&written);
                true
            }
            Err(e) => {
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
                let asked = {
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
                    std::mem::take(&mut sig.asked)
                };
                // A periodic checkpoint waits for an eighth of the threshold (4 MiB by
                // default): without merging (not built yet), a slow writer checkpointing
                // every 10 s would pile up thousands of small segments a day, while the
                // tail an open scans stays small either way.
                let t = &j.thresholds;
                let min = if asked {
                    t.min_bytes
                } else {
                    t.min_bytes.max(t.ask_bytes / 8)
                };
                j.run(min);
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
            self.job.run(self.job.thresholds.min_bytes);
        }
    }

    pub fn job(&self) -> &Job {
        &self.job
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
