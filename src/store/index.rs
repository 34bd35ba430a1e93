//! The in-memory index: where every event's record lies in the file, and which global
//! positions belong to each stream. It holds no payloads: 8 bytes per event for the
//! location, 8 bytes per event in its stream's list, and a map entry per stream.

use std::collections::HashMap;

use uuid::Uuid;

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

#[derive(Debug, Default)]
pub struct Index {
    records: Vec<RecordLocation>,
    streams: HashMap<Uuid, Vec<u64>>,
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

    /// Adds the next event of the log. Positions are implicit: events arrive in order.
    pub fn push(&mut self, stream_id: Uuid, location: RecordLocation) {
        let position = self.records.len() as u64;
        self.records.push(location);
        self.streams.entry(stream_id).or_default().push(position);
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

    pub fn shrink_to_fit(&mut self) {
        self.records.shrink_to_fit();
    }

    pub fn stats(&self) -> IndexStats {
        let per_entry = std::mem::size_of::<(Uuid, Vec<u64>)>() as u64 + 1;
        let lists: u64 = self.streams.values().map(|v| v.capacity() as u64 * 8).sum();
        IndexStats {
            events: self.event_count(),
            streams: self.streams.len() as u64,
            heap_bytes: self.records.capacity() as u64 * 8
                + self.streams.capacity() as u64 * per_entry
                + lists,
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
            ix.push(
                if i % 2 == 0 { a } else { b },
                RecordLocation::new(100 * i, 80),
            );
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
}
