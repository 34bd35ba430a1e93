//! Reading one segment of the index file through the page cache: locations, type ids,
//! a stream's run of entries (clustered: one stream's entries lie together), and the
//! id probe (the segment's Bloom filter, then its id slots).
//!
//! Every value read is checked against what the segment covers (a location inside its
//! log range, a type id the manifest names, a position inside the segment), so a page
//! that checks out but holds nonsense (a bug, a hand-made file) is an error like a
//! damaged one; the caller then rebuilds the segment from the log.

use std::sync::{Arc, OnceLock};

use super::cache::IndexFile;
use super::format::{self, Kind, SegmentMeta, PAGE};
use crate::error::Error;
use crate::store::ids;
use crate::store::index::{Delta, RecordLocation};

/// One segment of the index file.
#[derive(Debug)]
pub struct Segment {
    pub meta: SegmentMeta,
    pub file: Arc<IndexFile>,
    /// Number of type names the manifest holds (type ids must be below it).
    pub type_count: u32,
    bloom: OnceLock<Vec<u8>>,
    /// The segment rebuilt from the log after a page of it was found damaged; used in
    /// its place from then on.
    pub rebuilt: OnceLock<Arc<Delta>>,
}

/// A stream's run in a segment: its first version there, its count, and where its
/// entries start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAt {
    pub first_version: u64,
    pub count: u64,
    pub first_entry: u64,
}

fn bad(what: String) -> Error {
    Error::CorruptRecord {
        position: 0,
        offset: 0,
        detail: format!("index file: {what}"),
    }
}

impl Segment {
    pub fn new(meta: SegmentMeta, file: Arc<IndexFile>, type_count: u32) -> Segment {
        Segment {
            meta,
            file,
            type_count,
            bloom: OnceLock::new(),
            rebuilt: OnceLock::new(),
        }
    }

    pub fn first(&self) -> u64 {
        self.meta.first
    }

    pub fn end(&self) -> u64 {
        self.meta.first + self.meta.count
    }

    /// Heap bytes held in memory (the Bloom filter once loaded, a rebuilt copy).
    pub fn heap_bytes(&self) -> u64 {
        self.bloom.get().map_or(0, |b| b.capacity() as u64)
            + self.rebuilt.get().map_or(0, |d| d.heap_bytes())
    }

    pub fn bloom_bytes(&self) -> u64 {
        self.bloom.get().map_or(0, |b| b.capacity() as u64)
    }

    fn page(
        &self,
        column: u64,
        index: u64,
        per_page: u64,
        kind: Kind,
    ) -> Result<(Arc<[u8]>, usize), Error> {
        let page = self
            .file
            .page(column + (index / per_page) * PAGE as u64, kind)?;
        Ok((page, (index % per_page) as usize))
    }

    fn check_location(&self, raw: u64) -> Result<RecordLocation, Error> {
        let loc = RecordLocation::from_raw(raw);
        if loc.offset() < self.meta.log_start || loc.end() > self.meta.log_end {
            return Err(bad(format!(
                "a location ({}+{}) outside the segment's log range",
                loc.offset(),
                loc.size()
            )));
        }
        Ok(loc)
    }

    /// Locations of positions `from..to` (inside the segment) onto `out`.
    pub fn locations(
        &self,
        from: u64,
        to: u64,
        out: &mut Vec<RecordLocation>,
    ) -> Result<(), Error> {
        out.reserve((to - from) as usize);
        self.entries_of(
            (
                self.meta.locations,
                format::LOCATIONS_PER_PAGE,
                Kind::Locations,
                8,
            ),
            from..to,
            |raw| {
                let raw = u64::from_le_bytes(raw.try_into().expect("8 bytes"));
                out.push(self.check_location(raw)?);
                Ok(())
            },
        )
    }

    /// Calls `each` with the raw entry of every position of `range` (inside the
    /// segment), in order, from the column `(offset, entries per page, kind, entry
    /// width)`. A run of at least a page's worth of entries (a catch-up's page, a
    /// filtered scan's chunk) reads its pages in one `pread` past the page cache
    /// ([`IndexFile::pages_uncached`]); shorter ones go through the cache.
    fn entries_of(
        &self,
        (column, per, kind, width): (u64, u64, Kind, usize),
        range: std::ops::Range<u64>,
        mut each: impl FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut i = range.start - self.meta.first;
        let end = range.end - self.meta.first;
        if i >= end {
            return Ok(());
        }
        if end - i >= per {
            let first = i / per;
            let n = ((end - 1) / per - first + 1) as usize;
            let mut pages = Vec::new();
            self.file
                .pages_uncached(column + first * PAGE as u64, n, kind, &mut pages)?;
            for (k, page) in pages.chunks_exact(PAGE).enumerate() {
                let page_first = (first + k as u64) * per;
                let at = (i - page_first) as usize;
                let stop = (end - page_first).min(per) as usize;
                for raw in page[at * width..stop * width].chunks_exact(width) {
                    each(raw)?;
                }
                i = page_first + stop as u64;
            }
            debug_assert_eq!(i, end);
            return Ok(());
        }
        while i < end {
            let (page, at) = self.page(column, i, per, kind)?;
            let n = (per - at as u64).min(end - i) as usize;
            for raw in page[at * width..(at + n) * width].chunks_exact(width) {
                each(raw)?;
            }
            i += n as u64;
        }
        Ok(())
    }

    pub fn location(&self, position: u64) -> Result<RecordLocation, Error> {
        let (page, at) = self.page(
            self.meta.locations,
            position - self.meta.first,
            format::LOCATIONS_PER_PAGE,
            Kind::Locations,
        )?;
        self.check_location(format::le_u64(&page, at * 8))
    }

    /// Type ids of positions `from..to` onto `out`.
    pub fn types(&self, from: u64, to: u64, out: &mut Vec<u32>) -> Result<(), Error> {
        out.reserve((to - from) as usize);
        self.entries_of(
            (self.meta.types, format::TYPES_PER_PAGE, Kind::Types, 4),
            from..to,
            |raw| {
                let t = u32::from_le_bytes(raw.try_into().expect("4 bytes"));
                if t >= self.type_count {
                    return Err(bad(format!("type id {t} of {}", self.type_count)));
                }
                out.push(t);
                Ok(())
            },
        )
    }

    fn dir_entry(&self, k: u64) -> Result<(u32, RunAt), Error> {
        let (page, at) = self.page(
            self.meta.directory,
            k,
            format::DIR_PER_PAGE,
            Kind::Directory,
        )?;
        let b = &page[at * format::DIR_LEN..(at + 1) * format::DIR_LEN];
        let run = RunAt {
            first_version: format::le_u64(b, 8),
            count: format::le_u64(b, 16),
            first_entry: format::le_u64(b, 24),
        };
        if run.count == 0
            || run
                .first_entry
                .checked_add(run.count)
                .is_none_or(|e| e > self.meta.count)
        {
            return Err(bad("a directory entry outside the segment".into()));
        }
        Ok((format::le_u32(b, 0), run))
    }

    /// The run of stream `number` in this segment, if it has events here.
    pub fn stream_run(&self, number: u32) -> Result<Option<RunAt>, Error> {
        let (mut lo, mut hi) = (0u64, self.meta.dir_entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (n, run) = self.dir_entry(mid)?;
            match n.cmp(&number) {
                std::cmp::Ordering::Equal => return Ok(Some(run)),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok(None)
    }

    fn entry(&self, page: &[u8], at: usize) -> Result<(u64, u32, RecordLocation), Error> {
        let b = &page[at * format::ENTRY_LEN..(at + 1) * format::ENTRY_LEN];
        let rel = u64::from(format::le_u32(b, 0));
        let t = format::le_u32(b, 4);
        if rel >= self.meta.count || t >= self.type_count {
            return Err(bad("a stream entry outside the segment".into()));
        }
        Ok((
            self.meta.first + rel,
            t,
            self.check_location(format::le_u64(b, 8))?,
        ))
    }

    /// Entries `from..to` of a run (position, type id, location) onto `out`.
    pub fn entries(
        &self,
        run: RunAt,
        from: u64,
        to: u64,
        out: &mut Vec<(u64, u32, RecordLocation)>,
    ) -> Result<(), Error> {
        let per = format::ENTRIES_PER_PAGE;
        let mut i = run.first_entry + from;
        let end = run.first_entry + to;
        while i < end {
            let (page, at) = self.page(self.meta.entries, i, per, Kind::Entries)?;
            let n = (per - at as u64).min(end - i) as usize;
            for k in 0..n {
                out.push(self.entry(&page, at + k)?);
            }
            i += n as u64;
        }
        Ok(())
    }

    /// The first entry of a run whose position is at least `position`.
    pub fn lower_bound(&self, run: RunAt, position: u64) -> Result<u64, Error> {
        let (mut lo, mut hi) = (0u64, run.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let i = run.first_entry + mid;
            let (page, at) = self.page(
                self.meta.entries,
                i,
                format::ENTRIES_PER_PAGE,
                Kind::Entries,
            )?;
            if self.entry(&page, at)?.0 < position {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    fn bloom(&self) -> Result<&[u8], Error> {
        if let Some(b) = self.bloom.get() {
            return Ok(b);
        }
        let blocks = self.meta.bloom_blocks;
        let mut filter = Vec::with_capacity(blocks as usize * format::BLOCK_LEN);
        let per = format::BLOCKS_PER_PAGE;
        let mut k = 0;
        while k < blocks {
            let n = per.min(blocks - k) as usize;
            match self.page(self.meta.bloom, k, per, Kind::Bloom) {
                Ok((page, _)) => filter.extend_from_slice(&page[..n * format::BLOCK_LEN]),
                // The filter only spares probes: a damaged page's blocks are taken as
                // "may hold" (every bit set) and the id slots answer. Rebuilding the
                // segment instead would make every id lookup in it, and so every
                // append's id check, fail when its log range is damaged too.
                Err(e) => {
                    crate::log::log(
                        crate::log::Level::Warn,
                        &format!(
                            "a Bloom filter page of the index segment of positions {}..{} \
                             is unusable ({e}); its ids are probed without it",
                            self.meta.first,
                            self.end()
                        ),
                    );
                    filter.resize(filter.len() + n * format::BLOCK_LEN, 0xff);
                }
            }
            k += n as u64;
        }
        Ok(self.bloom.get_or_init(|| filter))
    }

    /// Positions in this segment whose id has the tag of hash `h`, onto `out`.
    pub fn id_candidates(&self, h: u64, out: &mut Vec<u64>) -> Result<(), Error> {
        if !format::bloom_may_hold(self.bloom()?, self.meta.bloom_blocks, h) {
            return Ok(());
        }
        let cap = self.meta.id_capacity;
        let per = format::SLOTS_PER_PAGE;
        let mut i = ids::home(h, cap);
        let tag = ids::tag(h);
        for _ in 0..cap {
            let (page, at) = self.page(self.meta.ids, i, per, Kind::IdSlots)?;
            let s = format::le_u64(&page, at * 8);
            if s == 0 {
                return Ok(());
            }
            let (position, t) = ids::slot_parts(s);
            if t == tag {
                if position < self.meta.first || position >= self.end() {
                    return Err(bad("an id slot outside the segment".into()));
                }
                out.push(position);
            }
            i += 1;
            if i == cap {
                i = 0;
            }
        }
        Ok(())
    }
}
