//! The one error type of the crate. Every message names its cause: the path and OS
//! error for I/O, the stream and both versions for a conflict, the byte offset for
//! corruption, the limit and the size for an oversized event.

use std::io;
use std::path::PathBuf;

use uuid::Uuid;

use crate::types::ExpectedVersion;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The optimistic-concurrency check of an append failed; nothing was written.
    #[error(
        "wrong expected version for stream {stream_id}: expected {expected}, actual {}",
        display_actual(*.actual)
    )]
    WrongExpectedVersion {
        stream_id: Uuid,
        expected: ExpectedVersion,
        /// The stream's last version, `None` when it has no events.
        actual: Option<u64>,
    },

    /// The stream has no events.
    #[error("stream {stream_id} not found (it has no events)")]
    StreamNotFound { stream_id: Uuid },

    /// An operating-system I/O error; `context` names the operation and the path.
    #[error("I/O error: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// Damaged data with valid data after it (so not a torn tail), found at byte
    /// `offset` where the batch holding global position `position` should start.
    #[error("corrupt record at byte offset {offset} (global position {position}): {detail}")]
    CorruptRecord {
        position: u64,
        offset: u64,
        detail: String,
    },

    /// The file is not an event store, or has a format version this library cannot read,
    /// or its header is damaged. `path` is empty where no path is known (the codec).
    #[error("invalid file header{}: {cause}", display_path(path))]
    InvalidHeader { path: PathBuf, cause: HeaderCause },

    /// One event's encoded record exceeds `MAX_EVENT_SIZE`.
    #[error("event too large: its record would take {size} bytes, the limit is {max}")]
    EventTooLarge { size: usize, max: usize },

    /// A caller passed an argument the store cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Another handle, in this process or another, has the store open.
    #[error("store {} is locked: another handle has it open", .path.display())]
    Locked { path: PathBuf },

    /// An earlier write or fsync on this handle failed; appends are refused until the
    /// store is reopened, which recovers from what is on disk.
    #[error("store is poisoned and refuses appends (reopen it to recover): {cause}")]
    Poisoned { cause: String },

    /// A write on a handle opened read-only.
    #[error("store {} is open read-only: appends are refused", .path.display())]
    ReadOnly { path: PathBuf },
    /// An event id of the append is already recorded, and the append is not an exact
    /// retry of the one that recorded it; nothing was written.
    #[error(
        "duplicate event id {event_id}: it is already recorded (at global position \
         {position}) and this append is not an exact retry of the one that wrote it"
    )]
    DuplicateEventId { event_id: Uuid, position: u64 },

    /// No event has this id.
    #[error("event {event_id} not found")]
    EventNotFound { event_id: Uuid },
}

/// Why a file header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCause {
    /// The file does not start with the store magic (`EVSTOR`).
    NotAStore,
    /// A store of a format version this library does not read.
    UnsupportedVersion { found: u16 },
    /// The magic and version are right, but the header's checksum does not match.
    DamagedChecksum,
}

impl std::fmt::Display for HeaderCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderCause::NotAStore => write!(f, "not an event store (no EVSTOR magic)"),
            HeaderCause::UnsupportedVersion { found } => {
                let reads = crate::codec::READABLE_VERSIONS;
                let newest = reads.iter().copied().max().unwrap_or(0);
                let which = if *found > newest { "newer " } else { "" };
                let list: Vec<String> = reads.iter().map(u16::to_string).collect();
                let (noun, list) = match list.split_last() {
                    Some((last, rest)) if !rest.is_empty() => {
                        ("versions", format!("{} and {last}", rest.join(", ")))
                    }
                    _ => ("version", list.join("")),
                };
                write!(
                    f,
                    "a store of {which}format version {found}; this library reads format {noun} {list}"
                )
            }
            HeaderCause::DamagedChecksum => write!(f, "damaged header (checksum mismatch)"),
        }
    }
}

fn display_path(path: &std::path::Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!(" of {}", path.display())
    }
}

fn display_actual(actual: Option<u64>) -> String {
    match actual {
        Some(v) => format!("version {v}"),
        None => "no stream".to_string(),
    }
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A fresh copy, for handing one failure to every caller of a group commit
    /// (`io::Error` itself is not `Clone`).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            // Keep the OS error number (ENOSPC, EIO) when there is one: callers and the
            // C ABI tell a full disk from a failing one by it.
            Error::Io { context, source } => Error::Io {
                context: context.clone(),
                source: match source.raw_os_error() {
                    Some(errno) => io::Error::from_raw_os_error(errno),
                    None => io::Error::new(source.kind(), source.to_string()),
                },
            },
            Error::WrongExpectedVersion {
                stream_id,
                expected,
                actual,
            } => Error::WrongExpectedVersion {
                stream_id: *stream_id,
                expected: *expected,
                actual: *actual,
            },
            Error::StreamNotFound { stream_id } => Error::StreamNotFound {
                stream_id: *stream_id,
            },
            Error::CorruptRecord {
                position,
                offset,
                detail,
            } => Error::CorruptRecord {
                position: *position,
                offset: *offset,
                detail: detail.clone(),
            },
            Error::InvalidHeader { path, cause } => Error::InvalidHeader {
                path: path.clone(),
                cause: *cause,
            },
            Error::EventTooLarge { size, max } => Error::EventTooLarge {
                size: *size,
                max: *max,
            },
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::Locked { path } => Error::Locked { path: path.clone() },
            Error::Poisoned { cause } => Error::Poisoned {
                cause: cause.clone(),
            },
            Error::ReadOnly { path } => Error::ReadOnly { path: path.clone() },
            Error::DuplicateEventId { event_id, position } => Error::DuplicateEventId {
                event_id: *event_id,
                position: *position,
            },
            Error::EventNotFound { event_id } => Error::EventNotFound {
                event_id: *event_id,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_message_names_stream_expected_and_actual() {
        let id = Uuid::from_u128(7);
        let e = Error::WrongExpectedVersion {
            stream_id: id,
            expected: ExpectedVersion::Exact(5),
            actual: Some(3),
        };
        let text = e.to_string();
        assert!(text.contains(&id.to_string()), "{text}");
        assert!(text.contains("expected version 5"), "{text}");
        assert!(text.contains("actual version 3"), "{text}");
        let none = Error::WrongExpectedVersion {
            stream_id: id,
            expected: ExpectedVersion::Exact(0),
            actual: None,
        };
        assert!(none.to_string().contains("actual no stream"));
    }

    #[test]
    fn invalid_header_names_path_and_cause() {
        let e = Error::InvalidHeader {
            path: "/tmp/x.store".into(),
            cause: HeaderCause::UnsupportedVersion { found: 9 },
        };
        let text = e.to_string();
        assert!(text.contains("/tmp/x.store"), "{text}");
        assert!(text.contains("newer format version 9"), "{text}");
        let newest = *crate::codec::READABLE_VERSIONS.iter().max().unwrap();
        assert!(text.contains("reads format version"), "{text}");
        assert!(text.ends_with(&newest.to_string()), "{text}");
        let e = Error::InvalidHeader {
            path: "a".into(),
            cause: HeaderCause::NotAStore,
        };
        assert_eq!(
            e.to_string(),
            "invalid file header of a: not an event store (no EVSTOR magic)"
        );
        let e = Error::InvalidHeader {
            path: "".into(),
            cause: HeaderCause::DamagedChecksum,
        };
        assert_eq!(
            e.to_string(),
            "invalid file header: damaged header (checksum mismatch)"
        );
    }

    #[test]
    fn duplicate_keeps_kind_and_message() {
        let e = Error::io("write /x", io::Error::from_raw_os_error(libc::ENOSPC));
        let d = e.duplicate();
        assert_eq!(e.to_string(), d.to_string());
        match d {
            Error::Io { source, .. } => {
                assert_eq!(source.kind(), io::ErrorKind::StorageFull);
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
