//! The index on disk (`<path>-index`, issue 14): derived data next to the log, so that
//! opening a store costs what was appended since the last checkpoint, and memory stays
//! bounded whatever the log's size. See `docs/design.md` ("The index on disk") and
//! `docs/format.md` ("The index file") for the layout.
//!
//! - `format.rs`: the bytes (pages, header, manifest, Bloom hashing);
//! - `cache.rs`: reading pages through `pread` into a bounded cache;
//! - `segment.rs`: lookups in one segment;
//! - this module: writing segments and manifests, and binding a manifest to the log
//!   at open;
//! - `checkpoint.rs`: the writer's background thread.

pub mod cache;
pub mod checkpoint;
pub mod format;
pub mod segment;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use self::cache::IndexFile;
use self::format::{Kind, Manifest, SegmentMeta, StreamRow, PAGE, PAYLOAD};
use self::segment::Segment;
use crate::codec::{self, DecodeOutcome, BATCH_HEADER_LEN, COMMIT_MAGIC, FILE_HEADER_LEN};
use crate::error::Error;
use crate::store::ids::IdKeys;
use crate::store::index::{Delta, Index, LogSource, Part, StreamMeta, NO_ID};
use crate::store::io::{read_exact_at, StorageFile};
use crate::store::types_table::TypeTable;

/// The path of the index file of the store at `path`.
pub fn index_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-index");
    PathBuf::from(p)
}

/// The store whose index file is `index` (the inverse of [`index_path`]).
fn store_of(index: &Path) -> PathBuf {
    let name = index.as_os_str().as_encoded_bytes();
    let stem = name.strip_suffix(b"-index").unwrap_or(name);
    // SAFETY: cutting an ASCII suffix off encoded bytes leaves valid encoded bytes.
    PathBuf::from(unsafe { std::ffi::OsStr::from_encoded_bytes_unchecked(stem) })
}

/// Whether the file at `path` may be removed or replaced by an index file: nothing is
/// there, or an index file (its magic, or zeros in its place), an empty file, or no
/// regular file (a FIFO, a
/// symbolic link: removing or renaming over them touches no data). Anything else is
/// someone's data under our name (a store the user called `<store>-index`) and is
/// refused (`InvalidArgument`; the writer then runs without an index file).
pub(crate) fn replaceable(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(()),
        Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
    if !meta.is_file() || meta.len() == 0 {
        return Ok(());
    }
    let mut head = [0u8; 8];
    let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0).unwrap_or(0);
    // An index file's magic, or zeros where it was (a lost or zeroed first page).
    if n == head.len() && (head == format::MAGIC || head == [0; 8]) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "{} is not an index file (another store of that name?): it is left untouched, and \
         this store keeps no index file there",
        path.display()
    )))
}

/// `<path>-index.tmp`, where a new index file is written before it is renamed over.
fn tmp_of(index: &Path) -> PathBuf {
    let mut p = index.as_os_str().to_owned();
    p.push(".tmp");
    PathBuf::from(p)
}

/// Appends sealed pages to an index file, in pieces of at most 1 MiB.
struct PageWriter<'a> {
    file: &'a File,
    salt: u64,
    /// Offset of the next page.
    at: u64,
    buf: Vec<u8>,
    /// Offset of the first page in `buf`.
    buf_at: u64,
}

const FLUSH: usize = 1 << 20;

impl<'a> PageWriter<'a> {
    fn new(file: &'a File, salt: u64, at: u64) -> Self {
        PageWriter {
            file,
            salt,
            at,
            buf: Vec::with_capacity(FLUSH),
            buf_at: at,
        }
    }

    /// Appends one page; `fill` writes its payload. Returns its offset.
    fn page(&mut self, kind: Kind, fill: impl FnOnce(&mut [u8])) -> Result<u64, Error> {
        let start = self.buf.len();
        self.buf.resize(start + PAGE, 0);
        fill(&mut self.buf[start..start + PAYLOAD]);
        let offset = self.at;
        format::seal(&mut self.buf[start..], kind, self.salt, offset);
        self.at += PAGE as u64;
        if self.buf.len() >= FLUSH {
            self.flush()?;
        }
        Ok(offset)
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        debug_assert_eq!(bytes.len() % PAGE, 0);
        self.buf.extend_from_slice(bytes);
        self.at += bytes.len() as u64;
        self.flush()
    }

    fn flush(&mut self) -> Result<(), Error> {
        if !self.buf.is_empty() {
            self.file
                .write_all_at(&self.buf, self.buf_at)
                .map_err(|e| {
                    Error::io(
                        format!("write the index file at byte offset {}", self.buf_at),
                        e,
                    )
                })?;
        }
        self.buf.clear();
        self.buf_at = self.at;
        Ok(())
    }

    /// Writes a column of `n` fixed-size entries, `per` to a page.
    fn column(
        &mut self,
        kind: Kind,
        n: u64,
        per: u64,
        size: usize,
        mut put: impl FnMut(u64, &mut [u8]),
    ) -> Result<u64, Error> {
        if n == 0 {
            return Ok(0);
        }
        let first = self.at;
        let mut i = 0;
        while i < n {
            let k = per.min(n - i);
            self.page(kind, |p| {
                for j in 0..k {
                    put(i + j, &mut p[j as usize * size..(j as usize + 1) * size]);
                }
            })?;
            i += k;
        }
        Ok(first)
    }
}

/// The id hashes of a part that dropped them: its records' ids read back from the log
/// (in spans of up to 8 MiB; only the 16 id bytes of each record are looked at: the
/// records were verified when scanned).
fn read_id_hashes(log: &LogSource, d: &Delta) -> Result<Vec<u64>, Error> {
    const SPAN: u64 = 8 << 20;
    let keys = d.ids.keys();
    let mut out = Vec::with_capacity(d.records.len());
    let mut buf = Vec::new();
    let mut i = 0;
    while i < d.records.len() {
        let start = d.records[i].offset();
        let mut j = i + 1;
        while j < d.records.len() && d.records[j].end() - start <= SPAN {
            j += 1;
        }
        let stop = d.records[j - 1].end();
        buf.resize((stop - start) as usize, 0);
        read_exact_at(&log.file, &mut buf, start).map_err(|e| {
            Error::io(
                format!("read the log at byte offset {start} for the index's id filter"),
                e,
            )
        })?;
        for r in &d.records[i..j] {
            let at = (r.offset() - start) as usize + 44;
            let id = uuid::Uuid::from_bytes(buf[at..at + 16].try_into().expect("16 bytes"));
            out.push(keys.hash(&id));
        }
        i = j;
    }
    Ok(out)
}

/// Writes the columns of `d` as a segment; returns where they lie.
fn write_segment(w: &mut PageWriter<'_>, d: &Delta, log: &LogSource) -> Result<SegmentMeta, Error> {
    let n = d.len();
    let locations = w.column(Kind::Locations, n, format::LOCATIONS_PER_PAGE, 8, |i, b| {
        b.copy_from_slice(&d.records[i as usize].raw().to_le_bytes())
    })?;
    let types = w.column(Kind::Types, n, format::TYPES_PER_PAGE, 4, |i, b| {
        b.copy_from_slice(&d.types[i as usize].to_le_bytes())
    })?;
    let streams = d.sorted_streams();
    // Entries in stream-number order: (stream index, entry index) flattened.
    let mut starts = Vec::with_capacity(streams.len());
    let mut total = 0u64;
    for s in &streams {
        starts.push(total);
        total += s.positions.len() as u64;
    }
    debug_assert_eq!(total, n);
    let mut cursor = (0usize, 0usize);
    let entries = w.column(
        Kind::Entries,
        n,
        format::ENTRIES_PER_PAGE,
        format::ENTRY_LEN,
        |_, b| {
            while cursor.1 >= streams[cursor.0].positions.len() {
                cursor = (cursor.0 + 1, 0);
            }
            let p = streams[cursor.0].positions[cursor.1];
            cursor.1 += 1;
            let i = (p - d.base) as usize;
            b[0..4].copy_from_slice(&((p - d.base) as u32).to_le_bytes());
            b[4..8].copy_from_slice(&d.types[i].to_le_bytes());
            b[8..16].copy_from_slice(&d.records[i].raw().to_le_bytes());
        },
    )?;
    let dir_entries = streams.len() as u64;
    let directory = w.column(
        Kind::Directory,
        dir_entries,
        format::DIR_PER_PAGE,
        format::DIR_LEN,
        |k, b| {
            let s = streams[k as usize];
            b[0..4].copy_from_slice(&s.number.to_le_bytes());
            b[8..16].copy_from_slice(&s.first_version.to_le_bytes());
            b[16..24].copy_from_slice(&(s.positions.len() as u64).to_le_bytes());
            b[24..32].copy_from_slice(&starts[k as usize].to_le_bytes());
        },
    )?;
    let slots = d.ids.slots();
    let id_capacity = slots.len() as u64;
    let ids = w.column(
        Kind::IdSlots,
        id_capacity,
        format::SLOTS_PER_PAGE,
        8,
        |i, b| b.copy_from_slice(&slots[i as usize].to_le_bytes()),
    )?;
    let bloom_blocks = format::bloom_blocks(n);
    let mut filter = vec![0u8; bloom_blocks as usize * format::BLOCK_LEN];
    let read_back;
    let hashes = if d.hashes_dropped {
        read_back = read_id_hashes(log, d)?;
        &read_back
    } else {
        &d.id_hashes
    };
    for &h in hashes {
        if h != NO_ID {
            format::bloom_add(&mut filter, bloom_blocks, h);
        }
    }
    let bloom = w.column(
        Kind::Bloom,
        bloom_blocks,
        format::BLOCKS_PER_PAGE,
        format::BLOCK_LEN,
        |k, b| {
            let at = k as usize * format::BLOCK_LEN;
            b.copy_from_slice(&filter[at..at + format::BLOCK_LEN])
        },
    )?;
    Ok(SegmentMeta {
        first: d.base,
        count: n,
        log_start: d.log_start,
        log_end: d.log_end(),
        dir_entries,
        id_capacity,
        bloom_blocks,
        locations,
        types,
        entries,
        directory,
        ids,
        bloom,
    })
}

/// A file at least this large is rewritten when more than half of it is dead.
const REWRITE_MIN: u64 = 64 << 10;

/// Copies a segment's pages (each checked) into the file being written; returns
/// where its columns lie there.
fn copy_segment(w: &mut PageWriter<'_>, s: &Segment) -> Result<SegmentMeta, Error> {
    let kinds = [
        Kind::Locations,
        Kind::Types,
        Kind::Entries,
        Kind::Directory,
        Kind::IdSlots,
        Kind::Bloom,
    ];
    let mut at = [0u64; 6];
    for (k, ((first, pages), kind)) in s.meta.columns().into_iter().zip(kinds).enumerate() {
        for i in 0..pages {
            let page = s.file.page(first + i * PAGE as u64, kind)?;
            let offset = w.page(kind, |p| p.copy_from_slice(&page[..PAYLOAD]))?;
            if i == 0 {
                at[k] = offset;
            }
        }
    }
    Ok(SegmentMeta {
        locations: at[0],
        types: at[1],
        entries: at[2],
        directory: at[3],
        ids: at[4],
        bloom: at[5],
        ..s.meta
    })
}

/// The writer's side of the index file: where the next pages go.
pub(crate) struct IndexWriter {
    path: PathBuf,
    salt: u64,
    keys: IdKeys,
    /// The file bound at open (or last written); `None`: the next checkpoint makes a
    /// new file.
    file: Option<(File, Arc<IndexFile>)>,
    end: u64,
    sequence: u64,
    /// The last manifest written or bound: (covered offset, last batch start, its CRC).
    last: Option<(u64, u64, u32)>,
    /// A rewrite of the file failed (a live page unreadable): the checkpoints of this
    /// handle append to the file as it is instead.
    no_rewrite: bool,
}

impl IndexWriter {
    /// For a store whose index did not bind: the first checkpoint writes a new file.
    pub fn fresh(path: &Path, salt: u64, keys: IdKeys) -> IndexWriter {
        IndexWriter {
            path: index_path(path),
            salt,
            keys,
            file: None,
            end: 0,
            sequence: 0,
            last: None,
            no_rewrite: false,
        }
    }
}

/// Reads the 44-byte header of the batch that starts at `start` and its trailer's CRC,
/// checking that it is a batch of this log ending at `covered` after position `events`.
fn covered_batch(
    log: &dyn StorageFile,
    salt: u64,
    start: u64,
    covered: u64,
    events: u64,
) -> Result<(codec::BatchHeader, u32), String> {
    if start < FILE_HEADER_LEN as u64 || covered < start + 52 {
        return Err("covered batch out of range".into());
    }
    let mut head = [0u8; BATCH_HEADER_LEN];
    read_exact_at(log, &mut head, start).map_err(|e| format!("read the log: {e}"))?;
    let header = match codec::check_batch_header(&head, &codec::SaltedCrc::new(salt)) {
        Ok(DecodeOutcome::Complete { value, .. }) => value.0,
        _ => return Err(format!("no batch of this log at byte offset {start}")),
    };
    if start + u64::from(header.batch_len) != covered
        || header.first_position + u64::from(header.count) != events
    {
        return Err("the batch there does not end where the index says".into());
    }
    let mut tail = [0u8; 8];
    read_exact_at(log, &mut tail, covered - 8).map_err(|e| format!("read the log: {e}"))?;
    if tail[..4] != COMMIT_MAGIC {
        return Err("no commit marker where the covered batch ends".into());
    }
    Ok((
        header,
        u32::from_le_bytes(tail[4..8].try_into().expect("4 bytes")),
    ))
}

/// Writes a checkpoint of `frozen` (its in-memory and rebuilt parts as new segments,
/// then a manifest listing every part), synced; returns the segments written, to be
/// installed in the index in place of the parts they came from.
pub(crate) fn write_checkpoint(
    w: &mut IndexWriter,
    log: &LogSource,
    frozen: &crate::store::index::Frozen,
) -> Result<Vec<Written>, Error> {
    let fail = |why: String| Error::io(why, std::io::Error::other("index checkpoint"));
    let last_batch_start = match frozen.last_batch_start {
        Some(s) => s,
        None => match w.last {
            Some((covered, start, _)) if covered == frozen.covered => start,
            _ => return Ok(Vec::new()),
        },
    };
    let (_, crc) = covered_batch(
        &log.file,
        w.salt,
        last_batch_start,
        frozen.covered,
        frozen.events,
    )
    .map_err(|why| fail(format!("checkpoint of the index: {why}")))?;
    // More than half of the file dead (merged-away segments, old manifests): write
    // the live segments and the new ones to a new file, renamed over this one.
    let mut replaced = None;
    if w.file.is_some() && w.end >= REWRITE_MIN && !w.no_rewrite {
        let live: u64 = frozen
            .parts
            .iter()
            .map(|p| match p {
                Part::Disk(s) => s.meta.columns().iter().map(|c| c.1).sum::<u64>(),
                Part::Mem(d) => d.len() / 50,
            })
            .sum::<u64>()
            * PAGE as u64;
        if w.end > 2 * (live + 2 * PAGE as u64) {
            replaced = w.file.take().map(|f| (f, w.end, w.sequence));
        }
    }
    let fresh = w.file.is_none();
    if fresh {
        let tmp = tmp_of(&w.path);
        // Another store named `<this store>-index` (or `.tmp`) is never replaced.
        replaceable(&tmp)?;
        replaceable(&w.path)?;
        // A new file, never whatever lies at the path (a FIFO would block the writes
        // and, through them, `close`; a symlink would be followed).
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(format!("remove {}", tmp.display()), e))
            }
            _ => {}
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
        // The index holds stream and event ids: it gets the store's permissions, not
        // the umask's (a 0600 store must not get a world-readable index).
        if let Ok(meta) = std::fs::metadata(store_of(&w.path)) {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o666;
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io(format!("set the permissions of {}", tmp.display()), e))?;
        }
        file.write_all_at(&format::header_page(w.salt, w.keys), 0)
            .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        let reader = file
            .try_clone()
            .map_err(|e| Error::io(format!("duplicate the handle of {}", tmp.display()), e))?;
        w.file = Some((file, Arc::new(IndexFile::new(reader, w.salt))));
        w.end = PAGE as u64;
        w.sequence = 0;
    }
    let result = write_parts(w, log, frozen, last_batch_start, crc);
    if fresh {
        let tmp = tmp_of(&w.path);
        let renamed = result.as_ref().map_err(|e| e.duplicate()).and_then(|_| {
            std::fs::rename(&tmp, &w.path).map_err(|e| {
                Error::io(
                    format!("rename {} over {}", tmp.display(), w.path.display()),
                    e,
                )
            })?;
            let dir = match w.path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            crate::store::io::sync_dir(dir)
                .map_err(|e| Error::io(format!("fsync directory {}", dir.display()), e))
        });
        if let Err(e) = renamed {
            let _ = std::fs::remove_file(&tmp);
            w.file = None;
            if let Some((file, end, sequence)) = replaced {
                // The rewrite copies the live segments' pages, each checked: one that
                // rotted fails it, and would fail every later one alike, so that the
                // index would stop following the log. Append to the file as it is
                // (the bad page is rebuilt from the log when a read meets it).
                crate::log::log(
                    crate::log::Level::Warn,
                    &format!(
                        "rewriting the index file {} failed ({e}); appending to it instead",
                        w.path.display()
                    ),
                );
                w.file = Some(file);
                w.end = end;
                w.sequence = sequence;
                w.no_rewrite = true;
                return write_parts(w, log, frozen, last_batch_start, crc);
            }
            return Err(e);
        }
    }
    result
}

fn write_parts(
    w: &mut IndexWriter,
    log: &LogSource,
    frozen: &crate::store::index::Frozen,
    last_batch_start: u64,
    crc: u32,
) -> Result<Vec<Written>, Error> {
    let (file, reader) = w.file.as_ref().expect("opened above");
    let reader = Arc::clone(reader);
    let type_count = frozen.types.len() as u32;
    let mut pw = PageWriter::new(file, w.salt, w.end);
    let mut metas = Vec::with_capacity(frozen.parts.len());
    let mut written = Vec::new();
    for part in &frozen.parts {
        let mem = match part {
            Part::Mem(d) => Some(Arc::clone(d)),
            Part::Disk(s) if !Arc::ptr_eq(&s.file, &reader) && s.rebuilt.get().is_none() => {
                // A segment of the file being replaced: its pages, checked, copied.
                let meta = copy_segment(&mut pw, s)?;
                metas.push(meta);
                written.push((
                    vec![part.clone()],
                    Arc::new(Segment::new(meta, Arc::clone(&reader), type_count)),
                ));
                continue;
            }
            Part::Disk(s) => s.rebuilt.get().cloned(),
        };
        match mem {
            Some(d) => {
                let meta = write_segment(&mut pw, &d, log)?;
                metas.push(meta);
                let from = frozen
                    .merged
                    .iter()
                    .find(|(m, _)| Arc::ptr_eq(m, &d))
                    .map_or_else(|| vec![part.clone()], |(_, old)| old.clone());
                written.push((
                    from,
                    Arc::new(Segment::new(meta, Arc::clone(&reader), type_count)),
                ));
            }
            None => match part {
                Part::Disk(s) => metas.push(s.meta),
                Part::Mem(_) => unreachable!("handled above"),
            },
        }
    }
    pw.flush()?;
    file.sync_data()
        .map_err(|e| Error::io(format!("fdatasync {}", w.path.display()), e))?;
    let manifest = Manifest {
        sequence: w.sequence + 1,
        salt: w.salt,
        covered: frozen.covered,
        last_batch_start,
        last_batch_crc: crc,
        events: frozen.events,
        segments: metas,
        types: frozen.types.clone(),
        streams: frozen
            .streams
            .iter()
            .map(|s| StreamRow {
                id: s.id,
                count: s.count,
                first: s.first,
                last: s.last,
            })
            .collect(),
    };
    let at = pw.at;
    pw.raw(&manifest.encode(at))?;
    file.sync_data()
        .map_err(|e| Error::io(format!("fdatasync {}", w.path.display()), e))?;
    w.end = pw.at;
    w.sequence += 1;
    w.last = Some((frozen.covered, last_batch_start, crc));
    Ok(written)
}

/// A segment written, and the parts of the index it replaces (one, or the adjacent
/// segments a merge joined).
pub(crate) type Written = (Vec<Part>, Arc<Segment>);

/// An index bound to the log at open.
pub(crate) struct Loaded {
    pub index: Index,
    /// The log offset the index covers (a batch end), and the `group_start` of the
    /// batch that ends there (the tail scan's judgement needs it).
    pub covered: u64,
    pub last_group: u64,
    /// For the writer: where checkpoints go on.
    pub writer: Option<IndexWriter>,
}

/// Opens the index file, refusing anything but a regular file: `O_NONBLOCK`, so that a
/// FIFO put at its path cannot hang the open (a read-only open of a FIFO waits for a
/// writer), and a device or directory is never read as an index.
fn open_regular(ipath: &Path, writable: bool) -> Result<File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .write(writable)
        .custom_flags(libc::O_NONBLOCK)
        .open(ipath)
        .map_err(|e| format!("{}: {e}", ipath.display()))?;
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(file),
        Ok(_) => Err(format!("{} is not a regular file", ipath.display())),
        Err(e) => Err(format!("{}: {e}", ipath.display())),
    }
}

/// Opens `<path>-index` and binds its last valid manifest to the log; `None` (and the
/// reason, for a debug log) when there is no usable index: the caller scans the whole
/// log. `writable`: the writer's open (the file is opened read-write to append to it;
/// a read-only handle opens it read-only and never writes it).
pub(crate) fn load(
    path: &Path,
    log: &dyn StorageFile,
    log_len: u64,
    salt: u64,
    source: Arc<LogSource>,
    writable: bool,
) -> Result<Loaded, String> {
    let ipath = index_path(path);
    let file = open_regular(&ipath, writable)?;
    let reader = file
        .try_clone()
        .map_err(|e| format!("duplicate the handle of {}: {e}", ipath.display()))?;
    let ix = Arc::new(IndexFile::new(reader, salt));
    let len = ix.len().map_err(|e| e.to_string())?;
    if len < 2 * PAGE as u64 {
        return Err("the index file holds no manifest".into());
    }
    let mut page = vec![0u8; PAGE];
    ix.read_raw(&mut page, 0).map_err(|e| e.to_string())?;
    let keys = format::read_header_page(&page, salt)?;
    // From the last whole page backwards, in pieces of 256 pages.
    const STEP: u64 = 256;
    let pages = len / PAGE as u64;
    let mut hi = pages;
    let mut buf = Vec::new();
    let mut why = String::from("no manifest checks out");
    while hi > 1 {
        let lo = hi.saturating_sub(STEP).max(1);
        buf.resize(((hi - lo) * PAGE as u64) as usize, 0);
        ix.read_raw(&mut buf, lo * PAGE as u64)
            .map_err(|e| e.to_string())?;
        for k in (lo..hi).rev() {
            let at = k * PAGE as u64;
            let p = &buf[((k - lo) * PAGE as u64) as usize..((k - lo + 1) * PAGE as u64) as usize];
            if format::check(p, Kind::Manifest, salt, at).is_err() {
                continue;
            }
            match try_manifest(&ix, p, at, len, log, log_len, salt) {
                Ok((m, header)) => {
                    return Ok(bind(
                        m, header, keys, ix, file, ipath, source, writable, len,
                    ))
                }
                Err(w) => why = w,
            }
        }
        hi = lo;
    }
    Err(why)
}

fn try_manifest(
    ix: &IndexFile,
    first: &[u8],
    at: u64,
    len: u64,
    log: &dyn StorageFile,
    log_len: u64,
    salt: u64,
) -> Result<(Manifest, codec::BatchHeader), String> {
    let n = Manifest::pages_announced(first);
    if n > (len - at) / PAGE as u64 {
        return Err(format!("the manifest at byte offset {at} is torn"));
    }
    let mut pages = vec![0u8; (n * PAGE as u64) as usize];
    ix.read_raw(&mut pages, at).map_err(|e| e.to_string())?;
    for k in 0..n as usize {
        let kind = if k == 0 {
            Kind::Manifest
        } else {
            Kind::ManifestMore
        };
        format::check(
            &pages[k * PAGE..(k + 1) * PAGE],
            kind,
            salt,
            at + (k * PAGE) as u64,
        )?;
    }
    let m = Manifest::decode(&pages)
        .ok_or_else(|| format!("the manifest at byte offset {at} does not parse"))?;
    if m.salt != salt {
        return Err("the manifest belongs to another store".into());
    }
    if m.covered > log_len || m.events == 0 {
        return Err(format!(
            "the manifest covers {} bytes of a log of {log_len} (stale index)",
            m.covered
        ));
    }
    let (header, crc) = covered_batch(log, salt, m.last_batch_start, m.covered, m.events)
        .map_err(|w| format!("the manifest does not bind to the log: {w}"))?;
    if crc != m.last_batch_crc {
        return Err("the covered batch's CRC differs (stale or foreign index)".into());
    }
    // Segments tile the covered positions and bytes, and lie before the manifest.
    let (mut pos, mut off) = (0u64, FILE_HEADER_LEN as u64);
    for s in &m.segments {
        if s.first != pos
            || s.log_start != off
            || s.count == 0
            || s.log_end <= s.log_start
            || s.dir_entries == 0
            || s.dir_entries > s.count
            || s.id_capacity <= s.count
            || s.bloom_blocks != format::bloom_blocks(s.count)
            || s.count > m.events
        {
            return Err("the manifest's segments do not tile the log".into());
        }
        for (col, n) in s.columns() {
            if n > 0
                && (col % PAGE as u64 != 0
                    || col < PAGE as u64
                    || col.saturating_add(n.saturating_mul(PAGE as u64)) > at)
            {
                return Err("a segment column lies outside the file".into());
            }
        }
        pos = pos.saturating_add(s.count);
        off = s.log_end;
    }
    if pos != m.events || off != m.covered {
        return Err("the manifest's segments do not cover what it says".into());
    }
    let mut total = 0u64;
    let mut seen = std::collections::HashSet::with_capacity(m.streams.len());
    for s in &m.streams {
        if s.count == 0
            || s.first > s.last
            || s.last >= m.events
            || s.count > s.last - s.first + 1
            || !seen.insert(s.id)
        {
            return Err("the manifest's stream table is inconsistent".into());
        }
        total = total.saturating_add(s.count);
    }
    if total != m.events {
        return Err("the manifest's stream counts do not add up".into());
    }
    Ok((m, header))
}

/// Before open cuts the log at `cut` (a torn tail by the recovery rules): whether the
/// index file proves that bytes from `cut` on were acknowledged. A manifest (a valid
/// page of this log's salt: making one takes the salt) that covers more than `cut`
/// records that its covered batch was synced and acknowledged; when that batch is
/// still in the log past the cut, by its own bytes (the commit marker and batch CRC
/// the manifest names, anywhere from `cut` on, or its header at its place), the
/// damage lies in acknowledged data and is not a torn write, however the recovery
/// rules would judge it without the index: the caller must refuse to cut. A manifest
/// whose batch is nowhere in the log proves nothing (a log restored from an older
/// copy beside a newer index file). Returns the reason, to be named in the error.
///
/// Cheap on the usual path (a crash's torn tail or preallocated zeros): the last
/// manifest then covers at most `cut`, and the walk stops there.
pub(crate) fn acknowledged_past(
    path: &Path,
    log: &dyn StorageFile,
    log_len: u64,
    salt: u64,
    cut: u64,
) -> Option<String> {
    let ipath = index_path(path);
    let file = open_regular(&ipath, false).ok()?;
    let len = file.metadata().ok()?.len();
    let pages = len / PAGE as u64;
    let seed = codec::SaltedCrc::new(salt);
    let proof = |sequence: u64, covered: u64, events: u64, found: String| {
        format!(
            "the index file {} (manifest {sequence}) shows the log acknowledged up to byte \
             offset {covered} ({events} events), and {found}",
            ipath.display()
        )
    };
    // The manifests covering more than the cut, newest first: (sequence, covered,
    // events, batch CRC). Their headers are checked as they are met, their trailers
    // searched for afterwards in one pass over the log.
    let mut trailers: Vec<(u64, u64, u64, u32)> = Vec::new();
    const STEP: u64 = 256;
    let mut buf = Vec::new();
    let mut hi = pages;
    'walk: while hi > 1 {
        let lo = hi.saturating_sub(STEP).max(1);
        buf.resize(((hi - lo) * PAGE as u64) as usize, 0);
        file.read_exact_at(&mut buf, lo * PAGE as u64).ok()?;
        for k in (lo..hi).rev() {
            let at = k * PAGE as u64;
            let p = &buf[((k - lo) * PAGE as u64) as usize..((k - lo + 1) * PAGE as u64) as usize];
            if format::check(p, Kind::Manifest, salt, at).is_err() || format::le_u64(p, 16) != salt
            {
                continue;
            }
            let sequence = format::le_u64(p, 8);
            let covered = format::le_u64(p, 24);
            let start = format::le_u64(p, 32);
            let crc = u32::from_le_bytes(p[40..44].try_into().expect("4 bytes"));
            let events = format::le_u64(p, 48);
            if covered <= cut {
                // Manifests are written in log order: the earlier ones cover less.
                break 'walk;
            }
            if start < FILE_HEADER_LEN as u64 || covered < start + 52 {
                continue;
            }
            // The batch's header at its place.
            if start >= cut && start + BATCH_HEADER_LEN as u64 <= log_len {
                let mut head = [0u8; BATCH_HEADER_LEN];
                if read_exact_at(log, &mut head, start).is_ok() {
                    if let Ok(DecodeOutcome::Complete { value, .. }) =
                        codec::check_batch_header(&head, &seed)
                    {
                        let h = value.0;
                        if start + u64::from(h.batch_len) == covered
                            && h.first_position + u64::from(h.count) == events
                        {
                            let found = format!(
                                "the header of its last batch is still at byte offset {start}"
                            );
                            return Some(proof(sequence, covered, events, found));
                        }
                    }
                }
            }
            if trailers.len() < 64 {
                trailers.push((sequence, covered, events, crc));
            }
        }
        hi = lo;
    }
    if trailers.is_empty() {
        return None;
    }
    // Each batch's commit marker and CRC, wherever it now lies past the cut: one pass
    // over the rest of the log in pieces (never all of it in memory).
    const PIECE: u64 = 1 << 20;
    let mut piece = Vec::new();
    let mut at = cut;
    while at + 8 <= log_len {
        let n = PIECE.min(log_len - at);
        piece.resize(n as usize, 0);
        read_exact_at(log, &mut piece, at).ok()?;
        for (i, w) in piece.windows(8).enumerate() {
            if w[..4] != COMMIT_MAGIC {
                continue;
            }
            let crc = u32::from_le_bytes(w[4..8].try_into().expect("4 bytes"));
            if let Some(&(sequence, covered, events, _)) = trailers.iter().find(|t| t.3 == crc) {
                let found = format!(
                    "the commit marker and batch CRC of its last batch are still in the log, \
                     at byte offset {}",
                    at + i as u64
                );
                return Some(proof(sequence, covered, events, found));
            }
        }
        if at + n >= log_len {
            break;
        }
        // The next piece overlaps this one by 7 bytes: no trailer falls between.
        at += n - 7;
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn bind(
    m: Manifest,
    header: codec::BatchHeader,
    keys: IdKeys,
    ix: Arc<IndexFile>,
    file: File,
    ipath: PathBuf,
    source: Arc<LogSource>,
    writable: bool,
    len: u64,
) -> Loaded {
    let type_count = m.types.len() as u32;
    let parts = m
        .segments
        .iter()
        .map(|&meta| Part::Disk(Arc::new(Segment::new(meta, Arc::clone(&ix), type_count))))
        .collect();
    let streams = m
        .streams
        .iter()
        .map(|s| StreamMeta {
            id: s.id,
            count: s.count,
            first: s.first,
            last: s.last,
        })
        .collect();
    let index = Index::from_parts(
        keys,
        streams,
        TypeTable::from_names(m.types.clone()),
        parts,
        (m.events, m.covered),
        Some(source),
    );
    let writer = writable.then(|| IndexWriter {
        path: ipath,
        salt: m.salt,
        keys,
        file: Some((file, ix)),
        end: len.next_multiple_of(PAGE as u64),
        sequence: m.sequence,
        last: Some((m.covered, m.last_batch_start, m.last_batch_crc)),
        no_rewrite: false,
    });
    Loaded {
        index,
        covered: m.covered,
        last_group: header.group_start,
        writer,
    }
}
