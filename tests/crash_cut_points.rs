//! Issue 4, point 1: every cut point. A store built from a known mix of appends (batch
//! sizes 1, 2, 3 and 17; events from 0 bytes to `MAX_EVENT_SIZE`; about a third of the
//! batches of two or more events are multi-stream appends, issue 11) is cut at every byte
//! length and opened: it must open, hold exactly the whole batches that fit, have cut
//! off the rest, and take one more append that survives a reopen. Tails of zeros and of
//! random bytes appended to a whole store must be dropped.
//!
//! Knobs: `ES_CUT_STRIDE_SMALL` (default 1: every byte of the small store),
//! `ES_CUT_STRIDE_LARGE` (default 4099, plus every batch boundary +-2; 1 in the soak),
//! `ES_CUT_APPEND_EVERY` (default 5: the append-and-reopen check on every 5th cut),
//! `ES_CUT_LARGE_BATCHES` (default 24).

mod support;

use std::path::Path;

use eventstore::{Store, MAX_EVENT_SIZE};
use support::*;

const FILE_HEADER_LEN: u64 = 32;
/// Builds a closed store of `batches` one append at a time; returns its bytes, the
/// model, and the file offset where each batch ends.
fn build(dir: &Path, batches: &[PlannedBatch]) -> (Vec<u8>, Vec<Acked>, Vec<u64>) {
    let path = dir.join("original.store");
    let store = Store::open(&path).unwrap();
    let acked = append_all(&store, batches);
    store.close().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let mut ends = Vec::new();
    let mut at = FILE_HEADER_LEN;
    for b in batches {
        at += batch_len(b);
        ends.push(at);
    }
    assert_eq!(
        at,
        bytes.len() as u64,
        "the layout model must match the file"
    );
    (bytes, acked, ends)
}

struct Cuts {
    opened: usize,
    continued: usize,
}

/// Cuts `bytes` at every length in `lengths` and judges each.
fn cut_and_check(
    dir: &Path,
    bytes: &[u8],
    acked: &[Acked],
    ends: &[u64],
    lengths: impl Iterator<Item = u64>,
    append_every: usize,
) -> Cuts {
    let path = dir.join("cut.store");
    let mut cuts = Cuts {
        opened: 0,
        continued: 0,
    };
    for (n, len) in lengths.enumerate() {
        std::fs::write(&path, &bytes[..len as usize]).unwrap();
        let whole = ends.iter().take_while(|&&e| e <= len).count();
        let want_len = if whole == 0 {
            FILE_HEADER_LEN
        } else {
            ends[whole - 1]
        };
        let model = &acked[..whole];
        if n % append_every == 0 {
            check_recovers_and_continues(&path, model, &[], 1 << 40 | len)
                .unwrap_or_else(|e| panic!("cut at {len} bytes: {e}"));
            cuts.continued += 1;
        } else {
            let store = Store::open(&path).unwrap_or_else(|e| panic!("cut at {len}: {e}"));
            assert_eq!(
                file_len(&path),
                want_len,
                "cut at {len} bytes: open must cut the file back to its whole batches"
            );
            check_store(&store, model, &[]).unwrap_or_else(|e| panic!("cut at {len} bytes: {e}"));
            drop(store);
        }
        cuts.opened += 1;
    }
    cuts
}

#[test]
fn every_cut_point_of_a_small_store() {
    let dir = scratch();
    let batches: Vec<_> = (0..24).map(|k| planned(k, Profile::SMALL, 0)).collect();
    let multi = batches.iter().filter(|b| b.is_multi()).count();
    assert!(multi >= 3, "the small store must hold multi-stream appends");
    let (bytes, acked, ends) = build(dir.path(), &batches);
    let stride = env_usize("ES_CUT_STRIDE_SMALL", 1).max(1);
    // From the empty file (a crash during creation) to the whole store.
    let lengths = (0..=bytes.len() as u64).step_by(stride);
    let cuts = cut_and_check(
        dir.path(),
        &bytes,
        &acked,
        &ends,
        lengths,
        env_usize("ES_CUT_APPEND_EVERY", 5).max(1),
    );
    eprintln!(
        "small store: {} bytes, {} batches ({multi} multi-stream), {} cut points opened ({} with append+reopen), nothing acknowledged lost",
        bytes.len(),
        batches.len(),
        cuts.opened,
        cuts.continued
    );
}

#[test]
fn sampled_cut_points_of_a_store_with_maximum_size_events() {
    let dir = scratch();
    let n = env_usize("ES_CUT_LARGE_BATCHES", 24) as u64;
    let batches: Vec<_> = (0..n)
        .map(|k| planned(1000 + k, Profile::MIXED, 0))
        .collect();
    let max = batches
        .iter()
        .flat_map(|b| &b.events)
        .filter(|e| e.as_ref().encoded_len() == MAX_EVENT_SIZE)
        .count();
    let empty = batches
        .iter()
        .flat_map(|b| &b.events)
        .filter(|e| e.payload.is_empty())
        .count();
    assert!(
        max > 0 && empty > 0,
        "the mix must hold 0-byte and maximum-size events"
    );
    let (bytes, acked, ends) = build(dir.path(), &batches);
    let stride = env_usize("ES_CUT_STRIDE_LARGE", 4099).max(1) as u64;
    let mut lengths: Vec<u64> = (FILE_HEADER_LEN..=bytes.len() as u64)
        .step_by(stride as usize)
        .collect();
    for &e in std::iter::once(&FILE_HEADER_LEN).chain(&ends) {
        lengths.extend((e.saturating_sub(2)..=e + 2).filter(|&l| l <= bytes.len() as u64));
    }
    lengths.sort_unstable();
    lengths.dedup();
    let cuts = cut_and_check(
        dir.path(),
        &bytes,
        &acked,
        &ends,
        lengths.into_iter(),
        env_usize("ES_CUT_APPEND_EVERY", 5).max(1),
    );
    eprintln!(
        "large store: {} bytes, {} batches ({max} maximum-size events), {} cut points opened ({} with append+reopen), nothing acknowledged lost",
        bytes.len(),
        batches.len(),
        cuts.opened,
        cuts.continued
    );
}

#[test]
fn tails_of_zeros_and_garbage_are_dropped() {
    let dir = scratch();
    let batches: Vec<_> = (0..12)
        .map(|k| planned(2000 + k, Profile::SMALL, 0))
        .collect();
    let (bytes, acked, _) = build(dir.path(), &batches);
    let path = dir.path().join("tail.store");
    let mut rng = Rng::new(seed());
    let mut lengths = vec![
        1, 2, 3, 4, 7, 8, 43, 44, 45, 51, 52, 53, 511, 512, 513, 4095, 4096, 4097, 8191, 8192,
    ];
    for _ in 0..env_usize("ES_TAIL_RANDOM", 20) {
        lengths.push(rng.range(1, 8192));
    }
    let mut opened = 0;
    for &n in &lengths {
        for garbage in [false, true] {
            let mut image = bytes.clone();
            if garbage {
                image.extend(rng.bytes(n));
            } else {
                image.resize(bytes.len() + n, 0);
            }
            std::fs::write(&path, &image).unwrap();
            let store = Store::open(&path)
                .unwrap_or_else(|e| panic!("tail of {n} bytes (garbage {garbage}): {e}"));
            assert_eq!(
                file_len(&path),
                bytes.len() as u64,
                "tail of {n} bytes not cut off"
            );
            check_store(&store, &acked, &[]).unwrap_or_else(|e| panic!("tail of {n}: {e}"));
            drop(store);
            opened += 1;
        }
    }
    // One tail that looks like the start of a batch: the magic, then garbage.
    let mut image = bytes.clone();
    image.extend_from_slice(b"EVBT");
    image.extend(rng.bytes(100));
    std::fs::write(&path, &image).unwrap();
    check_recovers_and_continues(&path, &acked, &[], 77).unwrap();
    eprintln!(
        "tails: {} images (zeros and garbage, 1..8192 bytes) dropped, nothing acknowledged lost",
        opened + 1
    );
}
