//! Opening an existing file: one sequential pass that checks every batch and rebuilds
//! the index, then a judgement on whatever does not check out.
//!
//! The rules (also in `docs/format.md`):
//! - Batches must follow each other exactly: each one checks out (salted checksums),
//!   starts at the next global position, and continues its stream's versions.
//! - At the first place where that fails, the rest of the file is either a **torn tail**
//!   (the last write, cut short or reordered by a crash, or preallocated zeros) or
//!   **damage** to data that was acknowledged. It is damage when a valid batch of this
//!   file, for a position not yet seen, written by a *later* write than the one the
//!   failing place belongs to, lies anywhere after it: found byte by byte, so that a
//!   corrupted length field cannot hide it. Batches of the same group commit may reach
//!   the disk in any order, so they are not evidence of damage to each other.
//! - A torn tail is cut off (and the cut synced); damage fails the open and leaves the
//!   file untouched.

use crate::codec::{self, Damage, DecodeOutcome, BATCH_HEADER_LEN, BATCH_MAGIC, FILE_HEADER_LEN};
use crate::error::Error;
use crate::store::index::{Index, IndexBuilder, RecordLocation};
use crate::store::io::{read_exact_at, StorageFile};
use std::sync::mpsc;

/// Bytes read at a time while scanning: large reads, small enough that a chunk is
/// still in the CPU's cache when its batches are checked.
const CHUNK: usize = 1 << 20;

/// What the scan found.
#[derive(Debug)]
pub struct Scan {
    pub index: Index,
    /// End of the last valid batch: where the next append goes.
    pub end: u64,
    /// Why the bytes from `end` to the end of the file do not form a batch, if any.
    pub torn_tail: Option<String>,
}

/// Room kept in front of a prefetched chunk for the bytes of the window it follows
/// that are still needed (the start of a batch cut by the chunk's edge).
const HEADROOM: usize = 64 << 10;
/// Files shorter than this are scanned without a read-ahead thread.
const PREFETCH_FROM: u64 = 4 * CHUNK as u64;

/// Reads chunks on another thread while the scan checks the current one, so that
/// copying the file and checking it overlap. Each request is a buffer to read into
/// (after `HEADROOM`), a file offset and a length.
struct Prefetcher {
    requests: mpsc::Sender<(Vec<u8>, u64, usize)>,
    done: mpsc::Receiver<(Vec<u8>, std::io::Result<()>)>,
    /// The offset and length of the request in flight, if any.
    pending: Option<(u64, usize)>,
}

/// A sliding view of the file, read in large chunks: `buf[head..]` holds the bytes
/// from `start` on.
struct Window<'a> {
    file: &'a dyn StorageFile,
    file_len: u64,
    start: u64,
    head: usize,
    buf: Vec<u8>,
    prefetcher: Option<Prefetcher>,
    /// Scratch space for the locations of one batch's records.
    records: Vec<RecordLocation>,
    /// The file's salted checksum state.
    seed: codec::SaltedCrc,
}

impl<'a> Window<'a> {
    fn new(
        file: &'a dyn StorageFile,
        file_len: u64,
        salt: u64,
        prefetcher: Option<Prefetcher>,
    ) -> Self {
        Window {
            file,
            file_len,
            start: 0,
            head: 0,
            buf: Vec::new(),
            prefetcher,
            records: Vec::new(),
            seed: codec::SaltedCrc::new(salt),
        }
    }

    fn end(&self) -> u64 {
        self.start + (self.buf.len() - self.head) as u64
    }

    /// Up to `len` bytes at `offset`: fewer only where the file ends.
    fn get(&mut self, offset: u64, len: usize) -> Result<&[u8], Error> {
        let len = len.min(self.file_len.saturating_sub(offset) as usize);
        let have = offset >= self.start && offset + len as u64 <= self.end();
        if !have {
            self.refill(offset, len)?;
        }
        let at = self.head + (offset - self.start) as usize;
        Ok(&self.buf[at..at + len])
    }

    /// Makes the window start at `offset` and hold at least `len` bytes: from the
    /// chunk read ahead when it follows on, else by reading now. Then reads the next
    /// chunk ahead.
    fn refill(&mut self, offset: u64, len: usize) -> Result<(), Error> {
        let end = self.end();
        let follows_on =
            offset >= self.start && offset <= end && (end - offset) as usize <= HEADROOM;
        let mut ahead = None;
        if let Some(p) = self.prefetcher.as_mut() {
            if let Some((at, n)) = p.pending.take() {
                let (next, result) = p.done.recv().map_err(|_| read_ahead_failed())?;
                result.map_err(|e| {
                    Error::io(format!("read at byte offset {at} during recovery"), e)
                })?;
                if follows_on && at == end && offset + len as u64 <= at + n as u64 {
                    ahead = Some(next);
                } else {
                    // Not what is needed now: the buffer goes back to the pool.
                    self.buf = next;
                }
            }
        }
        match ahead {
            Some(mut next) => {
                let tail = (end - offset) as usize;
                let from = self.head + (offset - self.start) as usize;
                next[HEADROOM - tail..HEADROOM].copy_from_slice(&self.buf[from..from + tail]);
                let spare = std::mem::replace(&mut self.buf, next);
                self.head = HEADROOM - tail;
                self.start = offset;
                self.read_ahead(spare);
            }
            None => {
                let want = len.max(CHUNK).min((self.file_len - offset) as usize);
                let mut buf = std::mem::take(&mut self.buf);
                buf.resize(HEADROOM + want, 0);
                read_exact_at(self.file, &mut buf[HEADROOM..], offset).map_err(|e| {
                    Error::io(format!("read at byte offset {offset} during recovery"), e)
                })?;
                self.buf = buf;
                self.head = HEADROOM;
                self.start = offset;
                self.read_ahead(Vec::new());
            }
        }
        Ok(())
    }

    /// Asks the read-ahead thread, if any, for the chunk after the window.
    fn read_ahead(&mut self, mut spare: Vec<u8>) {
        let end = self.end();
        let Some(p) = self.prefetcher.as_mut() else {
            return;
        };
        if end >= self.file_len || p.pending.is_some() {
            return;
        }
        let n = CHUNK.min((self.file_len - end) as usize);
        spare.resize(HEADROOM + n, 0);
        if p.requests.send((spare, end, n)).is_ok() {
            p.pending = Some((end, n));
        }
    }
}

fn read_ahead_failed() -> Error {
    Error::io(
        "read ahead during recovery".to_string(),
        std::io::Error::other("the read-ahead thread stopped"),
    )
}

/// Serves a [`Prefetcher`]: reads each requested chunk after `HEADROOM`.
fn serve_read_ahead(
    file: &dyn StorageFile,
    requests: mpsc::Receiver<(Vec<u8>, u64, usize)>,
    done: mpsc::Sender<(Vec<u8>, std::io::Result<()>)>,
) {
    for (mut buf, offset, len) in requests {
        let result = read_exact_at(file, &mut buf[HEADROOM..HEADROOM + len], offset);
        if done.send((buf, result)).is_err() {
            return;
        }
    }
}

/// Scans a file whose header has been validated.
pub fn scan(file: &dyn StorageFile, file_len: u64, salt: u64) -> Result<Scan, Error> {
    if file_len < PREFETCH_FROM {
        return scan_with(Window::new(file, file_len, salt, None), salt);
    }
    std::thread::scope(|scope| {
        let (requests, to_serve) = mpsc::channel();
        let (served, done) = mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("eventstore-read-ahead".into())
            .spawn_scoped(scope, move || serve_read_ahead(file, to_serve, served));
        let prefetcher = reader.ok().map(|_| Prefetcher {
            requests,
            done,
            pending: None,
        });
        // The window (and with it the request channel) is dropped when the scan
        // returns, which ends the read-ahead thread; the scope waits for it.
        scan_with(Window::new(file, file_len, salt, prefetcher), salt)
    })
}

fn scan_with(mut window: Window<'_>, salt: u64) -> Result<Scan, Error> {
    let file_len = window.file_len;
    let mut index = IndexBuilder::default();
    let mut offset = FILE_HEADER_LEN as u64;
    while offset < file_len {
        match next_batch(&mut window, offset, &mut index)? {
            Ok(len) => offset += len,
            Err(Damage(detail)) => {
                let position = index.event_count();
                if let Some(found) = find_later_batch(&mut window, offset, position, salt)? {
                    return Err(Error::CorruptRecord {
                        position,
                        offset,
                        detail: format!("{detail}; a valid batch follows at byte offset {found}"),
                    });
                }
                return Ok(Scan {
                    index: index.build(),
                    end: offset,
                    torn_tail: Some(detail),
                });
            }
        }
    }
    Ok(Scan {
        index: index.build(),
        end: offset,
        torn_tail: None,
    })
}

/// Checks the batch at `offset` and adds it to the index; returns its length, or why
/// it is not the batch that must come next.
fn next_batch(
    window: &mut Window<'_>,
    offset: u64,
    index: &mut IndexBuilder,
) -> Result<Result<u64, Damage>, Error> {
    let file_len = window.file_len;
    let seed = &window.seed.clone();
    let (header, crc) = match codec::check_batch_header(window.get(offset, BATCH_HEADER_LEN)?, seed)
    {
        Ok(DecodeOutcome::Complete { value, .. }) => value,
        Ok(DecodeOutcome::Incomplete { .. }) => {
            return Ok(Err(Damage("the file ends inside a batch header".into())))
        }
        Err(d) => return Ok(Err(d)),
    };
    let expected = index.event_count();
    if header.first_position != expected {
        return Ok(Err(Damage(format!(
            "batch starts at global position {}, expected {expected}",
            header.first_position
        ))));
    }
    if header.group_start > offset || header.group_start < FILE_HEADER_LEN as u64 {
        return Ok(Err(Damage("batch names an impossible write".into())));
    }
    let len = u64::from(header.batch_len);
    if len > file_len - offset {
        return Ok(Err(Damage("the file ends inside a batch".into())));
    }
    window.get(offset, len as usize)?;
    let at = window.head + (offset - window.start) as usize;
    let bytes = &window.buf[at..at + len as usize];
    let records = &mut window.records;
    records.clear();
    let summary = match codec::check_batch_body(bytes, header, crc, |at, len| {
        records.push(RecordLocation::new(offset + u64::from(at), len as usize))
    }) {
        Ok(DecodeOutcome::Complete { value, .. }) => value,
        Ok(DecodeOutcome::Incomplete { .. }) => {
            return Ok(Err(Damage("the file ends inside a batch".into())))
        }
        Err(d) => return Ok(Err(d)),
    };
    if let Err(next_version) =
        index.push_batch(summary.stream_id, summary.first_version, records.drain(..))
    {
        return Ok(Err(Damage(format!(
            "batch continues stream {} at version {}, expected {next_version}",
            summary.stream_id, summary.first_version
        ))));
    }
    Ok(Ok(len))
}

/// Looks, byte by byte after `damaged_at`, for a valid batch of this file that holds
/// a position at or past `position` and was written by a later write than the one
/// that covers `damaged_at`. Returns its offset.
fn find_later_batch(
    window: &mut Window<'_>,
    damaged_at: u64,
    position: u64,
    salt: u64,
) -> Result<Option<u64>, Error> {
    let file_len = window.file_len;
    let mut from = damaged_at + 1;
    while from < file_len {
        let chunk_len = CHUNK.min((file_len - from) as usize);
        let chunk = window.get(from, chunk_len)?.to_vec();
        let mut i = 0;
        while let Some(hit) = find(&chunk[i..], &BATCH_MAGIC) {
            let candidate = from + (i + hit) as u64;
            if is_later_batch(window, candidate, damaged_at, position, salt)? {
                return Ok(Some(candidate));
            }
            i += hit + 1;
        }
        // Step back so a magic split across chunks is still seen.
        let step = (chunk_len as u64)
            .saturating_sub(BATCH_MAGIC.len() as u64 - 1)
            .max(1);
        from += step;
    }
    Ok(None)
}

fn is_later_batch(
    window: &mut Window<'_>,
    at: u64,
    damaged_at: u64,
    position: u64,
    salt: u64,
) -> Result<bool, Error> {
    let header = match codec::parse_batch_header(window.get(at, BATCH_HEADER_LEN)?, salt) {
        Ok(DecodeOutcome::Complete { value, .. }) => value,
        _ => return Ok(false),
    };
    let len = u64::from(header.batch_len);
    if header.first_position < position
        || header.group_start <= damaged_at
        || header.group_start > at
        || len > window.file_len - at
    {
        return Ok(false);
    }
    let bytes = window.get(at, len as usize)?;
    Ok(matches!(
        codec::parse_batch(bytes, salt),
        Ok(DecodeOutcome::Complete { .. })
    ))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
