//! What a store can say about itself: `Store::info()` (`es_store_info_get` in C).

use super::{read_lock, shared, Store};
use crate::codec::FILE_HEADER_LEN;
use crate::error::Error;

/// Facts about an open store, taken at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreInfo {
    /// The format version of the file's header.
    pub format_version: u16,
    /// Whether the handle is read-only (`OpenOptions::read_only`, `ES_OPEN_READ_ONLY`).
    pub read_only: bool,
    /// Whether appends are refused after a failed write or sync (see `Error::Poisoned`).
    pub poisoned: bool,
    /// Events in the log: the next global position.
    pub event_count: u64,
    /// Streams with at least one event.
    pub stream_count: u64,
    /// Bytes of the file that hold data: its header and committed batches.
    pub data_bytes: u64,
    /// Bytes this handle's recovery cut off the end of the file when it opened it (a
    /// torn tail, garbage, preallocated zeros); 0 when it cut nothing.
    pub recovered_bytes_dropped: u64,
    /// Heap memory the in-memory index holds.
    pub index_bytes: u64,
}

impl Store {
    /// Facts about the store: size, counts, what recovery cut off, memory. Never waits
    /// for an append's sync.
    pub fn info(&self) -> StoreInfo {
        self.refresh_quietly();
        let (stats, data_bytes) = {
            let index = read_lock(&self.index);
            let count = index.event_count();
            // The last committed record is followed by its batch's trailer, which
            // ends the data.
            let end = if count == 0 {
                FILE_HEADER_LEN as u64
            } else {
                index.log_end()
            };
            (index.stats(), end)
        };
        StoreInfo {
            format_version: self
                .format_version
                .load(std::sync::atomic::Ordering::Acquire),
            read_only: self.is_read_only(),
            poisoned: self.is_poisoned(),
            event_count: stats.events,
            stream_count: stats.streams,
            data_bytes,
            recovered_bytes_dropped: self.recovered_bytes_dropped,
            index_bytes: stats.heap_bytes,
        }
    }

    /// Whether a writer (a handle opened for writing, in this process or another) has
    /// the store open now. A writer handle answers yes: itself. A read-only handle
    /// tests the live mark that every writer holds on the store file while it has it
    /// open (`F_OFD_GETLK`: nothing is taken, nothing waits); a writer that died or
    /// closed the store is not live. For tools that report it (`eventstore info`): the
    /// answer may change as soon as it is given.
    pub fn writer_is_live(&self) -> Result<bool, Error> {
        if !self.is_read_only() {
            return Ok(true);
        }
        shared::writer_is_live(&self._lock).map_err(|e| {
            Error::io(
                format!("test whether a writer has {} open", self.path.display()),
                e,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{OpenOptions, Store};

    /// A read-only handle sees each writer come and go (the process-crossing case is
    /// `eventstore info` beside a writer process, in cli/tests/cli.rs).
    #[test]
    fn writer_is_live_follows_the_writers_open_and_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.store");
        let writer = Store::open(&path).unwrap();
        assert!(writer.writer_is_live().unwrap(), "a writer is itself live");
        let reader = Store::open_with(&path, OpenOptions::new().read_only()).unwrap();
        assert!(reader.writer_is_live().unwrap());
        writer.close().unwrap();
        assert!(!reader.writer_is_live().unwrap());
        let again = Store::open(&path).unwrap();
        assert!(reader.writer_is_live().unwrap());
        drop(again);
        assert!(!reader.writer_is_live().unwrap());
    }
}
