//! Following the log: waiting for new events, filtered reads, subscriptions.
//!
//! Waiting costs no CPU: a waiter sleeps in `futex_waitv` on two words at once, the
//! side file's wake word (changed by the writer after every durable publish, in any
//! process) and its handle's own word (changed by [`Store::wake`], and by this
//! handle's writer when it has no side file). It re-checks after every wake-up, and
//! loads the words *before* checking, so that a publish between its check and its
//! sleep changes the word and the sleep returns at once (no lost wake-up).
//!
//! A subscription is a position and a filter, nothing more: every call reads the store
//! from its position (catch-up and live are the same code), so nothing is queued,
//! nothing can overflow, and a slow subscriber never holds up the writer.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::store::read::{self, EventBatch, Visitor};
use crate::store::shared;
use crate::store::types_table::{Filter, TypeMatch};
use crate::store::{read_lock, Store};

/// How many events one filtered read examines at most before it returns (with the
/// position to continue from), so that a filter matching nothing over a huge log
/// still answers promptly.
const FILTER_BUDGET: u64 = 1 << 22;

/// A read-only handle without a side file to wait on (no writer has created one yet,
/// or it cannot be read) looks again this often.
const NO_SIDE_FILE_RECHECK: Duration = Duration::from_millis(100);

/// A handle's own wake-up state.
#[derive(Debug, Default)]
pub(crate) struct Wakeup {
    /// Incremented by every [`Store::wake`].
    epoch: AtomicU64,
    /// The word this handle's waiters also sleep on (process-private futex).
    word: AtomicU32,
}

impl Wakeup {
    fn bump(&self) {
        self.word.fetch_add(1, Ordering::Release);
        shared::futex_wake(&self.word, false);
    }
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now().checked_add(t).unwrap_or_else(far_future))
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

impl Store {
    /// Waits until the store holds more than `position` events (its global position
    /// exceeds `position`), until `timeout` passes (`None`: no limit; zero: do not
    /// wait), or until [`Store::wake`] is called; returns the global position then.
    /// Works on writer and read-only handles, for appends made in this process or in
    /// another, and uses no CPU while it waits.
    pub fn wait(&self, position: u64, timeout: Option<Duration>) -> Result<u64, Error> {
        let epoch = self.wakeup.epoch.load(Ordering::Acquire);
        Ok(self.wait_since(position, deadline(timeout), epoch)?.0)
    }

    /// Makes every call waiting on this handle ([`Store::wait`],
    /// [`Subscription::next_batch`]) return at once.
    pub fn wake(&self) {
        self.wakeup.epoch.fetch_add(1, Ordering::AcqRel);
        self.wakeup.bump();
    }

    /// Wakes this handle's waiters after a publish, when no side file does it.
    pub(crate) fn published(&self, end: u64) {
        match self.side.get() {
            Some(side) => side.publish(end, read_lock(&self.index).event_count()),
            None => self.wakeup.bump(),
        }
    }

    /// [`Store::wait`] until `deadline`, also returning whether it stopped without new
    /// events (time out, or a wake since `epoch`).
    pub(crate) fn wait_since(
        &self,
        position: u64,
        deadline: Option<Instant>,
        epoch: u64,
    ) -> Result<(u64, bool), Error> {
        loop {
            let side = self.side.get();
            let shared_word = side.map(|s| s.wake_word());
            let local = self.wakeup.word.load(Ordering::Acquire);
            self.refresh()?;
            let n = read_lock(&self.index).event_count();
            if n > position {
                return Ok((n, false));
            }
            if self.wakeup.epoch.load(Ordering::Acquire) != epoch {
                return Ok((n, true));
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return Ok((n, true));
            }
            let mut until = deadline;
            if shared_word.is_none() && self.follower.is_some() {
                let recheck = now + NO_SIDE_FILE_RECHECK;
                until = Some(until.map_or(recheck, |d| d.min(recheck)));
            }
            if side
                .zip(shared_word)
                .is_some_and(|(s, (w, _))| !s.is_current(w))
            {
                // The side file was replaced during the check: look again on the new one.
                continue;
            }
            shared::futex_wait(shared_word, (&self.wakeup.word, local), until);
        }
    }

    /// Starts a subscription at global position `from_position` (0: the beginning; a
    /// saved [`Subscription::position`]: resume) delivering the events `filter`
    /// selects.
    pub fn subscribe(&self, from_position: u64, filter: Filter) -> Subscription<'_> {
        Subscription {
            store: self,
            position: from_position,
            matcher: TypeMatch::new(filter),
        }
    }

    /// Up to `max_count` events from `from_position` on that `filter` selects, and the
    /// position the next call should start from (past what was examined; it may stop
    /// early after examining many events, but always advances unless it is at the
    /// end, and is never less than `from_position`). Events that do not match are
    /// judged from the index (type id, stream) and never read.
    pub fn read_all_filtered(
        &self,
        from_position: u64,
        max_count: u64,
        filter: &Filter,
    ) -> Result<(EventBatch, u64), Error> {
        let mut batch = EventBatch::default();
        let mut matcher = TypeMatch::new(filter.clone());
        let next =
            self.read_filtered_into(from_position, max_count, &mut matcher, &mut batch, None)?;
        Ok((batch, next))
    }

    /// [`Store::read_all_filtered`], calling `visit` with each record as soon as it is
    /// verified (for the C ABI).
    pub(crate) fn read_all_filtered_visit(
        &self,
        from_position: u64,
        max_count: u64,
        filter: &Filter,
        visit: Visitor<'_>,
    ) -> Result<(EventBatch, u64), Error> {
        let mut batch = EventBatch::default();
        let mut matcher = TypeMatch::new(filter.clone());
        let next = self.read_filtered_into(
            from_position,
            max_count,
            &mut matcher,
            &mut batch,
            Some(visit),
        )?;
        Ok((batch, next))
    }

    /// [`Store::read_all_filtered`] with a compiled filter, into `batch`.
    pub(crate) fn read_filtered_into(
        &self,
        from: u64,
        max_count: u64,
        matcher: &mut TypeMatch,
        batch: &mut EventBatch,
        visit: Option<Visitor<'_>>,
    ) -> Result<u64, Error> {
        self.refresh()?;
        let f = matcher.filter();
        if f.stream_id.is_none() && !f.selects_types() {
            let (first, locations) = read_lock(&self.index).locate_range(from, max_count);
            read::read_range(
                self.file.as_ref(),
                &self.path,
                first,
                &locations,
                batch,
                visit,
            )?;
            return Ok((first + locations.len() as u64).max(from));
        }
        let (located, next) =
            read_lock(&self.index).locate_filtered(from, max_count, FILTER_BUDGET, matcher);
        read::read_located(self.file.as_ref(), &self.path, &located, batch, visit)?;
        Ok(next)
    }
}

/// A position in the log and a filter: delivers every matching event from there on,
/// exactly once and in order, first what is stored, then new events as they are
/// acknowledged. Used by one thread at a time; many may exist per store.
#[derive(Debug)]
pub struct Subscription<'a> {
    store: &'a Store,
    position: u64,
    matcher: TypeMatch,
}

impl Subscription<'_> {
    /// The next global position it will examine: save it, and resume with
    /// `store.subscribe(saved, filter)`, neither repeating nor skipping an event.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Up to `max_count` matching events: at once when some are available, else the
    /// first to arrive within `timeout` (`None`: no limit). Empty when the time ran out
    /// or [`Store::wake`] was called; the position is then the end of the log as it
    /// saw it.
    pub fn next_batch(
        &mut self,
        max_count: u64,
        timeout: Option<Duration>,
    ) -> Result<EventBatch, Error> {
        let mut batch = EventBatch::default();
        self.next_batch_visit(max_count, timeout, &mut batch, None)?;
        Ok(batch)
    }

    /// [`Subscription::next_batch`] into `batch`, replacing what it held and reusing its
    /// memory (a follower that reads page after page into one batch touches no fresh
    /// memory once the batch is large enough). On an error `batch` is left empty.
    pub fn next_batch_into(
        &mut self,
        max_count: u64,
        timeout: Option<Duration>,
        batch: &mut EventBatch,
    ) -> Result<(), Error> {
        self.next_batch_visit(max_count, timeout, batch, None)
    }

    /// [`Subscription::next_batch_into`], calling `visit` with each delivered record
    /// (for the C ABI, which builds its event table then).
    pub(crate) fn next_batch_visit(
        &mut self,
        max_count: u64,
        timeout: Option<Duration>,
        batch: &mut EventBatch,
        visit: Option<Visitor<'_>>,
    ) -> Result<(), Error> {
        batch.clear();
        if max_count == 0 {
            return Ok(());
        }
        let epoch = self.store.wakeup.epoch.load(Ordering::Acquire);
        let deadline = deadline(timeout);
        loop {
            let next = self.store.read_filtered_into(
                self.position,
                max_count,
                &mut self.matcher,
                batch,
                None,
            )?;
            self.position = next;
            if !batch.is_empty() {
                if let Some(visit) = visit {
                    for view in batch.iter() {
                        visit(batch.len(), &view);
                    }
                }
                return Ok(());
            }
            if next < self.store.global_position() {
                // Stopped on its work budget: carry on examining.
                continue;
            }
            let (_, stopped) = self.store.wait_since(self.position, deadline, epoch)?;
            if stopped {
                return Ok(());
            }
        }
    }
}
