//! The lock seen from a second process. Alone in its own test binary: a child spawned
//! while another test closes a store would inherit that store's descriptor between
//! fork and exec, and briefly hold its lock.

mod common;

use std::path::Path;

use common::{append_each, temp_store};
use eventstore::{Error, Store};
use uuid::Uuid;

const CHILD_ENV: &str = "EVENTSTORE_TEST_LOCK_CHILD";

/// Run by `a_second_process_is_locked_out` in a child process.
#[test]
#[ignore = "helper: runs only as the child of a_second_process_is_locked_out"]
fn lock_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    match Store::open(Path::new(&path)) {
        Err(Error::Locked { .. }) => std::process::exit(42),
        Ok(store) => {
            let n = store.global_position();
            std::process::exit(if n == 1 { 43 } else { 44 })
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(45)
        }
    }
}

#[test]
fn a_second_process_is_locked_out() {
    let t = temp_store();
    let child = |path: &Path| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "lock_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, path)
            .status()
            .unwrap()
            .code()
    };
    let store = Store::open(&t.path).unwrap();
    append_each(&store, &[Uuid::new_v4()]);
    assert_eq!(child(&t.path), Some(42), "the child must see Locked");
    drop(store);
    assert_eq!(
        child(&t.path),
        Some(43),
        "after close the child opens and sees the event"
    );
}
