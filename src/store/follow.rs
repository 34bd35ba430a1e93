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
use crate::types::RECORD_OVERHEAD;

/// How many events one filtered read examines at most before it returns (with the
/// position to continue from), so that a filter matching nothing over a huge log
/// still answers promptly.
const FILTER_BUDGET: u64 = 1 << 22;

/// Most record bytes one [`Subscription::next_batch`] reads (it returns fewer events
/// than asked rather than more bytes; at least one event). A caller asking for "all of
/// them" during a catch-up gets pages this large: big enough that the per-call costs
/// vanish next to copying and checking the records, small enough that a page stays in
/// the CPU's caches between being verified and being consumed, and that no catch-up
/// allocates memory in proportion to the log. Measured over 1M events of 373 bytes:
/// pages of 1,000 to 16,000 events (0.4 to 6 MB) drain fastest, 100,000 events
/// (37 MB) a third slower.
pub(crate) const SUBSCRIPTION_PAGE_BYTES: u64 = 4 << 20;

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
        let next = self.read_filtered_into(
            from_position,
            max_count,
            &mut matcher,
            &mut batch,
            None,
            None,
        )?;
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
            None,
        )?;
        Ok((batch, next))
    }

    /// [`Store::read_all_filtered`] with a compiled filter, into `batch`; with
    /// `page_bytes`, the events stop before the one whose record would take the batch
    /// past that many bytes (at least one is read).
    ///
    /// The handle catches up with the log (`refresh`) only when the read could reach
    /// past what its index already holds: a catch-up far behind the end reads page
    /// after page without the few system calls a refresh costs, and gets the same
    /// events it would have got after one (the log before the index's end never
    /// changes).
    pub(crate) fn read_filtered_into(
        &self,
        from: u64,
        max_count: u64,
        matcher: &mut TypeMatch,
        batch: &mut EventBatch,
        visit: Option<Visitor<'_>>,
        page_bytes: Option<u64>,
    ) -> Result<u64, Error> {
        let f = matcher.filter();
        let unfiltered = f.stream_id.is_none() && !f.selects_types();
        let max_count = match page_bytes {
            // Every record takes at least RECORD_OVERHEAD bytes.
            Some(bytes) => max_count.min((bytes / RECORD_OVERHEAD as u64).max(1)),
            None => max_count,
        };
        let reach = if unfiltered { max_count } else { FILTER_BUDGET };
        let mut index = read_lock(&self.index);
        if from.saturating_add(reach) > index.event_count() {
            drop(index);
            if let Err(e) = self.refresh() {
                batch.clear();
                return Err(e);
            }
            index = read_lock(&self.index);
        }
        if unfiltered {
            let located = index.locate_range(from, max_count);
            drop(index);
            let (first, mut locations) = match located {
                Ok(l) => l,
                Err(e) => {
                    batch.clear();
                    return Err(e);
                }
            };
            if let Some(bytes) = page_bytes {
                locations.truncate(within(bytes, locations.iter().map(|l| l.size())));
            }
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
        let found = index.locate_filtered(from, max_count, FILTER_BUDGET, matcher);
        drop(index);
        let (mut located, mut next) = match found {
            Ok(f) => f,
            Err(e) => {
                batch.clear();
                return Err(e);
            }
        };
        if let Some(bytes) = page_bytes {
            let keep = within(bytes, located.iter().map(|(_, l)| l.size()));
            if keep < located.len() {
                // The first match left out is examined again by the next call.
                next = located[keep].0;
                located.truncate(keep);
            }
        }
        // The matches only: no read spans a byte of a record not asked for.
        let expect = read::Expected::Matching(matcher.filter());
        read::read_located(
            self.file.as_ref(),
            &self.path,
            &located,
            expect,
            batch,
            visit,
        )?;
        Ok(next)
    }
}

/// How many of the records of `sizes` fit in `bytes`, counting from the first; at
/// least one (when there is one), so that a page always advances.
fn within(bytes: u64, sizes: impl Iterator<Item = usize>) -> usize {
    let mut total = 0u64;
    let mut n = 0;
    for size in sizes {
        total += size as u64;
        if total > bytes && n > 0 {
            break;
        }
        n += 1;
    }
    n
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
    /// The store it reads.
    pub(crate) fn store(&self) -> &Store {
        self.store
    }

    /// The next global position it will examine: save it, and resume with
    /// `store.subscribe(saved, filter)`, neither repeating nor skipping an event.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Up to `max_count` matching events: at once when some are available, else the
    /// first to arrive within `timeout` (`None`: no limit). Empty when the time ran out
    /// or [`Store::wake`] was called; the position is then the end of the log as it
    /// saw it. One call reads at most 4 MiB of records (at least one event), so asking
    /// for `u64::MAX` pages through a long catch-up in 4 MiB steps; fewer events than
    /// asked never means that the subscription has caught up.
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
                Some(SUBSCRIPTION_PAGE_BYTES),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OpenOptions;
    use crate::types::{ExpectedVersion, ProposedEvent};
    use uuid::Uuid;

    #[test]
    fn within_keeps_what_fits_and_at_least_one() {
        assert_eq!(within(10, [4, 4, 4].into_iter()), 2);
        assert_eq!(within(12, [4, 4, 4].into_iter()), 3);
        assert_eq!(within(3, [4, 4].into_iter()), 1);
        assert_eq!(within(3, std::iter::empty()), 0);
    }

    /// A store of `n` events of 4 KiB (every other one of type "Even"), more than two
    /// subscription pages, on a writer and a read-only handle.
    fn large_store(n: usize) -> (tempfile::TempDir, Store, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.store");
        let writer = Store::open(&path).unwrap();
        let stream = Uuid::new_v4();
        for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
            let events = chunk
                .iter()
                .map(|&i| ProposedEvent {
                    event_id: Uuid::nil(),
                    event_type: if i % 2 == 0 { "Even" } else { "Odd" }.into(),
                    metadata: vec![],
                    payload: vec![(i % 251) as u8; 4096],
                })
                .collect();
            writer.append(stream, ExpectedVersion::Any, events).unwrap();
        }
        let reader = Store::open_with(&path, OpenOptions::new().read_only()).unwrap();
        (dir, writer, reader)
    }

    fn record_bytes(batch: &EventBatch) -> u64 {
        batch
            .iter()
            .map(|e| (RECORD_OVERHEAD + e.event_type.len() + e.payload.len()) as u64)
            .sum()
    }

    /// A subscription asked for everything pages through the log in pages of at most
    /// SUBSCRIPTION_PAGE_BYTES, delivering every event once, in order, filtered or not.
    #[test]
    fn a_subscription_asked_for_everything_reads_bounded_pages() {
        let n = 2500; // about 10 MiB of records
        let (_dir, writer, reader) = large_store(n);
        for store in [&writer, &reader] {
            for (filter, step) in [(Filter::all(), 1), (Filter::types(["Even"]), 2)] {
                let mut sub = store.subscribe(0, filter);
                let mut batch = EventBatch::default();
                let (mut expect, mut pages, mut bytes) = (0u64, 0, 0);
                loop {
                    sub.next_batch_into(u64::MAX, Some(Duration::ZERO), &mut batch)
                        .unwrap();
                    if batch.is_empty() {
                        break;
                    }
                    pages += 1;
                    let page = record_bytes(&batch);
                    assert!(page <= SUBSCRIPTION_PAGE_BYTES, "a page of {page} bytes");
                    bytes += page;
                    for e in batch.iter() {
                        assert_eq!(e.global_position, expect);
                        assert_eq!(e.payload[0], (expect % 251) as u8);
                        expect += step;
                    }
                }
                assert_eq!(expect, n as u64, "every event, once");
                assert!(
                    pages >= bytes.div_ceil(SUBSCRIPTION_PAGE_BYTES),
                    "{pages} pages"
                );
                assert!(pages >= 2, "{pages} pages");
                assert_eq!(sub.position(), n as u64);
            }
        }
    }

    /// One batch read into page after page (large events, then small ones, then large
    /// again) holds exactly each page's events, never bytes or events of an earlier
    /// page, and its buffer never grows past one page.
    #[test]
    fn a_batch_reused_across_pages_holds_only_the_current_page() {
        let (_dir, writer, reader) = large_store(1500); // 4 KiB events: 2+ pages
        let stream = Uuid::new_v4();
        let small: Vec<_> = (0..50u8)
            .map(|i| ProposedEvent {
                event_id: Uuid::nil(),
                event_type: "Small".into(),
                metadata: vec![],
                payload: vec![i; 3],
            })
            .collect();
        writer.append(stream, ExpectedVersion::Any, small).unwrap();
        let big: Vec<_> = (0..3u8)
            .map(|i| ProposedEvent {
                event_id: Uuid::nil(),
                event_type: "Big".into(),
                metadata: vec![],
                payload: vec![200 + i; 5000],
            })
            .collect();
        writer.append(stream, ExpectedVersion::Any, big).unwrap();
        let mut sub = reader.subscribe(0, Filter::all());
        let mut batch = EventBatch::default();
        let mut expect = 0u64;
        let mut pages = Vec::new();
        for max in [u64::MAX, 450, 60, 7, 100, 1, u64::MAX] {
            sub.next_batch_into(max, Some(Duration::ZERO), &mut batch)
                .unwrap();
            pages.push(batch.len());
            assert!(
                batch.buffer_capacity() <= SUBSCRIPTION_PAGE_BYTES as usize,
                "buffer of {} bytes",
                batch.buffer_capacity()
            );
            for e in batch.iter() {
                assert_eq!(e.global_position, expect);
                let (ty, payload) = match expect {
                    p if p < 1500 => (
                        if p % 2 == 0 { "Even" } else { "Odd" },
                        vec![(p % 251) as u8; 4096],
                    ),
                    p if p < 1550 => ("Small", vec![(p - 1500) as u8; 3]),
                    p => ("Big", vec![200 + (p - 1550) as u8; 5000]),
                };
                assert_eq!(e.event_type, ty);
                assert_eq!(e.payload, &payload[..], "event {expect}");
                expect += 1;
            }
        }
        assert_eq!(expect, 1553, "every event once; pages {pages:?}");
        sub.next_batch_into(u64::MAX, Some(Duration::ZERO), &mut batch)
            .unwrap();
        assert!(batch.is_empty());
        assert_eq!(batch.iter().count(), 0);
    }

    /// A read-only handle far behind the end reads without catching up, yet a page
    /// that reaches its index's end catches up and delivers what was appended since.
    #[test]
    fn a_page_reaching_the_end_of_the_index_catches_up() {
        let (_dir, writer, reader) = large_store(300);
        let mut sub = reader.subscribe(0, Filter::all());
        assert_eq!(sub.next_batch(100, None).unwrap().len(), 100);
        writer
            .append(
                Uuid::new_v4(),
                ExpectedVersion::Any,
                vec![ProposedEvent {
                    event_id: Uuid::nil(),
                    event_type: "Late".into(),
                    metadata: vec![],
                    payload: vec![],
                }],
            )
            .unwrap();
        assert_eq!(sub.next_batch(100, None).unwrap().len(), 100);
        let last = sub.next_batch(1000, None).unwrap();
        assert_eq!(last.len(), 101, "the rest and the late event");
        assert_eq!(last.get(100).event_type, "Late");
        assert_eq!(sub.position(), 301);
    }
}
