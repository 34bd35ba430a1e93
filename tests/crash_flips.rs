//! Issue 4, point 2: every flipped byte. Each byte of a small store is flipped in turn
//! and the store opened. Damage in the last batch drops that batch (a torn tail cannot
//! be told from it); damage anywhere else is `CorruptRecord` (`InvalidHeader` in the
//! file header) and leaves the file byte for byte as it was. Never a panic, never an
//! event whose bytes differ from what was appended.
//!
//! Knobs: `ES_FLIP_MASKS` (comma-separated hex XOR masks, default `ff`; the soak uses
//! `ff,01,80`), `ES_FLIP_BATCHES` (default 10).

mod support;

use eventstore::{Error, Store};
use support::*;

const FILE_HEADER_LEN: usize = 32;

#[test]
fn every_flipped_byte() {
    let dir = scratch();
    let n = env_usize("ES_FLIP_BATCHES", 10) as u64;
    let batches: Vec<_> = (0..n)
        .map(|k| planned(3000 + k, Profile::SMALL, 0))
        .collect();
    let original = dir.path().join("original.store");
    let store = Store::open(&original).unwrap();
    let acked = append_all(&store, &batches);
    store.close().unwrap();
    let bytes = std::fs::read(&original).unwrap();
    let last_start = bytes.len() - batch_len(batches.last().unwrap()) as usize;
    let masks: Vec<u8> = std::env::var("ES_FLIP_MASKS")
        .unwrap_or_else(|_| "ff".into())
        .split(',')
        .map(|m| u8::from_str_radix(m.trim(), 16).expect("hex mask"))
        .collect();
    let path = dir.path().join("flipped.store");
    let (mut dropped, mut corrupt, mut header) = (0, 0, 0);
    for &mask in &masks {
        for i in 0..bytes.len() {
            let mut image = bytes.clone();
            image[i] ^= mask;
            std::fs::write(&path, &image).unwrap();
            let outcome = Store::open(&path);
            let where_ = format!("byte {i} ^ {mask:#04x}");
            if i >= last_start {
                let store = outcome.unwrap_or_else(|e| panic!("{where_} (last batch): {e}"));
                check_store(&store, &acked[..acked.len() - 1], &[])
                    .unwrap_or_else(|e| panic!("{where_}: {e}"));
                assert_eq!(file_len(&path), last_start as u64, "{where_}: not cut off");
                dropped += 1;
                continue;
            }
            match outcome {
                Err(Error::InvalidHeader { .. }) if i < FILE_HEADER_LEN => header += 1,
                Err(Error::CorruptRecord { offset, .. }) if i >= FILE_HEADER_LEN => {
                    assert!(
                        offset as usize <= i,
                        "{where_}: damage reported at {offset}"
                    );
                    corrupt += 1;
                }
                Err(e) => panic!("{where_}: unexpected error {e}"),
                Ok(store) => {
                    let held = store.read_all(0, u64::MAX).map(|v| v.len());
                    panic!("{where_}: opened (holding {held:?} events) although acknowledged data was damaged")
                }
            }
            assert!(
                std::fs::read(&path).unwrap() == image,
                "{where_}: a failed open changed the file"
            );
        }
    }
    eprintln!(
        "flips: {} bytes x {} masks = {} images: {header} InvalidHeader, {corrupt} CorruptRecord (file unchanged), {dropped} dropped the last batch; nothing acknowledged lost",
        bytes.len(),
        masks.len(),
        bytes.len() * masks.len()
    );
}
