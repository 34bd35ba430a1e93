//! The writing commands: append, import.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use eventstore::{CopiedBatch, Error, ExpectedVersion, ProposedEvent, Store, Uuid};

use crate::access;
use crate::fail::{Fail, OrStdout, Result, EXIT_FOUND, EXIT_IO, EXIT_OK};
use crate::input;
use crate::progress::{Progress, Unit};
use crate::read::stdout;

/// Standard input, line by line, with line numbers; blank lines are skipped.
struct Lines {
    input: std::io::StdinLock<'static>,
    buf: Vec<u8>,
    number: u64,
}

impl Lines {
    fn new() -> Lines {
        Lines {
            input: std::io::stdin().lock(),
            buf: Vec::new(),
            number: 0,
        }
    }

    /// The next non-blank line and its number; `None` at the end of the input.
    fn next(&mut self) -> Result<Option<(u64, &str)>> {
        loop {
            self.buf.clear();
            let n = self
                .input
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| Fail::new(EXIT_IO, format!("read standard input: {e}")))?;
            if n == 0 {
                return Ok(None);
            }
            self.number += 1;
            if let Err(e) = std::str::from_utf8(&self.buf) {
                return Err(Fail::usage(format!(
                    "line {}: not UTF-8 ({e})",
                    self.number
                )));
            }
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        let text = std::str::from_utf8(&self.buf).expect("checked above");
        Ok(Some((self.number, text.trim_end_matches(['\n', '\r']))))
    }
}

/// Events of one batch of `append`, not yet written.
struct Pending {
    stream: Uuid,
    expected: ExpectedVersion,
    events: Vec<ProposedEvent>,
    first_line: u64,
    last_line: u64,
}

pub fn append(path: &Path, batch: Option<u64>, json: bool, quiet: bool) -> Result<i32> {
    let store = access::open_for_write(path, true)?;
    let progress = Progress::new(quiet, "appending", Unit::Events, None);
    let mut out = stdout();
    let mut lines = Lines::new();
    let mut pending: Option<Pending> = None;
    let mut appended = (0u64, 0u64); // events, batches
    let mut last_written = 0u64;
    while let Some((n, text)) = lines.next()? {
        let bad = |why: String, pending: &Option<Pending>| {
            let unfinished = match pending {
                Some(p) => format!(
                    " (nor lines {}-{} of its unfinished batch)",
                    p.first_line, p.last_line
                ),
                None => String::new(),
            };
            Fail::usage(format!(
                "line {n}: {why}; nothing of line {n} was written{unfinished}; lines up to {last_written} were appended"
            ))
        };
        let line = input::parse(text).map_err(|w| bad(w, &pending))?;
        if let Some(events) = &line.events {
            if line.event_type.is_some()
                || line.payload.is_some()
                || line.metadata.is_some()
                || line.has_event_id()
            {
                return Err(bad(
                    "a batch line holds \"events\" and no event fields of its own".into(),
                    &pending,
                ));
            }
            let stream = line
                .stream()
                .map_err(|w| bad(w, &pending))?
                .ok_or_else(|| {
                    bad(
                        "the batch has no \"stream_id\" (or \"stream\")".into(),
                        &pending,
                    )
                })?;
            let expected = line
                .expected()
                .map_err(|w| bad(w, &pending))?
                .unwrap_or(ExpectedVersion::Any);
            if events.is_empty() {
                return Err(bad("the batch has no events".into(), &pending));
            }
            let mut proposed = Vec::with_capacity(events.len());
            for (i, e) in events.iter().enumerate() {
                if e.stream()
                    .map_err(|w| bad(w, &pending))?
                    .is_some_and(|s| s != stream)
                    || e.events.is_some()
                    || e.expected_version.is_some()
                {
                    return Err(bad(
                        format!("event {i} of the batch names its own stream, version or events"),
                        &pending,
                    ));
                }
                proposed.push(
                    checked(
                        e.event()
                            .map_err(|w| bad(format!("event {i}: {w}"), &pending))?,
                    )
                    .map_err(|w| bad(format!("event {i}: {w}"), &pending))?,
                );
            }
            if let Some(p) = pending.take() {
                commit(&store, path, p, json, &mut out, &mut appended)?;
            }
            last_written = commit(
                &store,
                path,
                Pending {
                    stream,
                    expected,
                    events: proposed,
                    first_line: n,
                    last_line: n,
                },
                json,
                &mut out,
                &mut appended,
            )?;
        } else {
            let stream = line
                .stream()
                .map_err(|w| bad(w, &pending))?
                .ok_or_else(|| {
                    bad(
                        "the event has no \"stream_id\" (or \"stream\")".into(),
                        &pending,
                    )
                })?;
            let expected = line.expected().map_err(|w| bad(w, &pending))?;
            let event = checked(line.event().map_err(|w| bad(w, &pending))?)
                .map_err(|w| bad(w, &pending))?;
            let limit = batch.unwrap_or(1);
            let joins = pending.as_ref().is_some_and(|p| {
                p.stream == stream && expected.is_none() && (p.events.len() as u64) < limit
            });
            if !joins {
                if let Some(p) = pending.take() {
                    last_written = commit(&store, path, p, json, &mut out, &mut appended)?;
                }
            }
            let p = pending.get_or_insert_with(|| Pending {
                stream,
                expected: expected.unwrap_or(ExpectedVersion::Any),
                events: Vec::new(),
                first_line: n,
                last_line: n,
            });
            p.events.push(event);
            p.last_line = n;
            if p.events.len() as u64 >= limit {
                let p = pending.take().expect("just filled");
                last_written = commit(&store, path, p, json, &mut out, &mut appended)?;
            }
        }
        progress.set(appended.0);
    }
    if let Some(p) = pending.take() {
        commit(&store, path, p, json, &mut out, &mut appended)?;
    }
    progress.done();
    out.flush().or_stdout()?;
    store.close().map_err(|e| Fail::store(path, e))?;
    if !quiet {
        eprintln!(
            "eventstore: appended {} events in {} batches to {}",
            appended.0,
            appended.1,
            path.display()
        );
    }
    Ok(EXIT_OK)
}

/// Checks an event against the format's limits, so that the line is named.
fn checked(e: ProposedEvent) -> std::result::Result<ProposedEvent, String> {
    eventstore::codec::check_event(&e.as_ref()).map_err(|e| e.to_string())?;
    Ok(e)
}

/// Appends one batch and reports it; returns its last line.
fn commit(
    store: &Store,
    path: &Path,
    p: Pending,
    json: bool,
    out: &mut dyn Write,
    appended: &mut (u64, u64),
) -> Result<u64> {
    let lines = if p.first_line == p.last_line {
        format!("line {}", p.first_line)
    } else {
        format!("lines {}-{}", p.first_line, p.last_line)
    };
    let recorded = store
        .append(p.stream, p.expected, p.events)
        .map_err(|e| match e {
            Error::WrongExpectedVersion { .. } => Fail::new(
                EXIT_FOUND,
                format!(
                    "{lines}: {e}; nothing of {lines} was written, lines before it were appended"
                ),
            ),
            e => Fail::store(path, e),
        })?;
    let (first, last) = (&recorded[0], &recorded[recorded.len() - 1]);
    appended.0 += recorded.len() as u64;
    appended.1 += 1;
    if json {
        writeln!(
            out,
            "{{\"first_line\":{},\"last_line\":{},\"stream_id\":\"{}\",\"first_global_position\":{},\"first_stream_version\":{},\"count\":{},\"recorded_at\":{}}}",
            p.first_line, p.last_line, p.stream, first.global_position, first.stream_version, recorded.len(), first.recorded_at
        )
    } else {
        writeln!(
            out,
            "{lines}: stream {} versions {}-{} at positions {}-{}",
            p.stream, first.stream_version, last.stream_version, first.global_position, last.global_position
        )
    }
    .or_stdout()?;
    // Reported at once: a program feeding lines one by one waits for each answer.
    out.flush().or_stdout()?;
    Ok(p.last_line)
}

/// Events per batch and bytes per group commit while importing.
const IMPORT_BATCH_EVENTS: usize = 1024;
const IMPORT_GROUP_BYTES: usize = 4 << 20;

pub fn import(dest: &Path, json: bool, quiet: bool) -> Result<i32> {
    if dest.exists() {
        return Err(Fail::usage(format!(
            "{} already exists: import builds a new store; give a path that does not exist",
            dest.display()
        )));
    }
    let name = dest
        .file_name()
        .map_or_else(|| "store".into(), |n| n.to_string_lossy().into_owned());
    let tmp: PathBuf = dest.with_file_name(format!(".{name}.import-{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let progress = Progress::new(quiet, "importing", Unit::Events, None);
    let result = import_into(&tmp, &progress);
    progress.done();
    // The temporary store is closed; its side file has no follower.
    let _ = std::fs::remove_file(eventstore::store::side_file_path(&tmp));
    let (events, batches) = match result {
        Ok(counts) => counts,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(match e {
                Fail::Exit { code, message } => Fail::new(
                    code,
                    format!(
                        "{message}; nothing was imported ({} was not created)",
                        dest.display()
                    ),
                ),
                other => other,
            });
        }
    };
    let checked = eventstore::inspect::scan(&tmp, |_| Ok(())).map_err(|e| Fail::store(&tmp, e))?;
    if !checked.is_clean() || checked.events != events {
        let _ = std::fs::remove_file(&tmp);
        return Err(Fail::new(EXIT_IO, format!("the imported store did not check out ({} of {events} events); nothing was imported, check the disk", checked.events)));
    }
    std::fs::rename(&tmp, dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Fail::new(
            EXIT_IO,
            format!("rename {} to {}: {e}", tmp.display(), dest.display()),
        )
    })?;
    let mut out = stdout();
    if json {
        writeln!(
            out,
            "{{\"dest\":{},\"events\":{events},\"batches\":{batches}}}",
            serde_json::to_string(&dest.display().to_string()).expect("a string")
        )
        .or_stdout()?;
    } else {
        writeln!(
            out,
            "imported {events} events ({batches} batches) into {}",
            dest.display()
        )
        .or_stdout()?;
    }
    out.flush().or_stdout()?;
    Ok(EXIT_OK)
}

/// One batch being assembled from consecutive lines of one stream and commit time.
struct Building {
    batch: CopiedBatch,
    bytes: usize,
}

fn import_into(tmp: &Path, progress: &Progress) -> Result<(u64, u64)> {
    let store = Store::open(tmp).map_err(|e| Fail::store(tmp, e))?;
    let mut lines = Lines::new();
    let mut next_version: HashMap<Uuid, u64> = HashMap::new();
    let mut position = 0u64;
    let mut batches = 0u64;
    let mut building: Option<Building> = None;
    let mut group: Vec<CopiedBatch> = Vec::new();
    let mut group_bytes = 0usize;
    let flush = |group: &mut Vec<CopiedBatch>| -> Result<()> {
        store
            .append_copied(std::mem::take(group))
            .map(|_| ())
            .map_err(|e| Fail::store(tmp, e))
    };
    while let Some((n, text)) = lines.next()? {
        let bad = |why: String| Fail::usage(format!("line {n}: {why}"));
        let line = input::parse(text).map_err(bad)?;
        let field = |name: &str, v: Option<u64>| {
            v.ok_or_else(|| {
                bad(format!(
                    "no \"{name}\": import reads the lines `eventstore export` writes"
                ))
            })
        };
        let at = field("global_position", line.global_position)?;
        let version = field("stream_version", line.stream_version)?;
        let recorded_at = field("recorded_at", line.recorded_at)?;
        let stream = line.stream().map_err(bad)?.ok_or_else(|| {
            bad("no \"stream_id\": import reads the lines `eventstore export` writes".into())
        })?;
        if line.events.is_some() || line.expected_version.is_some() {
            return Err(bad("\"events\" and \"expected_version\" belong to `append` input, not to an exported log".into()));
        }
        if at != position {
            return Err(bad(format!(
                "global_position {at}, expected {position}: import rebuilds a whole log in order (the output of `eventstore export`); use `append` to add events"
            )));
        }
        let expected_version = next_version.get(&stream).copied().unwrap_or(0);
        if version != expected_version {
            return Err(bad(format!(
                "stream {stream} at version {version}, expected {expected_version}"
            )));
        }
        let event = checked(line.event().map_err(bad)?).map_err(bad)?;
        if event.event_id.is_nil() {
            return Err(bad(
                "no \"event_id\" (or the nil id): an exported event always has one".into(),
            ));
        }
        let size = event.as_ref().encoded_len();
        let joins = building.as_ref().is_some_and(|b| {
            b.batch.stream_id == stream
                && b.batch.recorded_at == recorded_at
                && b.batch.events.len() < IMPORT_BATCH_EVENTS
                && b.bytes + size <= IMPORT_GROUP_BYTES
        });
        if !joins {
            if let Some(b) = building.take() {
                group_bytes += b.bytes;
                group.push(b.batch);
                batches += 1;
                if group_bytes >= IMPORT_GROUP_BYTES {
                    flush(&mut group)?;
                    group_bytes = 0;
                }
            }
            building = Some(Building {
                batch: CopiedBatch {
                    stream_id: stream,
                    expected_version: match version {
                        0 => ExpectedVersion::NoStream,
                        v => ExpectedVersion::Exact(v - 1),
                    },
                    recorded_at,
                    events: Vec::new(),
                },
                bytes: 0,
            });
        }
        let b = building.as_mut().expect("just set");
        b.batch.events.push(event);
        b.bytes += size;
        next_version.insert(stream, version + 1);
        position += 1;
        if position.is_multiple_of(4096) {
            progress.set(position);
        }
    }
    if let Some(b) = building.take() {
        group.push(b.batch);
        batches += 1;
    }
    flush(&mut group)?;
    store.close().map_err(|e| Fail::store(tmp, e))?;
    Ok((position, batches))
}
