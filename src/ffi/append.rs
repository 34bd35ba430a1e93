//! `es_append_multi`: one atomic append to several streams, each checked against its
//! expected version, written with one sync, idempotent like `es_append`.

use uuid::Uuid;

use super::{bytes, expected_arg, guard, non_null, types::*, Failure};
use crate::types::{ProposedEventRef, StreamAppend};

/// Borrows `count` C events at `events` as the store's event views, checking every
/// pointer/length pair. `what` names the array in messages (e.g. `appends[1].events`).
///
/// # Safety
/// `events` must be non-NULL and point to `count` readable `es_proposed_event`s whose
/// pointers are valid for their lengths for `'a`.
pub(super) unsafe fn proposed_refs<'a>(
    events: *const es_proposed_event,
    count: usize,
    what: &str,
) -> Result<Vec<ProposedEventRef<'a>>, Failure> {
    if count > isize::MAX as usize / std::mem::size_of::<es_proposed_event>() {
        return Err(Failure::Argument(format!(
            "count {count} is larger than any array ({what})"
        )));
    }
    // SAFETY: `events` is non-NULL with `count` readable elements (this function's
    // contract); `count * size_of` fits in `isize` (checked).
    let proposed = unsafe { std::slice::from_raw_parts(events, count) };
    let mut refs = Vec::with_capacity(count);
    for (i, e) in proposed.iter().enumerate() {
        if e.event_type.is_null() {
            return Err(Failure::Argument(format!("{what}[{i}].event_type is NULL")));
        }
        // SAFETY: each pointer is non-NULL or paired with length 0 (checked inside
        // `bytes`), and the caller promises the lengths it gave.
        let (event_type, metadata, payload) = unsafe {
            (
                bytes(e.event_type.cast(), e.event_type_len, "event_type")?,
                bytes(e.metadata, e.metadata_len, "metadata")?,
                bytes(e.payload, e.payload_len, "payload")?,
            )
        };
        let event_type = std::str::from_utf8(event_type).map_err(|err| {
            Failure::Argument(format!("{what}[{i}].event_type is not valid UTF-8: {err}"))
        })?;
        refs.push(ProposedEventRef {
            event_id: Uuid::from_bytes(e.event_id.bytes),
            event_type,
            metadata,
            payload,
        });
    }
    Ok(refs)
}

/// Appends to `count` streams as one atomic unit: `appends[i].events` to
/// `appends[i].stream_id`, each checked against `appends[i].expected_version` (encoded
/// as for `es_append`).
///
/// All or nothing, also across crashes: the events of every stream form one batch on
/// disk, recovered whole or not at all, made durable with one fsync (it costs what a
/// single `es_append` costs). Every expected version is checked before anything is
/// written; if any fails, nothing is written, the status is
/// `ES_ERR_WRONG_EXPECTED_VERSION`, and `es_last_error()` and `es_last_conflict()` name
/// that stream and its versions. The events take contiguous global positions in the
/// order given (`appends[0]`'s first); streams it creates are created in that order
/// (see `es_list_streams`). The first multi-stream append to a store written by 0.1
/// rewrites its header as format version 2, which 0.1 refuses to open.
///
/// Idempotent retries: if the streams and event ids are exactly those of an earlier
/// acknowledged append (multi or single: a one-entry `es_append_multi` is the same
/// append as the `es_append` of that entry), in the same order, nothing is written and
/// `ES_OK` is returned with that append's original results, each with
/// `deduplicated = 1`, whatever the expected versions say now. Two threads sending the
/// same append at once get one write and one deduplicated answer. Any other reuse of a
/// recorded id, even one id of many, is `ES_ERR_DUPLICATE_EVENT_ID` (message: the id)
/// and nothing is written. All-zero ids get fresh UUIDs.
///
/// `out_results` may be NULL; otherwise it must have room for `count` entries and is
/// written, `out_results[i]` for `appends[i]`, only on success.
///
/// Ownership: the library only reads `appends` and the events they point to during the
/// call and keeps no pointer into them. Threads: as `es_append` (multi-appends join the
/// same group commits as single ones).
///
/// Returns `ES_OK`; `ES_ERR_INVALID_ARGUMENT` (NULL `store` or `appends`; `count` 0;
/// an entry with NULL `events` or `count` 0; a stream appearing twice; the same event
/// id twice in the call; any event rejected as by `es_append`; a bad expected version);
/// `ES_ERR_EVENT_TOO_LARGE`; `ES_ERR_WRONG_EXPECTED_VERSION`;
/// `ES_ERR_DUPLICATE_EVENT_ID`; `ES_ERR_IO` (a failed write or fsync poisons the handle,
/// as for `es_append`); `ES_ERR_POISONED`; `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_append_multi(
    store: *mut es_store,
    appends: *const es_stream_append,
    count: usize,
    out_results: *mut es_append_result,
) -> es_status {
    guard("es_append_multi", || {
        non_null(store, "store")?;
        non_null(appends, "appends")?;
        if count == 0 {
            return Err(Failure::Argument(
                "count is 0: a multi-append needs at least one stream".into(),
            ));
        }
        if count > isize::MAX as usize / std::mem::size_of::<es_stream_append>() {
            return Err(Failure::Argument(format!(
                "count {count} is larger than any array"
            )));
        }
        // SAFETY: `appends` is non-NULL and the caller promises `count` readable
        // elements valid for the call; `count * size_of` fits in `isize` (checked).
        let entries = unsafe { std::slice::from_raw_parts(appends, count) };
        let mut events = Vec::with_capacity(count);
        let mut expected = Vec::with_capacity(count);
        for (i, a) in entries.iter().enumerate() {
            non_null(a.events, &format!("appends[{i}].events"))?;
            if a.count == 0 {
                return Err(Failure::Argument(format!(
                    "appends[{i}].count is 0: every stream needs at least one event"
                )));
            }
            expected.push(expected_arg(
                a.expected_version,
                &format!("appends[{i}].expected_version"),
            )?);
            // SAFETY: `a.events` is non-NULL and the caller promises `a.count` readable
            // events whose pointers are valid for the call.
            events.push(unsafe {
                proposed_refs(a.events, a.count, &format!("appends[{i}].events"))?
            });
        }
        let parts: Vec<StreamAppend<'_>> = entries
            .iter()
            .zip(&events)
            .zip(expected)
            .map(|((a, e), expected_version)| StreamAppend {
                stream_id: Uuid::from_bytes(a.stream_id.bytes),
                expected_version,
                events: e,
            })
            .collect();
        let handle = super::store::live(store)?;
        let results = handle.append_multi(&parts)?;
        if !out_results.is_null() {
            for (i, r) in results.into_iter().enumerate() {
                // SAFETY: `out_results` is non-NULL and the caller promises room for
                // `count` entries; `results` has one per entry.
                unsafe { out_results.add(i).write(r.into()) };
            }
        }
        Ok(())
    })
}
