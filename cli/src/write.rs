//! The writing commands: append, import.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use eventstore::{
    CopiedBatch, Error, ExpectedVersion, ProposedEvent, ProposedEventRef, Store, StreamAppend, Uuid,
};

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
    /// Bytes read so far.
    bytes: u64,
}

impl Lines {
    fn new() -> Lines {
        Lines {
            input: std::io::stdin().lock(),
            buf: Vec::new(),
            number: 0,
            bytes: 0,
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
            self.bytes += n as u64;
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        match std::str::from_utf8(&self.buf) {
            Ok(text) => Ok(Some((self.number, text.trim_end_matches(['\n', '\r'])))),
            Err(e) => Err(Fail::usage(format!(
                "line {}: not UTF-8 ({e})",
                self.number
            ))),
        }
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
    // A bar of the input's bytes, with rate and ETA, when it is a file; else a
    // spinner counting events.
    let input_len = stdin_len();
    let progress = match input_len {
        Some(len) => Progress::new(quiet, "importing", Unit::Bytes, Some(len)),
        None => Progress::new(quiet, "importing", Unit::Events, None),
    };
    let result = import_into(&tmp, input_len, &progress);
    progress.done();
    // The temporary store is closed; its side file has no follower.
    let _ = std::fs::remove_file(eventstore::store::side_file_path(&tmp));
    let (events, batches) = match result {
        Ok(counts) => counts,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(eventstore::store::index_file_path(&tmp));
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
        let _ = std::fs::remove_file(eventstore::store::index_file_path(&tmp));
        return Err(Fail::new(EXIT_IO, format!("the imported store did not check out ({} of {events} events); nothing was imported, check the disk", checked.events)));
    }
    // Never over a file that appeared at DEST meanwhile (a store an application made).
    eventstore::store::io::rename_new(&tmp, dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(eventstore::store::index_file_path(&tmp));
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Fail::usage(format!(
                "{} appeared while the import was running: it is left as it is; nothing was imported",
                dest.display()
            ));
        }
        Fail::new(
            EXIT_IO,
            format!("rename {} to {}: {e}", tmp.display(), dest.display()),
        )
    })?;
    eventstore::store::move_index_file(&tmp, dest);
    // The renames are durable once the directory is synced.
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Fail::new(EXIT_IO, format!("fsync directory {}: {e}", dir.display())))?;
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

/// One batch being assembled from consecutive lines. Its events live in a pool that
/// is reused from batch to batch (no allocation per event once it has grown).
struct Building {
    /// Global position and line of its first event.
    first_position: u64,
    first_line: u64,
    recorded_at: u64,
    /// Its lines carry `batch_position`: it is one batch of the exported log, kept
    /// whole. Otherwise (older exports) consecutive events of one stream with one
    /// commit time are joined, up to a size.
    exact: bool,
    /// Its runs, in order.
    runs: Vec<RunStart>,
    /// The first `used` are the batch's events.
    events: Vec<ProposedEvent>,
    used: usize,
    bytes: usize,
}

/// One stream's run of events in a batch being built.
struct RunStart {
    stream: Uuid,
    first_version: u64,
    count: usize,
    /// The line of its first event.
    line: u64,
}

impl Building {
    /// The next free event of the pool.
    fn slot(&mut self) -> &mut ProposedEvent {
        if self.used == self.events.len() {
            self.events.push(ProposedEvent {
                event_id: Uuid::nil(),
                event_type: String::new(),
                metadata: Vec::new(),
                payload: Vec::new(),
            });
        }
        &mut self.events[self.used]
    }

    /// The batch as it stands, encoded; the builder is empty afterwards.
    fn take(&mut self) -> std::result::Result<CopiedBatch, Error> {
        let batch = match (&self.runs[..], self.used) {
            // One event of one stream, the most common batch: no list is built.
            ([r], 1) => CopiedBatch::multi(
                self.recorded_at,
                &[StreamAppend {
                    stream_id: r.stream,
                    expected_version: r.expected(),
                    events: &[self.events[0].as_ref()],
                }],
            ),
            _ => self.take_many(),
        };
        self.runs.clear();
        self.used = 0;
        self.bytes = 0;
        batch
    }

    /// [`Building::take`] for a batch of several events or streams.
    fn take_many(&self) -> std::result::Result<CopiedBatch, Error> {
        let refs: Vec<ProposedEventRef<'_>> = self.events[..self.used]
            .iter()
            .map(ProposedEvent::as_ref)
            .collect();
        let mut at = 0;
        let runs: Vec<StreamAppend<'_>> = self
            .runs
            .iter()
            .map(|r| {
                at += r.count;
                StreamAppend {
                    stream_id: r.stream,
                    expected_version: r.expected(),
                    events: &refs[at - r.count..at],
                }
            })
            .collect();
        CopiedBatch::multi(self.recorded_at, &runs)
    }
}

impl RunStart {
    /// The version the stream must be at before the run: the one before its first.
    fn expected(&self) -> ExpectedVersion {
        match self.first_version {
            0 => ExpectedVersion::NoStream,
            v => ExpectedVersion::Exact(v - 1),
        }
    }
}

/// The length of standard input when it is a regular file (`import DEST < FILE`).
fn stdin_len() -> Option<u64> {
    std::fs::metadata("/dev/stdin")
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

/// Batches encoded and waiting for their group commit, and where each of their runs
/// began: the store checks each run's expected version (the version before the
/// run's first one), and a conflict it reports is named by the run's line.
#[derive(Default)]
struct Group {
    batches: Vec<CopiedBatch>,
    bytes: usize,
    /// Per run: stream, first version, line.
    runs: Vec<(Uuid, u64, u64)>,
}

impl Group {
    /// Appends the batches as one group commit (one `fdatasync`), all or nothing.
    fn flush(&mut self, store: &Store, tmp: &Path) -> Result<()> {
        let result = store.append_copied_group(&self.batches);
        let runs = &self.runs;
        match result {
            Ok(_) => Ok(()),
            Err(Error::WrongExpectedVersion {
                stream_id,
                expected,
                actual,
            }) => {
                let version = match expected {
                    ExpectedVersion::Exact(v) => v + 1,
                    _ => 0,
                };
                let line = runs
                    .iter()
                    .find(|r| r.0 == stream_id && r.1 == version)
                    .map_or_else(|| "a line".to_string(), |r| format!("line {}", r.2));
                Err(Fail::usage(format!(
                    "{line}: stream {stream_id} at version {version}, expected {}",
                    actual.map_or(0, |v| v + 1)
                )))
            }
            Err(e) => Err(Fail::store(tmp, e)),
        }
    }
}

/// What the parser thread of an import hands to the committing thread.
enum Chunk {
    /// A group of batches ready for its group commit (about [`IMPORT_GROUP_BYTES`]),
    /// with the input's bytes read and the events parsed so far.
    Group {
        group: Group,
        read: u64,
        events: u64,
    },
    /// The parser stopped at a bad line (or a failed read): `rest` holds the whole
    /// batches of the lines before it, not yet committed.
    Failed { rest: Group, error: Fail },
    /// The input ended: `rest` is the last group; `events` and `batches` the totals.
    End {
        rest: Group,
        events: u64,
        batches: u64,
    },
}

/// The state of an import's parser between lines: it checks each line, builds the
/// batches and encodes them, and hands full groups to the committing thread.
struct Import {
    b: Building,
    group: Group,
    /// Groups the committing thread is done with, to be emptied and reused here: their
    /// batches were made on this thread, where freeing them is cheaper.
    spent: std::sync::mpsc::Receiver<Group>,
    /// Events and batches so far.
    position: u64,
    batches: u64,
    last_line: u64,
}

impl Import {
    /// Takes one line: `n` is its number. Returns a group that is full and ready to be
    /// committed, if this line began a batch after it.
    fn line(&mut self, n: u64, text: &str) -> Result<Option<Group>> {
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
        let position = self.position;
        if at != position {
            return Err(bad(format!(
                "global_position {at}, expected {position}: import rebuilds a whole log in order (the output of `eventstore export`); use `append` to add events"
            )));
        }
        let b = &mut self.b;
        {
            let slot = b.slot();
            line.event_into(slot).map_err(bad)?;
            eventstore::codec::check_event(&slot.as_ref()).map_err(|e| bad(e.to_string()))?;
            if slot.event_id.is_nil() {
                return Err(bad(
                    "no \"event_id\" (or the nil id): an exported event always has one".into(),
                ));
            }
        }
        let size = b.events[b.used].as_ref().encoded_len();
        let starts = match line.batch_position {
            Some(first) if first == at => true,
            Some(first) => {
                if first > at || b.used == 0 || !b.exact || b.first_position != first {
                    return Err(bad(format!(
                        "batch_position {first} is not the position of the batch the lines before it began (batch_position names the first event of the event's batch, at or before its own global_position {at})"
                    )));
                }
                if recorded_at != b.recorded_at {
                    return Err(bad(format!(
                        "recorded_at {recorded_at} differs from {} of the other events of its batch (batch_position {first}): a batch has one commit time",
                        b.recorded_at
                    )));
                }
                false
            }
            None => {
                !(b.used > 0
                    && !b.exact
                    && b.runs.last().is_some_and(|r| r.stream == stream)
                    && b.recorded_at == recorded_at
                    && b.used < IMPORT_BATCH_EVENTS
                    && b.bytes + size <= IMPORT_GROUP_BYTES)
            }
        };
        let mut full = None;
        if starts {
            if self.b.used > 0 {
                // The new line's event waits in the pool's next slot: keep it there
                // while the finished batch is encoded, then move it to the front.
                let parsed = self.b.used;
                self.close()?;
                self.b.events.swap(parsed, 0);
                if self.group.bytes >= IMPORT_GROUP_BYTES {
                    // Handed on only when the line is taken: after this point the
                    // line starts a batch, which no check below can fail.
                    let next = self.spare();
                    full = Some(std::mem::replace(&mut self.group, next));
                }
            }
            let b = &mut self.b;
            b.first_position = at;
            b.first_line = n;
            b.recorded_at = recorded_at;
            b.exact = line.batch_position.is_some();
        }
        let b = &mut self.b;
        match b.runs.last_mut() {
            Some(r) if r.stream == stream => {
                // Within a run the versions must continue; the store checks the version
                // a run starts at (its expected version), when the group is committed.
                let want = r.first_version + r.count as u64;
                if version != want {
                    return Err(bad(format!(
                        "stream {stream} at version {version}, expected {want}"
                    )));
                }
                r.count += 1;
            }
            _ => {
                if b.runs.iter().any(|r| r.stream == stream) {
                    return Err(bad(format!(
                        "stream {stream} appears twice in the batch at position {} (a batch holds one run of events per stream)",
                        b.first_position
                    )));
                }
                b.runs.push(RunStart {
                    stream,
                    first_version: version,
                    count: 1,
                    line: n,
                });
            }
        }
        b.used += 1;
        b.bytes += size;
        self.last_line = n;
        self.position += 1;
        Ok(full)
    }

    /// An empty group: one the committing thread has handed back, when there is one.
    fn spare(&self) -> Group {
        match self.spent.try_recv() {
            Ok(mut group) => {
                group.batches.clear();
                group.runs.clear();
                group.bytes = 0;
                group
            }
            Err(_) => Group::default(),
        }
    }

    /// Encodes the batch being built into the group.
    fn close(&mut self) -> Result<()> {
        let (first, last) = (self.b.first_line, self.last_line);
        self.group.runs.extend(
            self.b
                .runs
                .iter()
                .map(|r| (r.stream, r.first_version, r.line)),
        );
        let batch = self
            .b
            .take()
            .map_err(|e| Fail::usage(format!("lines {first}-{last}: {e}; nothing was imported")))?;
        self.group.bytes += batch.len();
        self.group.batches.push(batch);
        self.batches += 1;
        Ok(())
    }

    /// The chunk that ends the input after `error`: the whole batches of the lines
    /// before it, unless encoding the last of them fails (that failure comes first).
    fn failed(&mut self, error: Fail) -> Chunk {
        if self.b.used > 0 {
            if let Err(e) = self.close() {
                return Chunk::Failed {
                    rest: Group::default(),
                    error: e,
                };
            }
        }
        Chunk::Failed {
            rest: std::mem::take(&mut self.group),
            error,
        }
    }
}

/// Groups parsed ahead of the group commit: two of about [`IMPORT_GROUP_BYTES`] each
/// wait at most, so that parsing overlaps committing without holding the input.
const IMPORT_CHUNKS_AHEAD: usize = 2;

/// The parser thread of an import: reads standard input, checks and encodes every
/// line, and sends groups of batches to `out` until the input ends or a line is bad.
/// Stops early when the committing thread has hung up (it failed).
fn parse_input(out: std::sync::mpsc::SyncSender<Chunk>, spent: std::sync::mpsc::Receiver<Group>) {
    let mut import = Import {
        spent,
        b: Building {
            first_position: 0,
            first_line: 0,
            recorded_at: 0,
            exact: false,
            runs: Vec::new(),
            events: Vec::new(),
            used: 0,
            bytes: 0,
        },
        group: Group::default(),
        position: 0,
        batches: 0,
        last_line: 0,
    };
    let mut lines = Lines::new();
    loop {
        let next = match lines.next() {
            Ok(Some((n, text))) => import.line(n, text),
            Ok(None) => break,
            Err(e) => Err(e),
        };
        let chunk = match next {
            Ok(None) => continue,
            Ok(Some(group)) => Chunk::Group {
                group,
                read: lines.bytes,
                events: import.position,
            },
            Err(e) => {
                let _ = out.send(import.failed(e));
                return;
            }
        };
        if out.send(chunk).is_err() {
            return;
        }
    }
    let chunk = match import.b.used {
        0 => Ok(()),
        _ => import.close(),
    }
    .map_or_else(
        |e| Chunk::Failed {
            rest: Group::default(),
            error: e,
        },
        |()| Chunk::End {
            rest: std::mem::take(&mut import.group),
            events: import.position,
            batches: import.batches,
        },
    );
    let _ = out.send(chunk);
}

/// The committing side of an import: appends the groups the parser sends, in order.
/// Returns the events and batches imported. Dropping `chunks` (on an error) stops the
/// parser.
fn commit_chunks(
    store: &Store,
    tmp: &Path,
    input_len: Option<u64>,
    progress: &Progress,
    chunks: std::sync::mpsc::Receiver<Chunk>,
    spent: std::sync::mpsc::Sender<Group>,
) -> Result<(u64, u64)> {
    let mut reserved = false;
    for chunk in chunks {
        match chunk {
            Chunk::Group {
                mut group,
                read,
                events,
            } => {
                if !std::mem::replace(&mut reserved, true) {
                    // Before the first group commit: sizes the index once for the whole
                    // import, estimated from the lines per byte so far (a hint: it grows
                    // as needed beyond).
                    if let Some(len) = input_len {
                        let estimate =
                            u128::from(events) * u128::from(len) / u128::from(read.max(1));
                        store
                            .reserve(u64::try_from(estimate).unwrap_or(u64::MAX))
                            .map_err(|e| Fail::store(tmp, e))?;
                    }
                }
                group.flush(store, tmp)?;
                progress.set(if input_len.is_some() { read } else { events });
                // The parser may have finished: then the group is freed here.
                let _ = spent.send(group);
            }
            Chunk::Failed { mut rest, error } => {
                // A version conflict the store would find in the lines before the bad
                // one comes first: commit them (into the temporary file, discarded
                // anyway).
                return Err(match rest.flush(store, tmp) {
                    Err(conflict @ Fail::Exit { code: 2, .. }) => conflict,
                    _ => error,
                });
            }
            Chunk::End {
                mut rest,
                events,
                batches,
            } => {
                rest.flush(store, tmp)?;
                return Ok((events, batches));
            }
        }
    }
    Err(Fail::new(
        EXIT_IO,
        "the thread reading standard input stopped without an answer (a bug)",
    ))
}

fn import_into(tmp: &Path, input_len: Option<u64>, progress: &Progress) -> Result<(u64, u64)> {
    let store = Store::open_with(
        tmp,
        eventstore::OpenOptions::new()
            .index_at_close_only()
            .preallocate(false),
    )
    .map_err(|e| Fail::store(tmp, e))?;
    // Parsing and encoding the lines runs on a thread of its own, a few groups ahead of
    // the group commits on this one: the two overlap.
    let (send, chunks) = std::sync::mpsc::sync_channel(IMPORT_CHUNKS_AHEAD);
    let (give_back, spent) = std::sync::mpsc::channel();
    let parser = std::thread::spawn(move || parse_input(send, spent));
    // On a failure the parser is not waited for: it may be blocked reading an input
    // that has not ended (a pipe held open), and the command ends with this thread.
    // `chunks` is dropped: a parser still at work stops at its next send.
    let counts = commit_chunks(&store, tmp, input_len, progress, chunks, give_back)?;
    // It sent the end of the input: it has finished.
    parser
        .join()
        .map_err(|_| Fail::new(EXIT_IO, "the thread reading standard input failed (a bug)"))?;
    store.close().map_err(|e| Fail::store(tmp, e))?;
    Ok(counts)
}
