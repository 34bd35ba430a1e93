//! `es_last_error`, `es_last_conflict`, `es_last_conflict_stream`, `es_status_name`, `es_version`,
//! `es_uuid_parse`, `es_uuid_format`: functions that need no store.

use std::ffi::{c_char, CStr};

use uuid::Uuid;

use super::{fail, guard, guard_value, last_conflict, last_error_ptr, non_null, types::*, Failure};

/// A message naming the cause of the most recent failing `es_*` call on the calling
/// thread, prefixed with the function's name: for an I/O error the operation, the
/// path and the OS error text; for a version conflict the stream, the expected and
/// the actual version; for corruption the byte offset; for a too-large event its
/// size and the limit. The empty string when no call on this thread has failed yet.
///
/// Never NULL. The string is owned by the library and is thread-local: it is valid
/// until the next failing `es_*` call on the same thread (successful calls leave it as
/// it is) or until the thread exits; copy it to keep it. Do not free it. Each thread
/// has its own, so read it on the thread that made the failing call (bindings for
/// runtimes that move work between OS threads must pin the thread around the pair of
/// calls).
#[no_mangle]
pub extern "C" fn es_last_error() -> *const c_char {
    last_error_ptr()
}

/// When the most recent failing `es_*` call on the calling thread failed with
/// `ES_ERR_WRONG_EXPECTED_VERSION` (an `es_append`, or the stream of an
/// `es_append_multi` whose check failed: the message names it), sets `*out_expected` to
/// the expected version it was given (in the `expected_version` encoding of `es_append`: `>= 0` or an
/// `ES_EXPECTED_*` value) and `*out_actual` to the stream's last version at the time
/// (-1 when the stream had no events), and returns `ES_OK`. Bindings use it to build a
/// structured conflict error without parsing `es_last_error()`.
///
/// Either output pointer may be NULL (that value is not written). Outputs are written
/// only on success. This function never changes the thread's last error, whatever it
/// returns.
///
/// Returns `ES_OK`; `ES_ERR_INVALID_ARGUMENT` when the thread's last failure was not a
/// version conflict (or there was none).
#[no_mangle]
pub extern "C" fn es_last_conflict(out_expected: *mut i64, out_actual: *mut i64) -> es_status {
    guard_value("es_last_conflict", es_status::ES_ERR_INTERNAL, || {
        let Some((expected, actual, _)) = last_conflict() else {
            return es_status::ES_ERR_INVALID_ARGUMENT;
        };
        if !out_expected.is_null() {
            // SAFETY: non-NULL, and the caller promises it is writable.
            unsafe { out_expected.write(expected) };
        }
        if !out_actual.is_null() {
            // SAFETY: non-NULL, and the caller promises it is writable.
            unsafe { out_actual.write(actual) };
        }
        es_status::ES_OK
    })
}

/// When the most recent failing `es_*` call on the calling thread failed with
/// `ES_ERR_WRONG_EXPECTED_VERSION`, copies the 16 bytes of the stream whose check
/// failed into `out_stream` (the `es_append`'s stream, or for an `es_append_multi` the
/// one of its streams that conflicted, as `es_last_error()` names it) and returns
/// `ES_OK`. With `es_last_conflict` it gives a binding the whole conflict without
/// parsing the message.
///
/// `out_stream` must point to 16 writable bytes (an `es_uuid`'s `bytes`); it is
/// written only on success. This function never changes the thread's last error,
/// whatever it returns. Thread-safe (the record is the calling thread's own).
///
/// Returns `ES_OK`; `ES_ERR_INVALID_ARGUMENT` when `out_stream` is NULL (the last
/// error is then left as it was too), or the thread's last failure was not a version
/// conflict (or there was none).
#[no_mangle]
pub extern "C" fn es_last_conflict_stream(out_stream: *mut u8) -> es_status {
    guard_value(
        "es_last_conflict_stream",
        es_status::ES_ERR_INTERNAL,
        || {
            if out_stream.is_null() {
                return es_status::ES_ERR_INVALID_ARGUMENT;
            }
            let Some((_, _, stream)) = last_conflict() else {
                return es_status::ES_ERR_INVALID_ARGUMENT;
            };
            // SAFETY: non-NULL, and the caller promises 16 writable bytes.
            unsafe { std::ptr::copy_nonoverlapping(stream.as_ptr(), out_stream, 16) };
            es_status::ES_OK
        },
    )
}

/// The name of a status value as a static NUL-terminated string: `"ES_OK"`,
/// `"ES_ERR_IO"`, ...; `"ES_UNKNOWN"` for a value that is not an `es_status`.
/// Never NULL; never free it. Thread-safe.
#[no_mangle]
pub extern "C" fn es_status_name(status: i32) -> *const c_char {
    let name: &'static CStr = match status {
        0 => c"ES_OK",
        1 => c"ES_ERR_INVALID_ARGUMENT",
        2 => c"ES_ERR_IO",
        3 => c"ES_ERR_INVALID_HEADER",
        4 => c"ES_ERR_CORRUPT_RECORD",
        5 => c"ES_ERR_WRONG_EXPECTED_VERSION",
        6 => c"ES_ERR_STREAM_NOT_FOUND",
        7 => c"ES_ERR_EVENT_TOO_LARGE",
        8 => c"ES_ERR_LOCKED",
        9 => c"ES_ERR_POISONED",
        10 => c"ES_ERR_INTERNAL",
        11 => c"ES_ERR_READ_ONLY",
        12 => c"ES_ERR_DUPLICATE_EVENT_ID",
        13 => c"ES_ERR_EVENT_NOT_FOUND",
        _ => c"ES_UNKNOWN",
    };
    name.as_ptr()
}

/// The library's version, `"MAJOR.MINOR.PATCH"` (e.g. `"0.1.0"`), as a static
/// NUL-terminated string; it agrees with `ES_VERSION_MAJOR`, `ES_VERSION_MINOR` and
/// `ES_VERSION_PATCH` of the header the library was built with. Compare the two to
/// detect a header/library mismatch at run time. Never NULL; never free it.
/// Thread-safe. The ABI is not promised stable before 1.0.
#[no_mangle]
pub extern "C" fn es_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => panic!("the crate version contains a NUL"),
        };
    VERSION.as_ptr()
}

/// Parses the 36-character hyphenated hex form of a UUID
/// (`"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"`, either case) in the NUL-terminated
/// `text` into `*out`. Any other length or form is rejected.
///
/// `*out` is written only on success. Thread-safe.
///
/// Returns `ES_OK`; `ES_ERR_INVALID_ARGUMENT` when `text` or `out` is NULL, or `text`
/// is not such a UUID.
#[no_mangle]
pub extern "C" fn es_uuid_parse(text: *const c_char, out: *mut es_uuid) -> es_status {
    guard("es_uuid_parse", || {
        non_null(text, "text")?;
        non_null(out, "out")?;
        // SAFETY: `text` is non-NULL and the caller promises a NUL-terminated string.
        let text = unsafe { CStr::from_ptr(text) }.to_bytes();
        let hyphens_at = [8, 13, 18, 23];
        let well_formed = text.len() == 36
            && text.iter().enumerate().all(|(i, &c)| {
                if hyphens_at.contains(&i) {
                    c == b'-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
        let parsed = if well_formed {
            Uuid::try_parse_ascii(text).ok()
        } else {
            None
        };
        let id = parsed.ok_or_else(|| {
            Failure::Argument(format!(
                "{:?} is not a hyphenated UUID (36 characters, 8-4-4-4-12 hex digits)",
                String::from_utf8_lossy(&text[..text.len().min(64)])
            ))
        })?;
        // SAFETY: `out` is non-NULL and the caller promises it is writable.
        unsafe {
            out.write(es_uuid {
                bytes: *id.as_bytes(),
            })
        };
        Ok(())
    })
}

/// Writes the lower-case hyphenated form of `*id` (36 characters and a NUL) to `out`,
/// which must have room for 37 bytes. Thread-safe.
///
/// When `id` is NULL, `out` (if not NULL) is set to the empty string; when `out` is
/// NULL nothing is written. Either case sets `es_last_error()`.
#[no_mangle]
pub extern "C" fn es_uuid_format(id: *const es_uuid, out: *mut c_char) {
    guard_value("es_uuid_format", (), || {
        if out.is_null() {
            fail("es_uuid_format", Failure::Argument("out is NULL".into()));
            return;
        }
        if id.is_null() {
            // SAFETY: `out` is non-NULL and has room for 37 bytes (the contract).
            unsafe { out.write(0) };
            fail("es_uuid_format", Failure::Argument("id is NULL".into()));
            return;
        }
        // SAFETY: `id` is non-NULL and readable (the caller's contract).
        let id = Uuid::from_bytes(unsafe { (*id).bytes });
        let mut text = [0u8; 37];
        id.hyphenated().encode_lower(&mut text[..36]);
        // SAFETY: `out` has room for 37 bytes (the contract); `text` is 37 bytes
        // ending in NUL, and the two do not overlap (`text` is on this stack frame).
        unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), out.cast::<u8>(), 37) };
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_round_trips_and_rejects_other_forms() {
        let mut id = es_uuid::default();
        let text = c"67E55044-10b1-426f-9247-bb680e5fe0c8";
        assert_eq!(es_uuid_parse(text.as_ptr(), &mut id), es_status::ES_OK);
        let mut out = [1 as c_char; 37];
        es_uuid_format(&id, out.as_mut_ptr());
        // SAFETY: `es_uuid_format` wrote a NUL-terminated string into `out`.
        let back = unsafe { CStr::from_ptr(out.as_ptr()) };
        assert_eq!(
            back.to_str().unwrap(),
            "67e55044-10b1-426f-9247-bb680e5fe0c8"
        );
        for bad in [
            c"67e5504410b1426f9247bb680e5fe0c8",
            c"{67e55044-10b1-426f-9247-bb680e5fe0c8}",
            c"67e55044-10b1-426f-9247-bb680e5fe0c",
            c"67e55044-10b1-426f-9247-bb680e5fe0c8a",
            c"67e55044+10b1-426f-9247-bb680e5fe0c8",
            c"g7e55044-10b1-426f-9247-bb680e5fe0c8",
            c"",
        ] {
            assert_eq!(
                es_uuid_parse(bad.as_ptr(), &mut id),
                es_status::ES_ERR_INVALID_ARGUMENT,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn version_string_is_the_crate_version() {
        // SAFETY: `es_version` returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(es_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn status_names_cover_every_value() {
        let name = |s: i32| {
            // SAFETY: `es_status_name` returns a static NUL-terminated string.
            unsafe { CStr::from_ptr(es_status_name(s)) }
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(name(es_status::ES_OK as i32), "ES_OK");
        assert_eq!(name(es_status::ES_ERR_INTERNAL as i32), "ES_ERR_INTERNAL");
        assert_eq!(name(14), "ES_UNKNOWN");
        assert_eq!(name(i32::MAX), "ES_UNKNOWN");
        assert_eq!(name(-1), "ES_UNKNOWN");
        for s in [
            es_status::ES_ERR_READ_ONLY,
            es_status::ES_ERR_DUPLICATE_EVENT_ID,
            es_status::ES_ERR_EVENT_NOT_FOUND,
        ] {
            assert_eq!(format!("{s:?}"), name(s as i32));
        }
        for s in 0..=11 {
            assert_ne!(name(s), "ES_UNKNOWN");
            assert_eq!(format!("{:?}", status_from(s)), name(s));
        }
    }

    fn status_from(v: i32) -> es_status {
        use es_status::*;
        [
            ES_OK,
            ES_ERR_INVALID_ARGUMENT,
            ES_ERR_IO,
            ES_ERR_INVALID_HEADER,
            ES_ERR_CORRUPT_RECORD,
            ES_ERR_WRONG_EXPECTED_VERSION,
            ES_ERR_STREAM_NOT_FOUND,
            ES_ERR_EVENT_TOO_LARGE,
            ES_ERR_LOCKED,
            ES_ERR_POISONED,
            ES_ERR_INTERNAL,
            ES_ERR_READ_ONLY,
        ][v as usize]
    }
}
