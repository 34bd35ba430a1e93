//! The bytes of the index file `<path>-index` (`docs/format.md`, "The index file"):
//! pages sealed with a CRC seeded with the log's salt and the page's own offset, the
//! header page, the manifest, and the hashes that place ids in a segment's id slots and
//! Bloom filter.

use uuid::Uuid;

use crate::store::ids::IdKeys;

pub const PAGE: usize = 4096;
/// Payload bytes of a page (kind and CRC follow).
pub const PAYLOAD: usize = 4088;
pub const MAGIC: [u8; 8] = *b"EVSTIDX\0";
pub const LAYOUT_VERSION: u32 = 1;

/// What a page holds; a page read as another kind is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    Header = 1,
    Locations = 2,
    Types = 3,
    Entries = 4,
    Directory = 5,
    IdSlots = 6,
    Bloom = 7,
    Manifest = 8,
    ManifestMore = 9,
}

/// Entries per page of each column.
pub const LOCATIONS_PER_PAGE: u64 = 511;
pub const TYPES_PER_PAGE: u64 = 1022;
pub const ENTRIES_PER_PAGE: u64 = 255;
pub const ENTRY_LEN: usize = 16;
pub const DIR_PER_PAGE: u64 = 127;
pub const DIR_LEN: usize = 32;
pub const SLOTS_PER_PAGE: u64 = 511;
pub const BLOCKS_PER_PAGE: u64 = 63;
pub const BLOCK_LEN: usize = 64;

/// Pages a column of `n` entries takes.
pub fn pages_for(n: u64, per_page: u64) -> u64 {
    n.div_ceil(per_page)
}

fn page_crc(salt: u64, offset: u64, page: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    h.update(&offset.to_le_bytes());
    h.update(&page[..PAGE - 4]);
    h.finalize()
}

/// Writes the kind and the CRC of a page that will lie at `offset`.
pub fn seal(page: &mut [u8], kind: Kind, salt: u64, offset: u64) {
    debug_assert_eq!(page.len(), PAGE);
    page[PAYLOAD..PAYLOAD + 4].copy_from_slice(&(kind as u32).to_le_bytes());
    let crc = page_crc(salt, offset, page);
    page[PAGE - 4..].copy_from_slice(&crc.to_le_bytes());
}

/// Why a page was refused.
pub fn check(page: &[u8], kind: Kind, salt: u64, offset: u64) -> Result<(), String> {
    if page.len() != PAGE {
        return Err(format!(
            "index page at byte offset {offset} is short ({} bytes)",
            page.len()
        ));
    }
    if le_u32(page, PAGE - 4) != page_crc(salt, offset, page) {
        return Err(format!(
            "index page at byte offset {offset}: checksum mismatch"
        ));
    }
    let found = le_u32(page, PAYLOAD);
    if found != kind as u32 {
        return Err(format!(
            "index page at byte offset {offset} is of kind {found}, expected {}",
            kind as u32
        ));
    }
    Ok(())
}

pub fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The header page for a log with `salt`, ids hashed with `keys`.
pub fn header_page(salt: u64, keys: IdKeys) -> Vec<u8> {
    let mut p = vec![0u8; PAGE];
    p[..8].copy_from_slice(&MAGIC);
    p[8..12].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
    p[12..16].copy_from_slice(&(PAGE as u32).to_le_bytes());
    p[16..24].copy_from_slice(&salt.to_le_bytes());
    let (k0, k1) = keys.parts();
    p[24..32].copy_from_slice(&k0.to_le_bytes());
    p[32..40].copy_from_slice(&k1.to_le_bytes());
    seal(&mut p, Kind::Header, salt, 0);
    p
}

/// The id keys of a header page that checks out for a log with `salt`.
pub fn read_header_page(page: &[u8], salt: u64) -> Result<IdKeys, String> {
    check(page, Kind::Header, salt, 0)?;
    if page[..8] != MAGIC {
        return Err("not an index file (magic)".into());
    }
    if le_u32(page, 8) != LAYOUT_VERSION || le_u32(page, 12) != PAGE as u32 {
        return Err(format!(
            "index layout version {} / page size {} not supported",
            le_u32(page, 8),
            le_u32(page, 12)
        ));
    }
    if le_u64(page, 16) != salt {
        return Err("the index belongs to another store (salt)".into());
    }
    Ok(IdKeys::from_parts(le_u64(page, 24), le_u64(page, 32)))
}

/// Where one segment's columns lie, and what it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentMeta {
    pub first: u64,
    pub count: u64,
    pub log_start: u64,
    pub log_end: u64,
    pub dir_entries: u64,
    pub id_capacity: u64,
    pub bloom_blocks: u64,
    pub locations: u64,
    pub types: u64,
    pub entries: u64,
    pub directory: u64,
    pub ids: u64,
    pub bloom: u64,
}

impl SegmentMeta {
    fn fields(&self) -> [u64; 13] {
        [
            self.first,
            self.count,
            self.log_start,
            self.log_end,
            self.dir_entries,
            self.id_capacity,
            self.bloom_blocks,
            self.locations,
            self.types,
            self.entries,
            self.directory,
            self.ids,
            self.bloom,
        ]
    }

    fn from_fields(f: [u64; 13]) -> SegmentMeta {
        SegmentMeta {
            first: f[0],
            count: f[1],
            log_start: f[2],
            log_end: f[3],
            dir_entries: f[4],
            id_capacity: f[5],
            bloom_blocks: f[6],
            locations: f[7],
            types: f[8],
            entries: f[9],
            directory: f[10],
            ids: f[11],
            bloom: f[12],
        }
    }

    /// Each column's first page and page count (for bounds checks).
    pub fn columns(&self) -> [(u64, u64); 6] {
        [
            (self.locations, pages_for(self.count, LOCATIONS_PER_PAGE)),
            (self.types, pages_for(self.count, TYPES_PER_PAGE)),
            (self.entries, pages_for(self.count, ENTRIES_PER_PAGE)),
            (self.directory, pages_for(self.dir_entries, DIR_PER_PAGE)),
            (self.ids, pages_for(self.id_capacity, SLOTS_PER_PAGE)),
            (self.bloom, pages_for(self.bloom_blocks, BLOCKS_PER_PAGE)),
        ]
    }
}

/// One stream of the manifest's stream table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRow {
    pub id: Uuid,
    pub count: u64,
    pub first: u64,
    pub last: u64,
}

/// A manifest: what the index file covers of the log, and where.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    pub sequence: u64,
    pub salt: u64,
    pub covered: u64,
    pub last_batch_start: u64,
    pub last_batch_crc: u32,
    pub events: u64,
    pub segments: Vec<SegmentMeta>,
    pub types: Vec<Box<[u8]>>,
    pub streams: Vec<StreamRow>,
}

const MANIFEST_FIXED: usize = 72;
const SEGMENT_LEN: usize = 104;
const STREAM_LEN: usize = 40;

impl Manifest {
    /// The manifest's pages, to lie from byte `offset` on.
    pub fn encode(&self, offset: u64) -> Vec<u8> {
        let names: usize = self.types.iter().map(|t| 2 + t.len()).sum();
        let len = MANIFEST_FIXED
            + SEGMENT_LEN * self.segments.len()
            + names
            + STREAM_LEN * self.streams.len();
        let mut body = Vec::with_capacity(len);
        body.extend_from_slice(&(len as u64).to_le_bytes());
        body.extend_from_slice(&self.sequence.to_le_bytes());
        body.extend_from_slice(&self.salt.to_le_bytes());
        body.extend_from_slice(&self.covered.to_le_bytes());
        body.extend_from_slice(&self.last_batch_start.to_le_bytes());
        body.extend_from_slice(&self.last_batch_crc.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&self.events.to_le_bytes());
        body.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        body.extend_from_slice(&(self.types.len() as u32).to_le_bytes());
        body.extend_from_slice(&(self.streams.len() as u64).to_le_bytes());
        for s in &self.segments {
            for f in s.fields() {
                body.extend_from_slice(&f.to_le_bytes());
            }
        }
        for t in &self.types {
            body.extend_from_slice(&(t.len() as u16).to_le_bytes());
            body.extend_from_slice(t);
        }
        for s in &self.streams {
            body.extend_from_slice(s.id.as_bytes());
            body.extend_from_slice(&s.count.to_le_bytes());
            body.extend_from_slice(&s.first.to_le_bytes());
            body.extend_from_slice(&s.last.to_le_bytes());
        }
        debug_assert_eq!(body.len(), len);
        let pages = body.len().div_ceil(PAYLOAD).max(1);
        let mut out = vec![0u8; pages * PAGE];
        for (i, chunk) in body.chunks(PAYLOAD).enumerate() {
            out[i * PAGE..i * PAGE + chunk.len()].copy_from_slice(chunk);
        }
        for i in 0..pages {
            let kind = if i == 0 {
                Kind::Manifest
            } else {
                Kind::ManifestMore
            };
            seal(
                &mut out[i * PAGE..(i + 1) * PAGE],
                kind,
                self.salt,
                offset + (i * PAGE) as u64,
            );
        }
        out
    }

    /// The body length a first manifest page announces, in pages (to read the rest).
    pub fn pages_announced(first: &[u8]) -> u64 {
        le_u64(first, 0).div_ceil(PAYLOAD as u64).max(1)
    }

    /// Decodes a manifest from its pages (each already checked); `None` when the body
    /// does not parse.
    pub fn decode(pages: &[u8]) -> Option<Manifest> {
        let mut body = Vec::with_capacity(pages.len());
        for p in pages.chunks(PAGE) {
            body.extend_from_slice(&p[..PAYLOAD]);
        }
        let len = usize::try_from(le_u64(&body, 0)).ok()?;
        if len > body.len() || len < MANIFEST_FIXED {
            return None;
        }
        let b = &body[..len];
        let nseg = le_u32(b, 56) as usize;
        let ntypes = le_u32(b, 60) as usize;
        let nstreams = usize::try_from(le_u64(b, 64)).ok()?;
        let mut at = MANIFEST_FIXED;
        let mut m = Manifest {
            sequence: le_u64(b, 8),
            salt: le_u64(b, 16),
            covered: le_u64(b, 24),
            last_batch_start: le_u64(b, 32),
            last_batch_crc: le_u32(b, 40),
            events: le_u64(b, 48),
            ..Manifest::default()
        };
        if nseg.checked_mul(SEGMENT_LEN)? > len - at {
            return None;
        }
        for _ in 0..nseg {
            let mut f = [0u64; 13];
            for (k, v) in f.iter_mut().enumerate() {
                *v = le_u64(b, at + 8 * k);
            }
            m.segments.push(SegmentMeta::from_fields(f));
            at += SEGMENT_LEN;
        }
        for _ in 0..ntypes {
            if at + 2 > len {
                return None;
            }
            let n = u16::from_le_bytes([b[at], b[at + 1]]) as usize;
            at += 2;
            if n == 0 || n > 256 || at + n > len {
                return None;
            }
            m.types.push(b[at..at + n].into());
            at += n;
        }
        if nstreams.checked_mul(STREAM_LEN)? != len - at {
            return None;
        }
        for _ in 0..nstreams {
            m.streams.push(StreamRow {
                id: Uuid::from_bytes(b[at..at + 16].try_into().expect("16 bytes")),
                count: le_u64(b, at + 16),
                first: le_u64(b, at + 24),
                last: le_u64(b, at + 32),
            });
            at += STREAM_LEN;
        }
        Some(m)
    }
}

fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The Bloom block of an id hash among `blocks`, and the 7 bits set in it.
#[inline]
pub fn bloom_bits(h: u64, blocks: u64) -> (u64, [u16; 7]) {
    let x = fold_mul(h, 0xc2b2_ae3d_27d4_eb4f);
    let block = ((x >> 32) * blocks) >> 32;
    let y = fold_mul(x, 0x1656_67b1_9e37_79f9);
    let mut bits = [0u16; 7];
    for (k, b) in bits.iter_mut().enumerate() {
        *b = ((y >> (9 * k)) & 511) as u16;
    }
    (block, bits)
}

/// Blocks of the Bloom filter for `n` ids (10 bits per id).
pub fn bloom_blocks(n: u64) -> u64 {
    n.saturating_mul(10).div_ceil(512).max(1)
}

/// Sets the bits of hash `h` in `filter` (`blocks` blocks of 64 bytes).
pub fn bloom_add(filter: &mut [u8], blocks: u64, h: u64) {
    let (block, bits) = bloom_bits(h, blocks);
    let base = block as usize * BLOCK_LEN;
    for b in bits {
        filter[base + (b / 8) as usize] |= 1 << (b % 8);
    }
}

/// Whether every bit of hash `h` is set in `filter`.
pub fn bloom_may_hold(filter: &[u8], blocks: u64, h: u64) -> bool {
    let (block, bits) = bloom_bits(h, blocks);
    let base = block as usize * BLOCK_LEN;
    bits.iter()
        .all(|&b| filter[base + (b / 8) as usize] & (1 << (b % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_page_checks_out_only_as_itself() {
        let mut p = vec![7u8; PAGE];
        seal(&mut p, Kind::Locations, 42, 8192);
        assert!(check(&p, Kind::Locations, 42, 8192).is_ok());
        assert!(check(&p, Kind::Types, 42, 8192)
            .unwrap_err()
            .contains("kind"));
        assert!(
            check(&p, Kind::Locations, 43, 8192).is_err(),
            "foreign salt"
        );
        assert!(
            check(&p, Kind::Locations, 42, 4096).is_err(),
            "another offset"
        );
        assert!(
            check(&p[..4000], Kind::Locations, 42, 8192).is_err(),
            "short"
        );
        for i in (0..PAGE).step_by(97) {
            let mut q = p.clone();
            q[i] ^= 0x10;
            assert!(check(&q, Kind::Locations, 42, 8192).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn header_pages_bind_to_their_salt() {
        let keys = IdKeys::from_parts(11, 13);
        let p = header_page(99, keys);
        assert_eq!(read_header_page(&p, 99).unwrap().parts(), (11, 13));
        assert!(read_header_page(&p, 98).is_err());
    }

    #[test]
    fn manifests_round_trip_over_several_pages() {
        let m = Manifest {
            sequence: 3,
            salt: 5,
            covered: 1234,
            last_batch_start: 1000,
            last_batch_crc: 0xdead_beef,
            events: 300,
            segments: vec![SegmentMeta {
                first: 0,
                count: 300,
                log_start: 32,
                log_end: 1234,
                ids: 4096,
                ..SegmentMeta::default()
            }],
            types: vec![b"A".as_slice().into(), b"Bee".as_slice().into()],
            streams: (0..300)
                .map(|i| StreamRow {
                    id: Uuid::from_u128(i),
                    count: 1,
                    first: i as u64,
                    last: i as u64,
                })
                .collect(),
        };
        let bytes = m.encode(40960);
        assert!(bytes.len() > PAGE, "spans pages");
        for (i, p) in bytes.chunks(PAGE).enumerate() {
            let kind = if i == 0 {
                Kind::Manifest
            } else {
                Kind::ManifestMore
            };
            check(p, kind, 5, 40960 + (i * PAGE) as u64).unwrap();
        }
        assert_eq!(
            Manifest::pages_announced(&bytes),
            (bytes.len() / PAGE) as u64
        );
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        // A body cut short does not parse.
        let mut cut = bytes.clone();
        cut.truncate(PAGE);
        assert!(Manifest::decode(&cut).is_none());
    }

    #[test]
    fn the_bloom_filter_holds_what_was_added() {
        let blocks = bloom_blocks(1000);
        let mut f = vec![0u8; blocks as usize * BLOCK_LEN];
        let keys = IdKeys::from_parts(1, 3);
        for i in 0..1000u128 {
            bloom_add(&mut f, blocks, keys.hash(&Uuid::from_u128(i)));
        }
        for i in 0..1000u128 {
            assert!(bloom_may_hold(&f, blocks, keys.hash(&Uuid::from_u128(i))));
        }
        let false_pos = (10_000..20_000u128)
            .filter(|&i| bloom_may_hold(&f, blocks, keys.hash(&Uuid::from_u128(i))))
            .count();
        assert!(false_pos < 300, "{false_pos} false positives in 10,000");
    }
}
