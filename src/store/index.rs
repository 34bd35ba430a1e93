//! The in-memory index: where every event's record lies in the file, and which global
//! positions belong to each stream. It holds no payloads: 8 bytes per event for the
//! location, 8 bytes per event in its stream's list, and a map entry per stream.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use uuid::Uuid;

use crate::store::types_table::{TypeMatch, TypeTable};

type StreamMap = HashMap<Uuid, Vec<u64>, StreamIdHash>;

/// Hashes stream ids with a folded 64x64->128-bit multiply of their two halves,
/// each mixed with a random per-map key: a few cycles instead of SipHash's ~20 ns,
/// which opening a store pays once per batch. The random keys keep an application
/// that takes stream ids from outside from being fed ids chosen to collide.
#[derive(Clone, Debug)]
pub struct StreamIdHash {
    k0: u64,
    k1: u64,
}

impl Default for StreamIdHash {
    fn default() -> Self {
        let key = Uuid::new_v4().as_u128();
        StreamIdHash {
            k0: key as u64 | 1,
            k1: (key >> 64) as u64,
        }
    }
}

impl BuildHasher for StreamIdHash {
    type Hasher = StreamIdHasher;

    fn build_hasher(&self) -> StreamIdHasher {
        StreamIdHasher {
            k0: self.k0,
            k1: self.k1,
            acc: 0,
        }
    }
}

pub struct StreamIdHasher {
    k0: u64,
    k1: u64,
    acc: u64,
}

fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for StreamIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(16) {
            let mut word = [0u8; 16];
            word[..chunk.len()].copy_from_slice(chunk);
            let w = u128::from_le_bytes(word);
            let mixed = fold_mul(w as u64 ^ self.k0, (w >> 64) as u64 ^ self.k1);
            self.acc = fold_mul(self.acc ^ mixed, 0x9e37_79b9_7f4a_7c15 ^ self.k1);
        }
    }

    fn write_usize(&mut self, n: usize) {
        // The length prefix of the id (always 16): folded in cheaply.
        self.acc ^= n as u64;
    }

    fn finish(&self) -> u64 {
        self.acc
    }
}

/// Where one record lies: its file offset (48 bits, 256 TiB) and its length (1 to
/// 65536 bytes, stored minus one in 16 bits), packed into one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLocation(u64);

impl RecordLocation {
    pub const MAX_OFFSET: u64 = (1 << 48) - 1;

    pub fn new(offset: u64, len: usize) -> RecordLocation {
        debug_assert!(offset <= Self::MAX_OFFSET);
        debug_assert!((1..=crate::types::MAX_EVENT_SIZE).contains(&len));
        RecordLocation((offset << 16) | (len as u64 - 1))
    }

    pub fn offset(self) -> u64 {
        self.0 >> 16
    }

    pub fn size(self) -> usize {
        (self.0 & 0xffff) as usize + 1
    }

    pub fn end(self) -> u64 {
        self.offset() + self.size() as u64
    }
}

/// Counts that describe the index's footprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    pub events: u64,
    pub streams: u64,
    /// Heap bytes the index holds (capacity, not just length).
    pub heap_bytes: u64,
}

/// Builds the index of a file being scanned. Instead of pushing every event onto its
/// stream's list as it comes (a scattered write into one of many growing vectors,
/// and the slack of their doubling), it notes each event's stream slot (4 bytes,
/// written in order) and lays the lists out at the end, each allocated at its exact
/// size.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    records: Vec<RecordLocation>,
    slots: HashMap<Uuid, u32, StreamIdHash>,
    /// Per slot: the stream's number of events so far.
    lens: Vec<u64>,
    /// Per event: its stream's slot.
    event_slots: Vec<u32>,
    /// Per event: its type id.
    types: TypeTable,
}

impl IndexBuilder {
    /// Number of events so far: the next global position.
    pub fn event_count(&self) -> u64 {
        self.records.len() as u64
    }

    /// Adds the next events of the log, all of one stream, if they continue it at
    /// `first_version`; otherwise returns the version they should have started at.
    pub fn push_batch(
        &mut self,
        stream_id: Uuid,
        first_version: u64,
        locations: impl ExactSizeIterator<Item = RecordLocation>,
    ) -> Result<(), u64> {
        let slot = match self.slots.get(&stream_id) {
            Some(&slot) if self.lens[slot as usize] == first_version => slot,
            Some(&slot) => return Err(self.lens[slot as usize]),
            None if first_version == 0 => {
                let slot = u32::try_from(self.lens.len()).expect("fewer than 2^32 streams");
                self.slots.insert(stream_id, slot);
                self.lens.push(0);
                slot
            }
            None => return Err(0),
        };
        let n = locations.len();
        self.lens[slot as usize] += n as u64;
        if n == 1 {
            self.event_slots.push(slot);
        } else {
            self.event_slots.extend(std::iter::repeat_n(slot, n));
        }
        self.records.extend(locations);
        Ok(())
    }

    /// Records the types of the events just pushed, in order.
    pub fn push_types<'t>(&mut self, names: impl Iterator<Item = &'t [u8]>) {
        for name in names {
            self.types.push(name);
        }
    }

    /// The index of everything pushed.
    pub fn build(self) -> Index {
        let IndexBuilder {
            mut records,
            slots,
            lens,
            event_slots,
            mut types,
        } = self;
        types.shrink_to_fit();
        records.shrink_to_fit();
        let mut lists: Vec<Vec<u64>> = lens
            .iter()
            .map(|&n| Vec::with_capacity(n as usize))
            .collect();
        for (position, &slot) in event_slots.iter().enumerate() {
            lists[slot as usize].push(position as u64);
        }
        drop(event_slots);
        let mut streams = StreamMap::with_capacity_and_hasher(slots.len(), slots.hasher().clone());
        for (stream_id, slot) in slots {
            streams.insert(stream_id, std::mem::take(&mut lists[slot as usize]));
        }
        Index {
            records,
            streams,
            types,
        }
    }
}

#[derive(Debug, Default)]
pub struct Index {
    records: Vec<RecordLocation>,
    streams: StreamMap,
    /// Per event: its type id (see `types_table.rs`).
    types: TypeTable,
}

impl Index {
    /// Number of events: the next global position.
    pub fn event_count(&self) -> u64 {
        self.records.len() as u64
    }

    /// The last version of a stream, `None` when it has no events.
    pub fn stream_version(&self, stream_id: &Uuid) -> Option<u64> {
        self.streams.get(stream_id).map(|p| p.len() as u64 - 1)
    }

    /// Adds the next events of the log, all of one stream, if they continue it at
    /// `first_version`; otherwise returns the version they should have started at.
    pub fn push_batch(
        &mut self,
        stream_id: Uuid,
        first_version: u64,
        locations: impl ExactSizeIterator<Item = RecordLocation>,
    ) -> Result<(), u64> {
        let positions = match self.streams.get_mut(&stream_id) {
            Some(p) if p.len() as u64 == first_version => p,
            Some(p) => return Err(p.len() as u64),
            None if first_version == 0 => self.streams.entry(stream_id).or_default(),
            None => return Err(0),
        };
        let first = self.records.len() as u64;
        positions.extend(first..first + locations.len() as u64);
        self.records.extend(locations);
        Ok(())
    }

    /// Records the types of the events just pushed, in order.
    pub fn push_types<'t>(&mut self, names: impl Iterator<Item = &'t [u8]>) {
        for name in names {
            self.types.push(name);
        }
        debug_assert_eq!(self.types.len(), self.event_count());
    }

    /// Positions and locations of up to `max_count` events from position `from` on
    /// that `matcher` selects, examining at most `budget` events (the type-id column,
    /// or the filtered stream's position list; no record is read). Also returns where
    /// the next call should start: past the last match when `max_count` were found,
    /// else past what was examined; never less than `from`.
    pub fn locate_filtered(
        &self,
        from: u64,
        max_count: u64,
        budget: u64,
        matcher: &mut TypeMatch,
    ) -> (Vec<(u64, RecordLocation)>, u64) {
        matcher.update(&self.types);
        let len = self.event_count();
        let mut found = Vec::new();
        if max_count == 0 || from >= len {
            return (found, from);
        }
        let by_type = matcher.filter().selects_types();
        let wanted = max_count.min(budget) as usize;
        let mut take = |p: u64| {
            if !by_type || matcher.matches(self.types.type_id(p)) {
                found.push((p, self.records[p as usize]));
            }
            found.len() >= wanted
        };
        let next = match matcher.filter().stream_id {
            Some(id) => {
                let Some(positions) = self.streams.get(&id) else {
                    return (found, len);
                };
                let first = positions.partition_point(|&p| p < from);
                let rest = &positions[first..];
                let examined = rest.len().min(budget as usize);
                let mut next = if examined == rest.len() {
                    len
                } else {
                    rest[examined]
                };
                for &p in &rest[..examined] {
                    if take(p) {
                        next = p + 1;
                        break;
                    }
                }
                next
            }
            None => {
                let end = len.min(from.saturating_add(budget));
                let mut p = from;
                while p < end {
                    let full = take(p);
                    p += 1;
                    if full {
                        break;
                    }
                }
                p
            }
        };
        (found, next.max(from))
    }

    /// Locations of positions `from..from + max_count`, clipped to the log.
    pub fn locate_range(&self, from: u64, max_count: u64) -> (u64, Vec<RecordLocation>) {
        let len = self.event_count();
        let start = from.min(len);
        let end = start + max_count.min(len - start);
        (start, self.records[start as usize..end as usize].to_vec())
    }

    /// Positions and locations of versions `from_version..from_version + max_count` of
    /// a stream; `None` when the stream has no events.
    pub fn locate_stream(
        &self,
        stream_id: &Uuid,
        from_version: u64,
        max_count: u64,
    ) -> Option<Vec<(u64, RecordLocation)>> {
        let positions = self.streams.get(stream_id)?;
        let len = positions.len() as u64;
        let start = from_version.min(len);
        let end = start + max_count.min(len - start);
        Some(
            positions[start as usize..end as usize]
                .iter()
                .map(|&p| (p, self.records[p as usize]))
                .collect(),
        )
    }

    /// Gives back the slack of the growing vectors (after a scan).
    pub fn shrink_to_fit(&mut self) {
        self.records.shrink_to_fit();
        for positions in self.streams.values_mut() {
            positions.shrink_to_fit();
        }
        self.types.shrink_to_fit();
    }

    pub fn stats(&self) -> IndexStats {
        let per_entry = std::mem::size_of::<(Uuid, Vec<u64>)>() as u64 + 1;
        let lists: u64 = self.streams.values().map(|v| v.capacity() as u64 * 8).sum();
        IndexStats {
            events: self.event_count(),
            streams: self.streams.len() as u64,
            heap_bytes: self.records.capacity() as u64 * 8
                + self.streams.capacity() as u64 * per_entry
                + lists
                + self.types.heap_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_packs_offset_and_length() {
        for (off, len) in [
            (0, 1),
            (32, 77),
            (RecordLocation::MAX_OFFSET, 65536),
            (12345, 300),
        ] {
            let l = RecordLocation::new(off, len);
            assert_eq!((l.offset(), l.size()), (off, len));
            assert_eq!(l.end(), off + len as u64);
        }
    }

    #[test]
    fn ranges_clip_without_allocating_for_huge_counts() {
        let mut ix = Index::default();
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        for i in 0..5u64 {
            let stream = if i % 2 == 0 { a } else { b };
            let version = ix.stream_version(&stream).map_or(0, |v| v + 1);
            let loc = RecordLocation::new(100 * i, 80);
            ix.push_batch(stream, version, std::iter::once(loc))
                .unwrap();
        }
        assert_eq!(ix.locate_range(3, u64::MAX).1.len(), 2);
        assert_eq!(ix.locate_range(9, 4).1.len(), 0);
        let s = ix.locate_stream(&a, 1, u64::MAX).unwrap();
        assert_eq!(s.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 4]);
        assert_eq!(ix.locate_stream(&b, 7, 1).unwrap().len(), 0);
        assert!(ix.locate_stream(&Uuid::from_u128(3), 0, 1).is_none());
        assert_eq!(ix.stream_version(&a), Some(2));
        assert_eq!(ix.stream_version(&b), Some(1));
    }

    #[test]
    fn builder_gives_the_same_index_as_pushing_one_by_one() {
        let mut built = IndexBuilder::default();
        let mut pushed = Index::default();
        let ids = [Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3)];
        let mut versions = [0u64; 3];
        let mut offset = 32;
        for i in 0..40u64 {
            let s = (i * 7 % 3) as usize;
            let n = 1 + i % 3;
            let locs: Vec<_> = (0..n)
                .map(|k| RecordLocation::new(offset + 100 * k, 90))
                .collect();
            assert_eq!(
                built.push_batch(ids[s], versions[s] + 1, locs.iter().copied()),
                Err(versions[s])
            );
            built
                .push_batch(ids[s], versions[s], locs.iter().copied())
                .unwrap();
            pushed
                .push_batch(ids[s], versions[s], locs.iter().copied())
                .unwrap();
            versions[s] += n;
            offset += 100 * n;
        }
        assert_eq!(built.event_count(), pushed.event_count());
        let built = built.build();
        for id in &ids {
            assert_eq!(built.stream_version(id), pushed.stream_version(id));
            assert_eq!(
                built.locate_stream(id, 0, u64::MAX),
                pushed.locate_stream(id, 0, u64::MAX)
            );
        }
        assert_eq!(
            built.locate_range(0, u64::MAX),
            pushed.locate_range(0, u64::MAX)
        );
        assert!(built.stats().heap_bytes <= pushed.stats().heap_bytes);
    }

    #[test]
    fn push_batch_continues_a_stream_or_names_the_version_it_needed() {
        let mut ix = Index::default();
        let a = Uuid::from_u128(1);
        let locs = |n: u32| (0..n).map(|i| RecordLocation::new(100 * u64::from(i), 80));
        assert_eq!(ix.push_batch(a, 1, locs(2)), Err(0));
        assert_eq!(ix.stream_version(&a), None, "a refused batch adds nothing");
        assert_eq!(ix.push_batch(a, 0, locs(2)), Ok(()));
        assert_eq!(ix.push_batch(a, 5, locs(1)), Err(2));
        assert_eq!(ix.push_batch(a, 2, locs(3)), Ok(()));
        assert_eq!(ix.stream_version(&a), Some(4));
        assert_eq!(ix.event_count(), 5);
        let s = ix.locate_stream(&a, 0, u64::MAX).unwrap();
        assert_eq!(
            s.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
    }
}
