//! Event types as small ids: one `u32` per event into a table of the distinct type
//! names, so that a filter by type is decided from the index, without reading (and
//! checksumming) the records it discards.
//!
//! A filter is turned into the set of matching type ids once ([`TypeMatch`]); types
//! first seen later (a live subscription) are judged when they first appear.

use std::collections::HashMap;

use uuid::Uuid;

/// The distinct type names of a store (the type id of each event is a column of the
/// index: `index.rs`).
#[derive(Debug, Clone)]
pub struct TypeTable {
    /// Per type id: its name (the record's bytes, UTF-8 checked when written).
    names: Vec<Box<[u8]>>,
    ids: HashMap<Box<[u8]>, u32>,
    /// A direct-mapped cache of ids, indexed by a cheap digest of the name (its length
    /// and its first and last 8 bytes): a handful of types usually make up a log, and
    /// one comparison is several times cheaper than hashing the name into `ids`,
    /// which opening a store would pay per event. `u32::MAX`: empty.
    cache: [u32; CACHE],
}

const CACHE: usize = 16;

impl Default for TypeTable {
    fn default() -> Self {
        TypeTable {
            names: Vec::new(),
            ids: HashMap::new(),
            cache: [u32::MAX; CACHE],
        }
    }
}

/// The cache slot of a name (not a defence against chosen names: a collision costs
/// one hash lookup, nothing more).
#[inline]
fn slot(name: &[u8]) -> usize {
    let n = name.len();
    let mut head = [0u8; 8];
    let mut tail = [0u8; 8];
    let k = n.min(8);
    head[..k].copy_from_slice(&name[..k]);
    tail[..k].copy_from_slice(&name[n - k..]);
    let a = (u64::from_le_bytes(head) ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let b = u64::from_le_bytes(tail).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    let x = (a ^ b.rotate_left(31)) ^ ((a ^ b) >> 29);
    (x.wrapping_mul(0x1656_67b1_9e37_79f9) >> 60) as usize
}

impl TypeTable {
    /// A table of the names an index file lists, in type-id order.
    pub fn from_names(names: Vec<Box<[u8]>>) -> TypeTable {
        let mut t = TypeTable::default();
        for n in names {
            t.intern(&n);
        }
        t
    }

    /// The type id of a name, made for it if it is new.
    pub fn intern(&mut self, name: &[u8]) -> u32 {
        let at = slot(name);
        let cached = self.cache[at];
        if cached != u32::MAX && *self.names[cached as usize] == *name {
            return cached;
        }
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => {
                let id = u32::try_from(self.names.len()).expect("fewer than 2^32 event types");
                self.names.push(name.into());
                self.ids.insert(name.into(), id);
                id
            }
        };
        self.cache[at] = id;
        id
    }

    /// The type id of a known name.
    pub fn lookup(&self, name: &[u8]) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The names, in type-id order.
    pub fn names(&self) -> &[Box<[u8]>] {
        &self.names
    }

    /// The name of a type id.
    pub fn name(&self, id: u32) -> &[u8] {
        &self.names[id as usize]
    }

    /// Number of distinct types.
    pub fn type_count(&self) -> u32 {
        self.names.len() as u32
    }

    pub fn shrink_to_fit(&mut self) {
        self.names.shrink_to_fit();
    }

    /// Heap bytes held: the names (twice: list and map).
    pub fn heap_bytes(&self) -> u64 {
        let names: usize = self.names.iter().map(|n| n.len()).sum();
        (2 * names
            + self.names.capacity() * std::mem::size_of::<Box<[u8]>>()
            + self.ids.capacity() * (std::mem::size_of::<(Box<[u8]>, u32)>() + 1)) as u64
    }
}

/// What a subscription or a filtered read selects: a stream (or every stream), and
/// event types by exact name or prefix (none given: every type).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only events of this stream; `None`: every stream.
    pub stream_id: Option<Uuid>,
    /// Exact type names.
    pub event_types: Vec<String>,
    /// Type prefixes (`"Order"` matches `"OrderPlaced"`; `""` matches every type).
    pub event_type_prefixes: Vec<String>,
}

impl Filter {
    /// Everything.
    pub fn all() -> Filter {
        Filter::default()
    }

    /// Only the events of one stream.
    pub fn stream(stream_id: Uuid) -> Filter {
        Filter {
            stream_id: Some(stream_id),
            ..Filter::default()
        }
    }

    /// Only events whose type is one of `types`.
    pub fn types<S: Into<String>>(types: impl IntoIterator<Item = S>) -> Filter {
        Filter {
            event_types: types.into_iter().map(Into::into).collect(),
            ..Filter::default()
        }
    }

    /// Only events whose type starts with one of `prefixes`.
    pub fn prefixes<S: Into<String>>(prefixes: impl IntoIterator<Item = S>) -> Filter {
        Filter {
            event_type_prefixes: prefixes.into_iter().map(Into::into).collect(),
            ..Filter::default()
        }
    }

    /// Whether the filter looks at types at all.
    pub fn selects_types(&self) -> bool {
        !self.event_types.is_empty() || !self.event_type_prefixes.is_empty()
    }

    /// Whether an event type (its bytes) passes the type part of the filter.
    pub fn type_matches(&self, name: &[u8]) -> bool {
        !self.selects_types()
            || self.event_types.iter().any(|t| t.as_bytes() == name)
            || self
                .event_type_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_bytes()))
    }
}

/// A filter's verdict on each type id, computed once per id from the table.
#[derive(Debug, Clone)]
pub struct TypeMatch {
    filter: Filter,
    /// Per type id judged so far: whether it matches.
    verdicts: Vec<bool>,
}

impl TypeMatch {
    pub fn new(filter: Filter) -> TypeMatch {
        TypeMatch {
            filter,
            verdicts: Vec::new(),
        }
    }

    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Judges the types the table gained since the last call.
    pub fn update(&mut self, table: &TypeTable) {
        for id in self.verdicts.len() as u32..table.type_count() {
            let v = self.filter.type_matches(table.name(id));
            self.verdicts.push(v);
        }
    }

    /// Whether a type id matches; `update` must have seen the table that holds it.
    #[inline]
    pub fn matches(&self, id: u32) -> bool {
        self.verdicts[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_interned_once_and_looked_up_per_event() {
        let mut t = TypeTable::default();
        let ids: Vec<u32> = ["A", "A", "B", "A", "C", "B"]
            .iter()
            .map(|name| t.intern(name.as_bytes()))
            .collect();
        assert_eq!(t.type_count(), 3);
        assert_eq!(ids, vec![0, 0, 1, 0, 2, 1]);
        assert_eq!(t.name(2), b"C");
        assert_eq!(t.lookup(b"B"), Some(1));
        assert_eq!(t.lookup(b"D"), None);
        // More distinct types than the recent cache holds, cycling.
        let mut t = TypeTable::default();
        let names: Vec<String> = (0..20).map(|i| format!("T{i}")).collect();
        for round in 0..3 {
            for (i, n) in names.iter().enumerate() {
                assert_eq!(t.intern(n.as_bytes()), i as u32, "round {round}");
            }
        }
        assert_eq!(t.type_count(), 20);
        let again = TypeTable::from_names(t.names().to_vec());
        assert_eq!(again.lookup(b"T7"), Some(7));
    }

    #[test]
    fn filters_match_exact_names_and_prefixes() {
        let f = Filter {
            stream_id: None,
            event_types: vec!["Exact".into()],
            event_type_prefixes: vec!["Order".into()],
        };
        assert!(f.type_matches(b"Exact"));
        assert!(!f.type_matches(b"Exactly"));
        assert!(f.type_matches(b"OrderPlaced"));
        assert!(f.type_matches(b"Order"));
        assert!(!f.type_matches(b"Orde"));
        assert!(Filter::all().type_matches(b"anything"));
        assert!(
            Filter::prefixes([""]).type_matches(b"x"),
            "an empty prefix matches all"
        );
        assert!(!Filter::types(Vec::<String>::new()).selects_types());
    }

    #[test]
    fn type_match_judges_new_types_as_they_appear() {
        let mut t = TypeTable::default();
        t.intern(b"OrderPlaced");
        let mut m = TypeMatch::new(Filter::prefixes(["Order"]));
        m.update(&t);
        assert!(m.matches(0));
        t.intern(b"Shipped");
        t.intern(b"OrderCancelled");
        m.update(&t);
        assert!(!m.matches(1));
        assert!(m.matches(2));
    }
}
