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

use uuid::Uuid;

use crate::codec::{self, Damage, DecodeOutcome, BATCH_HEADER_LEN, BATCH_MAGIC, FILE_HEADER_LEN};
use crate::error::Error;
use crate::store::index::{Index, IndexBuilder, RecordLocation};
use crate::store::io::{read_exact_at, StorageFile};

/// Where a scan puts the batches it accepts: a fresh index being built (open), or
/// the additions to an existing one (a read-only handle catching up).
pub(crate) trait Sink {
    /// Number of events so far: the next global position.
    fn event_count(&self) -> u64;
    /// Adds a batch of one stream if it continues it at `first_version`; otherwise
    /// returns the version it should have started at.
    fn push_batch(
        &mut self,
        stream_id: Uuid,
        first_version: u64,
        locations: &[RecordLocation],
    ) -> Result<(), u64>;
    /// The event types of the batch just pushed, in order.
    fn push_types<'t>(&mut self, names: impl Iterator<Item = &'t [u8]>);
}

impl Sink for IndexBuilder {
    fn event_count(&self) -> u64 {
        IndexBuilder::event_count(self)
    }
    fn push_batch(
        &mut self,
        stream_id: Uuid,
        first_version: u64,
        locations: &[RecordLocation],
    ) -> Result<(), u64> {
        IndexBuilder::push_batch(self, stream_id, first_version, locations.iter().copied())
    }
    fn push_types<'t>(&mut self, names: impl Iterator<Item = &'t [u8]>) {
        IndexBuilder::push_types(self, names)
    }
}

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

/// A sliding view of the file, read in large chunks.
struct Window<'a> {
    file: &'a dyn StorageFile,
    file_len: u64,
    start: u64,
    buf: Vec<u8>,
    /// Scratch space for the locations of one batch's records.
    records: Vec<RecordLocation>,
    /// The file's salted checksum state.
    seed: codec::SaltedCrc,
}

impl<'a> Window<'a> {
    fn new(file: &'a dyn StorageFile, file_len: u64, salt: u64) -> Self {
        Window {
            file,
            file_len,
            start: 0,
            buf: Vec::new(),
            records: Vec::new(),
            seed: codec::SaltedCrc::new(salt),
        }
    }

    /// Up to `len` bytes at `offset`: fewer only where the file ends.
    fn get(&mut self, offset: u64, len: usize) -> Result<&[u8], Error> {
        let len = len.min(self.file_len.saturating_sub(offset) as usize);
        let have =
            offset >= self.start && offset + len as u64 <= self.start + self.buf.len() as u64;
        if !have {
            let want = len.max(CHUNK).min((self.file_len - offset) as usize);
            self.buf.resize(want, 0);
            read_exact_at(self.file, &mut self.buf, offset).map_err(|e| {
                Error::io(format!("read at byte offset {offset} during recovery"), e)
            })?;
            self.start = offset;
        }
        let at = (offset - self.start) as usize;
        Ok(&self.buf[at..at + len])
    }
}

/// Scans a file whose header has been validated.
pub fn scan(file: &dyn StorageFile, file_len: u64, salt: u64) -> Result<Scan, Error> {
    let mut index = IndexBuilder::default();
    let (end, torn_tail) = scan_into(file, file_len, salt, FILE_HEADER_LEN as u64, &mut index)?;
    Ok(Scan {
        index: index.build(),
        end,
        torn_tail,
    })
}

/// Scans the batches from byte `start` (where the batch for position
/// `sink.event_count()` must begin) up to `file_len`, adding each to `sink`. Returns
/// the end of the last valid batch and, when it is before `file_len`, why the bytes
/// after it do not form a batch (a torn tail: no later valid batch follows; one that
/// does makes it `CorruptRecord`).
pub(crate) fn scan_into(
    file: &dyn StorageFile,
    file_len: u64,
    salt: u64,
    start: u64,
    index: &mut impl Sink,
) -> Result<(u64, Option<String>), Error> {
    let mut window = Window::new(file, file_len, salt);
    let mut offset = start;
    while offset < file_len {
        match next_batch(&mut window, offset, index)? {
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
                return Ok((offset, Some(detail)));
            }
        }
    }
    Ok((offset, None))
}

/// Checks the batch at `offset` and adds it to the index; returns its length, or why
/// it is not the batch that must come next.
fn next_batch(
    window: &mut Window<'_>,
    offset: u64,
    index: &mut impl Sink,
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
    let at = (offset - window.start) as usize;
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
    if let Err(next_version) = index.push_batch(summary.stream_id, summary.first_version, records) {
        return Ok(Err(Damage(format!(
            "batch continues stream {} at version {}, expected {next_version}",
            summary.stream_id, summary.first_version
        ))));
    }
    index.push_types(
        records
            .iter()
            .map(|l| codec::record_type_bytes(&bytes[(l.offset() - offset) as usize..])),
    );
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
