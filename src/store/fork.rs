//! Handles belong to the process that opened them.
//!
//! A child made by `fork()` gets a copy of every open handle: the same file
//! descriptors (and so the writer's `flock`), a copy of the index as it was, and none
//! of the parent's threads. A writer's copy that appended would write over the
//! parent's acknowledged events at the end it remembers; one that closed would cut
//! the file back to that end and write a stale index file; one that waited for the
//! index thread would wait forever (the thread was not copied). So a handle records
//! the process generation it was opened in, and a handle from an earlier generation
//! refuses writes and leaves the files alone when closed (see `Store::close`).
//!
//! The generation counts forks: a `pthread_atfork` handler increments it in each
//! child, so checking it costs one atomic load (a `getpid` system call per append or
//! read would not be free). `fork()` runs the handler; the raw `clone` system call and
//! `vfork` do not, but their children cannot use the parent's handles in any case
//! (they share its memory until they exec).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);
static WATCH: Once = Once::new();

extern "C" fn in_child() {
    // Async-signal-safe: an atomic increment, nothing else.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// This process's generation: how many forks separate it from the first process
/// that opened a store (0 there). Starts watching for forks on first call, which
/// every open makes before it creates a handle.
pub(crate) fn generation() -> u64 {
    WATCH.call_once(|| {
        // SAFETY: registers a handler that only increments an atomic. glibc links
        // `pthread_atfork` statically into the calling object (libc_nonshared), so the
        // handler is unregistered if this library is unloaded (dlclose).
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        if rc != 0 {
            crate::log::log(
                crate::log::Level::Warn,
                &format!(
                    "pthread_atfork failed ({rc}): handles used after fork() are not detected"
                ),
            );
        }
    });
    GENERATION.load(Ordering::Relaxed)
}
