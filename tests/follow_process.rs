//! Following the log from other processes (issue 10): real processes, not threads.
//!
//! The test binary re-runs itself as a child; `ES_FOLLOW_CHILD` selects what the child
//! does in `follow_child_entry`:
//! - `writer`: appends batches of 1-4 events (types `Even`/`Odd` by position parity,
//!   1 ms apart) until killed, or `ES_END` batches and then one `EvenEnd` event.
//! - `reader`: a read-only handle subscribed from `ES_FROM` (filter: prefix
//!   `ES_PREFIX` if set); prints `EV position event-id type` for every delivered event
//!   and stops after the `EvenEnd` event or after `ES_STOP_AFTER` events, then prints
//!   `POSITION p` (its saved position).
//! - `count`: opens read-only, prints `COUNT n` (global position and read_all length).
//! - `idle`: opens read-only, prints `READY n`, waits for more than `n` events, prints
//!   `WOKE m cpu_us` with its own CPU time spent in the wait.
//! - `nobody`: runs as user `nobody`: opens read-only, checks appends are refused,
//!   waits for `ES_WANT` events, prints `SAW n`.

mod common;
mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{arm, event, open_held};
use eventstore::{Error, ExpectedVersion, Filter, OpenOptions, Store};
use uuid::Uuid;

const MODE: &str = "ES_FOLLOW_CHILD";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn read_only(path: &Path) -> Store {
    Store::open_with(path, OpenOptions::new().read_only()).expect("open read-only")
}

fn cpu_micros() -> u64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(u.ru_utime) + tv(u.ru_stime)
}

#[test]
fn follow_child_entry() {
    let Some(mode) = env(MODE) else {
        return;
    };
    let path = PathBuf::from(env("ES_PATH").expect("ES_PATH"));
    let out = std::io::stdout();
    match mode.as_str() {
        "writer" => {
            let store = Store::open(&path).expect("writer open");
            println!("OPENED {}", store.global_position());
            let streams: Vec<Uuid> = (1..=3).map(Uuid::from_u128).collect();
            let end: Option<u64> = env("ES_END").map(|v| v.parse().unwrap());
            let mut i = 0u64;
            loop {
                if end == Some(i) {
                    store
                        .append(
                            streams[0],
                            ExpectedVersion::Any,
                            vec![event("EvenEnd", b"")],
                        )
                        .unwrap();
                    println!("ENDED {}", store.global_position());
                    return;
                }
                let first = store.global_position();
                let n = 1 + (i % 4) as usize;
                let evs = (0..n)
                    .map(|k| {
                        let ty = if (first + k as u64).is_multiple_of(2) {
                            "Even"
                        } else {
                            "Odd"
                        };
                        event(ty, &i.to_le_bytes())
                    })
                    .collect();
                store
                    .append(streams[(i % 3) as usize], ExpectedVersion::Any, evs)
                    .unwrap();
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        "reader" => {
            let store = read_only(&path);
            let from: u64 = env("ES_FROM").map_or(0, |v| v.parse().unwrap());
            let filter = env("ES_PREFIX").map_or(Filter::all(), |p| Filter::prefixes([p]));
            let stop_after: Option<usize> = env("ES_STOP_AFTER").map(|v| v.parse().unwrap());
            let mut sub = store.subscribe(from, filter);
            let mut n = 0usize;
            let mut lock = out.lock();
            writeln!(lock, "READY").unwrap();
            lock.flush().unwrap();
            'outer: loop {
                let max = if stop_after.is_some() { 7 } else { 100 };
                let batch = sub.next_batch(max, Some(Duration::from_secs(60))).unwrap();
                assert!(!batch.is_empty(), "no event for 60 s");
                for e in batch.iter() {
                    writeln!(
                        lock,
                        "EV {} {} {}",
                        e.global_position, e.event_id, e.event_type
                    )
                    .unwrap();
                    n += 1;
                    if e.event_type == "EvenEnd" {
                        break 'outer;
                    }
                }
                if stop_after.is_some_and(|s| n >= s) {
                    break;
                }
            }
            writeln!(lock, "POSITION {}", sub.position()).unwrap();
        }
        "count" => {
            let store = read_only(&path);
            let n = store.global_position();
            let read = store.read_all(0, u64::MAX).unwrap().len();
            println!("COUNT {n} {read}");
        }
        "idle" => {
            let store = read_only(&path);
            let n = store.global_position();
            println!("READY {n}");
            std::io::stdout().flush().unwrap();
            let before = cpu_micros();
            let m = store.wait(n, Some(Duration::from_secs(60))).unwrap();
            let spent = cpu_micros() - before;
            println!("WOKE {m} {spent}");
        }
        "nobody" => {
            // SAFETY: plain system call.
            assert_ne!(unsafe { libc::geteuid() }, 0, "runs as nobody");
            let store = read_only(&path);
            match store.append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("X", b"")]) {
                Err(Error::ReadOnly { .. }) => {}
                other => panic!("expected ReadOnly, got {other:?}"),
            }
            let want: u64 = env("ES_WANT").unwrap().parse().unwrap();
            println!("READY {}", store.global_position());
            std::io::stdout().flush().unwrap();
            let mut sub = store.subscribe(0, Filter::all());
            let mut seen = 0u64;
            while seen < want {
                let b = sub.next_batch(1000, Some(Duration::from_secs(30))).unwrap();
                assert!(!b.is_empty(), "timed out at {seen} of {want}");
                for (i, e) in b.iter().enumerate() {
                    assert_eq!(e.global_position, seen + i as u64);
                }
                seen += b.len() as u64;
            }
            println!("SAW {seen}");
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn spawn(mode: &str, path: &Path, envs: &[(&str, String)]) -> Child {
    let mut cmd = child_command(mode, path, envs);
    cmd.spawn().expect("spawn child")
}

fn child_command(mode: &str, path: &Path, envs: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(support::child_exe());
    cmd.args([
        "follow_child_entry",
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(MODE, mode)
    .env("ES_PATH", path)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// The child's stdout lines, as they come, on a channel.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    support::stdout_lines(child)
}

fn expect_line(rx: &mpsc::Receiver<String>, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line starting with {prefix}"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.trim().to_string();
        }
    }
}

/// `(position, event id, type)` of every `EV` line until the child exits, and its
/// final `POSITION`.
fn events_of(child: Child, rx: mpsc::Receiver<String>) -> (Vec<(u64, String, String)>, u64) {
    let mut evs = Vec::new();
    let mut position = None;
    for line in rx.iter() {
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("EV") => evs.push((
                parts.next().unwrap().parse().unwrap(),
                parts.next().unwrap().to_string(),
                parts.next().unwrap().to_string(),
            )),
            Some("POSITION") => position = Some(parts.next().unwrap().parse().unwrap()),
            _ => {}
        }
    }
    let status = wait_child(child);
    assert!(status.success(), "reader failed: {status:?}");
    (evs, position.expect("a POSITION line"))
}

fn wait_child(mut child: Child) -> std::process::ExitStatus {
    child.wait().unwrap()
}

fn scratch() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("es-follow-")
        .tempdir_in(if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        })
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn readers_follow_a_writer_killed_and_restarted_exactly_once_in_order() {
    let _serial = serial();
    let dir = scratch();
    let path = dir.path().join("log.store");
    {
        let w = Store::open(&path).unwrap();
        for i in 0..50u64 {
            let ty = if i % 2 == 0 { "Even" } else { "Odd" };
            w.append(
                Uuid::from_u128(1),
                ExpectedVersion::Any,
                vec![event(ty, b"")],
            )
            .unwrap();
        }
    }
    // Readers in their own processes: all of it, only "Even*", and one that stops
    // part-way and is resumed from its saved position by another process.
    let mut full = spawn("reader", &path, &[]);
    let full_rx = lines(&mut full);
    let mut even = spawn("reader", &path, &[("ES_PREFIX", "Even".into())]);
    let even_rx = lines(&mut even);
    expect_line(&full_rx, "READY");
    expect_line(&even_rx, "READY");
    let mut w1 = spawn("writer", &path, &[]);
    let w1_rx = lines(&mut w1);
    expect_line(&w1_rx, "OPENED");
    // A reader that starts while the writer appends: catch-up, then live.
    std::thread::sleep(Duration::from_millis(100));
    let mut part = spawn("reader", &path, &[("ES_STOP_AFTER", "300".into())]);
    let part_rx = lines(&mut part);
    std::thread::sleep(Duration::from_millis(250));
    w1.kill().unwrap(); // SIGKILL, mid-stream
    w1.wait().unwrap();
    let (first_part, saved) = events_of(part, part_rx);
    assert!(first_part.len() >= 300);
    let mut rest = spawn("reader", &path, &[("ES_FROM", saved.to_string())]);
    let rest_rx = lines(&mut rest);
    expect_line(&rest_rx, "READY");
    let mut w2 = spawn("writer", &path, &[("ES_END", "150".into())]);
    let w2_rx = lines(&mut w2);
    expect_line(&w2_rx, "OPENED");
    expect_line(&w2_rx, "ENDED");
    assert!(wait_child(w2).success());

    let store = read_only(&path);
    let all: Vec<(u64, String, String)> = store
        .read_all(0, u64::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.global_position, e.event_id.to_string(), e.event_type))
        .collect();
    assert!(all.len() > 50 + 150, "{} events", all.len());
    let (got, end) = events_of(full, full_rx);
    assert_eq!(got, all, "the full reader saw everything, once, in order");
    assert_eq!(end, all.len() as u64);
    let (got, _) = events_of(even, even_rx);
    let want: Vec<_> = all
        .iter()
        .filter(|e| e.2.starts_with("Even"))
        .cloned()
        .collect();
    assert_eq!(got, want, "the filtered reader saw exactly its events");
    let (second_part, _) = events_of(rest, rest_rx);
    let mut joined = first_part;
    assert_eq!(saved, joined.last().unwrap().0 + 1);
    joined.extend(second_part);
    assert_eq!(
        joined, all,
        "a resumed subscription neither repeats nor skips"
    );
}

#[test]
fn a_batch_written_but_not_synced_is_invisible_to_another_process() {
    let _serial = serial();
    let dir = scratch();
    let path = dir.path().join("held.store");
    let (writer, gate) = open_held(&path);
    let s = Uuid::new_v4();
    writer
        .append(s, ExpectedVersion::Any, vec![event("A", b"")])
        .unwrap();
    // A follower that is already waiting in another process.
    let mut idle = spawn("idle", &path, &[]);
    let idle_rx = lines(&mut idle);
    assert_eq!(expect_line(&idle_rx, "READY"), "1");
    let (written_rx, go_tx) = arm(&gate);
    std::thread::scope(|scope| {
        let appending = scope.spawn(|| {
            writer
                .append(
                    s,
                    ExpectedVersion::Any,
                    vec![event("B", b""), event("C", b"")],
                )
                .unwrap()
        });
        written_rx.recv().unwrap();
        let mut count = spawn("count", &path, &[]);
        let count_rx = lines(&mut count);
        let counted = expect_line(&count_rx, "COUNT");
        let counted_ok = wait_child(count).success();
        let woken_early = idle_rx.recv_timeout(Duration::from_millis(200)).ok();
        go_tx.send(()).unwrap();
        assert_eq!(
            counted, "1 1",
            "a reader process opened while the batch is written but not synced"
        );
        assert!(counted_ok);
        assert_eq!(
            woken_early, None,
            "the waiting follower was not woken by the unsynced batch"
        );
        appending.join().unwrap();
    });
    let woke = expect_line(&idle_rx, "WOKE");
    assert_eq!(woke.split_whitespace().next(), Some("3"));
    assert!(wait_child(idle).success());
}

#[test]
fn an_idle_reader_process_uses_no_cpu_and_wakes_on_the_next_append() {
    let _serial = serial();
    let dir = scratch();
    let path = dir.path().join("idle.store");
    let writer = Store::open(&path).unwrap();
    writer
        .append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("A", b"")])
        .unwrap();
    let mut idle = spawn("idle", &path, &[]);
    let pid = idle.id() as libc::pid_t;
    let rx = lines(&mut idle);
    assert_eq!(expect_line(&rx, "READY"), "1");
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    writer
        .append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("B", b"")])
        .unwrap();
    let woke = expect_line(&rx, "WOKE");
    let latency = t0.elapsed();
    let mut parts = woke.split_whitespace();
    assert_eq!(parts.next(), Some("2"));
    let waiting_cpu_us: u64 = parts.next().unwrap().parse().unwrap();
    // The child's whole life, from the parent's side.
    let mut status = 0;
    // SAFETY: wait4 on our own child's pid with valid out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    let total_cpu_us = tv(usage.ru_utime) + tv(usage.ru_stime);
    eprintln!(
        "idle reader: {waiting_cpu_us} us CPU while waiting 2 s, {total_cpu_us} us in all; \
         woke {latency:?} after the append started"
    );
    assert!(
        waiting_cpu_us < 20_000,
        "a waiting reader must not poll: {waiting_cpu_us} us of CPU in 2 s"
    );
    assert!(latency < Duration::from_secs(2));
    // `idle` was reaped by wait4 above; forget the Child without waiting again.
    std::mem::forget(idle);
}

/// Runs `cmd` as user `nobody` (uid/gid 65534).
fn as_nobody(cmd: &mut Command) -> &mut Command {
    cmd.uid(65534).gid(65534)
}

fn running_as_root() -> bool {
    // SAFETY: plain system call.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn readers_on_a_0444_file_and_a_read_only_directory_as_another_user() {
    let _serial = serial();
    if !running_as_root() {
        eprintln!(
            "SKIP readers_on_a_0444_file_and_a_read_only_directory_as_another_user: \
             needs root to run a child as another user"
        );
        return;
    }
    let dir = scratch();
    // 1. A 0444 store (and side file) of another user, followed beside its live writer.
    let path = dir.path().join("ro.store");
    let writer = Store::open(&path).unwrap();
    let s = Uuid::new_v4();
    for _ in 0..10 {
        writer
            .append(s, ExpectedVersion::Any, vec![event("A", b"x")])
            .unwrap();
    }
    for p in [path.clone(), {
        let mut x = path.clone().into_os_string();
        x.push("-shm");
        PathBuf::from(x)
    }] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    let mut cmd = child_command("nobody", &path, &[("ES_WANT", "25".into())]);
    let mut child = as_nobody(&mut cmd).spawn().unwrap();
    let rx = lines(&mut child);
    assert_eq!(expect_line(&rx, "READY"), "10");
    for _ in 0..15 {
        writer
            .append(s, ExpectedVersion::Any, vec![event("B", b"y")])
            .unwrap();
    }
    assert_eq!(expect_line(&rx, "SAW"), "25");
    assert!(wait_child(child).success());
    drop(writer);

    // 2. A read-only directory with no side file in it, and no writer: nothing can be
    // created, the store still reads.
    let rodir = dir.path().join("rodir");
    std::fs::create_dir(&rodir).unwrap();
    let path = rodir.join("r.store");
    {
        let w = Store::open(&path).unwrap();
        for _ in 0..7 {
            w.append(s, ExpectedVersion::Any, vec![event("C", b"z")])
                .unwrap();
        }
    }
    let mut shm = path.clone().into_os_string();
    shm.push("-shm");
    std::fs::remove_file(&shm).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&rodir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut cmd = child_command("nobody", &path, &[("ES_WANT", "7".into())]);
    let mut child = as_nobody(&mut cmd).spawn().unwrap();
    let rx = lines(&mut child);
    assert_eq!(expect_line(&rx, "READY"), "7");
    assert_eq!(expect_line(&rx, "SAW"), "7");
    assert!(wait_child(child).success());
    assert!(!Path::new(&shm).exists(), "the reader created nothing");
    std::fs::set_permissions(&rodir, std::fs::Permissions::from_mode(0o755)).unwrap();
}
