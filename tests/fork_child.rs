//! A handle copied into a child by `fork()`. Alone in its own test binary: `fork()`
//! copies only the calling thread, and a child must not inherit locks that other
//! tests' threads hold at that moment.

mod common;

use std::time::{Duration, Instant};

use common::{event, temp_store};
use eventstore::{Error, ExpectedVersion, Store};
use uuid::Uuid;

/// Threads of this process named `name` (from `/proc/self/task/*/comm`).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|c| c.trim_end() == name)
        })
        .count()
}

/// What the child does with its copy of the parent's writer; its exit code says how
/// far it got (0: every check held).
fn in_child(store: Store, go: libc::c_int, events_at_fork: u64) -> i32 {
    let mut byte = 0u8;
    // SAFETY: reads one byte into a local from the pipe the parent writes.
    if unsafe { libc::read(go, (&mut byte as *mut u8).cast(), 1) } != 1 {
        return 9;
    }
    // The parent has appended since the fork: an append through the copy would write
    // over those events at the end the copy remembers.
    match store.append(
        Uuid::from_u128(7),
        ExpectedVersion::Any,
        vec![event("FromChild", b"x")],
    ) {
        Err(Error::InvalidArgument(m)) if m.contains("fork()") => {}
        _ => return 10,
    }
    // Reads through the Rust API see the log as it was at the fork.
    if store.global_position() != events_at_fork {
        return 12;
    }
    // Closing must neither wait for the index thread (not copied into the child) nor
    // cut the file back to the copy's end.
    match store.close() {
        Ok(()) => 0,
        Err(_) => 13,
    }
}

#[test]
fn a_forked_child_neither_writes_through_nor_closes_its_parents_handle() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let stream = Uuid::from_u128(1);
    // Over a MiB of log, so that the index thread has started (the hazard of a join).
    for _ in 0..3 {
        let batch = (0..1000).map(|_| event("Before", &[7u8; 1000])).collect();
        store.append(stream, ExpectedVersion::Any, batch).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads_named("eventstore-inde") == 0 {
        assert!(Instant::now() < deadline, "the index thread never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let at_fork = store.global_position();
    let mut pipe = [0; 2];
    // SAFETY: a plain pipe(2) into a local array.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    // SAFETY: the child only runs `in_child` and leaves with `_exit`.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        let store = std::mem::ManuallyDrop::new(store);
        // SAFETY: the child's copy, used once here and never again.
        let copy = unsafe { std::ptr::read(&*store) };
        let code = in_child(copy, pipe[0], at_fork);
        // SAFETY: leaves the child without running the test harness's exit path.
        unsafe { libc::_exit(code) };
    }
    // The parent appends after the fork, then lets the child try.
    let after: Vec<_> = (0..5).map(|i| event("After", &[i; 100])).collect();
    store
        .append(stream, ExpectedVersion::Exact(at_fork - 1), after)
        .unwrap();
    // SAFETY: writes one byte from a local to the pipe.
    assert_eq!(unsafe { libc::write(pipe[1], [1u8].as_ptr().cast(), 1) }, 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child, without blocking.
        let done = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        assert!(done >= 0, "waitpid failed");
        if done == child {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: kills our own child.
            unsafe { libc::kill(child, libc::SIGKILL) };
            panic!("the child hung with its copy of the handle (closing it waited for the index thread?)");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(libc::WIFEXITED(status), "the child died: status {status}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the child's checks (see in_child)"
    );
    // The parent's handle is whole: its events, its lock, its appends.
    assert_eq!(store.global_position(), at_fork + 5);
    assert!(matches!(Store::open(&t.path), Err(Error::Locked { .. })));
    store
        .append(
            stream,
            ExpectedVersion::Exact(at_fork + 4),
            vec![event("Last", b"z")],
        )
        .unwrap();
    store.close().unwrap();
    let store = Store::open(&t.path).unwrap();
    assert_eq!(store.global_position(), at_fork + 6);
    let tail = store.read_stream(stream, at_fork, 10).unwrap();
    let types: Vec<_> = tail.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["After", "After", "After", "After", "After", "Last"]);
    assert!(tail.iter().all(|e| e.event_type != "FromChild"));
}
