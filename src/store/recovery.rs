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
use crate::store::index::{Index, IndexBuilder, RecordLocation, Run};
use crate::store::io::{read_exact_at, StorageFile};

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
    /// How many batches hold more than one stream (format 2 only).
    pub multi_stream_batches: u64,
}

/// A sliding view of the file, read in large chunks.
struct Window<'a> {
    file: &'a dyn StorageFile,
    file_len: u64,
    start: u64,
    buf: Vec<u8>,
    /// Scratch space for the locations of one batch's records.
    records: Vec<RecordLocation>,
    /// Scratch space for the streams of one batch.
    runs: Vec<Run>,
    /// The file's format version: version 1 has one stream per batch.
    version: u16,
    /// Multi-stream batches accepted so far.
    multi: u64,
    /// The file's salted checksum state.
    seed: codec::SaltedCrc,
}

impl<'a> Window<'a> {
    fn new(file: &'a dyn StorageFile, file_len: u64, salt: u64, version: u16) -> Self {
        Window {
            file,
            file_len,
            start: 0,
            buf: Vec::new(),
            records: Vec::new(),
            runs: Vec::new(),
            version,
            multi: 0,
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

/// Scans a file whose header (format `version`) has been validated.
pub fn scan(file: &dyn StorageFile, file_len: u64, salt: u64, version: u16) -> Result<Scan, Error> {
    let mut window = Window::new(file, file_len, salt, version);
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
                    multi_stream_batches: window.multi,
                });
            }
        }
    }
    Ok(Scan {
        index: index.build(),
        end: offset,
        torn_tail: None,
        multi_stream_batches: window.multi,
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
    let at = (offset - window.start) as usize;
    let bytes = &window.buf[at..at + len as usize];
    let records = &mut window.records;
    records.clear();
    let runs = &mut window.runs;
    runs.clear();
    let summary = match codec::check_batch_body(bytes, header, crc, |at, len, run| {
        if let Some(r) = run {
            runs.push(Run {
                stream_id: r.stream_id,
                first_version: r.first_version,
                count: 0,
            });
        }
        if let Some(r) = runs.last_mut() {
            r.count += 1;
        }
        let at = at as usize;
        index.push_id(&Uuid::from_bytes(
            bytes[at + 44..at + 60].try_into().expect("16 bytes"),
        ));
        records.push(RecordLocation::new(offset + at as u64, len as usize))
    }) {
        Ok(DecodeOutcome::Complete { value, .. }) => value,
        Ok(DecodeOutcome::Incomplete { .. }) => {
            index.truncate_ids();
            return Ok(Err(Damage("the file ends inside a batch".into())));
        }
        Err(d) => {
            index.truncate_ids();
            return Ok(Err(d));
        }
    };
    if summary.streams > 1 && window.version < codec::FORMAT_VERSION {
        // It checks out, so no crash made it: the header was synced as version 2 before
        // such a batch is written. Fail rather than cut valid data off as a torn tail.
        index.truncate_ids();
        return Err(Error::CorruptRecord {
            position: expected,
            offset,
            detail: format!(
                "a valid batch of {} streams in a version {} file (its header must have \
                 said version 2)",
                summary.streams, window.version
            ),
        });
    }
    if let Err((stream, next_version)) = index.push_runs(runs, records.iter().copied()) {
        index.truncate_ids();
        let first = runs
            .iter()
            .find(|r| r.stream_id == stream)
            .map_or(0, |r| r.first_version);
        return Ok(Err(Damage(format!(
            "batch continues stream {stream} at version {first}, expected {next_version}"
        ))));
    }
    if summary.streams > 1 {
        window.multi += 1;
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
