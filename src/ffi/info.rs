//! `es_store_info_get` and `es_set_log_callback`: what a store can say about itself,
//! and where the library's log messages go. Each a check of its arguments and one call
//! into [`crate::Store::info`] or [`crate::log`].

use std::ffi::{c_char, c_void};

use super::{guard, guard_value, non_null, store::live, types::*};

/// Log level of `es_log_fn`: a failure (a handle poisoned, a failed close).
pub const ES_LOG_ERROR: i32 = 1;
/// Log level of `es_log_fn`: something was repaired or dropped (recovery cut off a torn
/// tail).
pub const ES_LOG_WARN: i32 = 2;
/// Log level of `es_log_fn`: information.
pub const ES_LOG_INFO: i32 = 3;
/// Log level of `es_log_fn`: detail for debugging.
pub const ES_LOG_DEBUG: i32 = 4;

const _: () = assert!(ES_LOG_ERROR == crate::log::Level::Error as i32);
const _: () = assert!(ES_LOG_WARN == crate::log::Level::Warn as i32);
const _: () = assert!(ES_LOG_INFO == crate::log::Level::Info as i32);
const _: () = assert!(ES_LOG_DEBUG == crate::log::Level::Debug as i32);

/// Facts about an open store, filled in by `es_store_info_get`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct es_store_info {
    /// The format version of the store file's header.
    pub format_version: u32,
    /// 1 for a handle opened with `ES_OPEN_READ_ONLY`, else 0.
    pub read_only: u32,
    /// 1 when the handle refuses appends after a failed write or fsync
    /// (`ES_ERR_POISONED`), else 0.
    pub poisoned: u32,
    /// Events in the log: the global position the next event gets.
    pub event_count: u64,
    /// Streams with at least one event.
    pub stream_count: u64,
    /// Bytes of the file that hold data: its 32-byte header and its committed batches
    /// (the file may be longer while open: space preallocated for speed).
    pub data_bytes: u64,
    /// Bytes this handle's `es_open` cut off the end of the file while recovering it (a
    /// tail torn by a crash, garbage appended to the file, a second store concatenated
    /// to it, preallocated zeros); 0 when it cut nothing. Each cut is also logged
    /// (`es_set_log_callback`, level `ES_LOG_WARN`).
    pub recovered_bytes_dropped: u64,
    /// Heap memory the in-memory index holds, in bytes.
    pub index_bytes: u64,
}

/// Sets `*out_info` to facts about the store: its format version, whether it is
/// poisoned, how many events and streams it holds, its data size, what this handle's
/// recovery cut off when it opened the file, and the memory of its index.
///
/// `*out_info` is written only on success. Threads: safe to call concurrently with any
/// call on the same handle except `es_close`; it never waits for an fsync. The facts
/// are taken at one moment; appends on other threads may change them right after.
///
/// Returns `ES_OK`; `ES_ERR_INVALID_ARGUMENT` when `store` or `out_info` is NULL, or
/// `store` is closed (see `es_close`); `ES_ERR_INTERNAL`.
#[no_mangle]
pub extern "C" fn es_store_info_get(
    store: *const es_store,
    out_info: *mut es_store_info,
) -> es_status {
    guard("es_store_info_get", || {
        let handle = live(store)?;
        non_null(out_info, "out_info")?;
        let info = handle.info();
        // SAFETY: `out_info` is non-NULL and the caller promises it is writable.
        unsafe {
            out_info.write(es_store_info {
                format_version: u32::from(info.format_version),
                read_only: u32::from(info.read_only),
                poisoned: u32::from(info.poisoned),
                event_count: info.event_count,
                stream_count: info.stream_count,
                data_bytes: info.data_bytes,
                recovered_bytes_dropped: info.recovered_bytes_dropped,
                index_bytes: info.index_bytes,
            })
        };
        Ok(())
    })
}

/// A log callback: receives `context` as given to `es_set_log_callback`, the level
/// (`ES_LOG_ERROR` 1, `ES_LOG_WARN` 2, `ES_LOG_INFO` 3, `ES_LOG_DEBUG` 4) and a
/// NUL-terminated UTF-8 message, valid only during the call (copy it to keep it).
pub type es_log_fn =
    Option<unsafe extern "C" fn(context: *mut c_void, level: i32, message: *const c_char)>;

/// Sets the process-wide log callback: from now on the library calls `fn(context,
/// level, message)` for everything it logs — recovery cutting off a torn tail (warn:
/// the path, the byte offset and the bytes dropped), a handle poisoned by a failed
/// write or fsync (error), a failed close (error). `fn` NULL removes the callback: the
/// library is then silent (the default). Rust programs see the same messages as
/// `tracing` events (target `eventstore`).
///
/// The callback may be called from any thread, including several at once, and while
/// `es_open`, `es_append` or `es_close` is running: it must be thread-safe, must not
/// call back into the library, and should return quickly. `context` is passed through
/// untouched; the library never dereferences it. A message being delivered on another
/// thread while the callback is replaced may still reach the previous one: keep the
/// previous `context` valid until those calls are done (for example, set the callback
/// once at start-up).
///
/// Threads: may be called from any thread.
#[no_mangle]
pub extern "C" fn es_set_log_callback(f: es_log_fn, context: *mut c_void) {
    guard_value("es_set_log_callback", (), || {
        crate::log::set_callback(f, context)
    })
}
