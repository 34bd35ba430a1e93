//! The index: where every event's record lies in the file, which global positions
//! belong to each stream (streams kept in creation order), each event's type id, and
//! which position holds each event id. It holds no payloads.
//!
//! It is made of *parts* in position order: segments of the index file
//! (`store/ondisk`, read through a bounded page cache) and frozen in-memory parts
//! being written as segments, then the *delta*: in-memory columns for the events after
//! the last checkpoint (8 bytes per event for the location, 8 in its stream's list, 4
//! for its type id, 9 to 12 in the id table plus its 8-byte hash). The stream table
//! (an entry per stream) and the type names are in memory whole. Every lookup goes
//! through the methods here; those that may read the index file are fallible, and a
//! damaged segment is rebuilt from the log in its place (`Index::rebuild`).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use uuid::Uuid;

use super::ids::{IdKeys, IdTable};
use super::ondisk::segment::{RunAt, Segment};
use crate::error::Error;
use crate::store::types_table::{TypeMatch, TypeTable};

/// Stream id -> the stream's number (its place in creation order).
pub(crate) type StreamMap = HashMap<Uuid, u32, StreamIdHash>;

/// One stream of the stream table: its id, event count, first and last position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamMeta {
    pub id: Uuid,
    pub count: u64,
    pub first: u64,
    pub last: u64,
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

    /// The packed word (as the index file stores it).
    pub fn raw(self) -> u64 {
        self.0
    }

    pub fn from_raw(raw: u64) -> RecordLocation {
        RecordLocation(raw)
    }
}

/// Counts that describe the index's footprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    pub events: u64,
    pub streams: u64,
    /// Heap bytes the index holds in memory (capacity, not just length): the stream
    /// table, the type names, the delta, loaded Bloom filters and the page cache.
    pub heap_bytes: u64,
    /// Heap bytes of the event-id lookup alone (the delta's table and hashes, the
    /// loaded Bloom filters).
    pub id_bytes: u64,
}

/// Bytes of a batch's trailer, between its last record and the next batch.
const TRAILER: u64 = crate::codec::BATCH_TRAILER_LEN as u64;
/// The hash noted for an event pushed without its id (tests of other columns).
pub(crate) const NO_ID: u64 = u64::MAX;

/// The events of one stream within a delta.
#[derive(Debug, Clone)]
pub(crate) struct DeltaStream {
    pub number: u32,
    /// The stream's version of its first event here.
    pub first_version: u64,
    pub positions: Vec<u64>,
}

/// In-memory columns of the contiguous positions `base..end()`, covering the log bytes
/// `log_start..log_end()`: the events after the last checkpoint, a part frozen for a
/// checkpoint, or a segment rebuilt from the log.
#[derive(Debug)]
pub(crate) struct Delta {
    pub base: u64,
    pub log_start: u64,
    pub records: Vec<RecordLocation>,
    pub types: Vec<u32>,
    /// Streams in order of their first event here.
    pub streams: Vec<DeltaStream>,
    by_stream: HashMap<u32, u32>,
    pub ids: IdTable,
    /// Per event: the keyed hash of its id (for growing `ids`, and for writing the
    /// segment's Bloom filter).
    pub id_hashes: Vec<u64>,
    /// Whether `id_hashes` was dropped (a large scan at open: 8 bytes per event saved
    /// until its checkpoint); then the table cannot grow (the index freezes the delta
    /// instead) and a checkpoint reads the ids back from the log for the Bloom filter.
    pub hashes_dropped: bool,
    /// The first position of the last append (valid when not empty).
    pub last_append: u64,
}

impl Delta {
    pub fn new(keys: IdKeys, base: u64, log_start: u64) -> Delta {
        Delta {
            base,
            log_start,
            records: Vec::new(),
            types: Vec::new(),
            streams: Vec::new(),
            by_stream: HashMap::new(),
            ids: IdTable::with_keys(keys, 0),
            id_hashes: Vec::new(),
            hashes_dropped: false,
            last_append: base,
        }
    }

    pub fn len(&self) -> u64 {
        self.records.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn end(&self) -> u64 {
        self.base + self.len()
    }

    /// End of the last batch covered.
    pub fn log_end(&self) -> u64 {
        self.records
            .last()
            .map_or(self.log_start, |l| l.end() + TRAILER)
    }

    /// The streams, in stream-number order (a segment's order).
    pub fn sorted_streams(&self) -> Vec<&DeltaStream> {
        let mut v: Vec<&DeltaStream> = self.streams.iter().collect();
        v.sort_unstable_by_key(|s| s.number);
        v
    }

    fn push_run(&mut self, number: u32, first_version: u64, first: u64, count: u64) {
        let i = match self.by_stream.get(&number) {
            Some(&i) => i as usize,
            None => {
                self.by_stream.insert(number, self.streams.len() as u32);
                self.streams.push(DeltaStream {
                    number,
                    first_version,
                    positions: Vec::new(),
                });
                self.streams.len() - 1
            }
        };
        self.streams[i].positions.extend(first..first + count);
    }

    /// Notes the id hashes of the next `n` events (`NO_ID` for those not given),
    /// growing the table first when it needs it: rehashed from `id_hashes`, which the
    /// delta keeps, so no record is read back from the log.
    fn push_ids(&mut self, hashes: impl Iterator<Item = u64>, n: usize) {
        if self.hashes_dropped {
            // The caller froze this delta if it had no room.
            let first = self.end();
            for (i, h) in hashes.take(n).enumerate() {
                self.ids.insert_hash(h, first + i as u64);
            }
            return;
        }
        let at = self.id_hashes.len();
        self.grow_ids(n);
        self.id_hashes.extend(hashes.take(n));
        self.id_hashes.resize(at + n, NO_ID);
        for i in at..at + n {
            let h = self.id_hashes[i];
            if h != NO_ID {
                self.ids.insert_hash(h, self.base + i as u64);
            }
        }
    }

    /// Grows the id table (rehashing the kept hashes) so that `n` more ids fit.
    fn grow_ids(&mut self, n: usize) {
        if self.hashes_dropped || !self.ids.needs_growth(n) {
            return;
        }
        let cap = self.ids.grown_capacity(self.ids.len() + n);
        let mut t = self.ids.empty_like(cap);
        for (i, &h) in self.id_hashes.iter().enumerate() {
            if h != NO_ID {
                t.insert_hash(h, self.base + i as u64);
            }
        }
        self.ids = t;
    }

    pub fn heap_bytes(&self) -> u64 {
        let lists: usize = self
            .streams
            .iter()
            .map(|s| s.positions.capacity() * 8)
            .sum();
        (self.records.capacity() * 8
            + self.types.capacity() * 4
            + self.streams.capacity() * std::mem::size_of::<DeltaStream>()
            + self.by_stream.capacity() * 9
            + lists
            + self.id_hashes.capacity() * 8) as u64
            + self.ids.heap_bytes()
    }

    fn id_bytes(&self) -> u64 {
        self.ids.heap_bytes() + self.id_hashes.capacity() as u64 * 8
    }

    pub fn shrink_to_fit(&mut self) {
        self.records.shrink_to_fit();
        self.types.shrink_to_fit();
        self.id_hashes.shrink_to_fit();
        for s in &mut self.streams {
            s.positions.shrink_to_fit();
        }
    }
}

/// A part of the index before the delta.
#[derive(Debug, Clone)]
pub(crate) enum Part {
    /// A segment of the index file.
    Disk(Arc<Segment>),
    /// Frozen for a checkpoint, not yet written (or its write failed).
    Mem(Arc<Delta>),
}

impl Part {
    pub fn end(&self) -> u64 {
        match self {
            Part::Disk(s) => s.end(),
            Part::Mem(d) => d.end(),
        }
    }
}

/// The log, for rebuilding a damaged segment from the range it covers.
#[derive(Debug)]
pub(crate) struct LogSource {
    pub file: std::fs::File,
    pub salt: u64,
    pub version: u16,
}

/// One part as lookups see it: in memory, or on disk.
#[derive(Clone, Copy)]
enum Src<'a> {
    Mem(&'a Delta),
    Disk(&'a Segment),
}

impl Src<'_> {
    fn first(self) -> u64 {
        match self {
            Src::Mem(d) => d.base,
            Src::Disk(s) => s.first(),
        }
    }

    fn end(self) -> u64 {
        match self {
            Src::Mem(d) => d.end(),
            Src::Disk(s) => s.end(),
        }
    }

    fn locations(self, from: u64, to: u64, out: &mut Vec<RecordLocation>) -> Result<(), Error> {
        match self {
            Src::Mem(d) => {
                out.extend_from_slice(&d.records[(from - d.base) as usize..(to - d.base) as usize]);
                Ok(())
            }
            Src::Disk(s) => s.locations(from, to, out),
        }
    }

    fn location(self, p: u64) -> Result<RecordLocation, Error> {
        match self {
            Src::Mem(d) => Ok(d.records[(p - d.base) as usize]),
            Src::Disk(s) => s.location(p),
        }
    }

    fn types(self, from: u64, to: u64, out: &mut Vec<u32>) -> Result<(), Error> {
        match self {
            Src::Mem(d) => {
                out.extend_from_slice(&d.types[(from - d.base) as usize..(to - d.base) as usize]);
                Ok(())
            }
            Src::Disk(s) => s.types(from, to, out),
        }
    }

    /// A stream's run here (for a delta, `first_entry` is the stream's slot in it).
    fn run(self, number: u32) -> Result<Option<RunAt>, Error> {
        match self {
            Src::Mem(d) => Ok(d.by_stream.get(&number).map(|&i| {
                let s = &d.streams[i as usize];
                RunAt {
                    first_version: s.first_version,
                    count: s.positions.len() as u64,
                    first_entry: u64::from(i),
                }
            })),
            Src::Disk(s) => s.stream_run(number),
        }
    }

    fn entries(
        self,
        run: RunAt,
        from: u64,
        to: u64,
        out: &mut Vec<(u64, u32, RecordLocation)>,
    ) -> Result<(), Error> {
        match self {
            Src::Mem(d) => {
                let s = &d.streams[run.first_entry as usize];
                out.extend(s.positions[from as usize..to as usize].iter().map(|&p| {
                    let i = (p - d.base) as usize;
                    (p, d.types.get(i).copied().unwrap_or(0), d.records[i])
                }));
                Ok(())
            }
            Src::Disk(s) => s.entries(run, from, to, out),
        }
    }

    fn lower_bound(self, run: RunAt, position: u64) -> Result<u64, Error> {
        match self {
            Src::Mem(d) => Ok(d.streams[run.first_entry as usize]
                .positions
                .partition_point(|&p| p < position) as u64),
            Src::Disk(s) => s.lower_bound(run, position),
        }
    }

    fn id_candidates(self, h: u64, out: &mut Vec<u64>) -> Result<(), Error> {
        match self {
            Src::Mem(d) => {
                out.extend(d.ids.candidates_of_hash(h));
                Ok(())
            }
            Src::Disk(s) => s.id_candidates(h, out),
        }
    }
}

/// Events examined per step of a filtered read (bounds its scratch memory).
const FILTER_CHUNK: u64 = 4096;

#[derive(Debug)]
pub struct Index {
    /// Streams in creation order.
    streams: Vec<StreamMeta>,
    by_id: StreamMap,
    /// The distinct type names.
    types: TypeTable,
    keys: IdKeys,
    /// Segments and frozen parts, in position order, before the delta.
    parts: Vec<Part>,
    delta: Delta,
    log: Option<Arc<LogSource>>,
}

impl Default for Index {
    fn default() -> Self {
        Index::empty(IdKeys::default())
    }
}

impl Index {
    /// An empty index whose ids are hashed with `keys`.
    pub(crate) fn empty(keys: IdKeys) -> Index {
        Index {
            streams: Vec::new(),
            by_id: StreamMap::default(),
            types: TypeTable::default(),
            keys,
            parts: Vec::new(),
            delta: Delta::new(keys, 0, crate::codec::FILE_HEADER_LEN as u64),
            log: None,
        }
    }

    /// An index of the segments a manifest lists, with an empty delta after them.
    pub(crate) fn from_parts(
        keys: IdKeys,
        streams: Vec<StreamMeta>,
        types: TypeTable,
        parts: Vec<Part>,
        covered: (u64, u64),
        log: Option<Arc<LogSource>>,
    ) -> Index {
        let mut by_id = StreamMap::default();
        by_id.reserve(streams.len());
        for (n, s) in streams.iter().enumerate() {
            by_id.insert(s.id, n as u32);
        }
        Index {
            streams,
            by_id,
            types,
            keys,
            parts,
            delta: Delta::new(keys, covered.0, covered.1),
            log,
        }
    }

    pub(crate) fn keys(&self) -> IdKeys {
        self.keys
    }

    pub(crate) fn set_log(&mut self, log: Arc<LogSource>) {
        self.log = Some(log);
    }

    pub(crate) fn part_count(&self) -> usize {
        self.parts.len()
    }

    pub(crate) fn log_source(&self) -> Option<Arc<LogSource>> {
        self.log.clone()
    }

    /// The log offset up to which the index file's segments cover the log (the
    /// parts before the first in-memory one).
    pub(crate) fn disk_covered(&self) -> u64 {
        let mut end = crate::codec::FILE_HEADER_LEN as u64;
        for p in &self.parts {
            match p {
                Part::Disk(s) => end = s.meta.log_end,
                Part::Mem(_) => break,
            }
        }
        end
    }

    /// Number of events: the next global position.
    pub fn event_count(&self) -> u64 {
        self.delta.end()
    }

    fn stream(&self, stream_id: &Uuid) -> Option<(u32, &StreamMeta)> {
        self.by_id
            .get(stream_id)
            .map(|&n| (n, &self.streams[n as usize]))
    }

    /// The last version of a stream, `None` when it has no events.
    pub fn stream_version(&self, stream_id: &Uuid) -> Option<u64> {
        self.stream(stream_id).map(|(_, s)| s.count - 1)
    }

    fn nsrc(&self) -> usize {
        self.parts.len() + 1
    }

    fn src(&self, i: usize) -> Src<'_> {
        match self.parts.get(i) {
            None => Src::Mem(&self.delta),
            Some(Part::Mem(d)) => Src::Mem(d),
            Some(Part::Disk(s)) => match s.rebuilt.get() {
                Some(d) => Src::Mem(d),
                None => Src::Disk(s),
            },
        }
    }

    /// The part holding position `p` (`p < event_count()`), or the delta.
    fn find(&self, p: u64) -> usize {
        self.parts.partition_point(|part| part.end() <= p)
    }

    /// Runs `f` on part `i`; when it fails on a segment of the index file (a damaged
    /// page, a short read), rebuilds the segment from the log and runs it again there.
    fn on<R>(&self, i: usize, mut f: impl FnMut(Src<'_>) -> Result<R, Error>) -> Result<R, Error> {
        match self.src(i) {
            Src::Disk(seg) => match f(Src::Disk(seg)) {
                Ok(r) => Ok(r),
                Err(e) => {
                    let d = self.rebuild(seg, e)?;
                    f(Src::Mem(d))
                }
            },
            mem => f(mem),
        }
    }

    /// Rebuilds a segment whose pages failed (`why`) from the log range it covers,
    /// which the log's own checksums verify, and keeps it in the segment's place.
    fn rebuild<'a>(&'a self, seg: &'a Segment, why: Error) -> Result<&'a Delta, Error> {
        crate::log::log(
            crate::log::Level::Warn,
            &format!(
                "the index segment of positions {}..{} is unusable ({why}); rebuilding it \
                 from the log",
                seg.first(),
                seg.end()
            ),
        );
        let Some(log) = &self.log else {
            return Err(why);
        };
        let delta = rebuild_from_log(log, &seg.meta, &self.by_id, &self.types, self.keys)?;
        Ok(seg.rebuilt.get_or_init(|| Arc::new(delta)))
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
    /// the first stream that does not continue and the version it needed.
    pub fn push_append(
        &mut self,
        runs: &[Run],
        locations: impl ExactSizeIterator<Item = RecordLocation>,
        ids: impl Iterator<Item = Uuid>,
    ) -> Result<(), (Uuid, u64)> {
        for r in runs {
            let have = self.stream_version(&r.stream_id).map_or(0, |v| v + 1);
            if have != r.first_version {
                return Err((r.stream_id, have));
            }
        }
        let first = self.event_count();
        let n = locations.len();
        self.make_room_for_ids(n);
        let keys = self.keys;
        self.delta.push_ids(ids.map(|id| keys.hash(&id)), n);
        let mut position = first;
        for r in runs {
            let number = self.number_of(r.stream_id, position);
            let meta = &mut self.streams[number as usize];
            meta.count += r.count;
            meta.last = position + r.count - 1;
            self.delta
                .push_run(number, r.first_version, position, r.count);
            position += r.count;
        }
        self.delta.records.extend(locations);
        self.delta.last_append = first;
        Ok(())
    }

    /// Before `n` more ids go into the delta: a delta without its hashes cannot grow
    /// its table, so it becomes a part (written by the next checkpoint) and a new delta
    /// takes the append.
    fn make_room_for_ids(&mut self, n: usize) {
        if self.delta.hashes_dropped && self.delta.ids.needs_growth(n) {
            let first = self.event_count();
            let log_end = self.delta.log_end();
            let old = std::mem::replace(&mut self.delta, Delta::new(self.keys, first, log_end));
            self.parts.push(Part::Mem(Arc::new(old)));
        }
    }

    /// [`Index::push_append`] for a whole group of appends, in order: append `k` has
    /// the runs `runs[ends[k - 1]..ends[k]]` (from 0 for the first); `locations` and
    /// `ids` are every event's of the group. The caller has checked every run against
    /// this index and the runs before it (the writer does, under its lock, with nothing
    /// appended since), so nothing is checked again but in debug builds. The streams'
    /// numbers are looked up in one loop first: with many streams each lookup misses
    /// the cache, and independent lookups overlap their misses where lookups between
    /// the updates of each append wait for each in turn.
    pub fn push_appends(
        &mut self,
        runs: &[Run],
        ends: &[usize],
        locations: &[RecordLocation],
        ids: impl Iterator<Item = Uuid>,
    ) {
        let first = self.event_count();
        let n = locations.len();
        if n == 0 {
            return;
        }
        self.make_room_for_ids(n);
        let keys = self.keys;
        self.delta.push_ids(ids.map(|id| keys.hash(&id)), n);
        let known: Vec<Option<u32>> = runs
            .iter()
            .map(|r| self.by_id.get(&r.stream_id).copied())
            .collect();
        let mut position = first;
        let mut last_append = first;
        let mut start = 0;
        for &end in ends {
            last_append = position;
            for (r, &number) in runs[start..end].iter().zip(&known[start..end]) {
                // A stream new to the index may have appeared earlier in the group.
                let number = number.unwrap_or_else(|| self.number_of(r.stream_id, position));
                let meta = &mut self.streams[number as usize];
                debug_assert_eq!(meta.count, r.first_version, "checked by the writer");
                meta.count += r.count;
                meta.last = position + r.count - 1;
                self.delta
                    .push_run(number, r.first_version, position, r.count);
                position += r.count;
            }
            start = end;
        }
        debug_assert_eq!(position - first, n as u64);
        self.delta.records.extend_from_slice(locations);
        self.delta.last_append = last_append;
    }

    /// The number of a stream, made for it (first event at `first`) if it is new.
    fn number_of(&mut self, id: Uuid, first: u64) -> u32 {
        match self.by_id.get(&id) {
            Some(&n) => n,
            None => {
                let n = u32::try_from(self.streams.len()).expect("fewer than 2^32 streams");
                self.by_id.insert(id, n);
                self.streams.push(StreamMeta {
                    id,
                    count: 0,
                    first,
                    last: first,
                });
                n
            }
        }
    }

    /// Makes room in the delta's id table (and its hashes) for `additional` more ids
    /// at once (`Store::reserve`).
    pub(crate) fn reserve_ids(&mut self, additional: usize) {
        if self.delta.hashes_dropped {
            return;
        }
        self.delta.grow_ids(additional);
        self.delta.id_hashes.reserve(additional);
    }

    /// Records the types of the events just pushed, in order.
    pub fn push_types<'t>(&mut self, names: impl Iterator<Item = &'t [u8]>) {
        for name in names {
            let t = self.types.intern(name);
            self.delta.types.push(t);
        }
        debug_assert_eq!(self.delta.types.len(), self.delta.records.len());
    }

    /// Positions and locations of up to `max_count` events from position `from` on
    /// that `matcher` selects, examining at most `budget` events (the type-id column,
    /// or the filtered stream's entries; no record is read). Also returns where the
    /// next call should start: past the last match when `max_count` were found, else
    /// past what was examined; never less than `from`.
    pub fn locate_filtered(
        &self,
        from: u64,
        max_count: u64,
        budget: u64,
        matcher: &mut TypeMatch,
    ) -> Result<(Vec<(u64, RecordLocation)>, u64), Error> {
        matcher.update(&self.types);
        let len = self.event_count();
        let mut found = Vec::new();
        if max_count == 0 || from >= len {
            return Ok((found, from));
        }
        let by_type = matcher.filter().selects_types();
        let wanted = max_count.min(budget) as usize;
        let next = match matcher.filter().stream_id {
            Some(id) => {
                let Some((number, meta)) = self.stream(&id) else {
                    return Ok((found, len));
                };
                let mut left = budget;
                let mut next = len;
                let mut scratch = Vec::new();
                'parts: for i in self.find(from.max(meta.first))..self.nsrc() {
                    if left == 0 {
                        break;
                    }
                    let src = self.src(i);
                    if src.first() > meta.last {
                        break;
                    }
                    // The run is looked up inside each closure, so that a retry on
                    // the rebuilt part uses that part's run.
                    let Some((count, mut k)) = self.on(i, |s| {
                        Ok(match s.run(number)? {
                            Some(r) => Some((r.count, s.lower_bound(r, from)?)),
                            None => None,
                        })
                    })?
                    else {
                        continue;
                    };
                    while k < count {
                        if left == 0 {
                            // Examined the budget: continue at the next entry.
                            self.on(i, |s| {
                                scratch.clear();
                                let r = s.run(number)?.ok_or_else(|| vanished(number))?;
                                s.entries(r, k, k + 1, &mut scratch)
                            })?;
                            next = scratch[0].0;
                            break 'parts;
                        }
                        let to = count.min(k + FILTER_CHUNK.min(left));
                        self.on(i, |s| {
                            scratch.clear();
                            let r = s.run(number)?.ok_or_else(|| vanished(number))?;
                            if r.count != count {
                                return Err(vanished(number));
                            }
                            s.entries(r, k, to, &mut scratch)
                        })?;
                        for &(p, t, loc) in &scratch {
                            left -= 1;
                            k += 1;
                            if !by_type || matcher.matches(t) {
                                found.push((p, loc));
                                if found.len() >= wanted {
                                    next = p + 1;
                                    break 'parts;
                                }
                            }
                            if left == 0 {
                                break;
                            }
                        }
                    }
                }
                next
            }
            None => {
                let end = len.min(from.saturating_add(budget));
                let mut p = from;
                let mut types = Vec::new();
                let mut locs = Vec::new();
                'all: while p < end {
                    let i = self.find(p);
                    let to = end.min(self.src(i).end()).min(p + FILTER_CHUNK);
                    if !by_type {
                        let take = (to - p).min((wanted - found.len()) as u64);
                        self.on(i, |s| {
                            locs.clear();
                            s.locations(p, p + take, &mut locs)
                        })?;
                        found.extend(locs.iter().enumerate().map(|(k, &l)| (p + k as u64, l)));
                        p += take;
                        if found.len() >= wanted {
                            break 'all;
                        }
                        continue;
                    }
                    self.on(i, |s| {
                        types.clear();
                        s.types(p, to, &mut types)
                    })?;
                    for (k, &t) in types.iter().enumerate() {
                        if matcher.matches(t) {
                            let q = p + k as u64;
                            let loc = self.on(i, |s| s.location(q))?;
                            found.push((q, loc));
                            if found.len() >= wanted {
                                p = q + 1;
                                break 'all;
                            }
                        }
                    }
                    p = to;
                }
                p
            }
        };
        Ok((found, next.max(from)))
    }

    /// Locations of positions `from..from + max_count`, clipped to the log.
    pub fn locate_range(
        &self,
        from: u64,
        max_count: u64,
    ) -> Result<(u64, Vec<RecordLocation>), Error> {
        let len = self.event_count();
        let start = from.min(len);
        let end = start + max_count.min(len - start);
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut p = start;
        while p < end {
            let i = self.find(p);
            let to = end.min(self.src(i).end());
            let mark = out.len();
            self.on(i, |s| {
                out.truncate(mark);
                s.locations(p, to, &mut out)
            })?;
            p = to;
        }
        Ok((start, out))
    }

    /// Where the record at `position` lies, if there is one.
    pub fn location(&self, position: u64) -> Result<Option<RecordLocation>, Error> {
        if position >= self.event_count() {
            return Ok(None);
        }
        let i = self.find(position);
        self.on(i, |s| s.location(position)).map(Some)
    }

    /// Whether `position` holds the first event of an append. The records of one
    /// batch lie back to back; a batch frame separates them from the next batch's.
    pub fn is_append_start(&self, position: u64) -> Result<bool, Error> {
        let Some(here) = self.location(position)? else {
            return Ok(false);
        };
        Ok(match position.checked_sub(1) {
            None => true,
            Some(q) => self.location(q)?.expect("q < position").end() != here.offset(),
        })
    }

    /// Positions and locations of versions `from_version..from_version + max_count` of
    /// a stream; `None` when the stream has no events.
    pub fn locate_stream(
        &self,
        stream_id: &Uuid,
        from_version: u64,
        max_count: u64,
    ) -> Result<Option<Vec<(u64, RecordLocation)>>, Error> {
        let Some((number, meta)) = self.stream(stream_id) else {
            return Ok(None);
        };
        let len = meta.count;
        let start = from_version.min(len);
        let end = start + max_count.min(len - start);
        let mut out = Vec::with_capacity((end - start) as usize);
        if start == end {
            return Ok(Some(out));
        }
        let mut scratch = Vec::new();
        // The stream's runs must tile its versions from 0, part after part: a run that
        // does not continue the last (a page that checks out but disagrees, which only
        // a bug or a forged file can give) is damage of that part, rebuilt from the log.
        let mut version = 0u64;
        for i in self.find(meta.first)..self.nsrc() {
            if self.src(i).first() > meta.last || out.len() as u64 == end - start {
                break;
            }
            // One closure for the run and its entries: a retry on the rebuilt part
            // looks the run up again there.
            let found = self.on(i, |s| {
                scratch.clear();
                let Some(r) = s.run(number)? else {
                    return Ok(None);
                };
                if r.first_version != version || r.count > len - version {
                    return Err(Error::CorruptRecord {
                        position: s.first(),
                        offset: 0,
                        detail: format!(
                            "index: stream {stream_id} has versions {}.. here, expected {version}..",
                            r.first_version
                        ),
                    });
                }
                let (lo, hi) = (r.first_version, r.first_version + r.count);
                if hi > start {
                    let (a, b) = (start.max(lo) - lo, end.min(hi) - lo);
                    s.entries(r, a, b, &mut scratch)?;
                }
                Ok(Some(hi))
            })?;
            if let Some(hi) = found {
                version = hi;
                out.extend(scratch.iter().map(|&(p, _, l)| (p, l)));
            }
        }
        if out.len() as u64 != end - start {
            return Err(Error::CorruptRecord {
                position: meta.first,
                offset: 0,
                detail: format!(
                    "index: found {} of the {} events asked of stream {stream_id}",
                    out.len(),
                    end - start
                ),
            });
        }
        Ok(Some(out))
    }

    /// Positions that may hold the event id `id`, in position order (each to be
    /// confirmed by reading the record's id from the file).
    pub fn id_candidates(&self, id: &Uuid) -> Result<Vec<u64>, Error> {
        let h = self.keys.hash(id);
        let mut out = Vec::new();
        for i in (0..self.nsrc()).rev() {
            let mark = out.len();
            self.on(i, |s| {
                out.truncate(mark);
                s.id_candidates(h, &mut out)
            })?;
        }
        out.sort_unstable();
        Ok(out)
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
                last_version: s.count - 1,
                first_global_position: s.first,
                last_global_position: s.last,
            })
            .collect()
    }

    /// Gives back the slack of the growing vectors (after a scan).
    pub fn shrink_to_fit(&mut self) {
        self.delta.shrink_to_fit();
        self.streams.shrink_to_fit();
        self.types.shrink_to_fit();
    }

    pub fn stats(&self) -> IndexStats {
        let per_map_entry = std::mem::size_of::<(Uuid, u32)>() as u64 + 1;
        let mut heap = self.streams.capacity() as u64 * std::mem::size_of::<StreamMeta>() as u64
            + self.by_id.capacity() as u64 * per_map_entry
            + self.types.heap_bytes()
            + self.delta.heap_bytes();
        let mut id_bytes = self.delta.id_bytes();
        let mut files: Vec<*const super::ondisk::cache::IndexFile> = Vec::new();
        for p in &self.parts {
            match p {
                Part::Mem(d) => {
                    heap += d.heap_bytes();
                    id_bytes += d.id_bytes();
                }
                Part::Disk(s) => {
                    heap += s.heap_bytes();
                    id_bytes += s.bloom_bytes();
                    let f = Arc::as_ptr(&s.file);
                    if !files.contains(&f) {
                        files.push(f);
                        heap += s.file.cached_bytes();
                    }
                }
            }
        }
        IndexStats {
            events: self.event_count(),
            streams: self.stream_count(),
            heap_bytes: heap,
            id_bytes,
        }
    }

    // ---- checkpoints (`store/ondisk/checkpoint.rs`) ----

    /// End of the last batch the index holds: where the acknowledged log ends.
    pub fn log_end(&self) -> u64 {
        self.delta.log_end()
    }

    /// Log bytes the delta covers: what a checkpoint would take off the next open.
    pub(crate) fn delta_log_bytes(&self) -> u64 {
        self.delta.log_end() - self.delta.log_start
    }

    /// Log bytes the in-memory parts and the delta cover (not yet in a segment).
    pub(crate) fn unwritten_log_bytes(&self) -> u64 {
        let frozen: u64 = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Mem(d) => d.log_end() - d.log_start,
                Part::Disk(s) => match s.rebuilt.get() {
                    Some(_) => s.meta.log_end - s.meta.log_start,
                    None => 0,
                },
            })
            .sum();
        frozen + self.delta_log_bytes()
    }

    /// Freezes the delta as a part (appends go on into a new, empty delta) and returns
    /// what a manifest covering it needs; `None` when the delta is empty.
    pub(crate) fn freeze(&mut self) -> Option<Frozen> {
        if self.delta.is_empty() {
            return None;
        }
        let (end, log_end) = (self.delta.end(), self.delta.log_end());
        let last_start = last_batch_start(&self.delta);
        let mut frozen = std::mem::replace(&mut self.delta, Delta::new(self.keys, end, log_end));
        frozen.shrink_to_fit();
        self.parts.push(Part::Mem(Arc::new(frozen)));
        Some(Frozen {
            merged: Vec::new(),
            parts: self.parts.clone(),
            streams: self.streams.clone(),
            types: self.types.names().to_vec(),
            events: end,
            covered: log_end,
            last_batch_start: Some(last_start),
        })
    }

    /// The parts as they are now, for a checkpoint that rewrites frozen or rebuilt
    /// parts while the delta is empty (so the stream table is as of their end).
    pub(crate) fn snapshot(&self) -> Option<Frozen> {
        if !self.delta.is_empty() {
            return None;
        }
        let last = self.parts.last()?;
        let last_batch_start = match last {
            Part::Mem(d) => Some(last_batch_start(d)),
            Part::Disk(s) => s.rebuilt.get().map(|d| last_batch_start(d)),
        };
        Some(Frozen {
            merged: Vec::new(),
            parts: self.parts.clone(),
            streams: self.streams.clone(),
            types: self.types.names().to_vec(),
            events: last.end(),
            covered: part_log_end(last),
            last_batch_start,
        })
    }

    /// Puts written segments in the place of the parts they were written from: one
    /// part, or the adjacent parts a merge replaced (matched by identity; parts that
    /// changed meanwhile are left as they are).
    pub(crate) fn install(&mut self, written: &[super::ondisk::Written]) {
        for (from, seg) in written {
            let Some(at) = self.parts.iter().position(|p| same_part(p, &from[0])) else {
                continue;
            };
            let whole = at + from.len() <= self.parts.len()
                && from
                    .iter()
                    .zip(&self.parts[at..])
                    .all(|(a, b)| same_part(a, b));
            if whole {
                self.parts
                    .splice(at..at + from.len(), [Part::Disk(Arc::clone(seg))]);
            }
        }
    }

    /// What rebuilding a range from the log needs, copied (a merge runs without the
    /// index's lock).
    pub(crate) fn merge_context(&self) -> (StreamMap, TypeTable) {
        (self.by_id.clone(), self.types.clone())
    }
}

fn same_part(a: &Part, b: &Part) -> bool {
    match (a, b) {
        (Part::Mem(a), Part::Mem(b)) => Arc::ptr_eq(a, b),
        (Part::Disk(a), Part::Disk(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

/// A stream's run that a part gave before and not on a retry (rebuilt part).
fn vanished(number: u32) -> Error {
    Error::CorruptRecord {
        position: 0,
        offset: 0,
        detail: format!("index: stream number {number} changed its run in a part"),
    }
}

fn part_log_end(p: &Part) -> u64 {
    match p {
        Part::Disk(s) => s.meta.log_end,
        Part::Mem(d) => d.log_end(),
    }
}

/// What a checkpoint writes: the parts (frozen ones to write as segments), and the
/// stream table and type names as of the covered offset.
pub(crate) struct Frozen {
    pub parts: Vec<Part>,
    /// In-memory parts that merge adjacent segments, and the parts they replace.
    pub merged: Vec<(Arc<Delta>, Vec<Part>)>,
    pub streams: Vec<StreamMeta>,
    pub types: Vec<Box<[u8]>>,
    pub events: u64,
    pub covered: u64,
    /// Where the last covered batch starts (`None`: that of the last manifest).
    pub last_batch_start: Option<u64>,
}

/// Where the last batch of a non-empty part starts: its first record follows the
/// batch header.
fn last_batch_start(d: &Delta) -> u64 {
    d.records[(d.last_append - d.base) as usize].offset() - crate::codec::BATCH_HEADER_LEN as u64
}

/// Rebuilds the columns of the positions and log range a segment covers from the log.
pub(crate) fn rebuild_from_log(
    log: &LogSource,
    meta: &super::ondisk::format::SegmentMeta,
    by_id: &StreamMap,
    types: &TypeTable,
    keys: IdKeys,
) -> Result<Delta, Error> {
    let mut sink = RebuildSink {
        by_id,
        types,
        keys,
        delta: Delta::new(keys, meta.first, meta.log_start),
        next: HashMap::new(),
        hashes: Vec::new(),
        unknown_type: false,
    };
    let scanned = super::recovery::scan_into(
        &log.file,
        meta.log_end,
        log.salt,
        log.version,
        meta.log_start,
        None,
        &mut sink,
    )?;
    let n = sink.delta.len();
    if scanned.end != meta.log_end || n != meta.count || sink.unknown_type {
        return Err(Error::CorruptRecord {
            position: meta.first + n,
            offset: scanned.end,
            detail: format!(
                "rebuilding the index of log bytes {}..{} from the log found {n} events \
                 ending at {} ({}), expected {} ending at {}",
                meta.log_start,
                meta.log_end,
                scanned.end,
                scanned.torn_tail.unwrap_or_else(|| "no damage".into()),
                meta.count,
                meta.log_end
            ),
        });
    }
    let mut d = sink.delta;
    d.ids = IdTable::from_hashes_at(keys, &sink.hashes, meta.first, sink.hashes.len());
    d.id_hashes = sink.hashes;
    d.shrink_to_fit();
    Ok(d)
}

struct RebuildSink<'a> {
    by_id: &'a StreamMap,
    types: &'a TypeTable,
    keys: IdKeys,
    delta: Delta,
    next: HashMap<u32, u64>,
    hashes: Vec<u64>,
    unknown_type: bool,
}

impl super::recovery::Sink for RebuildSink<'_> {
    fn event_count(&self) -> u64 {
        self.delta.end()
    }
    fn push_id(&mut self, id: &Uuid) {
        self.hashes.push(self.keys.hash(id));
    }
    fn truncate_ids(&mut self) {
        self.hashes.truncate(self.delta.records.len());
    }
    fn push_runs(&mut self, runs: &[Run], locations: &[RecordLocation]) -> Result<(), (Uuid, u64)> {
        let mut numbers = Vec::with_capacity(runs.len());
        for r in runs {
            let Some(&n) = self.by_id.get(&r.stream_id) else {
                return Err((r.stream_id, 0));
            };
            if let Some(&v) = self.next.get(&n) {
                if v != r.first_version {
                    return Err((r.stream_id, v));
                }
            }
            numbers.push(n);
        }
        let mut p = self.delta.end();
        if !runs.is_empty() {
            self.delta.last_append = p;
        }
        for (r, n) in runs.iter().zip(numbers) {
            self.next.insert(n, r.first_version + r.count);
            self.delta.push_run(n, r.first_version, p, r.count);
            p += r.count;
        }
        self.delta.records.extend_from_slice(locations);
        Ok(())
    }
    fn push_types<'t>(&mut self, names: impl Iterator<Item = &'t [u8]>) {
        for name in names {
            match self.types.lookup(name) {
                Some(t) => self.delta.types.push(t),
                None => {
                    self.unknown_type = true;
                    self.delta.types.push(0);
                }
            }
        }
    }
}

/// Builds the index of a log being scanned, on top of what an index file already
/// covers (`IndexBuilder::on`) or from nothing. Instead of pushing every event onto
/// its stream's list as it comes (a scattered write into one of many growing vectors,
/// and the slack of their doubling), it notes each event's stream slot (4 bytes,
/// written in order) and lays the lists out at the end, each allocated at its exact
/// size. Likewise it keeps each event id's hash (8 bytes) and builds the id table once,
/// sized for the count, at the end.
#[derive(Debug)]
pub struct IndexBuilder {
    base: Index,
    slots: HashMap<Uuid, u32, StreamIdHash>,
    /// Per slot: the stream's id, its version before the scan, its next version.
    lens: Vec<(Uuid, u64, u64)>,
    /// Per event: its stream's slot.
    event_slots: Vec<u32>,
    records: Vec<RecordLocation>,
    /// Per event: its type id.
    type_col: Vec<u32>,
    /// Per event: the keyed hash of its id.
    id_hashes: Vec<u64>,
    last_append: u64,
    /// A scan of more events than this drops their id hashes once the table is built.
    keep_hashes: usize,
}

/// Scans of more events keep no id hashes in their delta (see `Delta::hashes_dropped`).
pub(crate) const KEEP_HASHES: usize = 1 << 16;

impl Default for IndexBuilder {
    fn default() -> Self {
        IndexBuilder::on(Index::default())
    }
}

impl IndexBuilder {
    /// A builder that extends `base` (whose delta is empty) with the events scanned.
    pub(crate) fn on(base: Index) -> IndexBuilder {
        debug_assert!(base.delta.is_empty());
        IndexBuilder {
            last_append: base.event_count(),
            base,
            slots: HashMap::default(),
            lens: Vec::new(),
            event_slots: Vec::new(),
            records: Vec::new(),
            type_col: Vec::new(),
            id_hashes: Vec::new(),
            keep_hashes: KEEP_HASHES,
        }
    }

    /// Keeps the id hashes of at most `n` scanned events (tests).
    pub(crate) fn keep_hashes(mut self, n: usize) -> Self {
        self.keep_hashes = n;
        self
    }

    /// Number of events so far: the next global position.
    pub fn event_count(&self) -> u64 {
        self.base.event_count() + self.records.len() as u64
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
            let have = match self.slots.get(&r.stream_id) {
                Some(&s) => self.lens[s as usize].2,
                None => self.base.stream_version(&r.stream_id).map_or(0, |v| v + 1),
            };
            if have != r.first_version {
                return Err((r.stream_id, have));
            }
        }
        self.last_append = self.event_count();
        for r in runs {
            let slot = match self.slots.get(&r.stream_id) {
                Some(&slot) => slot,
                None => {
                    let slot = u32::try_from(self.lens.len()).expect("fewer than 2^32 streams");
                    self.slots.insert(r.stream_id, slot);
                    self.lens
                        .push((r.stream_id, r.first_version, r.first_version));
                    slot
                }
            };
            self.lens[slot as usize].2 += r.count;
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
            let t = self.base.types.intern(name);
            self.type_col.push(t);
        }
    }

    /// Notes the id of the next event (call once per event, in order, before or after
    /// its batch is pushed; drop the ids of a batch that is not pushed with
    /// [`IndexBuilder::truncate_ids`]).
    #[inline]
    pub fn push_id(&mut self, id: &Uuid) {
        self.id_hashes.push(self.base.keys.hash(id));
    }

    /// Forgets ids noted beyond the events pushed.
    pub fn truncate_ids(&mut self) {
        self.id_hashes.truncate(self.records.len());
    }

    /// The index of everything pushed.
    pub fn build(self) -> Index {
        let IndexBuilder {
            base: mut ix,
            slots: _,
            lens,
            event_slots,
            mut records,
            mut type_col,
            mut id_hashes,
            last_append,
            keep_hashes,
        } = self;
        let base = ix.delta.base;
        records.shrink_to_fit();
        type_col.shrink_to_fit();
        id_hashes.truncate(records.len());
        id_hashes.shrink_to_fit();
        let keys = ix.keys;
        // Slots were given out in order of each stream's first event here: streams new
        // here get their numbers in creation order.
        let mut lists: Vec<Vec<u64>> = lens
            .iter()
            .map(|&(_, from, to)| Vec::with_capacity((to - from) as usize))
            .collect();
        for (i, &slot) in event_slots.iter().enumerate() {
            lists[slot as usize].push(base + i as u64);
        }
        drop(event_slots);
        let mut delta = Delta::new(keys, base, ix.delta.log_start);
        for ((id, from, to), positions) in lens.into_iter().zip(lists) {
            let number = ix.number_of(id, positions[0]);
            let meta = &mut ix.streams[number as usize];
            meta.count = to;
            meta.last = *positions.last().expect("a slot has events");
            delta.by_stream.insert(number, delta.streams.len() as u32);
            delta.streams.push(DeltaStream {
                number,
                first_version: from,
                positions,
            });
        }
        delta.ids = IdTable::from_hashes_at(keys, &id_hashes, base, id_hashes.len());
        if id_hashes.len() > keep_hashes {
            delta.hashes_dropped = true;
            drop(id_hashes);
        } else {
            delta.id_hashes = id_hashes;
        }
        delta.records = records;
        delta.types = type_col;
        delta.last_append = last_append;
        ix.delta = delta;
        ix.streams.shrink_to_fit();
        ix.types.shrink_to_fit();
        ix
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
        assert_eq!(ix.locate_range(3, u64::MAX).unwrap().1.len(), 2);
        assert_eq!(ix.locate_range(9, 4).unwrap().1.len(), 0);
        let s = ix.locate_stream(&a, 1, u64::MAX).unwrap().unwrap();
        assert_eq!(s.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 4]);
        assert_eq!(ix.locate_stream(&b, 7, 1).unwrap().unwrap().len(), 0);
        assert!(ix
            .locate_stream(&Uuid::from_u128(3), 0, 1)
            .unwrap()
            .is_none());
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
                built.locate_stream(id, 0, u64::MAX).unwrap(),
                pushed.locate_stream(id, 0, u64::MAX).unwrap()
            );
        }
        assert_eq!(
            built.locate_range(0, u64::MAX).unwrap(),
            pushed.locate_range(0, u64::MAX).unwrap()
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
        let s = ix.locate_stream(&a, 0, u64::MAX).unwrap().unwrap();
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
        assert_eq!(ix.id_candidates(&Uuid::from_u128(7)).unwrap().len(), 0);
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
        assert_eq!(ix.id_candidates(&ids[2]).unwrap(), vec![3]);
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
        let starts: Vec<bool> = (0..4).map(|p| ix.is_append_start(p).unwrap()).collect();
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
            assert_eq!(ix.id_candidates(id).unwrap(), vec![p as u64]);
        }
        assert_eq!(ix.id_candidates(&Uuid::from_u128(555)).unwrap().len(), 0);
    }
}
