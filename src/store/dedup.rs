//! Idempotency: deciding, in the group-commit leader, whether an append's event ids
//! are new, an exact retry of an acknowledged append, or a forbidden reuse.
//!
//! The rule (also in `docs/format.md` and the C header): an append whose streams and
//! event ids are exactly those of one earlier acknowledged append, in the same order, is
//! a retry: it gets that append's original results, marked `deduplicated`, and writes
//! nothing, whatever its expected versions say now. Any other reuse of a recorded id is
//! `DuplicateEventId`. The leader checks against the durable log (through the index's
//! id table, each candidate confirmed by reading the record from the file) and against
//! the appends accepted earlier in its own group, in the same critical section as the
//! expected-version check, so that two identical appends racing each other give one
//! write and one deduplicated answer.

use std::collections::HashMap;
use std::path::Path;

use uuid::Uuid;

use crate::error::Error;
use crate::store::index::Index;
use crate::store::io::{read_exact_at, StorageFile};
use crate::store::read::{read_range, EventBatch};
use crate::types::AppendResult;

/// What an append's ids make of it.
#[derive(Debug)]
pub enum Verdict {
    /// No id of the append is recorded.
    Fresh,
    /// An exact retry of a durable append: its original results.
    Retry(Vec<AppendResult>),
    /// An exact retry of the `n`th append accepted earlier in this group.
    RetryOfGroup(usize),
    /// `event_id` is already recorded at `position`, and this is no exact retry.
    Duplicate { event_id: Uuid, position: u64 },
}

/// The ids of the appends accepted so far in one group.
#[derive(Default)]
pub struct GroupIds {
    /// Event id -> (accepted append, index of the event in it).
    by_id: HashMap<Uuid, (usize, usize)>,
    /// Per accepted append: its `(stream id, event id)` pairs and first position.
    appends: Vec<(Vec<(Uuid, Uuid)>, u64)>,
}

impl GroupIds {
    /// Notes the ids of the next accepted append, placed at `first_position`.
    pub fn add(&mut self, ids: &[(Uuid, Uuid)], first_position: u64) {
        let n = self.appends.len();
        for (i, (_, id)) in ids.iter().enumerate() {
            self.by_id.entry(*id).or_insert((n, i));
        }
        self.appends.push((ids.to_vec(), first_position));
    }
}

/// Classifies an append given its `(stream id, event id)` pairs in order and its
/// events per stream (`parts`).
pub fn classify(
    index: &Index,
    file: &dyn StorageFile,
    path: &Path,
    ids: &[(Uuid, Uuid)],
    parts: &[u32],
    group: &GroupIds,
) -> Result<Verdict, Error> {
    for (i, (_, id)) in ids.iter().enumerate() {
        if let Some(&(k, j)) = group.by_id.get(id) {
            let (earlier, first_position) = &group.appends[k];
            if i == 0 && j == 0 && earlier.as_slice() == ids {
                return Ok(Verdict::RetryOfGroup(k));
            }
            return Ok(Verdict::Duplicate {
                event_id: *id,
                position: first_position + j as u64,
            });
        }
        let mut recorded = None;
        for position in index.id_candidates(id)? {
            if !holds_id(index, file, path, position, id)? {
                continue;
            }
            if i == 0 {
                if let Some(results) = retry_of(index, file, path, position, ids, parts)? {
                    return Ok(Verdict::Retry(results));
                }
            }
            // A store written by 0.1 may hold an id twice: look at every copy for a
            // retry before calling it a duplicate.
            recorded = recorded.or(Some(position));
        }
        if let Some(position) = recorded {
            return Ok(Verdict::Duplicate {
                event_id: *id,
                position,
            });
        }
    }
    Ok(Verdict::Fresh)
}

/// Whether the record at `position` has the event id `id` (a tag match confirmed).
fn holds_id(
    index: &Index,
    file: &dyn StorageFile,
    path: &Path,
    position: u64,
    id: &Uuid,
) -> Result<bool, Error> {
    let Some(loc) = index.location(position)? else {
        return Ok(false);
    };
    let mut got = [0u8; 16];
    let at = loc.offset() + 44;
    read_exact_at(file, &mut got, at).map_err(|e| {
        Error::io(
            format!(
                "read the event id at byte offset {at} of {}",
                path.display()
            ),
            e,
        )
    })?;
    Ok(got == *id.as_bytes())
}

/// The original results when the append recorded at `position` onwards is exactly
/// `ids` (same streams, same ids, same order, and nothing more).
fn retry_of(
    index: &Index,
    file: &dyn StorageFile,
    path: &Path,
    position: u64,
    ids: &[(Uuid, Uuid)],
    parts: &[u32],
) -> Result<Option<Vec<AppendResult>>, Error> {
    let n = ids.len() as u64;
    let end = position + n;
    if end > index.event_count()
        || !index.is_append_start(position)?
        || (end < index.event_count() && !index.is_append_start(end)?)
    {
        return Ok(None);
    }
    let (first, locations) = index.locate_range(position, n)?;
    // The records of one append lie back to back (frames lie between appends).
    if locations.windows(2).any(|w| w[0].end() != w[1].offset()) {
        return Ok(None);
    }
    let mut batch = EventBatch::default();
    read_range(file, path, first, &locations, &mut batch, None)?;
    if batch.len() != ids.len()
        || batch
            .iter()
            .zip(ids)
            .any(|(v, (stream, id))| v.stream_id != *stream || v.event_id != *id)
    {
        return Ok(None);
    }
    let mut results = Vec::with_capacity(parts.len());
    let mut at = 0usize;
    for &count in parts {
        let head = batch.get(at);
        results.push(AppendResult {
            first_global_position: head.global_position,
            first_stream_version: head.stream_version,
            count: u64::from(count),
            recorded_at: head.recorded_at,
            deduplicated: true,
        });
        at += count as usize;
    }
    Ok(Some(results))
}
