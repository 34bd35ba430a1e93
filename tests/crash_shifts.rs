//! Issue 9, defect 0: damage that moves bytes. Ranges deleted from and inserted into a
//! store (of every length from 1 byte to a few batches, at many places), a lost 4 KiB
//! block, a duplicated block. Whatever shape the damage has, `open` must never cut off
//! an intact batch that follows it (wherever that batch now sits): it refuses with
//! `CorruptRecord` and leaves the bytes as they were. When nothing intact follows (the
//! damage reaches into the last write, which a torn write cannot be told from), it
//! keeps exactly the batches before the damage.
//!
//! Every batch of these stores is its own write (one appender), so "the last write" is
//! the last batch.
//!
//! Knobs: `ES_SHIFT_MAX_BATCHES` (longest range, in batches; default 3),
//! `ES_SHIFT_PLACES` (places per length; default 3), `ES_SHIFT_EVERY_PLACE=1` (every
//! byte offset for every length: the soak).

mod support;

use eventstore::Error;
use support::memfile::{open_mem, MemFile};
use support::*;

const FILE_HEADER_LEN: u64 = 32;

/// A store of `batches` batches of `per_batch` small events, its bytes and where each
/// batch starts and ends.
struct Original {
    bytes: Vec<u8>,
    spans: Vec<(u64, u64)>,
    acked: Vec<Acked>,
}

fn original(dir: &std::path::Path, batches: u64, per_batch: usize) -> Original {
    original_of(dir, batches, per_batch, Profile::SMALL)
}

fn original_of(
    dir: &std::path::Path,
    batches: u64,
    per_batch: usize,
    profile: Profile,
) -> Original {
    let path = dir.join(format!(
        "original-{batches}x{per_batch}-{}.store",
        profile.multi_one_in
    ));
    let store = eventstore::Store::open(&path).unwrap();
    let mut spans = Vec::new();
    let mut acked = Vec::new();
    let mut at = FILE_HEADER_LEN;
    for k in 0..batches {
        let b = planned(9000 + k, profile, per_batch);
        let len = batch_len(&b);
        acked.push(append(&store, &b).unwrap());
        spans.push((at, at + len));
        at += len;
    }
    store.close().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, at);
    Original {
        bytes,
        spans,
        acked,
    }
}

/// What was done to the bytes.
#[derive(Clone, Debug)]
enum Shape {
    /// Bytes `at..at + len` removed.
    Delete { at: u64, len: u64 },
    /// `bytes` inserted before byte `at`.
    Insert { at: u64, bytes: Vec<u8> },
}

impl Shape {
    fn apply(&self, original: &[u8]) -> Vec<u8> {
        match self {
            Shape::Delete { at, len } => {
                let (at, len) = (*at as usize, *len as usize);
                [&original[..at], &original[at + len..]].concat()
            }
            Shape::Insert { at, bytes } => {
                let at = *at as usize;
                [&original[..at], bytes, &original[at..]].concat()
            }
        }
    }

    /// Where the damage starts, and where the untouched bytes after it start (in the
    /// original's offsets), in the leftmost and the rightmost of the equivalent shapes:
    /// deleting `at..at + len` gives the same bytes as deleting one byte further left
    /// when the byte before the range equals its last byte (and so on), and likewise
    /// for insertions.
    fn ranges(&self, original: &[u8]) -> [(u64, u64); 2] {
        let n = original.len();
        match self {
            Shape::Delete { at, len } => {
                let (at, len) = (*at as usize, *len as usize);
                let mut left = at;
                while left > 0 && original[left - 1] == original[left + len - 1] {
                    left -= 1;
                }
                let mut right = at;
                while right + len < n && original[right] == original[right + len] {
                    right += 1;
                }
                [left, right].map(|a| (a as u64, (a + len) as u64))
            }
            Shape::Insert { at, bytes } => {
                let at = *at as usize;
                let mut b = bytes.clone();
                let mut left = at;
                while left > 0 && b.last() == Some(&original[left - 1]) {
                    b.rotate_right(1);
                    left -= 1;
                }
                let mut b = bytes.clone();
                let mut right = at;
                while right < n && b.first() == Some(&original[right]) {
                    b.rotate_left(1);
                    right += 1;
                }
                [left, right].map(|a| (a as u64, a as u64))
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Shape::Delete { at, len } => format!("{len} bytes deleted at {at}"),
            Shape::Insert { at, bytes } => format!("{} bytes inserted at {at}", bytes.len()),
        }
    }
}

/// Opens the damaged image and judges the outcome. `may_refuse`: the inserted bytes
/// hold copies of batches of this file, which may rightly be taken as evidence even
/// when no original batch is intact after the damage.
fn judge(
    lock: &std::path::Path,
    o: &Original,
    shape: &Shape,
    may_refuse: bool,
) -> Result<Outcome, String> {
    let image = shape.apply(&o.bytes);
    let [(first_damage, intact_from), (damage, _)] = shape.ranges(&o.bytes);
    let file_end = o.bytes.len() as u64;
    // Batches wholly before the damage (its rightmost form) are in place and intact,
    // and kept. An original batch that lies wholly in the untouched bytes after the
    // damage in its leftmost form is in the image whole, moved; if it is not also
    // kept in place, cutting the file would lose it. (An insertion at the very end is
    // a garbage tail, which has nothing after it.)
    let intact_after =
        first_damage < file_end && o.spans.iter().any(|&(s, e)| s >= intact_from && e > damage);
    let kept = o.spans.iter().take_while(|&&(_, e)| e <= damage).count();
    let what = shape.describe();
    let mem = MemFile::new(image.clone());
    match open_mem(lock, &mem) {
        Err(Error::CorruptRecord { offset, detail, .. }) => {
            if !intact_after && !may_refuse {
                return Err(format!(
                    "{what}: refused (CorruptRecord at {offset}: {detail}) with nothing intact after the damage"
                ));
            }
            if offset > damage {
                return Err(format!(
                    "{what}: damage reported at {offset}, after where it is ({damage})"
                ));
            }
            if mem.bytes() != image {
                return Err(format!("{what}: a refused open changed the bytes"));
            }
            Ok(Outcome::Refused)
        }
        Err(e) => Err(format!("{what}: unexpected error {e}")),
        Ok(store) => {
            if intact_after {
                let held = store.global_position();
                return Err(format!(
                    "{what}: opened holding {held} events although an intact batch follows \
                     the damage: acknowledged data cut off"
                ));
            }
            check_store(&store, &o.acked[..kept], &[]).map_err(|e| format!("{what}: {e}"))?;
            drop(store);
            let want = o.spans.get(kept).map_or(file_end, |s| s.0);
            let len = mem.bytes().len() as u64;
            if len != want {
                return Err(format!(
                    "{what}: the file was cut to {len} bytes instead of {want}"
                ));
            }
            Ok(Outcome::Opened)
        }
    }
}

#[derive(PartialEq)]
enum Outcome {
    Refused,
    Opened,
}

#[derive(Default)]
struct Tally {
    images: usize,
    refused: usize,
    opened: usize,
}

impl Tally {
    fn add(&mut self, outcome: Outcome) {
        self.images += 1;
        match outcome {
            Outcome::Refused => self.refused += 1,
            Outcome::Opened => self.opened += 1,
        }
    }
}

/// The places a range of `len` bytes is damaged at: every byte offset when asked,
/// else a few spread over the file (a different few for each length), and always the
/// start of a batch and the start of the last batch.
fn places(o: &Original, len: u64, n: usize, every: bool, rng: &mut Rng) -> Vec<u64> {
    let end = o.bytes.len() as u64;
    if every {
        return (FILE_HEADER_LEN..end).collect();
    }
    let mut at: Vec<u64> = (0..n)
        .map(|_| FILE_HEADER_LEN + rng.below(end - FILE_HEADER_LEN))
        .collect();
    at.push(o.spans[(len as usize) % o.spans.len()].0);
    at.push(o.spans.last().unwrap().0);
    at
}

/// The case: 50 bytes deleted from the middle of a 96-event store of 12
/// batches. Before the fix, `open` kept 40 events and cut the file from 17,982 bytes
/// to 7,532 (56 acknowledged events gone).
#[test]
fn fifty_bytes_deleted_from_the_middle_is_refused_and_the_file_kept() {
    let dir = scratch();
    let o = original(dir.path(), 12, 8);
    let middle = o.bytes.len() as u64 / 2;
    let shape = Shape::Delete {
        at: middle,
        len: 50,
    };
    let image = shape.apply(&o.bytes);
    let mem = MemFile::new(image.clone());
    match open_mem(&dir.path().join("lock"), &mem) {
        Err(Error::CorruptRecord { detail, .. }) => {
            assert!(detail.contains("missing"), "names the cause: {detail}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(store) => panic!(
            "opened with {} of 96 events: acknowledged data cut off",
            store.global_position()
        ),
    }
    assert!(mem.bytes() == image, "the file was changed");
}

#[test]
fn deleted_ranges_of_every_length() {
    let dir = scratch();
    let o = original(dir.path(), 12, 8);
    let lock = dir.path().join("lock");
    let longest = env_usize("ES_SHIFT_MAX_BATCHES", 3) as u64 * (o.bytes.len() as u64 / 12);
    let every = env_usize("ES_SHIFT_EVERY_PLACE", 0) == 1;
    let n = env_usize("ES_SHIFT_PLACES", 3);
    let mut rng = Rng::new(seed());
    let mut tally = Tally::default();
    for len in 1..=longest {
        for at in places(&o, len, n, every, &mut rng) {
            if at + len > o.bytes.len() as u64 {
                continue;
            }
            tally.add(judge(&lock, &o, &Shape::Delete { at, len }, false).unwrap());
        }
    }
    eprintln!(
        "deleted ranges of 1..={longest} bytes: {} images, {} refused (file unchanged), {} opened to the batches before the damage; nothing acknowledged lost",
        tally.images, tally.refused, tally.opened
    );
    assert!(tally.refused > 0 && tally.opened > 0);
}

#[test]
fn inserted_ranges_of_every_length() {
    let dir = scratch();
    let o = original(dir.path(), 12, 8);
    let lock = dir.path().join("lock");
    let longest = env_usize("ES_SHIFT_MAX_BATCHES", 3) as u64 * (o.bytes.len() as u64 / 12);
    let every = env_usize("ES_SHIFT_EVERY_PLACE", 0) == 1;
    let n = env_usize("ES_SHIFT_PLACES", 3);
    let mut rng = Rng::new(seed() ^ 1);
    let mut tally = Tally::default();
    for len in 1..=longest {
        let mut places = places(&o, len, n, every, &mut rng);
        places.push(o.bytes.len() as u64); // a tail: garbage appended
        for (i, at) in places.into_iter().enumerate() {
            // Zeros (a hole) or garbage, alternately.
            let bytes = if (len as usize + i).is_multiple_of(2) {
                vec![0; len as usize]
            } else {
                rng.bytes(len as usize)
            };
            tally.add(judge(&lock, &o, &Shape::Insert { at, bytes }, false).unwrap());
        }
    }
    eprintln!(
        "inserted ranges of 1..={longest} bytes: {} images, {} refused (file unchanged), {} opened to the batches before the damage; nothing acknowledged lost",
        tally.images, tally.refused, tally.opened
    );
    assert!(tally.refused > 0 && tally.opened > 0);
}

/// File-system shaped damage: a 4 KiB block lost (the file closes up over it), or a
/// block written twice (a copy inserted after itself, or somewhere else), at every
/// block boundary of a larger store.
#[test]
fn lost_and_duplicated_blocks() {
    let dir = scratch();
    let o = original(dir.path(), 40, 6);
    let lock = dir.path().join("lock");
    let end = o.bytes.len() as u64;
    let mut tally = Tally::default();
    for block in [512u64, 4096] {
        let mut at = 0;
        while at + block <= end {
            if at >= FILE_HEADER_LEN {
                let lost = Shape::Delete { at, len: block };
                tally.add(judge(&lock, &o, &lost, false).unwrap());
                let copy = o.bytes[at as usize..(at + block) as usize].to_vec();
                // Written twice in a row.
                let twice = Shape::Insert {
                    at: at + block,
                    bytes: copy.clone(),
                };
                tally.add(judge(&lock, &o, &twice, true).unwrap());
                // Also landed one block earlier (a misdirected write that shifted).
                if at >= block + FILE_HEADER_LEN {
                    let early = Shape::Insert {
                        at: at - block,
                        bytes: copy,
                    };
                    tally.add(judge(&lock, &o, &early, true).unwrap());
                }
            }
            at += block;
        }
    }
    eprintln!(
        "lost and duplicated blocks: {} images, {} refused (file unchanged), {} opened; nothing acknowledged lost",
        tally.images, tally.refused, tally.opened
    );
    assert!(tally.refused > 0);
}

/// Whole batches removed (the cut falls exactly on batch boundaries), which leaves
/// every remaining batch intact but out of place.
#[test]
fn whole_batches_removed_or_repeated() {
    let dir = scratch();
    let o = original(dir.path(), 12, 8);
    let lock = dir.path().join("lock");
    let mut tally = Tally::default();
    for first in 0..o.spans.len() {
        for last in first..o.spans.len() {
            let (at, end) = (o.spans[first].0, o.spans[last].1);
            let cut = Shape::Delete { at, len: end - at };
            tally.add(judge(&lock, &o, &cut, false).unwrap());
            let again = Shape::Insert {
                at: end,
                bytes: o.bytes[at as usize..end as usize].to_vec(),
            };
            tally.add(judge(&lock, &o, &again, true).unwrap());
        }
    }
    eprintln!(
        "whole batches removed or repeated: {} images, {} refused (file unchanged), {} opened; nothing acknowledged lost",
        tally.images, tally.refused, tally.opened
    );
}

/// Format 2's multi-stream batches (every batch of this store spreads over two or
/// three streams): deleted and inserted ranges of every length up to two batches, at
/// a few places each, whole batches removed or repeated, lost and doubled blocks.
#[test]
fn multi_stream_batches_shifted() {
    let dir = scratch();
    let profile = Profile {
        multi_one_in: 1,
        ..Profile::SMALL
    };
    let o = original_of(dir.path(), 12, 8, profile);
    assert!(
        o.acked.iter().all(|a| a.batch.is_multi()),
        "every batch is a multi-stream batch"
    );
    let lock = dir.path().join("lock");
    let longest = 2 * (o.bytes.len() as u64 / 12);
    let n = env_usize("ES_SHIFT_PLACES", 3).min(2);
    let mut rng = Rng::new(seed() ^ 2);
    let mut tally = Tally::default();
    for len in 1..=longest {
        for at in places(&o, len, n, false, &mut rng) {
            if at + len <= o.bytes.len() as u64 {
                tally.add(judge(&lock, &o, &Shape::Delete { at, len }, false).unwrap());
            }
            let bytes = if len % 2 == 0 {
                vec![0; len as usize]
            } else {
                rng.bytes(len as usize)
            };
            tally.add(judge(&lock, &o, &Shape::Insert { at, bytes }, false).unwrap());
        }
    }
    for first in 0..o.spans.len() {
        let last = (first + 1).min(o.spans.len() - 1);
        let (at, end) = (o.spans[first].0, o.spans[last].1);
        tally.add(judge(&lock, &o, &Shape::Delete { at, len: end - at }, false).unwrap());
        let again = Shape::Insert {
            at: end,
            bytes: o.bytes[at as usize..end as usize].to_vec(),
        };
        tally.add(judge(&lock, &o, &again, true).unwrap());
    }
    eprintln!(
        "multi-stream batches shifted: {} images, {} refused (file unchanged), {} opened; nothing acknowledged lost",
        tally.images, tally.refused, tally.opened
    );
    assert!(tally.refused > 0 && tally.opened > 0);
}
