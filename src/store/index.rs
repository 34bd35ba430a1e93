//! The in-memory index: where every event's record lies in the file, which global
//! positions belong to each stream (streams kept in creation order), and which position
//! holds each event id. It holds no payloads: 8 bytes per event for the location, 8
//! bytes per event in its stream's list, 9 to 12 bytes per event in the id table
//! (`ids.rs`), and an entry per stream.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use uuid::Uuid;

use super::ids::{Candidates, IdKeys, IdTable};
use crate::store::types_table::{TypeMatch, TypeTable};

/// Stream id -> the stream's number (its place in creation order).
type StreamMap = HashMap<Uuid, u32, StreamIdHash>;

/// One stream: its id and the global positions of its events.
#[derive(Debug, Default)]
struct StreamEntry {
    id: Uuid,
    positions: Vec<u64>,
}

/// What the index knows about a stream (see `Index::list_streams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    pub stream_id: Uuid,
    /// Its last version; its event count is `last_version + 1`.
    pub last_version: u64,
    pub first_global_position: u64,
    pub last_global_position: u64,
}

/// One stream's share of an append: its id, its first version, its number of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub stream_id: Uuid,
    pub first_version: u64,
    pub count: u64,
}

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
    /// Heap bytes the index holds (capacity, not just length), the id table included.
    pub heap_bytes: u64,
    /// Heap bytes of the event-id table alone.
    pub id_bytes: u64,
}

/// Builds the index of a file being scanned. Instead of pushing every event onto its
/// stream's list as it comes (a scattered write into one of many growing vectors,
/// and the slack of their doubling), it notes each event's stream slot (4 bytes,
/// written in order) and lays the lists out at the end, each allocated at its exact
/// size. Likewise it keeps each event id's hash (8 bytes) and builds the id table once,
/// sized for the count, at the end.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    records: Vec<RecordLocation>,
    slots: HashMap<Uuid, u32, StreamIdHash>,
    /// Per slot: the stream's id and its number of events so far.
    lens: Vec<(Uuid, u64)>,
    /// Per event: its stream's slot.
    event_slots: Vec<u32>,
    /// Per event: its type id.
    types: TypeTable,
    id_keys: IdKeys,
    /// Per event: the keyed hash of its id.
    id_hashes: Vec<u64>,
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
        let n = locations.len() as u64;
        self.push_runs(
            &[Run {
                stream_id,
                first_version,
                count: n,
            }],
            locations,
        )
        .map_err(|(_, v)| v)
    }

    /// Adds the next events of the log, one run per stream, if every run continues its
    /// stream; otherwise adds nothing and returns the first stream that does not
    /// continue and the version it should have started at.
    pub fn push_runs(
        &mut self,
        runs: &[Run],
        locations: impl ExactSizeIterator<Item = RecordLocation>,
    ) -> Result<(), (Uuid, u64)> {
        debug_assert_eq!(
            runs.iter().map(|r| r.count).sum::<u64>(),
            locations.len() as u64
        );
        for r in runs {
            let have = self
                .slots
                .get(&r.stream_id)
                .map_or(0, |&s| self.lens[s as usize].1);
            if have != r.first_version {
                return Err((r.stream_id, have));
            }
        }
        for r in runs {
            let slot = match self.slots.get(&r.stream_id) {
                Some(&slot) => slot,
                None => {
                    let slot = u32::try_from(self.lens.len()).expect("fewer than 2^32 streams");
                    self.slots.insert(r.stream_id, slot);
                    self.lens.push((r.stream_id, 0));
                    slot
                }
            };
            self.lens[slot as usize].1 += r.count;
            if r.count == 1 {
                self.event_slots.push(slot);
            } else {
                self.event_slots
                    .extend(std::iter::repeat_n(slot, r.count as usize));
            }
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

    /// Notes the id of the next event (call once per event, in order, before or after
    /// its batch is pushed; drop the ids of a batch that is not pushed with
    /// [`IndexBuilder::truncate_ids`]).
    #[inline]
    pub fn push_id(&mut self, id: &Uuid) {
        self.id_hashes.push(self.id_keys.hash(id));
    }

    /// Forgets ids noted beyond the events pushed.
    pub fn truncate_ids(&mut self) {
        self.id_hashes.truncate(self.records.len());
    }

    /// The index of everything pushed.
    pub fn build(self) -> Index {
        let IndexBuilder {
            mut records,
            slots,
            lens,
            event_slots,
            mut types,
            id_keys,
            mut id_hashes,
        } = self;
        types.shrink_to_fit();
        records.shrink_to_fit();
        id_hashes.truncate(records.len());
        let ids = IdTable::from_hashes(id_keys, &id_hashes);
        drop(id_hashes);
        // Slots were given out in order of each stream's first event: creation order.
        let mut streams: Vec<StreamEntry> = lens
            .iter()
            .map(|&(id, n)| StreamEntry {
                id,
                positions: Vec::with_capacity(n as usize),
            })
            .collect();
        for (position, &slot) in event_slots.iter().enumerate() {
            streams[slot as usize].positions.push(position as u64);
        }
        drop(event_slots);
        Index {
            records,
            streams,
            by_id: slots,
            ids,
            types,
        }
    }
}

#[derive(Debug, Default)]
pub struct Index {
    records: Vec<RecordLocation>,
    /// Per event: its type id (see `types_table.rs`).
    types: TypeTable,
    /// Streams in creation order.
    streams: Vec<StreamEntry>,
    by_id: StreamMap,
    ids: IdTable,
}

impl Index {
    /// Number of events: the next global position.
    pub fn event_count(&self) -> u64 {
        self.records.len() as u64
    }

    fn stream(&self, stream_id: &Uuid) -> Option<&StreamEntry> {
        self.by_id
            .get(stream_id)
            .map(|&n| &self.streams[n as usize])
    }

    /// The last version of a stream, `None` when it has no events.
    pub fn stream_version(&self, stream_id: &Uuid) -> Option<u64> {
        self.stream(stream_id).map(|s| s.positions.len() as u64 - 1)
    }

    /// Adds the next events of the log, all of one stream, if they continue it at
    /// `first_version`; otherwise returns the version they should have started at.
    /// Adds no event ids (for tests of the other columns): a path that publishes real
    /// events uses [`Index::push_append`] with their ids, or `read_event` and the
    /// idempotency check will not see them.
    pub fn push_batch(
        &mut self,
        stream_id: Uuid,
        first_version: u64,
        locations: impl ExactSizeIterator<Item = RecordLocation>,
    ) -> Result<(), u64> {
        let n = locations.len() as u64;
        self.push_append(
            &[Run {
                stream_id,
                first_version,
                count: n,
            }],
            locations,
            std::iter::empty(),
        )
        .map_err(|(_, v)| v)
    }

    /// Adds the next events of the log (one append: a run per stream, in order) and
    /// their ids, if every run continues its stream; otherwise adds nothing and returns
    /// the first stream that does not continue and the version it needed. The id table
    /// must have room (see [`Index::ids_need_growth`]).
    pub fn push_append(
        &mut self,
        runs: &[Run],
        locations: impl ExactSizeIterator<Item = RecordLocation>,
        ids: impl Iterator<Item = Uuid>,
    ) -> Result<(), (Uuid, u64)> {
        for r in runs {
            let have = self
                .stream(&r.stream_id)
                .map_or(0, |s| s.positions.len() as u64);
            if have != r.first_version {
                return Err((r.stream_id, have));
            }
        }
        for (position, id) in (self.records.len() as u64..).zip(ids) {
            self.ids.insert(&id, position);
        }
        let mut first = self.records.len() as u64;
        for r in runs {
            let n = match self.by_id.get(&r.stream_id) {
                Some(&n) => n,
                None => {
                    let n = u32::try_from(self.streams.len()).expect("fewer than 2^32 streams");
                    self.by_id.insert(r.stream_id, n);
                    self.streams.push(StreamEntry {
                        id: r.stream_id,
                        positions: Vec::new(),
                    });
                    n
                }
            };
            self.streams[n as usize]
                .positions
                .extend(first..first + r.count);
            first += r.count;
        }
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
                let Some(positions) = self.stream(&id).map(|s| &s.positions) else {
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

    /// Where the record at `position` lies, if there is one.
    pub fn location(&self, position: u64) -> Option<RecordLocation> {
        self.records.get(usize::try_from(position).ok()?).copied()
    }

    /// Whether `position` holds the first event of an append. The records of one
    /// batch lie back to back; a batch frame separates them from the next batch's.
    pub fn is_append_start(&self, position: u64) -> bool {
        let p = position as usize;
        match (
            p.checked_sub(1).and_then(|q| self.records.get(q)),
            self.records.get(p),
        ) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(before), Some(here)) => before.end() != here.offset(),
        }
    }

    /// Positions and locations of versions `from_version..from_version + max_count` of
    /// a stream; `None` when the stream has no events.
    pub fn locate_stream(
        &self,
        stream_id: &Uuid,
        from_version: u64,
        max_count: u64,
    ) -> Option<Vec<(u64, RecordLocation)>> {
        let positions = &self.stream(stream_id)?.positions;
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

    /// Positions that may hold the event id `id` (each to be confirmed by reading the
    /// record's id from the file).
    pub fn id_candidates(&self, id: &Uuid) -> Candidates<'_> {
        self.ids.candidates(id)
    }

    /// Whether adding `additional` ids needs a larger id table first.
    pub fn ids_need_growth(&self, additional: usize) -> bool {
        self.ids.needs_growth(additional)
    }

    /// An empty id table (same hash keys) large enough for `total` ids.
    pub fn grown_id_table(&self, total: usize) -> IdTable {
        self.ids.empty_like(self.ids.grown_capacity(total))
    }

    /// Replaces the id table with `table`, which holds the id of every event.
    pub fn replace_ids(&mut self, table: IdTable) {
        debug_assert_eq!(table.len() as u64, self.event_count());
        self.ids = table;
    }

    /// Number of streams with events.
    pub fn stream_count(&self) -> u64 {
        self.streams.len() as u64
    }

    /// Up to `max_count` streams in creation order, from the `from_index`th (0-based).
    pub fn list_streams(&self, from_index: u64, max_count: u64) -> Vec<StreamInfo> {
        let len = self.stream_count();
        let start = from_index.min(len);
        let end = start + max_count.min(len - start);
        self.streams[start as usize..end as usize]
            .iter()
            .map(|s| StreamInfo {
                stream_id: s.id,
                last_version: s.positions.len() as u64 - 1,
                first_global_position: s.positions[0],
                last_global_position: *s.positions.last().expect("a stream has events"),
            })
            .collect()
    }

    /// Gives back the slack of the growing vectors (after a scan).
    pub fn shrink_to_fit(&mut self) {
        self.records.shrink_to_fit();
        for s in &mut self.streams {
            s.positions.shrink_to_fit();
        }
        self.types.shrink_to_fit();
    }

    pub fn stats(&self) -> IndexStats {
        let per_map_entry = std::mem::size_of::<(Uuid, u32)>() as u64 + 1;
        let per_stream = std::mem::size_of::<StreamEntry>() as u64;
        let lists: u64 = self
            .streams
            .iter()
            .map(|s| s.positions.capacity() as u64 * 8)
            .sum();
        let id_bytes = self.ids.heap_bytes();
        IndexStats {
            events: self.event_count(),
            streams: self.stream_count(),
            heap_bytes: self.records.capacity() as u64 * 8
                + self.by_id.capacity() as u64 * per_map_entry
                + self.streams.capacity() as u64 * per_stream
                + lists
                + id_bytes
                + self.types.heap_bytes(),
            id_bytes,
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

    #[test]
    fn a_multi_stream_append_is_pushed_whole_or_not_at_all() {
        let mut ix = Index::default();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let locs =
            |at: u64, n: usize| (0..n).map(move |i| RecordLocation::new(at + 100 * i as u64, 100));
        ix.push_batch(a, 0, locs(32, 1)).unwrap();
        let bad = [
            Run {
                stream_id: b,
                first_version: 0,
                count: 1,
            },
            Run {
                stream_id: a,
                first_version: 5,
                count: 1,
            },
        ];
        assert_eq!(
            ix.push_append(&bad, locs(200, 2), [Uuid::from_u128(7)].into_iter()),
            Err((a, 1))
        );
        assert_eq!(ix.event_count(), 1);
        assert_eq!(ix.stream_version(&b), None);
        assert_eq!(ix.id_candidates(&Uuid::from_u128(7)).count(), 0);
        let good = [
            Run {
                stream_id: b,
                first_version: 0,
                count: 2,
            },
            Run {
                stream_id: a,
                first_version: 1,
                count: 1,
            },
        ];
        let ids = [Uuid::from_u128(7), Uuid::from_u128(8), Uuid::from_u128(9)];
        ix.push_append(&good, locs(200, 3), ids.into_iter())
            .unwrap();
        assert_eq!(ix.id_candidates(&ids[2]).collect::<Vec<_>>(), vec![3]);
        let listed = ix.list_streams(0, u64::MAX);
        assert_eq!(
            listed
                .iter()
                .map(|s| (
                    s.stream_id,
                    s.last_version,
                    s.first_global_position,
                    s.last_global_position
                ))
                .collect::<Vec<_>>(),
            vec![(a, 1, 0, 3), (b, 1, 1, 2)]
        );
        assert_eq!(ix.list_streams(1, 5).len(), 1);
        assert!(ix.list_streams(2, 5).is_empty());
    }

    #[test]
    fn append_starts_are_read_from_the_gaps_between_batches() {
        let mut ix = Index::default();
        let a = Uuid::from_u128(1);
        // Batch 1: records at 76 and 176 (back to back); batch 2 starts after a frame.
        ix.push_batch(
            a,
            0,
            [RecordLocation::new(76, 100), RecordLocation::new(176, 100)].into_iter(),
        )
        .unwrap();
        ix.push_batch(a, 2, [RecordLocation::new(328, 100)].into_iter())
            .unwrap();
        let starts: Vec<bool> = (0..4).map(|p| ix.is_append_start(p)).collect();
        assert_eq!(starts, vec![true, false, true, false]);
    }

    #[test]
    fn the_builder_keeps_creation_order_and_indexes_ids() {
        let mut b = IndexBuilder::default();
        let ids: Vec<Uuid> = (0..3).map(|i| Uuid::from_u128(100 + i)).collect();
        let (s1, s2) = (Uuid::from_u128(9), Uuid::from_u128(3));
        for (k, s) in [s1, s2, s1].iter().enumerate() {
            b.push_id(&ids[k]);
            let v = if k == 2 { 1 } else { 0 };
            b.push_batch(
                *s,
                v,
                [RecordLocation::new(32 + 200 * k as u64, 100)].into_iter(),
            )
            .unwrap();
        }
        b.push_id(&Uuid::from_u128(555));
        b.truncate_ids();
        let ix = b.build();
        let order: Vec<Uuid> = ix.list_streams(0, 9).iter().map(|s| s.stream_id).collect();
        assert_eq!(order, vec![s1, s2]);
        for (p, id) in ids.iter().enumerate() {
            assert_eq!(ix.id_candidates(id).collect::<Vec<_>>(), vec![p as u64]);
        }
        assert_eq!(ix.id_candidates(&Uuid::from_u128(555)).count(), 0);
    }
}
