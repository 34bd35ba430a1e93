//! Issue 14: the index file `<path>-index`. Every test cross-checks the store against
//! a model (the events as appended): after any of these, reads by position, by stream,
//! by id and filtered give exactly the log's events.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use eventstore::{
    Error, ExpectedVersion, Filter, OpenOptions, ProposedEvent, RecordedEvent, Store,
};
use uuid::Uuid;

fn index_path(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push("-index");
    let p = PathBuf::from(p);
    assert_eq!(eventstore::store::index_file_path(store), p);
    p
}

/// Checkpoints only when asked (and at close), whatever the size.
fn manual() -> OpenOptions {
    OpenOptions::new().index_checkpoints(0, u64::MAX, Duration::from_secs(3600))
}

const TYPES: [&str; 3] = ["OrderPlaced", "OrderShipped", "Invoice"];

fn ev(n: u64) -> ProposedEvent {
    ProposedEvent {
        event_id: Uuid::from_u128(u128::from(n) + 1),
        event_type: TYPES[(n % 3) as usize].to_string(),
        metadata: Vec::new(),
        payload: format!("payload of {n}").into_bytes(),
    }
}

/// Appends `n` events (ids `next..next + n`) to `streams` streams, in appends of 1 to
/// 4 events; returns what was recorded.
fn append_some(store: &Store, next: &mut u64, n: u64, streams: u128) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let end = *next + n;
    while *next < end {
        let k = (1 + *next % 4).min(end - *next);
        let events: Vec<_> = (*next..*next + k).map(ev).collect();
        let stream = Uuid::from_u128(1000 + u128::from(*next) * 7 % streams);
        out.extend(store.append(stream, ExpectedVersion::Any, events).unwrap());
        *next += k;
    }
    out
}

fn same(a: &[RecordedEvent], b: &[RecordedEvent], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: count");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x, y, "{what}");
    }
}

/// Reads everything every way and compares with the model.
fn check(store: &Store, model: &[RecordedEvent]) {
    assert_eq!(store.global_position(), model.len() as u64);
    same(&store.read_all(0, u64::MAX).unwrap(), model, "read_all");
    if model.len() > 10 {
        let mid = model.len() / 3;
        same(
            &store.read_all(mid as u64, 7).unwrap(),
            &model[mid..mid + 7],
            "read_all from the middle",
        );
    }
    let mut by_stream: BTreeMap<Uuid, Vec<RecordedEvent>> = BTreeMap::new();
    for e in model {
        by_stream.entry(e.stream_id).or_default().push(e.clone());
    }
    for (s, events) in &by_stream {
        same(
            &store.read_stream(*s, 0, u64::MAX).unwrap(),
            events,
            "read_stream",
        );
        let v = events.len() as u64 / 2;
        same(
            &store.read_stream(*s, v, 3).unwrap(),
            &events[v as usize..(v as usize + 3).min(events.len())],
            "read_stream from the middle",
        );
        assert_eq!(store.stream_version(s), Some(events.len() as u64 - 1));
    }
    let listed = store.list_streams(0, u64::MAX);
    assert_eq!(listed.len(), by_stream.len());
    let mut firsts: Vec<(u64, Uuid)> = by_stream
        .values()
        .map(|v| (v[0].global_position, v[0].stream_id))
        .collect();
    firsts.sort();
    for (info, (first, id)) in listed.iter().zip(&firsts) {
        assert_eq!((info.stream_id, info.first_global_position), (*id, *first));
        let evs = &by_stream[id];
        assert_eq!(
            info.last_global_position,
            evs.last().unwrap().global_position
        );
        assert_eq!(info.last_version, evs.len() as u64 - 1);
    }
    for e in model {
        assert_eq!(&store.read_event(e.event_id).unwrap(), e, "read_event");
    }
    assert!(matches!(
        store.read_event(Uuid::from_u128(u128::MAX - 5)),
        Err(Error::EventNotFound { .. })
    ));
    let filtered = |filter: Filter| {
        let mut got = Vec::new();
        let mut from = 0;
        while from < model.len() as u64 {
            let (batch, next) = store.read_all_filtered(from, 5, &filter).unwrap();
            got.extend(batch.to_recorded());
            assert!(next > from || !batch.is_empty());
            from = next;
        }
        got
    };
    let want: Vec<_> = model
        .iter()
        .filter(|e| e.event_type == "OrderShipped")
        .cloned()
        .collect();
    same(
        &filtered(Filter::types(["OrderShipped"])),
        &want,
        "filtered by type",
    );
    if let Some((s, events)) = by_stream.iter().next() {
        let want: Vec<_> = events
            .iter()
            .filter(|e| e.event_type.starts_with("Order"))
            .cloned()
            .collect();
        let f = Filter {
            stream_id: Some(*s),
            event_type_prefixes: vec!["Order".into()],
            ..Filter::default()
        };
        same(&filtered(f), &want, "filtered by stream and prefix");
    }
}

/// A store of three segments and a delta, closed (the close writes a fourth segment).
fn three_segments(path: &Path) -> Vec<RecordedEvent> {
    let store = Store::open_with(path, manual()).unwrap();
    let mut next = 0;
    let mut model = Vec::new();
    for _ in 0..3 {
        model.extend(append_some(&store, &mut next, 300, 13));
        assert!(store.checkpoint_index(0));
        check(&store, &model);
    }
    model.extend(append_some(&store, &mut next, 100, 17));
    check(&store, &model);
    store.close().unwrap();
    model
}

#[test]
fn a_store_reopens_through_its_index_and_reads_the_same() {
    let t = temp_store();
    let mut model = three_segments(&t.path);
    assert!(index_path(&t.path).exists());
    let store = Store::open_with(&t.path, manual()).unwrap();
    // Opened through the index: no per-event column in memory (the stream table,
    // type names and an empty delta only).
    let stats = store.index_stats();
    assert!(stats.heap_bytes < 8 * 1000, "{stats:?}");
    check(&store, &model);
    // Appends go on in the delta; a retry of an append that lies in a segment is
    // recognised, a reused id is refused.
    let mut next = model.len() as u64;
    model.extend(append_some(&store, &mut next, 50, 5));
    let first = &model[0];
    let retry = store
        .append(first.stream_id, ExpectedVersion::Any, vec![ev(0)])
        .unwrap();
    assert_eq!(retry[0].global_position, 0, "an exact retry");
    match store.append(Uuid::from_u128(5), ExpectedVersion::Any, vec![ev(400)]) {
        Err(Error::DuplicateEventId { position, .. }) => assert_eq!(position, 400),
        other => panic!("{other:?}"),
    }
    check(&store, &model);
    store.close().unwrap();
    let store = Store::open(&t.path).unwrap();
    check(&store, &model);
}

#[test]
fn small_stores_keep_no_index_file() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let mut next = 0;
    let model = append_some(&store, &mut next, 200, 3);
    store.close().unwrap();
    assert!(
        !index_path(&t.path).exists(),
        "under 1 MiB: nothing written"
    );
    check(&Store::open(&t.path).unwrap(), &model);
}

#[test]
fn a_large_delta_is_checkpointed_in_the_background() {
    let t = temp_store();
    let store = Store::open_with(
        &t.path,
        OpenOptions::new().index_checkpoints(1, 64 << 10, Duration::from_secs(3600)),
    )
    .unwrap();
    let mut next = 0;
    let model = append_some(&store, &mut next, 3000, 11);
    // The writer asked the thread at 64 KiB of delta: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !index_path(&t.path).exists() {
        assert!(std::time::Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(Duration::from_millis(10));
    }
    check(&store, &model);
    drop(store);
    check(&Store::open(&t.path).unwrap(), &model);
}

#[test]
fn deleting_the_index_file_is_safe() {
    let t = temp_store();
    let model = three_segments(&t.path);
    std::fs::remove_file(index_path(&t.path)).unwrap();
    let store = Store::open_with(&t.path, manual()).unwrap();
    check(&store, &model);
    store.close().unwrap();
    assert!(index_path(&t.path).exists(), "rewritten at close");
    check(&Store::open(&t.path).unwrap(), &model);
}

#[test]
fn a_foreign_index_is_ignored_and_replaced() {
    let a = temp_store();
    let b = temp_store();
    let model = three_segments(&a.path);
    three_segments(&b.path);
    std::fs::copy(index_path(&b.path), index_path(&a.path)).unwrap();
    let store = Store::open_with(&a.path, manual()).unwrap();
    check(&store, &model);
    store.close().unwrap();
    let store = Store::open(&a.path).unwrap();
    assert!(store.index_stats().heap_bytes < 8 * 1000, "bound again");
    check(&store, &model);
}

#[test]
fn a_stale_index_binds_to_an_older_manifest_or_none() {
    let t = temp_store();
    let model = three_segments(&t.path);
    let old_log = std::fs::read(&t.path).unwrap();
    let store = Store::open_with(&t.path, manual()).unwrap();
    let mut next = model.len() as u64;
    let later = append_some(&store, &mut next, 500, 19);
    store.close().unwrap();
    // The log restored from the older copy, the index of the later state beside it.
    std::fs::write(&t.path, &old_log).unwrap();
    let store = Store::open_with(&t.path, manual()).unwrap();
    check(&store, &model);
    // Appends after that reuse positions the stale manifest covered.
    let mut next = 10_000;
    let mut model2 = model.clone();
    model2.extend(append_some(&store, &mut next, 120, 4));
    check(&store, &model2);
    store.close().unwrap();
    assert!(!later.is_empty());
    check(&Store::open(&t.path).unwrap(), &model2);
}

#[test]
fn a_truncated_or_damaged_index_under_an_open_store_is_rebuilt_from_the_log() {
    let t = temp_store();
    let model = three_segments(&t.path);
    let store = Store::open_with(&t.path, manual()).unwrap();
    let reader = Store::open_with(&t.path, OpenOptions::new().read_only()).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(index_path(&t.path))
        .unwrap();
    f.set_len(4096).unwrap();
    check(&store, &model);
    check(&reader, &model);
    drop(reader);
    store.close().unwrap();
    check(&Store::open(&t.path).unwrap(), &model);
}

#[test]
fn read_only_handles_open_through_the_index_and_follow_the_writer() {
    let t = temp_store();
    let mut model = three_segments(&t.path);
    let reader = Store::open_with(&t.path, OpenOptions::new().read_only()).unwrap();
    assert!(reader.index_stats().heap_bytes < 8 * 1000);
    check(&reader, &model);
    let writer = Store::open_with(&t.path, manual()).unwrap();
    let mut next = model.len() as u64;
    model.extend(append_some(&writer, &mut next, 200, 9));
    assert!(writer.checkpoint_index(0));
    model.extend(append_some(&writer, &mut next, 30, 9));
    check(&reader, &model);
    let late = Store::open_with(&t.path, OpenOptions::new().read_only()).unwrap();
    check(&late, &model);
    let before = std::fs::read(index_path(&t.path)).unwrap();
    drop((late, reader));
    assert_eq!(
        std::fs::read(index_path(&t.path)).unwrap(),
        before,
        "readers never write the index"
    );
}

/// A small store with its index: 40 events, one segment, one manifest.
fn tiny(path: &Path) -> Vec<RecordedEvent> {
    let store = Store::open_with(path, manual()).unwrap();
    let mut next = 0;
    let model = append_some(&store, &mut next, 40, 3);
    store.close().unwrap();
    model
}

#[test]
fn every_flipped_byte_of_an_index_file_is_caught() {
    // ES_INDEX_FLIP_STRIDE: every this many bytes (default 11, a prime: every page and
    // every field kind is hit; scripts/soak.sh runs 1, every byte, which takes
    // minutes: one open and a full set of reads per byte).
    let stride: usize = std::env::var("ES_INDEX_FLIP_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    let t = temp_store();
    let model = tiny(&t.path);
    let log = std::fs::read(&t.path).unwrap();
    let index = std::fs::read(index_path(&t.path)).unwrap();
    assert!(index.len() <= 12 * 4096, "{} bytes", index.len());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    std::fs::write(&path, &log).unwrap();
    std::fs::write(index_path(&path), &index).unwrap();
    let intact = Store::open_with(&path, OpenOptions::new().read_only()).unwrap();
    assert!(
        intact.index_stats().heap_bytes < 4000,
        "bound: the flips matter"
    );
    drop(intact);
    for i in (0..index.len()).step_by(stride) {
        std::fs::write(&path, &log).unwrap();
        let mut bad = index.clone();
        bad[i] ^= 0x40;
        std::fs::write(index_path(&path), &bad).unwrap();
        let store = Store::open_with(&path, OpenOptions::new().read_only()).unwrap();
        // Every read goes through the damaged page: it must be refused (and the
        // segment rebuilt from the log), never used.
        same(
            &store.read_all(0, u64::MAX).unwrap(),
            &model,
            &format!("flip at {i}"),
        );
        for e in model.iter().step_by(7) {
            assert_eq!(&store.read_event(e.event_id).unwrap(), e, "flip at {i}");
            let s = store.read_stream(e.stream_id, e.stream_version, 1).unwrap();
            assert_eq!(&s[0], e, "flip at {i}");
        }
    }
    check(&Store::open(&t.path).unwrap(), &model);
}

#[test]
fn lost_or_reordered_index_writes_leave_the_old_index_or_the_new() {
    // The log is synced before the index is written, so a power loss can only lose
    // (or tear, or reorder) unsynced index pages: any subset of the pages appended by
    // the last checkpoint, or the file cut anywhere after the old end.
    let t = temp_store();
    let store = Store::open_with(&t.path, manual()).unwrap();
    let mut next = 0;
    let mut model = append_some(&store, &mut next, 300, 7);
    assert!(store.checkpoint_index(0));
    let old = std::fs::read(index_path(&t.path)).unwrap();
    model.extend(append_some(&store, &mut next, 300, 7));
    assert!(store.checkpoint_index(0));
    drop(store);
    let new = std::fs::read(index_path(&t.path)).unwrap();
    assert!(new.len() > old.len() && new[..old.len()] == old[..]);
    let log = std::fs::read(&t.path).unwrap();
    let pages = (new.len() - old.len()) / 4096;
    let mut seed = 0x1234_5678_u64;
    let mut rand = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    for round in 0..60 {
        let mut image = new.clone();
        if round % 3 == 0 {
            image.truncate(old.len() + (rand() as usize % (new.len() - old.len() + 1)));
        } else {
            for k in 0..pages {
                if rand() % 3 == 0 {
                    let at = old.len() + k * 4096;
                    image[at..at + 4096].fill(0);
                }
            }
        }
        std::fs::write(&path, &log).unwrap();
        std::fs::write(index_path(&path), &image).unwrap();
        let store = Store::open_with(&path, manual()).unwrap();
        check(&store, &model);
    }
}

/// What the child of the kill test does: append forever with checkpoints every few
/// KiB, printing each acknowledged event number.
#[test]
fn child_process_entry() {
    let Ok(path) = std::env::var("ES_INDEX_CHILD") else {
        return;
    };
    let store = Store::open_with(
        Path::new(&path),
        OpenOptions::new().index_checkpoints(1, 16 << 10, Duration::from_millis(5)),
    )
    .unwrap();
    let mut next = store.global_position();
    let out = std::io::stdout();
    loop {
        let n = 1 + next % 4;
        let done = append_some(&store, &mut next, n, 23);
        let mut o = out.lock();
        for e in done {
            use std::io::Write;
            writeln!(o, "ACK {}", e.global_position).unwrap();
        }
    }
}

#[test]
fn kill_9_during_checkpoints_loses_nothing_acknowledged() {
    let rounds: u64 = std::env::var("ES_INDEX_KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let t = temp_store();
    let exe = std::env::current_exe().unwrap();
    let mut acked = 0u64;
    for round in 0..rounds {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "child_process_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ES_INDEX_CHILD", &t.path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let want = 200 + round * 37 % 400;
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(p) = line.strip_prefix("ACK ") {
                acked = acked.max(p.parse::<u64>().unwrap() + 1);
                seen += 1;
                if seen >= want {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Every acknowledged event is there, and the index agrees with the log.
        let store = Store::open_with(&t.path, manual()).unwrap();
        let events = store.read_all(0, u64::MAX).unwrap();
        assert!(events.len() as u64 >= acked, "round {round}: lost events");
        for (p, e) in events.iter().enumerate() {
            assert_eq!(e.global_position, p as u64);
            assert_eq!(e.event_id, Uuid::from_u128(p as u128 + 1));
        }
        check(&store, &events);
        acked = events.len() as u64;
    }
    assert!(index_path(&t.path).exists());
}

/// Writes the fuzz target `index_bytes`'s log and seed index (`ES_WRITE_FUZZ_SEED=1`).
#[test]
fn write_fuzz_seed() {
    if std::env::var("ES_WRITE_FUZZ_SEED").is_err() {
        return;
    }
    let t = temp_store();
    let store = Store::open_with(&t.path, manual()).unwrap();
    for n in 0..40u128 {
        let e = ProposedEvent {
            event_id: Uuid::from_u128(n + 1),
            event_type: ["A", "B", "C"][(n % 3) as usize].into(),
            metadata: Vec::new(),
            payload: vec![n as u8; 20],
        };
        store
            .append(Uuid::from_u128(100 + n % 4), ExpectedVersion::Any, vec![e])
            .unwrap();
    }
    store.close().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::write(
        root.join("fuzz/index_log.bin"),
        std::fs::read(&t.path).unwrap(),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("fuzz/corpus/index_bytes")).unwrap();
    std::fs::write(
        root.join("fuzz/corpus/index_bytes/seed"),
        std::fs::read(index_path(&t.path)).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_read_only_handle_reloads_the_manifest_when_its_delta_grows() {
    let t = temp_store();
    let mut model = three_segments(&t.path);
    // Reload at 64 KiB of delta (32 MiB by default).
    let reader = Store::open_with(
        &t.path,
        OpenOptions::new()
            .read_only()
            .index_checkpoints(0, 64 << 10, Duration::from_secs(3600)),
    )
    .unwrap();
    let writer = Store::open_with(&t.path, manual()).unwrap();
    let mut next = model.len() as u64;
    // (Stats before any read: the page cache counts in the heap too.)
    model.extend(append_some(&writer, &mut next, 1500, 9));
    assert_eq!(reader.global_position(), model.len() as u64);
    let grown = reader.index_stats().heap_bytes;
    assert!(writer.checkpoint_index(0));
    model.extend(append_some(&writer, &mut next, 200, 9));
    assert_eq!(reader.global_position(), model.len() as u64);
    let reloaded = reader.index_stats().heap_bytes;
    assert!(
        reloaded < grown,
        "the reader dropped its delta for the new segment ({grown} -> {reloaded})"
    );
    drop(writer);
    check(&reader, &model);
}

#[test]
fn four_segments_of_a_tier_are_merged_into_one() {
    let t = temp_store();
    let store = Store::open_with(&t.path, manual()).unwrap();
    let mut next = 0;
    let mut model = Vec::new();
    let mut most = 0;
    for round in 0..20 {
        model.extend(append_some(&store, &mut next, 40, 7));
        assert!(store.checkpoint_index(0));
        most = most.max(store.index_parts());
        if round % 5 == 0 {
            check(&store, &model);
        }
    }
    // 20 segments of 40 events (tier 2): merged four by four (a segment takes part
    // from the checkpoint after its own), then the merged ones (tier 3) four by four.
    assert!(most <= 8, "{most} parts at most (20 without merging)");
    assert!(store.index_parts() < 8, "{} parts", store.index_parts());
    check(&store, &model);
    // Every checkpoint appended a segment and a manifest (8 pages or more), and the
    // merges their copies; the file was rewritten whenever more than half was dead.
    let len = std::fs::metadata(index_path(&t.path)).unwrap().len();
    assert!(len < 20 * 8 * 4096 / 2, "{len} bytes: never rewritten");
    store.close().unwrap();
    let store = Store::open_with(&t.path, manual()).unwrap();
    check(&store, &model);
}

#[test]
fn a_failing_index_file_never_fails_an_append() {
    // The index file cannot be written (a directory stands where its temporary file
    // goes): checkpoints fail and log, appends and reads go on, the store stays whole.
    let t = temp_store();
    let mut tmp = t.path.clone().into_os_string();
    tmp.push("-index.tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::write(PathBuf::from(&tmp).join("x"), b"x").unwrap();
    let store = Store::open_with(
        &t.path,
        OpenOptions::new().index_checkpoints(1, 16 << 10, Duration::from_secs(3600)),
    )
    .unwrap();
    let mut next = 0;
    let model = append_some(&store, &mut next, 2000, 5);
    assert!(!store.checkpoint_index(0), "the write fails");
    assert!(!store.is_poisoned());
    check(&store, &model);
    assert!(
        store.index_parts() <= 2,
        "a failed checkpoint is not retried at every commit ({} parts)",
        store.index_parts()
    );
    store.close().unwrap();
    assert!(!index_path(&t.path).exists());
    check(&Store::open(&t.path).unwrap(), &model);
}

#[test]
fn reads_stay_exact_while_checkpoints_merges_and_rewrites_run() {
    // The writer's thread checkpoints every 16 KiB of log (merging and rewriting the
    // file as it goes) while readers read by position, stream and id.
    let t = temp_store();
    let store = Store::open_with(
        &t.path,
        OpenOptions::new().index_checkpoints(1, 16 << 10, Duration::from_millis(2)),
    )
    .unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let model = std::sync::Mutex::new(Vec::<RecordedEvent>::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut next = 0;
            for _ in 0..60 {
                let got = append_some(&store, &mut next, 50, 11);
                model.lock().unwrap().extend(got);
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        for r in 0..2u64 {
            let (store, model, done) = (&store, &model, &done);
            s.spawn(move || {
                let mut round = 0u64;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let known: Vec<RecordedEvent> = model.lock().unwrap().clone();
                    if known.is_empty() {
                        continue;
                    }
                    let all = store.read_all(0, known.len() as u64).unwrap();
                    same(&all, &known, "read_all while checkpointing");
                    let e = &known[((round * 7919 + r) % known.len() as u64) as usize];
                    assert_eq!(&store.read_event(e.event_id).unwrap(), e);
                    let s = store.read_stream(e.stream_id, 0, u64::MAX).unwrap();
                    assert_eq!(&s[e.stream_version as usize], e);
                    round += 1;
                }
            });
        }
    });
    let model = model.into_inner().unwrap();
    check(&store, &model);
    store.close().unwrap();
    check(&Store::open(&t.path).unwrap(), &model);
}

#[test]
fn an_index_file_renamed_along_with_its_store_stays_bound() {
    let t = temp_store();
    let model = three_segments(&t.path);
    let moved = t.dir.path().join("moved.store");
    std::fs::rename(&t.path, &moved).unwrap();
    std::fs::rename(index_path(&t.path), index_path(&moved)).unwrap();
    let store = Store::open_with(&moved, manual()).unwrap();
    assert!(
        store.index_stats().heap_bytes < 8 * 1000,
        "opened through the index"
    );
    check(&store, &model);
}

#[test]
fn a_large_scan_keeps_no_id_hashes_and_its_checkpoint_reads_them_back() {
    // A store opened without its index file holds the whole log in the delta; past a
    // size it drops the ids' hashes (8 B/event): the delta freezes instead of growing
    // its id table, and the checkpoint reads the ids back from the log for the Bloom
    // filter.
    let t = temp_store();
    let model = three_segments(&t.path);
    std::fs::remove_file(index_path(&t.path)).unwrap();
    let opts = || manual().index_keep_hashes(100);
    let store = Store::open_with(&t.path, opts()).unwrap();
    let with_hashes = {
        let s = Store::open_with(&t.path, OpenOptions::new().read_only()).unwrap();
        s.index_stats().id_bytes
    };
    assert!(store.index_stats().id_bytes + 8 * 900 <= with_hashes);
    check(&store, &model);
    // Appends until the table would grow: the delta becomes a part.
    let mut model = model;
    let mut next = model.len() as u64;
    model.extend(append_some(&store, &mut next, 600, 5));
    assert_eq!(store.index_parts(), 1, "the hash-less delta was frozen");
    check(&store, &model);
    assert!(store.checkpoint_index(0));
    check(&store, &model);
    store.close().unwrap();
    let store = Store::open_with(&t.path, manual()).unwrap();
    assert!(store.index_stats().heap_bytes < 8 * 1000);
    check(&store, &model);
    // Ids of the part written from the hash-less delta are found through its filter.
    for e in model.iter().step_by(13) {
        assert_eq!(&store.read_event(e.event_id).unwrap(), e);
    }
    let r = store
        .append(model[0].stream_id, ExpectedVersion::Any, vec![ev(0)])
        .unwrap();
    assert_eq!(r[0].global_position, 0, "an exact retry");
    match store.append(Uuid::from_u128(9), ExpectedVersion::Any, vec![ev(5)]) {
        Err(Error::DuplicateEventId { position, .. }) => assert_eq!(position, 5),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_index_file_gets_the_store_files_permissions_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    for mode in [0o600, 0o640] {
        let t = temp_store();
        let store = Store::open_with(&t.path, manual()).unwrap();
        std::fs::set_permissions(&t.path, std::fs::Permissions::from_mode(mode)).unwrap();
        let mut next = 0;
        append_some(&store, &mut next, 20, 3);
        store.close().unwrap();
        let got = std::fs::metadata(index_path(&t.path))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(
            got, mode,
            "the index holds ids: no wider access than the store"
        );
    }
}
