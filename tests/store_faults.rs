//! Failing I/O through the file seam: poisoning, reads after it, recovery on reopen;
//! and the memory bound of the index.

mod common;

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{all, append_each, event, temp_store};
use eventstore::store::io::StorageFile;
use eventstore::{Error, ExpectedVersion, OpenOptions, Store};
use uuid::Uuid;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Write,
    ShortWrite,
    SyncData,
    SetLen,
}

/// Fails the `n`th call (1-based) of one operation after `armed` is set to `n`.
struct Faulty {
    file: File,
    op: Op,
    countdown: Arc<AtomicU64>,
}

impl Faulty {
    fn fires(&self, op: Op) -> bool {
        let hit = op == self.op || (self.op == Op::ShortWrite && op == Op::Write);
        hit && self
            .countdown
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                if n == 0 {
                    None
                } else {
                    Some(n - 1)
                }
            })
            == Ok(1)
    }
}

impl StorageFile for Faulty {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        StorageFile::read_at(&self.file, buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if self.fires(Op::Write) {
            if self.op == Op::ShortWrite && buf.len() > 1 {
                // Half the bytes land, then the device fails.
                let n = StorageFile::write_at(&self.file, &buf[..buf.len() / 2], offset)?;
                self.countdown.store(1, Ordering::SeqCst);
                return Ok(n);
            }
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        StorageFile::write_at(&self.file, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.fires(Op::SyncData) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        StorageFile::sync_data(&self.file)
    }
    fn sync_all(&self) -> io::Result<()> {
        StorageFile::sync_all(&self.file)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.fires(Op::SetLen) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        StorageFile::set_len(&self.file, len)
    }
    fn file_len(&self) -> io::Result<u64> {
        StorageFile::file_len(&self.file)
    }
}

fn faulty(op: Op, countdown: &Arc<AtomicU64>) -> OpenOptions {
    let countdown = Arc::clone(countdown);
    OpenOptions::new().storage(move |file| {
        Box::new(Faulty {
            file,
            op,
            countdown,
        })
    })
}

#[test]
fn a_failed_write_or_sync_poisons_keeps_reads_and_recovers_on_reopen() {
    for op in [Op::Write, Op::ShortWrite, Op::SyncData] {
        for preallocate in [true, false] {
            let t = temp_store();
            let s = Uuid::new_v4();
            let countdown = Arc::new(AtomicU64::new(0));
            let store =
                Store::open_with(&t.path, faulty(op, &countdown).preallocate(preallocate)).unwrap();
            let acked = append_each(&store, &[s, s]);
            countdown.store(1, Ordering::SeqCst);
            let failed = store.append(
                s,
                ExpectedVersion::Exact(1),
                vec![event("Lost", &[7; 5000])],
            );
            match failed {
                Err(e @ Error::Io { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains("events.store"), "names the path: {text}");
                    assert!(
                        text.contains("Input/output error") || text.contains("os error 5"),
                        "{text}"
                    );
                }
                other => panic!("{op:?}: expected Io, got {other:?}"),
            }
            assert!(store.is_poisoned());
            // No retry: the next append is refused, even though the fault is gone.
            match store.append(s, ExpectedVersion::Any, vec![event("Refused", b"")]) {
                Err(e @ Error::Poisoned { .. }) => assert!(e.to_string().contains("reopen")),
                other => panic!("{op:?}: expected Poisoned, got {other:?}"),
            }
            assert_eq!(all(&store), acked, "{op:?}: reads keep working");
            assert_eq!(store.stream_version(&s), Some(1));
            drop(store);
            let store = Store::open(&t.path).unwrap();
            let recovered = all(&store);
            assert_eq!(
                recovered[..2],
                acked[..],
                "{op:?}: every acknowledged event survives"
            );
            assert!(
                recovered.len() == 2 || (recovered.len() == 3 && recovered[2].payload == [7; 5000])
            );
            let next = store
                .append(s, ExpectedVersion::Any, vec![event("Again", b"")])
                .unwrap();
            assert_eq!(next[0].global_position, recovered.len() as u64);
        }
    }
}

#[test]
fn every_waiting_appender_of_a_failed_group_gets_the_error() {
    let t = temp_store();
    let countdown = Arc::new(AtomicU64::new(0));
    let store = Store::open_with(&t.path, faulty(Op::SyncData, &countdown)).unwrap();
    append_each(&store, &[Uuid::new_v4()]);
    countdown.store(1, Ordering::SeqCst);
    let results: Vec<Result<_, Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    store.append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("E", b"")])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        assert!(
            matches!(r, Err(Error::Io { .. }) | Err(Error::Poisoned { .. })),
            "{r:?}"
        );
    }
    assert_eq!(store.global_position(), 1);
}

#[test]
fn a_failed_truncation_of_a_torn_tail_fails_the_open() {
    let t = temp_store();
    {
        let store = Store::open(&t.path).unwrap();
        append_each(&store, &[Uuid::new_v4()]);
    }
    let mut bytes = std::fs::read(&t.path).unwrap();
    bytes.extend_from_slice(&[0xAA; 33]);
    std::fs::write(&t.path, &bytes).unwrap();
    let countdown = Arc::new(AtomicU64::new(1));
    match Store::open_with(&t.path, faulty(Op::SetLen, &countdown)) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("truncate"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&t.path).unwrap(), bytes);
    assert_eq!(Store::open(&t.path).unwrap().global_position(), 1);
}

#[test]
fn the_index_holds_no_payloads() {
    let t = temp_store();
    let streams: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();
    let events = 2_000u64;
    {
        let store = Store::open(&t.path).unwrap();
        for chunk in 0..events / 50 {
            let batch = (0..50).map(|_| event("Large", &[0x42; 4096])).collect();
            store
                .append(streams[chunk as usize % 10], ExpectedVersion::Any, batch)
                .unwrap();
        }
    }
    let store = Store::open(&t.path).unwrap();
    let stats = store.index_stats();
    assert_eq!(stats.events, events);
    assert_eq!(stats.streams, 10);
    let per_stream_allowance = 256;
    let bound = 48 * events + per_stream_allowance * stats.streams;
    assert!(
        stats.heap_bytes <= bound,
        "index takes {} bytes for {events} events of 4 KiB (bound {bound})",
        stats.heap_bytes
    );
    assert!(std::fs::metadata(&t.path).unwrap().len() > 4096 * events);
}

/// Issue 9: a failed close is logged (the C log callback hears it, as a Rust `tracing`
/// subscriber would), as are the poisoning of a handle and a recovery cut. The
/// callback is process-wide; this is the only test of this binary that sets it.
#[test]
fn failed_close_poisoning_and_recovery_cuts_reach_the_log_callback() {
    use std::ffi::{c_char, c_void, CStr};
    use std::sync::Mutex;
    static HEARD: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());
    unsafe extern "C" fn hear(_: *mut c_void, level: i32, message: *const c_char) {
        // SAFETY: the library passes a NUL-terminated message valid for the call.
        let text = unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned();
        HEARD.lock().unwrap().push((level, text));
    }
    let heard = |needle: &str| -> Option<i32> {
        HEARD
            .lock()
            .unwrap()
            .iter()
            .find(|(_, m)| m.contains(needle))
            .map(|(l, _)| *l)
    };
    eventstore::ffi::info::es_set_log_callback(Some(hear), std::ptr::null_mut());

    let t = temp_store();
    let shown = t.path.display().to_string();
    Store::open(&t.path).unwrap().close().unwrap();
    // A failed close: the truncation of the preallocated space fails.
    let countdown = Arc::new(AtomicU64::new(1));
    let store = Store::open_with(&t.path, faulty(Op::SetLen, &countdown)).unwrap();
    append_each(&store, &[Uuid::new_v4()]);
    assert!(store.close().is_err());
    assert_eq!(heard("closing the store failed"), Some(1));
    // Its recovery: the preallocated zeros are cut, and that is logged too.
    let store = Store::open(&t.path).unwrap();
    assert!(store.info().recovered_bytes_dropped > 0);
    assert_eq!(heard(&format!("recovery of {shown}: cut off")), Some(2));
    drop(store);
    // A failed sync of the preallocated zeros is no failure of the append (the
    // preallocation steps aside, at debug level) ...
    let countdown = Arc::new(AtomicU64::new(1));
    let store = Store::open_with(&t.path, faulty(Op::SyncData, &countdown)).unwrap();
    store
        .append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("E", b"x")])
        .unwrap();
    assert!(!store.info().poisoned);
    assert_eq!(heard("after preallocation: Input/output error"), Some(4));
    // ... a failed sync of the batch poisons (the smaller preallocation that succeeded
    // has room for this one: its sync is the next).
    countdown.store(1, Ordering::SeqCst);
    assert!(store
        .append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("E", b"x")])
        .is_err());
    assert_eq!(heard("poisoned until reopened"), Some(1));
    assert!(store.info().poisoned);
    eventstore::ffi::info::es_set_log_callback(None, std::ptr::null_mut());
}

/// The store file deleted, or cut short, by someone else while a writer has it open:
/// appends are refused (the first with an I/O error naming the cause, then as a
/// poisoned handle), never acknowledged into a file that vanishes on close or over a
/// hole where acknowledged events were; reads of what the handle holds keep working.
#[test]
fn a_store_deleted_or_cut_under_its_writer_refuses_appends() {
    let s = Uuid::new_v4();
    let append =
        |store: &Store| store.append(s, ExpectedVersion::Any, vec![event("E", b"payload")]);

    // Deleted.
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    append(&store).unwrap();
    std::fs::remove_file(&t.path).unwrap();
    match append(&store) {
        Err(Error::Io { context, .. }) => assert!(context.contains("deleted"), "{context}"),
        other => panic!("an append to a deleted store: {other:?}"),
    }
    assert!(matches!(append(&store), Err(Error::Poisoned { .. })));
    assert_eq!(all(&store).len(), 1, "reads still work");
    store.close().unwrap();

    // Cut below its events by another process (here: another descriptor).
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    for _ in 0..3 {
        append(&store).unwrap();
    }
    File::options()
        .write(true)
        .open(&t.path)
        .unwrap()
        .set_len(100)
        .unwrap();
    match append(&store) {
        Err(Error::Io { context, .. }) => {
            assert!(context.contains("was cut to 100 bytes"), "{context}")
        }
        other => panic!("an append to a store cut short: {other:?}"),
    }
    assert!(matches!(append(&store), Err(Error::Poisoned { .. })));
    drop(store);
    assert_eq!(
        std::fs::metadata(&t.path).unwrap().len(),
        100,
        "nothing was written past the cut, not even zeros"
    );
}
