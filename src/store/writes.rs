//! The 0.2 parts of `Store`: multi-stream appends, lookups by event id, backward
//! reads and the stream listing. Kept apart from `mod.rs`, which holds open, the
//! single append's queueing and the forward reads.

use std::collections::HashSet;

use uuid::Uuid;

use super::index::StreamInfo;
use super::read::{self, EventBatch, Visitor};
use super::writer::{Part, Request};
use super::{read_lock, Store};
use crate::codec::{self, UnsealedBatch};
use crate::error::Error;
use crate::types::{AppendResult, ProposedEventRef, RecordedEvent, StreamAppend};

impl Store {
    /// Appends to several streams as one atomic unit: one batch on disk, recovered
    /// whole or not at all, written with one sync. Every stream's expected version is
    /// checked; if any fails, nothing is written and the error names that stream. The
    /// events take contiguous global positions in the order given; streams it creates
    /// are created in that order. Returns one result per stream, in order.
    ///
    /// Idempotency: if the streams and event ids are exactly those of an earlier
    /// acknowledged append (single or multi), in the same order, nothing is written and
    /// that append's results come back with `deduplicated` set, whatever the expected
    /// versions say now. Any other reuse of a recorded id is `Error::DuplicateEventId`.
    /// Nil event ids get fresh v4 UUIDs (so such an append is never a retry).
    ///
    /// `Error::InvalidArgument`: no streams, a stream with no events, a stream given
    /// twice, or the same event id twice in the call.
    pub fn append_multi(&self, appends: &[StreamAppend<'_>]) -> Result<Vec<AppendResult>, Error> {
        self.check_writable()?;
        if appends.is_empty() {
            return Err(Error::InvalidArgument(
                "an append needs at least one stream".into(),
            ));
        }
        for (i, a) in appends.iter().enumerate() {
            if a.events.is_empty() {
                return Err(Error::InvalidArgument(if appends.len() == 1 {
                    "an append needs at least one event".into()
                } else {
                    format!("appends[{i}] (stream {}) has no events", a.stream_id)
                }));
            }
            for (j, e) in a.events.iter().enumerate() {
                codec::check_event(e).map_err(|err| match err {
                    // Name the event: which one of the call, and its id.
                    Error::InvalidArgument(why) => Error::InvalidArgument(format!(
                        "{} (event id {}): {why}",
                        if appends.len() == 1 {
                            format!("events[{j}]")
                        } else {
                            format!("appends[{i}].events[{j}]")
                        },
                        e.event_id
                    )),
                    other => other,
                })?;
            }
        }
        if appends.len() > 1 {
            let mut streams = HashSet::with_capacity(appends.len());
            for a in appends {
                if !streams.insert(a.stream_id) {
                    return Err(Error::InvalidArgument(format!(
                        "stream {} appears twice in one append",
                        a.stream_id
                    )));
                }
            }
        }
        let total: usize = appends.iter().map(|a| a.events.len()).sum();
        if total > 1 {
            let mut ids = HashSet::with_capacity(total);
            for e in appends.iter().flat_map(|a| a.events) {
                if !e.event_id.is_nil() && !ids.insert(e.event_id) {
                    return Err(Error::InvalidArgument(format!(
                        "event id {} appears twice in one append",
                        e.event_id
                    )));
                }
            }
        }
        let batch = encode_appends(appends)?;
        self.commit(Request {
            parts: appends
                .iter()
                .map(|a| Part {
                    stream_id: a.stream_id,
                    expected: a.expected_version,
                })
                .collect(),
            batch,
            answer: Default::default(),
            recorded_at: None,
            check_ids: true,
        })
    }

    /// The event with this id. The nil id is never recorded: `Error::EventNotFound`.
    pub fn read_event(&self, event_id: Uuid) -> Result<RecordedEvent, Error> {
        let batch = self.read_event_visit(event_id, &mut |_, _| {})?;
        Ok(batch.get(0).to_recorded())
    }

    /// [`Store::read_event`] into a one-event batch, calling `visit` with the record
    /// (for the C ABI). A candidate whose id differs (a tag collision) is skipped.
    pub(crate) fn read_event_visit(
        &self,
        event_id: Uuid,
        visit: Visitor<'_>,
    ) -> Result<EventBatch, Error> {
        if event_id.is_nil() {
            return Err(Error::EventNotFound { event_id });
        }
        self.refresh()?;
        let candidates: Vec<_> = {
            let index = read_lock(&self.index);
            let mut located = Vec::new();
            for p in index.id_candidates(&event_id)? {
                if let Some(l) = index.location(p)? {
                    located.push((p, l));
                }
            }
            located
        };
        let mut batch = EventBatch::default();
        for located in candidates {
            read::read_located(
                self.file.as_ref(),
                &self.path,
                &[located],
                read::Expected::Any,
                &mut batch,
                None,
            )?;
            if batch.get(0).event_id == event_id {
                visit(1, &batch.get(0));
                return Ok(batch);
            }
        }
        Err(Error::EventNotFound { event_id })
    }

    /// Events of a stream in descending version order, from `from_version` (a start
    /// past the end, such as `u64::MAX`, starts at the last event), at most `max_count`.
    /// A stream with no events is `Error::StreamNotFound`.
    pub fn read_stream_backward(
        &self,
        stream_id: Uuid,
        from_version: u64,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let mut batch =
            self.read_stream_backward_visit(stream_id, from_version, max_count, &mut |_, _| {})?;
        batch.reverse();
        Ok(batch.to_recorded())
    }

    /// The events of [`Store::read_stream_backward`], read and visited in ascending
    /// order (the caller reverses them).
    pub(crate) fn read_stream_backward_visit(
        &self,
        stream_id: Uuid,
        from_version: u64,
        max_count: u64,
        visit: Visitor<'_>,
    ) -> Result<EventBatch, Error> {
        self.read_stream_span_visit(
            stream_id,
            |len| backward_range(from_version, max_count, len),
            visit,
        )
    }

    /// Events of the whole log in descending position order, from `from_position` (a
    /// start past the end starts at the last event), at most `max_count`. An empty
    /// store gives an empty result.
    pub fn read_all_backward(
        &self,
        from_position: u64,
        max_count: u64,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let mut batch = self.read_all_backward_visit(from_position, max_count, &mut |_, _| {})?;
        batch.reverse();
        Ok(batch.to_recorded())
    }

    /// The events of [`Store::read_all_backward`], read and visited in ascending order.
    pub(crate) fn read_all_backward_visit(
        &self,
        from_position: u64,
        max_count: u64,
        visit: Visitor<'_>,
    ) -> Result<EventBatch, Error> {
        self.read_span_visit(
            |index| backward_range(from_position, max_count, index.event_count()),
            visit,
        )
    }

    /// Up to `max_count` streams in order of creation (of their first event), from the
    /// `from_index`th (0-based): page through them with `from_index += page.len()`.
    pub fn list_streams(&self, from_index: u64, max_count: u64) -> Vec<StreamInfo> {
        self.refresh_quietly();
        read_lock(&self.index).list_streams(from_index, max_count)
    }

    /// The number of streams with events.
    pub fn stream_count(&self) -> u64 {
        self.refresh_quietly();
        read_lock(&self.index).stream_count()
    }
}

/// The ascending range `(first, count)` a backward read of `len` items covers, from
/// `from` (clipped to the last item) down, at most `max_count` items.
fn backward_range(from: u64, max_count: u64, len: u64) -> (u64, u64) {
    if len == 0 || max_count == 0 {
        return (0, 0);
    }
    let top = from.min(len - 1);
    let n = max_count.min(top + 1);
    (top + 1 - n, n)
}

/// Encodes the runs of one append as one batch, stream after stream, nil event ids
/// replaced with fresh v4 UUIDs (shared by `append_multi` and copied batches).
pub(crate) fn encode_appends(appends: &[StreamAppend<'_>]) -> Result<UnsealedBatch, Error> {
    let needs_ids = appends
        .iter()
        .any(|a| a.events.iter().any(|e| e.event_id.is_nil()));
    if let [a] = appends {
        if !needs_ids {
            // The common case of one stream with its ids given: no list to build.
            return UnsealedBatch::encode_multi(&[(a.stream_id, a.events)]);
        }
    }
    let filled: Vec<Vec<ProposedEventRef<'_>>>;
    let parts: Vec<(Uuid, &[ProposedEventRef<'_>])> = if needs_ids {
        filled = appends
            .iter()
            .map(|a| {
                a.events
                    .iter()
                    .map(|e| ProposedEventRef {
                        event_id: if e.event_id.is_nil() {
                            Uuid::new_v4()
                        } else {
                            e.event_id
                        },
                        ..*e
                    })
                    .collect()
            })
            .collect();
        appends
            .iter()
            .zip(&filled)
            .map(|(a, f)| (a.stream_id, f.as_slice()))
            .collect()
    } else {
        appends.iter().map(|a| (a.stream_id, a.events)).collect()
    };
    UnsealedBatch::encode_multi(&parts)
}

#[cfg(test)]
mod tests {
    use super::backward_range;

    #[test]
    fn backward_ranges_clip_at_both_ends() {
        assert_eq!(backward_range(u64::MAX, u64::MAX, 10), (0, 10));
        assert_eq!(backward_range(9, 3, 10), (7, 3));
        assert_eq!(backward_range(2, 5, 10), (0, 3));
        assert_eq!(backward_range(0, 1, 10), (0, 1));
        assert_eq!(backward_range(50, 2, 10), (8, 2));
        assert_eq!(backward_range(5, 0, 10), (0, 0));
        assert_eq!(backward_range(0, 5, 0), (0, 0));
    }
}
