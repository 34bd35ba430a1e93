//! Inspecting a store file as it stands, without opening it as a store: a read-only
//! scan that does not stop at damage, and the salvage of a damaged store built on it.
//!
//! [`Store::open`](crate::Store::open) stops at the first batch that does not check
//! out, and refuses a file where valid data follows damage (`CorruptRecord`). That is
//! right for an application, but leaves its user with nothing to act on. [`scan`]
//! reads the whole file instead (never writing it, taking no lock) and reports every
//! intact batch (to a visitor, in file order) and every damaged range: where it lies,
//! which global positions it held and how many events were lost, and how `open` judges
//! it (damage, a torn last write, or unused preallocated space). [`salvage`] copies
//! every intact batch into a new store.
//!
//! A batch is *intact* when it checks out exactly as recovery checks it (salted header
//! and batch checksums, lengths, commit marker, records in sequence), and every record's
//! own checksum matches. After damage, the scan finds the next intact batch byte by byte,
//! so that a corrupted length cannot hide anything; the salt makes sure that what it
//! finds is a batch of this file (not one copied into a payload).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::codec::{
    self, DecodeOutcome, RecordView, SaltedCrc, BATCH_HEADER_LEN, BATCH_MAGIC, FILE_HEADER_LEN,
    MAGIC,
};
use crate::error::{Error, HeaderCause};
use crate::store::io::{read_exact_at, StorageFile};
use crate::store::{ondisk, CopiedBatch, OpenOptions, Store};
use crate::types::{ExpectedVersion, ProposedEventRef, StreamAppend};

/// Bytes read at a time.
const CHUNK: usize = 1 << 20;

/// A batch that checked out, as [`scan`] hands it to its visitor. Borrows the bytes the
/// scan read; valid only during the visit.
#[derive(Debug)]
pub struct IntactBatch<'a> {
    /// Byte offset of the batch in the file.
    pub offset: u64,
    /// Length of the batch in bytes.
    pub len: u64,
    pub first_position: u64,
    pub count: u32,
    /// The batch's first stream (its only one unless it is a multi-stream append).
    pub stream_id: Uuid,
    pub first_version: u64,
    /// Every stream of the batch: `(stream id, first version, events)`, in order (one
    /// entry, or several for a multi-stream append of format 2).
    pub streams: &'a [(Uuid, u64, u32)],
    /// Commit time, µs since the Unix epoch.
    pub recorded_at: u64,
    /// File offset where the write that carried this batch began.
    pub group_start: u64,
    /// Whether the batch continues the log exactly as `open` requires (no damaged
    /// range before it).
    pub in_sequence: bool,
    bytes: &'a [u8],
    records: &'a [(u32, u32)],
}

impl<'a> IntactBatch<'a> {
    /// The batch's events, in order.
    pub fn events(&self) -> impl ExactSizeIterator<Item = RecordView<'a>> + '_ {
        let bytes = self.bytes;
        self.records.iter().map(move |&(at, len)| {
            codec::view_verified_record(&bytes[at as usize..(at + len) as usize])
        })
    }
}

/// How `open` judges a damaged range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeKind {
    /// Acknowledged data is damaged: a later write's intact batch follows it. `open`
    /// fails with `CorruptRecord` and leaves the file as it is.
    Damage,
    /// The last write, cut short by a crash (or damaged where that cannot be told
    /// apart): `open` cuts it off. Nothing acknowledged lies there as far as the
    /// format can tell.
    TornTail,
    /// Zeros to the end of the file: space preallocated by a writer that has the store
    /// open or crashed. `open` cuts it off; nothing was lost.
    Unused,
}

impl RangeKind {
    /// `damage`, `torn_tail` or `unused`: the names the command-line tool prints.
    pub fn name(self) -> &'static str {
        match self {
            RangeKind::Damage => "damage",
            RangeKind::TornTail => "torn_tail",
            RangeKind::Unused => "unused",
        }
    }
}

/// Bytes of the file that hold no intact batch (or an intact batch that does not
/// continue the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRange {
    /// First byte offset of the range.
    pub start: u64,
    /// Byte offset just past the range: the next intact batch, or the end of the file.
    /// Equal to `start` when whole batches are missing without damaged bytes (an
    /// intact batch starts at a later position than expected).
    pub end: u64,
    /// The global position the log expected at `start`: the first position lost.
    pub first_lost_position: u64,
    /// Events lost here: known when an intact batch follows (its first position minus
    /// `first_lost_position`), `None` at the end of the file.
    pub lost_events: Option<u64>,
    pub kind: RangeKind,
    /// Why the bytes at `start` are not the batch that must come next.
    pub detail: String,
}

/// What [`scan`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Format version from the file header.
    pub format_version: u16,
    pub file_len: u64,
    /// Intact batches and the events they hold.
    pub batches: u64,
    pub events: u64,
    /// End of the intact prefix that `open` keeps: the start of the first range, or
    /// the end of the last batch.
    pub valid_end: u64,
    /// Events in that prefix (the global position after it).
    pub valid_events: u64,
    /// Streams seen in intact batches.
    pub streams: u64,
    /// First and last commit time of the intact batches (µs since the Unix epoch).
    pub first_recorded_at: Option<u64>,
    pub last_recorded_at: Option<u64>,
    /// Every range that holds no batch of the log, in file order.
    pub ranges: Vec<DamagedRange>,
}

impl Inspection {
    /// No damage: `open` loses nothing acknowledged (a torn tail or unused space may be
    /// there, which `open` cuts off).
    pub fn is_sound(&self) -> bool {
        self.ranges.iter().all(|r| r.kind != RangeKind::Damage)
    }

    /// Every byte after the header belongs to an intact batch in sequence.
    pub fn is_clean(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Events lost in damaged ranges followed by intact data (known counts only).
    pub fn lost_events(&self) -> u64 {
        self.ranges.iter().filter_map(|r| r.lost_events).sum()
    }
}

/// A sliding view of the file, read in large chunks.
struct Window<'a> {
    file: &'a dyn StorageFile,
    path: &'a Path,
    file_len: u64,
    start: u64,
    buf: Vec<u8>,
}

impl Window<'_> {
    /// Up to `len` bytes at `offset`: fewer only where the file ends.
    fn get(&mut self, offset: u64, len: usize) -> Result<&[u8], Error> {
        let len = len.min(self.file_len.saturating_sub(offset) as usize);
        let have =
            offset >= self.start && offset + len as u64 <= self.start + self.buf.len() as u64;
        if !have {
            let want = len.max(CHUNK).min((self.file_len - offset) as usize);
            self.buf.resize(want, 0);
            read_exact_at(self.file, &mut self.buf, offset).map_err(|e| {
                Error::io(
                    format!("read {} at byte offset {offset}", self.path.display()),
                    e,
                )
            })?;
            self.start = offset;
        }
        let at = (offset - self.start) as usize;
        Ok(&self.buf[at..at + len])
    }
}

/// The parts of a batch that checked out.
struct Checked {
    len: u64,
    first_position: u64,
    count: u32,
    stream_id: Uuid,
    first_version: u64,
    recorded_at: u64,
    group_start: u64,
}

/// Checks the batch at `offset` (all of it, record checksums included); collects its
/// records' `(offset in the batch, length)` into `records` and its streams'
/// `(stream id, first version, events)` into `streams`.
fn check_batch(
    window: &mut Window<'_>,
    seed: &SaltedCrc,
    offset: u64,
    records: &mut Vec<(u32, u32)>,
    streams: &mut Vec<(Uuid, u64, u32)>,
) -> Result<Result<Checked, String>, Error> {
    let file_len = window.file_len;
    let (header, crc) = match codec::check_batch_header(window.get(offset, BATCH_HEADER_LEN)?, seed)
    {
        Ok(DecodeOutcome::Complete { value, .. }) => value,
        Ok(DecodeOutcome::Incomplete { .. }) => {
            return Ok(Err("the file ends inside a batch header".into()))
        }
        Err(d) => return Ok(Err(d.0)),
    };
    // `group_start` is not checked against `offset` here: a batch moved by a cut in
    // the file is still intact (the caller reports that it is out of place).
    let len = u64::from(header.batch_len);
    if len > file_len - offset {
        return Ok(Err("the file ends inside a batch".into()));
    }
    let bytes = window.get(offset, len as usize)?;
    records.clear();
    streams.clear();
    let summary = match codec::check_batch_body(bytes, header, crc, |at, len, run| {
        if let Some(r) = run {
            streams.push((r.stream_id, r.first_version, 0));
        }
        if let Some(last) = streams.last_mut() {
            last.2 += 1;
        }
        records.push((at, len))
    }) {
        Ok(DecodeOutcome::Complete { value, .. }) => value,
        Ok(DecodeOutcome::Incomplete { .. }) => {
            return Ok(Err("the file ends inside a batch".into()))
        }
        Err(d) => return Ok(Err(d.0)),
    };
    for (i, &(at, rlen)) in records.iter().enumerate() {
        let rec = &bytes[at as usize..(at + rlen) as usize];
        if let Err(d) = codec::parse_record(rec) {
            return Ok(Err(format!("record {i} of the batch: {}", d.0)));
        }
    }
    Ok(Ok(Checked {
        len,
        first_position: header.first_position,
        count: header.count,
        stream_id: summary.stream_id,
        first_version: summary.first_version,
        recorded_at: header.recorded_at,
        group_start: header.group_start,
    }))
}

/// Reads the whole store file at `path` without writing it or locking it, and calls
/// `visit` with every intact batch in file order (an error from `visit` stops the scan
/// and is returned). Damaged ranges are in the result.
///
/// A file that is not a store (no store magic, a header that does not check out and
/// whose salt no batch confirms, or shorter than a header) is `InvalidHeader`. A
/// header whose checksum fails but whose salt intact batches confirm is reported as a
/// damaged range `0..32`, so that the batches can still be salvaged.
///
/// Beside a running writer the scan sees what is on disk: the tail may hold a batch
/// being written (reported as a torn tail) or preallocated zeros (unused).
pub fn scan(
    path: &Path,
    mut visit: impl FnMut(&IntactBatch<'_>) -> Result<(), Error>,
) -> Result<Inspection, Error> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| Error::io(format!("open {shown}"), e))?;
    let file_len = file
        .metadata()
        .map_err(|e| Error::io(format!("stat {shown}"), e))?
        .len();
    let invalid = |cause| Error::InvalidHeader {
        path: path.to_path_buf(),
        cause,
    };
    if file_len < FILE_HEADER_LEN as u64 {
        return Err(invalid(HeaderCause::NotAStore));
    }
    let mut head = [0u8; FILE_HEADER_LEN];
    read_exact_at(&file, &mut head, 0)
        .map_err(|e| Error::io(format!("read the header of {shown}"), e))?;
    let format_version = codec::decode_header(&head).map_err(|e| match e {
        Error::InvalidHeader { cause, .. } => invalid(cause),
        other => other,
    })?;
    let (salt, header_damage) = match codec::decode_file_header(&head) {
        Ok(salt) => (salt, None),
        Err(_) if head[..6] == MAGIC => (
            u64::from_le_bytes(head[8..16].try_into().expect("8 bytes")),
            Some("file header checksum mismatch".to_string()),
        ),
        Err(Error::InvalidHeader { cause, .. }) => return Err(invalid(cause)),
        Err(e) => return Err(e),
    };
    let mut window = Window {
        file: &file,
        path,
        file_len,
        start: 0,
        buf: Vec::new(),
    };
    let mut found = scan_batches(&mut window, salt, &mut visit)?;
    found.format_version = format_version;
    // Open refuses to cut a last write that the index file proves was acknowledged
    // (`ondisk::acknowledged_past`, recovery rule 3 in format.md): such a range is
    // damage here too, so that `verify` and `salvage` judge as open does.
    if let Some(last) = found.ranges.last_mut() {
        if last.kind == RangeKind::TornTail {
            if let Some(why) = ondisk::acknowledged_past(path, &file, file_len, salt, last.start) {
                last.kind = RangeKind::Damage;
                last.detail = format!("{}; {why}", last.detail);
            }
        }
    }
    if let Some(detail) = header_damage {
        if found.batches == 0 {
            return Err(invalid(HeaderCause::DamagedChecksum));
        }
        found.ranges.insert(
            0,
            DamagedRange {
                start: 0,
                end: FILE_HEADER_LEN as u64,
                first_lost_position: 0,
                lost_events: Some(0),
                kind: RangeKind::Damage,
                detail,
            },
        );
        found.valid_end = 0;
        found.valid_events = 0;
    }
    Ok(found)
}

fn scan_batches(
    window: &mut Window<'_>,
    salt: u64,
    visit: &mut dyn FnMut(&IntactBatch<'_>) -> Result<(), Error>,
) -> Result<Inspection, Error> {
    let file_len = window.file_len;
    let seed = SaltedCrc::new(salt);
    let mut records = Vec::new();
    let mut streams = Vec::new();
    let mut next_versions: HashMap<Uuid, u64, IdHash> = HashMap::with_hasher(IdHash::new());
    let mut found = Inspection {
        format_version: 0,
        file_len,
        batches: 0,
        events: 0,
        valid_end: FILE_HEADER_LEN as u64,
        valid_events: 0,
        streams: 0,
        first_recorded_at: None,
        last_recorded_at: None,
        ranges: Vec::new(),
    };
    // Per range: the largest `group_start` of the intact batches between it and the
    // next range.
    let mut later_groups: Vec<u64> = Vec::new();
    let mut expected = 0u64;
    let mut offset = FILE_HEADER_LEN as u64;
    let mut open_range: Option<(u64, String)> = None;
    while offset < file_len {
        let checked = if open_range.is_none() {
            check_batch(window, &seed, offset, &mut records, &mut streams)?
        } else {
            // Looking for the next intact batch after damage, byte by byte.
            match find_batch(window, &seed, offset, expected, &mut records, &mut streams)? {
                Some((at, checked)) => {
                    offset = at;
                    Ok(checked)
                }
                None => break,
            }
        };
        let b = match checked {
            Ok(b) if b.first_position >= expected => b,
            Ok(b) => {
                open_range = Some((
                    offset,
                    format!(
                        "batch starts at global position {}, expected {expected}",
                        b.first_position
                    ),
                ));
                offset += 1;
                continue;
            }
            Err(detail) => {
                open_range = Some((offset, detail));
                offset += 1;
                continue;
            }
        };
        let mut in_sequence = found.ranges.is_empty() && open_range.is_none();
        if let Some((start, detail)) = open_range.take() {
            found.ranges.push(DamagedRange {
                start,
                end: offset,
                first_lost_position: expected,
                lost_events: Some(b.first_position - expected),
                kind: RangeKind::Damage,
                detail,
            });
            later_groups.push(0);
        } else if b.first_position > expected {
            found.ranges.push(DamagedRange {
                start: offset,
                end: offset,
                first_lost_position: expected,
                lost_events: Some(b.first_position - expected),
                kind: RangeKind::Damage,
                detail: format!(
                    "batch starts at global position {}, expected {expected}",
                    b.first_position
                ),
            });
            later_groups.push(0);
            in_sequence = false;
        }
        if in_sequence && (b.group_start > offset || b.group_start < FILE_HEADER_LEN as u64) {
            // Open refuses it: bytes before it were cut out of the file (or added).
            found.ranges.push(DamagedRange {
                start: offset,
                end: offset,
                first_lost_position: expected,
                lost_events: Some(0),
                kind: RangeKind::Damage,
                detail: format!(
                    "batch at byte offset {offset} names a write that began at byte offset {}: bytes before it are missing or extra",
                    b.group_start
                ),
            });
            later_groups.push(0);
            in_sequence = false;
        }
        for &(stream_id, first_version, count) in &streams {
            let next_version = next_versions.entry(stream_id).or_insert(0);
            if first_version != *next_version && in_sequence {
                // Nothing was lost before it, so the stream's versions must continue.
                found.ranges.push(DamagedRange {
                    start: offset,
                    end: offset,
                    first_lost_position: expected,
                    lost_events: Some(0),
                    kind: RangeKind::Damage,
                    detail: format!(
                        "batch continues stream {stream_id} at version {first_version}, expected {next_version}"
                    ),
                });
                later_groups.push(0);
                in_sequence = false;
            }
            *next_version = first_version + u64::from(count);
        }
        if let Some(g) = later_groups.last_mut() {
            *g = (*g).max(b.group_start);
        }
        let bytes = window.get(offset, b.len as usize)?;
        visit(&IntactBatch {
            offset,
            len: b.len,
            first_position: b.first_position,
            count: b.count,
            stream_id: b.stream_id,
            first_version: b.first_version,
            streams: &streams,
            recorded_at: b.recorded_at,
            group_start: b.group_start,
            in_sequence,
            bytes,
            records: &records,
        })?;
        found.batches += 1;
        found.events += u64::from(b.count);
        found.first_recorded_at.get_or_insert(b.recorded_at);
        found.last_recorded_at = Some(b.recorded_at);
        expected = b.first_position + u64::from(b.count);
        offset += b.len;
        if in_sequence {
            found.valid_end = offset;
            found.valid_events = expected;
        }
    }
    if let Some((start, detail)) = open_range {
        found.ranges.push(DamagedRange {
            start,
            end: file_len,
            first_lost_position: expected,
            lost_events: None,
            kind: RangeKind::TornTail,
            detail,
        });
        later_groups.push(0);
    }
    // A range is damage when a later write's batch follows it anywhere after it.
    let mut later = 0u64;
    for (range, &groups) in found.ranges.iter_mut().zip(&later_groups).rev() {
        later = later.max(groups);
        range.kind = if later > range.start {
            RangeKind::Damage
        } else if range.end == file_len && all_zeros(window, range.start, range.end)? {
            RangeKind::Unused
        } else {
            RangeKind::TornTail
        };
    }
    found.streams = next_versions.len() as u64;
    Ok(found)
}

/// Hashes stream ids for the scan's version check with one keyed 64x64->128-bit
/// multiply (SipHash costs more than the rest of the check per batch); the random key
/// keeps ids written into a file from being chosen to collide.
struct IdHash(u64, u64);

impl IdHash {
    fn new() -> IdHash {
        let key = Uuid::new_v4().as_u128();
        IdHash(key as u64 | 1, (key >> 64) as u64 | 1)
    }
}

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            keys: (self.0, self.1),
            acc: 0,
        }
    }
}

struct IdHasher {
    keys: (u64, u64),
    acc: u64,
}

fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(16) {
            let mut word = [0u8; 16];
            word[..chunk.len()].copy_from_slice(chunk);
            let w = u128::from_le_bytes(word);
            let mixed = fold_mul(w as u64 ^ self.keys.0, (w >> 64) as u64 ^ self.keys.1);
            self.acc = fold_mul(self.acc ^ mixed, 0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        // The length prefix of the id's bytes (always 16).
        self.acc ^= n as u64;
    }
    fn finish(&self) -> u64 {
        self.acc
    }
}

/// The first intact batch at or after byte offset `from` that holds positions at or
/// past `expected`, with its offset.
fn find_batch(
    window: &mut Window<'_>,
    seed: &SaltedCrc,
    from: u64,
    expected: u64,
    records: &mut Vec<(u32, u32)>,
    streams: &mut Vec<(Uuid, u64, u32)>,
) -> Result<Option<(u64, Checked)>, Error> {
    let file_len = window.file_len;
    let mut at = from;
    while at < file_len {
        let chunk_len = CHUNK.min((file_len - at) as usize);
        let hits: Vec<u64> = {
            let chunk = window.get(at, chunk_len)?;
            chunk
                .windows(BATCH_MAGIC.len())
                .enumerate()
                .filter(|(_, w)| *w == BATCH_MAGIC)
                .map(|(i, _)| at + i as u64)
                .collect()
        };
        for candidate in hits {
            if let Ok(b) = check_batch(window, seed, candidate, records, streams)? {
                if b.first_position >= expected {
                    return Ok(Some((candidate, b)));
                }
            }
        }
        // Step back so that a magic split across chunks is still seen.
        at += (chunk_len as u64)
            .saturating_sub(BATCH_MAGIC.len() as u64 - 1)
            .max(1);
    }
    Ok(None)
}

fn all_zeros(window: &mut Window<'_>, mut from: u64, to: u64) -> Result<bool, Error> {
    while from < to {
        let n = CHUNK.min((to - from) as usize);
        if window.get(from, n)?.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        from += n as u64;
    }
    Ok(true)
}

/// What [`salvage`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalvageReport {
    /// The scan of the source: its damaged ranges are what was lost.
    pub inspection: Inspection,
    /// Batches and events copied into the new store.
    pub kept_batches: u64,
    pub kept_events: u64,
    /// Source position of the first event whose position (and possibly stream version)
    /// changed in the copy, because events before it were lost; `None` when every
    /// kept event kept its position and version.
    pub renumbered_from: Option<u64>,
}

/// The batches at the start of a source, in sequence from its header (adjacent, and
/// their positions too), that a salvage copies byte for byte.
#[derive(Debug, Default)]
struct Prefix {
    /// End of the last of them.
    end: u64,
    batches: u64,
    events: u64,
    /// A batch did not follow: the prefix is complete (a gap never closes again).
    ended: bool,
}

impl Prefix {
    /// Takes `b` (the scan reports intact batches in file order) when it follows the
    /// prefix directly.
    fn extend(&mut self, b: &IntactBatch<'_>) {
        if self.ended {
            return;
        }
        let next = if self.batches == 0 {
            FILE_HEADER_LEN as u64
        } else {
            self.end
        };
        if b.offset == next && b.first_position == self.events {
            self.end = b.offset + b.len;
            self.batches += 1;
            self.events += u64::from(b.count);
        } else {
            self.ended = true;
        }
    }

    /// The source, opened, when the prefix can be copied as it is: it holds a batch,
    /// the file is of the current format, and the prefix is the intact prefix `scan`
    /// found (`inspection` of the same file) with no damaged range inside it (a
    /// damaged file header is the range `0..32`).
    fn copyable(&self, source: &Path, inspection: &Inspection) -> Result<Option<File>, Error> {
        if self.batches == 0
            || inspection.format_version != codec::FORMAT_VERSION
            || inspection.valid_end != self.end
            || inspection.ranges.iter().any(|r| r.start < self.end)
        {
            return Ok(None);
        }
        File::open(source)
            .map(Some)
            .map_err(|e| Error::io(format!("open {}", source.display()), e))
    }
}

/// Events per group commit while salvaging: large enough that syncs cost little.
const COPY_GROUP_BYTES: usize = 4 << 20;

/// Copies every intact batch of the store file `source` (which is only read, never
/// locked or modified: it may be damaged) into a new store at `dest`, in order: each
/// batch's events with their ids, stream, type, metadata, payload and commit time.
/// Global positions and stream versions are assigned afresh, so events after a lost
/// range move down to close the gap (see [`SalvageReport::renumbered_from`]). The
/// intact prefix (all of a sound store) is copied byte for byte, salt included; the
/// batches after a lost range are appended again. The new store is built in a
/// temporary file beside `dest`, checked with [`scan`], and renamed to `dest` only when
/// whole. `dest` must not exist. `progress(done, total)` is called with a measure of
/// the work done, in bytes of `source` (the first half: scanning it; the second:
/// copying and appending).
pub fn salvage(
    source: &Path,
    dest: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SalvageReport, Error> {
    if dest.exists() {
        return Err(Error::InvalidArgument(format!(
            "{} already exists: salvage writes a new store",
            dest.display()
        )));
    }
    let tmp = sibling(dest, "salvage");
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        // What is intact, first. The batches from the header up to the first range
        // that holds none are, byte for byte, what a new store with the source's salt
        // would hold (same offsets, positions, versions and commit times), so they are
        // copied as they are, in the kernel, and only the batches after a lost range
        // are appended again: at 10M events a sound store's salvage is a copy, not 10M
        // appends. The copy is checked like the rest (open scans it, and `scan` below).
        let mut prefix = Prefix::default();
        let mut file_len = 0;
        let first = scan(source, |b| {
            if file_len == 0 {
                file_len = std::fs::metadata(source).map_or(0, |m| m.len());
            }
            prefix.extend(b);
            progress((b.offset + b.len) / 2, file_len);
            Ok(())
        })?;
        let total = first.file_len;
        let store = match prefix.copyable(source, &first)? {
            Some(src) => {
                let out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
                crate::store::copy_bytes(&src, source, &out, &tmp, prefix.end, &mut |done| {
                    progress((total + done) / 2, total)
                })?;
                out.sync_all()
                    .map_err(|e| Error::io(format!("fsync {}", tmp.display()), e))?;
                drop(out);
                Store::open_with(
                    &tmp,
                    OpenOptions::new().index_at_close_only().preallocate(false),
                )?
            }
            None => {
                prefix = Prefix::default();
                Store::open_with(
                    &tmp,
                    OpenOptions::new().index_at_close_only().preallocate(false),
                )?
            }
        };
        let mut pending: Vec<CopiedBatch> = Vec::new();
        let mut pending_bytes = 0usize;
        let mut kept_batches = prefix.batches;
        let mut kept_events = prefix.events;
        let mut renumbered_from = None;
        let mut reserved = false;
        if first.batches > prefix.batches {
            // Appended on this thread: at 10M one-event batches a second thread
            // appending them cost 7 s more CPU and wall time than it saved (cross-core
            // traffic for every batch, freed on another thread than it was allocated on).
            scan(source, |b| {
                if b.offset < prefix.end {
                    return Ok(());
                }
                if renumbered_from.is_none() && b.first_position != kept_events {
                    renumbered_from = Some(b.first_position);
                }
                // One source batch, one copied batch: a multi-stream batch stays whole
                // (an exact retry of that append against the copy is recognised). The
                // events are encoded from the bytes the scan read, not copied one by one.
                let events: Vec<ProposedEventRef<'_>> = b
                    .events()
                    .map(|e| ProposedEventRef {
                        event_id: e.event_id,
                        event_type: e.event_type,
                        metadata: e.metadata,
                        payload: e.payload,
                    })
                    .collect();
                let mut at = 0usize;
                let runs: Vec<StreamAppend<'_>> = b
                    .streams
                    .iter()
                    .map(|&(stream_id, _, count)| {
                        let run = StreamAppend {
                            stream_id,
                            expected_version: ExpectedVersion::Any,
                            events: &events[at..at + count as usize],
                        };
                        at += count as usize;
                        run
                    })
                    .collect();
                pending.push(CopiedBatch::multi(b.recorded_at, &runs)?);
                pending_bytes += b.len as usize;
                kept_batches += 1;
                kept_events += u64::from(b.count);
                if pending_bytes >= COPY_GROUP_BYTES {
                    if !reserved {
                        // Size the index once for the whole copy, estimated from the
                        // events per byte so far (a hint: it grows as needed beyond).
                        reserved = true;
                        let scanned = (b.offset + b.len).max(1);
                        let estimate =
                            u128::from(kept_events) * u128::from(total) / u128::from(scanned);
                        store.reserve(u64::try_from(estimate).unwrap_or(u64::MAX))?;
                    }
                    store.append_copied_group(&pending)?;
                    pending.clear();
                    pending_bytes = 0;
                }
                progress((total + b.offset + b.len) / 2, total);
                Ok(())
            })?;
        }
        let inspection = first;
        store.append_copied_group(&pending)?;
        store.close()?;
        // The temporary store's side file: nobody follows it.
        crate::store::shared::remove_side_file(&tmp);
        let copy = scan(&tmp, |_| Ok(()))?;
        if !copy.is_clean() || copy.events != kept_events {
            return Err(Error::CorruptRecord {
                position: copy.valid_events,
                offset: copy.valid_end,
                detail: format!(
                    "the salvaged copy does not check out ({} of {kept_events} events): \
                     the disk may be failing",
                    copy.events
                ),
            });
        }
        // Versions change too when a stream lost events; positions tell it first.
        if renumbered_from.is_none()
            && inspection
                .ranges
                .iter()
                .any(|r| r.kind == RangeKind::Damage)
        {
            renumbered_from = inspection
                .ranges
                .iter()
                .find(|r| r.kind == RangeKind::Damage)
                .map(|r| r.first_lost_position);
        }
        crate::store::io::rename_new(&tmp, dest).map_err(|e| {
            Error::io(
                format!(
                    "rename {} to {} (a file appeared there meanwhile?)",
                    tmp.display(),
                    dest.display()
                ),
                e,
            )
        })?;
        crate::store::move_index_file(&tmp, dest);
        sync_parent(dest)?;
        Ok(SalvageReport {
            inspection,
            kept_batches,
            kept_events,
            renumbered_from,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(crate::store::index_file_path(&tmp));
        crate::store::shared::remove_side_file(&tmp);
    }
    result
}

/// A temporary name beside `dest` for a file that becomes `dest` once it is whole.
pub(crate) fn sibling(dest: &Path, what: &str) -> PathBuf {
    let name = dest
        .file_name()
        .map_or_else(|| "store".into(), |n| n.to_string_lossy().into_owned());
    dest.with_file_name(format!(".{name}.{what}-{}.tmp", std::process::id()))
}

/// Makes a rename or creation of `path` durable.
pub(crate) fn sync_parent(path: &Path) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    crate::store::io::sync_dir(dir)
        .map_err(|e| Error::io(format!("fsync directory {}", dir.display()), e))
}
