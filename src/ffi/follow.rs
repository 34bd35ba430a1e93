//! `es_wait`, `es_wake` and subscriptions (`es_subscribe`, `es_subscription_next`,
//! `es_subscription_position`, `es_subscription_close`): following the log, each a
//! check of the arguments and one call into [`crate::Store`] or
//! [`crate::Subscription`].

use std::mem::ManuallyDrop;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::events::{clear_out, read_into_arena};
use super::filter::{es_filter, filter_from};
use super::{fail, guard, guard_value, non_null, types::*, Failure};
use crate::store::{EventBatch, Subscription};

/// A subscription: a position in the log and a filter (opaque; made by
/// `es_subscribe`, released by `es_subscription_close`). It reads the store it was
/// made on, which must stay open until the subscription is closed. Used by one thread
/// at a time.
pub struct es_subscription {
    /// Borrows the `es_store` it was made on for as long as it lives: the handle
    /// counts it, and `es_close` leaves the store to the last subscription.
    sub: ManuallyDrop<Subscription<'static>>,
    /// The handle it was made on: its `users` count this subscription.
    handle: *mut es_store,
}

/// A C timeout in milliseconds: -1 no limit, 0 do not wait, > 0 that long.
fn timeout_of(timeout_ms: i64) -> Result<Option<Duration>, Failure> {
    match timeout_ms {
        -1 => Ok(None),
        ms if ms >= 0 => Ok(Some(Duration::from_millis(ms as u64))),
        ms => Err(Failure::Argument(format!(
            "timeout_ms {ms} is neither -1 (no limit) nor >= 0"
        ))),
    }
}

/// Waits until the store holds more than `position` events (`es_global_position() >
/// position`), or until `timeout_ms` milliseconds have passed (`-1`: no limit, `0`: do
/// not wait), or until `es_wake` is called on this handle; then sets
/// `*out_global_position` to the store's global position (so a timeout or a wake is
/// simply "not greater than `position`").
///
/// Works on writer and read-only handles, for appends made in this process or in
/// another. It costs no CPU while it waits: the thread sleeps on a futex in the side
/// file `<path>-shm`, which the writer changes and wakes after each sync (a read-only
/// handle that finds no side file yet looks again every 100 ms; one whose side file was
/// truncated under it looks again every 10 ms until the writer's next commit repairs
/// it; one whose side file was replaced follows the new one). It wakes as soon as
/// the append that passes `position` is acknowledged; an unsynced batch never wakes it.
///
/// Threads: any number of threads may wait on one handle; safe to call concurrently
/// with any call except `es_close` (stop waiters with `es_wake` first).
///
/// Returns `ES_OK` (also on a timeout or a wake); `ES_ERR_INVALID_ARGUMENT` when
/// `store` or `out_global_position` is NULL or `timeout_ms` is below -1; `ES_ERR_IO`
/// and `ES_ERR_CORRUPT_RECORD` when a read-only handle fails to catch up with the log;
/// `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_wait(
    store: *const es_store,
    position: u64,
    timeout_ms: i64,
    out_global_position: *mut u64,
) -> es_status {
    guard("es_wait", || {
        let handle = super::store::live(store)?;
        non_null(out_global_position, "out_global_position")?;
        let timeout = timeout_of(timeout_ms)?;
        let n = handle.wait(position, timeout)?;
        // SAFETY: non-NULL (checked) and writable (the caller's contract).
        unsafe { out_global_position.write(n) };
        Ok(())
    })
}

/// Makes every `es_wait` and `es_subscription_next` waiting on this handle (in any
/// thread) return at once with `ES_OK`: `es_wait` with the position then,
/// `es_subscription_next` with whatever is available (possibly nothing). Calls that
/// start waiting after it wait normally. Use it to stop follower threads before
/// `es_close`.
///
/// `store` NULL is a no-op; a closed handle only sets `es_last_error()`. Thread-safe;
/// never blocks.
#[no_mangle]
pub extern "C" fn es_wake(store: *const es_store) {
    guard_value("es_wake", (), || {
        if store.is_null() {
            return;
        }
        match super::store::live(store) {
            Ok(handle) => handle.wake(),
            Err(failure) => {
                fail("es_wake", failure);
            }
        }
    })
}

/// Starts a subscription that delivers, in global order, every event from global
/// position `from_position` on that `*filter` selects (NULL: every event), and sets
/// `*out_subscription` to it.
///
/// Read its events with `es_subscription_next`: first what is already stored
/// (catch-up), then new events as they are acknowledged (live), exactly once, with no
/// gap and no duplicate at the seam. To resume later, save `es_subscription_position`
/// and pass it as `from_position`. A subscription reads the store; nothing is queued
/// for it, so a slow subscriber never loses events and never slows the writer.
///
/// Ownership: the caller owns `*out_subscription` and releases it with
/// `es_subscription_close`, preferably before `es_close` of `store` (an `es_close`
/// with subscriptions open leaves the store open until the last is closed). The
/// filter is copied; the caller's filter may be freed after the call. On failure
/// `*out_subscription` is set to NULL (when `out_subscription` is not NULL).
///
/// Threads: any number of subscriptions may exist per handle, on any threads; each is
/// used by one thread at a time.
///
/// Returns `ES_OK`; `ES_ERR_INVALID_ARGUMENT` when `store` or `out_subscription` is
/// NULL, or the filter is malformed (see `es_read_all_filtered`); `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_subscribe(
    store: *const es_store,
    from_position: u64,
    filter: *const es_filter,
    out_subscription: *mut *mut es_subscription,
) -> es_status {
    guard("es_subscribe", || {
        non_null(out_subscription, "out_subscription")?;
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe { out_subscription.write(std::ptr::null_mut()) };
        // The store outlives this borrow, which is therefore given the subscription's
        // (unbounded) lifetime: the handle counts the subscription in `users`, and the
        // store is dropped only when `es_close` was called and no subscription is left.
        let handle: &'static crate::Store = super::store::live(store)?;
        // SAFETY: `filter` is NULL or a readable `es_filter` (the caller's contract).
        let filter = unsafe { filter_from(filter)? };
        let sub = Box::new(es_subscription {
            sub: ManuallyDrop::new(handle.subscribe(from_position, filter)),
            handle: store.cast_mut(),
        });
        // SAFETY: `store` is live (checked by `live`), so its shell is allocated.
        unsafe { &(*store).users }.fetch_add(1, Ordering::AcqRel);
        // SAFETY: as above, `out_subscription` is non-NULL and writable.
        unsafe { out_subscription.write(Box::into_raw(sub)) };
        Ok(())
    })
}

/// Sets `*out_events` to the subscription's next events: up to `max_count` of them at
/// once when some are available, else the first to arrive within `timeout_ms`
/// milliseconds (`-1`: no limit, `0`: do not wait). An empty result means the time ran
/// out or `es_wake` was called on the store. The subscription's position advances past
/// every event examined, matching or not; after an empty result it is the end of the
/// log as the call saw it. `max_count` 0 gives an empty result at once. One call
/// returns at most 4 MiB of records (at least one event): a caller asking for
/// `UINT64_MAX` events catches up in pages of that size, and fewer events than asked
/// never means that the subscription has caught up.
///
/// Ownership: on success the caller owns `*out_events` and releases it with `es_free`
/// (it outlives the subscription and the store). On failure `*out_events` is set to
/// `{NULL, 0, NULL}` (when `out_events` is not NULL) and the position is unchanged
/// past the last event delivered.
///
/// Threads: one thread at a time per subscription; waits cost no CPU (see `es_wait`).
///
/// Returns `ES_OK`; `ES_ERR_INVALID_ARGUMENT` when `subscription` or `out_events` is
/// NULL or `timeout_ms` is below -1; `ES_ERR_IO`; `ES_ERR_CORRUPT_RECORD`;
/// `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_subscription_next(
    subscription: *mut es_subscription,
    max_count: u64,
    timeout_ms: i64,
    out_events: *mut es_events,
) -> es_status {
    guard("es_subscription_next", || {
        clear_out(out_events)?;
        non_null(subscription, "subscription")?;
        let timeout = timeout_of(timeout_ms)?;
        // SAFETY: a live subscription from `es_subscribe`, used by this thread alone
        // (the caller's contract).
        let sub = unsafe { &mut (*subscription).sub };
        sub.store().check_process()?;
        let result = read_into_arena(|visit| {
            let mut batch = EventBatch::default();
            sub.next_batch_visit(max_count, timeout, &mut batch, Some(visit))?;
            Ok(batch)
        })?;
        // SAFETY: checked non-NULL and writable by `clear_out`.
        unsafe { out_events.write(result) };
        Ok(())
    })
}

/// The next global position the subscription will examine: save it to resume later
/// with `es_subscribe(store, saved, filter, ...)`, neither repeating nor skipping an
/// event. Never less than the `from_position` it was made with. 0 for a NULL
/// `subscription` (which also sets `es_last_error()`).
///
/// Threads: not concurrently with `es_subscription_next` on the same subscription.
#[no_mangle]
pub extern "C" fn es_subscription_position(subscription: *const es_subscription) -> u64 {
    guard_value("es_subscription_position", 0, || {
        if subscription.is_null() {
            fail(
                "es_subscription_position",
                Failure::Argument("subscription is NULL".into()),
            );
            return 0;
        }
        // SAFETY: a non-NULL `subscription` is live (the caller's contract).
        unsafe { &*subscription }.sub.position()
    })
}

/// Releases a subscription made by `es_subscribe`. NULL is a no-op. It must not be in
/// use by another thread, and must not be used afterwards. Results it returned stay
/// valid until `es_free`.
#[no_mangle]
pub extern "C" fn es_subscription_close(subscription: *mut es_subscription) {
    guard_value("es_subscription_close", (), || {
        if subscription.is_null() {
            return;
        }
        // SAFETY: a non-NULL `subscription` came from `Box::into_raw` in
        // `es_subscribe` and is released once (the caller's contract).
        let mut sub = unsafe { Box::from_raw(subscription) };
        // SAFETY: dropped once, here, before the store it borrows can be disposed of.
        unsafe { ManuallyDrop::drop(&mut sub.sub) };
        let handle = sub.handle;
        // SAFETY: the handle's shell stays allocated while a subscription counts in
        // its `users` (the store is disposed of, and the shell quarantined, only when
        // they drop to zero after `es_close`).
        let before = unsafe { &(*handle).users }.fetch_sub(1, Ordering::AcqRel);
        if before == HANDLE_CLOSING | 1 {
            // SAFETY: `es_close` was called and this was its last subscription.
            unsafe { super::store::dispose(handle, "es_subscription_close") };
        }
    })
}
