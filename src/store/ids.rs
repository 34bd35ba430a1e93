//! The event-id column of the index: which global position holds an event id.
//!
//! `IdTable` is open addressing with linear probing over `u64` slots, each holding 40
//! bits of `position + 1` (0 marks an empty slot) and a 24-bit tag from a keyed hash of
//! the id. The full id is never kept in memory: a tag match is only a candidate, which
//! the caller confirms by reading the record's id from the file (rare: a real retry, a
//! duplicate, or a 1-in-16-million tag collision on the probe path).
//!
//! The slot is a multiply-shift of the hash's upper 40 bits, so any capacity works; the
//! table grows by 1.25x, which keeps its load between 0.7 and 0.875: 9.1 to 11.4 bytes
//! per event. Since the ids are not in memory, growing means rehashing ids read back
//! from the file (the store does it, see `store::dedup`); opening a store sizes the
//! table once for the events it found.
//!
//! Whether a position is the first event of an append is not kept here: records of
//! one batch lie back to back, and batches are separated by their frames, so the
//! location column answers it (`Index::is_append_start`).

use uuid::Uuid;

/// Bits of a slot holding the tag.
const TAG_BITS: u32 = 24;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
/// The largest position a slot can hold (`position + 1` in 40 bits).
pub const MAX_POSITION: u64 = (1 << (64 - TAG_BITS)) - 2;
/// Load factor at which the table grows (7/8), and the load right after open (0.7).
const MAX_LOAD_NUM: usize = 7;
const MAX_LOAD_DEN: usize = 8;

/// The slot where the id of hash `h` belongs in a table of `capacity` slots (probing
/// goes on from there): a multiply-shift of the hash's upper 40 bits.
#[inline]
pub fn home(h: u64, capacity: u64) -> u64 {
    ((u128::from(h >> TAG_BITS) * u128::from(capacity)) >> (64 - TAG_BITS)) as u64
}

/// The tag of a hash, and the entry of a slot holding `position`.
#[inline]
pub fn tag(h: u64) -> u64 {
    h & TAG_MASK
}

/// The position a non-empty slot holds, and its tag.
#[inline]
pub fn slot_parts(slot: u64) -> (u64, u64) {
    ((slot >> TAG_BITS) - 1, slot & TAG_MASK)
}

/// The random keys of the id hash, per process and table, so that ids chosen from
/// outside cannot be made to collide on purpose.
#[derive(Debug, Clone, Copy)]
pub struct IdKeys {
    k0: u64,
    k1: u64,
}

impl Default for IdKeys {
    fn default() -> Self {
        let key = Uuid::new_v4().as_u128();
        IdKeys {
            k0: key as u64,
            k1: (key >> 64) as u64 | 1,
        }
    }
}

fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl IdKeys {
    /// Keys read back from an index file.
    pub fn from_parts(k0: u64, k1: u64) -> IdKeys {
        IdKeys { k0, k1: k1 | 1 }
    }

    /// The two keys (for the index file's header).
    pub fn parts(&self) -> (u64, u64) {
        (self.k0, self.k1)
    }

    /// The keyed 64-bit hash of an id: its lower 24 bits are the tag, its upper 40 bits
    /// pick the slot.
    #[inline]
    pub fn hash(&self, id: &Uuid) -> u64 {
        let v = id.as_u128();
        let h = fold_mul(v as u64 ^ self.k0, (v >> 64) as u64 ^ self.k1);
        fold_mul(h, 0x9e37_79b9_7f4a_7c15)
    }
}

/// `n` zero slots. A table of millions of ids (an import's, sized at once) is probed
/// at random, one slot per id: in 4 KiB pages nearly every probe also misses the TLB.
/// Large tables ask for transparent huge pages (2 MiB) before any page is touched.
fn zeroed_slots(n: usize) -> Vec<u64> {
    let slots = vec![0u64; n];
    let bytes = n * std::mem::size_of::<u64>();
    if bytes >= 8 << 20 {
        let start = slots.as_ptr() as usize;
        let huge = 2 << 20;
        let from = start.next_multiple_of(huge);
        let to = (start + bytes) / huge * huge;
        if to > from {
            // SAFETY: the range lies inside the vector's allocation, owned here and
            // alive for the call; MADV_HUGEPAGE is advice about how to back those
            // pages, it changes no byte of them (they stay zero) nor any mapping's
            // protection. A failure (no THP in this kernel) is ignored: only speed.
            unsafe {
                libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE);
            }
        }
    }
    slots
}

#[derive(Debug, Clone)]
pub struct IdTable {
    keys: IdKeys,
    slots: Vec<u64>,
    len: usize,
}

impl Default for IdTable {
    fn default() -> Self {
        IdTable::with_keys(IdKeys::default(), 0)
    }
}

impl IdTable {
    /// An empty table for `expected` ids at a load of 0.7.
    pub fn with_keys(keys: IdKeys, expected: usize) -> IdTable {
        let capacity = (expected * 10).div_ceil(7).max(16);
        IdTable {
            keys,
            slots: zeroed_slots(capacity),
            len: 0,
        }
    }

    /// A table built from the hashes of the ids at positions `0..hashes.len()`.
    pub fn from_hashes(keys: IdKeys, hashes: &[u64]) -> IdTable {
        let mut t = IdTable::with_keys(keys, hashes.len());
        for (position, &h) in hashes.iter().enumerate() {
            t.insert_hash(h, position as u64);
        }
        t
    }

    pub fn keys(&self) -> IdKeys {
        self.keys
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn heap_bytes(&self) -> u64 {
        self.slots.capacity() as u64 * 8
    }

    /// Whether `additional` more ids would take the load past 7/8.
    pub fn needs_growth(&self, additional: usize) -> bool {
        (self.len + additional) * MAX_LOAD_DEN > self.slots.len() * MAX_LOAD_NUM
    }

    /// The capacity to grow to so that `total` ids fit: 1.25x at a time.
    pub fn grown_capacity(&self, total: usize) -> usize {
        let mut cap = self.slots.len().max(16);
        while total * MAX_LOAD_DEN > cap * MAX_LOAD_NUM {
            cap += cap / 4;
        }
        cap
    }

    /// An empty table with the same keys and `capacity` slots.
    pub fn empty_like(&self, capacity: usize) -> IdTable {
        IdTable {
            keys: self.keys,
            slots: zeroed_slots(capacity.max(16)),
            len: 0,
        }
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        home(h, self.slots.len() as u64) as usize
    }

    /// The slots, as an index file's id column stores them.
    pub fn slots(&self) -> &[u64] {
        &self.slots
    }

    /// A table of the hashes `hashes` of the ids at positions `base..`, sized for
    /// `expected` ids (at least `hashes.len()`).
    pub fn from_hashes_at(keys: IdKeys, hashes: &[u64], base: u64, expected: usize) -> IdTable {
        let mut t = IdTable::with_keys(keys, expected.max(hashes.len()));
        for (i, &h) in hashes.iter().enumerate() {
            t.insert_hash(h, base + i as u64);
        }
        t
    }

    /// Records that the id whose hash is `h` is at `position`.
    ///
    /// # Panics
    /// When the table is full (callers grow it first: see [`IdTable::needs_growth`]) or
    /// `position` exceeds [`MAX_POSITION`].
    pub fn insert_hash(&mut self, h: u64, position: u64) {
        assert!(position <= MAX_POSITION, "position {position} out of range");
        assert!(self.len < self.slots.len(), "the id table is full");
        let entry = ((position + 1) << TAG_BITS) | (h & TAG_MASK);
        let cap = self.slots.len();
        let mut i = self.home(h);
        while self.slots[i] != 0 {
            i += 1;
            if i == cap {
                i = 0;
            }
        }
        self.slots[i] = entry;
        self.len += 1;
    }

    pub fn insert(&mut self, id: &Uuid, position: u64) {
        let h = self.keys.hash(id);
        self.insert_hash(h, position);
    }

    /// Positions whose id has the same tag as `id`, in the order they were inserted
    /// along the probe path (the earlier position first when both were inserted in
    /// order). Each must be confirmed against the file.
    pub fn candidates(&self, id: &Uuid) -> Candidates<'_> {
        self.candidates_of_hash(self.keys.hash(id))
    }

    /// [`IdTable::candidates`] of an id by its hash (with this table's keys).
    pub fn candidates_of_hash(&self, h: u64) -> Candidates<'_> {
        Candidates {
            slots: &self.slots,
            at: self.home(h),
            tag: h & TAG_MASK,
            steps: 0,
        }
    }
}

/// Iterator over the candidate positions of one id.
pub struct Candidates<'a> {
    slots: &'a [u64],
    at: usize,
    tag: u64,
    steps: usize,
}

impl Iterator for Candidates<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        while self.steps < self.slots.len() {
            let s = self.slots[self.at];
            if s == 0 {
                return None;
            }
            self.at += 1;
            if self.at == self.slots.len() {
                self.at = 0;
            }
            self.steps += 1;
            if s & TAG_MASK == self.tag {
                return Some((s >> TAG_BITS) - 1);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Uuid {
        Uuid::from_u128(u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
    }

    #[test]
    fn every_inserted_id_is_found_at_its_position() {
        let mut t = IdTable::with_keys(IdKeys::default(), 1000);
        for p in 0..1000 {
            t.insert(&id(p), p);
        }
        for p in 0..1000 {
            assert!(t.candidates(&id(p)).any(|c| c == p), "id {p} lost");
        }
        let false_hits: usize = (5000..105_000).map(|n| t.candidates(&id(n)).count()).sum();
        // 100,000 absent ids, each compared with a few tags: expect ~0 false hits.
        assert!(false_hits < 5, "{false_hits} tag collisions");
    }

    #[test]
    fn sizes_keep_the_load_between_0_7_and_0_875() {
        let t = IdTable::with_keys(IdKeys::default(), 1_000_000);
        let bytes_per_id = t.heap_bytes() as f64 / 1e6;
        assert!((11.0..=11.5).contains(&bytes_per_id), "{bytes_per_id}");
        let mut t = IdTable::with_keys(IdKeys::default(), 0);
        let mut grown = 0;
        for p in 0..100_000u64 {
            if t.needs_growth(1) {
                let cap = t.grown_capacity(t.len() + 1);
                assert!(cap * 4 <= t.capacity() * 5 + 4, "grows by 1.25x");
                let mut n = t.empty_like(cap);
                for q in 0..p {
                    n.insert(&id(q), q);
                }
                t = n;
                grown += 1;
            }
            t.insert(&id(p), p);
            assert!(t.len() * 8 <= t.capacity() * 7);
        }
        assert!(grown > 10);
        let bytes_per_id = t.heap_bytes() as f64 / t.len() as f64;
        assert!(bytes_per_id <= 12.0, "{bytes_per_id}");
    }

    #[test]
    fn the_same_id_twice_gives_both_positions_in_order() {
        let mut t = IdTable::with_keys(IdKeys::default(), 4);
        t.insert(&id(1), 3);
        t.insert(&id(1), 9);
        assert_eq!(t.candidates(&id(1)).collect::<Vec<_>>(), vec![3, 9]);
    }

    #[test]
    fn a_full_table_still_terminates_lookups() {
        let mut t = IdTable::with_keys(IdKeys::default(), 0);
        for p in 0..16 {
            t.insert(&id(p), p);
        }
        assert_eq!(t.candidates(&id(99)).count(), 0);
    }
}
