//! The C types, constants and status codes of `include/eventstore.h`. Their layout and
//! values are the ABI: never renumber or reorder, only add.

use std::ffi::c_char;
use std::ffi::c_void;

/// Largest encoded size, in bytes, of one event record, fixed fields included:
/// an event is accepted exactly when
/// `ES_RECORD_OVERHEAD + event_type_len + metadata_len + payload_len <= ES_MAX_EVENT_SIZE`;
/// otherwise `es_append` fails with `ES_ERR_EVENT_TOO_LARGE` and writes nothing.
pub const ES_MAX_EVENT_SIZE: usize = 65536;

/// Largest event type, in bytes of UTF-8. An event type is never empty.
pub const ES_MAX_EVENT_TYPE_LEN: usize = 256;

/// Bytes a record adds around its event type, metadata and payload (fixed fields, the
/// NUL after the type, and the record's checksum). See `ES_MAX_EVENT_SIZE`.
pub const ES_RECORD_OVERHEAD: usize = 77;

/// Major version of the library this header belongs to. Equal to the first number
/// of `es_version()` (a test checks).
pub const ES_VERSION_MAJOR: u32 = 0;

/// Minor version of the library this header belongs to. Equal to the second number
/// of `es_version()`.
pub const ES_VERSION_MINOR: u32 = 1;

/// Patch version of the library this header belongs to. Equal to the third number
/// of `es_version()`.
pub const ES_VERSION_PATCH: u32 = 0;

/// `expected_version` for `es_append`: append whatever the stream's state.
pub const ES_EXPECTED_ANY: i64 = -2;

/// `expected_version` for `es_append`: the stream must have no events yet.
pub const ES_EXPECTED_NO_STREAM: i64 = -1;

/// `expected_version` for `es_append`: the stream must already have at least one
/// event, whatever its version. (Any value `>= 0` means: the stream's last version
/// must be exactly that value. Any other negative value is `ES_ERR_INVALID_ARGUMENT`.)
pub const ES_EXPECTED_STREAM_EXISTS: i64 = -4;

// The limits above are the core's, restated as literals so that cbindgen can print them.
const _: () = assert!(ES_MAX_EVENT_SIZE == crate::types::MAX_EVENT_SIZE);
const _: () = assert!(ES_MAX_EVENT_TYPE_LEN == crate::types::MAX_EVENT_TYPE_LEN);
const _: () = assert!(ES_RECORD_OVERHEAD == crate::types::RECORD_OVERHEAD);

/// The result of a call. Values are fixed forever; new codes may be added at the end,
/// so treat an unknown value like `ES_ERR_INTERNAL` and use `es_status_name()` to show it.
/// In C this is an `int32_t`; in C++ an enum whose underlying type is `int32_t`.
///
/// Every call that returns something other than `ES_OK` also sets the calling
/// thread's `es_last_error()` to a message naming the cause.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum es_status {
    /// Success.
    ES_OK = 0,
    /// NULL where a pointer is required, a count of 0, an empty, over-long or
    /// non-UTF-8 event type or one containing a NUL byte, NULL data with a non-zero
    /// length, a bad expected-version value, or a handle already closed (see
    /// `es_close`). Nothing was done.
    ES_ERR_INVALID_ARGUMENT = 1,
    /// An operating-system I/O error; the message carries the OS error text and the
    /// path. When it comes from `es_append`, the handle is poisoned (see
    /// `ES_ERR_POISONED`).
    ES_ERR_IO = 2,
    /// The file is not an event store, or has a format version this library cannot
    /// read, or its header is damaged; the message names the path and which. The file
    /// was left unchanged.
    ES_ERR_INVALID_HEADER = 3,
    /// Damaged data with valid data after it (so not a torn tail left by a crash);
    /// the message names the byte offset. The file was left unchanged.
    ES_ERR_CORRUPT_RECORD = 4,
    /// The optimistic-concurrency check of `es_append` (or of one stream of an
    /// `es_append_multi`) failed; nothing was written. The message names the stream,
    /// the expected and the actual version; `es_last_conflict()` gives both versions
    /// as numbers.
    ES_ERR_WRONG_EXPECTED_VERSION = 5,
    /// The stream has no events.
    ES_ERR_STREAM_NOT_FOUND = 6,
    /// An event's encoded record would exceed `ES_MAX_EVENT_SIZE`; the message names
    /// the size and the limit. Nothing was written.
    ES_ERR_EVENT_TOO_LARGE = 7,
    /// Another handle, in this or another process, has the store open.
    ES_ERR_LOCKED = 8,
    /// An earlier write or fsync on this handle failed; appends are refused until the
    /// store is closed and reopened (which recovers from what is on disk). Reads keep
    /// working.
    ES_ERR_POISONED = 9,
    /// A bug inside the library (a caught panic). The host process is never aborted
    /// and no Rust unwinding crosses the boundary; a panic in the middle of an append
    /// poisons the handle.
    ES_ERR_INTERNAL = 10,
    /// An append (or any write) on a handle opened with `ES_OPEN_READ_ONLY`. Nothing
    /// was written.
    ES_ERR_READ_ONLY = 11,
    /// An event id of the append is already recorded and the append is not an exact
    /// retry of the one that recorded it (see `es_append_multi`); the message names
    /// the id. Nothing was written.
    ES_ERR_DUPLICATE_EVENT_ID = 12,
    /// `es_read_event`: no event has that id.
    ES_ERR_EVENT_NOT_FOUND = 13,
}

/// An open event store: opaque, created by `es_open`, destroyed by `es_close`.
///
/// Thread safety: one `es_store` may be used from many threads at once (appends are
/// committed in groups, reads run concurrently and never wait for an fsync); only
/// `es_close` must not race with any other call on the same handle.
pub struct es_store {
    /// [`HANDLE_LIVE`] from `es_open` until `es_close`, then [`HANDLE_CLOSED`]: every
    /// call checks it on entry, so that a closed handle is refused instead of used
    /// (what this does and does not catch: `es_close`).
    pub(crate) magic: std::sync::atomic::AtomicU64,
    /// Dropped by `es_close`, which keeps the small shell around it a while longer
    /// (see `ffi::store`): calls check `magic` before they touch it.
    pub(crate) store: std::mem::ManuallyDrop<crate::Store>,
    /// Open subscriptions made on this handle, plus [`HANDLE_CLOSING`] once `es_close`
    /// was called: the store is dropped when both say so (`es_close` with no open
    /// subscription, or the last `es_subscription_close` after `es_close`).
    pub(crate) users: std::sync::atomic::AtomicU64,
}

/// The bit of `es_store::users` that `es_close` sets.
pub(crate) const HANDLE_CLOSING: u64 = 1 << 63;

/// `es_store::magic` of an open handle.
pub(crate) const HANDLE_LIVE: u64 = 0x6573_5f73_746f_7265; // "es_store"
/// `es_store::magic` of a closed handle.
pub(crate) const HANDLE_CLOSED: u64 = 0x636c_6f73_6564_2121; // "closed!!"

// One handle is shared by many C threads: the store must be `Send + Sync`.
const _: fn() = || {
    fn shared_by_threads<T: Send + Sync>() {}
    shared_by_threads::<es_store>();
};

/// A UUID as 16 bytes in RFC 4122 (big-endian, "network") order, as printed:
/// `bytes[0]` is the first two hex digits of the text form.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct es_uuid {
    pub bytes: [u8; 16],
}

/// An event to append (input to `es_append`). The library only reads it, and only
/// during the call; it keeps no pointer into it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct es_proposed_event {
    /// The event's id. All-zero: the library assigns a fresh random (v4) UUID.
    pub event_id: es_uuid,
    /// The event type: `event_type_len` bytes of UTF-8, 1 to `ES_MAX_EVENT_TYPE_LEN`
    /// of them, need not be NUL-terminated. Must not be NULL.
    pub event_type: *const c_char,
    /// Length of `event_type` in bytes, without any terminating NUL.
    pub event_type_len: usize,
    /// Opaque metadata bytes; may be NULL when `metadata_len` is 0.
    pub metadata: *const u8,
    /// Length of `metadata` in bytes.
    pub metadata_len: usize,
    /// Opaque payload bytes; may be NULL when `payload_len` is 0.
    pub payload: *const u8,
    /// Length of `payload` in bytes.
    pub payload_len: usize,
}

/// A recorded event, as returned inside an `es_events`. Every pointer in it points
/// into memory owned by that `es_events` and is valid until `es_free` is called on
/// it (also after `es_close` of the store it was read from).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct es_event {
    /// 0-based position in the whole log.
    pub global_position: u64,
    /// 0-based version within its stream.
    pub stream_version: u64,
    /// Commit time in microseconds since the Unix epoch; the same for every event of
    /// one append, and never decreasing along the log (a writer stamps no append earlier
    /// than the last one stored, whatever the wall clock says).
    pub recorded_at_us: u64,
    /// The stream the event belongs to.
    pub stream_id: es_uuid,
    /// The event's id; never all-zero.
    pub event_id: es_uuid,
    /// The event type, `event_type_len` bytes of UTF-8, also NUL-terminated for
    /// convenience.
    pub event_type: *const c_char,
    /// Length of `event_type` in bytes, without the terminating NUL.
    pub event_type_len: usize,
    /// Metadata bytes; never NULL, even when `metadata_len` is 0 (then it must not be
    /// dereferenced).
    pub metadata: *const u8,
    /// Length of `metadata` in bytes.
    pub metadata_len: usize,
    /// Payload bytes; never NULL, even when `payload_len` is 0 (then it must not be
    /// dereferenced).
    pub payload: *const u8,
    /// Length of `payload` in bytes.
    pub payload_len: usize,
}

/// A read result: `len` events at `items`, in order. It owns all memory its events
/// point to (in one allocation, however many events), stays valid after `es_close`,
/// and is released only by `es_free` (never by `free()`).
///
/// The empty value is `{NULL, 0, NULL}`: a successful read with no events gives it,
/// every failing read sets it, and `es_free` resets to it, so cleanup code may call
/// `es_free` on any `es_events` that a read was given, whatever it returned.
///
/// An `es_events` may be read from any thread, and freed on a thread other than the
/// one that read it; it must not be freed while another thread still reads it.
#[repr(C)]
#[derive(Debug)]
pub struct es_events {
    /// The events; NULL when `len` is 0.
    pub items: *const es_event,
    /// Number of events at `items`.
    pub len: usize,
    /// Private to the library: the allocation `es_free` releases.
    pub owner: *mut c_void,
}

/// Where a successful `es_append` (or one stream of an `es_append_multi`) put its
/// events. (0.2 added `deduplicated`: this layout replaces the 0.1 one.)
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct es_append_result {
    /// Global position of the first appended event; the others follow contiguously.
    pub first_global_position: u64,
    /// Stream version of the first appended event; the others follow contiguously.
    pub first_stream_version: u64,
    /// Number of events appended (the `count` passed in).
    pub count: u64,
    /// 1 when the append repeated an earlier acknowledged one exactly (same streams,
    /// same event ids, same order): nothing was written and the fields above are the
    /// earlier append's. 0 otherwise.
    pub deduplicated: u32,
}

impl From<crate::types::AppendResult> for es_append_result {
    fn from(r: crate::types::AppendResult) -> Self {
        es_append_result {
            first_global_position: r.first_global_position,
            first_stream_version: r.first_stream_version,
            count: r.count,
            deduplicated: u32::from(r.deduplicated),
        }
    }
}

/// One stream's part of an `es_append_multi`: the library only reads it, and what it
/// points to, during the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct es_stream_append {
    /// The stream to append to.
    pub stream_id: es_uuid,
    /// `ES_EXPECTED_ANY`, `ES_EXPECTED_NO_STREAM`, `ES_EXPECTED_STREAM_EXISTS`, or the
    /// stream's exact last version (`>= 0`), as for `es_append`.
    pub expected_version: i64,
    /// `count` events for this stream; must not be NULL.
    pub events: *const es_proposed_event,
    /// Number of events at `events`; must not be 0.
    pub count: usize,
}

/// What `es_list_streams` reports about one stream.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct es_stream_info {
    /// The stream's id.
    pub stream_id: es_uuid,
    /// Its last (0-based) version; its event count is `last_version + 1`.
    pub last_version: u64,
    /// Global position of its first event.
    pub first_global_position: u64,
    /// Global position of its last event.
    pub last_global_position: u64,
}

/// A stream listing: `len` entries at `items`, in order of creation. It owns its
/// memory, stays valid after `es_close`, and is released only by `es_free_streams`.
/// The empty value is `{NULL, 0, NULL}` (an empty listing, a failed call, and what
/// `es_free_streams` resets to).
#[repr(C)]
#[derive(Debug)]
pub struct es_streams {
    /// The entries; NULL when `len` is 0.
    pub items: *const es_stream_info,
    /// Number of entries at `items`.
    pub len: usize,
    /// Private to the library: the allocation `es_free_streams` releases.
    pub owner: *mut c_void,
}

impl es_streams {
    /// The empty value `{NULL, 0, NULL}`.
    pub const EMPTY: es_streams = es_streams {
        items: std::ptr::null(),
        len: 0,
        owner: std::ptr::null_mut(),
    };
}

impl es_events {
    /// The empty value `{NULL, 0, NULL}`.
    pub const EMPTY: es_events = es_events {
        items: std::ptr::null(),
        len: 0,
        owner: std::ptr::null_mut(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_macros_equal_the_crate_version() {
        assert_eq!(
            ES_VERSION_MAJOR.to_string(),
            env!("CARGO_PKG_VERSION_MAJOR")
        );
        assert_eq!(
            ES_VERSION_MINOR.to_string(),
            env!("CARGO_PKG_VERSION_MINOR")
        );
        assert_eq!(
            ES_VERSION_PATCH.to_string(),
            env!("CARGO_PKG_VERSION_PATCH")
        );
    }

    #[test]
    fn status_values_are_the_contract() {
        use es_status::*;
        let all = [
            (ES_OK, 0),
            (ES_ERR_INVALID_ARGUMENT, 1),
            (ES_ERR_IO, 2),
            (ES_ERR_INVALID_HEADER, 3),
            (ES_ERR_CORRUPT_RECORD, 4),
            (ES_ERR_WRONG_EXPECTED_VERSION, 5),
            (ES_ERR_STREAM_NOT_FOUND, 6),
            (ES_ERR_EVENT_TOO_LARGE, 7),
            (ES_ERR_LOCKED, 8),
            (ES_ERR_POISONED, 9),
            (ES_ERR_INTERNAL, 10),
            (ES_ERR_READ_ONLY, 11),
            (ES_ERR_DUPLICATE_EVENT_ID, 12),
            (ES_ERR_EVENT_NOT_FOUND, 13),
        ];
        for (status, value) in all {
            assert_eq!(status as i32, value, "{status:?}");
        }
        assert_eq!(std::mem::size_of::<es_status>(), 4);
    }

    #[test]
    fn layouts_are_what_c_sees() {
        use std::mem::{align_of, size_of};
        let word = size_of::<usize>();
        assert_eq!(size_of::<es_uuid>(), 16);
        assert_eq!(align_of::<es_uuid>(), 1);
        assert_eq!(size_of::<es_proposed_event>(), 16 + 6 * word);
        assert_eq!(size_of::<es_event>(), 24 + 32 + 6 * word);
        assert_eq!(size_of::<es_events>(), 3 * word);
        assert_eq!(size_of::<es_append_result>(), 32);
        assert_eq!(size_of::<es_stream_append>(), 24 + 2 * word);
        assert_eq!(size_of::<es_stream_info>(), 40);
        assert_eq!(size_of::<es_streams>(), 3 * word);
    }
}
