//! `es_string`, `es_filter` and `es_read_all_filtered`: what a subscription or a
//! filtered read selects, turned into a [`crate::Filter`] once per call.

use std::ffi::c_char;

use uuid::Uuid;

use super::events::{clear_out, read_into_arena};
use super::{guard, non_null, types::*, Failure};
use crate::store::Filter;

/// A UTF-8 string given by pointer and length (not NUL-terminated). `ptr` may be NULL
/// only when `len` is 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct es_string {
    /// The bytes; may be NULL when `len` is 0.
    pub ptr: *const c_char,
    /// Their number, without any terminating NUL.
    pub len: usize,
}

/// What a subscription or a filtered read selects. An event matches if its stream
/// matches and (no types and no prefixes are given, or its type equals one of
/// `event_types` or starts with one of `event_type_prefixes`).
///
/// The library reads the filter (and the strings it points to) only during the call
/// that takes it, and keeps a copy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct es_filter {
    /// Only events of this stream; NULL: every stream.
    pub stream_id: *const es_uuid,
    /// Exact event type names; NULL with `event_type_count` 0: none.
    pub event_types: *const es_string,
    /// Number of entries in `event_types`.
    pub event_type_count: usize,
    /// Type prefixes (`"Order"` matches `"OrderPlaced"`; an empty prefix matches every
    /// type); NULL with `event_type_prefix_count` 0: none.
    pub event_type_prefixes: *const es_string,
    /// Number of entries in `event_type_prefixes`.
    pub event_type_prefix_count: usize,
}

/// The strings of an `es_string` array, checked.
///
/// # Safety
/// `items` must be NULL or point to `count` readable `es_string`s whose pointers are
/// valid for their lengths.
unsafe fn strings(
    items: *const es_string,
    count: usize,
    what: &str,
) -> Result<Vec<String>, Failure> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if items.is_null() {
        return Err(Failure::Argument(format!(
            "{what} is NULL but its count is {count}"
        )));
    }
    if count > isize::MAX as usize / std::mem::size_of::<es_string>() {
        return Err(Failure::Argument(format!(
            "{what} count {count} is larger than any array"
        )));
    }
    // SAFETY: non-NULL, `count` readable elements (the caller's contract), size checked.
    let items = unsafe { std::slice::from_raw_parts(items, count) };
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            // SAFETY: the caller promises `ptr` is valid for `len` bytes (or NULL with 0).
            let b = unsafe { super::bytes(s.ptr.cast(), s.len, what)? };
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|e| Failure::Argument(format!("{what}[{i}] is not valid UTF-8: {e}")))
        })
        .collect()
}

/// The filter `*filter` describes; NULL: everything.
///
/// # Safety
/// `filter` must be NULL or point to a readable `es_filter` whose pointers follow its
/// documented rules.
pub(crate) unsafe fn filter_from(filter: *const es_filter) -> Result<Filter, Failure> {
    if filter.is_null() {
        return Ok(Filter::all());
    }
    // SAFETY: non-NULL and readable (the caller's contract).
    let f = unsafe { &*filter };
    let stream_id = if f.stream_id.is_null() {
        None
    } else {
        // SAFETY: non-NULL and readable (the caller's contract).
        Some(Uuid::from_bytes(unsafe { (*f.stream_id).bytes }))
    };
    // SAFETY: forwarded from this function's contract.
    let (event_types, event_type_prefixes) = unsafe {
        (
            strings(f.event_types, f.event_type_count, "filter.event_types")?,
            strings(
                f.event_type_prefixes,
                f.event_type_prefix_count,
                "filter.event_type_prefixes",
            )?,
        )
    };
    Ok(Filter {
        stream_id,
        event_types,
        event_type_prefixes,
    })
}

/// Reads up to `max_count` events that `*filter` selects, examining the log from global
/// position `from_position` on, in order, into `*out_events`, and sets
/// `*out_next_position` to where the next call should start.
///
/// Events that do not match are judged from the index (their stream and a small type
/// id) and never read from the file. `*out_next_position` is past the last event
/// returned when `max_count` were found, else past everything examined (the end of
/// the log, or where a work budget stopped the call early); it always advances unless
/// `from_position` is at or past the end, and is never less than `from_position`. So
/// page with `from_position = *out_next_position` until the result is empty and
/// `*out_next_position == es_global_position()`. `filter` NULL matches everything.
/// `max_count` 0 gives an empty result at once, with `*out_next_position ==
/// from_position`.
///
/// Ownership: as `es_read_all` (`es_free` the result; it outlives `es_close`). The
/// filter is only read during the call. On failure `*out_events` is set to
/// `{NULL, 0, NULL}` (when `out_events` is not NULL) and `*out_next_position` is not
/// written.
///
/// Threads: safe to call concurrently with any call on the same handle except
/// `es_close`.
///
/// Returns `ES_OK`; `ES_ERR_INVALID_ARGUMENT` when `store`, `out_events` or
/// `out_next_position` is NULL, or the filter has a NULL array with a non-zero count,
/// a NULL string with a non-zero length, or a string that is not UTF-8; `ES_ERR_IO`;
/// `ES_ERR_CORRUPT_RECORD`; `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_read_all_filtered(
    store: *const es_store,
    from_position: u64,
    max_count: u64,
    filter: *const es_filter,
    out_events: *mut es_events,
    out_next_position: *mut u64,
) -> es_status {
    guard("es_read_all_filtered", || {
        clear_out(out_events)?;
        let handle = super::store::live(store)?;
        non_null(out_next_position, "out_next_position")?;
        // SAFETY: `filter` is NULL or a readable `es_filter` (the caller's contract).
        let filter = unsafe { filter_from(filter)? };
        let mut next = from_position;
        let result = read_into_arena(|visit| {
            let (batch, n) =
                handle.read_all_filtered_visit(from_position, max_count, &filter, visit)?;
            next = n;
            Ok(batch)
        })?;
        // SAFETY: both outputs are non-NULL (checked) and writable (the contract).
        unsafe {
            out_events.write(result);
            out_next_position.write(next);
        }
        Ok(())
    })
}
