//! The read path: index locations → as few `pread`s as the layout allows → records
//! verified into one buffer the caller owns.

use std::path::Path;

use crate::codec::{self, DecodeOutcome, RecordView};
use crate::error::Error;
use crate::store::index::RecordLocation;
use crate::store::io::{read_exact_at, StorageFile};
use crate::types::RecordedEvent;

/// Records closer than this in the file are fetched by one read, gap included.
const MAX_GAP: u64 = 4096;
/// Upper bound for one read.
const MAX_SPAN: u64 = 1 << 30;

/// Events read from the store: their records in one buffer, verified (checksum,
/// position, UTF-8 type) when read. Owns its memory; independent of the store.
#[derive(Debug, Default)]
pub struct EventBatch {
    buf: Vec<u8>,
    /// Start and length of each record in `buf`.
    records: Vec<(usize, usize)>,
}

impl EventBatch {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The `i`th event, borrowing from the batch.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn get(&self, i: usize) -> RecordView<'_> {
        let (at, len) = self.records[i];
        match codec::parse_verified_record(&self.buf[at..at + len]) {
            Ok(DecodeOutcome::Complete { value, .. }) => value,
            _ => unreachable!("records are verified when the batch is read"),
        }
    }

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
}

/// Iterator over an [`EventBatch`].
pub struct EventBatchIter<'a> {
    batch: &'a EventBatch,
    next: usize,
}

impl<'a> Iterator for EventBatchIter<'a> {
    type Item = RecordView<'a>;

    fn next(&mut self) -> Option<RecordView<'a>> {
        if self.next >= self.batch.len() {
            return None;
        }
        self.next += 1;
        Some(self.batch.get(self.next - 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batch.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for EventBatchIter<'_> {}

/// Reads the records at `located` (global position, location), in order.
pub fn read_located(
    file: &dyn StorageFile,
    path: &Path,
    located: &[(u64, RecordLocation)],
) -> Result<EventBatch, Error> {
    // Spans of the file to read: (file offset, length, offset in the buffer).
    let mut spans: Vec<(u64, u64, usize)> = Vec::new();
    let mut records = Vec::with_capacity(located.len());
    let mut total = 0usize;
    for &(_, loc) in located {
        match spans.last_mut() {
            Some((start, len, _))
                if loc.offset() >= *start + *len
                    && loc.offset() - (*start + *len) <= MAX_GAP
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
    let mut buf = vec![0u8; total];
    for &(start, len, base) in &spans {
        read_exact_at(file, &mut buf[base..base + len as usize], start).map_err(|e| {
            Error::io(
                format!(
                    "read {len} bytes of {} at byte offset {start}",
                    path.display()
                ),
                e,
            )
        })?;
    }
    for (&(position, loc), &(at, len)) in located.iter().zip(&records) {
        let corrupt = |detail: String| Error::CorruptRecord {
            position,
            offset: loc.offset(),
            detail,
        };
        match codec::parse_record(&buf[at..at + len]) {
            Ok(DecodeOutcome::Complete { value, len: used }) if used == len => {
                if value.global_position != position {
                    return Err(corrupt(format!(
                        "record holds global position {}",
                        value.global_position
                    )));
                }
            }
            Ok(_) => return Err(corrupt("record length disagrees with the index".into())),
            Err(codec::Damage(detail)) => return Err(corrupt(detail)),
        }
    }
    Ok(EventBatch { buf, records })
}
