//! Issue 4, point 3: simulated power loss. A recording [`StorageFile`] logs every write,
//! truncation and sync the store makes (and, from the driver, when each append started
//! and was acknowledged). From that log, for every crash point (after every operation),
//! crash images are built as a disk may leave them when power fails: data not synced
//! is lost in any order and torn at any byte.
//!
//! Images per crash point (the pending set = writes and truncations since the last sync):
//! - all pending dropped;
//! - every prefix of the pending operations kept;
//! - the last kept write torn at sampled bytes (every byte with `ES_TORN_STRIDE=1`) and at
//!   every 512- and 4096-byte boundary of the file it crosses;
//! - the file extended by zeros or garbage (after the durable state and after all pending);
//! - random subsets of the pending 4 KiB blocks, with the old or the new file length;
//! - before the first acknowledgement: the new file lost (no directory fsync yet).
//!
//! Each image must open to exactly the acknowledged batches, plus at most whole in-flight
//! ones. The workload includes multi-stream appends (issue 11), one batch each; the
//! scenario `power_loss_of_multi_stream_appends` is made of them only. The negative control replays the same log as if syncs were not honoured (a
//! build that skips fsync); the checker must then fail.
//!
//! Knobs: `ES_TORN_STRIDE` (default 127), `ES_BLOCK_SUBSETS` (default 4 per crash point),
//! `ES_PL_BATCHES` (default 10), `ES_PL_CONTINUE_EVERY` (default 25: append-and-reopen
//! check on every 25th distinct image), `ES_SEED`.

mod support;

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use eventstore::store::io::StorageFile;
use eventstore::{OpenOptions, RecordedEvent, Store};
use support::memfile::{open_mem, MemFile};
use support::*;

#[derive(Clone, Debug)]
enum Op {
    Write {
        off: u64,
        data: Vec<u8>,
    },
    SetLen(u64),
    Sync,
    /// The driver is about to append planned batch `key`.
    Start(u64),
    /// The append of a batch returned `Ok`.
    Ack(Box<Acked>),
}

type Log = Arc<Mutex<Vec<Op>>>;

/// Passes everything to the real file and logs what changes it.
struct Recorder {
    file: File,
    log: Log,
}

impl StorageFile for Recorder {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(&self.file, buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let mut log = self.log.lock().unwrap();
        let n = FileExt::write_at(&self.file, buf, offset)?;
        log.push(Op::Write {
            off: offset,
            data: buf[..n].to_vec(),
        });
        Ok(n)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()?;
        self.log.lock().unwrap().push(Op::Sync);
        Ok(())
    }
    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()?;
        self.log.lock().unwrap().push(Op::Sync);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut log = self.log.lock().unwrap();
        self.file.set_len(len)?;
        log.push(Op::SetLen(len));
        Ok(())
    }
    fn file_len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

/// Runs a scenario on a fresh store through the recorder: `threads` threads append
/// their share of `batches` (thread t takes every t-th batch), then the store closes.
fn record(dir: &Path, preallocate: bool, batches: &[PlannedBatch], threads: usize) -> Vec<Op> {
    record_from(dir, preallocate, batches, threads, false)
}

/// [`record`]; with `from_v1` the store starts as a version-1 file (its header written
/// and synced first, as 0.1 would have), so the first multi-stream append rewrites it.
fn record_from(
    dir: &Path,
    preallocate: bool,
    batches: &[PlannedBatch],
    threads: usize,
    from_v1: bool,
) -> Vec<Op> {
    let log: Log = Arc::default();
    let path = dir.join(format!("recorded-{preallocate}-{threads}-{from_v1}.store"));
    if from_v1 {
        let header = eventstore::codec::encode_file_header_version(0x5a17_0001, 1);
        std::fs::write(&path, header).unwrap();
        log.lock().unwrap().extend([
            Op::Write {
                off: 0,
                data: header.to_vec(),
            },
            Op::Sync,
        ]);
    }
    let l = Arc::clone(&log);
    let store = Store::open_with(
        &path,
        OpenOptions::new()
            .preallocate(preallocate)
            .storage(move |file| Box::new(Recorder { file, log: l }) as Box<dyn StorageFile>),
    )
    .unwrap();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (store, log) = (&store, &log);
            s.spawn(move || {
                for b in batches.iter().skip(t).step_by(threads) {
                    log.lock().unwrap().push(Op::Start(b.key));
                    let acked = append(store, b).expect("append");
                    log.lock().unwrap().push(Op::Ack(Box::new(acked)));
                }
            });
        }
    });
    store.close().unwrap();
    Arc::try_unwrap(log).unwrap().into_inner().unwrap()
}

fn apply(image: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { off, data } => {
            let end = *off as usize + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[*off as usize..end].copy_from_slice(data);
        }
        Op::SetLen(len) => image.resize(*len as usize, 0),
        _ => {}
    }
}

#[derive(Default, Debug)]
struct Figures {
    crash_points: usize,
    images: usize,
    distinct_opened: usize,
    continued: usize,
    inflight_present: usize,
    failures: Vec<String>,
}

/// What opening an image gave: the whole log, or why it could not be opened.
type Opened = Result<Vec<RecordedEvent>, String>;

struct Judge<'a> {
    dir: &'a Path,
    /// Verdicts (in-flight batches present, or the failure) of the images already
    /// judged at the current crash point, by image hash: the same bytes often arise
    /// from several variants. Only verdicts are kept, never the events read back.
    cache: HashMap<(u64, usize), Result<usize, String>>,
    figures: Figures,
    continue_every: usize,
    extra_key: u64,
}

impl Judge<'_> {
    /// Opens `image` (or, with `None`, a file that does not exist) and checks it.
    fn judge(
        &mut self,
        image: Option<&[u8]>,
        acked: &[Acked],
        inflight: &[PlannedBatch],
        what: &str,
    ) {
        self.figures.images += 1;
        let key = match image {
            Some(b) => {
                let mut h = DefaultHasher::new();
                b.hash(&mut h);
                (h.finish(), b.len())
            }
            None => (0, usize::MAX),
        };
        let verdict = match self.cache.get(&key) {
            Some(v) => v.clone(),
            None => {
                self.figures.distinct_opened += 1;
                let v = self
                    .open(image)
                    .and_then(|events| check_events(&events, acked, inflight))
                    .map(|v| v.inflight_present.len());
                if v.is_ok()
                    && self
                        .figures
                        .distinct_opened
                        .is_multiple_of(self.continue_every)
                {
                    if let Some(b) = image {
                        self.continue_on(b, acked, inflight);
                    }
                }
                self.cache.insert(key, v.clone());
                v
            }
        };
        match verdict {
            Ok(present) => self.figures.inflight_present += present,
            Err(e) => self.figures.failures.push(format!("{what}: {e}")),
        }
    }

    fn open(&mut self, image: Option<&[u8]>) -> Opened {
        let store = match image {
            Some(b) => open_mem(&self.dir.join("image.lock"), &MemFile::new(b.to_vec())),
            None => {
                let path = self.dir.join("lost.store");
                let _ = std::fs::remove_file(&path);
                Store::open(&path)
            }
        }
        .map_err(|e| format!("open failed: {e}"))?;
        store
            .read_all(0, u64::MAX)
            .map_err(|e| format!("read_all: {e}"))
    }

    /// One more append on the recovered image, then a reopen of the same bytes.
    fn continue_on(&mut self, image: &[u8], acked: &[Acked], inflight: &[PlannedBatch]) {
        self.extra_key += 1;
        let lock = self.dir.join("continue.lock");
        let mem = MemFile::new(image.to_vec());
        let result = (|| {
            let store = open_mem(&lock, &mem).map_err(|e| e.to_string())?;
            let v = check_store(&store, acked, inflight)?;
            let mut model = merged(acked, &v);
            let extra = planned(self.extra_key, Profile::SMALL, 3);
            model.push(append(&store, &extra).map_err(|e| e.to_string())?);
            store.close().map_err(|e| e.to_string())?;
            let store = open_mem(&lock, &mem).map_err(|e| e.to_string())?;
            check_store(&store, &model, &[]).map(|_| ())
        })();
        self.figures.continued += 1;
        if let Err(e) = result {
            self.figures
                .failures
                .push(format!("append after recovery: {e}"));
        }
    }
}

/// Cut offsets within a write: every `stride`-th byte (a zero-fill of preallocation,
/// whose bytes are all alike, at least every 4096th) plus the file's 512- and
/// 4096-byte boundaries that the write crosses (512 only near its ends for a zero-fill).
fn tears(off: u64, data: &[u8], stride: usize) -> Vec<usize> {
    let len = data.len();
    let zero_fill = data.iter().all(|&b| b == 0);
    let stride = if zero_fill { stride.max(4096) } else { stride };
    let mut t: Vec<usize> = (1..len).step_by(stride).collect();
    t.extend([1, 2, 3, len.saturating_sub(2), len.saturating_sub(1)]);
    for align in [512u64, 4096] {
        let mut b = (off / align + 1) * align;
        while b < off + len as u64 {
            let x = (b - off) as usize;
            if !(zero_fill && align == 512) || x < 4096 || len - x < 4096 {
                t.push(x);
            }
            b += align;
        }
    }
    t.retain(|&x| x > 0 && x < len);
    t.sort_unstable();
    t.dedup();
    t
}

/// Builds and judges every crash image of `ops`. `honour_syncs: false` is the negative
/// control: the disk keeps nothing a sync was supposed to make durable.
fn crash_images(dir: &Path, ops: &[Op], honour_syncs: bool, seed: u64) -> Figures {
    let stride = env_usize("ES_TORN_STRIDE", 127).max(1);
    let subsets = env_usize("ES_BLOCK_SUBSETS", 4);
    let mut rng = Rng::new(seed);
    let mut judge = Judge {
        dir,
        cache: HashMap::new(),
        figures: Figures::default(),
        continue_every: env_usize("ES_PL_CONTINUE_EVERY", 25).max(1),
        extra_key: 1 << 44,
    };
    let mut durable: Vec<u8> = Vec::new();
    let mut pending: Vec<&Op> = Vec::new();
    let mut acked: Vec<Acked> = Vec::new();
    let mut started: HashMap<u64, PlannedBatch> = HashMap::new();
    let mut acked_keys = HashSet::new();
    let mut plans: HashMap<u64, PlannedBatch> = HashMap::new();
    for op in ops {
        if let Op::Ack(a) = op {
            plans.insert(a.batch.key, a.batch.clone());
        }
    }
    for p in 0..=ops.len() {
        if p > 0 {
            match &ops[p - 1] {
                op @ (Op::Write { .. } | Op::SetLen(_)) => pending.push(op),
                Op::Sync => {
                    if honour_syncs {
                        for op in pending.drain(..) {
                            apply(&mut durable, op);
                        }
                    }
                }
                Op::Start(k) => {
                    started.insert(*k, plans[k].clone());
                }
                Op::Ack(a) => {
                    started.remove(&a.batch.key);
                    acked_keys.insert(a.batch.key);
                    acked.push((**a).clone());
                }
            }
        }
        judge.figures.crash_points += 1;
        judge.cache.clear();
        let inflight: Vec<PlannedBatch> = started.values().cloned().collect();
        let at = |what: &str| format!("crash point {p}/{}: {what}", ops.len());
        if acked.is_empty() {
            judge.judge(None, &acked, &inflight, &at("new file lost"));
        }
        judge.judge(
            Some(&durable),
            &acked,
            &inflight,
            &at("all unsynced dropped"),
        );
        let mut image = durable.clone();
        for (j, op) in pending.iter().enumerate() {
            if let Op::Write { off, data } = op {
                for t in tears(*off, data, stride) {
                    let mut torn = image.clone();
                    apply(
                        &mut torn,
                        &Op::Write {
                            off: *off,
                            data: data[..t].to_vec(),
                        },
                    );
                    judge.judge(
                        Some(&torn),
                        &acked,
                        &inflight,
                        &at(&format!("write {j} torn at {t}")),
                    );
                }
            }
            apply(&mut image, op);
            judge.judge(
                Some(&image),
                &acked,
                &inflight,
                &at(&format!("{} pending kept", j + 1)),
            );
        }
        let full = image;
        // A longer file is only possible once the header is durable: before that the
        // file was never longer than its header, and a longer file with a damaged header
        // is a foreign file that open must refuse (InvalidHeader), never re-initialise.
        let extend: &[&Vec<u8>] = if durable.len() >= 32 {
            &[&durable, &full]
        } else {
            &[]
        };
        for &base in extend {
            let n = rng.range(1, 8192);
            let mut zeros = base.clone();
            zeros.resize(base.len() + n, 0);
            judge.judge(
                Some(&zeros),
                &acked,
                &inflight,
                &at(&format!("{n} zeros appended")),
            );
            let mut garbage = base.clone();
            garbage.extend(rng.bytes(n));
            judge.judge(
                Some(&garbage),
                &acked,
                &inflight,
                &at(&format!("{n} garbage bytes appended")),
            );
        }
        if full != durable {
            for s in 0..subsets {
                let len = if rng.chance(1, 2) {
                    full.len()
                } else {
                    durable.len()
                };
                let mut img = vec![0u8; len];
                for (b, chunk) in img.chunks_mut(4096).enumerate() {
                    let src = if rng.chance(1, 2) { &full } else { &durable };
                    let start = b * 4096;
                    let avail = src.len().saturating_sub(start).min(chunk.len());
                    if avail > 0 {
                        chunk[..avail].copy_from_slice(&src[start..start + avail]);
                    }
                }
                judge.judge(
                    Some(&img),
                    &acked,
                    &inflight,
                    &at(&format!("block subset {s}")),
                );
            }
        }
    }
    judge.figures
}

fn plan(n: u64, base: u64) -> Vec<PlannedBatch> {
    plan_with(n, base, 3)
}

fn plan_with(n: u64, base: u64, multi_one_in: u64) -> Vec<PlannedBatch> {
    let profile = Profile {
        streams: 3,
        max_payload: 2500,
        max_size_one_in: 40,
        multi_one_in,
    };
    (0..n).map(|k| planned(base + k, profile, 0)).collect()
}

fn scenario(preallocate: bool, threads: usize, base: u64) {
    let dir = scratch();
    // The seed picks the batches too (keys stay below 2^40).
    let base = base + (seed() % 997) * 1_000_000;
    let batches = plan(env_usize("ES_PL_BATCHES", 10) as u64, base);
    let multi = batches.iter().filter(|b| b.is_multi()).count();
    let ops = record(dir.path(), preallocate, &batches, threads);
    let acks = ops.iter().filter(|o| matches!(o, Op::Ack(_))).count();
    assert_eq!(acks, batches.len());
    let f = crash_images(dir.path(), &ops, true, seed() ^ base);
    eprintln!(
        "power loss (preallocate {preallocate}, {threads} threads, {multi} of the batches multi-stream): {} ops, {} crash points, {} images ({} distinct opened, {} with append+reopen, {} in-flight batches present whole): {} failures",
        ops.len(),
        f.crash_points,
        f.images,
        f.distinct_opened,
        f.continued,
        f.inflight_present,
        f.failures.len()
    );
    assert!(
        f.failures.is_empty(),
        "{} crash images lost acknowledged data or kept partial batches; first: {:#?}",
        f.failures.len(),
        &f.failures[..f.failures.len().min(5)]
    );
}

/// After one single-stream batch, every batch a multi-stream append, on a store that
/// starts as a version-1 file: the header rewrite (torn at every sampled byte, like
/// any write) is among the crash points too.
#[test]
fn power_loss_of_multi_stream_appends() {
    let dir = scratch();
    let base = 50_000 + (seed() % 997) * 1_000_000;
    let mut batches = plan_with(env_usize("ES_PL_BATCHES", 10) as u64, base, 1);
    batches.retain(|b| b.is_multi());
    assert!(batches.len() >= 4, "{} multi-stream batches", batches.len());
    // One single-stream batch first: the header is rewritten in front of data, so a
    // torn rewrite must not cost the batch before it.
    batches.insert(0, planned(base + 999, Profile::SMALL, 1));
    let ops = record_from(dir.path(), false, &batches, 1, true);
    let header_rewrites = ops
        .iter()
        .filter(|o| matches!(o, Op::Write { off: 0, data } if data.len() == 32))
        .count();
    assert_eq!(header_rewrites, 2, "the v1 header, then its rewrite as v2");
    let f = crash_images(dir.path(), &ops, true, seed() ^ base);
    eprintln!(
        "power loss (multi-stream only, from a version-1 file): {} batches, {} ops, {} crash points, {} images ({} distinct opened): {} failures",
        batches.len(),
        ops.len(),
        f.crash_points,
        f.images,
        f.distinct_opened,
        f.failures.len()
    );
    assert!(
        f.failures.is_empty(),
        "{} crash images lost acknowledged data or kept partial batches; first: {:#?}",
        f.failures.len(),
        &f.failures[..f.failures.len().min(5)]
    );
}

#[test]
fn power_loss_without_preallocation() {
    scenario(false, 1, 10_000);
}

#[test]
fn power_loss_with_preallocation() {
    scenario(true, 1, 20_000);
}

#[test]
fn power_loss_during_group_commits() {
    scenario(true, 3, 30_000);
}

/// The negative control: the same machinery must catch a store whose syncs do nothing.
#[test]
fn negative_control_unhonoured_syncs_lose_acknowledged_data() {
    let dir = scratch();
    let batches = plan(4, 40_000);
    let ops = record(dir.path(), false, &batches, 1);
    let f = crash_images(dir.path(), &ops, false, seed());
    eprintln!(
        "negative control: {} images, {} failures detected (expected > 0)",
        f.images,
        f.failures.len()
    );
    assert!(
        f.failures.iter().any(|e| e.contains("LOST")),
        "with syncs ignored, the checker must report lost acknowledged batches"
    );
}
