//! libeventstore: an embedded, crash-safe, append-only event store.
//!
//! One checksummed file holds every event. Events belong to streams keyed by UUID;
//! an append is atomic and durable when it returns, and checks the stream's version
//! (optimistic concurrency). Events are read by stream or across the whole log.
//!
//! ```no_run
//! use eventstore::{ExpectedVersion, ProposedEvent, Store};
//! use uuid::Uuid;
//!
//! let store = Store::open("orders.store".as_ref())?;
//! let order = Uuid::new_v4();
//! store.append(order, ExpectedVersion::NoStream, vec![ProposedEvent {
//!     event_id: Uuid::nil(),
//!     event_type: "OrderPlaced".into(),
//!     metadata: vec![],
//!     payload: br#"{"total": 42}"#.to_vec(),
//! }])?;
//! for event in store.read_stream(order, 0, u64::MAX)? {
//!     println!("{} v{} {}", event.global_position, event.stream_version, event.event_type);
//! }
//! # Ok::<(), eventstore::Error>(())
//! ```
//!
//! The C ABI lives in [`ffi`]; its header is `include/eventstore.h`.

pub(crate) mod checksum;
pub mod codec;
pub mod error;
pub mod ffi;
pub mod inspect;
pub(crate) mod log;
pub mod store;
pub mod types;

pub use error::{Error, HeaderCause};
pub use store::{
    BackupReport, CopiedBatch, CopiedGroup, EventBatch, Filter, IndexStats, OpenOptions, Store,
    StoreInfo, StreamInfo, Subscription,
};
pub use types::{
    AppendResult, ExpectedVersion, ProposedEvent, ProposedEventRef, RecordedEvent, StreamAppend,
    MAX_EVENT_SIZE, MAX_EVENT_TYPE_LEN, RECORD_OVERHEAD,
};
pub use uuid::Uuid;

/// The README's examples, compiled as doctests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
