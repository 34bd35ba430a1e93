//! `es_list_streams`, `es_free_streams`: the streams of a store in creation order.

use super::{guard, guard_value, non_null, types::*, Failure};

/// Lists up to `max_count` streams in order of creation (the order of their first
/// events), from the `from_index`th (0-based), into `*out_streams`. To page through
/// every stream, start at 0 and continue from `from_index + len` until a call returns
/// fewer than `max_count` entries. Streams created by one `es_append_multi` are
/// created in the order given there.
///
/// `max_count` 0, or a `from_index` at or past the number of streams, gives an empty
/// result and `ES_OK`. The listing is a snapshot: streams created later appear at the
/// end, so paging never skips or repeats one.
///
/// Ownership: on success the caller owns `*out_streams` and releases it with
/// `es_free_streams`; it stays valid after `es_close`. Its previous contents are
/// overwritten, not freed. On any failure `*out_streams` is set to `{NULL, 0, NULL}`
/// (when `out_streams` is not NULL).
///
/// Threads: safe to call concurrently with any call on the same handle except
/// `es_close`; it never waits for an fsync.
///
/// Returns `ES_OK`; `ES_ERR_INVALID_ARGUMENT` when `store` or `out_streams` is NULL;
/// `ES_ERR_IO` when the memory for the result cannot be had; `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_list_streams(
    store: *const es_store,
    from_index: u64,
    max_count: u64,
    out_streams: *mut es_streams,
) -> es_status {
    guard("es_list_streams", || {
        non_null(out_streams, "out_streams")?;
        // SAFETY: `out_streams` is non-NULL and the caller promises it is writable.
        unsafe { out_streams.write(es_streams::EMPTY) };
        let handle = super::store::live(store)?;
        let listed = handle.list_streams(from_index, max_count);
        if listed.is_empty() {
            return Ok(());
        }
        let items: Box<[es_stream_info]> = listed
            .into_iter()
            .map(|s| es_stream_info {
                stream_id: es_uuid {
                    bytes: *s.stream_id.as_bytes(),
                },
                last_version: s.last_version,
                first_global_position: s.first_global_position,
                last_global_position: s.last_global_position,
            })
            .collect();
        let len = items.len();
        let owner = Box::into_raw(Box::new(items));
        // SAFETY: `owner` is the live box just made; its slice's buffer does not move
        // while the box lives.
        let ptr = unsafe { (*owner).as_ptr() };
        // SAFETY: checked non-NULL and writable above.
        unsafe {
            out_streams.write(es_streams {
                items: ptr,
                len,
                owner: owner.cast(),
            })
        };
        Ok::<(), Failure>(())
    })
}

/// Releases a listing made by `es_list_streams` and resets `*streams` to
/// `{NULL, 0, NULL}`.
///
/// NULL-safe and idempotent: `streams` NULL, the empty value, or a listing already
/// freed through this same pointer are no-ops. Freeing a copy of an `es_streams` whose
/// original was already freed is a double free. Works after `es_close`, on any thread.
#[no_mangle]
pub extern "C" fn es_free_streams(streams: *mut es_streams) {
    guard_value("es_free_streams", (), || {
        if streams.is_null() {
            return;
        }
        // SAFETY: `streams` is non-NULL and the caller promises it points to an
        // `es_streams` that `es_list_streams` produced (or the empty value).
        let owner = unsafe { (*streams).owner };
        if !owner.is_null() {
            // SAFETY: a non-NULL `owner` is the `Box<Box<[es_stream_info]>>` made by
            // `es_list_streams`; it is reset to NULL below, so it is released once.
            drop(unsafe { Box::from_raw(owner.cast::<Box<[es_stream_info]>>()) });
        }
        // SAFETY: as above, `streams` is non-NULL and writable.
        unsafe { streams.write(es_streams::EMPTY) };
    });
}
