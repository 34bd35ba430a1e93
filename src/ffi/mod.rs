//! The C ABI: what `include/eventstore.h` declares (generated from this module by
//! `build.rs` with cbindgen; the doc comments here are the header's documentation).
//!
//! This layer owns the panic boundary, argument checks, the thread-local last error and
//! the memory handed to C. It decides nothing about storage: every `extern "C"`
//! function checks its arguments and then makes one call into [`crate::Store`].
//!
//! - [`types`]: the C types, constants and status codes.
//! - [`store`]: `es_open`, `es_close`, `es_append`, `es_stream_version`,
//!   `es_global_position`.
//! - [`events`]: `es_read_stream`, `es_read_all`, `es_free` and the read-result arena.
//! - [`misc`]: `es_last_error`, `es_last_conflict`, `es_status_name`, `es_version`,
//!   `es_uuid_parse`, `es_uuid_format`.
//! - [`open`]: `es_open_with` and its flags (read-only handles, must-exist).
//! - [`filter`]: `es_string`, `es_filter`, `es_read_all_filtered`.
//! - [`follow`]: `es_wait`, `es_wake`, `es_subscribe`, `es_subscription_next`,
//!   `es_subscription_position`, `es_subscription_close`.
//! - [`info`]: `es_store_info_get`, `es_set_log_callback`.
//! - [`append`]: `es_append_multi` (and `es_stream_append`).
//! - [`streams`]: `es_list_streams`, `es_free_streams`.
//! - [`events`] also has `es_read_stream_backward`, `es_read_all_backward`,
//!   `es_read_event`.

#![allow(non_camel_case_types)]
// The `extern "C"` functions take raw pointers from C and are safe to call exactly
// when their documented contract holds (as every C function's); like rustls-ffi, they
// are not marked `unsafe`, which only Rust callers would see. Each dereference has its
// `// SAFETY:` note.
#![allow(clippy::not_unsafe_ptr_arg_deref)]
// Every `unsafe` block says why it is sound (enforced here).
#![deny(clippy::undocumented_unsafe_blocks)]

// Kept apart so that rustfmt keeps this order, which is the header's order.
pub mod types;

pub mod store;

pub mod events;

pub mod misc;

pub mod open;

pub mod filter;

pub mod append;
pub mod follow;
pub mod info;

pub mod streams;

use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;
use crate::types::ExpectedVersion;

pub use self::types::*;

/// Why an `extern "C"` call failed: a store error, or a bad argument found by the
/// FFI layer itself.
#[derive(Debug)]
pub(crate) enum Failure {
    Store(Error),
    Argument(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Store(e)
    }
}

/// The status an [`Error`] is reported as.
pub(crate) fn status_of(e: &Error) -> es_status {
    match e {
        Error::WrongExpectedVersion { .. } => es_status::ES_ERR_WRONG_EXPECTED_VERSION,
        Error::StreamNotFound { .. } => es_status::ES_ERR_STREAM_NOT_FOUND,
        Error::Io { .. } => es_status::ES_ERR_IO,
        Error::CorruptRecord { .. } => es_status::ES_ERR_CORRUPT_RECORD,
        Error::InvalidHeader { .. } => es_status::ES_ERR_INVALID_HEADER,
        Error::EventTooLarge { .. } => es_status::ES_ERR_EVENT_TOO_LARGE,
        Error::InvalidArgument(_) => es_status::ES_ERR_INVALID_ARGUMENT,
        Error::Locked { .. } => es_status::ES_ERR_LOCKED,
        Error::Poisoned { .. } => es_status::ES_ERR_POISONED,
        Error::ReadOnly { .. } => es_status::ES_ERR_READ_ONLY,
        Error::DuplicateEventId { .. } => es_status::ES_ERR_DUPLICATE_EVENT_ID,
        Error::EventNotFound { .. } => es_status::ES_ERR_EVENT_NOT_FOUND,
    }
}

/// Encodes an expected version the way the C API does (`ES_EXPECTED_*`, or `>= 0`).
pub(crate) fn encode_expected(e: ExpectedVersion) -> i64 {
    match e {
        ExpectedVersion::Any => ES_EXPECTED_ANY,
        ExpectedVersion::NoStream => ES_EXPECTED_NO_STREAM,
        ExpectedVersion::StreamExists => ES_EXPECTED_STREAM_EXISTS,
        ExpectedVersion::Exact(n) => i64::try_from(n).unwrap_or(i64::MAX),
    }
}

/// Decodes a C expected version; `None` for a negative value that names no rule.
pub(crate) fn decode_expected(v: i64) -> Option<ExpectedVersion> {
    match v {
        ES_EXPECTED_ANY => Some(ExpectedVersion::Any),
        ES_EXPECTED_NO_STREAM => Some(ExpectedVersion::NoStream),
        ES_EXPECTED_STREAM_EXISTS => Some(ExpectedVersion::StreamExists),
        n if n >= 0 => Some(ExpectedVersion::Exact(n as u64)),
        _ => None,
    }
}

/// [`decode_expected`] for an argument named `what`, with the message every append
/// gives for a value that names no rule.
pub(crate) fn expected_arg(v: i64, what: &str) -> Result<ExpectedVersion, Failure> {
    decode_expected(v).ok_or_else(|| {
        Failure::Argument(format!(
            "{what} {v} is neither >= 0 nor one of ES_EXPECTED_ANY (-2), \
             ES_EXPECTED_NO_STREAM (-1), ES_EXPECTED_STREAM_EXISTS (-4)"
        ))
    })
}

/// The calling thread's record of its most recent failing call.
struct LastError {
    status: es_status,
    message: CString,
    /// `(expected, actual, stream)` in the C encoding when `status` is a version
    /// conflict.
    conflict: Option<Conflict>,
}

/// A version conflict in the C encoding: expected, actual (-1: no events), the stream.
pub(crate) type Conflict = (i64, i64, [u8; 16]);

thread_local! {
    static LAST_ERROR: RefCell<LastError> = RefCell::new(LastError {
        status: es_status::ES_OK,
        message: CString::default(),
        conflict: None,
    });
}

/// Records a failure of `function` as this thread's last error.
pub(crate) fn set_last_error(
    function: &str,
    status: es_status,
    message: &str,
    conflict: Option<Conflict>,
) {
    let text = format!("{function}: {message}").replace('\0', "\\0");
    let message = CString::new(text).unwrap_or_default();
    // `try_with`: during thread teardown the slot may be gone; the error is then lost,
    // which is all that can be done.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = LastError {
                status,
                message,
                conflict,
            };
        }
    });
}

/// Records `failure` of `function` as this thread's last error and returns its status.
pub(crate) fn fail(function: &str, failure: Failure) -> es_status {
    match failure {
        Failure::Argument(why) => {
            let status = es_status::ES_ERR_INVALID_ARGUMENT;
            set_last_error(function, status, &format!("invalid argument: {why}"), None);
            status
        }
        Failure::Store(e) => {
            let status = status_of(&e);
            let conflict = match &e {
                Error::WrongExpectedVersion {
                    stream_id,
                    expected,
                    actual,
                } => Some((
                    encode_expected(*expected),
                    actual.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX)),
                    *stream_id.as_bytes(),
                )),
                _ => None,
            };
            set_last_error(function, status, &e.to_string(), conflict);
            status
        }
    }
}

/// The text of a caught panic's payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "a panic without a message"
    }
}

/// The panic boundary of every `extern "C"` function that returns a status: runs `body`,
/// turns its failure or a caught panic into a status and this thread's last error.
pub(crate) fn guard(function: &str, body: impl FnOnce() -> Result<(), Failure>) -> es_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => es_status::ES_OK,
        Ok(Err(failure)) => fail(function, failure),
        Err(payload) => {
            let status = es_status::ES_ERR_INTERNAL;
            let text = format!(
                "internal error (a bug in libeventstore, please report it): panic: {}",
                panic_text(payload.as_ref())
            );
            set_last_error(function, status, &text, None);
            status
        }
    }
}

/// The panic boundary of functions that return a value rather than a status: a
/// caught panic gives `fallback` and sets this thread's last error.
pub(crate) fn guard_value<T>(function: &str, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            let text = format!(
                "internal error (a bug in libeventstore, please report it): panic: {}",
                panic_text(payload.as_ref())
            );
            set_last_error(function, es_status::ES_ERR_INTERNAL, &text, None);
            fallback
        }
    }
}

/// A pointer to this thread's last error message; never NULL.
pub(crate) fn last_error_ptr() -> *const std::ffi::c_char {
    static EMPTY: &CStr = c"";
    LAST_ERROR
        .try_with(|slot| match slot.try_borrow() {
            // The CString's heap buffer stays where it is until the slot is replaced
            // (the next failing call on this thread) or the thread exits.
            Ok(e) => e.message.as_ptr(),
            Err(_) => EMPTY.as_ptr(),
        })
        .unwrap_or(EMPTY.as_ptr())
}

/// This thread's last conflict, when its last failure was a version conflict.
pub(crate) fn last_conflict() -> Option<Conflict> {
    LAST_ERROR
        .try_with(|slot| {
            slot.try_borrow().ok().and_then(|e| {
                if e.status == es_status::ES_ERR_WRONG_EXPECTED_VERSION {
                    e.conflict
                } else {
                    None
                }
            })
        })
        .ok()
        .flatten()
}

/// A byte slice from a C pointer and length; `NULL` is allowed only with length 0.
///
/// # Safety
/// When `ptr` is not NULL it must point to `len` readable bytes that stay valid and
/// unchanged for `'a`.
pub(crate) unsafe fn bytes<'a>(
    ptr: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], Failure> {
    if ptr.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(Failure::Argument(format!(
            "{what} is NULL but its length is {len}"
        )));
    }
    if len > isize::MAX as usize {
        return Err(Failure::Argument(format!(
            "{what} length {len} is larger than any object"
        )));
    }
    // SAFETY: `ptr` is non-NULL and, by this function's contract, points to `len`
    // readable bytes valid for `'a`; `len <= isize::MAX` was checked above.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Fails with an argument error naming `what` when `ptr` is NULL.
pub(crate) fn non_null<T>(ptr: *const T, what: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        Err(Failure::Argument(format!("{what} is NULL")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: `last_error_ptr` returns a NUL-terminated string valid until the
        // next failing call on this thread; it is copied at once.
        unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_caught_panic_is_internal_and_named() {
        let status = guard("es_test", || panic!("boom {}", 42));
        assert_eq!(status, es_status::ES_ERR_INTERNAL);
        let text = last_error();
        assert!(text.starts_with("es_test: internal error"), "{text}");
        assert!(text.contains("boom 42"), "{text}");
        assert_eq!(guard_value("es_test2", 7u64, || panic!("x")), 7);
        assert!(last_error().starts_with("es_test2: internal error"));
    }

    #[test]
    fn every_error_maps_to_its_status() {
        use std::io;
        let id = uuid::Uuid::from_u128(1);
        let cases = [
            (
                Error::WrongExpectedVersion {
                    stream_id: id,
                    expected: ExpectedVersion::Exact(3),
                    actual: None,
                },
                es_status::ES_ERR_WRONG_EXPECTED_VERSION,
            ),
            (
                Error::StreamNotFound { stream_id: id },
                es_status::ES_ERR_STREAM_NOT_FOUND,
            ),
            (
                Error::Io {
                    context: "x".into(),
                    source: io::Error::other("y"),
                },
                es_status::ES_ERR_IO,
            ),
            (
                Error::CorruptRecord {
                    position: 1,
                    offset: 2,
                    detail: "z".into(),
                },
                es_status::ES_ERR_CORRUPT_RECORD,
            ),
            (
                Error::InvalidHeader {
                    path: "p".into(),
                    cause: crate::error::HeaderCause::NotAStore,
                },
                es_status::ES_ERR_INVALID_HEADER,
            ),
            (
                Error::EventTooLarge { size: 2, max: 1 },
                es_status::ES_ERR_EVENT_TOO_LARGE,
            ),
            (
                Error::InvalidArgument("a".into()),
                es_status::ES_ERR_INVALID_ARGUMENT,
            ),
            (Error::Locked { path: "p".into() }, es_status::ES_ERR_LOCKED),
            (
                Error::Poisoned { cause: "c".into() },
                es_status::ES_ERR_POISONED,
            ),
            (
                Error::ReadOnly { path: "p".into() },
                es_status::ES_ERR_READ_ONLY,
            ),
            (
                Error::DuplicateEventId {
                    event_id: id,
                    position: 3,
                },
                es_status::ES_ERR_DUPLICATE_EVENT_ID,
            ),
            (
                Error::EventNotFound { event_id: id },
                es_status::ES_ERR_EVENT_NOT_FOUND,
            ),
        ];
        for (e, status) in cases {
            let text = e.to_string();
            assert_eq!(fail("es_x", Failure::Store(e)), status);
            assert_eq!(last_error(), format!("es_x: {text}"));
        }
    }

    #[test]
    fn conflicts_are_recorded_in_the_c_encoding() {
        let id = uuid::Uuid::from_u128(1);
        fail(
            "es_append",
            Failure::Store(Error::WrongExpectedVersion {
                stream_id: id,
                expected: ExpectedVersion::NoStream,
                actual: Some(4),
            }),
        );
        assert_eq!(
            last_conflict(),
            Some((ES_EXPECTED_NO_STREAM, 4, *id.as_bytes()))
        );
        fail(
            "es_append",
            Failure::Store(Error::WrongExpectedVersion {
                stream_id: id,
                expected: ExpectedVersion::Exact(9),
                actual: None,
            }),
        );
        assert_eq!(last_conflict(), Some((9, -1, *id.as_bytes())));
        fail("es_append", Failure::Argument("nope".into()));
        assert_eq!(last_conflict(), None);
    }

    #[test]
    fn expected_versions_round_trip_and_reject_unknown_negatives() {
        for v in [
            ES_EXPECTED_ANY,
            ES_EXPECTED_NO_STREAM,
            ES_EXPECTED_STREAM_EXISTS,
            0,
            5,
            i64::MAX,
        ] {
            assert_eq!(encode_expected(decode_expected(v).unwrap()), v);
        }
        for v in [-3, -5, i64::MIN] {
            assert_eq!(decode_expected(v), None);
        }
    }

    #[test]
    fn nul_bytes_in_messages_do_not_lose_the_message() {
        set_last_error("es_x", es_status::ES_ERR_IO, "a\0b", None);
        assert_eq!(last_error(), "es_x: a\\0b");
    }
}
