//! `es_open`, `es_close`, `es_append`, `es_stream_version`, `es_global_position`: the
//! handle's life and the write path, each a check of its arguments and one call into
//! [`crate::Store`].

use std::collections::VecDeque;
use std::ffi::{c_char, CStr, OsStr};
use std::mem::ManuallyDrop;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use uuid::Uuid;

use super::{expected_arg, fail, guard, guard_value, non_null, types::*, Failure};
use crate::store::{OpenOptions, Store};

/// Opens the event store at `path`, creating it if it does not exist, and sets
/// `*out_store` to a new handle.
///
/// `path` is a NUL-terminated file name (bytes, as the OS takes them; relative to the
/// current directory at the time of the call, and made absolute then, so that a later
/// `chdir` changes nothing). A symbolic link is followed to the store file,
/// beside which the side file (`-shm`) and index file (`-index`) are kept, so that
/// every symbolic name of a store shares them (a hard link does not: open a store by
/// the name its writer uses). A new file gets its header and is fsynced,
/// and its directory is fsynced. An existing file is recovered: a torn or corrupt
/// tail left by a crash (no valid data after it) is cut off, which is logged
/// (`es_set_log_callback`) and reported by `es_store_info_get`
/// (`recovered_bytes_dropped`); damage followed by valid data — a batch written later,
/// or one that bytes were deleted or inserted in front of, wherever it now sits (see
/// `docs/format.md`) — fails with `ES_ERR_CORRUPT_RECORD` and leaves the file
/// unchanged. A zero-length
/// file, or one holding only the first bytes of a header (a crash during creation), is
/// initialised as a new store.
///
/// The handle holds an exclusive, non-blocking lock on the file until `es_close`: a
/// second open of the same file (by any path), from this process or another, fails
/// with `ES_ERR_LOCKED` and does not disturb the first handle. The lock is an `flock`
/// on the open file: a child made by `fork()` shares it until the child calls `exec`
/// (the descriptor is close-on-exec) or exits, so a close and reopen in the parent
/// during that window can see `ES_ERR_LOCKED`. A handle belongs to the process that
/// opened it: in a child made by `fork()`, every call on an inherited handle (writer or
/// read-only) fails with `ES_ERR_INVALID_ARGUMENT` naming `fork()`, and `es_close`
/// there releases the copy without touching the files (the parent keeps its events,
/// its lock and its index file); the child opens the store again if it needs it.
/// Read-only handles (`es_open_with` with
/// `ES_OPEN_READ_ONLY`) take no lock: any number of them may be open beside the
/// writer, and they never make `es_open` fail. The writer keeps the side file
/// `<path>-shm` (created with the store's permissions, never removed) through which
/// read-only handles learn its durable end and are woken.
///
/// Ownership: the caller owns `*out_store` on success and must release it with
/// `es_close`. On any failure `*out_store` is set to NULL (when `out_store` itself is
/// not NULL).
///
/// Threads: may be called from any thread; the handle may then be used from many.
///
/// Returns `ES_OK`; `ES_ERR_INVALID_ARGUMENT` when `path` or `out_store` is NULL;
/// `ES_ERR_IO` when the file cannot be created, opened, read, or its torn tail
/// truncated and synced (message: the path and the OS error), or is not a regular file
/// (a FIFO, a device: nothing is written to it); `ES_ERR_INVALID_HEADER`
/// when the file is not an event store (message: the path and the cause: not a store
/// at all, a store of a format version this library does not read and the versions
/// it reads, or a damaged header checksum); `ES_ERR_CORRUPT_RECORD` (message: the byte
/// offset); `ES_ERR_LOCKED`; `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_open(path: *const c_char, out_store: *mut *mut es_store) -> es_status {
    guard("es_open", || {
        open_into(path, out_store, || Ok(OpenOptions::new()))
    })
}

/// The body of `es_open` and `es_open_with`: sets `*out_store` to NULL, checks `path`,
/// takes the options (`options` may refuse its own arguments), opens and hands out
/// the new handle.
pub(super) fn open_into(
    path: *const c_char,
    out_store: *mut *mut es_store,
    options: impl FnOnce() -> Result<OpenOptions, Failure>,
) -> Result<(), Failure> {
    non_null(out_store, "out_store")?;
    // SAFETY: `out_store` is non-NULL and the caller promises it is writable.
    unsafe { out_store.write(std::ptr::null_mut()) };
    non_null(path, "path")?;
    let options = options()?;
    // SAFETY: `path` is non-NULL and the caller promises a NUL-terminated string
    // that stays valid for the call.
    let path = Path::new(OsStr::from_bytes(
        unsafe { CStr::from_ptr(path) }.to_bytes(),
    ));
    let store = Store::open_with(path, options)?;
    let handle = Box::into_raw(Box::new(es_store {
        magic: AtomicU64::new(HANDLE_LIVE),
        store: ManuallyDrop::new(store),
        users: AtomicU64::new(0),
    }));
    // SAFETY: as above, `out_store` is non-NULL and writable.
    unsafe { out_store.write(handle) };
    Ok(())
}

/// Closes a store opened by `es_open` and frees what the handle holds: cuts the file
/// back to its committed data (dropping space preallocated for speed), syncs it, and
/// releases the lock. After `es_close` the file is exactly its header and its
/// committed batches.
///
/// `store` NULL is a no-op. `store` must not be used again after this call, and this
/// call must not race with any other call on the same handle (make sure other threads
/// are done with it first). Read results (`es_events`) stay valid and must still be
/// released with `es_free`.
///
/// Subscriptions still open (`es_subscribe`) keep the store alive, as SQLite's
/// `sqlite3_close_v2` keeps a connection for its unfinalised statements: the handle is
/// closed at once (calls on it are refused, see below), but the file, its lock and the
/// index are released by the last `es_subscription_close`, and those subscriptions keep
/// working until then.
///
/// A failure to cut or sync the file on close cannot lose acknowledged events; it sets
/// this thread's `es_last_error()` and is logged (see `es_set_log_callback`), the
/// handle is released anyway, and the next `es_open` recovers the file.
///
/// Misuse of a closed handle: like SQLite's `SQLITE_MISUSE` check, every `es_*` call
/// that takes an `es_store` checks a magic number in it on entry, which `es_close`
/// clears. `es_close` frees everything the store owns (index, file, lock) at once but
/// keeps the handle's small shell (a few hundred bytes) in a quarantine of the 1024 most
/// recently closed handles, freeing the oldest when it overflows; so:
/// - detected: `es_close` called again on a handle, and any call (`es_append`,
///   `es_read_*`, `es_stream_version`, `es_store_info_get`, ...) on a closed handle,
///   as long as fewer than 1024 other handles were closed since. `es_close` then does
///   nothing and sets `es_last_error()` ("store was already closed");
///   the other calls return `ES_ERR_INVALID_ARGUMENT` with that message
///   (`es_global_position` returns 0). Nothing crashes and nothing is touched.
/// - not detected: a handle closed longer ago than that (its memory may have been
///   reused, even by a new handle, which the call would then act on), a pointer that
///   never came from `es_open`, and a call racing with `es_close` on another thread:
///   these stay undefined behaviour, as the contract says.
#[no_mangle]
pub extern "C" fn es_close(store: *mut es_store) {
    guard_value("es_close", (), || {
        if store.is_null() {
            return;
        }
        // SAFETY: a non-NULL `store` came from `es_open` (the caller's contract) and is
        // either live or in the quarantine (still allocated) when the misuse is
        // detectable; reading its atomic magic is then sound.
        let magic = unsafe { &(*store).magic };
        if let Err(found) = magic.compare_exchange(
            HANDLE_LIVE,
            HANDLE_CLOSED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            fail("es_close", Failure::Argument(misuse(found)));
            return;
        }
        // SAFETY: as above, the shell is allocated.
        let users = unsafe { &(*store).users };
        if users.fetch_or(HANDLE_CLOSING, Ordering::AcqRel) == 0 {
            // SAFETY: the handle was live, no subscription borrows its store, and by
            // the contract no other call is using it.
            unsafe { dispose(store, "es_close") };
        }
        // Otherwise the last `es_subscription_close` disposes of the store.
    })
}

/// Closes the store of a handle that `es_close` has closed and that no subscription
/// uses any more, and puts its shell in the quarantine.
///
/// # Safety
/// `store` came from `es_open`, its magic says closed, nothing borrows its store, and
/// this is called once for it.
pub(crate) unsafe fn dispose(store: *mut es_store, caller: &'static str) {
    // SAFETY: the caller's promises: the store is taken exactly once, and no later
    // call touches it (the magic says closed).
    let inner = unsafe { ManuallyDrop::take(&mut (*store).store) };
    quarantine(store);
    if let Err(e) = inner.close() {
        fail(caller, Failure::Store(e));
    }
}

/// How many closed handles' shells are kept, so that their misuse is detected.
const QUARANTINE: usize = 1024;

/// Keeps the shell of a closed handle (its `store` already taken) allocated for a
/// while, freeing the oldest one when more than [`QUARANTINE`] are kept.
fn quarantine(shell: *mut es_store) {
    // Addresses, so that the static is `Send`; they are only turned back into boxes.
    static KEPT: Mutex<VecDeque<usize>> = Mutex::new(VecDeque::new());
    let oldest = {
        let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        kept.push_back(shell as usize);
        if kept.len() > QUARANTINE {
            kept.pop_front()
        } else {
            None
        }
    };
    if let Some(old) = oldest {
        // SAFETY: `old` came from `Box::into_raw` in `es_open`, its store was taken by
        // `es_close` (`ManuallyDrop`, so dropping the box does not drop it again), and it
        // left the quarantine exactly once.
        drop(unsafe { Box::from_raw(old as *mut es_store) });
    }
}

/// The message for a handle whose magic is not that of a live one.
fn misuse(found: u64) -> String {
    if found == HANDLE_CLOSED {
        "store was already closed by es_close; a closed handle must not be used again".into()
    } else {
        "store is not a live handle from es_open (closed long ago, or never one)".into()
    }
}

/// The store behind a handle from C: NULL and a closed handle are argument errors
/// (see `es_close` for what is detected).
pub(crate) fn live<'a>(store: *const es_store) -> Result<&'a Store, Failure> {
    non_null(store, "store")?;
    // SAFETY: a non-NULL `store` came from `es_open` (the caller's contract) and is live
    // or quarantined, so reading its atomic magic is sound.
    let magic = unsafe { (*store).magic.load(Ordering::Acquire) };
    if magic != HANDLE_LIVE {
        return Err(Failure::Argument(misuse(magic)));
    }
    // SAFETY: the handle is live, so its store has not been taken; the contract forbids
    // `es_close` to run meanwhile, so the reference stays valid for the call.
    let inner: &Store = unsafe { &(*store).store };
    // A copy inherited through fork() is refused whole: reads too, since a lock held
    // by a parent's thread at the fork would never be released in the child.
    inner.check_process()?;
    Ok(inner)
}

/// Appends `count` events to the stream `*stream_id` as one atomic batch, if the
/// stream's state satisfies `expected_version`.
///
/// `expected_version` is `ES_EXPECTED_ANY`, `ES_EXPECTED_NO_STREAM`,
/// `ES_EXPECTED_STREAM_EXISTS`, or a version `>= 0` that must equal the stream's last
/// (0-based) version; any other negative value is `ES_ERR_INVALID_ARGUMENT`.
///
/// All or nothing: every event is validated before anything is written, and when
/// `ES_OK` is returned the whole batch is on stable storage (fsynced). Versions and
/// positions are contiguous. Events with an all-zero `event_id` get a fresh v4 UUID.
///
/// Idempotent retries: event ids are unique in a store, for every event ever written.
/// If the stream and the event ids are exactly those of an earlier acknowledged append
/// (also one made with `es_append_multi` with this one stream), in the same order,
/// nothing is written and `ES_OK` is returned with that append's original result and
/// `deduplicated = 1`, whatever `expected_version` says now. Any other reuse of a
/// recorded id is `ES_ERR_DUPLICATE_EVENT_ID`; the same id twice in `events` is
/// `ES_ERR_INVALID_ARGUMENT`. An all-zero id gets a fresh UUID, so such an append is
/// never recognised as a retry: give ids to appends you may retry.
///
/// Ownership: the library only reads `events` (and what they point to) during the
/// call and keeps no pointer into them. `out_result` may be NULL; otherwise it is
/// written only on success.
///
/// Threads: many threads may append to (and read from) one handle at once; their
/// appends are committed in groups sharing one fsync.
///
/// Returns `ES_OK`; `ES_ERR_INVALID_ARGUMENT` (NULL or closed `store`, NULL `stream_id`
/// or `events`; `count` 0; an empty, over-long, NULL or non-UTF-8 event type, or one
/// containing a NUL byte; NULL metadata or payload with a non-zero length; a bad
/// `expected_version`; an event id twice); `ES_ERR_EVENT_TOO_LARGE`;
/// `ES_ERR_WRONG_EXPECTED_VERSION` (see `es_last_conflict`); `ES_ERR_DUPLICATE_EVENT_ID`
/// (message: the id); `ES_ERR_IO` when a write or fsync fails, which poisons the
/// handle (the batch may or may not be present after reopening, whole, never in
/// part), and likewise, with nothing written, when the file was deleted or cut
/// below its events by someone else while open; `ES_ERR_POISONED` after such a failure, until the store is reopened;
/// `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_append(
    store: *mut es_store,
    stream_id: *const es_uuid,
    expected_version: i64,
    events: *const es_proposed_event,
    count: usize,
    out_result: *mut es_append_result,
) -> es_status {
    guard("es_append", || {
        let handle = live(store)?;
        non_null(stream_id, "stream_id")?;
        non_null(events, "events")?;
        if count == 0 {
            return Err(Failure::Argument(
                "count is 0: an append needs at least one event".into(),
            ));
        }
        let expected = expected_arg(expected_version, "expected_version")?;
        // SAFETY: `events` is non-NULL and the caller promises `count` readable
        // elements whose pointers are valid for the call.
        let refs = unsafe { super::append::proposed_refs(events, count, "events")? };
        // SAFETY: `stream_id` is non-NULL and readable (the caller's contract).
        let stream = unsafe { Uuid::from_bytes((*stream_id).bytes) };
        let result = handle.append_refs(stream, expected, &refs)?;
        if !out_result.is_null() {
            // SAFETY: `out_result` is non-NULL and the caller promises it is writable.
            unsafe { out_result.write(result.into()) };
        }
        Ok(())
    })
}

/// Sets `*out_version` to the last (0-based) version of the stream `*stream_id`, so
/// that the next append to it gets version `*out_version + 1`.
///
/// `*out_version` is written only on success. Threads: safe to call concurrently with
/// any call on the same handle except `es_close`; it never waits for an fsync.
///
/// Returns `ES_OK`; `ES_ERR_STREAM_NOT_FOUND` when the stream has no events;
/// `ES_ERR_INVALID_ARGUMENT` when `store`, `stream_id` or `out_version` is NULL, or
/// `store` is closed;
/// `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_stream_version(
    store: *const es_store,
    stream_id: *const es_uuid,
    out_version: *mut u64,
) -> es_status {
    guard("es_stream_version", || {
        let handle = live(store)?;
        non_null(stream_id, "stream_id")?;
        non_null(out_version, "out_version")?;
        // SAFETY: `stream_id` is non-NULL and readable (the caller's contract).
        let stream = unsafe { Uuid::from_bytes((*stream_id).bytes) };
        let version = handle
            .stream_version(&stream)
            .ok_or(crate::Error::StreamNotFound { stream_id: stream })?;
        // SAFETY: `out_version` is non-NULL and the caller promises it is writable.
        unsafe { out_version.write(version) };
        Ok(())
    })
}

/// The number of events in the whole log, which is the global position the next
/// appended event will get. 0 for a NULL or closed `store` (which also sets
/// `es_last_error()`).
///
/// Threads: safe to call concurrently with any call on the same handle except
/// `es_close`; it never waits for an fsync.
#[no_mangle]
pub extern "C" fn es_global_position(store: *const es_store) -> u64 {
    guard_value("es_global_position", 0, || match live(store) {
        Ok(handle) => handle.global_position(),
        Err(failure) => {
            fail("es_global_position", failure);
            0
        }
    })
}
