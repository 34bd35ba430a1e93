//! Opening an existing file: one sequential pass that checks every batch and rebuilds
//! the index, then a judgement on whatever does not check out.
//!
//! The rules (also in `docs/format.md`):
//! - Batches must follow each other exactly: each one checks out (salted checksums),
//!   starts at the next global position, and continues its stream's versions.
//! - At the first place `X` where that fails, the rest of the file is either a **torn
//!   tail** (the last write, cut short or reordered by a crash, or preallocated zeros)
//!   or **damage** to data that was acknowledged. It is damage when, anywhere from `X`
//!   on (found byte by byte, so that a corrupted length field cannot hide it), lies a
//!   batch header of this file for a position not yet read that the write covering `X`
//!   cannot have left there: one of another (later) write, or one of that write but out
//!   of the place that write gave it (bytes were deleted or inserted: a crash moves
//!   nothing). Batches of the same group commit may reach the disk in any order, so
//!   they are not evidence of damage to each other.
//! - A torn tail is cut off (and the cut synced); damage fails the open and leaves the
//!   file untouched.
//! - The judgement reads the rest of the file once and checks each candidate header in
//!   constant time, so `open` is linear in the file size whatever the bytes are.

use uuid::Uuid;

use crate::codec::{
    self, Damage, DecodeOutcome, BATCH_HEADER_LEN, BATCH_MAGIC, BATCH_OVERHEAD, FILE_HEADER_LEN,
};
use crate::error::Error;
use crate::store::index::{Index, IndexBuilder, RecordLocation, Run};
use crate::store::io::{read_exact_at, StorageFile};
use crate::types::{MAX_EVENT_SIZE, RECORD_OVERHEAD};

/// Where a scan puts the batches it accepts: a fresh index being built (open), or
/// the additions to an existing one (a read-only handle catching up).
pub(crate) trait Sink {
    /// Number of events so far: the next global position.
    fn event_count(&self) -> u64;
    /// Notes the id of the next event (once per record, in order, before its batch is
    /// pushed); ids of a batch that is then refused are dropped by `truncate_ids`.
    fn push_id(&mut self, id: &Uuid);
    /// Forgets ids noted beyond the events pushed.
    fn truncate_ids(&mut self);
    /// Adds a batch (one run per stream) if every run continues its stream; otherwise
    /// adds nothing and returns the first stream that does not and the version it
    /// needed.
    fn push_runs(&mut self, runs: &[Run], locations: &[RecordLocation]) -> Result<(), (Uuid, u64)>;
    /// The event types of the batch just pushed, in order.
    fn push_types<'t>(&mut self, names: impl Iterator<Item = &'t [u8]>);
}

impl Sink for IndexBuilder {
    fn event_count(&self) -> u64 {
        IndexBuilder::event_count(self)
    }
    fn push_id(&mut self, id: &Uuid) {
        IndexBuilder::push_id(self, id)
    }
    fn truncate_ids(&mut self) {
        IndexBuilder::truncate_ids(self)
    }
    fn push_runs(&mut self, runs: &[Run], locations: &[RecordLocation]) -> Result<(), (Uuid, u64)> {
        IndexBuilder::push_runs(self, runs, locations.iter().copied())
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
    scan_from(
        file,
        file_len,
        salt,
        version,
        IndexBuilder::default(),
        FILE_HEADER_LEN as u64,
        None,
    )
}

/// Scans the batches from byte `start` on (the tail after what an index file covers,
/// or everything) into `index`, which holds what lies before `start`; `last_group` is
/// the `group_start` of the batch that ends at `start`.
pub(crate) fn scan_from(
    file: &dyn StorageFile,
    file_len: u64,
    salt: u64,
    version: u16,
    mut index: IndexBuilder,
    start: u64,
    last_group: Option<u64>,
) -> Result<Scan, Error> {
    let scanned = scan_into(file, file_len, salt, version, start, last_group, &mut index)?;
    Ok(Scan {
        index: index.build(),
        end: scanned.end,
        torn_tail: scanned.torn_tail,
        multi_stream_batches: scanned.multi_stream_batches,
    })
}

/// Where a scan stopped.
#[derive(Debug, Clone)]
pub(crate) struct ScanEnd {
    /// End of the last valid batch.
    pub end: u64,
    /// Why the bytes from `end` on do not form a batch, if any.
    pub torn_tail: Option<String>,
    /// `group_start` of the last batch accepted (by this scan or, when it resumed, the
    /// one before it): the write that may continue at `end`.
    pub last_group: Option<u64>,
    /// How many batches this scan accepted hold more than one stream.
    pub multi_stream_batches: u64,
}

/// Scans the batches from byte `start` (where the batch for position
/// `sink.event_count()` must begin) up to `file_len`, adding each to `sink`;
/// `last_group` is the `group_start` of the batch before `start`, if any. Returns the
/// end of the last valid batch and, when it is before `file_len`, why the bytes after
/// it do not form a batch (a torn tail; evidence of a later write makes it
/// `CorruptRecord`).
pub(crate) fn scan_into(
    file: &dyn StorageFile,
    file_len: u64,
    salt: u64,
    version: u16,
    start: u64,
    mut last_group: Option<u64>,
    index: &mut impl Sink,
) -> Result<ScanEnd, Error> {
    let mut window = Window::new(file, file_len, salt, version);
    let mut offset = start;
    while offset < file_len {
        match next_batch(&mut window, offset, index)? {
            Ok((len, group_start)) => {
                offset += len;
                last_group = Some(group_start);
            }
            Err(Damage(detail)) => {
                let position = index.event_count();
                let judged = Judged {
                    damaged_at: offset,
                    position,
                    last_group,
                };
                if let Some(evidence) = find_later_write(&mut window, &judged)? {
                    return Err(Error::CorruptRecord {
                        position,
                        offset,
                        detail: format!("{detail}; {evidence}"),
                    });
                }
                return Ok(ScanEnd {
                    end: offset,
                    torn_tail: Some(detail),
                    last_group,
                    multi_stream_batches: window.multi,
                });
            }
        }
    }
    Ok(ScanEnd {
        end: offset,
        torn_tail: None,
        last_group,
        multi_stream_batches: window.multi,
    })
}

/// Checks the batch at `offset` and adds it to the index; returns its length and its
/// `group_start`, or why it is not the batch that must come next.
fn next_batch(
    window: &mut Window<'_>,
    offset: u64,
    index: &mut impl Sink,
) -> Result<Result<(u64, u64), Damage>, Error> {
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
    if let Err((stream, next_version)) = index.push_runs(runs, records) {
        index.truncate_ids();
        let first = runs
            .iter()
            .find(|r| r.stream_id == stream)
            .map_or(0, |r| r.first_version);
        return Ok(Err(Damage(format!(
            "batch continues stream {stream} at version {first}, expected {next_version}"
        ))));
    }
    index.push_types(
        records
            .iter()
            .map(|l| codec::record_type_bytes(&bytes[(l.offset() - offset) as usize..])),
    );
    if summary.streams > 1 {
        window.multi += 1;
    }
    Ok(Ok((len, header.group_start)))
}

/// The place where the scan stopped, as the later-write search judges it.
struct Judged {
    /// `X`: the first offset where no acceptable batch starts.
    damaged_at: u64,
    /// `P`: the global position the batch at `X` should have held.
    position: u64,
    /// `group_start` of the last batch accepted before `X` (`None`: no batch was).
    last_group: Option<u64>,
}

/// Looks, byte by byte from `damaged_at` on, for a batch header of this file that
/// proves the damage is not a torn last write (see [`evidence`]); describes the first
/// one found.
///
/// One pass over the rest of the file, each header checked in constant time (its
/// salted 44-byte checksum and some arithmetic), so the search is linear in the file
/// size whatever the bytes claim: a candidate's claimed length is never read. The
/// header alone is enough evidence: a header that checks out with this file's salt and
/// names a later write than the one covering `X` shows that such a write was made,
/// and a write is only made after the one before it was synced and acknowledged.
fn find_later_write(window: &mut Window<'_>, judged: &Judged) -> Result<Option<String>, Error> {
    let file_len = window.file_len;
    let overlap = BATCH_HEADER_LEN as u64 - 1;
    let mut buf = Vec::new();
    let mut from = judged.damaged_at;
    while from < file_len {
        // Holes read as zeros and hold no header: a file extended sparsely (by
        // `truncate`, or a file system's crash) is searched in its data only.
        match next_data(window.file, from) {
            Some(next) if next >= file_len => break,
            Some(next) => from = next.max(from),
            None => {}
        }
        // Each chunk is read with the next header's worth of bytes after it, so that a
        // header starting in this chunk is seen whole; a magic in that overlap belongs
        // to the next chunk, which starts there.
        let own = (CHUNK as u64).min(file_len - from);
        let len = (own + overlap).min(file_len - from) as usize;
        buf.resize(len, 0);
        read_exact_at(window.file, &mut buf, from)
            .map_err(|e| Error::io(format!("read at byte offset {from} during recovery"), e))?;
        let mut i = 0;
        while let Some(hit) = find(&buf[i..], &BATCH_MAGIC) {
            let at = i + hit;
            if at as u64 >= own {
                break;
            }
            if let Some(found) = evidence(&buf[at..], from + at as u64, judged, &window.seed) {
                return Ok(Some(found));
            }
            i = at + 1;
        }
        from += own;
    }
    Ok(None)
}

/// The offset of the first byte at or after `from` that is not in a hole of the file
/// (`lseek(SEEK_DATA)`; `u64::MAX` when only holes follow); `None` when that cannot be
/// told (a wrapped file, a file system without the call): then nothing is skipped.
fn next_data(file: &dyn StorageFile, from: u64) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let f = file.as_file()?;
    let at = i64::try_from(from).ok()?;
    // SAFETY: lseek on an open descriptor; it moves the descriptor's offset, which no
    // read of the store uses (they are all positioned).
    let r = unsafe { libc::lseek(f.as_raw_fd(), at, libc::SEEK_DATA) };
    if r >= 0 {
        return Some(r as u64);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENXIO) => Some(u64::MAX),
        _ => None,
    }
}

/// Whether the batch header at the start of `bytes`, found at byte offset `at`, is
/// evidence that the bytes at `judged.damaged_at` had been acknowledged; if so, why.
///
/// It is when its salted header checksum checks out, it holds a position not yet read
/// (`first_position >= P`: a copy of a batch already read proves nothing), and either
/// - it names a write other than the one covering `X` (`group_start` is neither `X`
///   nor that of the last batch accepted before `X`): a later write (or a batch that
///   bytes were removed in front of, whose `group_start` now lies past its own offset);
///   or
/// - it belongs to the write covering `X` but sits where that write cannot have put
///   it: that write laid its batches out contiguously from `X` on with the positions
///   from `P` on, so the batch holding `P` starts at `X`, and one holding `p > P`
///   starts between `52 + 77·(p − P)` and `(52 + 65536)·(p − P)` bytes after `X`.
///   Elsewhere, bytes were inserted or removed in front of it; a crash moves nothing.
fn evidence(bytes: &[u8], at: u64, judged: &Judged, seed: &codec::SaltedCrc) -> Option<String> {
    let header = match codec::check_batch_header(bytes, seed) {
        Ok(DecodeOutcome::Complete { value, .. }) => value.0,
        _ => return None,
    };
    let (p, g, x) = (header.first_position, header.group_start, judged.damaged_at);
    if p < judged.position {
        return None;
    }
    let same_write = g == x || Some(g) == judged.last_group;
    if !same_write {
        return Some(if g > at {
            format!(
                "a valid batch header (global position {p}) at byte offset {at} was written \
                 at byte offset {g}: bytes are missing before it"
            )
        } else if g > x {
            format!(
                "a valid batch (global position {p}) of a later write follows at byte \
                 offset {at}"
            )
        } else {
            format!(
                "a valid batch (global position {p}) at byte offset {at} names a write at \
                 byte offset {g}, before the one that covers the damage: bytes were moved"
            )
        });
    }
    let between = u128::from(p - judged.position);
    let gap = u128::from(at - x);
    let placed = if between == 0 {
        gap == 0
    } else {
        let overhead = BATCH_OVERHEAD as u128;
        gap >= overhead + RECORD_OVERHEAD as u128 * between
            && gap <= (overhead + MAX_EVENT_SIZE as u128) * between
    };
    (!placed).then(|| {
        format!(
            "a valid batch (global position {p}) of the write at byte offset {g} sits at \
             byte offset {at}, where that write cannot have put it: bytes were inserted \
             or removed before it"
        )
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    //! The judgement on group commits, whose batches share a `group_start`: what the
    //! suites in `tests/` cannot build with one appender.
    use super::*;
    use crate::codec::{BatchHeader, UnsealedBatch};
    use crate::types::ProposedEventRef;
    use std::sync::RwLock;
    use uuid::Uuid;

    struct Mem(RwLock<Vec<u8>>);

    impl StorageFile for Mem {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
            let d = self.0.read().unwrap();
            let start = (offset as usize).min(d.len());
            let n = buf.len().min(d.len() - start);
            buf[..n].copy_from_slice(&d[start..start + n]);
            Ok(n)
        }
        fn write_at(&self, _: &[u8], _: u64) -> std::io::Result<usize> {
            unreachable!("the scan never writes")
        }
        fn sync_data(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn sync_all(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn set_len(&self, _: u64) -> std::io::Result<()> {
            unreachable!("the scan never truncates")
        }
        fn file_len(&self) -> std::io::Result<u64> {
            Ok(self.0.read().unwrap().len() as u64)
        }
    }

    const SALT: u64 = 0x5a17;

    /// A file of `groups` group commits, each a list of batch sizes (events per batch);
    /// returns the bytes and the (start, end) of every batch.
    fn file(groups: &[&[usize]]) -> (Vec<u8>, Vec<(u64, u64)>) {
        let mut out = codec::encode_file_header(SALT).to_vec();
        let mut spans = Vec::new();
        let mut position = 0;
        for (g, group) in groups.iter().enumerate() {
            let group_start = out.len() as u64;
            for (b, &count) in group.iter().enumerate() {
                let stream = Uuid::from_u128((g * 100 + b) as u128 + 1);
                let payload = vec![7u8; 40];
                let events: Vec<_> = (0..count)
                    .map(|i| ProposedEventRef {
                        event_id: Uuid::from_u128((position + i as u64) as u128 + 1),
                        event_type: "T",
                        metadata: b"",
                        payload: &payload,
                    })
                    .collect();
                let batch = UnsealedBatch::encode(&stream, &events).unwrap();
                let start = out.len() as u64;
                let header = BatchHeader {
                    batch_len: batch.len() as u32,
                    first_position: position,
                    count: count as u32,
                    recorded_at: 1,
                    group_start,
                };
                batch.seal_into(&mut out, SALT, header, &[0], |_, _| {});
                spans.push((start, out.len() as u64));
                position += count as u64;
            }
        }
        (out, spans)
    }

    fn judge(bytes: Vec<u8>) -> Result<Scan, Error> {
        let len = bytes.len() as u64;
        scan(
            &Mem(RwLock::new(bytes)),
            len,
            SALT,
            crate::codec::FORMAT_VERSION,
        )
    }

    #[test]
    fn damage_inside_the_last_group_is_a_torn_write() {
        // Old group, then a last group of three batches whose middle one is damaged
        // in place: its third batch is where that write put it, so it is no evidence.
        let (mut bytes, spans) = file(&[&[2], &[2, 1, 3]]);
        bytes[(spans[2].0 + 60) as usize] ^= 0xff;
        let scan = judge(bytes).unwrap();
        assert_eq!(scan.end, spans[2].0);
        assert_eq!(scan.index.event_count(), 4);
    }

    #[test]
    fn damage_before_the_last_group_is_refused() {
        let (mut bytes, spans) = file(&[&[2, 2], &[1, 3]]);
        bytes[(spans[1].0 + 60) as usize] ^= 0xff;
        match judge(bytes) {
            Err(Error::CorruptRecord { offset, detail, .. }) => {
                assert_eq!(offset, spans[1].0);
                assert!(detail.contains("later write"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_batch_of_the_last_group_moved_by_inserted_bytes_is_refused() {
        // The last group's first batch is torn away; its second batch sits where that
        // write cannot have put it (bytes inserted before the group's start).
        let (bytes, spans) = file(&[&[2], &[1, 2]]);
        let at = spans[1].0 as usize;
        let moved = [&bytes[..at], &[0u8; 10], &bytes[at..]].concat();
        match judge(moved) {
            Err(Error::CorruptRecord { offset, detail, .. }) => {
                assert_eq!(offset, spans[1].0);
                assert!(detail.contains("cannot have put it"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        // Torn for real: the first batch of the last group lost (zeros), the second in
        // its place: a torn write, cut at the group's start.
        let (mut bytes, spans) = file(&[&[2], &[1, 2]]);
        bytes[spans[1].0 as usize..spans[1].1 as usize].fill(0);
        let scan = judge(bytes).unwrap();
        assert_eq!(scan.end, spans[1].0);
    }

    #[test]
    fn a_batch_moved_left_by_deleted_bytes_is_refused() {
        let (bytes, spans) = file(&[&[1], &[2], &[3]]);
        let at = (spans[1].0 + 50) as usize;
        let cut = [&bytes[..at], &bytes[at + 7..]].concat();
        match judge(cut) {
            Err(Error::CorruptRecord { offset, detail, .. }) => {
                assert_eq!(offset, spans[1].0);
                assert!(detail.contains("bytes are missing before it"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }
}
