//! Issue 14's memory and open targets, measured in fresh processes: a store of N
//! events (M streams, 200-byte payloads) is built once (appends of 1,000 events), then
//! a child process opens it (the time), reports its resident memory after the open,
//! reads every stream whole, and reports it again.
//!
//!   cargo run --release --example index_rss -- /tmp/big.store 10000000 1000
//!
//! The figures are `VmRSS` from /proc/self/status (the whole process: the binary, the
//! allocator, the index and its 8 MiB page cache).

use std::path::Path;
use std::time::Instant;

use eventstore::{EventBatch, ExpectedVersion, ProposedEventRef, Store, StreamAppend};
use uuid::Uuid;

fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

fn build(path: &Path, events: u64, streams: u64) {
    let store = Store::open(path).unwrap();
    let have = store.global_position();
    let payload = vec![7u8; 200];
    let mut n = have;
    let t = Instant::now();
    // Every append holds one event of each of (up to) 1,000 streams: the streams'
    // events interleave one by one, the hard case for stream reads.
    while n < events {
        let k = streams.min(events - n);
        let refs: Vec<[ProposedEventRef<'_>; 1]> = (0..k)
            .map(|i| {
                [ProposedEventRef {
                    event_id: Uuid::from_u128(u128::from(n + i) + 1),
                    event_type: ["OrderPlaced", "OrderShipped", "Invoice"][((n + i) % 3) as usize],
                    metadata: b"",
                    payload: &payload,
                }]
            })
            .collect();
        let parts: Vec<StreamAppend<'_>> = refs
            .iter()
            .enumerate()
            .map(|(i, r)| StreamAppend {
                stream_id: Uuid::from_u128(i as u128 + 1),
                expected_version: ExpectedVersion::Any,
                events: r,
            })
            .collect();
        store.append_multi(&parts).unwrap();
        n += k;
    }
    store.close().unwrap();
    eprintln!(
        "built {} events in {:.1} s",
        events - have,
        t.elapsed().as_secs_f64()
    );
}

fn measure(path: &Path, read_only: bool) {
    let before = rss_kb();
    let t = Instant::now();
    let opts = if read_only {
        eventstore::OpenOptions::new().read_only()
    } else {
        eventstore::OpenOptions::new()
    };
    let store = Store::open_with(path, opts).unwrap();
    let open = t.elapsed();
    let after_open = rss_kb();
    let streams = store.list_streams(0, u64::MAX);
    let mut batch = EventBatch::default();
    let mut total = 0u64;
    let t = Instant::now();
    for s in &streams {
        let mut v = 0;
        loop {
            store
                .read_stream_batch_into(s.stream_id, v, 10_000, &mut batch)
                .unwrap();
            if batch.is_empty() {
                break;
            }
            total += batch.len() as u64;
            v += batch.len() as u64;
        }
    }
    let read = t.elapsed();
    assert_eq!(total, store.global_position());
    drop(batch);
    let after_read = rss_kb();
    println!(
        "{} open {:.2} ms; RSS before open {:.1} MB, after open {:.1} MB, after reading \
         every stream ({} streams, {} events, {:.2} s) {:.1} MB; index heap {:.1} MB",
        if read_only { "read-only" } else { "writer" },
        open.as_secs_f64() * 1e3,
        before as f64 / 1024.0,
        after_open as f64 / 1024.0,
        streams.len(),
        total,
        read.as_secs_f64(),
        after_read as f64 / 1024.0,
        store.index_stats().heap_bytes as f64 / 1e6
    );
    drop(store);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() > 2 && args[1] == "--child" {
        measure(Path::new(&args[2]), args.get(3).is_some_and(|a| a == "ro"));
        return;
    }
    let path = Path::new(args.get(1).map_or("/tmp/index_rss.store", String::as_str));
    let events: u64 = args.get(2).map_or(1_000_000, |s| s.parse().unwrap());
    let streams: u64 = args.get(3).map_or(1000, |s| s.parse().unwrap());
    build(path, events, streams);
    for mode in ["rw", "rw", "ro"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--child", path.to_str().unwrap(), mode])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}
