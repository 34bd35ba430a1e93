//! Reading the index file: whole pages through `pread`, each checked (CRC seeded with
//! the log's salt and the page's offset, kind) when it is loaded, kept in a bounded
//! cache (8 MiB, clock eviction). No `mmap`: a file truncated under a reader gives a
//! short read, which is an error the caller recovers from, never a `SIGBUS`.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use super::format::{self, Kind, PAGE};
use crate::error::Error;

/// Pages the cache holds: 8 MiB.
pub const CACHE_PAGES: usize = 2048;

pub type Page = Arc<[u8]>;

/// An open index file and its page cache.
pub struct IndexFile {
    file: File,
    salt: u64,
    cache: Mutex<Clock>,
    capacity: usize,
}

impl std::fmt::Debug for IndexFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexFile").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Clock {
    map: HashMap<u64, usize>,
    slots: Vec<(u64, Page, bool)>,
    hand: usize,
}

impl IndexFile {
    pub fn new(file: File, salt: u64) -> IndexFile {
        Self::with_capacity(file, salt, CACHE_PAGES)
    }

    pub fn with_capacity(file: File, salt: u64, pages: usize) -> IndexFile {
        IndexFile {
            file,
            salt,
            cache: Mutex::new(Clock::default()),
            capacity: pages.max(1),
        }
    }

    /// Reads `buf.len()` bytes at `offset` without the cache (open's manifest search).
    pub fn read_raw(&self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        self.file.read_exact_at(buf, offset).map_err(|e| {
            Error::io(
                format!(
                    "read {} bytes of the index file at byte offset {offset}",
                    buf.len()
                ),
                e,
            )
        })
    }

    pub fn len(&self) -> Result<u64, Error> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io("stat the index file".to_string(), e))
    }

    /// The page at `offset`, checked to be a valid page of `kind`.
    pub fn page(&self, offset: u64, kind: Kind) -> Result<Page, Error> {
        {
            let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(&i) = c.map.get(&offset) {
                c.slots[i].2 = true;
                let page = Arc::clone(&c.slots[i].1);
                drop(c);
                // Checked when loaded; the kind is checked per use (a column must not
                // be read through a page of another).
                if format::le_u32(&page, format::PAYLOAD) != kind as u32 {
                    return Err(damaged(offset, "a page of another kind".into()));
                }
                return Ok(page);
            }
        }
        let mut buf = vec![0u8; PAGE];
        self.read_raw(&mut buf, offset)?;
        format::check(&buf, kind, self.salt, offset).map_err(|why| damaged(offset, why))?;
        let page: Page = buf.into();
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.map.contains_key(&offset) {
            return Ok(page);
        }
        if c.slots.len() < self.capacity {
            let i = c.slots.len();
            c.slots.push((offset, Arc::clone(&page), false));
            c.map.insert(offset, i);
        } else {
            // Clock: pass over referenced pages (clearing the mark), evict the first
            // unreferenced one.
            loop {
                let h = c.hand;
                c.hand = (h + 1) % c.slots.len();
                if c.slots[h].2 {
                    c.slots[h].2 = false;
                } else {
                    let old = c.slots[h].0;
                    c.map.remove(&old);
                    c.slots[h] = (offset, Arc::clone(&page), false);
                    c.map.insert(offset, h);
                    break;
                }
            }
        }
        Ok(page)
    }

    /// The `n` consecutive pages from `offset` on, read by one `pread` into `into`
    /// (resized to `n` pages) and each checked as [`IndexFile::page`] checks a page,
    /// without the cache: for a long run of one column (a catch-up reading locations
    /// page after page), where loading each page into the cache would cost an
    /// allocation, a `pread` and an eviction per 4 KiB for pages used once.
    pub fn pages_uncached(
        &self,
        offset: u64,
        n: usize,
        kind: Kind,
        into: &mut Vec<u8>,
    ) -> Result<(), Error> {
        into.resize(n * PAGE, 0);
        self.read_raw(into, offset)?;
        for (k, page) in into.chunks_exact(PAGE).enumerate() {
            let at = offset + (k * PAGE) as u64;
            format::check(page, kind, self.salt, at).map_err(|why| damaged(at, why))?;
        }
        Ok(())
    }

    /// Heap bytes the cache holds now.
    pub fn cached_bytes(&self) -> u64 {
        let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        (c.slots.len() * (PAGE + 64)) as u64
    }
}

fn damaged(offset: u64, why: String) -> Error {
    Error::CorruptRecord {
        position: 0,
        offset,
        detail: format!("index file: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(pages: &[(Kind, u64)], salt: u64) -> (tempfile::NamedTempFile, Vec<u8>) {
        let mut bytes = Vec::new();
        for (i, &(kind, fill)) in pages.iter().enumerate() {
            let mut p = vec![fill as u8; PAGE];
            format::seal(&mut p, kind, salt, (i * PAGE) as u64);
            bytes.extend_from_slice(&p);
        }
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&bytes).unwrap();
        (f, bytes)
    }

    #[test]
    fn pages_are_checked_cached_and_evicted() {
        let (f, _) = file_of(
            &[
                (Kind::Header, 0),
                (Kind::Types, 1),
                (Kind::Types, 2),
                (Kind::Types, 3),
            ],
            9,
        );
        let ix = IndexFile::with_capacity(f.reopen().unwrap(), 9, 2);
        assert_eq!(ix.page(PAGE as u64, Kind::Types).unwrap()[0], 1);
        assert!(
            ix.page(PAGE as u64, Kind::Locations).is_err(),
            "kind checked on a hit"
        );
        assert!(ix.page(0, Kind::Types).is_err(), "kind checked on a miss");
        for round in 0..3 {
            for k in 1..4u64 {
                assert_eq!(
                    ix.page(k * PAGE as u64, Kind::Types).unwrap()[0],
                    k as u8,
                    "{round}"
                );
            }
        }
        assert!(ix.cached_bytes() <= 2 * (PAGE as u64 + 64));
        assert!(
            ix.page(9 * PAGE as u64, Kind::Types).is_err(),
            "past the end: short read"
        );
    }

    /// A run of pages read past the cache is checked page by page as `page` checks
    /// one (damage, another kind, a page moved, a short read), and caches nothing.
    #[test]
    fn runs_of_pages_read_past_the_cache_are_checked() {
        let pages = [
            (Kind::Header, 0),
            (Kind::Locations, 1),
            (Kind::Locations, 2),
            (Kind::Locations, 3),
        ];
        let (f, bytes) = file_of(&pages, 9);
        let ix = IndexFile::new(f.reopen().unwrap(), 9);
        let mut into = vec![7u8; 10 * PAGE];
        ix.pages_uncached(PAGE as u64, 3, Kind::Locations, &mut into)
            .unwrap();
        assert_eq!(into, bytes[PAGE..], "the three pages, nothing else");
        assert_eq!(ix.cached_bytes(), 0);
        assert!(ix.pages_uncached(0, 2, Kind::Locations, &mut into).is_err());
        assert!(ix
            .pages_uncached(PAGE as u64, 3, Kind::Types, &mut into)
            .is_err());
        assert!(
            ix.pages_uncached(2 * PAGE as u64, 3, Kind::Locations, &mut into)
                .is_err(),
            "past the end: short read"
        );
        // Damage in the last page of a run; a page moved within it.
        for (at, what) in [(3 * PAGE + 100, "flip"), (2 * PAGE, "moved")] {
            let mut bad = bytes.clone();
            if what == "flip" {
                bad[at] ^= 1;
            } else {
                bad.copy_within(PAGE..2 * PAGE, 2 * PAGE);
            }
            let mut g = tempfile::NamedTempFile::new().unwrap();
            g.write_all(&bad).unwrap();
            let ix = IndexFile::new(g.reopen().unwrap(), 9);
            assert!(
                ix.pages_uncached(PAGE as u64, 3, Kind::Locations, &mut into)
                    .is_err(),
                "{what}"
            );
            assert!(ix
                .pages_uncached(PAGE as u64, 1, Kind::Locations, &mut into)
                .is_ok());
        }
    }

    #[test]
    fn damaged_or_foreign_pages_are_refused() {
        let (f, bytes) = file_of(&[(Kind::Header, 0), (Kind::Types, 1)], 9);
        let foreign = IndexFile::new(f.reopen().unwrap(), 10);
        assert!(foreign.page(PAGE as u64, Kind::Types).is_err());
        // A valid page copied to another offset.
        let mut moved = bytes.clone();
        moved.extend_from_slice(&bytes[PAGE..]);
        let mut g = tempfile::NamedTempFile::new().unwrap();
        g.write_all(&moved).unwrap();
        let ix = IndexFile::new(g.reopen().unwrap(), 9);
        assert!(ix.page(PAGE as u64, Kind::Types).is_ok());
        assert!(ix.page(2 * PAGE as u64, Kind::Types).is_err());
        // Truncated under the reader: a short read is an error, not a crash.
        let ix = IndexFile::new(f.reopen().unwrap(), 9);
        f.as_file().set_len(PAGE as u64 + 100).unwrap();
        assert!(ix.page(PAGE as u64, Kind::Types).is_err());
    }
}
