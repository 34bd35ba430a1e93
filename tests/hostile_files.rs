//! Issue 4, point 6, the deterministic half (the fuzz targets are in `fuzz/`): `open`
//! and the codec on hostile bytes. Random files, mutated real stores, and batch headers
//! whose checksums are valid but whose length and count fields are hostile. Never a
//! panic, never an allocation larger than the file justifies (a counting allocator
//! watches every allocation), bounded time; a failed open leaves the bytes as they were.
//!
//! Knobs: `ES_HOSTILE_CASES` (default 5000), `ES_SEED`.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventstore::codec::{self, DecodeOutcome};
use eventstore::Store;
use support::memfile::{open_mem, MemFile};
use support::*;

/// The largest single allocation since the last reset.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SALT_AT: usize = 8;

fn crc_with_salt(salt: u64, bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    h.update(bytes);
    h.finalize()
}

/// A batch header with a valid salted checksum and whatever fields the caller likes.
fn forged_header(salt: u64, len: u32, first: u64, count: u32, group_start: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"EVBT");
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&first.to_le_bytes());
    h.extend_from_slice(&count.to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(&1u64.to_le_bytes());
    h.extend_from_slice(&group_start.to_le_bytes());
    let crc = crc_with_salt(salt, &h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

/// A real store's bytes, to mutate.
fn real_store(dir: &std::path::Path, n: u64) -> Vec<u8> {
    let path = dir.join(format!("real-{n}.store"));
    let store = Store::open(&path).unwrap();
    for k in 0..n {
        append(&store, &planned(70_000 + k, Profile::SMALL, 0)).unwrap();
    }
    store.close().unwrap();
    std::fs::read(&path).unwrap()
}

/// Opens `bytes` in memory and, if it opens, reads everything. Panics on a violation.
fn open_hostile(lock: &std::path::Path, bytes: &[u8], what: &str) -> bool {
    LARGEST.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let mem = MemFile::new(bytes.to_vec());
    let opened = match open_mem(lock, &mem) {
        Ok(store) => {
            let all = store
                .read_all(0, u64::MAX)
                .expect("read_all of an opened store");
            for e in &all {
                store
                    .read_stream(e.stream_id, e.stream_version, 1)
                    .expect("read_stream");
            }
            drop(store);
            true
        }
        Err(_) => {
            assert!(
                mem.bytes() == bytes,
                "{what}: a failed open changed the bytes"
            );
            false
        }
    };
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= 2 * bytes.len() + (1 << 20),
        "{what}: an allocation of {largest} bytes for a file of {} bytes",
        bytes.len()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{what}: took {:?}",
        started.elapsed()
    );
    opened
}

fn decode_everything(bytes: &[u8], salt: u64) {
    let _ = codec::decode_file_header(bytes);
    let _ = codec::decode_record(bytes);
    let _ = codec::parse_batch_header(bytes, salt);
    if let Ok(DecodeOutcome::Complete { value, len }) = codec::parse_batch(bytes, salt) {
        assert!(len <= bytes.len() && value.records.len() == value.header.count as usize);
    }
}

#[test]
fn hostile_bytes_never_panic_hang_or_overallocate() {
    let dir = scratch();
    let lock = dir.path().join("hostile.lock");
    let cases = env_usize("ES_HOSTILE_CASES", 5000);
    let mut rng = Rng::new(seed());
    let originals = [real_store(dir.path(), 3), real_store(dir.path(), 12)];
    let (mut opened, mut refused) = (0, 0);
    let started = Instant::now();
    for case in 0..cases {
        let what = format!("case {case} (seed {})", seed());
        let bytes = match case % 5 {
            // Pure noise, sometimes behind a valid magic.
            0 => {
                let n = rng.range(0, 9000);
                let mut b = rng.bytes(n);
                if rng.chance(1, 2) && b.len() >= 8 {
                    b[..8].copy_from_slice(&codec::encode_header());
                }
                b
            }
            // A real store, with 1..16 random bytes overwritten.
            1 | 2 => {
                let mut b = rng.pick(&originals).clone();
                for _ in 0..rng.range(1, 16) {
                    let i = rng.below(b.len() as u64) as usize;
                    b[i] = rng.next_u64() as u8;
                }
                if rng.chance(1, 3) {
                    let n = rng.range(0, b.len());
                    b.truncate(n);
                }
                b
            }
            // A real store followed by forged batch headers (valid checksums, hostile
            // lengths, counts and positions) and garbage.
            _ => {
                let mut b = rng.pick(&originals).clone();
                let salt = u64::from_le_bytes(b[SALT_AT..SALT_AT + 8].try_into().unwrap());
                for _ in 0..rng.range(1, 4) {
                    let at = b.len() as u64;
                    let r = rng.next_u64();
                    let len = *rng.pick(&[u32::MAX, 0, 52, 129, r as u32]);
                    let count = *rng.pick(&[u32::MAX, 0, 1, 1 << 20, (r >> 32) as u32]);
                    let first = *rng.pick(&[0, 1 << 40, u64::MAX, r % 100]);
                    let group = *rng.pick(&[at, 0, u64::MAX, 32]);
                    b.extend(forged_header(salt, len, first, count, group));
                    let n = rng.range(0, 300);
                    b.extend(rng.bytes(n));
                }
                b
            }
        };
        if open_hostile(&lock, &bytes, &what) {
            opened += 1;
        } else {
            refused += 1;
        }
        decode_everything(&bytes, rng.next_u64());
        if bytes.len() > 8 {
            decode_everything(&bytes[8..], 0);
        }
    }
    eprintln!(
        "hostile files: {cases} cases ({opened} opened and read, {refused} refused), no panic, no allocation beyond 2x the file + 1 MiB, {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// KNOWN LIMITATION (not fixed; see docs/reliability.md): recovery's search for a valid
/// batch after damage checks every candidate by reading and checksumming the whole
/// length its header claims. A file crafted with the store's salt (which sits in the
/// file header) and valid header checksums, one candidate every 44 bytes each claiming
/// to run to the end of the file, makes `open` quadratic in the file size. Random and
/// fuzzed bytes cannot reach it (the header checksum is salted); a deliberate attacker
/// with write access to the file can. Measured in release: 4 MiB took 5.4 s; this test
/// uses 16 MiB (about 16 times that) and asks for 10 s.
#[test]
#[ignore = "known quadratic open on a deliberately crafted file; see docs/reliability.md"]
fn crafted_candidates_do_not_make_open_quadratic() {
    let dir = scratch();
    let mut b = real_store(dir.path(), 2);
    let salt = u64::from_le_bytes(b[SALT_AT..SALT_AT + 8].try_into().unwrap());
    let total = 16 << 20;
    // Damage where the next batch should be.
    let damaged_at = b.len() as u64;
    b.extend_from_slice(b"XXXX");
    while b.len() + 44 < total {
        let at = b.len() as u64;
        let len = (total - b.len()) as u32;
        // Enough events that the claimed length passes the header's sanity check.
        let count = len / 65536 + 1;
        b.extend(forged_header(
            salt,
            len,
            1000,
            count,
            at.max(damaged_at + 1),
        ));
    }
    b.resize(total - 8, 0);
    b.extend_from_slice(b"EVCM\0\0\0\0");
    let started = Instant::now();
    let _ = open_hostile(&dir.path().join("crafted.lock"), &b, "crafted candidates");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Writes the fuzz seed corpus (run by hand: `ES_WRITE_SEEDS=1 cargo test --test
/// hostile_files write_fuzz_seeds -- --ignored`).
#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn write_fuzz_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let open_dir = root.join("open_bytes");
    let codec_dir = root.join("codec_decode");
    std::fs::create_dir_all(&open_dir).unwrap();
    std::fs::create_dir_all(&codec_dir).unwrap();
    let dir = scratch();
    let one = real_store(dir.path(), 1);
    let four = real_store(dir.path(), 4);
    let salt = &one[SALT_AT..SALT_AT + 8];
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("header-only", one[..32].to_vec()),
        ("partial-header", one[..11].to_vec()),
        ("one-batch", one.clone()),
        ("four-batches", four.clone()),
        ("torn-tail", four[..four.len() - 17].to_vec()),
        ("zero-tail", [four.clone(), vec![0; 600]].concat()),
    ];
    for (name, bytes) in &seeds {
        std::fs::write(open_dir.join(name), bytes).unwrap();
    }
    std::fs::write(codec_dir.join("batch"), [salt, &one[32..]].concat()).unwrap();
    std::fs::write(codec_dir.join("file-header"), [salt, &one[..32]].concat()).unwrap();
    std::fs::write(codec_dir.join("record"), [salt, &one[32 + 44..]].concat()).unwrap();
}
