//! An outside check of the side file `<path>-shm` (docs/format.md): what readers and
//! the writer do when someone else deletes, truncates, fills with garbage or replaces
//! it while they run. Real processes: a `SIGBUS` kills the process that takes it, so
//! the writer and the readers run as children of the test, driven line by line over
//! their standard input, and the test checks how each one ended.
//!
//! The rules probed: no process crashes; a reader never sees an event that no append
//! acknowledged, never misses an acknowledged one; wake-ups work again after the
//! writer's next commit.
//!
//! Child protocol (`ES_SIDE_CHILD` = `writer` or `reader`, `ES_PATH`): one command a
//! line on stdin, one answer a line on stdout:
//! - `APPEND n` (writer): appends n events in one batch, answers `DONE p` (the new
//!   global position) or `ERR message`.
//! - `COUNT` (reader): answers `SEEN n m` (global position, events read from 0) or
//!   `ERR message`.
//! - `WAIT n ms` (reader): waits for more than n events, answers `WOKE m` or
//!   `ERR message`.
//! - `MULTI` (writer): one multi-stream append of 3 events (the first one turns a
//!   version-1 store into version 2), answers `DONE p` or `ERR message`.
//! - `OPEN` (reader): (re)opens its read-only handle, answers `OPENED n` or `ERR`.

mod support;

use std::io::{BufRead, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eventstore::{ExpectedVersion, OpenOptions, ProposedEvent, Store};
use support::{child, kill9, scratch, serial};
use uuid::Uuid;

const MODE: &str = "ES_SIDE_CHILD";

fn side(path: &Path) -> PathBuf {
    eventstore::store::side_file_path(path)
}

#[test]
fn side_child_entry() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let path = PathBuf::from(std::env::var("ES_PATH").unwrap());
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let read_only = || Store::open_with(&path, OpenOptions::new().read_only());
    let mut store = match mode.as_str() {
        "writer" => Some(Store::open(&path).unwrap()),
        _ => read_only().ok(),
    };
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    let stream = Uuid::from_u128(7);
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match (words[0], &store) {
            ("OPEN", _) => {
                store = None;
                match read_only() {
                    Ok(s) => {
                        let n = s.global_position();
                        store = Some(s);
                        format!("OPENED {n}")
                    }
                    Err(e) => format!("ERR {e}"),
                }
            }
            (_, None) => "ERR no handle".to_string(),
            ("APPEND", Some(s)) => {
                let n: usize = words[1].parse().unwrap();
                let events = (0..n)
                    .map(|_| ProposedEvent {
                        event_id: Uuid::new_v4(),
                        event_type: "E".into(),
                        metadata: vec![],
                        payload: vec![1; 40],
                    })
                    .collect();
                match s.append(stream, ExpectedVersion::Any, events) {
                    Ok(r) => format!("DONE {}", r.last().unwrap().global_position + 1),
                    Err(e) => format!("ERR {e}"),
                }
            }
            ("MULTI", Some(s)) => {
                let events: Vec<ProposedEvent> = (0..3).map(|_| support_event()).collect();
                let refs: Vec<_> = events.iter().map(ProposedEvent::as_ref).collect();
                let parts = [
                    eventstore::StreamAppend {
                        stream_id: Uuid::from_u128(0xa),
                        expected_version: ExpectedVersion::Any,
                        events: &refs[..1],
                    },
                    eventstore::StreamAppend {
                        stream_id: Uuid::from_u128(0xb),
                        expected_version: ExpectedVersion::Any,
                        events: &refs[1..],
                    },
                ];
                match s.append_multi(&parts) {
                    Ok(r) => format!("DONE {}", r[1].first_global_position + r[1].count),
                    Err(e) => format!("ERR {e}"),
                }
            }
            ("COUNT", Some(s)) => match s.read_all(0, u64::MAX) {
                Ok(all) => {
                    for (i, e) in all.iter().enumerate() {
                        assert_eq!(e.global_position, i as u64, "positions are contiguous");
                    }
                    format!("SEEN {} {}", s.global_position(), all.len())
                }
                Err(e) => format!("ERR {e}"),
            },
            ("WAIT", Some(s)) => {
                let n: u64 = words[1].parse().unwrap();
                let ms: u64 = words[2].parse().unwrap();
                match s.wait(n, Some(Duration::from_millis(ms))) {
                    Ok(m) => format!("WOKE {m}"),
                    Err(e) => format!("ERR {e}"),
                }
            }
            (other, _) => panic!("unknown command {other}"),
        };
        writeln!(out, "{answer}").unwrap();
        out.flush().unwrap();
    }
}

/// A child driven over stdin.
struct Proc {
    child: Child,
    stdin: ChildStdin,
    rx: mpsc::Receiver<String>,
}

impl Proc {
    fn start(mode: &str, path: &Path) -> Proc {
        Proc::start_as(mode, path, None)
    }

    /// [`Proc::start`], as user and group `uid` when given (the test runs as root).
    fn start_as(mode: &str, path: &Path, uid: Option<u32>) -> Proc {
        let mut cmd = child("side_child_entry", &[(MODE, mode.into())]);
        if let Some(uid) = uid {
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, uid);
        }
        let mut child = cmd
            .env("ES_PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let rx = support::stdout_lines(&mut child);
        let mut p = Proc { child, stdin, rx };
        p.expect("READY");
        p
    }

    /// The next answer; panics (naming how the child ended) if none comes in 30 s.
    fn answer(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let got = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                // The test harness prints its own lines; ours are upper-case words.
                Ok(line) if !line.starts_with(|c: char| c.is_ascii_uppercase()) => continue,
                other => break other,
            }
        };
        match got {
            Ok(line) => line,
            Err(_) => {
                let status = self.child.try_wait().unwrap();
                panic!(
                    "no answer from the child; it {}",
                    match status {
                        Some(s) => match s.signal() {
                            Some(sig) => format!("was killed by signal {sig}"),
                            None => format!("exited: {s}"),
                        },
                        None => "still runs (it hangs)".into(),
                    }
                )
            }
        }
    }

    fn expect(&mut self, prefix: &str) -> String {
        let line = self.answer();
        match line.strip_prefix(prefix) {
            Some(rest) => rest.trim().to_string(),
            None => panic!("expected {prefix}, got {line}"),
        }
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        self.answer()
    }

    fn append(&mut self, n: usize) -> u64 {
        let line = self.ask(&format!("APPEND {n}"));
        line.strip_prefix("DONE ")
            .unwrap_or_else(|| panic!("append: {line}"))
            .parse()
            .unwrap()
    }

    /// `Ok((global position, events read))` or `Err(message)`.
    fn count(&mut self) -> Result<(u64, u64), String> {
        let line = self.ask("COUNT");
        match line.strip_prefix("SEEN ") {
            Some(rest) => {
                let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                assert_eq!(v[0], v[1], "the position and the events read agree");
                Ok((v[0], v[1]))
            }
            None => Err(line),
        }
    }

    /// Ends the child by closing its stdin; it must exit cleanly (no signal).
    fn finish(mut self) {
        drop(self.stdin);
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "the child ended with {status:?} (signal {:?})",
            status.signal()
        );
    }

    fn kill(mut self) {
        kill9(self.child.id());
        let _ = self.child.wait();
    }
}

/// What a reader says after damage to the side file, while the writer has acknowledged
/// `acked` events: an error (documented: the durable end is unknown) or exactly
/// `acked` events, never more (an unacknowledged event) nor fewer (a missed one).
fn check_reader(reader: &mut Proc, acked: u64, when: &str) {
    match reader.count() {
        Ok((n, _)) => assert_eq!(n, acked, "{when}: the reader sees {n} of {acked}"),
        Err(e) => assert!(
            e.contains("-shm"),
            "{when}: an error names the side file: {e}"
        ),
    }
}

/// After damage: the writer's next commit makes every reader exact again, and a reader
/// waiting for the commit after that is woken by it.
fn check_recovers(writer: &mut Proc, readers: &mut [&mut Proc], acked: u64) -> u64 {
    let acked_now = writer.append(2);
    assert_eq!(acked_now, acked + 2);
    for r in readers.iter_mut() {
        assert_eq!(
            r.count(),
            Ok((acked_now, acked_now)),
            "after the next commit"
        );
    }
    for r in readers.iter_mut() {
        writeln!(r.stdin, "WAIT {acked_now} 20000").unwrap();
        r.stdin.flush().unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let acked_next = writer.append(1);
    for r in readers.iter_mut() {
        assert_eq!(r.expect("WOKE"), acked_next.to_string());
    }
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "woken by the commit, not by the timeout ({:?})",
        t0.elapsed()
    );
    acked_next
}

fn damage_scenario(damage: impl Fn(&Path)) {
    let _serial = serial();
    let dir = scratch();
    let path = dir.path().join("s.store");
    let mut writer = Proc::start("writer", &path);
    let acked = writer.append(3);
    let mut reader = Proc::start("reader", &path);
    assert_eq!(reader.count(), Ok((3, 3)));
    damage(&side(&path));
    check_reader(&mut reader, acked, "right after the damage");
    // The writer commits over the damaged page: neither process may crash.
    let acked = writer.append(2);
    check_reader(&mut reader, acked, "after a commit over the damage");
    // A reader that opens now, beside the writer.
    let mut late = Proc::start("reader", &path);
    let _ = late.ask("OPEN");
    let acked = check_recovers(&mut writer, &mut [&mut reader, &mut late], acked);
    assert_eq!(acked, 8);
    writer.finish();
    reader.finish();
    late.finish();
}

#[test]
fn a_side_file_truncated_to_zero_under_its_mappings_crashes_nobody() {
    damage_scenario(|shm| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(shm)
            .unwrap()
            .set_len(0)
            .unwrap()
    });
}

#[test]
fn a_side_file_truncated_to_half_a_page_crashes_nobody() {
    damage_scenario(|shm| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(shm)
            .unwrap()
            .set_len(2048)
            .unwrap()
    });
}

#[test]
fn a_side_file_filled_with_garbage_misleads_nobody() {
    damage_scenario(|shm| {
        let mut rng = support::Rng::new(support::seed());
        let garbage: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
        std::fs::write(shm, garbage).unwrap();
    });
}

#[test]
fn a_side_file_deleted_while_a_writer_and_readers_run() {
    damage_scenario(|shm| std::fs::remove_file(shm).unwrap());
}

#[test]
fn a_side_file_replaced_by_another_file_while_a_writer_and_readers_run() {
    damage_scenario(|shm| {
        let tmp = shm.with_extension("new");
        std::fs::write(&tmp, vec![0u8; 4096]).unwrap();
        std::fs::rename(&tmp, shm).unwrap();
    });
}

#[test]
fn a_reader_outlives_two_writers_and_a_deleted_side_file() {
    let _serial = serial();
    let dir = scratch();
    let path = dir.path().join("s.store");
    let mut w1 = Proc::start("writer", &path);
    assert_eq!(w1.append(2), 2);
    let mut reader = Proc::start("reader", &path);
    assert_eq!(reader.count(), Ok((2, 2)));
    // The first writer dies without closing; someone removes its side file.
    w1.kill();
    std::fs::remove_file(side(&path)).unwrap();
    assert_eq!(reader.count(), Ok((2, 2)), "no writer: the valid prefix");
    // A second writer makes a new side file: the reader must follow it, and wake.
    let mut w2 = Proc::start("writer", &path);
    let acked = check_recovers(&mut w2, &mut [&mut reader], 2);
    w2.kill();
    // A third writer, after a SIGKILL, with the side file left as the second left it.
    let mut w3 = Proc::start("writer", &path);
    let acked = check_recovers(&mut w3, &mut [&mut reader], acked);
    assert_eq!(acked, 2 + 3 + 3);
    w3.finish();
    reader.finish();
}

#[test]
fn a_stale_side_file_of_another_store_is_taken_over_by_the_writer() {
    let _serial = serial();
    let dir = scratch();
    let other = dir.path().join("other.store");
    let path = dir.path().join("s.store");
    {
        let o = Store::open(&other).unwrap();
        o.append(Uuid::new_v4(), ExpectedVersion::Any, vec![support_event()])
            .unwrap();
        // Left behind as a dead writer leaves it (the store is closed, the page stays).
    }
    {
        let s = Store::open(&path).unwrap();
        s.append(Uuid::new_v4(), ExpectedVersion::Any, vec![support_event()])
            .unwrap();
    }
    std::fs::copy(side(&other), side(&path)).unwrap();
    // No writer: the foreign page is ignored.
    let mut reader = Proc::start("reader", &path);
    assert_eq!(reader.count(), Ok((1, 1)));
    let mut writer = Proc::start("writer", &path);
    check_recovers(&mut writer, &mut [&mut reader], 1);
    writer.finish();
    reader.finish();
}

#[test]
fn a_fifo_in_place_of_the_side_file_hangs_nobody() {
    let _serial = serial();
    let dir = scratch();
    let path = dir.path().join("s.store");
    {
        let s = Store::open(&path).unwrap();
        s.append(Uuid::new_v4(), ExpectedVersion::Any, vec![support_event()])
            .unwrap();
    }
    std::fs::remove_file(side(&path)).unwrap();
    let fifo = std::ffi::CString::new(side(&path).into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    // No writer: a reader opens (the answer comes, the open did not block on the FIFO).
    refused_beside_a_writer_without_a_side_file(&path);
}

/// With a store of one event whose side file the writer cannot use: a reader opens
/// while no writer runs; beside a writer (which runs without a side file) it is
/// refused with an error naming the side file, never shown unsynced data; after the
/// writer, it sees every event.
fn refused_beside_a_writer_without_a_side_file(path: &Path) {
    let mut reader = Proc::start("reader", path);
    assert_eq!(reader.count(), Ok((1, 1)));
    let mut writer = Proc::start("writer", path);
    assert_eq!(writer.append(1), 2);
    let e = reader
        .count()
        .expect_err("refused beside a writer without a side file");
    assert!(e.contains("-shm"), "{e}");
    writer.finish();
    assert_eq!(reader.count(), Ok((2, 2)));
    reader.finish();
}

/// A symbolic link planted where the side file goes (a shared directory) is never
/// followed: the file it points to is left byte for byte as it was, the writer runs
/// without a side file, and readers beside it are refused with an error naming it.
#[test]
fn a_symlink_in_place_of_the_side_file_is_not_followed() {
    let _serial = serial();
    let dir = scratch();
    let path = dir.path().join("s.store");
    let victim = dir.path().join("victim");
    let precious: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(&victim, &precious).unwrap();
    std::os::unix::fs::symlink(&victim, side(&path)).unwrap();
    {
        let s = Store::open(&path).unwrap();
        s.append(Uuid::new_v4(), ExpectedVersion::Any, vec![support_event()])
            .unwrap();
    }
    refused_beside_a_writer_without_a_side_file(&path);
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        precious,
        "the link's target is untouched"
    );
    assert!(std::fs::symlink_metadata(side(&path))
        .unwrap()
        .file_type()
        .is_symlink());
}

fn support_event() -> ProposedEvent {
    ProposedEvent {
        event_id: Uuid::new_v4(),
        event_type: "E".into(),
        metadata: vec![],
        payload: vec![],
    }
}

/// Read-only handles across the version 1 to 2 header upgrade (the 0.1 fixture, then
/// its first multi-stream append), with the writer SIGKILLed at varying moments around
/// the rewrite: a reader opened before sees either none or all of the batch, never
/// part of it, never an error that stays; after a new writer's recovery every reader
/// agrees with it.
#[test]
fn readers_across_the_v1_to_v2_upgrade_with_the_writer_killed_around_it() {
    let _serial = serial();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v0.1.store");
    let rounds = support::env_usize("ES_UPGRADE_ROUNDS", 6);
    let mut rng = support::Rng::new(support::seed() ^ 0x0102);
    for round in 0..rounds {
        let dir = scratch();
        let path = dir.path().join("old.store");
        std::fs::copy(&fixture, &path).unwrap();
        let mut reader = Proc::start("reader", &path);
        let (n0, _) = reader.count().expect("the fixture reads");
        let mut writer = Proc::start("writer", &path);
        // Killed after a delay from none to a few ms: before the rewrite, during it,
        // between it and the batch, or after the acknowledgement.
        let delay = Duration::from_micros(rng.below(4000));
        writeln!(writer.stdin, "MULTI").unwrap();
        writer.stdin.flush().unwrap();
        std::thread::sleep(delay);
        writer.kill();
        let seen = match reader.count() {
            Ok((n, _)) => n,
            Err(e) => panic!("round {round} ({delay:?}): the reader failed: {e}"),
        };
        assert!(
            seen == n0 || seen == n0 + 3,
            "round {round} ({delay:?}): the reader sees {seen} events, the store had {n0}"
        );
        // A new writer recovers; every reader, old and new, agrees with it.
        let mut w2 = Proc::start("writer", &path);
        let after = w2.append(1);
        assert!(after == n0 + 1 || after == n0 + 4, "round {round}: {after}");
        assert_eq!(reader.count(), Ok((after, after)), "round {round}");
        let mut late = Proc::start("reader", &path);
        assert_eq!(late.count(), Ok((after, after)), "round {round}");
        // And the upgrade goes through now if it had not.
        let end = w2.ask("MULTI");
        let end: u64 = end.strip_prefix("DONE ").expect(&end).parse().unwrap();
        assert_eq!(reader.count(), Ok((end, end)), "round {round}");
        w2.finish();
        reader.finish();
        late.finish();
    }
}

/// A side file the writer may not write (root's, mode 0444, the writer running as
/// `nobody`): the writer runs without one; readers beside it are refused with an error
/// naming it (never shown unsynced data) and read everything once it is gone.
#[test]
fn a_side_file_of_another_user_the_writer_cannot_write() {
    let _serial = serial();
    // SAFETY: plain system call.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP a_side_file_of_another_user_the_writer_cannot_write: needs root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.path().join("s.store");
    {
        let s = Store::open(&path).unwrap();
        s.append(Uuid::new_v4(), ExpectedVersion::Any, vec![support_event()])
            .unwrap();
    }
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(side(&path), std::fs::Permissions::from_mode(0o444)).unwrap();
    let mut writer = Proc::start_as("writer", &path, Some(65534));
    assert_eq!(writer.append(2), 3);
    let mut reader = Proc::start("reader", &path);
    let opened = reader.ask("OPEN");
    assert!(
        opened.starts_with("ERR") && opened.contains("could not open its side file"),
        "a read-only open beside it is refused, naming the side file: {opened}"
    );
    writer.finish();
    assert_eq!(reader.ask("OPEN"), "OPENED 3");
    assert_eq!(reader.count(), Ok((3, 3)));
    reader.finish();
}
