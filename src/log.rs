//! The library's one way to log. Every message goes to [`log`], which
//! - emits a `tracing` event (target `eventstore`): a Rust program's subscriber, if it
//!   installed one, gets it; the library installs nothing global for Rust users;
//! - and calls the process-wide C callback if one is set (`es_set_log_callback`), so
//!   that C and Python programs see what recovery cut off, why a handle was poisoned,
//!   and that a close failed.
//!
//! What is logged: recovery cutting off a torn tail (warn, with the bytes dropped), a
//! handle poisoned by a failed write or sync (error), a failed close (error).

use std::ffi::{c_char, c_void, CString};
use std::sync::Mutex;

/// How serious a message is; the values are those of the C API (`es_log_fn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

/// A C log callback: `fn(context, level, message)`, `message` NUL-terminated and
/// valid only during the call.
pub type CallbackFn = unsafe extern "C" fn(*mut c_void, i32, *const c_char);

/// The C callback and its context pointer (kept as an address: the library never
/// dereferences it, it only hands it back).
#[derive(Clone, Copy)]
struct Callback {
    f: CallbackFn,
    context: usize,
}

static CALLBACK: Mutex<Option<Callback>> = Mutex::new(None);

/// Sets (or, with `None`, removes) the process-wide C callback. A message being
/// delivered on another thread at the same time may still reach the previous one.
pub fn set_callback(f: Option<CallbackFn>, context: *mut c_void) {
    let new = f.map(|f| Callback {
        f,
        context: context as usize,
    });
    *CALLBACK.lock().unwrap_or_else(|p| p.into_inner()) = new;
}

/// Logs `message` at `level`: a `tracing` event, and the C callback if one is set.
pub fn log(level: Level, message: &str) {
    match level {
        Level::Error => tracing::error!(target: "eventstore", "{message}"),
        Level::Warn => tracing::warn!(target: "eventstore", "{message}"),
        Level::Info => tracing::info!(target: "eventstore", "{message}"),
        Level::Debug => tracing::debug!(target: "eventstore", "{message}"),
    }
    // Copied out of the lock before the call, so that a callback that (against the
    // contract) sets a callback itself cannot deadlock.
    let callback = *CALLBACK.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(cb) = callback {
        let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
        // SAFETY: `cb.f` was given by the C program through `es_set_log_callback`, whose
        // contract is that it may be called from any thread with the context it was
        // given and a NUL-terminated message valid for the call, which `text` is.
        unsafe { (cb.f)(cb.context as *mut c_void, level as i32, text.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static SEEN: Mutex<Vec<(i32, String, usize)>> = Mutex::new(Vec::new());
    static CALLS: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn record(context: *mut c_void, level: i32, message: *const c_char) {
        CALLS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: `log` passes a NUL-terminated string valid for the call.
        let text = unsafe { std::ffi::CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned();
        SEEN.lock().unwrap().push((level, text, context as usize));
    }

    #[test]
    fn the_callback_gets_level_message_and_context_until_removed() {
        set_callback(Some(record), 0x1234 as *mut c_void);
        log(Level::Warn, "cut a\0b");
        log(Level::Error, "poisoned");
        set_callback(None, std::ptr::null_mut());
        log(Level::Info, "nobody hears this");
        // Other unit tests of this binary may log meanwhile: look at these messages only.
        let seen: Vec<_> = SEEN
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m, _)| m.starts_with("cut a") || m == "poisoned" || m.contains("nobody"))
            .cloned()
            .collect();
        assert_eq!(
            seen,
            vec![
                (2, "cut a\\0b".to_string(), 0x1234),
                (1, "poisoned".to_string(), 0x1234)
            ]
        );
        assert!(CALLS.load(Ordering::SeqCst) >= 2);
    }
}
