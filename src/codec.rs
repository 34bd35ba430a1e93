//! Bytes in, bytes out: the file header, event records and batch frames. No I/O here.
//!
//! The layout is specified byte by byte in `docs/format.md`. In short: a 32-byte file
//! header (magic, format version, a random per-file salt, CRC), then batches. A batch
//! is one append: a header, its records, a commit marker and a CRC over the whole batch
//! seeded with the file's salt, so that a batch copied from another file (or found
//! inside a payload) never checks out as one of this file's. Every record also carries
//! its own CRC, so a read can verify just the record it returns.

use uuid::Uuid;

use crate::error::{Error, HeaderCause};
use crate::types::{ProposedEventRef, RecordedEvent, MAX_EVENT_SIZE, RECORD_OVERHEAD};

/// The first bytes of every store: magic, then the format version (u16 LE).
pub const MAGIC: [u8; 6] = *b"EVSTOR";
/// The format version this library writes into new stores: version 2, whose batches
/// may hold several streams (a multi-append).
pub const FORMAT_VERSION: u16 = 2;
/// The format of 0.1: one stream per batch. Read as it is, and kept until the first
/// batch it cannot express (see `docs/format.md`).
pub const FORMAT_VERSION_1: u16 = 1;
/// Every format version this library reads (named in `InvalidHeader` messages).
pub const READABLE_VERSIONS: &[u16] = &[FORMAT_VERSION_1, FORMAT_VERSION];
/// Length of [`encode_header`]: magic and format version.
pub const HEADER_LEN: usize = 8;
/// Length of the whole file header area: magic, version, salt, reserved bytes, CRC.
pub const FILE_HEADER_LEN: usize = 32;

/// Marks the start of a batch.
pub const BATCH_MAGIC: [u8; 4] = *b"EVBT";
/// Marks the end of a batch's records: the append is whole up to here.
pub const COMMIT_MAGIC: [u8; 4] = *b"EVCM";
pub const BATCH_HEADER_LEN: usize = 44;
pub const BATCH_TRAILER_LEN: usize = 8;
/// Bytes a batch adds around its records.
pub const BATCH_OVERHEAD: usize = BATCH_HEADER_LEN + BATCH_TRAILER_LEN;

/// Fixed fields of a record before its event type.
const RECORD_FIXED_LEN: usize = 72;

/// The magic and format version that open every new store file.
pub fn encode_header() -> [u8; HEADER_LEN] {
    encode_header_version(FORMAT_VERSION)
}

/// The magic and the given format version.
pub fn encode_header_version(version: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..6].copy_from_slice(&MAGIC);
    h[6..8].copy_from_slice(&version.to_le_bytes());
    h
}

/// `InvalidHeader` for `cause`, with no path (the caller that knows it adds it).
fn invalid_header(cause: HeaderCause) -> Error {
    Error::InvalidHeader {
        path: Default::default(),
        cause,
    }
}

/// Checks the magic and format version at the start of `bytes`; returns the version
/// (1 or 2).
pub fn decode_header(bytes: &[u8]) -> Result<u16, Error> {
    if bytes.len() < HEADER_LEN || bytes[..6] != MAGIC {
        return Err(invalid_header(HeaderCause::NotAStore));
    }
    let version = u16::from_le_bytes([bytes[6], bytes[7]]);
    if !READABLE_VERSIONS.contains(&version) {
        return Err(invalid_header(HeaderCause::UnsupportedVersion {
            found: version,
        }));
    }
    Ok(version)
}

/// The whole file header area of a new store with this salt.
pub fn encode_file_header(salt: u64) -> [u8; FILE_HEADER_LEN] {
    encode_file_header_version(salt, FORMAT_VERSION)
}

/// The whole file header area with this salt and format version (the upgrade of a
/// version-1 store rewrites its header with the same salt and version 2).
pub fn encode_file_header_version(salt: u64, version: u16) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..HEADER_LEN].copy_from_slice(&encode_header_version(version));
    h[8..16].copy_from_slice(&salt.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Validates a file header area and returns the file's salt.
pub fn decode_file_header(bytes: &[u8]) -> Result<u64, Error> {
    decode_file_header_version(bytes).map(|(salt, _)| salt)
}

/// Validates a file header area and returns the file's salt and format version.
pub fn decode_file_header_version(bytes: &[u8]) -> Result<(u64, u16), Error> {
    let version = decode_header(bytes)?;
    if bytes.len() < FILE_HEADER_LEN || crc32fast::hash(&bytes[..28]) != le_u32(bytes, 28) {
        return Err(invalid_header(HeaderCause::DamagedChecksum));
    }
    Ok((le_u64(bytes, 8), version))
}

/// The salt of a header that fails [`decode_file_header_version`] but may have been
/// torn while being rewritten from version 1 to version 2: a crash during that 32-byte
/// write may leave a mix of the two (every byte the old one's or the new one's, the
/// same magic, salt and reserved bytes). The rewrite is synced before any batch that
/// needs version 2 is written, so such a file can hold only single-stream batches;
/// `open` checks that before it repairs the header as version 1.
pub fn torn_upgrade(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < FILE_HEADER_LEN {
        return None;
    }
    let salt = le_u64(bytes, 8);
    let old = encode_file_header_version(salt, FORMAT_VERSION_1);
    let new = encode_file_header_version(salt, FORMAT_VERSION);
    bytes[..FILE_HEADER_LEN]
        .iter()
        .zip(old.iter().zip(&new))
        .all(|(b, (o, n))| b == o || b == n)
        .then_some(salt)
}

/// Whether a file that holds only `bytes` can be what a crash while creating a store
/// left behind: no longer than a header, and either zeros (the size reached the disk,
/// the data did not) or the start of a header.
pub fn is_interrupted_creation(bytes: &[u8]) -> bool {
    if bytes.len() > FILE_HEADER_LEN {
        return false;
    }
    let n = bytes.len().min(HEADER_LEN);
    bytes.iter().all(|&b| b == 0)
        || [FORMAT_VERSION_1, FORMAT_VERSION]
            .iter()
            .any(|&v| bytes[..n] == encode_header_version(v)[..n])
}

/// CRC32 of the salt's 8 bytes followed by `bytes`. The CRC of the salt alone is
/// remembered (per thread, for the last salt seen), so each call hashes only `bytes`.
fn crc_with_salt(salt: u64, bytes: &[u8]) -> u32 {
    thread_local! {
        static SALT_CRC: std::cell::Cell<Option<(u64, u32)>> = const { std::cell::Cell::new(None) };
    }
    let salt_crc = SALT_CRC.with(|c| match c.get() {
        Some((s, crc)) if s == salt => crc,
        _ => {
            let crc = crc32fast::hash(&salt.to_le_bytes());
            c.set(Some((salt, crc)));
            crc
        }
    });
    let mut h = crc32fast::Hasher::new_with_initial(salt_crc);
    h.update(bytes);
    h.finalize()
}

#[inline]
fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

#[inline]
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

#[inline]
fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[inline]
fn uuid_at(b: &[u8], at: usize) -> Uuid {
    Uuid::from_bytes(b[at..at + 16].try_into().expect("16 bytes"))
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

// ---------------------------------------------------------------------------------
// Records

/// Fields of a record that are fixed only when the record is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPlacement {
    pub global_position: u64,
    pub stream_version: u64,
    pub recorded_at: u64,
}

/// Appends the record of `event` to `out`. The caller has checked the limits.
fn put_record(
    out: &mut Vec<u8>,
    stream_id: &Uuid,
    event: &ProposedEventRef<'_>,
    at: RecordPlacement,
) {
    let start = out.len();
    let len = event.encoded_len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&at.global_position.to_le_bytes());
    out.extend_from_slice(&at.stream_version.to_le_bytes());
    out.extend_from_slice(&at.recorded_at.to_le_bytes());
    out.extend_from_slice(stream_id.as_bytes());
    out.extend_from_slice(event.event_id.as_bytes());
    out.extend_from_slice(&(event.event_type.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(event.metadata.len() as u32).to_le_bytes());
    out.extend_from_slice(&(event.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(event.event_type.as_bytes());
    out.push(0);
    out.extend_from_slice(event.metadata);
    out.extend_from_slice(event.payload);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len() - start, len);
}

/// Checks an event against the limits of the format.
pub fn check_event(event: &ProposedEventRef<'_>) -> Result<(), Error> {
    let type_len = event.event_type.len();
    if type_len == 0 {
        return Err(Error::InvalidArgument("event type is empty".into()));
    }
    if type_len > crate::types::MAX_EVENT_TYPE_LEN {
        return Err(Error::InvalidArgument(format!(
            "event type is {type_len} bytes, the limit is {}",
            crate::types::MAX_EVENT_TYPE_LEN
        )));
    }
    // C readers get the type NUL-terminated: a NUL inside would cut it short.
    if let Some(at) = event.event_type.find('\0') {
        return Err(Error::InvalidArgument(format!(
            "event type contains a NUL byte (at byte {at})"
        )));
    }
    let size = event.encoded_len();
    if size > MAX_EVENT_SIZE {
        return Err(Error::EventTooLarge {
            size,
            max: MAX_EVENT_SIZE,
        });
    }
    Ok(())
}

/// Encodes one recorded event as a standalone record (the unit inside a batch).
pub fn encode_record(event: &RecordedEvent) -> Result<Vec<u8>, Error> {
    let proposed = ProposedEventRef {
        event_id: event.event_id,
        event_type: &event.event_type,
        metadata: &event.metadata,
        payload: &event.payload,
    };
    check_event(&proposed)?;
    let mut out = Vec::with_capacity(proposed.encoded_len());
    put_record(
        &mut out,
        &event.stream_id,
        &proposed,
        RecordPlacement {
            global_position: event.global_position,
            stream_version: event.stream_version,
            recorded_at: event.recorded_at,
        },
    );
    Ok(out)
}

/// The result of decoding from a buffer that may hold only part of the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeOutcome<T> {
    /// A whole, valid item that took `len` bytes.
    Complete { value: T, len: usize },
    /// The buffer ends before the item does; `needed` bytes would hold it.
    Incomplete { needed: usize },
}

/// A record decoded in place: its fields borrow from the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub global_position: u64,
    pub stream_version: u64,
    pub recorded_at: u64,
    pub stream_id: Uuid,
    pub event_id: Uuid,
    pub event_type: &'a str,
    /// The event type followed by its NUL terminator.
    pub event_type_with_nul: &'a [u8],
    pub metadata: &'a [u8],
    pub payload: &'a [u8],
}

impl RecordView<'_> {
    pub fn to_recorded(&self) -> RecordedEvent {
        RecordedEvent {
            event_id: self.event_id,
            stream_id: self.stream_id,
            stream_version: self.stream_version,
            global_position: self.global_position,
            recorded_at: self.recorded_at,
            event_type: self.event_type.to_string(),
            metadata: self.metadata.to_vec(),
            payload: self.payload.to_vec(),
        }
    }
}

/// The event type of a record whose shape was checked (the bytes start at the record).
pub fn record_type_bytes(rec: &[u8]) -> &[u8] {
    let type_len = le_u16(rec, 60) as usize;
    &rec[RECORD_FIXED_LEN..RECORD_FIXED_LEN + type_len]
}

/// Why a record or batch failed to decode; the caller adds where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage(pub String);

/// Lengths of a record's parts, read from its fixed fields.
struct RecordShape {
    len: usize,
    type_len: usize,
    metadata_len: usize,
    payload_len: usize,
}

#[inline]
fn record_shape(bytes: &[u8]) -> Result<DecodeOutcome<RecordShape>, Damage> {
    if bytes.len() < RECORD_FIXED_LEN {
        let needed = if bytes.len() >= 4 {
            (le_u32(bytes, 0) as usize).max(RECORD_FIXED_LEN)
        } else {
            RECORD_FIXED_LEN
        };
        return Ok(DecodeOutcome::Incomplete { needed });
    }
    let len = le_u32(bytes, 0) as usize;
    if !(RECORD_OVERHEAD..=MAX_EVENT_SIZE).contains(&len) {
        return Err(Damage(format!("record length {len} is out of range")));
    }
    let type_len = le_u16(bytes, 60) as usize;
    let metadata_len = le_u32(bytes, 64) as usize;
    let payload_len = le_u32(bytes, 68) as usize;
    let parts = RECORD_OVERHEAD as u64 + type_len as u64 + metadata_len as u64 + payload_len as u64;
    if parts != len as u64 {
        return Err(Damage(format!(
            "record length {len} disagrees with its parts ({parts} bytes)"
        )));
    }
    if type_len == 0 || type_len > crate::types::MAX_EVENT_TYPE_LEN {
        return Err(Damage(format!(
            "event type length {type_len} is out of range"
        )));
    }
    if bytes.len() < len {
        return Ok(DecodeOutcome::Incomplete { needed: len });
    }
    Ok(DecodeOutcome::Complete {
        value: RecordShape {
            len,
            type_len,
            metadata_len,
            payload_len,
        },
        len,
    })
}

/// Decodes and verifies (CRC, lengths, UTF-8 type) the record at the start of `bytes`.
pub fn parse_record(bytes: &[u8]) -> Result<DecodeOutcome<RecordView<'_>>, Damage> {
    parse_record_checked(bytes, true)
}

/// [`parse_record`] without the CRC check, for bytes that were verified before.
pub fn parse_verified_record(bytes: &[u8]) -> Result<DecodeOutcome<RecordView<'_>>, Damage> {
    parse_record_checked(bytes, false)
}

fn parse_record_checked(
    bytes: &[u8],
    check_crc: bool,
) -> Result<DecodeOutcome<RecordView<'_>>, Damage> {
    let shape = match record_shape(bytes)? {
        DecodeOutcome::Complete { value, .. } => value,
        DecodeOutcome::Incomplete { needed } => return Ok(DecodeOutcome::Incomplete { needed }),
    };
    let rec = &bytes[..shape.len];
    let stored_crc = le_u32(rec, shape.len - 4);
    if check_crc && crc32fast::hash(&rec[..shape.len - 4]) != stored_crc {
        return Err(Damage("record checksum mismatch".into()));
    }
    let type_start = RECORD_FIXED_LEN;
    let type_end = type_start + shape.type_len;
    if rec[type_end] != 0 {
        return Err(Damage("event type is not NUL-terminated".into()));
    }
    let event_type = std::str::from_utf8(&rec[type_start..type_end])
        .map_err(|e| Damage(format!("event type is not UTF-8: {e}")))?;
    let meta_start = type_end + 1;
    let payload_start = meta_start + shape.metadata_len;
    Ok(DecodeOutcome::Complete {
        value: RecordView {
            global_position: le_u64(rec, 4),
            stream_version: le_u64(rec, 12),
            recorded_at: le_u64(rec, 20),
            stream_id: uuid_at(rec, 28),
            event_id: uuid_at(rec, 44),
            event_type,
            event_type_with_nul: &rec[type_start..=type_end],
            metadata: &rec[meta_start..payload_start],
            payload: &rec[payload_start..payload_start + shape.payload_len],
        },
        len: shape.len,
    })
}

/// Verifies the record that fills `rec` exactly, as [`parse_record`] does (lengths,
/// CRC, NUL-terminated UTF-8 type), without building its view: the read path checks
/// every record it returns this way while the bytes are in cache, and views them
/// later through [`view_checked_record`]. Records that come in numbers go through
/// [`check_records4`], which gives the same verdict for each.
pub fn check_record(rec: &[u8]) -> Result<(), Damage> {
    let type_len = check_lengths(rec)?;
    check_crc(rec, crc32(crc_covered(rec)))?;
    check_type(rec, type_len)
}

/// [`check_record`] of four records at once, each with its own verdict (exactly the
/// one `check_record` gives it): their CRCs are computed side by side
/// (`checksum::crc32x4`), the rest as for one record. Sound records take the fast
/// path; a group with a damaged record is checked again record by record, so that
/// each verdict, message included, is `check_record`'s.
#[inline]
pub fn check_records4(recs: [&[u8]; 4]) -> [Result<(), Damage>; 4] {
    if records4_sound(recs) {
        return [Ok(()), Ok(()), Ok(()), Ok(())];
    }
    damaged4(recs)
}

/// Whether all four records pass every check of [`check_record`]: the fast path of
/// [`check_records4`], for callers that want no verdicts to move around when all is
/// well (the common case) and ask `check_records4` for them otherwise.
#[inline]
pub fn records4_sound(recs: [&[u8]; 4]) -> bool {
    let mut type_lens = [0usize; 4];
    for (t, rec) in type_lens.iter_mut().zip(recs) {
        match check_lengths(rec) {
            Ok(len) => *t = len,
            Err(_) => return false,
        }
    }
    let crcs = crc32x4([
        crc_covered(recs[0]),
        crc_covered(recs[1]),
        crc_covered(recs[2]),
        crc_covered(recs[3]),
    ]);
    for i in 0..4 {
        if check_crc(recs[i], crcs[i]).is_err() || check_type(recs[i], type_lens[i]).is_err() {
            return false;
        }
    }
    true
}

#[cold]
#[inline(never)]
fn damaged4(recs: [&[u8]; 4]) -> [Result<(), Damage>; 4] {
    [
        check_record(recs[0]),
        check_record(recs[1]),
        check_record(recs[2]),
        check_record(recs[3]),
    ]
}

/// The first checks of [`check_record`]: the record's lengths agree with each other
/// and with `rec`'s. Returns the event type's length.
#[inline]
fn check_lengths(rec: &[u8]) -> Result<usize, Damage> {
    let shape = match record_shape(rec)? {
        DecodeOutcome::Complete { value, .. } => value,
        DecodeOutcome::Incomplete { .. } => {
            return Err(Damage("record length disagrees with the index".into()))
        }
    };
    if shape.len != rec.len() {
        return Err(Damage("record length disagrees with the index".into()));
    }
    Ok(shape.type_len)
}

/// The bytes a record's CRC covers (all but the CRC), of a record [`check_lengths`]
/// accepted.
#[inline]
fn crc_covered(rec: &[u8]) -> &[u8] {
    &rec[..rec.len() - 4]
}

/// Whether `crc`, computed over [`crc_covered`], is the one the record stores.
#[inline]
fn check_crc(rec: &[u8], crc: u32) -> Result<(), Damage> {
    if crc != le_u32(rec, rec.len() - 4) {
        return Err(Damage("record checksum mismatch".into()));
    }
    Ok(())
}

/// The last checks of [`check_record`]: the event type is NUL-terminated UTF-8.
#[inline]
fn check_type(rec: &[u8], type_len: usize) -> Result<(), Damage> {
    let type_end = RECORD_FIXED_LEN + type_len;
    if rec[type_end] != 0 {
        return Err(Damage("event type is not NUL-terminated".into()));
    }
    let ty = &rec[RECORD_FIXED_LEN..type_end];
    // Event types are nearly always ASCII, which is UTF-8 and checked in a few cycles.
    if !ty.is_ascii() {
        std::str::from_utf8(ty).map_err(|e| Damage(format!("event type is not UTF-8: {e}")))?;
    }
    Ok(())
}

/// The global position a record holds (its bytes 4..12; the record is at least
/// [`RECORD_FIXED_LEN`] bytes long, as every record that passed [`check_record`]).
pub fn record_global_position(rec: &[u8]) -> u64 {
    le_u64(rec, 4)
}

use crate::checksum::{crc32, crc32x4};

/// [`view_verified_record`] without checking the event type's UTF-8 again.
///
/// # Safety
/// `rec` must be exactly a record that [`check_record`] (or [`parse_record`]) accepted,
/// unchanged since: its event type is then valid UTF-8.
#[inline(always)]
pub unsafe fn view_checked_record(rec: &[u8]) -> RecordView<'_> {
    let type_len = le_u16(rec, 60) as usize;
    let metadata_len = le_u32(rec, 64) as usize;
    let payload_len = le_u32(rec, 68) as usize;
    let type_end = RECORD_FIXED_LEN + type_len;
    let meta_start = type_end + 1;
    let payload_start = meta_start + metadata_len;
    let ty = &rec[RECORD_FIXED_LEN..type_end];
    RecordView {
        global_position: le_u64(rec, 4),
        stream_version: le_u64(rec, 12),
        recorded_at: le_u64(rec, 20),
        stream_id: uuid_at(rec, 28),
        event_id: uuid_at(rec, 44),
        // SAFETY: the caller guarantees the record was checked, type UTF-8 included.
        event_type: unsafe { std::str::from_utf8_unchecked(ty) },
        event_type_with_nul: &rec[RECORD_FIXED_LEN..=type_end],
        metadata: &rec[meta_start..payload_start],
        payload: &rec[payload_start..payload_start + payload_len],
    }
}

/// The view of a record that [`parse_record`] accepted before, without checking it
/// again: its lengths are taken as they stand.
///
/// # Panics
/// When `rec` is not such a record (its lengths run past it, or its type is not UTF-8).
pub fn view_verified_record(rec: &[u8]) -> RecordView<'_> {
    let type_len = le_u16(rec, 60) as usize;
    let metadata_len = le_u32(rec, 64) as usize;
    let payload_len = le_u32(rec, 68) as usize;
    let type_end = RECORD_FIXED_LEN + type_len;
    let meta_start = type_end + 1;
    let payload_start = meta_start + metadata_len;
    RecordView {
        global_position: le_u64(rec, 4),
        stream_version: le_u64(rec, 12),
        recorded_at: le_u64(rec, 20),
        stream_id: uuid_at(rec, 28),
        event_id: uuid_at(rec, 44),
        event_type: std::str::from_utf8(&rec[RECORD_FIXED_LEN..type_end])
            .expect("the record was verified"),
        event_type_with_nul: &rec[RECORD_FIXED_LEN..=type_end],
        metadata: &rec[meta_start..payload_start],
        payload: &rec[payload_start..payload_start + payload_len],
    }
}

/// Decodes the standalone record at the start of `bytes` (see [`encode_record`]).
/// A damaged record is `Error::CorruptRecord` with offset 0 (relative to `bytes`).
pub fn decode_record(bytes: &[u8]) -> Result<DecodeOutcome<RecordedEvent>, Error> {
    match parse_record(bytes) {
        Ok(DecodeOutcome::Complete { value, len }) => Ok(DecodeOutcome::Complete {
            value: value.to_recorded(),
            len,
        }),
        Ok(DecodeOutcome::Incomplete { needed }) => Ok(DecodeOutcome::Incomplete { needed }),
        Err(Damage(detail)) => Err(Error::CorruptRecord {
            position: if bytes.len() >= 12 {
                le_u64(bytes, 4)
            } else {
                0
            },
            offset: 0,
            detail,
        }),
    }
}

// ---------------------------------------------------------------------------------
// Batches

/// The fields of a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Whole batch, header and trailer included.
    pub batch_len: u32,
    pub first_position: u64,
    pub count: u32,
    pub recorded_at: u64,
    /// File offset where the write that carried this batch began. Batches written by
    /// one group commit share it; recovery uses it to tell a torn last write (whose
    /// blocks may reach the disk in any order) from damage to older data.
    pub group_start: u64,
}

/// An encoded batch whose placement (positions, versions, time, group) is not yet
/// known. Encoding happens on the caller's thread; [`UnsealedBatch::seal_into`] runs in
/// the committing thread once the batch's place in the log is decided.
///
/// A batch holds one append: the events of one stream, or (format 2) of several
/// streams, each stream's events contiguous, in the order given.
#[derive(Debug)]
pub struct UnsealedBatch {
    bytes: Vec<u8>,
    count: u32,
    /// Events per stream, in order (one entry for a single-stream append).
    parts: PartCounts,
}

/// Events per stream of a batch: most batches have one stream, kept without an
/// allocation (a tool copying millions of small batches pays for each one).
#[derive(Debug, Clone)]
enum PartCounts {
    One(u32),
    Many(Vec<u32>),
}

impl PartCounts {
    fn as_slice(&self) -> &[u32] {
        match self {
            PartCounts::One(n) => std::slice::from_ref(n),
            PartCounts::Many(v) => v,
        }
    }
}

impl UnsealedBatch {
    /// Encodes `events` of one stream. Events must have passed [`check_event`]; a nil
    /// event id must already have been replaced.
    pub fn encode(stream_id: &Uuid, events: &[ProposedEventRef<'_>]) -> Result<Self, Error> {
        Self::encode_multi(&[(*stream_id, events)])
    }

    /// Encodes the events of several streams, stream after stream, as one batch.
    pub fn encode_multi(parts: &[(Uuid, &[ProposedEventRef<'_>])]) -> Result<Self, Error> {
        let count: usize = parts.iter().map(|(_, e)| e.len()).sum();
        let records: usize = parts
            .iter()
            .flat_map(|(_, e)| e.iter())
            .map(|e| e.encoded_len())
            .sum();
        let total = BATCH_OVERHEAD + records;
        if total > u32::MAX as usize || count > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "batch of {count} events takes {total} bytes, the limit is {} bytes",
                u32::MAX
            )));
        }
        let mut bytes = Vec::with_capacity(total);
        bytes.extend_from_slice(&BATCH_MAGIC);
        bytes.extend_from_slice(&(total as u32).to_le_bytes());
        bytes.resize(BATCH_HEADER_LEN, 0);
        put_u32(&mut bytes, 16, count as u32);
        let unplaced = RecordPlacement {
            global_position: 0,
            stream_version: 0,
            recorded_at: 0,
        };
        for (stream_id, events) in parts {
            for e in *events {
                put_record(&mut bytes, stream_id, e, unplaced);
            }
        }
        bytes.extend_from_slice(&COMMIT_MAGIC);
        bytes.extend_from_slice(&[0; 4]);
        debug_assert_eq!(bytes.len(), total);
        Ok(UnsealedBatch {
            bytes,
            count: count as u32,
            parts: match parts {
                [(_, e)] => PartCounts::One(e.len() as u32),
                _ => PartCounts::Many(parts.iter().map(|(_, e)| e.len() as u32).collect()),
            },
        })
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Events per stream, in the order of the append.
    pub fn parts(&self) -> &[u32] {
        self.parts.as_slice()
    }

    /// `(stream id, event id)` of every record, in order.
    pub fn record_ids(&self) -> impl Iterator<Item = (Uuid, Uuid)> + '_ {
        let mut at = BATCH_HEADER_LEN;
        let end = self.bytes.len() - BATCH_TRAILER_LEN;
        std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let rec = &self.bytes[at..];
            at += le_u32(rec, 0) as usize;
            Some((uuid_at(rec, 28), uuid_at(rec, 44)))
        })
    }

    /// Fixes the batch's placement and checksums, appending the final bytes to `out`.
    /// `first_versions` holds the first version of each part (see [`Self::parts`]).
    /// Calls `on_record(offset_in_out, record_len)` for every record.
    pub fn seal_into(
        &self,
        out: &mut Vec<u8>,
        salt: u64,
        header: BatchHeader,
        first_versions: &[u64],
        mut on_record: impl FnMut(usize, usize),
    ) {
        debug_assert_eq!(first_versions.len(), self.parts.as_slice().len());
        let base = out.len();
        out.extend_from_slice(&self.bytes);
        let b = &mut out[base..];
        put_u64(b, 8, header.first_position);
        put_u64(b, 24, header.recorded_at);
        put_u64(b, 32, header.group_start);
        let header_crc = crc_with_salt(salt, &b[..40]);
        put_u32(b, 40, header_crc);
        let mut at = BATCH_HEADER_LEN;
        let mut position = header.first_position;
        for (&n, &first_version) in self.parts.as_slice().iter().zip(first_versions) {
            for i in 0..u64::from(n) {
                let len = le_u32(b, at) as usize;
                let rec = &mut b[at..at + len];
                put_u64(rec, 4, position);
                put_u64(rec, 12, first_version + i);
                put_u64(rec, 20, header.recorded_at);
                let crc = crc32fast::hash(&rec[..len - 4]);
                put_u32(rec, len - 4, crc);
                on_record(base + at, len);
                at += len;
                position += 1;
            }
        }
        let end = b.len();
        let batch_crc = crc_with_salt(salt, &b[..end - 4]);
        put_u32(b, end - 4, batch_crc);
    }
}

/// Where a stream's events begin inside a batch: reported to the record visitor of
/// [`check_batch_body`] with the first record of each stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRun {
    pub stream_id: Uuid,
    /// The version of the stream's first event in the batch.
    pub first_version: u64,
}

/// A batch that checked out: its header, and where its records are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    pub header: BatchHeader,
    /// The first stream of the batch, and its first version there.
    pub stream_id: Uuid,
    pub first_version: u64,
    /// `(offset within the batch, length)` of every record.
    pub records: Vec<(u32, u32)>,
    /// Each stream of the batch with the index of its first record, in order.
    pub runs: Vec<(StreamRun, u32)>,
}

/// The CRC state after a file's salt: every salted checksum of that file starts here.
#[derive(Clone)]
pub struct SaltedCrc(crc32fast::Hasher);

impl SaltedCrc {
    pub fn new(salt: u64) -> SaltedCrc {
        let mut h = crc32fast::Hasher::new();
        h.update(&salt.to_le_bytes());
        SaltedCrc(h)
    }
}

/// The running checksum of a batch whose header has been checked: it covers the salt
/// and the header's first 40 bytes, and goes on over the rest of the batch.
#[derive(Clone)]
pub struct BatchCrc(crc32fast::Hasher);

/// Reads and checks a batch header (magic, header CRC, sane lengths).
pub fn parse_batch_header(bytes: &[u8], salt: u64) -> Result<DecodeOutcome<BatchHeader>, Damage> {
    Ok(match check_batch_header(bytes, &SaltedCrc::new(salt))? {
        DecodeOutcome::Complete {
            value: (header, _),
            len,
        } => DecodeOutcome::Complete { value: header, len },
        DecodeOutcome::Incomplete { needed } => DecodeOutcome::Incomplete { needed },
    })
}

/// [`parse_batch_header`] from a precomputed salted state; also gives the running
/// checksum that [`check_batch_body`] continues.
#[inline]
pub fn check_batch_header(
    bytes: &[u8],
    seed: &SaltedCrc,
) -> Result<DecodeOutcome<(BatchHeader, BatchCrc)>, Damage> {
    if bytes.len() < BATCH_HEADER_LEN {
        return Ok(DecodeOutcome::Incomplete {
            needed: BATCH_HEADER_LEN,
        });
    }
    if bytes[..4] != BATCH_MAGIC {
        return Err(Damage("no batch header here".into()));
    }
    let mut crc = seed.0.clone();
    crc.update(&bytes[..40]);
    if crc.clone().finalize() != le_u32(bytes, 40) {
        return Err(Damage("batch header checksum mismatch".into()));
    }
    let header = BatchHeader {
        batch_len: le_u32(bytes, 4),
        first_position: le_u64(bytes, 8),
        count: le_u32(bytes, 16),
        recorded_at: le_u64(bytes, 24),
        group_start: le_u64(bytes, 32),
    };
    let min_len = BATCH_OVERHEAD as u64 + u64::from(header.count) * RECORD_OVERHEAD as u64;
    let max_len = BATCH_OVERHEAD as u64 + u64::from(header.count) * MAX_EVENT_SIZE as u64;
    let len = u64::from(header.batch_len);
    if header.count == 0 || len < min_len || len > max_len {
        return Err(Damage(format!(
            "batch of {} events cannot take {len} bytes",
            header.count
        )));
    }
    Ok(DecodeOutcome::Complete {
        value: (header, BatchCrc(crc)),
        len: BATCH_HEADER_LEN,
    })
}

/// Decodes and verifies the batch at the start of `bytes`: header, batch checksum
/// (seeded with `salt`), and the structure of every record (each stream's records
/// contiguous, positions contiguous, versions contiguous within each stream, one
/// commit time). Record checksums are not re-checked: the batch checksum covers them.
pub fn parse_batch(bytes: &[u8], salt: u64) -> Result<DecodeOutcome<BatchInfo>, Damage> {
    let mut records = Vec::new();
    let mut runs = Vec::new();
    Ok(
        match parse_batch_with(bytes, salt, |at, len, run| {
            if let Some(run) = run {
                runs.push((run, records.len() as u32));
            }
            records.push((at, len));
        })? {
            DecodeOutcome::Complete { value, len } => DecodeOutcome::Complete {
                value: BatchInfo {
                    header: value.header,
                    stream_id: value.stream_id,
                    first_version: value.first_version,
                    records,
                    runs,
                },
                len,
            },
            DecodeOutcome::Incomplete { needed } => DecodeOutcome::Incomplete { needed },
        },
    )
}

/// What [`parse_batch_with`] found: a batch's header, its first stream, and how many
/// streams it holds (more than one only in format 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    pub header: BatchHeader,
    pub stream_id: Uuid,
    pub first_version: u64,
    pub streams: u32,
}

/// [`parse_batch`] without collecting the records: calls `on_record(offset within the
/// batch, length, run)` for each of them instead, in order, where `run` is given with
/// the first record of each stream. On an error, records already reported belong to no
/// valid batch and must be discarded.
pub fn parse_batch_with(
    bytes: &[u8],
    salt: u64,
    on_record: impl FnMut(u32, u32, Option<StreamRun>),
) -> Result<DecodeOutcome<BatchSummary>, Damage> {
    let (header, crc) = match check_batch_header(bytes, &SaltedCrc::new(salt))? {
        DecodeOutcome::Complete { value, .. } => value,
        DecodeOutcome::Incomplete { needed } => return Ok(DecodeOutcome::Incomplete { needed }),
    };
    check_batch_body(bytes, header, crc, on_record)
}

/// The rest of [`parse_batch_with`] for a batch whose header `bytes` begin with and
/// that [`check_batch_header`] accepted as `header`, with the checksum it gave.
#[inline]
pub fn check_batch_body(
    bytes: &[u8],
    header: BatchHeader,
    crc: BatchCrc,
    mut on_record: impl FnMut(u32, u32, Option<StreamRun>),
) -> Result<DecodeOutcome<BatchSummary>, Damage> {
    let len = header.batch_len as usize;
    if bytes.len() < len {
        return Ok(DecodeOutcome::Incomplete { needed: len });
    }
    let b = &bytes[..len];
    if b[len - 8..len - 4] != COMMIT_MAGIC {
        return Err(Damage("batch has no commit marker".into()));
    }
    let mut crc = crc.0;
    crc.update(&b[40..len - 4]);
    if crc.finalize() != le_u32(b, len - 4) {
        return Err(Damage("batch checksum mismatch".into()));
    }
    let records_end = len - BATCH_TRAILER_LEN;
    let mut at = BATCH_HEADER_LEN;
    let stream_id = uuid_at(b, at + 28);
    let first_version = le_u64(b, at + 12);
    // The stream of the current run and the version its next record must have.
    let mut run_stream = stream_id;
    let mut next_version = first_version;
    // Streams of the runs before the current one (only a multi-stream batch has any).
    let mut earlier: Vec<Uuid> = Vec::new();
    for i in 0..u64::from(header.count) {
        let shape = match record_shape(&b[at..records_end])? {
            DecodeOutcome::Complete { value, .. } => value,
            DecodeOutcome::Incomplete { .. } => {
                return Err(Damage(format!("record {i} runs past its batch")))
            }
        };
        let rec = &b[at..at + shape.len];
        let (position, version, recorded_at) = (le_u64(rec, 4), le_u64(rec, 12), le_u64(rec, 20));
        let mut run = None;
        if i == 0 {
            run = Some(StreamRun {
                stream_id,
                first_version,
            });
        } else if rec[28..44] != *run_stream.as_bytes() {
            let next = uuid_at(rec, 28);
            earlier.push(run_stream);
            if earlier.contains(&next) {
                return Err(Damage(format!(
                    "record {i} returns to stream {next}: a stream's events must be contiguous"
                )));
            }
            run_stream = next;
            next_version = version;
            run = Some(StreamRun {
                stream_id: next,
                first_version: version,
            });
        }
        if position != header.first_position + i
            || version != next_version
            || recorded_at != header.recorded_at
        {
            return Err(Damage(format!("record {i} is out of sequence")));
        }
        next_version = match next_version.checked_add(1) {
            Some(v) => v,
            None => return Err(Damage(format!("record {i} has an impossible version"))),
        };
        on_record(at as u32, shape.len as u32, run);
        at += shape.len;
    }
    if at != records_end {
        return Err(Damage("batch length disagrees with its records".into()));
    }
    Ok(DecodeOutcome::Complete {
        value: BatchSummary {
            header,
            stream_id,
            first_version,
            streams: earlier.len() as u32 + 1,
        },
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev<'a>(ty: &'a str, payload: &'a [u8]) -> ProposedEventRef<'a> {
        ProposedEventRef {
            event_id: Uuid::from_u128(0xabc),
            event_type: ty,
            metadata: b"meta",
            payload,
        }
    }

    fn sealed(
        salt: u64,
        events: &[ProposedEventRef<'_>],
        first: u64,
    ) -> (Vec<u8>, Vec<(usize, usize)>) {
        let stream = Uuid::from_u128(1);
        let batch = UnsealedBatch::encode(&stream, events).unwrap();
        let mut out = Vec::new();
        let mut recs = Vec::new();
        let header = BatchHeader {
            batch_len: batch.len() as u32,
            first_position: first,
            count: batch.count(),
            recorded_at: 42,
            group_start: 32,
        };
        batch.seal_into(&mut out, salt, header, &[7], |o, l| recs.push((o, l)));
        (out, recs)
    }

    #[test]
    fn header_round_trips_and_rejects_other_magic_or_version() {
        let h = encode_file_header(0x1122_3344_5566_7788);
        assert_eq!(&h[..8], &encode_header());
        assert_eq!(decode_file_header(&h).unwrap(), 0x1122_3344_5566_7788);
        let mut wrong_version = h;
        wrong_version[6] = 99;
        assert!(matches!(
            decode_header(&wrong_version),
            Err(Error::InvalidHeader {
                cause: HeaderCause::UnsupportedVersion { found: 99 },
                ..
            })
        ));
        let mut wrong_magic = h;
        wrong_magic[0] = b'X';
        assert!(matches!(
            decode_file_header(&wrong_magic),
            Err(Error::InvalidHeader {
                cause: HeaderCause::NotAStore,
                ..
            })
        ));
        let mut wrong_salt = h;
        wrong_salt[9] ^= 1;
        assert!(matches!(
            decode_file_header(&wrong_salt),
            Err(Error::InvalidHeader {
                cause: HeaderCause::DamagedChecksum,
                ..
            })
        ));
    }

    #[test]
    fn interrupted_creation_is_only_a_short_prefix_or_zeros() {
        let h = encode_file_header(5);
        assert!(is_interrupted_creation(&[]));
        assert!(is_interrupted_creation(&h[..3]));
        assert!(is_interrupted_creation(&h[..20]));
        assert!(is_interrupted_creation(&[0; 32]));
        assert!(!is_interrupted_creation(b"hello"));
        assert!(!is_interrupted_creation(&[0; 33]));
    }

    #[test]
    fn record_round_trips_and_detects_every_flipped_byte() {
        let e = RecordedEvent {
            event_id: Uuid::from_u128(9),
            stream_id: Uuid::from_u128(8),
            stream_version: 3,
            global_position: 11,
            recorded_at: 1_700_000_000_000_000,
            event_type: "Deposited".into(),
            metadata: b"{}".to_vec(),
            payload: b"payload bytes".to_vec(),
        };
        let bytes = encode_record(&e).unwrap();
        assert_eq!(bytes.len(), RECORD_OVERHEAD + 9 + 2 + 13);
        match decode_record(&bytes).unwrap() {
            DecodeOutcome::Complete { value, len } => {
                assert_eq!(value, e);
                assert_eq!(len, bytes.len());
            }
            other => panic!("{other:?}"),
        }
        for cut in 0..bytes.len() {
            assert!(matches!(
                decode_record(&bytes[..cut]),
                Ok(DecodeOutcome::Incomplete { .. })
            ));
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            match decode_record(&bad) {
                Ok(DecodeOutcome::Complete { value, .. }) => {
                    panic!("flip at {i} decoded as {value:?}")
                }
                Ok(DecodeOutcome::Incomplete { .. }) | Err(Error::CorruptRecord { .. }) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn record_with_invalid_utf8_type_is_corrupt() {
        let mut bytes = encode_record(&RecordedEvent {
            event_id: Uuid::from_u128(1),
            stream_id: Uuid::from_u128(2),
            stream_version: 0,
            global_position: 0,
            recorded_at: 0,
            event_type: "ab".into(),
            metadata: vec![],
            payload: vec![],
        })
        .unwrap();
        bytes[RECORD_FIXED_LEN] = 0xff;
        let n = bytes.len();
        let crc = crc32fast::hash(&bytes[..n - 4]);
        bytes[n - 4..].copy_from_slice(&crc.to_le_bytes());
        match decode_record(&bytes) {
            Err(Error::CorruptRecord { detail, .. }) => assert!(detail.contains("UTF-8")),
            other => panic!("{other:?}"),
        }
    }

    /// `check_record` (the read path's check) accepts exactly what `parse_record`
    /// accepts, whole, and `view_checked_record` sees what `parse_record` sees.
    #[test]
    fn check_record_agrees_with_parse_record() {
        for ty in ["Deposited", "Einzahlung\u{e4}\u{df}", "\u{1f600}"] {
            let bytes = encode_record(&RecordedEvent {
                event_id: Uuid::from_u128(9),
                stream_id: Uuid::from_u128(8),
                stream_version: 3,
                global_position: 11,
                recorded_at: 1_700_000_000_000_000,
                event_type: ty.into(),
                metadata: b"{}".to_vec(),
                payload: b"payload bytes".to_vec(),
            })
            .unwrap();
            check_record(&bytes).unwrap();
            assert_eq!(record_global_position(&bytes), 11);
            let parsed = match parse_record(&bytes).unwrap() {
                DecodeOutcome::Complete { value, .. } => value,
                other => panic!("{other:?}"),
            };
            // SAFETY: `check_record` accepted these very bytes.
            let viewed = unsafe { view_checked_record(&bytes) };
            assert_eq!(viewed.to_recorded(), parsed.to_recorded());
            assert_eq!(viewed.event_type, ty);
            assert_eq!(viewed.event_type_with_nul, parsed.event_type_with_nul);
            for i in 0..bytes.len() {
                for mask in [0x01, 0x40, 0x80] {
                    let mut bad = bytes.clone();
                    bad[i] ^= mask;
                    assert!(check_record(&bad).is_err(), "flip {mask:#x} at {i} passed");
                }
            }
            for cut in 0..bytes.len() {
                assert!(check_record(&bytes[..cut]).is_err(), "cut at {cut} passed");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(check_record(&longer).is_err(), "a trailing byte passed");
        }
    }

    /// Each record of a group of four gets exactly `check_record`'s verdict, wherever
    /// in the group the damaged one is, whatever the damage: a flipped bit anywhere
    /// (lengths, CRC, type, payload), a cut, a trailing byte, a type that is not UTF-8
    /// or not NUL-terminated under a valid CRC.
    #[test]
    fn check_records4_gives_each_record_the_verdict_of_check_record() {
        fn group(recs: &[Vec<u8>]) -> [&[u8]; 4] {
            [&recs[0], &recs[1], &recs[2], &recs[3]]
        }
        let sound: Vec<Vec<u8>> = (0..4u64)
            .map(|i| {
                encode_record(&RecordedEvent {
                    event_id: Uuid::from_u128(u128::from(i) + 1),
                    stream_id: Uuid::from_u128(7),
                    stream_version: i,
                    global_position: 100 + i,
                    recorded_at: 1_700_000_000_000_000,
                    event_type: ["Deposited", "W\u{e4}hrung", "A", "Withdrawn"][i as usize].into(),
                    metadata: vec![b'm'; i as usize * 5],
                    payload: vec![i as u8; 40 + 37 * i as usize],
                })
                .unwrap()
            })
            .collect();
        assert_eq!(
            check_records4(group(&sound)),
            [Ok(()), Ok(()), Ok(()), Ok(())]
        );
        let reseal = |b: &mut Vec<u8>| {
            let n = b.len();
            let crc = crc32fast::hash(&b[..n - 4]);
            b[n - 4..].copy_from_slice(&crc.to_le_bytes());
        };
        for k in 0..4 {
            let rec = &sound[k];
            let mut damaged: Vec<Vec<u8>> = Vec::new();
            for i in 0..rec.len() {
                for mask in [0x01, 0x80] {
                    let mut bad = rec.clone();
                    bad[i] ^= mask;
                    damaged.push(bad);
                }
            }
            damaged.push(rec[..rec.len() - 1].to_vec());
            damaged.push(rec[..10].to_vec());
            damaged.push(Vec::new());
            let mut longer = rec.clone();
            longer.push(0);
            damaged.push(longer);
            let mut not_utf8 = rec.clone();
            not_utf8[RECORD_FIXED_LEN] = 0xff;
            reseal(&mut not_utf8);
            damaged.push(not_utf8);
            let mut unterminated = rec.clone();
            let type_len = le_u16(rec, 60) as usize;
            unterminated[RECORD_FIXED_LEN + type_len] = b'x';
            reseal(&mut unterminated);
            damaged.push(unterminated);
            for bad in damaged {
                let mut recs = sound.clone();
                recs[k] = bad;
                let want = group(&recs).map(check_record);
                assert!(want[k].is_err(), "slot {k}: damage passed check_record");
                let got = check_records4(group(&recs));
                assert_eq!(got, want, "slot {k}");
                for (j, verdict) in got.iter().enumerate() {
                    assert_eq!(verdict.is_ok(), j != k, "slot {k}, record {j}: {verdict:?}");
                }
            }
        }
    }

    #[test]
    fn check_record_refuses_a_type_that_is_not_utf8_or_not_terminated() {
        let base = encode_record(&RecordedEvent {
            event_id: Uuid::from_u128(1),
            stream_id: Uuid::from_u128(2),
            stream_version: 0,
            global_position: 0,
            recorded_at: 0,
            event_type: "ab".into(),
            metadata: vec![],
            payload: vec![],
        })
        .unwrap();
        let reseal = |mut b: Vec<u8>| {
            let n = b.len();
            let crc = crc32fast::hash(&b[..n - 4]);
            b[n - 4..].copy_from_slice(&crc.to_le_bytes());
            b
        };
        // Not UTF-8 (a lone continuation byte, an overlong start), with a valid CRC.
        for bad in [0xff, 0x80, 0xc0] {
            let mut b = base.clone();
            b[RECORD_FIXED_LEN] = bad;
            match check_record(&reseal(b)) {
                Err(Damage(detail)) => assert!(detail.contains("UTF-8"), "{detail}"),
                Ok(()) => panic!("type byte {bad:#x} passed"),
            }
        }
        let mut b = base.clone();
        b[RECORD_FIXED_LEN + 2] = b'x';
        match check_record(&reseal(b)) {
            Err(Damage(detail)) => assert!(detail.contains("NUL"), "{detail}"),
            Ok(()) => panic!("an unterminated type passed"),
        }
    }

    #[test]
    fn batch_round_trips_with_placement() {
        let events = [ev("A", b"one"), ev("BB", b""), ev("CCC", &[7; 100])];
        let (bytes, recs) = sealed(99, &events, 1000);
        let info = match parse_batch(&bytes, 99).unwrap() {
            DecodeOutcome::Complete { value, len } => {
                assert_eq!(len, bytes.len());
                value
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(info.header.first_position, 1000);
        assert_eq!(info.header.count, 3);
        assert_eq!(info.header.group_start, 32);
        assert_eq!(info.first_version, 7);
        assert_eq!(info.stream_id, Uuid::from_u128(1));
        let offsets: Vec<(usize, usize)> = info
            .records
            .iter()
            .map(|&(o, l)| (o as usize, l as usize))
            .collect();
        assert_eq!(offsets, recs);
        for (i, &(o, l)) in recs.iter().enumerate() {
            let view = match parse_record(&bytes[o..o + l]).unwrap() {
                DecodeOutcome::Complete { value, .. } => value,
                other => panic!("{other:?}"),
            };
            assert_eq!(view.global_position, 1000 + i as u64);
            assert_eq!(view.stream_version, 7 + i as u64);
            assert_eq!(view.recorded_at, 42);
            assert_eq!(view.event_type, events[i].event_type);
            assert_eq!(view.payload, events[i].payload);
            assert_eq!(view.metadata, b"meta");
            assert_eq!(*view.event_type_with_nul.last().unwrap(), 0);
        }
    }

    #[test]
    fn batch_is_bound_to_its_salt_and_rejects_every_flip_and_cut() {
        let events = [ev("A", b"one"), ev("B", b"two")];
        let (bytes, _) = sealed(1, &events, 0);
        assert!(
            parse_batch(&bytes, 2).is_err(),
            "another file's salt must not check out"
        );
        for cut in 0..bytes.len() {
            assert!(matches!(
                parse_batch(&bytes[..cut], 1),
                Ok(DecodeOutcome::Incomplete { .. }) | Err(_)
            ));
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                !matches!(parse_batch(&bad, 1), Ok(DecodeOutcome::Complete { .. })),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn salted_crc_equals_the_crc_of_salt_then_bytes() {
        for salt in [0u64, 1, 0xdead_beef_0123_4567, 1] {
            for bytes in [&b""[..], b"x", &[7u8; 1000]] {
                let mut h = crc32fast::Hasher::new();
                h.update(&salt.to_le_bytes());
                h.update(bytes);
                assert_eq!(crc_with_salt(salt, bytes), h.finalize());
            }
        }
    }

    #[test]
    fn check_event_enforces_limits() {
        let long_type = "x".repeat(crate::types::MAX_EVENT_TYPE_LEN + 1);
        assert!(matches!(
            check_event(&ev("", b"")),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            check_event(&ev(&long_type, b"")),
            Err(Error::InvalidArgument(_))
        ));
        let max_type = "y".repeat(crate::types::MAX_EVENT_TYPE_LEN);
        assert!(check_event(&ev(&max_type, b"")).is_ok());
        let fits = vec![0u8; MAX_EVENT_SIZE - RECORD_OVERHEAD - 1 - 4];
        assert!(check_event(&ev("A", &fits)).is_ok());
        let over = vec![0u8; MAX_EVENT_SIZE - RECORD_OVERHEAD - 4];
        match check_event(&ev("A", &over)) {
            Err(Error::EventTooLarge { size, max }) => {
                assert_eq!(size, MAX_EVENT_SIZE + 1);
                assert_eq!(max, MAX_EVENT_SIZE);
            }
            other => panic!("{other:?}"),
        }
    }

    fn sealed_multi(parts: &[(Uuid, &[ProposedEventRef<'_>])], versions: &[u64]) -> Vec<u8> {
        let batch = UnsealedBatch::encode_multi(parts).unwrap();
        let header = BatchHeader {
            batch_len: batch.len() as u32,
            first_position: 50,
            count: batch.count(),
            recorded_at: 9,
            group_start: 32,
        };
        let mut out = Vec::new();
        batch.seal_into(&mut out, 3, header, versions, |_, _| {});
        out
    }

    #[test]
    fn multi_stream_batch_round_trips_with_its_runs() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let ea = [ev("A", b"1"), ev("A", b"2")];
        let eb = [ev("B", b"3")];
        let ec = [ev("C", b"4"), ev("C", b"5"), ev("C", b"6")];
        let bytes = sealed_multi(&[(a, &ea), (b, &eb), (c, &ec)], &[0, 10, 4]);
        let info = match parse_batch(&bytes, 3).unwrap() {
            DecodeOutcome::Complete { value, .. } => value,
            other => panic!("{other:?}"),
        };
        assert_eq!(info.header.count, 6);
        let runs: Vec<(Uuid, u64, u32)> = info
            .runs
            .iter()
            .map(|(r, i)| (r.stream_id, r.first_version, *i))
            .collect();
        assert_eq!(runs, vec![(a, 0, 0), (b, 10, 2), (c, 4, 3)]);
        let placed: Vec<(u64, Uuid, u64)> = info
            .records
            .iter()
            .map(|&(o, l)| {
                let v = view_verified_record(&bytes[o as usize..(o + l) as usize]);
                (v.global_position, v.stream_id, v.stream_version)
            })
            .collect();
        assert_eq!(
            placed,
            vec![
                (50, a, 0),
                (51, a, 1),
                (52, b, 10),
                (53, c, 4),
                (54, c, 5),
                (55, c, 6)
            ]
        );
        let batch = UnsealedBatch::encode_multi(&[(a, &ea), (b, &eb)]).unwrap();
        assert_eq!(batch.parts(), &[2, 1]);
        let ids: Vec<Uuid> = batch.record_ids().map(|(s, _)| s).collect();
        assert_eq!(ids, vec![a, a, b]);
    }

    #[test]
    fn a_stream_that_returns_within_a_batch_is_damage() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let one = [ev("A", b"1")];
        let bytes = sealed_multi(&[(a, &one), (b, &one), (a, &one)], &[0, 0, 1]);
        match parse_batch(&bytes, 3) {
            Err(Damage(d)) => assert!(d.contains("contiguous"), "{d}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn version_one_and_two_headers_are_read_and_others_refused() {
        for v in [FORMAT_VERSION_1, FORMAT_VERSION] {
            let h = encode_file_header_version(77, v);
            assert_eq!(decode_file_header_version(&h).unwrap(), (77, v));
            assert!(is_interrupted_creation(&h[..7]));
        }
        assert_eq!(encode_file_header(1)[6], 2, "new stores are version 2");
        for v in [0u16, 3, 0x100] {
            let h = encode_file_header_version(77, v);
            assert!(matches!(
                decode_file_header_version(&h),
                Err(Error::InvalidHeader { .. })
            ));
        }
    }

    #[test]
    fn a_torn_rewrite_from_version_1_to_2_is_recognised() {
        let old = encode_file_header_version(0xabcd, FORMAT_VERSION_1);
        let new = encode_file_header_version(0xabcd, FORMAT_VERSION);
        for t in 1..FILE_HEADER_LEN {
            let mut torn = old;
            torn[..t].copy_from_slice(&new[..t]);
            if decode_file_header_version(&torn).is_err() {
                assert_eq!(torn_upgrade(&torn), Some(0xabcd), "torn at {t}");
            }
            // Blocks may land in any order: the old CRC with the new version, too.
            let mut mixed = new;
            mixed[t] = old[t];
            if decode_file_header_version(&mixed).is_err() {
                assert_eq!(torn_upgrade(&mixed), Some(0xabcd), "mixed at {t}");
            }
        }
        // Any other damage is not a torn upgrade.
        let mut bad = new;
        bad[29] ^= 0x10;
        assert_eq!(torn_upgrade(&bad), None);
        let mut bad = old;
        bad[28..].copy_from_slice(&new[28..]);
        bad[9] ^= 1;
        assert_eq!(torn_upgrade(&bad), None);
        assert_eq!(torn_upgrade(&new[..20]), None);
    }
}
