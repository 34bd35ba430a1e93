//! Shared machinery of the crash, fault and hostile-input suite (issue 4): a seeded
//! generator of batches, the reference model of acknowledged batches, and the one
//! checker every test uses to judge a reopened store.
//!
//! The checker's rule: the store holds exactly the acknowledged batches, plus at most
//! whole in-flight ones (appends that had started but not returned `Ok`), at contiguous
//! global positions and stream versions, with bytes identical to what was appended, and
//! every acknowledged batch where its acknowledgement placed it.
#![allow(dead_code)]

pub mod memfile;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use eventstore::{
    Error, ExpectedVersion, ProposedEvent, RecordedEvent, Store, MAX_EVENT_SIZE, RECORD_OVERHEAD,
};
use uuid::Uuid;

// ---------------------------------------------------------------------------------
// Knobs and scratch space

/// A numeric knob from the environment, `default` when unset or unparsable.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The run's seed: `ES_SEED` when set (to replay a failure), else a fixed one.
pub fn seed() -> u64 {
    std::env::var("ES_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_2026)
}

/// A scratch directory, in memory (`/dev/shm`) when there is one: the suite opens
/// stores thousands of times and each open may fsync. `ES_TEST_DIR` overrides it.
pub fn scratch() -> tempfile::TempDir {
    let base = std::env::var("ES_TEST_DIR")
        .ok()
        .map(PathBuf::from)
        .or_else(|| {
            let shm = Path::new("/dev/shm");
            shm.is_dir().then(|| shm.to_path_buf())
        });
    match base {
        Some(b) => tempfile::Builder::new()
            .prefix("es-crash-")
            .tempdir_in(b)
            .expect("scratch dir"),
        None => tempfile::tempdir().expect("scratch dir"),
    }
}

// ---------------------------------------------------------------------------------
// A small deterministic generator (SplitMix64): no dependency, replayable by seed.

#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn range(&mut self, lo: usize, hi_inclusive: usize) -> usize {
        lo + self.below((hi_inclusive - lo + 1) as u64) as usize
    }
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------
// Planned batches: everything about a batch follows from its key, so that a parent
// process can rebuild what a child appended from the key alone.

/// How big the generated events get.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    /// Streams the batches spread over.
    pub streams: u64,
    /// Largest payload of an ordinary event.
    pub max_payload: usize,
    /// One event in this many is of the maximum encoded size (0: never).
    pub max_size_one_in: u64,
    /// One batch of two or more events in this many is a multi-stream append (its
    /// events split over two or three streams, one atomic batch; 0: never).
    pub multi_one_in: u64,
}

impl Profile {
    /// Small events only: a store of a few KiB, cheap to cut at every byte.
    pub const SMALL: Profile = Profile {
        streams: 3,
        max_payload: 48,
        max_size_one_in: 0,
        multi_one_in: 3,
    };
    /// Sizes from 0 bytes to `MAX_EVENT_SIZE`.
    pub const MIXED: Profile = Profile {
        streams: 4,
        max_payload: 3000,
        max_size_one_in: 12,
        multi_one_in: 3,
    };
}

/// The batch sizes the issue asks for, cycled through.
pub const BATCH_SIZES: [usize; 4] = [1, 2, 3, 17];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedBatch {
    pub key: u64,
    /// The first (for a single-stream batch: the only) stream.
    pub stream: Uuid,
    pub events: Vec<ProposedEvent>,
    /// `(stream, number of events)` in order: one entry, or several for a
    /// multi-stream append.
    pub parts: Vec<(Uuid, usize)>,
}

impl PlannedBatch {
    pub fn is_multi(&self) -> bool {
        self.parts.len() > 1
    }

    /// The stream of event `j` and its index within that stream's part.
    pub fn stream_of(&self, j: usize) -> (Uuid, usize) {
        let mut start = 0;
        for &(stream, n) in &self.parts {
            if j < start + n {
                return (stream, j - start);
            }
            start += n;
        }
        panic!("event {j} is past the batch")
    }
}

/// Event ids carry their batch key and index, so any event read back names its batch.
const ID_TAG: u128 = 0xE5 << 120;

pub fn event_id(key: u64, index: usize) -> Uuid {
    Uuid::from_u128(ID_TAG | (u128::from(key) << 32) | index as u128)
}

fn key_of(id: Uuid) -> Option<(u64, usize)> {
    let v = id.as_u128();
    (v >> 120 == 0xE5).then_some((((v >> 32) & 0xffff_ffff_ffff) as u64, (v as u32) as usize))
}

pub fn stream_id(n: u64) -> Uuid {
    Uuid::from_u128(0x5742_0000_0000_0000_0000_0000_0000_0000 | (u128::from(n) + 1))
}

/// Bytes a batch takes in the file: its frame (44-byte header, 8-byte trailer) and
/// its records (see `docs/format.md`).
pub fn batch_len(b: &PlannedBatch) -> u64 {
    52 + b
        .events
        .iter()
        .map(|e| e.as_ref().encoded_len() as u64)
        .sum::<u64>()
}

/// The batch with this key. `count` 0 picks one of [`BATCH_SIZES`] by the key.
pub fn planned(key: u64, profile: Profile, count: usize) -> PlannedBatch {
    let mut rng = Rng::new(key.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0xba7c);
    let count = if count == 0 {
        BATCH_SIZES[(key % BATCH_SIZES.len() as u64) as usize]
    } else {
        count
    };
    let first_stream = rng.below(profile.streams);
    let stream = stream_id(first_stream);
    let events: Vec<ProposedEvent> = (0..count)
        .map(|i| {
            let event_type = format!("T{}", rng.below(1000));
            let metadata = if rng.chance(1, 3) {
                let n = rng.range(0, 16);
                rng.bytes(n)
            } else {
                Vec::new()
            };
            let payload = if profile.max_size_one_in > 0 && rng.chance(1, profile.max_size_one_in) {
                // Exactly the largest record the format takes.
                let room = MAX_EVENT_SIZE - RECORD_OVERHEAD - event_type.len() - metadata.len();
                rng.bytes(room)
            } else if rng.chance(1, 4) {
                Vec::new()
            } else {
                let n = rng.range(0, profile.max_payload);
                rng.bytes(n)
            };
            ProposedEvent {
                event_id: event_id(key, i),
                event_type,
                metadata,
                payload,
            }
        })
        .collect();
    // Drawn after the events, so that single-stream batches are what they always were.
    let mut parts = vec![(stream, count)];
    if profile.multi_one_in > 0
        && count >= 2
        && profile.streams >= 2
        && rng.chance(1, profile.multi_one_in)
    {
        let k = if count >= 3 && profile.streams >= 3 && rng.chance(1, 2) {
            3
        } else {
            2
        };
        parts = (0..k)
            .map(|i| {
                let n = if i + 1 == k {
                    count - (k - 1) * (count / k)
                } else {
                    count / k
                };
                (stream_id((first_stream + i as u64) % profile.streams), n)
            })
            .collect();
    }
    PlannedBatch {
        key,
        stream,
        events,
        parts,
    }
}

// ---------------------------------------------------------------------------------
// The reference model

/// A batch whose append returned `Ok`, with the placement the store acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    pub batch: PlannedBatch,
    pub first_position: u64,
    pub first_version: u64,
    pub recorded_at: u64,
}

/// Appends a planned batch (expected version `Any`; a multi-stream batch with
/// `append_multi`) and returns its acknowledgement.
pub fn append(store: &Store, batch: &PlannedBatch) -> Result<Acked, Error> {
    if batch.is_multi() {
        let refs: Vec<eventstore::ProposedEventRef<'_>> =
            batch.events.iter().map(ProposedEvent::as_ref).collect();
        let mut start = 0;
        let parts: Vec<eventstore::StreamAppend<'_>> = batch
            .parts
            .iter()
            .map(|&(stream_id, n)| {
                start += n;
                eventstore::StreamAppend {
                    stream_id,
                    expected_version: ExpectedVersion::Any,
                    events: &refs[start - n..start],
                }
            })
            .collect();
        let results = store.append_multi(&parts)?;
        return Ok(Acked {
            batch: batch.clone(),
            first_position: results[0].first_global_position,
            first_version: results[0].first_stream_version,
            recorded_at: results[0].recorded_at,
        });
    }
    let recorded = store.append(batch.stream, ExpectedVersion::Any, batch.events.clone())?;
    let first = &recorded[0];
    Ok(Acked {
        batch: batch.clone(),
        first_position: first.global_position,
        first_version: first.stream_version,
        recorded_at: first.recorded_at,
    })
}

/// Appends every batch, panicking on failure; returns the model.
pub fn append_all(store: &Store, batches: &[PlannedBatch]) -> Vec<Acked> {
    batches
        .iter()
        .map(|b| append(store, b).expect("append"))
        .collect()
}

/// What a store held, as judged by [`check_events`].
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    pub events: u64,
    pub batches: usize,
    /// In-flight batches found whole in the store, with where they landed.
    pub inflight_present: Vec<Acked>,
}

/// The checker. `events` is the whole log as read back (`read_all(0, u64::MAX)`).
pub fn check_events(
    events: &[RecordedEvent],
    acked: &[Acked],
    inflight: &[PlannedBatch],
) -> Result<Verdict, String> {
    let mut known: HashMap<u64, (&PlannedBatch, Option<&Acked>)> = HashMap::new();
    for a in acked {
        if known.insert(a.batch.key, (&a.batch, Some(a))).is_some() {
            return Err(format!(
                "model error: batch key {} acked twice",
                a.batch.key
            ));
        }
    }
    for b in inflight {
        known.entry(b.key).or_insert((b, None));
    }
    let mut seen = HashSet::new();
    let mut next_version: HashMap<Uuid, u64> = HashMap::new();
    let mut verdict = Verdict::default();
    let mut i = 0usize;
    while i < events.len() {
        let head = &events[i];
        let (key, index) = key_of(head.event_id).ok_or_else(|| {
            format!(
                "event at position {i} has id {} which no append used",
                head.event_id
            )
        })?;
        let (batch, ack) = *known.get(&key).ok_or_else(|| {
            format!("event at position {i} belongs to batch {key}, which was never appended")
        })?;
        if index != 0 {
            return Err(format!(
                "batch {key} starts at position {i} with its event {index}: a partial batch"
            ));
        }
        if !seen.insert(key) {
            return Err(format!("batch {key} appears twice (again at position {i})"));
        }
        let n = batch.events.len();
        if i + n > events.len() {
            return Err(format!(
                "batch {key} at position {i} is cut short: {} of {n} events",
                events.len() - i
            ));
        }
        let expected_version = *next_version.get(&batch.stream).unwrap_or(&0);
        for (j, (got, want)) in events[i..i + n].iter().zip(&batch.events).enumerate() {
            let (stream, k) = batch.stream_of(j);
            let want_version = *next_version.get(&stream).unwrap_or(&0) + k as u64;
            let at = i + j;
            let what = |field: &str| format!("position {at} (batch {key}, event {j}): {field}");
            if got.global_position != at as u64 {
                return Err(what(&format!(
                    "global position {} is not contiguous",
                    got.global_position
                )));
            }
            if got.event_id != want.event_id {
                return Err(what(&format!(
                    "event id {} instead of {} (partial or mixed batch)",
                    got.event_id, want.event_id
                )));
            }
            if got.stream_id != stream {
                return Err(what("stream id differs"));
            }
            if got.stream_version != want_version {
                return Err(what(&format!(
                    "stream version {} instead of {want_version}",
                    got.stream_version,
                )));
            }
            if got.event_type != want.event_type
                || got.metadata != want.metadata
                || got.payload != want.payload
            {
                return Err(what("bytes differ from what was appended"));
            }
            if got.recorded_at != head.recorded_at {
                return Err(what("recorded_at differs within one batch"));
            }
        }
        let placed = Acked {
            batch: batch.clone(),
            first_position: i as u64,
            first_version: expected_version,
            recorded_at: head.recorded_at,
        };
        match ack {
            Some(a) if *a != placed => {
                return Err(format!(
                    "acknowledged batch {key} moved: acked at position {} version {} time {}, \
                     found at position {i} version {expected_version} time {}",
                    a.first_position, a.first_version, a.recorded_at, head.recorded_at
                ))
            }
            Some(_) => {}
            None => verdict.inflight_present.push(placed),
        }
        for &(stream, count) in &batch.parts {
            *next_version.entry(stream).or_insert(0) += count as u64;
        }
        verdict.batches += 1;
        i += n;
    }
    for a in acked {
        if !seen.contains(&a.batch.key) {
            return Err(format!(
                "acknowledged batch {} (position {}, {} events) is LOST",
                a.batch.key,
                a.first_position,
                a.batch.events.len()
            ));
        }
    }
    verdict.events = events.len() as u64;
    Ok(verdict)
}

/// [`check_events`] on an open store, also checking that every other read agrees:
/// `read_stream` of each stream, `stream_version`, `global_position`.
pub fn check_store(
    store: &Store,
    acked: &[Acked],
    inflight: &[PlannedBatch],
) -> Result<Verdict, String> {
    let events = store
        .read_all(0, u64::MAX)
        .map_err(|e| format!("read_all failed: {e}"))?;
    let verdict = check_events(&events, acked, inflight)?;
    if store.global_position() != events.len() as u64 {
        return Err(format!(
            "global_position {} but read_all gave {} events",
            store.global_position(),
            events.len()
        ));
    }
    let mut streams: HashMap<Uuid, Vec<&RecordedEvent>> = HashMap::new();
    for e in &events {
        streams.entry(e.stream_id).or_default().push(e);
    }
    for (stream, want) in &streams {
        let got = store
            .read_stream(*stream, 0, u64::MAX)
            .map_err(|e| format!("read_stream {stream} failed: {e}"))?;
        if got.len() != want.len() || got.iter().zip(want).any(|(g, w)| g != *w) {
            return Err(format!("read_stream {stream} disagrees with read_all"));
        }
        if store.stream_version(stream) != Some(want.len() as u64 - 1) {
            return Err(format!(
                "stream_version of {stream} disagrees with read_all"
            ));
        }
    }
    Ok(verdict)
}

/// Opens the store at `path`, checks it and closes it. An open failure is a failed check.
pub fn check_path(
    path: &Path,
    acked: &[Acked],
    inflight: &[PlannedBatch],
) -> Result<Verdict, String> {
    let store = Store::open(path).map_err(|e| format!("open failed: {e}"))?;
    let verdict = check_store(&store, acked, inflight)?;
    store.close().map_err(|e| format!("close failed: {e}"))?;
    Ok(verdict)
}

/// After a crash: the store must open to the model, take one more append, and keep
/// everything across another reopen. Returns the verdict of the first check.
pub fn check_recovers_and_continues(
    path: &Path,
    acked: &[Acked],
    inflight: &[PlannedBatch],
    extra_key: u64,
) -> Result<Verdict, String> {
    let store = Store::open(path).map_err(|e| format!("open failed: {e}"))?;
    let verdict = check_store(&store, acked, inflight)?;
    let mut model = merged(acked, &verdict);
    let extra = planned(extra_key, Profile::SMALL, 2);
    model.push(append(&store, &extra).map_err(|e| format!("append after recovery: {e}"))?);
    store.close().map_err(|e| format!("close failed: {e}"))?;
    check_path(path, &model, &[]).map_err(|e| format!("after the extra append: {e}"))?;
    Ok(verdict)
}

/// Acked batches sorted by position, merged with in-flight ones found present: the
/// model of what the file now durably holds.
pub fn merged(acked: &[Acked], verdict: &Verdict) -> Vec<Acked> {
    let mut model: Vec<Acked> = acked.to_vec();
    model.extend(verdict.inflight_present.iter().cloned());
    model.sort_by_key(|a| a.first_position);
    model
}

/// The length of a file.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").len()
}

// ---------------------------------------------------------------------------------
// Child processes: the test binary re-executed to run one test function in a mode
// chosen by environment variables.

/// This test binary, at a path every user can execute: itself, or, when a directory
/// above it is closed to other users (a checkout in a 0700 `mktemp -d`), a copy made
/// once in a directory open to all, so that children run as another user (`nobody`)
/// can start.
pub fn child_exe() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        let open_to_all = exe
            .ancestors()
            .skip(1)
            .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
        if open_to_all {
            return exe;
        }
        let dir = tempfile::Builder::new()
            .prefix("es-test-exe-")
            .tempdir()
            .expect("a directory for the test binary")
            .keep();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join(exe.file_name().expect("a file name"));
        std::fs::copy(&exe, &copy).expect("copy the test binary");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    })
    .clone()
}

/// A command that re-runs this test binary's test `name` alone, with `envs`.
pub fn child(name: &str, envs: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(child_exe());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1", "-q"]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// The lines a child prints on its (piped) stdout, as they come, on a channel fed by
/// a thread, so that the parent can wait for them with a deadline.
pub fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// SIGKILL a child process by its pid.
pub fn kill9(pid: u32) {
    // SAFETY: kill(2) on a pid we spawned and have not yet reaped; no memory involved.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// Serialises the tests of one binary that fork processes with those that close and
/// reopen stores. A forked child shares the parent's open file descriptions, and with
/// them every `flock` the parent holds, until it calls `exec` (which closes them,
/// `O_CLOEXEC`); a store closed and reopened in that window is briefly `Locked`.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}
