//! The values that travel through the store: events proposed by a caller, events as
//! recorded in the log, the optimistic-concurrency rule of an append, and the limits.

use std::fmt;

use uuid::Uuid;

/// Largest encoded size of one event record, fixed fields included
/// (`RECORD_OVERHEAD + type + metadata + payload <= MAX_EVENT_SIZE`).
pub const MAX_EVENT_SIZE: usize = 65536;

/// Largest event type, in bytes of UTF-8. An event type is never empty.
pub const MAX_EVENT_TYPE_LEN: usize = 256;

/// Bytes a record adds around its type, metadata and payload: 72 bytes of fixed
/// fields, the NUL after the type, and the record's CRC32. See `docs/format.md`.
pub const RECORD_OVERHEAD: usize = 77;

/// An event a caller wants to append. A nil `event_id` asks the store to assign a
/// fresh random (v4) UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub metadata: Vec<u8>,
    pub payload: Vec<u8>,
}

/// A borrowed view of a proposed event, for callers (such as the C ABI) that already
/// hold the bytes and should not copy them into owned values first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProposedEventRef<'a> {
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub metadata: &'a [u8],
    pub payload: &'a [u8],
}

impl ProposedEvent {
    /// The borrowed view of this event.
    pub fn as_ref(&self) -> ProposedEventRef<'_> {
        ProposedEventRef {
            event_id: self.event_id,
            event_type: &self.event_type,
            metadata: &self.metadata,
            payload: &self.payload,
        }
    }
}

impl ProposedEventRef<'_> {
    /// Size of this event's record on disk.
    pub fn encoded_len(&self) -> usize {
        RECORD_OVERHEAD + self.event_type.len() + self.metadata.len() + self.payload.len()
    }
}

/// An event as it stands in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub stream_id: Uuid,
    /// 0-based version within its stream.
    pub stream_version: u64,
    /// 0-based position in the whole log.
    pub global_position: u64,
    /// Commit time in microseconds since the Unix epoch; the same for every event of
    /// one append.
    pub recorded_at: u64,
    pub event_type: String,
    pub metadata: Vec<u8>,
    pub payload: Vec<u8>,
}

/// What an append requires of its stream's state before it may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Append whatever the stream's state.
    Any,
    /// The stream must have no events yet.
    NoStream,
    /// The stream must have at least one event, whatever its version.
    StreamExists,
    /// The stream's last event must have exactly this 0-based version.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose last version is `actual` (`None`: no events) satisfies
    /// this expectation.
    pub fn admits(self, actual: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(n) => actual == Some(n),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("stream exists"),
            ExpectedVersion::Exact(n) => write!(f, "version {n}"),
        }
    }
}

/// What a successful append committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub first_global_position: u64,
    pub first_stream_version: u64,
    pub count: u64,
    /// The commit time stamped on every event of the append.
    pub recorded_at: u64,
    /// The append repeated an earlier acknowledged one exactly (same streams, same event
    /// ids, same order): nothing was written, and this is the earlier append's result.
    pub deduplicated: bool,
}

/// One stream's part of a multi-stream append (`Store::append_multi`).
#[derive(Debug, Clone, Copy)]
pub struct StreamAppend<'a> {
    pub stream_id: Uuid,
    pub expected_version: ExpectedVersion,
    pub events: &'a [ProposedEventRef<'a>],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_version_admits_exactly_its_states() {
        use ExpectedVersion::*;
        let cases = [
            (Any, None, true),
            (Any, Some(3), true),
            (NoStream, None, true),
            (NoStream, Some(0), false),
            (StreamExists, None, false),
            (StreamExists, Some(0), true),
            (Exact(0), None, false),
            (Exact(0), Some(0), true),
            (Exact(5), Some(3), false),
        ];
        for (expected, actual, admitted) in cases {
            assert_eq!(
                expected.admits(actual),
                admitted,
                "{expected:?} vs {actual:?}"
            );
        }
    }

    #[test]
    fn encoded_len_counts_overhead_and_variable_parts() {
        let e = ProposedEvent {
            event_id: Uuid::nil(),
            event_type: "abc".into(),
            metadata: vec![0; 5],
            payload: vec![0; 7],
        };
        assert_eq!(e.as_ref().encoded_len(), RECORD_OVERHEAD + 15);
    }
}
