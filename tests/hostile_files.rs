//! Issue 4, point 6, the deterministic half (the fuzz targets are in `fuzz/`): `open`
//! and the codec on hostile bytes. Random files, mutated real stores, and batch headers
//! whose checksums are valid but whose length and count fields are hostile. Never a
//! panic, never an allocation larger than the file justifies (a counting allocator
//! watches every allocation), bounded time; a failed open leaves the bytes as they were.
//!
//! Knobs: `ES_HOSTILE_CASES` (default 5000), `ES_SEED`.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventstore::codec::{self, DecodeOutcome};
use eventstore::store::io::StorageFile;
use eventstore::{Error, OpenOptions, Store};
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
    // The allocation watch is process-wide: no other test of this binary runs meanwhile.
    let _serial = serial();
    let dir = scratch();
    let lock = dir.path().join("hostile.lock");
    let cases = env_usize("ES_HOSTILE_CASES", 5000);
    let mut rng = Rng::new(seed());
    let originals = [real_store(dir.path(), 3), real_store(dir.path(), 12)];
    let (mut opened, mut refused) = (0, 0);
    let started = Instant::now();
    for case in 0..cases {
        let what = format!("case {case} (seed {})", seed());
        let bytes = match case % 7 {
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
            // A real store with a range deleted, or garbage, zeros or a copy of its own
            // bytes inserted (issue 9: damage that moves bytes).
            5 | 6 => {
                let b = rng.pick(&originals).clone();
                let at = rng.range(0, b.len());
                let n = rng.range(1, 3000);
                if case % 7 == 5 {
                    let end = (at + n).min(b.len());
                    [&b[..at], &b[end..]].concat()
                } else {
                    let inserted = match rng.below(3) {
                        0 => rng.bytes(n),
                        1 => vec![0; n],
                        _ => {
                            let from = rng.range(0, b.len() - 1);
                            b[from..(from + n).min(b.len())].to_vec()
                        }
                    };
                    [&b[..at], &inserted, &b[at..]].concat()
                }
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

/// Counts the bytes a store reads through it.
struct CountingFile {
    inner: MemFile,
    read: Arc<AtomicU64>,
}

impl StorageFile for CountingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let n = self.inner.read_at(buf, offset)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<usize> {
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn sync_all(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn file_len(&self) -> std::io::Result<u64> {
        self.inner.file_len()
    }
}

/// The shapes of crafted file `crafted` builds: after two real batches, damage, then a
/// batch header with a valid (salted) checksum every 44 bytes, each claiming to run to
/// the end of the file.
#[derive(Clone, Copy, Debug)]
enum Crafted {
    /// Each header names a later write: the first is evidence of damage.
    LaterWrites,
    /// Each header names the write covering the damage and a position that could lie
    /// where it is: none is evidence, so the search runs to the end of the file.
    SameWrite,
    /// Each header holds a position already read (a copy): none is evidence.
    OldPositions,
}

/// A file of `total` bytes of the `shape`, the offset of its damage and the number of
/// events before it.
fn crafted(dir: &std::path::Path, total: usize, shape: Crafted) -> (Vec<u8>, u64, u64) {
    let mut b = real_store(dir, 2);
    let events = {
        let mem = MemFile::new(b.clone());
        open_mem(&dir.join("count.lock"), &mem)
            .unwrap()
            .global_position()
    };
    let salt = u64::from_le_bytes(b[SALT_AT..SALT_AT + 8].try_into().unwrap());
    // Damage where the next batch should be, as long as the smallest batch.
    let damaged_at = b.len() as u64;
    b.extend_from_slice(&[b'X'; 129]);
    while b.len() + 44 < total {
        let at = b.len() as u64;
        let len = (total - b.len()) as u32;
        // Enough events that the claimed length passes the header's sanity check.
        let count = len / 65536 + 1;
        let (first, group) = match shape {
            Crafted::LaterWrites => (1000, at),
            // Positions far enough on that 65588 bytes per position reach this far.
            Crafted::SameWrite => (events + (at - damaged_at) / 65536 + 1, damaged_at),
            Crafted::OldPositions => (0, 32),
        };
        b.extend(forged_header(salt, len, first, count, group));
    }
    b.resize(total - 8, 0);
    b.extend_from_slice(b"EVCM\0\0\0\0");
    (b, damaged_at, events)
}

/// Issue 9, defect 2 (was: quadratic open). A file crafted with the store's salt (which
/// sits in the file header), with valid header checksums every 44 bytes each claiming to
/// run to the end of the file, made `open` quadratic: 4 MiB took 5.4 s in release,
/// because recovery checksummed the whole claimed length of every candidate. Now each
/// candidate costs its header: the bound is on the bytes `open` reads (at most the file
/// and a chunk's worth of overlap, never a byte range twice over), for 4 and 16 MiB,
/// with a generous wall-clock bound as well. Figures: `docs/reliability.md`.
#[test]
fn crafted_candidates_do_not_make_open_quadratic() {
    let _serial = serial();
    let dir = scratch();
    for shape in [
        Crafted::LaterWrites,
        Crafted::SameWrite,
        Crafted::OldPositions,
    ] {
        for total in [4 << 20, 16 << 20] {
            let (b, damaged_at, events) = crafted(dir.path(), total, shape);
            let read = Arc::new(AtomicU64::new(0));
            let counting = CountingFile {
                inner: MemFile::new(b.clone()),
                read: Arc::clone(&read),
            };
            let mem = counting.inner.clone();
            let started = Instant::now();
            let opened = Store::open_with(
                &dir.path().join("crafted.lock"),
                OpenOptions::new().storage(move |_| Box::new(counting) as Box<dyn StorageFile>),
            );
            let took = started.elapsed();
            let read = read.load(Ordering::Relaxed);
            let what = format!("{shape:?}, {} MiB", total >> 20);
            match (shape, opened) {
                (Crafted::LaterWrites, Err(Error::CorruptRecord { offset, .. })) => {
                    assert_eq!(offset, damaged_at, "{what}");
                    assert!(mem.bytes() == b, "{what}: the file was changed");
                }
                (Crafted::SameWrite | Crafted::OldPositions, Ok(store)) => {
                    assert_eq!(store.global_position(), events, "{what}");
                    drop(store);
                    assert_eq!(mem.bytes().len() as u64, damaged_at, "{what}: not cut");
                }
                (_, other) => panic!("{what}: unexpected outcome {other:?}"),
            }
            eprintln!(
                "crafted file ({what}): open read {read} bytes in {:.3} s",
                took.as_secs_f64()
            );
            // Reading the file once, in chunks that overlap by less than a header.
            assert!(
                read <= b.len() as u64 + (b.len() as u64 >> 10) + (2 << 20),
                "{what}: open read {read} bytes of a {}-byte file",
                b.len()
            );
            assert!(took < Duration::from_secs(20), "{what}: took {took:?}");
        }
    }
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
        // Issue 9: damage that moved bytes, and the crafted shapes of defect 2.
        (
            "deleted-range",
            [&four[..four.len() / 2], &four[four.len() / 2 + 50..]].concat(),
        ),
        (
            "inserted-range",
            [
                &four[..four.len() / 2],
                &[0x5a; 37],
                &four[four.len() / 2..],
            ]
            .concat(),
        ),
        (
            "crafted-later-writes",
            crafted(dir.path(), 8 << 10, Crafted::LaterWrites).0,
        ),
        (
            "crafted-same-write",
            crafted(dir.path(), 8 << 10, Crafted::SameWrite).0,
        ),
        (
            "crafted-old-positions",
            crafted(dir.path(), 8 << 10, Crafted::OldPositions).0,
        ),
    ];
    for (name, bytes) in &seeds {
        std::fs::write(open_dir.join(name), bytes).unwrap();
    }
    std::fs::write(codec_dir.join("batch"), [salt, &one[32..]].concat()).unwrap();
    std::fs::write(codec_dir.join("file-header"), [salt, &one[..32]].concat()).unwrap();
    std::fs::write(codec_dir.join("record"), [salt, &one[32 + 44..]].concat()).unwrap();
}
