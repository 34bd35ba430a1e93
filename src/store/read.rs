//! The read path: index locations → as few `pread`s as the layout allows → records
//! verified into one buffer the caller owns.

use std::path::Path;

use crate::codec::{self, RecordView};
use crate::error::Error;
use crate::store::index::RecordLocation;
use crate::store::io::{read_exact_at, StorageFile};
use crate::store::types_table::Filter;
use crate::types::RecordedEvent;
use uuid::Uuid;

/// Records closer than this in the file are fetched by one read, gap included.
const MAX_GAP: u64 = 4096;
/// The same for the matches of a filtered read, which must not read the events it
/// discards (issue 10, rule 5): a gap this short holds no byte of a record (every
/// record is at least `RECORD_OVERHEAD` bytes long), only batch framing, e.g. between
/// matches in consecutive single-event batches. Wider gaps would not pay either:
/// measured here (page cache, 373-byte records), one read of two records with 1 KiB
/// between them costs about what two reads do, with 4 KiB or more it costs more.
const FILTERED_MAX_GAP: u64 = crate::types::RECORD_OVERHEAD as u64 - 1;
/// Upper bound for one read.
const MAX_SPAN: u64 = 1 << 30;

/// Events read from the store: their records in one buffer, verified (checksum,
/// position, UTF-8 type) when read. Owns its memory; independent of the store.
#[derive(Debug, Default)]
pub struct EventBatch {
    buf: Vec<u8>,
    /// Start and length of each record in `buf`.
    records: Vec<(usize, usize)>,
    /// Scratch space of `read_records` (the spans of the file to read), kept so that
    /// a batch read into again allocates nothing.
    spans: Vec<(u64, u64, usize)>,
}

impl EventBatch {
    #[inline]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Reverses the order of the events (for backward reads).
    pub fn reverse(&mut self) {
        self.records.reverse();
    }

    /// Empties the batch, keeping its memory for the next `*_batch_into` read.
    pub fn clear(&mut self) {
        self.records.clear();
    }

    /// The `i`th event, borrowing from the batch.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    #[inline(always)]
    pub fn get(&self, i: usize) -> RecordView<'_> {
        let (at, len) = self.records[i];
        // SAFETY: `records` only ever lists records that `verify` accepted (see
        // `read_records`, the one place that fills it), and `buf` is not written while
        // they are listed: the fields are private and nothing else writes them.
        unsafe { codec::view_checked_record(&self.buf[at..at + len]) }
    }

    #[inline]
    pub fn iter(&self) -> EventBatchIter<'_> {
        EventBatchIter {
            batch: self,
            next: 0,
        }
    }

    /// Owned copies of every event.
    pub fn to_recorded(&self) -> Vec<RecordedEvent> {
        self.iter().map(|v| v.to_recorded()).collect()
    }

    /// Bytes the batch's record buffer holds (for tests of its reuse).
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

/// Iterator over an [`EventBatch`].
pub struct EventBatchIter<'a> {
    batch: &'a EventBatch,
    next: usize,
}

impl<'a> Iterator for EventBatchIter<'a> {
    type Item = RecordView<'a>;

    #[inline]
    fn next(&mut self) -> Option<RecordView<'a>> {
        if self.next >= self.batch.len() {
            return None;
        }
        self.next += 1;
        Some(self.batch.get(self.next - 1))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batch.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for EventBatchIter<'_> {}

/// What the index says the records it located for a read are, beyond their
/// positions: checked against each record itself, so that an index that lies (a bug,
/// or a page forged by someone who knows the salt) gives an error, never another
/// stream's event.
#[derive(Debug, Clone, Copy)]
pub enum Expected<'a> {
    /// Nothing beyond the position.
    Any,
    /// Consecutive versions of one stream, the first record at `first_version`.
    Stream { id: Uuid, first_version: u64 },
    /// Events that pass a filter.
    Matching(&'a Filter),
}

impl Expected<'_> {
    /// Why the `i`-th record read, `view`, is not what the index said it is.
    fn mismatch(&self, i: usize, view: &RecordView<'_>) -> Option<String> {
        match *self {
            Expected::Any => None,
            Expected::Stream { id, first_version } => {
                let version = first_version + i as u64;
                (view.stream_id != id || view.stream_version != version).then(|| {
                    format!(
                        "the index places version {version} of stream {id} here, but the \
                         record is version {} of stream {}",
                        view.stream_version, view.stream_id
                    )
                })
            }
            Expected::Matching(filter) => {
                let stream_ok = filter.stream_id.is_none_or(|s| s == view.stream_id);
                (!stream_ok || !filter.type_matches(view.event_type.as_bytes())).then(|| {
                    format!(
                        "the index gave this record (stream {}, type {:?}) as a match of a \
                         filter it does not pass",
                        view.stream_id, view.event_type
                    )
                })
            }
        }
    }
}

/// Reads the records at `located` (global position, location), in order, each
/// checked against `expect`.
pub fn read_located(
    file: &dyn StorageFile,
    path: &Path,
    located: &[(u64, RecordLocation)],
    expect: Expected<'_>,
    into: &mut EventBatch,
    visit: Option<Visitor<'_>>,
) -> Result<(), Error> {
    read_records(
        file,
        path,
        located.len(),
        |i| located[i],
        expect,
        into,
        visit,
    )
}

/// Called with the number of records to come and each record's view, as soon as the
/// record is verified (while it is still in the CPU's cache). The views point into
/// the batch's buffer, which stays where it is when the batch is moved.
pub type Visitor<'a> = &'a mut dyn FnMut(usize, &RecordView<'_>);

/// Reads the records of the contiguous log range that starts at global position
/// `first`; `locations` are theirs, in order. The range is one span of the file, read
/// in large pieces into one buffer.
pub fn read_range(
    file: &dyn StorageFile,
    path: &Path,
    first: u64,
    locations: &[RecordLocation],
    into: &mut EventBatch,
    visit: Option<Visitor<'_>>,
) -> Result<(), Error> {
    read_records(
        file,
        path,
        locations.len(),
        |i| (first + i as u64, locations[i]),
        Expected::Any,
        into,
        visit,
    )
}

fn read_records(
    file: &dyn StorageFile,
    path: &Path,
    count: usize,
    located: impl Fn(usize) -> (u64, RecordLocation),
    expect: Expected<'_>,
    into: &mut EventBatch,
    mut visit: Option<Visitor<'_>>,
) -> Result<(), Error> {
    // The matches of a filter are read without the records between them.
    let max_gap = match expect {
        Expected::Matching(_) => FILTERED_MAX_GAP,
        Expected::Any | Expected::Stream { .. } => MAX_GAP,
    };
    // Whatever happens, `into` ends up empty or whole.
    let mut records = std::mem::take(&mut into.records);
    let mut buf = std::mem::take(&mut into.buf);
    records.clear();
    records.reserve(count);
    // Spans of the file to read: (file offset, length, offset in the buffer).
    let mut spans = std::mem::take(&mut into.spans);
    spans.clear();
    let mut total = 0usize;
    for i in 0..count {
        let (_, loc) = located(i);
        match spans.last_mut() {
            Some((start, len, _))
                if loc.offset() >= *start + *len
                    && loc.offset() - (*start + *len) <= max_gap
                    && loc.end() - *start <= MAX_SPAN =>
            {
                let grow = loc.end() - (*start + *len);
                *len += grow;
                total += grow as usize;
            }
            _ => {
                spans.push((loc.offset(), loc.size() as u64, total));
                total += loc.size();
            }
        }
        let (start, _, base) = *spans.last().expect("a span was just pushed");
        records.push((base + (loc.offset() - start) as usize, loc.size()));
    }
    if buf.capacity() == 0 {
        buf = buffer(total);
    } else if buf.len() >= total {
        // Reused: every byte up to `total` is read over, so nothing needs zeroing.
        buf.truncate(total);
    } else {
        buf.resize(total, 0);
    }
    // Records lie in the buffer in order; they are verified in groups of four (their
    // CRCs computed side by side) as soon as a group's bytes have arrived, while they
    // are still in the CPU's cache, and the last few one by one. The buffer is reached
    // through one raw pointer, so that the views handed to `visit` stay valid while
    // later pieces are read into other bytes of it.
    // Neither a view nor a visit is needed: records are only verified.
    let only_positions = matches!(expect, Expected::Any) && visit.is_none();
    let origin = buf.as_mut_ptr();
    let mut deliver = |i: usize, rec: &[u8], checked| -> Result<(), Error> {
        let (position, loc) = located(i);
        verified_at(rec, position, loc, checked)?;
        if only_positions {
            return Ok(());
        }
        // SAFETY: `verified_at` has just accepted these bytes, which are not written
        // again.
        let view = unsafe { codec::view_checked_record(rec) };
        if let Some(detail) = expect.mismatch(i, &view) {
            return Err(Error::CorruptRecord {
                position,
                offset: loc.offset(),
                detail,
            });
        }
        if let Some(visit) = visit.as_mut() {
            visit(count, &view);
        }
        Ok(())
    };
    // Records whose bytes have all arrived, and records verified (and visited).
    let (mut arrived, mut verified) = (0, 0);
    for &(start, len, base) in &spans {
        let len = len as usize;
        let mut done = 0;
        while done < len {
            let piece = READ_PIECE.min(len - done);
            let at = start + done as u64;
            debug_assert!(base + done + piece <= buf.len());
            // SAFETY: the spans tile `buf[..total]` (`buf.len() == total`), so these
            // `piece` bytes are inside it; they are initialised (zeroed or older
            // data), and no reference to them is live: records are viewed only once
            // read, and pieces do not overlap.
            let dst = unsafe { std::slice::from_raw_parts_mut(origin.add(base + done), piece) };
            read_exact_at(file, dst, at).map_err(|e| {
                Error::io(
                    format!(
                        "read {piece} bytes of {} at byte offset {at}",
                        path.display()
                    ),
                    e,
                )
            })?;
            done += piece;
            while arrived < count && records[arrived].0 + records[arrived].1 <= base + done {
                arrived += 1;
            }
            while arrived - verified >= 4 {
                // SAFETY: records `verified..verified + 4` are below `arrived`: their
                // bytes have been read, and are not written again.
                let group: [&[u8]; 4] =
                    std::array::from_fn(|k| unsafe { bytes_at(origin, records[verified + k]) });
                if !codec::records4_sound(group) {
                    for (k, checked) in codec::check_records4(group).into_iter().enumerate() {
                        deliver(verified + k, group[k], checked)?;
                    }
                } else if only_positions {
                    // Sound records that nobody views: what is left to check is where
                    // they are, without the verdicts and views of `deliver`.
                    for (k, rec) in group.into_iter().enumerate() {
                        let (position, loc) = located(verified + k);
                        if codec::record_global_position(rec) != position {
                            verified_at(rec, position, loc, Ok(()))?;
                        }
                    }
                } else {
                    for (k, rec) in group.into_iter().enumerate() {
                        deliver(verified + k, rec, Ok(()))?;
                    }
                }
                verified += 4;
            }
        }
    }
    debug_assert_eq!(arrived, count);
    while verified < count {
        // SAFETY: every record has arrived (all spans are read); the bytes are not
        // written again.
        let rec = unsafe { bytes_at(origin, records[verified]) };
        deliver(verified, rec, codec::check_record(rec))?;
        verified += 1;
    }
    *into = EventBatch {
        buf,
        records,
        spans,
    };
    Ok(())
}

/// The `len` bytes at `origin + at`.
///
/// # Safety
/// They must be initialised bytes of one live allocation that nothing writes while
/// the returned slice is alive.
unsafe fn bytes_at<'a>(origin: *const u8, (at, len): (usize, usize)) -> &'a [u8] {
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(origin.add(at), len) }
}

/// Bytes per `pread` of a long span: large enough that the calls cost nothing next to
/// the copying, small enough that what one brings in is still in cache when verified.
const READ_PIECE: usize = 1 << 20;

/// A zeroed buffer for `len` bytes, with huge pages asked for (see [`advise_huge`]).
fn buffer(len: usize) -> Vec<u8> {
    let buf = vec![0u8; len];
    advise_huge(&buf);
    buf
}

/// Asks for transparent huge pages behind a large allocation that is yet to be
/// written: faulting in 2 MiB pages instead of 4 KiB ones cuts the cost of touching
/// fresh memory by an order of magnitude where the kernel grants them (`madvise`
/// mode), and changes nothing elsewhere. Takes the whole capacity of `v`.
pub(crate) fn advise_huge<T>(v: &Vec<T>) {
    const HUGE: usize = 2 << 20;
    let len = v.capacity() * std::mem::size_of::<T>();
    if len < 4 * HUGE {
        return;
    }
    let at = v.as_ptr() as usize;
    let start = at.next_multiple_of(HUGE);
    let end = (at + len) & !(HUGE - 1);
    if end > start {
        // SAFETY: advice only, on whole pages inside an allocation the caller owns;
        // madvise(MADV_HUGEPAGE) never changes the memory's contents.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

/// Completes the verification of the record `rec`, which the index places at
/// `position` and `loc`, given `checked`, the verdict of `codec::check_record` (or
/// `check_records4`) on it (lengths, CRC, type): that it holds that position.
fn verified_at(
    rec: &[u8],
    position: u64,
    loc: RecordLocation,
    checked: Result<(), codec::Damage>,
) -> Result<(), Error> {
    let corrupt = |detail: String| Error::CorruptRecord {
        position,
        offset: loc.offset(),
        detail,
    };
    checked.map_err(|codec::Damage(detail)| corrupt(detail))?;
    let held = codec::record_global_position(rec);
    if held != position {
        return Err(corrupt(format!("record holds global position {held}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{read_lock, Store};
    use crate::types::{ExpectedVersion, ProposedEvent};

    fn event(ty: &str) -> ProposedEvent {
        ProposedEvent {
            event_id: Uuid::nil(),
            event_type: ty.into(),
            metadata: vec![],
            payload: b"{}".to_vec(),
        }
    }

    /// An index that lies (here: stream B's locations handed out as stream A's, a
    /// non-match as a match) gives an error naming the record, never the wrong event.
    #[test]
    fn records_the_index_misplaces_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.store")).unwrap();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        for _ in 0..3 {
            store
                .append(a, ExpectedVersion::Any, vec![event("Placed")])
                .unwrap();
            store
                .append(b, ExpectedVersion::Any, vec![event("Paid")])
                .unwrap();
        }
        let located = |s: &Uuid, from| {
            read_lock(&store.index)
                .locate_stream(s, from, 10)
                .unwrap()
                .unwrap()
        };
        let read = |located: &[(u64, RecordLocation)], expect| {
            let mut batch = EventBatch::default();
            let r = read_located(
                store.file.as_ref(),
                &store.path,
                located,
                expect,
                &mut batch,
                None,
            );
            (r, batch)
        };
        // The truth passes.
        let (r, batch) = read(
            &located(&a, 1),
            Expected::Stream {
                id: a,
                first_version: 1,
            },
        );
        r.unwrap();
        assert_eq!(batch.len(), 2);
        // Another stream's records.
        let (r, batch) = read(
            &located(&b, 0),
            Expected::Stream {
                id: a,
                first_version: 0,
            },
        );
        match r {
            Err(Error::CorruptRecord {
                position, detail, ..
            }) => {
                assert_eq!(position, 1, "{detail}");
                assert!(detail.contains("version 0 of stream"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        assert!(batch.is_empty(), "an error leaves the batch empty");
        // The right stream, the wrong versions (a version skipped).
        let mut skipping = located(&a, 0);
        skipping.remove(1);
        let (r, _) = read(
            &skipping,
            Expected::Stream {
                id: a,
                first_version: 0,
            },
        );
        assert!(
            matches!(r, Err(Error::CorruptRecord { position: 4, .. })),
            "{r:?}"
        );
        // Filters: a stream filter and a type filter each refuse what they exclude.
        let stream_b = Filter::stream(b);
        let (r, _) = read(&located(&a, 0), Expected::Matching(&stream_b));
        assert!(
            matches!(r, Err(Error::CorruptRecord { position: 0, .. })),
            "{r:?}"
        );
        let paid = Filter::types(["Paid"]);
        let (r, _) = read(&located(&b, 0), Expected::Matching(&paid));
        r.unwrap();
        let (r, _) = read(&located(&a, 2), Expected::Matching(&paid));
        assert!(
            matches!(r, Err(Error::CorruptRecord { position: 4, .. })),
            "{r:?}"
        );
        let prefix = Filter::prefixes(["Pla"]);
        let (r, _) = read(&located(&a, 0), Expected::Matching(&prefix));
        r.unwrap();
    }

    /// Sound records in the wrong place are refused on every path of `read_records`:
    /// in groups of four with nothing to view them (only their positions are left to
    /// check there), with a visitor, and one by one at the end.
    #[test]
    fn range_reads_refuse_sound_records_out_of_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.store")).unwrap();
        for _ in 0..10 {
            store
                .append(Uuid::from_u128(1), ExpectedVersion::Any, vec![event("E")])
                .unwrap();
        }
        let (first, locations) = read_lock(&store.index).locate_range(0, 10).unwrap();
        assert_eq!((first, locations.len()), (0, 10));
        let read = |first: u64, locations: &[RecordLocation], visiting: bool| {
            let mut batch = EventBatch::default();
            let mut seen = 0;
            let mut visit = |_: usize, _: &RecordView<'_>| seen += 1;
            let r = read_range(
                store.file.as_ref(),
                &store.path,
                first,
                locations,
                &mut batch,
                if visiting { Some(&mut visit) } else { None },
            );
            (r.map(|()| batch.len()), seen)
        };
        for visiting in [false, true] {
            assert_eq!(read(0, &locations, visiting).0.unwrap(), 10);
            // Every record one place off, and two records swapped in the second group
            // of four, and in the tail read one by one.
            let mut swapped = locations.clone();
            swapped.swap(5, 6);
            let mut tail = locations.clone();
            tail.swap(8, 9);
            for (first, locs, wrong, holds) in
                [(1, &locations, 1, 0), (0, &swapped, 5, 6), (0, &tail, 8, 9)]
            {
                let (r, seen) = read(first, locs, visiting);
                match r {
                    Err(Error::CorruptRecord {
                        position, detail, ..
                    }) => {
                        assert_eq!(position, wrong, "{detail}");
                        assert_eq!(detail, format!("record holds global position {holds}"));
                    }
                    other => panic!("visiting {visiting}, first {first}: {other:?}"),
                }
                if visiting {
                    assert_eq!(
                        seen,
                        wrong - first,
                        "records before the wrong one are visited"
                    );
                }
            }
        }
    }
}
