//! `es_read_stream`, `es_read_all`, `es_free`, and the arena a read result lives in.
//!
//! A read result owns the [`EventBatch`] the store read (its records, verified, in one
//! buffer) and an array of `es_event`s whose pointers point into that buffer: the
//! event type (which a record stores followed by a NUL), the metadata and the payload
//! are not copied again. `es_events.owner` is the box holding both; it does not
//! depend on the store, so it outlives `es_close`; only `es_free` releases it.

use uuid::Uuid;

use super::{guard, guard_value, non_null, types::*, Failure};
use crate::store::read::Visitor;
use crate::store::EventBatch;
use crate::Store;

/// What `es_events.owner` points to.
struct Arena {
    /// Never read: kept alive because `items` point into its buffer.
    _batch: EventBatch,
    items: Vec<es_event>,
}

/// Runs a store read that calls its visitor with every record as it is verified,
/// builds the `es_event` table then (while each record is still in the CPU's cache,
/// instead of a second pass over the whole result), and boxes the table with the
/// batch its pointers point into.
pub(crate) fn read_into_arena(
    read: impl FnOnce(crate::store::read::Visitor<'_>) -> Result<EventBatch, crate::Error>,
) -> Result<es_events, Failure> {
    read_into_arena_ordered(read, false)
}

/// [`read_into_arena`], with the events handed out in reverse order when `backward`
/// (the store reads and visits them in ascending order).
fn read_into_arena_ordered(
    read: impl FnOnce(crate::store::read::Visitor<'_>) -> Result<EventBatch, crate::Error>,
    backward: bool,
) -> Result<es_events, Failure> {
    let mut items: Vec<es_event> = Vec::new();
    let mut out_of_memory = false;
    let batch = read(&mut |count, v| {
        if items.capacity() == 0 && !out_of_memory {
            if items.try_reserve_exact(count).is_err() {
                out_of_memory = true;
            } else {
                crate::store::advise_huge(&items);
            }
        }
        if out_of_memory {
            return;
        }
        items.push(event_of(v));
    })?;
    if out_of_memory {
        return Err(Failure::Store(crate::Error::Io {
            context: format!("allocate {} events for a read result", batch.len()),
            source: std::io::Error::from_raw_os_error(libc::ENOMEM),
        }));
    }
    debug_assert_eq!(items.len(), batch.len());
    if backward {
        items.reverse();
    }
    if batch.is_empty() {
        return Ok(es_events::EMPTY);
    }
    let arena = Box::new(Arena {
        _batch: batch,
        items,
    });
    Ok(es_events {
        items: arena.items.as_ptr(),
        len: arena.items.len(),
        owner: Box::into_raw(arena).cast(),
    })
}

/// The `es_event` of a record; its pointers point into the record's bytes.
fn event_of(v: &crate::codec::RecordView<'_>) -> es_event {
    es_event {
        global_position: v.global_position,
        stream_version: v.stream_version,
        recorded_at_us: v.recorded_at,
        stream_id: es_uuid {
            bytes: *v.stream_id.as_bytes(),
        },
        event_id: es_uuid {
            bytes: *v.event_id.as_bytes(),
        },
        event_type: v.event_type_with_nul.as_ptr().cast(),
        event_type_len: v.event_type.len(),
        metadata: v.metadata.as_ptr(),
        metadata_len: v.metadata.len(),
        payload: v.payload.as_ptr(),
        payload_len: v.payload.len(),
    }
}

/// Releases an arena made by [`read_into_arena`].
///
/// # Safety
/// `owner` must be the `owner` of an `es_events` made by `read_into_arena`, not yet
/// freed.
unsafe fn free_arena(owner: *mut u8) {
    // SAFETY: `owner` came from `Box::into_raw` of an `Arena` (the caller's contract)
    // and is released once.
    drop(unsafe { Box::from_raw(owner.cast::<Arena>()) });
}

pub(crate) fn clear_out(out_events: *mut es_events) -> Result<(), Failure> {
    non_null(out_events, "out_events")?;
    // SAFETY: `out_events` is non-NULL and the caller promises it is writable. Its old
    // contents are overwritten without being freed, as documented.
    unsafe { out_events.write(es_events::EMPTY) };
    Ok(())
}

/// The body of a read of the whole log into `*out_events`: clears it, takes the live
/// handle, runs `read` (which visits in ascending order; `backward` hands the events
/// out in reverse) and writes the result.
fn log_read(
    store: *const es_store,
    out_events: *mut es_events,
    backward: bool,
    read: impl FnOnce(&Store, Visitor<'_>) -> Result<EventBatch, crate::Error>,
) -> Result<(), Failure> {
    clear_out(out_events)?;
    let handle = super::store::live(store)?;
    let result = read_into_arena_ordered(|visit| read(handle, visit), backward)?;
    // SAFETY: checked non-NULL and writable by `clear_out`.
    unsafe { out_events.write(result) };
    Ok(())
}

/// [`log_read`] of a read keyed by a UUID argument (`*id`, named `what` in messages):
/// a stream's events or one event.
fn keyed_read(
    store: *const es_store,
    id: *const es_uuid,
    what: &str,
    out_events: *mut es_events,
    backward: bool,
    read: impl FnOnce(&Store, Uuid, Visitor<'_>) -> Result<EventBatch, crate::Error>,
) -> Result<(), Failure> {
    clear_out(out_events)?;
    let handle = super::store::live(store)?;
    non_null(id, what)?;
    // SAFETY: `id` is non-NULL and readable (the caller's contract).
    let key = unsafe { Uuid::from_bytes((*id).bytes) };
    let result = read_into_arena_ordered(|visit| read(handle, key, visit), backward)?;
    // SAFETY: checked non-NULL and writable by `clear_out`.
    unsafe { out_events.write(result) };
    Ok(())
}

/// Reads up to `max_count` events of the stream `*stream_id`, from version
/// `from_version` on, in version order, into `*out_events`.
///
/// `max_count` 0, or a `from_version` past the stream's end, gives an empty result
/// and `ES_OK`. A stream with no events is `ES_ERR_STREAM_NOT_FOUND`, whatever
/// `max_count` is. Every event returned is verified against its checksum.
///
/// Ownership: on success the caller owns `*out_events` and must release it with
/// `es_free`; it stays valid after `es_close`. The previous contents of `*out_events`
/// are overwritten, not freed. On any failure `*out_events` is set to `{NULL, 0, NULL}`
/// (when `out_events` itself is not NULL), so `es_free` on it is safe.
///
/// Threads: safe to call concurrently with any call on the same handle except
/// `es_close`; a read never waits for another thread's fsync, and sees every append
/// that returned `ES_OK` before it started.
///
/// Returns `ES_OK`; `ES_ERR_STREAM_NOT_FOUND`; `ES_ERR_INVALID_ARGUMENT` when `store`,
/// `stream_id` or `out_events` is NULL, or `store` is closed; `ES_ERR_IO` when reading the file fails;
/// `ES_ERR_CORRUPT_RECORD` when data on disk no longer matches its checksum;
/// `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_read_stream(
    store: *const es_store,
    stream_id: *const es_uuid,
    from_version: u64,
    max_count: u64,
    out_events: *mut es_events,
) -> es_status {
    guard("es_read_stream", || {
        keyed_read(
            store,
            stream_id,
            "stream_id",
            out_events,
            false,
            |h, s, visit| h.read_stream_batch_visit(s, from_version, max_count, visit),
        )
    })
}

/// Reads up to `max_count` events of the whole log, from global position
/// `from_position` on, in order, into `*out_events`. To page through the log, start at
/// 0 and continue from the last event's `global_position + 1` until a read returns
/// fewer than `max_count` events.
///
/// `max_count` 0, or a start at or past `es_global_position()`, gives an empty result
/// and `ES_OK`.
///
/// Ownership, NULL handling and threads: as `es_read_stream`.
///
/// Returns `ES_OK`; `ES_ERR_INVALID_ARGUMENT` when `store` or `out_events` is NULL, or
/// `store` is closed; `ES_ERR_IO`; `ES_ERR_CORRUPT_RECORD`; `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_read_all(
    store: *const es_store,
    from_position: u64,
    max_count: u64,
    out_events: *mut es_events,
) -> es_status {
    guard("es_read_all", || {
        log_read(store, out_events, false, |h, visit| {
            h.read_all_batch_visit(from_position, max_count, visit)
        })
    })
}

/// Reads up to `max_count` events of the stream `*stream_id` in descending version
/// order, starting at version `from_version` (`UINT64_MAX`, or any start past the
/// stream's last version, starts at its last event), into `*out_events`. To page
/// backward, continue from the last returned event's `stream_version - 1` until a read
/// returns fewer than `max_count` events or reaches version 0.
///
/// `max_count` 0 gives an empty result and `ES_OK`. A stream with no events is
/// `ES_ERR_STREAM_NOT_FOUND`, whatever `max_count` is (as for `es_read_stream`).
///
/// Ownership, NULL handling and threads: as `es_read_stream`.
///
/// Returns `ES_OK`; `ES_ERR_STREAM_NOT_FOUND`; `ES_ERR_INVALID_ARGUMENT` when `store`,
/// `stream_id` or `out_events` is NULL; `ES_ERR_IO`; `ES_ERR_CORRUPT_RECORD`;
/// `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_read_stream_backward(
    store: *const es_store,
    stream_id: *const es_uuid,
    from_version: u64,
    max_count: u64,
    out_events: *mut es_events,
) -> es_status {
    guard("es_read_stream_backward", || {
        keyed_read(
            store,
            stream_id,
            "stream_id",
            out_events,
            true,
            |h, s, visit| h.read_stream_backward_visit(s, from_version, max_count, visit),
        )
    })
}

/// Reads up to `max_count` events of the whole log in descending global-position
/// order, starting at `from_position` (`UINT64_MAX`, or any start at or past
/// `es_global_position()`, starts at the last event), into `*out_events`. To page
/// backward, continue from the last returned event's `global_position - 1`.
///
/// An empty store, or `max_count` 0, gives an empty result and `ES_OK`.
///
/// Ownership, NULL handling and threads: as `es_read_stream`.
///
/// Returns `ES_OK`; `ES_ERR_INVALID_ARGUMENT` when `store` or `out_events` is NULL;
/// `ES_ERR_IO`; `ES_ERR_CORRUPT_RECORD`; `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_read_all_backward(
    store: *const es_store,
    from_position: u64,
    max_count: u64,
    out_events: *mut es_events,
) -> es_status {
    guard("es_read_all_backward", || {
        log_read(store, out_events, true, |h, visit| {
            h.read_all_backward_visit(from_position, max_count, visit)
        })
    })
}

/// Reads the event whose id is `*event_id` into `*out_events`, a one-event result.
///
/// Event ids are unique in a store (appends refuse to reuse one), so there is at most
/// one such event (a store written by 0.1, which did not check, may hold an id twice:
/// the earliest is returned). The lookup costs no scan (an in-memory id table,
/// confirmed against the file). The all-zero id is never recorded:
/// `ES_ERR_EVENT_NOT_FOUND`.
///
/// Ownership, NULL handling and threads: as `es_read_stream`.
///
/// Returns `ES_OK`; `ES_ERR_EVENT_NOT_FOUND` when no event has that id;
/// `ES_ERR_INVALID_ARGUMENT` when `store`, `event_id` or `out_events` is NULL;
/// `ES_ERR_IO`; `ES_ERR_CORRUPT_RECORD`; `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_read_event(
    store: *const es_store,
    event_id: *const es_uuid,
    out_events: *mut es_events,
) -> es_status {
    guard("es_read_event", || {
        keyed_read(
            store,
            event_id,
            "event_id",
            out_events,
            false,
            |h, id, visit| h.read_event_visit(id, visit),
        )
    })
}

/// Releases the memory of a read result and resets `*events` to `{NULL, 0, NULL}`.
///
/// NULL-safe and idempotent: `events` NULL, the empty value, or a result already
/// freed through this same pointer are all no-ops. Freeing a *copy* of an
/// `es_events` whose original was already freed is a double free: free each result
/// once, through one variable. Pointers into the result (events, types, payloads) are
/// invalid afterwards. Works after `es_close`, and on any thread.
#[no_mangle]
pub extern "C" fn es_free(events: *mut es_events) {
    guard_value("es_free", (), || {
        if events.is_null() {
            return;
        }
        // SAFETY: `events` is non-NULL and the caller promises it points to an
        // `es_events` that a read produced (or the empty value).
        let owner = unsafe { (*events).owner };
        if !owner.is_null() {
            // SAFETY: a non-NULL `owner` comes from `read_into_arena` and, since `es_free`
            // resets it to NULL, has not been freed through this value.
            unsafe { free_arena(owner.cast()) };
        }
        // SAFETY: as above, `events` is non-NULL and writable.
        unsafe { events.write(es_events::EMPTY) };
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn arena_holds_every_field_and_frees_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(&dir.path().join("a.store")).unwrap();
        let stream = Uuid::from_u128(5);
        let events = [
            crate::ProposedEventRef {
                event_id: Uuid::from_u128(9),
                event_type: "Made",
                metadata: b"m",
                payload: b"payload",
            },
            crate::ProposedEventRef {
                event_id: Uuid::from_u128(10),
                event_type: "Empty",
                metadata: b"",
                payload: b"",
            },
        ];
        store
            .append_refs(stream, crate::ExpectedVersion::NoStream, &events)
            .unwrap();
        let mut result =
            read_into_arena(|visit| store.read_stream_batch_visit(stream, 0, 10, visit)).unwrap();
        drop(store);
        assert_eq!(result.len, 2);
        // SAFETY: `items` points to `len` events in the live arena.
        let items = unsafe { std::slice::from_raw_parts(result.items, result.len) };
        for (e, p) in items.iter().zip(&events) {
            assert_eq!(e.event_id.bytes, *p.event_id.as_bytes());
            assert_eq!(e.stream_id.bytes, *stream.as_bytes());
            // SAFETY: the type is NUL-terminated inside the arena.
            let t = unsafe { CStr::from_ptr(e.event_type) };
            assert_eq!(t.to_bytes(), p.event_type.as_bytes());
            assert_eq!(e.event_type_len, p.event_type.len());
            // SAFETY: metadata and payload point to their lengths inside the arena.
            unsafe {
                assert_eq!(
                    std::slice::from_raw_parts(e.metadata, e.metadata_len),
                    p.metadata
                );
                assert_eq!(
                    std::slice::from_raw_parts(e.payload, e.payload_len),
                    p.payload
                );
            }
        }
        es_free(&mut result);
        assert!(result.items.is_null() && result.len == 0 && result.owner.is_null());
        es_free(&mut result);
        es_free(std::ptr::null_mut());
    }
}
