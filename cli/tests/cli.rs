//! End-to-end tests of the `eventstore` binary: every command, its JSON output, its
//! exit codes, and the bad inputs of issue 13.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use eventstore::inspect;
use eventstore::{
    ExpectedVersion, ProposedEvent, ProposedEventRef, RecordedEvent, Store, StreamAppend, Uuid,
};
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_eventstore");

fn es(args: &[&str]) -> Output {
    es_in(args, "")
}

fn es_in(args: &[&str], stdin: &str) -> Output {
    es_in_bytes(args, stdin.as_bytes())
}

/// The tool started with `args`, its standard streams piped.
fn spawn_piped(args: &[&str]) -> std::process::Child {
    Command::new(EXE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run eventstore")
}

fn es_in_bytes(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = spawn_piped(args);
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Exit `want`, and one line on stderr that contains every `needle`, and no panic.
fn fails(o: &Output, want: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(code(o), want, "stderr: {err}\nstdout: {}", stdout(o));
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("eventstore: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err}");
    }
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn json(o: &Output) -> Value {
    let lines = json_lines(o);
    assert_eq!(lines.len(), 1, "{}", stdout(o));
    lines.into_iter().next().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const A: Uuid = Uuid::from_u128(0xa);
const B: Uuid = Uuid::from_u128(0xb);
const C: Uuid = Uuid::from_u128(0xc);

fn ev(t: &str, payload: &[u8], metadata: &[u8]) -> ProposedEvent {
    ProposedEvent {
        event_id: Uuid::new_v4(),
        event_type: t.into(),
        metadata: metadata.to_vec(),
        payload: payload.to_vec(),
    }
}

/// One `append_multi` of `runs[i]` to `streams[i]`, each with `expected`.
fn append_runs(
    store: &Store,
    streams: [Uuid; 3],
    runs: &[Vec<ProposedEvent>],
    expected: ExpectedVersion,
) -> Result<Vec<eventstore::AppendResult>, eventstore::Error> {
    let refs: Vec<Vec<ProposedEventRef<'_>>> = runs
        .iter()
        .map(|v| v.iter().map(ProposedEvent::as_ref).collect())
        .collect();
    let appends: Vec<StreamAppend<'_>> = streams
        .iter()
        .zip(&refs)
        .map(|(id, events)| StreamAppend {
            stream_id: *id,
            expected_version: expected,
            events,
        })
        .collect();
    store.append_multi(&appends)
}

/// A store of 3 streams: A gets OrderPlaced/OrderPaid pairs, B single Shipped
/// events, C one batch of binary and text payloads.
fn sample(dir: &Path) -> (PathBuf, Vec<RecordedEvent>) {
    let path = dir.join("sample.store");
    let store = Store::open(&path).unwrap();
    for i in 0..5 {
        store
            .append(
                A,
                ExpectedVersion::Any,
                vec![
                    ev("OrderPlaced", format!("{{\"n\": {i}}}").as_bytes(), b""),
                    ev("OrderPaid", b"{\"ok\":true}", b"{\"by\":\"test\"}"),
                ],
            )
            .unwrap();
        store
            .append(
                B,
                ExpectedVersion::Any,
                vec![ev("Shipped", b"plain text", b"")],
            )
            .unwrap();
    }
    store
        .append(
            C,
            ExpectedVersion::NoStream,
            vec![
                ev("Blob", &[0xff, 0, 7], &[1, 2]),
                ev("Note", b"line\nbreak", b"x"),
            ],
        )
        .unwrap();
    let events = store.read_all(0, u64::MAX).unwrap();
    store.close().unwrap();
    (path, events)
}

fn positions(lines: &[Value]) -> Vec<u64> {
    lines
        .iter()
        .map(|v| v["global_position"].as_u64().unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------
// Help and usage

#[test]
fn help_documents_every_command_and_exit_codes() {
    let o = es(&["--help"]);
    assert_eq!(code(&o), 0);
    let text = stdout(&o);
    for c in [
        "info", "verify", "streams", "dump", "event", "tail", "append", "export", "import",
        "backup", "salvage",
    ] {
        assert!(text.contains(c), "{c} missing from --help: {text}");
    }
    assert!(text.contains("Exit codes"), "{text}");
    let o = es(&["help", "dump"]);
    assert_eq!(code(&o), 0);
    let text = stdout(&o);
    for flag in [
        "--stream",
        "--type",
        "--type-prefix",
        "--from",
        "--to",
        "--limit",
        "--backward",
        "--json",
    ] {
        assert!(text.contains(flag), "{flag} missing from help dump: {text}");
    }
    assert_eq!(code(&es(&["help", "tail"])), 0);
    assert!(stdout(&es(&["tail", "--help"])).contains("--follow"));
    assert_eq!(code(&es(&["--version"])), 0);
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    fails(&es(&["frobnicate"]), 2, &["frobnicate"]);
    fails(&es(&["dump"]), 2, &["PATH"]);
    fails(&es(&["backup", "x.store"]), 2, &["DEST"]);
    fails(
        &es(&["dump", "x.store", "--stream", "not-a-uuid"]),
        2,
        &["not-a-uuid"],
    );
    fails(&es(&["dump", "x.store", "--limit", "-3"]), 2, &["-3"]);
    fails(&es(&["append", "x.store", "--batch", "0"]), 2, &["--batch"]);
}

// ---------------------------------------------------------------------------------
// Files that are missing, not stores, or locked

#[test]
fn a_missing_file_is_not_found_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.store");
    let dest = dir.path().join("dest.store");
    for args in [
        vec!["info", s(&missing)],
        vec!["verify", s(&missing)],
        vec!["streams", s(&missing)],
        vec!["dump", s(&missing)],
        vec!["cat", s(&missing)],
        vec!["tail", s(&missing)],
        vec!["export", s(&missing)],
        vec!["backup", s(&missing), s(&dest)],
        vec!["salvage", s(&missing), s(&dest)],
    ] {
        fails(&es(&args), 1, &["no such file", "nope.store"]);
        assert!(!missing.exists(), "{args:?} created the file");
        assert!(!dest.exists(), "{args:?} created the destination");
    }
}

#[test]
fn a_file_that_is_not_a_store_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("notes.txt");
    let content = "these are my notes, not an event store\n".repeat(100);
    std::fs::write(&junk, &content).unwrap();
    let tiny = dir.path().join("tiny");
    std::fs::write(&tiny, b"").unwrap();
    let dest = dir.path().join("dest.store");
    for path in [&junk, &tiny] {
        for args in [
            vec!["info", s(path)],
            vec!["verify", s(path)],
            vec!["streams", s(path)],
            vec!["dump", s(path)],
            vec!["tail", s(path)],
            vec!["export", s(path)],
            vec!["backup", s(path), s(&dest)],
            vec!["salvage", s(path), s(&dest)],
        ] {
            fails(&es(&args), 1, &["not an event store"]);
            assert!(!dest.exists(), "{args:?}");
        }
    }
    assert_eq!(std::fs::read_to_string(&junk).unwrap(), content);
    assert_eq!(std::fs::read(&tiny).unwrap(), b"");
    // A writing command refuses it too.
    let line = format!("{{\"stream\":\"{A}\",\"type\":\"T\"}}\n");
    fails(
        &es_in(&["append", s(&junk)], &line),
        1,
        &["not an event store"],
    );
    assert_eq!(std::fs::read_to_string(&junk).unwrap(), content);
}

/// A writer in another process: `eventstore append --json PATH`, fed lines through
/// its standard input, reporting each acknowledged batch on its standard output.
struct WriterProcess {
    child: std::process::Child,
    input: Option<std::process::ChildStdin>,
    acks: BufReader<std::process::ChildStdout>,
}

impl WriterProcess {
    fn start(path: &Path) -> WriterProcess {
        let mut child = spawn_piped(&["append", s(path), "--json", "--quiet"]);
        WriterProcess {
            input: child.stdin.take(),
            acks: BufReader::new(child.stdout.take().unwrap()),
            child,
        }
    }

    /// Appends one line and waits for its acknowledgement: the batch's report.
    fn append(&mut self, line: &str) -> Value {
        let input = self.input.as_mut().unwrap();
        writeln!(input, "{line}").unwrap();
        input.flush().unwrap();
        let mut ack = String::new();
        self.acks.read_line(&mut ack).unwrap();
        serde_json::from_str(&ack).unwrap_or_else(|e| panic!("{e}: {ack:?}"))
    }

    /// Closes its input: it closes the store and exits 0.
    fn finish(mut self) {
        drop(self.input.take());
        let out = self.child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Read commands open read-only: beside a writer held open by another process they
/// work (exit 0, the acknowledged events), and `info` says a writer has it open; a
/// second writer is still refused (exit 3).
#[test]
fn read_commands_work_beside_a_writer_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let (path, events) = sample(dir.path());
    let mut writer = WriterProcess::start(&path);
    let ack = writer.append(&format!("{{\"stream\":\"{A}\",\"type\":\"Held\"}}"));
    assert_eq!(ack["first_global_position"], 17);

    let o = es(&["info", s(&path), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["events"], 18);
    assert_eq!(v["streams"], 3);
    assert_eq!(v["writer_open"], true);
    assert_eq!(v["read_only"], true);
    assert_eq!(v["last_recorded_at"], ack["recorded_at"]);
    assert!(stdout(&es(&["info", s(&path)])).contains("writer open     yes"));
    let o = es(&["streams", s(&path), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json_lines(&o)[0]["events"], 11);
    let o = es(&["dump", s(&path), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(positions(&lines), (0..18).collect::<Vec<u64>>());
    assert_eq!(lines[17]["event_type"], "Held");
    let o = es(&["dump", s(&path), "--json", "--type", "Held"]);
    assert_eq!(positions(&json_lines(&o)), [17]);
    let o = es(&["tail", s(&path), "-n", "2", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(positions(&json_lines(&o)), [16, 17]);
    let o = es(&["event", s(&path), &events[3].event_id.to_string(), "--json"]);
    assert_eq!(json(&o)["global_position"], 3);
    let o = es(&["export", s(&path)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json_lines(&o).len(), 18);
    let dest = dir.path().join("copy.store");
    let o = es(&["backup", s(&path), s(&dest), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["events"], 18);
    assert_eq!(code(&es(&["verify", s(&dest)])), 0);
    assert_eq!(code(&es(&["verify", s(&path)])), 0);

    let line = format!("{{\"stream\":\"{A}\",\"type\":\"T\"}}\n");
    fails(
        &es_in(&["append", s(&path)], &line),
        3,
        &["locked", "another process has it open"],
    );
    writer.finish();
    let v = json(&es(&["info", s(&path), "--json"]));
    assert_eq!(v["events"], 18);
    assert_eq!(v["writer_open"], false);
}

/// `backup` beside a writer process that keeps appending batches of 3 events: each
/// copy verifies, holds whole batches only, every batch acknowledged before it
/// started, and is a prefix of the final log.
#[test]
fn backup_copies_a_consistent_prefix_beside_a_writer_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.store");
    let mut writer = WriterProcess::start(&path);
    let batch = |i: usize| {
        format!(
            "{{\"stream\":\"{}\",\"events\":[{{\"type\":\"A\",\"payload\":{i}}},{{\"type\":\"B\"}},{{\"type\":\"C\"}}]}}",
            [A, B][i % 2]
        )
    };
    let mut acked = 0u64;
    for i in 0..20 {
        writer.append(&batch(i));
        acked += 3;
    }
    // The writer appends on, from another thread, while the backups run.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(acked));
    let appender = {
        let (stop, counted) = (stop.clone(), counted.clone());
        std::thread::spawn(move || {
            let mut i = 20;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                writer.append(&batch(i));
                counted.fetch_add(3, std::sync::atomic::Ordering::SeqCst);
                i += 1;
            }
            writer
        })
    };
    let mut copies = Vec::new();
    for k in 0..5 {
        let before = counted.load(std::sync::atomic::Ordering::SeqCst);
        let dest = dir.path().join(format!("copy{k}.store"));
        let o = es(&["backup", s(&path), s(&dest), "--json"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let events = json(&o)["events"].as_u64().unwrap();
        assert!(
            events >= before,
            "copy {k}: {events} events, {before} acknowledged before it"
        );
        assert_eq!(events % 3, 0, "copy {k}: a torn batch");
        assert_eq!(code(&es(&["verify", s(&dest)])), 0);
        copies.push((dest, events));
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    appender.join().unwrap().finish();
    let full = stdout(&es(&["export", s(&path)]));
    for (dest, events) in copies {
        let copy = stdout(&es(&["export", s(&dest)]));
        assert_eq!(copy.lines().count() as u64, events);
        assert!(
            full.starts_with(&copy),
            "{}: not a prefix of the log",
            dest.display()
        );
    }
}

/// `tail -f` follows the appends another process makes, filtered, each shown soon
/// after its acknowledgement, and exits 0 after --max events.
#[test]
fn tail_follows_a_writer_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sample(dir.path());
    let mut tail = Command::new(EXE)
        .args([
            "tail",
            s(&path),
            "-f",
            "-n",
            "1",
            "--json",
            "--max",
            "4",
            "--timeout",
            "60",
        ])
        .args(["--type", "Keep", "--type", "Shipped"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut shown = BufReader::new(tail.stdout.take().unwrap());
    let mut line = String::new();
    // The last Shipped event first: then tail is following from the end it read.
    shown.read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["global_position"], 14, "{line}");
    let mut writer = WriterProcess::start(&path);
    // Two measures per event: from the writer's acknowledgement reaching this test to
    // tail's line reaching it (tail may be first: then about 0), and from the commit
    // time stamped in the event (before the writer's fdatasync) to tail's line.
    let mut latencies = Vec::new();
    let mut from_commit = Vec::new();
    let mut want = Vec::new();
    for i in 0..8 {
        let t = if i % 2 == 0 { "Keep" } else { "Skip" };
        let ack = writer.append(&format!(
            "{{\"stream\":\"{B}\",\"type\":\"{t}\",\"payload\":{i}}}"
        ));
        let acked = Instant::now();
        if t == "Keep" {
            line.clear();
            shown.read_line(&mut line).unwrap();
            latencies.push(acked.elapsed());
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64;
            let v: Value = serde_json::from_str(&line).unwrap();
            let recorded_at = v["recorded_at"].as_u64().unwrap();
            from_commit.push(Duration::from_micros(now_us.saturating_sub(recorded_at)));
            assert_eq!(v["global_position"], ack["first_global_position"], "{line}");
            assert_eq!(v["payload"], i);
            want.push(i);
        }
    }
    // Four followed: it exits by itself.
    let status = tail.wait().unwrap();
    assert!(status.success());
    line.clear();
    assert_eq!(
        shown.read_line(&mut line).unwrap(),
        0,
        "more output: {line}"
    );
    writer.finish();
    latencies.sort();
    from_commit.sort();
    eprintln!("tail -f, 4 events: acknowledgement to output {latencies:?}; commit (incl. fdatasync) to output {from_commit:?}");
    // Generous against a loaded machine; a poll of seconds would fail it.
    assert!(latencies[3] < Duration::from_secs(2), "{latencies:?}");
    assert!(from_commit[3] < Duration::from_secs(2), "{from_commit:?}");
    assert_eq!(want, [0, 2, 4, 6]);
}

/// `tail --stream ID` of a stream with no events: exit 1 without -f; with -f it waits
/// for the stream (as `tail -F` waits for a file) and shows its first events when a
/// writer in another process appends them, and nothing of other streams.
#[test]
fn tail_follow_waits_for_a_stream_that_does_not_exist_yet() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sample(dir.path());
    let d = Uuid::from_u128(0xd);
    fails(
        &es(&["tail", s(&path), "--stream", &d.to_string()]),
        1,
        &["not found", &d.to_string()],
    );
    let mut tail = Command::new(EXE)
        .args([
            "tail",
            s(&path),
            "-f",
            "--json",
            "--max",
            "2",
            "--timeout",
            "60",
        ])
        .args(["--stream", &d.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        tail.try_wait().unwrap().is_none(),
        "tail -f exited before the stream appeared"
    );
    let mut writer = WriterProcess::start(&path);
    writer.append(&format!(
        "{{\"stream\":\"{B}\",\"type\":\"Other\",\"payload\":0}}"
    ));
    let first = writer.append(&format!(
        "{{\"stream\":\"{d}\",\"type\":\"New\",\"payload\":1,\"expected_version\":\"no_stream\"}}"
    ));
    writer.append(&format!(
        "{{\"stream\":\"{B}\",\"type\":\"Other\",\"payload\":2}}"
    ));
    let second = writer.append(&format!(
        "{{\"stream\":\"{d}\",\"type\":\"New\",\"payload\":3}}"
    ));
    let out = tail.wait_with_output().unwrap();
    writer.finish();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    assert_eq!(
        positions(&lines),
        [
            first["first_global_position"].as_u64().unwrap(),
            second["first_global_position"].as_u64().unwrap()
        ]
    );
    assert!(lines.iter().all(|v| v["stream_id"] == d.to_string()));
    assert_eq!(lines[0]["stream_version"], 0);
}

// ---------------------------------------------------------------------------------
// Read commands

#[test]
fn info_reports_the_store_facts() {
    let dir = tempfile::tempdir().unwrap();
    let (path, events) = sample(dir.path());
    let o = es(&["info", s(&path), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    let len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(v["format_version"], 2, "new stores are format version 2");
    assert_eq!(v["events"], 17);
    assert_eq!(v["streams"], 3);
    assert_eq!(v["data_bytes"], len);
    assert_eq!(v["file_bytes"], len);
    assert_eq!(v["first_recorded_at"], events[0].recorded_at);
    assert_eq!(v["last_recorded_at"], events[16].recorded_at);
    assert!(v["first_recorded_at_utc"].as_str().unwrap().ends_with('Z'));
    assert!(v["index_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["writer_open"], false);
    assert_eq!(v["poisoned"], false);
    assert_eq!(v["recovered_bytes_dropped"], 0);
    let text = stdout(&es(&["info", s(&path)]));
    assert!(text.contains("events          17"), "{text}");
    assert!(text.contains("streams         3"), "{text}");

    let empty = dir.path().join("empty.store");
    Store::open(&empty).unwrap().close().unwrap();
    let v = json(&es(&["info", s(&empty), "--json"]));
    assert_eq!(v["events"], 0);
    assert_eq!(v["first_recorded_at"], Value::Null);
}

/// A store written by 0.1 is format version 1, and stays so for the read commands.
#[test]
fn info_reports_format_version_1_of_a_store_written_by_0_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_v01(dir.path());
    let v = json(&es(&["info", s(&path), "--json"]));
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["events"], 18);
    assert_eq!(v["streams"], 3);
    assert!(stdout(&es(&["info", s(&path)])).contains("format version  1\n"));
    assert_eq!(json_lines(&es(&["dump", s(&path), "--json"])).len(), 18);
    assert_eq!(
        json(&es(&["info", s(&path), "--json"]))["format_version"],
        1
    );
}

/// A copy of `tests/fixtures/v0.1.store` (written by 0.1: format version 1, 18 events
/// of 3 streams) in `dir`.
fn fixture_v01(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/v0.1.store");
    let path = dir.join("v01.store");
    std::fs::copy(src, &path).unwrap();
    path
}

/// `event ID` finds one event by its id (`Store::read_event`); an unknown id is
/// not found (exit 1), a malformed one a usage error.
#[test]
fn event_shows_one_event_by_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let (path, events) = sample(dir.path());
    let e = &events[7];
    let o = es(&["event", s(&path), &e.event_id.to_string(), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["global_position"], 7);
    assert_eq!(v["event_id"], e.event_id.to_string());
    assert_eq!(v["stream_id"], e.stream_id.to_string());
    assert_eq!(v["event_type"], e.event_type);
    // The same line as dump's for that event.
    let dumped = stdout(&es(&[
        "dump",
        s(&path),
        "--json",
        "--from",
        "7",
        "--to",
        "7",
    ]));
    assert_eq!(stdout(&o), dumped);
    let table = stdout(&es(&["event", s(&path), &e.event_id.to_string()]));
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.contains("OrderPaid"), "{table}");
    let unknown = Uuid::from_u128(0x5eed).to_string();
    fails(
        &es(&["event", s(&path), &unknown]),
        1,
        &["not found", &unknown],
    );
    fails(&es(&["event", s(&path), "not-a-uuid"]), 2, &["not-a-uuid"]);
}

/// A store whose last write was torn: read commands open it read-only, so they show
/// the acknowledged events and cut nothing off (the bytes past the data stay until
/// a writer opens it); a writer's open cuts them off.
#[test]
fn read_commands_leave_a_torn_tail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sample(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&[0xab; 40]).unwrap();
    drop(f);
    let before = std::fs::read(&path).unwrap();
    let v = json(&es(&["info", s(&path), "--json"]));
    assert_eq!(v["events"], 17);
    assert_eq!(v["file_bytes"], len + 40);
    assert_eq!(v["data_bytes"], len);
    assert_eq!(v["read_only"], true);
    assert_eq!(v["recovered_bytes_dropped"], 0);
    assert_eq!(json_lines(&es(&["dump", s(&path), "--json"])).len(), 17);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a read command wrote"
    );
    // A writer (append) cuts the torn tail off before it appends.
    let line = format!("{{\"stream\":\"{A}\",\"type\":\"T\"}}\n");
    assert_eq!(code(&es_in(&["append", s(&path)], &line)), 0);
    let v = json(&es(&["info", s(&path), "--json"]));
    assert_eq!(v["events"], 18);
    assert_eq!(v["data_bytes"], v["file_bytes"]);
}

#[test]
fn streams_lists_every_stream_in_creation_order_with_paging() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sample(dir.path());
    let o = es(&["streams", s(&path), "--json"]);
    assert_eq!(code(&o), 0);
    let rows = json_lines(&o);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["stream_id"], A.to_string());
    assert_eq!(rows[0]["index"], 0);
    assert_eq!(rows[0]["events"], 10);
    assert_eq!(rows[0]["last_version"], 9);
    assert_eq!(rows[0]["first_position"], 0);
    assert_eq!(rows[0]["last_position"], 13);
    assert_eq!(rows[1]["stream_id"], B.to_string());
    assert_eq!(rows[1]["first_position"], 2);
    assert_eq!(rows[2]["stream_id"], C.to_string());
    assert_eq!(rows[2]["events"], 2);
    let page = json_lines(&es(&[
        "streams",
        s(&path),
        "--json",
        "--from",
        "1",
        "--limit",
        "1",
    ]));
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["stream_id"], B.to_string());
    assert_eq!(page[0]["index"], 1);
    let table = stdout(&es(&["streams", s(&path)]));
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.contains(&A.to_string()));
}

/// `streams` pages through `Store::list_streams`: many streams, any window.
#[test]
fn streams_pages_through_many_streams() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.store");
    let store = Store::open(&path).unwrap();
    let ids: Vec<Uuid> = (0..300u128)
        .map(|i| Uuid::from_u128(1000 + (i * 7919) % 300))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let n = 1 + i % 3;
        store
            .append(
                *id,
                ExpectedVersion::NoStream,
                (0..n).map(|_| ev("T", b"1", b"")).collect(),
            )
            .unwrap();
    }
    store.close().unwrap();
    let all = json_lines(&es(&["streams", s(&path), "--json"]));
    assert_eq!(all.len(), 300);
    let mut position = 0;
    for (i, (row, id)) in all.iter().zip(&ids).enumerate() {
        let n = 1 + i as u64 % 3;
        assert_eq!(row["index"], i);
        assert_eq!(row["stream_id"], id.to_string());
        assert_eq!(row["events"], n);
        assert_eq!(row["last_version"], n - 1);
        assert_eq!(row["first_position"], position);
        assert_eq!(row["last_position"], position + n - 1);
        position += n;
    }
    let page = json_lines(&es(&[
        "streams",
        s(&path),
        "--json",
        "--from",
        "250",
        "--limit",
        "20",
    ]));
    assert_eq!(page, all[250..270]);
    let tail = json_lines(&es(&[
        "streams",
        s(&path),
        "--json",
        "--from",
        "290",
        "--limit",
        "20",
    ]));
    assert_eq!(tail, all[290..]);
    assert!(json_lines(&es(&["streams", s(&path), "--json", "--from", "300"])).is_empty());
    assert!(json_lines(&es(&["streams", s(&path), "--json", "--limit", "0"])).is_empty());
}

#[test]
fn dump_shows_every_event_in_the_documented_schema() {
    let dir = tempfile::tempdir().unwrap();
    let (path, events) = sample(dir.path());
    let o = es(&["dump", s(&path), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 17);
    for (v, e) in lines.iter().zip(&events) {
        assert_eq!(v["global_position"], e.global_position);
        assert_eq!(v["stream_id"], e.stream_id.to_string());
        assert_eq!(v["stream_version"], e.stream_version);
        assert_eq!(v["event_id"], e.event_id.to_string());
        assert_eq!(v["event_type"], e.event_type);
        assert_eq!(v["recorded_at"], e.recorded_at);
        assert!(v["recorded_at_utc"].is_string());
    }
    // JSON stays JSON (its exact text), text is a string, anything else base64.
    let raw = stdout(&o);
    assert!(raw
        .lines()
        .next()
        .unwrap()
        .contains(r#""payload":{"n": 0},"payload_encoding":"json""#));
    assert_eq!(lines[1]["metadata"]["by"], "test");
    assert_eq!(lines[2]["payload"], "plain text");
    assert_eq!(lines[2]["payload_encoding"], "text");
    assert_eq!(lines[15]["payload"], "/wAH");
    assert_eq!(lines[15]["payload_encoding"], "base64");
    assert_eq!(lines[15]["metadata_encoding"], "base64");
    assert_eq!(lines[16]["payload"], "line\nbreak");
    // The table: a header, one line per event.
    let table = stdout(&es(&["cat", s(&path)]));
    assert_eq!(table.lines().count(), 18, "{table}");
    assert!(table.lines().nth(1).unwrap().contains("OrderPlaced"));
    assert!(table.contains("base64:/wAH"), "{table}");
    assert!(table.contains("line\\nbreak"), "{table}");
}

#[test]
fn dump_filters_by_stream_type_prefix_range_limit_and_direction() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sample(dir.path());
    let p = s(&path);
    let run = |extra: &[&str]| {
        let mut args = vec!["dump", p, "--json"];
        args.extend_from_slice(extra);
        let o = es(&args);
        assert_eq!(code(&o), 0, "{extra:?}: {}", stderr(&o));
        positions(&json_lines(&o))
    };
    assert_eq!(run(&["--stream", &B.to_string()]), [2, 5, 8, 11, 14]);
    assert_eq!(
        run(&["--type", "Shipped", "--type", "Blob"]),
        [2, 5, 8, 11, 14, 15]
    );
    assert_eq!(run(&["--type-prefix", "Order", "--limit", "3"]), [0, 1, 3]);
    assert_eq!(run(&["--type-prefix", "Order", "--type", "Note"]).len(), 11);
    assert_eq!(run(&["--from", "4", "--to", "7"]), [4, 5, 6, 7]);
    assert_eq!(run(&["--backward", "--limit", "3"]), [16, 15, 14]);
    assert_eq!(
        run(&[
            "--backward",
            "--stream",
            &A.to_string(),
            "--to",
            "9",
            "--limit",
            "2"
        ]),
        [9, 7]
    );
    assert_eq!(
        run(&[
            "--stream",
            &A.to_string(),
            "--type",
            "OrderPaid",
            "--from",
            "5"
        ]),
        [7, 10, 13]
    );
    assert!(run(&["--from", "100"]).is_empty());
    assert!(run(&["--limit", "0"]).is_empty());
    // An unknown stream is not found.
    let unknown = Uuid::from_u128(0x5eed).to_string();
    fails(
        &es(&["dump", p, "--stream", &unknown]),
        1,
        &["not found", &unknown, "eventstore streams"],
    );
    fails(&es(&["tail", p, "--stream", &unknown]), 1, &["not found"]);
}

/// Backward reads cross pages: every event newest first, with and without a stream,
/// and `tail` shows exactly the last N of a large log.
#[test]
fn backward_reads_and_tail_cross_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.store");
    let store = Store::open(&path).unwrap();
    for chunk in 0..10u64 {
        let events: Vec<ProposedEvent> = (0..1000)
            .map(|i| ev(if i % 2 == 0 { "Even" } else { "Odd" }, b"{}", b""))
            .collect();
        store
            .append([A, B][(chunk % 2) as usize], ExpectedVersion::Any, events)
            .unwrap();
    }
    store.close().unwrap();
    let p = s(&path);
    let o = es(&["dump", p, "--json", "--backward"]);
    let got = positions(&json_lines(&o));
    assert_eq!(got, (0..10_000).rev().collect::<Vec<u64>>());
    let o = es(&[
        "dump",
        p,
        "--json",
        "--backward",
        "--stream",
        &B.to_string(),
    ]);
    let want: Vec<u64> = (0..10_000u64)
        .rev()
        .filter(|p| (p / 1000) % 2 == 1)
        .collect();
    assert_eq!(positions(&json_lines(&o)), want);
    let o = es(&[
        "dump",
        p,
        "--json",
        "--backward",
        "--from",
        "2990",
        "--to",
        "3009",
    ]);
    assert_eq!(
        positions(&json_lines(&o)),
        (2990..3010).rev().collect::<Vec<u64>>()
    );
    let o = es(&["tail", p, "-n", "3000", "--json"]);
    assert_eq!(
        positions(&json_lines(&o)),
        (7000..10_000).collect::<Vec<u64>>()
    );
    let o = es(&["tail", p, "-n", "5", "--json", "--stream", &A.to_string()]);
    assert_eq!(
        positions(&json_lines(&o)),
        (8995..9000).collect::<Vec<u64>>()
    );
    let o = es(&["tail", p, "-n", "2500", "--json", "--type", "Odd"]);
    let want: Vec<u64> = (5001..10_000).step_by(2).collect();
    assert_eq!(positions(&json_lines(&o)), want);
}

#[test]
fn tail_shows_the_last_events_and_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sample(dir.path());
    let o = es(&["tail", s(&path), "-n", "3", "--json"]);
    assert_eq!(code(&o), 0);
    assert_eq!(positions(&json_lines(&o)), [14, 15, 16]);
    let o = es(&[
        "tail",
        s(&path),
        "-n",
        "2",
        "--json",
        "--type",
        "OrderPlaced",
    ]);
    assert_eq!(positions(&json_lines(&o)), [9, 12]);
    let table = stdout(&es(&["tail", s(&path)]));
    assert_eq!(table.lines().count(), 10, "{table}");

    // -f keeps running after the last events, until --timeout (no new events here;
    // following another process's appends: tail_follows_a_writer_in_another_process).
    let started = Instant::now();
    let o = es(&[
        "tail",
        s(&path),
        "-f",
        "-n",
        "2",
        "--json",
        "--timeout",
        "0.5",
    ]);
    let took = started.elapsed();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(positions(&json_lines(&o)), [15, 16]);
    assert!(took >= Duration::from_millis(500), "{took:?}");
    // --max and --timeout belong to -f.
    fails(&es(&["tail", s(&path), "--max", "3"]), 2, &["--follow"]);
    fails(
        &es(&["tail", s(&path), "-f", "--timeout", "soon"]),
        2,
        &["soon", "seconds"],
    );
}

/// `dump --json | head -1` on a large store ends at once, quietly.
#[test]
fn a_closed_pipe_stops_dump_quickly_and_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.store");
    let store = Store::open(&path).unwrap();
    for chunk in 0..20 {
        let events = (0..10_000)
            .map(|i| {
                ev(
                    "Tick",
                    format!("{{\"i\":{}}}", chunk * 10_000 + i).as_bytes(),
                    b"",
                )
            })
            .collect();
        store.append(A, ExpectedVersion::Any, events).unwrap();
    }
    store.close().unwrap();
    for args in [
        vec!["dump", s(&path), "--json"],
        vec!["dump", s(&path)],
        vec!["export", s(&path)],
    ] {
        let started = Instant::now();
        let mut child = Command::new(EXE)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty());
        // The reader is gone: the pipe is closed.
        let status = child.wait().unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(err.is_empty(), "{args:?}: {err}");
        assert_eq!(status.code(), Some(0), "{args:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}

// ---------------------------------------------------------------------------------
// append

#[test]
fn append_reports_positions_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.store");
    let input = format!(
        "{{\"stream\":\"{A}\",\"type\":\"OrderPlaced\",\"payload\":{{\"total\": 42}},\"expected_version\":\"no_stream\"}}\n\
         \n\
         {{\"stream_id\":\"{A}\",\"event_type\":\"Note\",\"payload\":\"hi\",\"payload_encoding\":\"text\",\"metadata\":\"AAE=\",\"metadata_encoding\":\"base64\",\"event_id\":\"{}\",\"expected_version\":0}}\n\
         {{\"stream\":\"{B}\",\"events\":[{{\"type\":\"X\"}},{{\"type\":\"Y\",\"payload\":[1]}}]}}\n",
        Uuid::from_u128(77)
    );
    let o = es_in(&["append", s(&path), "--json"], &input);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let r = json_lines(&o);
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["first_line"], 1);
    assert_eq!(r[0]["first_global_position"], 0);
    assert_eq!(r[1]["first_line"], 3);
    assert_eq!(r[1]["first_stream_version"], 1);
    assert_eq!(r[2]["stream_id"], B.to_string());
    assert_eq!(r[2]["count"], 2);
    assert_eq!(r[2]["first_global_position"], 2);
    let store = Store::open(&path).unwrap();
    let all = store.read_all(0, 10).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].payload, br#"{"total": 42}"#);
    assert_eq!(all[1].payload, b"hi");
    assert_eq!(all[1].metadata, [0, 1]);
    assert_eq!(all[1].event_id, Uuid::from_u128(77));
    assert_eq!(all[3].payload, b"[1]");
    assert_eq!(all[2].recorded_at, all[3].recorded_at);
    drop(store);
    // The table form names lines, versions and positions.
    let line = format!("{{\"stream\":\"{B}\",\"type\":\"Z\"}}\n");
    let o = es_in(&["append", s(&path)], &line);
    assert_eq!(
        stdout(&o),
        format!("line 1: stream {B} versions 2-2 at positions 4-4\n")
    );

    // --batch 3: consecutive lines of one stream share a batch (one commit time).
    let mut lines = String::new();
    for i in 0..7 {
        lines.push_str(&format!("{{\"stream\":\"{C}\",\"type\":\"T{i}\"}}\n"));
    }
    lines.push_str(&format!("{{\"stream\":\"{A}\",\"type\":\"Other\"}}\n"));
    let o = es_in(&["append", s(&path), "--batch", "3", "--json"], &lines);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let counts: Vec<u64> = json_lines(&o)
        .iter()
        .map(|v| v["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [3, 3, 1, 1]);
}

#[test]
fn append_stops_at_a_malformed_line_and_writes_nothing_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.store");
    let good = |t: &str| format!("{{\"stream\":\"{A}\",\"type\":\"{t}\"}}\n");
    let count = |p: &Path| Store::open(p).unwrap().global_position();

    let input = format!(
        "{}{}{{\"stream\":\"{A}\",\"type\":\"Bad\",\n{}",
        good("One"),
        good("Two"),
        good("Four")
    );
    fails(
        &es_in(&["append", s(&path)], &input),
        2,
        &["line 3", "nothing of line 3 was written"],
    );
    assert_eq!(count(&path), 2);

    // In a --batch, the unfinished batch is not written either.
    let input = format!("{}{}{{oops}}\n", good("Five"), good("Six"));
    fails(
        &es_in(&["append", s(&path), "--batch", "10"], &input),
        2,
        &["line 3", "lines 1-2"],
    );
    assert_eq!(count(&path), 2);

    for (bad, needle) in [
        ("{\"type\":\"NoStream\"}\n".to_string(), "stream_id"),
        (format!("{{\"stream\":\"{A}\"}}\n"), "event_type"),
        ("{\"stream\":\"nope\",\"type\":\"T\"}\n".to_string(), "not a UUID"),
        (format!("{{\"stream\":\"{A}\",\"type\":\"T\",\"colour\":1}}\n"), "unknown field `colour`"),
        (format!("{{\"stream\":\"{A}\",\"type\":\"T\",\"payload\":\"%%\",\"payload_encoding\":\"base64\"}}\n"), "base64"),
        (format!("{{\"stream\":\"{A}\",\"type\":\"T\",\"payload_encoding\":\"rot13\",\"payload\":1}}\n"), "rot13"),
        (format!("{{\"stream\":\"{A}\",\"type\":\"\"}}\n"), "event type is empty"),
        (format!("{{\"stream\":\"{A}\",\"type\":\"T\",\"payload\":\"{}\",\"payload_encoding\":\"text\"}}\n", "x".repeat(70_000)), "too large"),
        (format!("{{\"stream\":\"{A}\",\"type\":\"T\",\"expected_version\":\"later\"}}\n"), "expected_version"),
        ("[1,2]\n".to_string(), "expected an event object"),
        ("garbage\n".to_string(), "expected value"),
    ] {
        let o = es_in(&["append", s(&path)], &format!("{}{bad}", good("Ok")));
        fails(&o, 2, &["line 2", needle]);
    }
    // Each run above appended its good first line, and nothing of the bad one.
    assert_eq!(count(&path), 2 + 11);
    let o = es_in_bytes(&["append", s(&path)], b"{\"type\":\"\xff\"}\n");
    fails(&o, 2, &["line 1", "not UTF-8"]);
    assert_eq!(count(&path), 13);
}

#[test]
fn append_with_a_wrong_expected_version_is_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.store");
    let input = format!(
        "{{\"stream\":\"{A}\",\"type\":\"T\",\"expected_version\":\"no_stream\"}}\n{{\"stream\":\"{A}\",\"type\":\"T\",\"expected_version\":5}}\n"
    );
    fails(
        &es_in(&["append", s(&path)], &input),
        1,
        &[
            "line 2",
            "wrong expected version",
            "expected version 5",
            "actual version 0",
        ],
    );
    assert_eq!(Store::open(&path).unwrap().global_position(), 1);
}

// ---------------------------------------------------------------------------------
// export / import

#[test]
fn export_then_import_rebuilds_an_identical_log() {
    let dir = tempfile::tempdir().unwrap();
    let (path, events) = sample(dir.path());
    let exported = es(&["export", s(&path)]);
    assert_eq!(code(&exported), 0);
    let text = stdout(&exported);
    let dest = dir.path().join("imported.store");
    let o = es_in(&["import", s(&dest), "--json"], &text);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["events"], 17);
    let store = Store::open(&dest).unwrap();
    assert_eq!(
        store.read_all(0, u64::MAX).unwrap(),
        events,
        "ids, streams, versions, positions, times, bytes"
    );
    drop(store);
    assert_eq!(stdout(&es(&["export", s(&dest)])), text);
    // Lines without batch_position (an older export) are imported too: consecutive
    // events of one stream with one commit time make a batch.
    let older: String = text
        .lines()
        .map(|l| {
            let cut = l.find(",\"batch_position\"").unwrap();
            format!("{}}}\n", &l[..cut])
        })
        .collect();
    let dest2 = dir.path().join("older.store");
    let o = es_in(&["import", s(&dest2)], &older);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        Store::open(&dest2).unwrap().read_all(0, u64::MAX).unwrap(),
        events
    );
    // `append` takes exported lines too (their positions, versions, times and
    // batch_position ignored): the same events, ids and bytes, appended anew.
    let appended = dir.path().join("appended.store");
    let o = es_in(&["append", s(&appended), "--quiet"], &text);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let got = Store::open(&appended)
        .unwrap()
        .read_all(0, u64::MAX)
        .unwrap();
    let key = |e: &RecordedEvent| {
        (
            e.event_id,
            e.stream_id,
            e.stream_version,
            e.payload.clone(),
            e.metadata.clone(),
        )
    };
    assert_eq!(
        got.iter().map(key).collect::<Vec<_>>(),
        events.iter().map(key).collect::<Vec<_>>()
    );
    // `export --from` starts later.
    assert_eq!(
        stdout(&es(&["export", s(&path), "--from", "16"]))
            .lines()
            .count(),
        1
    );
}

#[test]
fn import_refuses_bad_input_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sample(dir.path());
    let text = stdout(&es(&["export", s(&path)]));
    let lines: Vec<&str> = text.lines().collect();
    let dest = dir.path().join("i.store");
    let cases = [
        (format!("{}\n{}\n{{broken\n", lines[0], lines[1]), "line 3"),
        (
            format!("{}\n{}\n", lines[0], lines[2]),
            "global_position 2, expected 1",
        ),
        (format!("{}\n", lines[1]), "global_position 1, expected 0"),
        (
            format!("{{\"stream\":\"{A}\",\"type\":\"T\"}}\n"),
            "global_position",
        ),
        (
            lines[0].replace("\"stream_version\":0", "\"stream_version\":3") + "\n",
            "version 3, expected 0",
        ),
        // A version gap inside a batch's run of one stream (A at 0, then 5).
        (
            format!(
                "{}\n{}\n",
                lines[0],
                lines[1].replace("\"stream_version\":1", "\"stream_version\":5")
            ),
            "line 2: stream 00000000-0000-0000-0000-00000000000a at version 5, expected 1",
        ),
        // A stream starting at the wrong version (B's first event at 2), found when
        // the lines are committed, is named before a malformed line after it.
        (
            format!(
                "{}\n{}\n{}\n{{broken\n",
                lines[0],
                lines[1],
                lines[2].replace("\"stream_version\":0", "\"stream_version\":2")
            ),
            "line 3: stream 00000000-0000-0000-0000-00000000000b at version 2, expected 0",
        ),
        // The second event of the first batch (positions 0-1) names another batch, or
        // another commit time than its batch's.
        (
            format!(
                "{}\n{}\n",
                lines[0],
                lines[1].replace("\"batch_position\":0", "\"batch_position\":5")
            ),
            "line 2: batch_position 5",
        ),
        (
            format!(
                "{}\n{}\n",
                lines[0],
                lines[1].replace("\"recorded_at\":", "\"recorded_at\":1")
            ),
            "a batch has one commit time",
        ),
    ];
    for (input, needle) in cases {
        fails(
            &es_in(&["import", s(&dest)], &input),
            2,
            &[needle, "nothing was imported"],
        );
        assert!(!dest.exists());
    }
    // The sample store and the side file its writer left beside it.
    let side = eventstore::store::side_file_path(&path);
    assert_eq!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path() != side)
            .count(),
        1,
        "no temporary file left"
    );
    fails(&es_in(&["import", s(&path)], &text), 2, &["already exists"]);
}

/// `n` exported lines (the `export` schema without `batch_position`: each event its
/// own batch) over 97 streams, with payloads of about 100 bytes: about 220 bytes of
/// batch per line, so that `import` commits a group (4 MiB) every 19,000 lines or so
/// while its parser runs ahead. `stream_id` and `stream_version` of each line are returned too.
fn many_lines(n: u64) -> (Vec<String>, Vec<(String, u64)>) {
    let mut versions = [0u64; 97];
    let mut lines = Vec::with_capacity(n as usize);
    let mut placed = Vec::with_capacity(n as usize);
    for i in 0..n {
        let k = (i * 31 % 97) as usize;
        let stream = format!("{:08x}-0000-0000-0000-{:012x}", 0x5eed, k);
        let version = versions[k];
        versions[k] += 1;
        lines.push(format!(
            "{{\"global_position\":{i},\"stream_id\":\"{stream}\",\"stream_version\":{version},\"event_id\":\"{:08x}-0000-4000-8000-{:012x}\",\"event_type\":\"Filler\",\"recorded_at\":{},\"payload\":{{\"i\":{i},\"note\":\"a payload of about a hundred bytes, to fill the groups of the import\"}},\"payload_encoding\":\"json\",\"metadata\":\"\",\"metadata_encoding\":\"text\"}}",
            0xe7,
            i + 1,
            1_700_000_000_000_000 + i
        ));
        placed.push((stream, version));
    }
    (lines, placed)
}

/// Only `keep` (and nothing named like an import's temporary file) is in `dir`.
fn only_files(dir: &Path, keep: &[&Path]) {
    let left: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !keep.contains(&p.as_path()))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The parser of `import` runs ahead of the group commits on a thread of its own: a
/// bad line far into the input, found after several groups were committed and the
/// next ones parsed, still fails the whole import with its line number, exit 2 and no
/// `DEST`; a version conflict the store finds in a group committed before the bad
/// line is named first; a long valid input is imported whole and in order.
#[test]
fn import_far_into_a_long_input_keeps_line_numbers_and_leaves_nothing_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("i.store");
    let (lines, placed) = many_lines(60_000);
    let input = |replace: &[(usize, String)]| {
        let mut out = String::new();
        for (i, l) in lines.iter().enumerate() {
            match replace.iter().find(|r| r.0 == i) {
                Some((_, r)) => out.push_str(r),
                None => out.push_str(l),
            }
            out.push('\n');
        }
        out
    };
    // A new stream whose first event claims version 2: the store finds it when the
    // group holding it is committed (the parser checks only runs within a batch).
    let wrong_start = |i: usize| {
        lines[i]
            .replace(
                &format!("\"stream_id\":\"{}\"", placed[i].0),
                "\"stream_id\":\"0000beef-0000-0000-0000-000000000001\"",
            )
            .replace(
                &format!("\"stream_version\":{}", placed[i].1),
                "\"stream_version\":2",
            )
    };
    let cases = [
        (
            vec![(49_999, "{\"global_position\":49999,broken".to_string())],
            "line 50000: ",
        ),
        (
            vec![(49_999, lines[49_998].clone())],
            "line 50000: global_position 49998, expected 49999",
        ),
        (
            vec![(49_999, wrong_start(49_999))],
            "line 50000: stream 0000beef-0000-0000-0000-000000000001 at version 2, expected 0",
        ),
        // The conflict lies in a group committed long before the bad line.
        (
            vec![
                (24_999, wrong_start(24_999)),
                (49_999, "{broken".to_string()),
            ],
            "line 25000: stream 0000beef-0000-0000-0000-000000000001 at version 2, expected 0",
        ),
    ];
    for (replace, needle) in cases {
        let out = es_in(&["import", s(&dest)], &input(&replace));
        fails(&out, 2, &[needle, "nothing was imported"]);
        assert!(!dest.exists());
        only_files(dir.path(), &[]);
    }
    // The valid input: every line, in order.
    let out = es_in(&["import", "--json", s(&dest)], &input(&[]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(&out)["events"], 60_000);
    assert_eq!(json(&out)["batches"], 60_000);
    let exported = json_lines(&es(&["export", s(&dest)]));
    assert_eq!(exported.len(), 60_000);
    for (i, (e, (stream, version))) in exported.iter().zip(&placed).enumerate() {
        let want: Value = serde_json::from_str(&lines[i]).unwrap();
        assert_eq!(e["global_position"], i as u64);
        assert_eq!(e["stream_id"].as_str(), Some(stream.as_str()));
        assert_eq!(e["stream_version"], *version);
        for field in ["event_id", "recorded_at", "payload"] {
            assert_eq!(e[field], want[field], "line {}", i + 1);
        }
    }
}

/// A version conflict the store finds in the first group ends the import at once, also
/// while its input is still open (a producer that has not finished): the parser thread,
/// waiting for more input, is not waited for.
#[test]
fn import_fails_at_once_on_a_conflict_while_its_input_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("i.store");
    let (mut lines, placed) = many_lines(25_000);
    lines[9] = lines[9].replace(
        &format!("\"stream_version\":{}", placed[9].1),
        "\"stream_version\":7",
    );
    let mut child = spawn_piped(&["import", s(&dest)]);
    let mut input = child.stdin.take().unwrap();
    // More than a group (about 19,000 lines), so that the first group is committed,
    // and less than two: the parser then waits for more input. The pipe stays open.
    let text = lines.join("\n") + "\n";
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
        input
    });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let finished = child.try_wait().unwrap().is_some();
    if !finished {
        let _ = child.kill();
    }
    let held = feeder.join().unwrap();
    let out = child.wait_with_output().unwrap();
    drop(held);
    assert!(finished, "import still running with its input open");
    fails(
        &out,
        2,
        &[
            "line 10: ",
            "at version 7, expected 0",
            "nothing was imported",
        ],
    );
    assert!(!dest.exists());
    only_files(dir.path(), &[]);
}

// ---------------------------------------------------------------------------------
// verify, salvage, backup

/// Each batch's (offset, len, first position, count), from the library's scan.
fn layout(path: &Path) -> Vec<(u64, u64, u64, u32)> {
    let mut out = Vec::new();
    inspect::scan(path, |b| {
        out.push((b.offset, b.len, b.first_position, b.count));
        Ok(())
    })
    .unwrap();
    out
}

/// A store of 40 single-stream appends of 1-3 events each.
fn batches_store(dir: &Path) -> (PathBuf, Vec<RecordedEvent>) {
    let path = dir.join("b.store");
    let store = Store::open(&path).unwrap();
    for i in 0..40 {
        let events = (0..1 + i % 3)
            .map(|k| ev("T", format!("{{\"i\":{i},\"k\":{k}}}").as_bytes(), b"m"))
            .collect();
        store
            .append([A, B, C][i % 3], ExpectedVersion::Any, events)
            .unwrap();
    }
    let events = store.read_all(0, u64::MAX).unwrap();
    store.close().unwrap();
    (path, events)
}

#[test]
fn verify_says_sound_or_names_each_damaged_range() {
    let dir = tempfile::tempdir().unwrap();
    let (path, events) = batches_store(dir.path());
    let o = es(&["verify", s(&path), "--json"]);
    assert_eq!(code(&o), 0);
    let v = json(&o);
    assert_eq!(v["sound"], true);
    assert_eq!(v["batches"], 40);
    assert_eq!(v["events"], events.len());
    assert_eq!(v["ranges"], serde_json::json!([]));
    assert!(stdout(&es(&["verify", s(&path)])).contains("sound"));

    let l = layout(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(l[20].0 + 50) as usize] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let o = es(&["verify", s(&path), "--json"]);
    assert_eq!(code(&o), 1);
    let v = json(&o);
    assert_eq!(v["sound"], false);
    assert_eq!(v["ranges"].as_array().unwrap().len(), 1);
    let r = &v["ranges"][0];
    assert_eq!(r["kind"], "damage");
    assert_eq!(r["start"], l[20].0);
    assert_eq!(r["end"], l[20].0 + l[20].1);
    assert_eq!(r["first_lost_position"], l[20].2);
    assert_eq!(r["lost_events"], l[20].3);
    assert_eq!(
        v["salvage"]["events"],
        events.len() as u64 - u64::from(l[20].3)
    );
    let text = stdout(&es(&["verify", s(&path)]));
    assert!(
        text.contains("DAMAGED") && text.contains("salvage"),
        "{text}"
    );
    // The damaged store is not opened by verify, and other commands refuse it.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    fails(
        &es(&["info", s(&path)]),
        1,
        &["damaged", "eventstore verify", "eventstore salvage"],
    );

    // A torn tail is reported but is not damage.
    let (path2, _) = {
        let d = dir.path().join("torn");
        std::fs::create_dir(&d).unwrap();
        batches_store(&d)
    };
    let len = std::fs::metadata(&path2).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path2)
        .unwrap();
    f.set_len(len - 5).unwrap();
    let o = es(&["verify", s(&path2), "--json"]);
    assert_eq!(code(&o), 0);
    assert_eq!(json(&o)["ranges"][0]["kind"], "torn_tail");
}

/// Salvage against stores damaged in the middle: flipped bytes, a zeroed range, a
/// cut in the middle of a batch followed by valid batches. The result opens,
/// verifies, holds every intact batch, and the report matches what was lost.
#[test]
fn salvage_keeps_every_intact_batch_and_reports_what_was_lost() {
    type Damage = Box<dyn Fn(&mut Vec<u8>, &[(u64, u64, u64, u32)]) -> (u64, u64)>;
    let cases: Vec<(&str, Damage)> = vec![
        (
            "flipped bytes",
            Box::new(|b, l| {
                b[(l[10].0 + 60) as usize] ^= 0x10;
                b[(l[25].0 + 10) as usize] ^= 0x01;
                (l[10].2, l[25].2) // (unused) first positions lost
            }),
        ),
        (
            "zeroed range",
            Box::new(|b, l| {
                b[(l[12].0 + 3) as usize..(l[15].0 + 7) as usize].fill(0);
                (l[12].2, l[16].2)
            }),
        ),
        (
            "cut inside a batch",
            Box::new(|b, l| {
                let cut = (l[18].0 + l[18].1 / 2) as usize;
                let rest = b[l[19].0 as usize..].to_vec();
                b.truncate(cut);
                b.extend_from_slice(&rest);
                (l[18].2, l[19].2)
            }),
        ),
    ];
    for (name, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (path, events) = batches_store(dir.path());
        let l = layout(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes, &l);
        std::fs::write(&path, &bytes).unwrap();
        // What must survive: every batch whose bytes are untouched, found by the scan
        // of the damaged file, compared against the original events.
        let mut intact_positions = Vec::new();
        let found = inspect::scan(&path, |b| {
            intact_positions.extend(b.first_position..b.first_position + u64::from(b.count));
            Ok(())
        })
        .unwrap();
        let expected: Vec<&RecordedEvent> = events
            .iter()
            .filter(|e| intact_positions.contains(&e.global_position))
            .collect();
        let lost = events.len() - expected.len();
        assert!(lost > 0, "{name}: the damage lost nothing");

        let dest = dir.path().join("saved.store");
        let o = es(&["salvage", s(&path), s(&dest), "--json"]);
        assert_eq!(code(&o), 1, "{name}: {}", stderr(&o));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{name}: salvage modified its source"
        );
        let v = json(&o);
        assert_eq!(v["damage_found"], true);
        assert_eq!(v["kept_events"], expected.len(), "{name}");
        assert_eq!(v["lost_events"], lost, "{name}");
        let ranges = v["ranges"].as_array().unwrap();
        assert_eq!(ranges.len(), found.ranges.len());
        let mut reported_lost = 0;
        for (r, f) in ranges.iter().zip(&found.ranges) {
            assert_eq!(r["kind"], "damage", "{name}");
            assert_eq!(r["start"], f.start);
            assert_eq!(r["first_lost_position"], f.first_lost_position);
            reported_lost += r["lost_events"].as_u64().unwrap();
            // The lost positions are exactly those no intact batch holds.
            for p in
                f.first_lost_position..f.first_lost_position + r["lost_events"].as_u64().unwrap()
            {
                assert!(!intact_positions.contains(&p), "{name}: position {p}");
            }
        }
        assert_eq!(reported_lost as usize, lost, "{name}");

        // The result opens, verifies, and holds every intact batch, in order.
        assert_eq!(code(&es(&["verify", s(&dest)])), 0, "{name}");
        let store = Store::open(&dest).unwrap();
        let got = store.read_all(0, u64::MAX).unwrap();
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(
                (
                    g.event_id,
                    g.stream_id,
                    &g.event_type,
                    &g.payload,
                    &g.metadata,
                    g.recorded_at
                ),
                (
                    e.event_id,
                    e.stream_id,
                    &e.event_type,
                    &e.payload,
                    &e.metadata,
                    e.recorded_at
                ),
                "{name}"
            );
        }
        let text = stdout(&es(&[
            "salvage",
            s(&path),
            s(&dir.path().join("again.store")),
        ]));
        let lost_text = match lost {
            1 => "lost: 1 event\n".to_string(),
            n => format!("lost: {n} events\n"),
        };
        assert!(text.contains(&lost_text), "{name}: {text}");
    }
}

#[test]
fn salvage_of_a_sound_store_is_exit_0_and_refuses_an_existing_destination() {
    let dir = tempfile::tempdir().unwrap();
    let (path, events) = batches_store(dir.path());
    let dest = dir.path().join("copy.store");
    let o = es(&["salvage", s(&path), s(&dest), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["lost_events"], 0);
    assert_eq!(
        Store::open(&dest).unwrap().read_all(0, u64::MAX).unwrap(),
        events
    );
    fails(
        &es(&["salvage", s(&path), s(&dest)]),
        2,
        &["already exists"],
    );
}

/// A format-2 store whose batches hold several streams (multi-appends): verify
/// names a damaged multi-stream batch with all its events, salvage keeps every other
/// batch whole (each multi-append still one batch, its streams' versions continuing).
#[test]
fn verify_and_salvage_handle_multi_stream_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("multi.store");
    let store = Store::open(&path).unwrap();
    for round in 0..12 {
        if round % 3 == 2 {
            store
                .append(A, ExpectedVersion::Any, vec![ev("Single", b"1", b"")])
                .unwrap();
            continue;
        }
        // Streams A, B, C get 1, 2, 3 events in one batch.
        let fresh: Vec<Vec<ProposedEvent>> = (0..3)
            .map(|k| {
                (0..=k)
                    .map(|i| {
                        ev(
                            "M",
                            format!("{{\"r\":{round},\"k\":{k},\"i\":{i}}}").as_bytes(),
                            b"",
                        )
                    })
                    .collect()
            })
            .collect();
        append_runs(&store, [A, B, C], &fresh, ExpectedVersion::Any).unwrap();
    }
    let events = store.read_all(0, u64::MAX).unwrap();
    store.close().unwrap();
    let v = json(&es(&["info", s(&path), "--json"]));
    assert_eq!(v["format_version"], 2);
    let l = layout(&path);
    assert_eq!(l.len(), 12);
    assert_eq!(l[4].3, 6, "batch 4 is a multi-append of 1 + 2 + 3 events");
    let o = es(&["verify", s(&path), "--json"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert_eq!(json(&o)["events"], events.len());

    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(l[4].0 + l[4].1 / 2) as usize] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let v = json(&es(&["verify", s(&path), "--json"]));
    assert_eq!(v["sound"], false);
    assert_eq!(v["ranges"][0]["first_lost_position"], l[4].2);
    assert_eq!(v["ranges"][0]["lost_events"], 6);
    let dest = dir.path().join("saved.store");
    let o = es(&["salvage", s(&path), s(&dest), "--json"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["lost_events"], 6);
    assert_eq!(v["kept_batches"], 11);
    assert_eq!(v["kept_events"], events.len() - 6);
    assert_eq!(code(&es(&["verify", s(&dest)])), 0);
    // Every other batch kept, in order, whole: a multi-stream batch stays one batch.
    let kept: Vec<u32> = layout(&dest).iter().map(|b| b.3).collect();
    let want: Vec<u32> = l
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 4)
        .map(|(_, b)| b.3)
        .collect();
    assert_eq!(kept, want);
    assert_eq!(
        json(&es(&["info", s(&dest), "--json"]))["format_version"],
        2
    );
    let lost = l[4].2..l[4].2 + 6;
    let expected: Vec<&RecordedEvent> = events
        .iter()
        .filter(|e| !lost.contains(&e.global_position))
        .collect();
    let got = Store::open(&dest).unwrap().read_all(0, u64::MAX).unwrap();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(
            (g.event_id, g.stream_id, &g.payload, g.recorded_at),
            (e.event_id, e.stream_id, &e.payload, e.recorded_at)
        );
    }
    // Each stream's versions continue over the gap (0, 1, 2, ... with no hole).
    for id in [A, B, C] {
        let versions: Vec<u64> = got
            .iter()
            .filter(|e| e.stream_id == id)
            .map(|e| e.stream_version)
            .collect();
        assert_eq!(versions, (0..versions.len() as u64).collect::<Vec<_>>());
    }
}

/// One source batch is one batch of the salvaged and of the imported copy: a
/// multi-stream append retried against either copy is recognised as a retry
/// (deduplicated, with the original positions), not refused as a duplicate id; the
/// batch boundaries are the source's; export carries `batch_position`.
#[test]
fn salvage_and_import_keep_multi_stream_batches_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("multi.store");
    let store = Store::open(&path).unwrap();
    let mut multis = Vec::new();
    for round in 0..6u64 {
        // A single append between the multi-appends, sometimes of the same stream.
        store
            .append(
                [A, B, C][round as usize % 3],
                ExpectedVersion::Any,
                vec![ev("Single", b"1", b"")],
            )
            .unwrap();
        let fresh: Vec<Vec<ProposedEvent>> = (0..3)
            .map(|k| {
                (0..=k)
                    .map(|i| ev("M", format!("{{\"r\":{round},\"i\":{i}}}").as_bytes(), b""))
                    .collect()
            })
            .collect();
        let results = append_runs(&store, [C, A, B], &fresh, ExpectedVersion::Any).unwrap();
        multis.push((fresh, results));
    }
    store.close().unwrap();
    let original = layout(&path);
    let counts =
        |l: &[(u64, u64, u64, u32)]| -> Vec<(u64, u32)> { l.iter().map(|b| (b.2, b.3)).collect() };

    // Export names each event's batch: the first position of its batch.
    let exported = es(&["export", s(&path)]);
    assert_eq!(code(&exported), 0, "{}", stderr(&exported));
    let lines = json_lines(&exported);
    for b in &original {
        for p in b.2..b.2 + u64::from(b.3) {
            assert_eq!(lines[p as usize]["batch_position"], b.2, "event {p}");
        }
    }
    let salvaged = dir.path().join("salvaged.store");
    let o = es(&["salvage", s(&path), s(&salvaged)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let imported = dir.path().join("imported.store");
    let o = es_in(&["import", s(&imported), "--json"], &stdout(&exported));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["batches"], original.len());

    for copy in [&salvaged, &imported] {
        assert_eq!(
            counts(&layout(copy)),
            counts(&original),
            "{}",
            copy.display()
        );
        let store = Store::open(copy).unwrap();
        for (fresh, results) in &multis {
            let again = append_runs(&store, [C, A, B], fresh, ExpectedVersion::NoStream)
                .unwrap_or_else(|e| panic!("{}: {e}", copy.display()));
            assert_eq!(again.len(), 3);
            for (a, r) in again.iter().zip(results) {
                assert!(a.deduplicated, "{}", copy.display());
                assert_eq!(
                    (a.first_global_position, a.first_stream_version, a.count),
                    (r.first_global_position, r.first_stream_version, r.count)
                );
            }
        }
        assert_eq!(store.global_position(), 6 * 7);
        store.close().unwrap();
    }
}

/// verify and salvage read a store written by 0.1 (format version 1): sound, every
/// event kept.
#[test]
fn verify_and_salvage_read_a_store_written_by_0_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_v01(dir.path());
    let before = std::fs::read(&path).unwrap();
    let o = es(&["verify", s(&path), "--json"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let v = json(&o);
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["events"], 18);
    let dest = dir.path().join("saved.store");
    let o = es(&["salvage", s(&path), s(&dest), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["kept_events"], 18);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "salvage never writes its source"
    );
    let strip = |o: &Output| -> Vec<Value> {
        json_lines(o)
            .into_iter()
            .map(|mut v| {
                v.as_object_mut().unwrap().remove("recorded_at_utc");
                v
            })
            .collect()
    };
    assert_eq!(
        strip(&es(&["export", s(&dest)])),
        strip(&es(&["export", s(&path)]))
    );
    // A damaged 0.1 store is salvaged too.
    let l = layout(&path);
    let mut bytes = before.clone();
    bytes[(l[2].0 + 40) as usize] ^= 2;
    std::fs::write(&path, &bytes).unwrap();
    let dest2 = dir.path().join("saved2.store");
    let o = es(&["salvage", s(&path), s(&dest2), "--json"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(json(&o)["lost_events"], l[2].3);
    assert_eq!(
        json_lines(&es(&["export", s(&dest2)])).len(),
        18 - l[2].3 as usize
    );
}

#[test]
fn backup_copies_a_store_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sample(dir.path());
    let dest = dir.path().join("backup.store");
    let o = es(&["backup", s(&path), s(&dest), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["events"], 17);
    assert_eq!(v["verified"], true);
    assert_eq!(v["bytes"], std::fs::metadata(&dest).unwrap().len());
    assert_eq!(code(&es(&["verify", s(&dest)])), 0);
    assert_eq!(
        stdout(&es(&["export", s(&dest)])),
        stdout(&es(&["export", s(&path)]))
    );
    fails(&es(&["backup", s(&path), s(&dest)]), 2, &["already exists"]);
    let text = stdout(&es(&["backup", s(&path), s(&dir.path().join("b2.store"))]));
    assert!(text.contains("backed up 17 events"), "{text}");
}

/// `make install-bin` puts the tool in PREFIX/bin.
#[test]
fn make_install_bin_installs_the_tool() {
    let prefix = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(EXE).parent().unwrap();
    let o = Command::new("make")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["-s", "install-bin"])
        .arg(format!("PREFIX={}", prefix.path().display()))
        .arg(format!("BINSRC={}", bin_dir.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let installed = prefix.path().join("bin/eventstore");
    let o = Command::new(&installed).arg("--version").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("eventstore "));
}

/// A progress bar with rate and ETA on a terminal; nothing with --quiet or when
/// standard error is not a terminal. (`script`, from util-linux, gives the command a
/// terminal.)
#[test]
fn progress_is_drawn_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sample(dir.path());
    let on_terminal_run = |args: &str| {
        let o = Command::new("script")
            .args(["-q", "-e", "-c"])
            .arg(format!("{EXE} {args} {}", s(&path)))
            .arg("/dev/null")
            .stdin(Stdio::null())
            .output()
            .expect("run script(1)");
        assert!(o.status.success(), "{o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let on_terminal = |quiet: &str| on_terminal_run(&format!("{quiet} verify"));
    let drawn = on_terminal("");
    assert!(
        drawn.contains("verifying") && drawn.contains("ETA"),
        "{drawn}"
    );
    assert!(drawn.contains("sound"), "{drawn}");
    let quiet = on_terminal("--quiet");
    assert!(!quiet.contains("ETA"), "{quiet}");
    assert!(quiet.contains("sound"), "{quiet}");
    let piped = es(&["verify", s(&path)]);
    assert_eq!(stderr(&piped), "");
    // Opening a store (seconds for a large one) shows a spinner on a terminal.
    let drawn = on_terminal_run("info");
    assert!(drawn.contains("opening the store"), "{drawn}");
    assert!(drawn.contains("events"), "{drawn}");
    assert!(!on_terminal_run("--quiet info").contains("opening"));
    let piped = es(&["info", s(&path)]);
    assert_eq!(code(&piped), 0);
    assert_eq!(stderr(&piped), "");
    // import from a file: a bar of its bytes with rate and ETA.
    let exported = dir.path().join("log.jsonl");
    std::fs::write(&exported, stdout(&es(&["export", s(&path)]))).unwrap();
    let dest = dir.path().join("imported.store");
    let o = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("{EXE} import {} < {}", s(&dest), s(&exported)))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .expect("run script(1)");
    let drawn = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{drawn}");
    assert!(
        drawn.contains("importing") && drawn.contains("ETA"),
        "{drawn}"
    );
    assert!(drawn.contains("imported 17 events"), "{drawn}");
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn import_and_salvage_move_the_index_file_along_and_leave_no_temporary_file() {
    // 2 MiB of log: more than the 1 MiB a store keeps outside its index file, so the
    // stores built under temporary names are closed with an index file beside them.
    let dir = tempfile::tempdir().unwrap();
    let src_dir = dir.path().join("src");
    std::fs::create_dir(&src_dir).unwrap();
    let path = src_dir.join("big.store");
    let store = Store::open(&path).unwrap();
    let payload = vec![b'x'; 2000];
    for _ in 0..64 {
        let batch: Vec<ProposedEvent> = (0..16).map(|_| ev("Big", &payload, b"")).collect();
        store.append(A, ExpectedVersion::Any, batch).unwrap();
    }
    let events = store.read_all(0, u64::MAX).unwrap();
    store.close().unwrap();
    let text = stdout(&es(&["export", s(&path)]));

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let imported = out.join("imported.store");
    let o = es_in(&["import", s(&imported), "--quiet"], &text);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let salvaged = out.join("salvaged.store");
    let o = es(&["salvage", s(&path), s(&salvaged), "--quiet"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        names_in(&out),
        [
            "imported.store",
            "imported.store-index",
            "salvaged.store",
            "salvaged.store-index"
        ],
        "each copy keeps its index under its own name; no temporary file is left"
    );
    for copy in [&imported, &salvaged] {
        let store = Store::open(copy).unwrap();
        assert_eq!(store.read_all(0, u64::MAX).unwrap(), events);
        assert_eq!(store.read_stream(A, 0, u64::MAX).unwrap(), events);
    }
}

/// Starts `eventstore ARGS` (stdin from `input`, or none) and kills it (SIGKILL) once
/// the store it builds under a temporary name in `dir` holds more than 1 MB; false
/// when the command ended before that.
fn kill_midway(args: &[&str], input: Option<&Path>, dir: &Path) -> bool {
    let stdin = match input {
        Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
        None => Stdio::null(),
    };
    let mut child = Command::new(EXE)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let building = std::fs::read_dir(dir).unwrap().any(|e| {
            let e = e.unwrap();
            e.file_name().to_string_lossy().ends_with(".tmp")
                && e.metadata().is_ok_and(|m| m.len() > 1_000_000)
        });
        if building || Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn import_and_salvage_killed_midway_leave_no_destination_and_the_source_as_it_was() {
    // 150,000 exported events over 1,000 streams (about 50 MB of lines, 30 MB of log).
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("log.jsonl");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&lines).unwrap());
        let mut versions = vec![0u64; 1000];
        for i in 0..150_000u64 {
            let s = (i * 7919 % 1000) as usize;
            writeln!(
                out,
                "{{\"global_position\":{i},\"stream_id\":\"{}\",\"stream_version\":{},\"event_id\":\"{}\",\"event_type\":\"Killed\",\"recorded_at\":{},\"payload\":{{\"n\":{i},\"note\":\"an event of a long import\"}},\"payload_encoding\":\"json\",\"metadata\":\"\",\"metadata_encoding\":\"text\"}}",
                Uuid::from_u128(1 << 100 | s as u128),
                versions[s],
                Uuid::from_u128(1 << 64 | u128::from(i)),
                1_764_172_800_000_000 + i
            )
            .unwrap();
            versions[s] += 1;
        }
    }
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();

    let dest = work.join("imported.store");
    let killed = kill_midway(&["import", "--quiet", s(&dest)], Some(&lines), &work);
    assert!(killed, "the import ended before it could be killed");
    assert!(!dest.exists(), "no half-written destination");
    assert!(!eventstore::store::index_file_path(&dest).exists());

    // A whole import as the source of a salvage.
    let source = dir.path().join("source.store");
    let o = Command::new(EXE)
        .args(["import", "--quiet", s(&source)])
        .stdin(std::fs::File::open(&lines).unwrap())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let source_index = eventstore::store::index_file_path(&source);
    let before = (
        std::fs::read(&source).unwrap(),
        std::fs::read(&source_index).unwrap(),
    );
    let salvaged = work.join("salvaged.store");
    let killed = kill_midway(
        &["salvage", "--quiet", s(&source), s(&salvaged)],
        None,
        &work,
    );
    assert!(killed, "the salvage ended before it could be killed");
    assert!(!salvaged.exists(), "no half-written destination");
    assert!(!eventstore::store::index_file_path(&salvaged).exists());
    let after = (
        std::fs::read(&source).unwrap(),
        std::fs::read(&source_index).unwrap(),
    );
    assert!(before == after, "the source and its index are untouched");
    let o = es(&["verify", "--quiet", s(&source)]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

/// A file that appears at DEST while `import` runs (a store an application made
/// there) is never replaced by the finished import: the import fails, the file is left
/// byte for byte, and no temporary file remains.
#[test]
fn import_never_replaces_a_dest_that_appeared_while_it_ran() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("i.store");
    let (lines, _) = many_lines(100);
    let mut child = spawn_piped(&["import", s(&dest)]);
    let mut input = child.stdin.take().unwrap();
    input
        .write_all((lines.join("\n") + "\n").as_bytes())
        .unwrap();
    // The import is under way (its temporary store exists) while its input is open.
    let start = Instant::now();
    while std::fs::read_dir(dir.path()).unwrap().count() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no temporary store"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(&dest, b"an application's store").unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    fails(
        &out,
        2,
        &[
            "appeared while the import was running",
            "nothing was imported",
        ],
    );
    assert_eq!(std::fs::read(&dest).unwrap(), b"an application's store");
    only_files(dir.path(), &[&dest]);
}
