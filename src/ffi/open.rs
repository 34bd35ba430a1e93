//! `es_open_with` and its flags: read-only handles in any process, and opening only
//! a store that exists. One check of the arguments and one call into
//! [`crate::Store::open_with`].

use std::ffi::c_char;

use super::{guard, types::*, Failure};
use crate::store::OpenOptions;

/// `es_open_with` flag: open a read-only handle. It never writes, truncates or locks
/// the store file; it may be open beside a writer in this or another process, from a
/// user who may only read the file (mode 0444, another user's store, a read-only
/// directory). It sees exactly the acknowledged events; appends on it return
/// `ES_ERR_READ_ONLY`. It creates nothing.
pub const ES_OPEN_READ_ONLY: u32 = 1u32;

/// `es_open_with` flag: fail with `ES_ERR_IO` (the OS error `ENOENT`) instead of
/// creating a store that does not exist.
pub const ES_OPEN_MUST_EXIST: u32 = 2u32;

const KNOWN_FLAGS: u32 = ES_OPEN_READ_ONLY | ES_OPEN_MUST_EXIST;

/// Opens the event store at `path` as `flags` say and sets `*out_store` to a new
/// handle. `es_open(path, out)` is `es_open_with(path, 0, out)`: see `es_open` for
/// creation, recovery and the writer's lock.
///
/// `flags` is 0 or a bitwise OR of:
/// - `ES_OPEN_READ_ONLY`: a read-only handle. The file is opened read-only and never
///   modified, truncated or locked against the writer, so it works on a file mode 0444,
///   on another user's store, in a read-only directory, and beside a live writer in
///   this or another process (the writer is never slowed or blocked by it; any number
///   of read-only handles may be open). It sees every event whose `es_append` returned
///   `ES_OK` before a read started, and never an event that is not yet durable (a batch
///   written but not yet synced is invisible), never part of a batch. A torn or garbage
///   tail left by a crashed writer is ignored, not repaired. Beside a live writer it
///   reads the writer's durable end from the side file `<path>-shm`; if that file
///   cannot be read there (missing, unreadable, truncated or overwritten by someone
///   else, or not the live writer's because it could not open it), the open (or a
///   later read) fails with `ES_ERR_IO` saying why, rather than risk showing an
///   unsynced batch or hiding acknowledged ones; the writer's next commit repairs a
///   damaged or deleted side file. It never creates anything: a
///   missing file is `ES_ERR_IO` (ENOENT); a zero-length file is an empty store.
///   Appends on it return `ES_ERR_READ_ONLY`.
/// - `ES_OPEN_MUST_EXIST`: a missing file is `ES_ERR_IO` (ENOENT) instead of being
///   created.
///
/// Ownership: the caller owns `*out_store` on success and releases it with
/// `es_close` (for a read-only handle that closes the file and touches nothing). On
/// any failure `*out_store` is set to NULL (when `out_store` itself is not NULL).
///
/// Threads: may be called from any thread; the handle may then be used from many.
///
/// Returns `ES_OK`; `ES_ERR_INVALID_ARGUMENT` when `path` or `out_store` is NULL or
/// `flags` has an unknown bit; `ES_ERR_IO` (message: the path and the OS error);
/// `ES_ERR_INVALID_HEADER`; `ES_ERR_CORRUPT_RECORD` (damage before valid data, also
/// for a read-only handle); `ES_ERR_LOCKED` (writers only); `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_open_with(
    path: *const c_char,
    flags: u32,
    out_store: *mut *mut es_store,
) -> es_status {
    guard("es_open_with", || {
        super::store::open_into(path, out_store, || {
            if flags & !KNOWN_FLAGS != 0 {
                return Err(Failure::Argument(format!(
                    "flags {flags:#x} has unknown bits {:#x} (known: ES_OPEN_READ_ONLY \
                     0x1, ES_OPEN_MUST_EXIST 0x2)",
                    flags & !KNOWN_FLAGS
                )));
            }
            let mut options = OpenOptions::new();
            if flags & ES_OPEN_READ_ONLY != 0 {
                options = options.read_only();
            }
            if flags & ES_OPEN_MUST_EXIST != 0 {
                options = options.must_exist();
            }
            Ok(options)
        })
    })
}
