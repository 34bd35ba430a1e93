//! Opening: new files, recovery of existing ones, torn tails versus damage, the lock
//! (AC-1 to AC-5, and the batch-atomicity, forged-batch and lock points).

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use common::{all, append_each, event, file_len, open_exact, temp_store};
use eventstore::codec::{self, BATCH_TRAILER_LEN, FILE_HEADER_LEN};
use eventstore::{Error, ExpectedVersion, Store};
use uuid::Uuid;

#[test]
fn ac1_open_creates_a_file_with_its_header() {
    let t = temp_store();
    assert!(!t.path.exists());
    let store = Store::open(&t.path).unwrap();
    let bytes = fs::read(&t.path).unwrap();
    assert_eq!(&bytes[..8], &codec::encode_header());
    assert_eq!(bytes.len(), FILE_HEADER_LEN);
    assert_eq!(store.global_position(), 0);
    assert!(store.read_all(0, 100).unwrap().is_empty());
    assert_eq!(store.stream_version(&Uuid::new_v4()), None);
    assert!(matches!(
        store.read_stream(Uuid::new_v4(), 0, 10),
        Err(Error::StreamNotFound { .. })
    ));
}

#[test]
fn ac2_reopen_recovers_every_event_and_continues() {
    let t = temp_store();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let written = {
        let store = Store::open(&t.path).unwrap();
        append_each(&store, &[a, b, a, a, b])
    };
    let store = Store::open(&t.path).unwrap();
    assert_eq!(all(&store), written);
    assert_eq!(store.global_position(), 5);
    assert_eq!(store.stream_version(&a), Some(2));
    assert_eq!(store.stream_version(&b), Some(1));
    let next = store
        .append(a, ExpectedVersion::Exact(2), vec![event("Next", b"")])
        .unwrap();
    assert_eq!((next[0].global_position, next[0].stream_version), (5, 3));
    drop(store);
    let store = Store::open(&t.path).unwrap();
    assert_eq!(store.global_position(), 6);
}

#[test]
fn ac3_garbage_after_the_last_batch_is_cut_off() {
    let t = temp_store();
    let s = Uuid::new_v4();
    let written = {
        let store = Store::open(&t.path).unwrap();
        append_each(&store, &[s, s, s])
    };
    let clean_len = file_len(&t.path);
    OpenOptions::new()
        .append(true)
        .open(&t.path)
        .unwrap()
        .write_all(&[0x5A; 10])
        .unwrap();
    let store = Store::open(&t.path).unwrap();
    assert_eq!(all(&store), written);
    assert_eq!(
        file_len(&t.path),
        clean_len,
        "the torn tail is truncated on open"
    );
    let next = store
        .append(s, ExpectedVersion::Exact(2), vec![event("After", b"")])
        .unwrap();
    assert_eq!(next[0].global_position, 3);
    drop(store);
    assert_eq!(Store::open(&t.path).unwrap().global_position(), 4);
}

/// Offset of the last payload byte of the last record in the file.
fn last_payload_byte(path: &Path) -> u64 {
    file_len(path) - BATCH_TRAILER_LEN as u64 - 4 - 1
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0xFF;
    fs::write(path, bytes).unwrap();
}

#[test]
fn ac4_damage_in_the_last_batch_drops_only_that_batch() {
    let t = temp_store();
    let s = Uuid::new_v4();
    let written = {
        let store = Store::open(&t.path).unwrap();
        append_each(&store, &[s, s, s])
    };
    flip(&t.path, last_payload_byte(&t.path));
    let store = Store::open(&t.path).unwrap();
    assert_eq!(all(&store), written[..2].to_vec());
    assert_eq!(store.stream_version(&s), Some(1));
}

#[test]
fn ac5_damage_before_valid_data_is_fatal_and_leaves_the_file_unchanged() {
    let t = temp_store();
    let s = Uuid::new_v4();
    let boundaries = {
        let store = open_exact(&t.path);
        let mut ends = vec![file_len(&t.path)];
        for _ in 0..3 {
            append_each(&store, &[s]);
            ends.push(file_len(&t.path));
        }
        store.close().unwrap();
        ends
    };
    // A byte inside the second batch's record.
    let target = (boundaries[1] + boundaries[2]) / 2;
    flip(&t.path, target);
    let before = fs::read(&t.path).unwrap();
    match Store::open(&t.path) {
        Err(Error::CorruptRecord {
            position,
            offset,
            detail,
        }) => {
            assert_eq!(position, 1);
            assert_eq!(offset, boundaries[1]);
            assert!(
                detail.contains(&boundaries[2].to_string()),
                "names the valid batch after it: {detail}"
            );
        }
        other => panic!("expected CorruptRecord, got {other:?}"),
    }
    assert_eq!(fs::read(&t.path).unwrap(), before, "the file is untouched");
}

#[test]
fn damaged_length_field_does_not_hide_valid_batches_behind_it() {
    let t = temp_store();
    let s = Uuid::new_v4();
    let first_batch = {
        let store = open_exact(&t.path);
        append_each(&store, &[s]);
        let end = file_len(&t.path);
        append_each(&store, &[s, s]);
        store.close().unwrap();
        end
    };
    // The batch length field (bytes 4..8 of the second batch header): claim it runs to EOF.
    let mut bytes = fs::read(&t.path).unwrap();
    let at = first_batch as usize + 4;
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&t.path, &bytes).unwrap();
    assert!(matches!(
        Store::open(&t.path),
        Err(Error::CorruptRecord { position: 1, .. })
    ));
    assert_eq!(fs::read(&t.path).unwrap(), bytes);
}

#[test]
fn a_multi_event_batch_vanishes_whole_at_every_cut_point() {
    let t = temp_store();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (kept, kept_len) = {
        let store = open_exact(&t.path);
        let kept = store
            .append(
                a,
                ExpectedVersion::NoStream,
                vec![event("A1", b"one"), event("A2", b"two")],
            )
            .unwrap();
        let kept_len = file_len(&t.path);
        store
            .append(
                b,
                ExpectedVersion::NoStream,
                vec![
                    event("B1", &[1; 300]),
                    event("B2", &[2; 5]),
                    event("B3", &[3; 70]),
                ],
            )
            .unwrap();
        store.close().unwrap();
        (kept, kept_len)
    };
    let full = fs::read(&t.path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for cut in kept_len as usize..full.len() {
        let path = dir.path().join(format!("cut-{cut}.store"));
        fs::write(&path, &full[..cut]).unwrap();
        let store = Store::open(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(all(&store), kept, "cut at {cut}");
        assert_eq!(store.stream_version(&b), None, "cut at {cut}");
        assert_eq!(file_len(&path), kept_len, "cut at {cut}");
        store
            .append(b, ExpectedVersion::NoStream, vec![event("Again", b"")])
            .unwrap();
        store.close().unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.global_position(), 3, "cut at {cut}");
        drop(store);
        fs::remove_file(&path).unwrap();
    }
}

/// The file bytes of the store's only batch, from a store with its own salt.
fn batch_bytes_of_fresh_store(events: usize) -> Vec<u8> {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    let batch: Vec<_> = (0..events)
        .map(|i| event("Forged", format!("{i}").as_bytes()))
        .collect();
    store.append(s, ExpectedVersion::Any, batch).unwrap();
    store.close().unwrap();
    fs::read(&t.path).unwrap()[FILE_HEADER_LEN..].to_vec()
}

#[test]
fn a_batch_inside_a_payload_is_never_taken_for_a_real_one() {
    let t = temp_store();
    let s = Uuid::new_v4();
    // Another file's batch, placed after two events: its positions would fit next.
    let foreign = batch_bytes_of_fresh_store(3);
    let (written, before_last) = {
        let store = open_exact(&t.path);
        let mut written = append_each(&store, &[s, s]);
        // This file's own batches, copied into a payload: right salt, stale positions.
        let own = fs::read(&t.path).unwrap()[FILE_HEADER_LEN..].to_vec();
        let before_last = file_len(&t.path);
        let mut payload = foreign.clone();
        payload.extend_from_slice(&own);
        payload.extend_from_slice(&[0xEE; 64]);
        written.extend(
            store
                .append(
                    s,
                    ExpectedVersion::Exact(1),
                    vec![event("Carrier", &payload)],
                )
                .unwrap(),
        );
        store.close().unwrap();
        (written, before_last)
    };
    // Intact: the carrier is read back as one event, nothing else appears.
    let store = Store::open(&t.path).unwrap();
    assert_eq!(all(&store), written);
    drop(store);
    // Torn after the embedded batches: the carrier is dropped, no forged event appears,
    // and the embedded batches are not taken as evidence of damage.
    let full = fs::read(&t.path).unwrap();
    for cut in [full.len() - 1, full.len() - 70, before_last as usize + 200] {
        fs::write(&t.path, &full[..cut]).unwrap();
        let store = Store::open(&t.path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(all(&store), written[..2].to_vec(), "cut at {cut}");
        assert_eq!(file_len(&t.path), before_last);
    }
}

#[test]
fn empty_or_partially_created_files_open_as_new_stores() {
    let header = codec::encode_file_header(1234);
    for content in [
        &[][..],
        &header[..3],
        &header[..8],
        &header[..31],
        &[0u8; 32][..],
    ] {
        let t = temp_store();
        fs::write(&t.path, content).unwrap();
        let store = Store::open(&t.path).unwrap_or_else(|e| panic!("{content:?}: {e}"));
        assert_eq!(store.global_position(), 0);
        store
            .append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("A", b"")])
            .unwrap();
        drop(store);
        let bytes = fs::read(&t.path).unwrap();
        assert_eq!(&bytes[..8], &codec::encode_header());
        assert_eq!(Store::open(&t.path).unwrap().global_position(), 1);
    }
}

#[test]
fn files_that_are_not_stores_are_refused_untouched() {
    let mut wrong_version = codec::encode_file_header(5).to_vec();
    wrong_version[6] = 9;
    wrong_version.extend_from_slice(&[0; 100]);
    let mut bad_header_crc = codec::encode_file_header(5).to_vec();
    bad_header_crc[12] ^= 1;
    bad_header_crc.extend_from_slice(&[1; 100]);
    // Issue 9, defect 4: the message names the path and the cause.
    let cases: [(&[u8], String); 4] = [
        (
            b"hello, this is not an event store at all",
            "not an event store".into(),
        ),
        (b"SQLite format 3\0", "not an event store".into()),
        (
            &wrong_version,
            "a store of newer format version 9; this library reads format versions 1 and 2".into(),
        ),
        (&bad_header_crc, "damaged header (checksum mismatch)".into()),
    ];
    for (content, cause) in cases {
        let t = temp_store();
        fs::write(&t.path, content).unwrap();
        let r = Store::open(&t.path);
        match &r {
            Err(e @ Error::InvalidHeader { path, .. }) => {
                assert_eq!(path, &t.path);
                let text = e.to_string();
                assert!(text.contains(&t.path.display().to_string()), "{text}");
                assert!(text.contains(&cause), "{text} (want {cause})");
            }
            other => panic!("{content:?}: {other:?}"),
        }
        assert_eq!(fs::read(&t.path).unwrap(), content);
    }
}

#[test]
fn close_cuts_preallocated_space_and_reopen_sees_exact_data() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    append_each(&store, &[Uuid::new_v4()]);
    let data_end = {
        let bytes = fs::read(&t.path).unwrap();
        // While open, the file may be longer than its data (preallocation).
        assert!(bytes.len() >= FILE_HEADER_LEN);
        bytes.len()
    };
    store.close().unwrap();
    let closed = file_len(&t.path);
    assert!(closed as usize <= data_end);
    let reopened = Store::open(&t.path).unwrap();
    assert_eq!(reopened.global_position(), 1);
    assert_eq!(
        file_len(&t.path),
        closed,
        "a clean file is not changed by open"
    );
}

#[test]
fn a_second_open_in_this_process_is_locked_out_until_close() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    append_each(&store, &[Uuid::new_v4()]);
    match Store::open(&t.path) {
        Err(e @ Error::Locked { .. }) => assert!(e.to_string().contains("events.store")),
        other => panic!("{other:?}"),
    }
    // Another path to the same file.
    let other_path = t.dir.path().join(".").join("events.store");
    assert!(matches!(
        Store::open(&other_path),
        Err(Error::Locked { .. })
    ));
    let link = t.dir.path().join("hard-link.store");
    fs::hard_link(&t.path, &link).unwrap();
    assert!(matches!(Store::open(&link), Err(Error::Locked { .. })));
    // The failed opens did not disturb the first handle.
    append_each(&store, &[Uuid::new_v4()]);
    drop(store);
    assert_eq!(Store::open(&link).unwrap().global_position(), 2);
}

/// Issue 9, defect 3: what recovery cut off is reported by `Store::info()`, for the
/// issue's two cases: 100 garbage bytes appended, and `cat a.store b.store > c.store`
/// (b's batches carry another salt, so they are not c's).
#[test]
fn info_reports_what_recovery_cut_off() {
    let a = temp_store();
    let s = Uuid::new_v4();
    {
        let store = Store::open(&a.path).unwrap();
        append_each(&store, &[s, s, Uuid::new_v4()]);
        let info = store.info();
        assert_eq!(info.event_count, 3);
        assert_eq!(info.stream_count, 2);
        assert_eq!(info.recovered_bytes_dropped, 0);
        assert!(!info.poisoned && !info.read_only);
        assert_eq!(info.format_version, codec::FORMAT_VERSION);
        assert!(info.index_bytes > 0);
        store.close().unwrap();
    }
    let a_bytes = fs::read(&a.path).unwrap();
    assert_eq!(
        Store::open(&a.path).unwrap().info().data_bytes,
        a_bytes.len() as u64
    );

    let garbage = temp_store();
    fs::write(&garbage.path, [&a_bytes[..], &[0x67; 100]].concat()).unwrap();
    let store = Store::open(&garbage.path).unwrap();
    let info = store.info();
    assert_eq!(info.recovered_bytes_dropped, 100);
    assert_eq!(info.event_count, 3);
    assert_eq!(info.data_bytes, a_bytes.len() as u64);
    drop(store);
    assert_eq!(
        Store::open(&garbage.path)
            .unwrap()
            .info()
            .recovered_bytes_dropped,
        0
    );

    let b = temp_store();
    {
        let store = Store::open(&b.path).unwrap();
        append_each(&store, &[Uuid::new_v4(), Uuid::new_v4()]);
        store.close().unwrap();
    }
    let b_bytes = fs::read(&b.path).unwrap();
    let c = temp_store();
    fs::write(&c.path, [&a_bytes[..], &b_bytes[..]].concat()).unwrap();
    let store = Store::open(&c.path).unwrap();
    let info = store.info();
    assert_eq!(info.recovered_bytes_dropped, b_bytes.len() as u64);
    assert_eq!(info.event_count, 3);
    store.close().unwrap();
    assert_eq!(fs::read(&c.path).unwrap(), a_bytes);
}

/// A store file extended sparsely far past its data (`truncate -s`, a file system's
/// crash) opens by reading its data, not its holes: they read as zeros and hold no
/// batch header, so the search for a later write skips them (`SEEK_DATA`). Before, an
/// 8 GiB hole was read whole (a 20 GiB one took the writer's open 9 s, a reader's 25 s).
#[test]
fn a_sparse_tail_is_skipped_not_read() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    struct Counting {
        file: fs::File,
        read: Arc<AtomicU64>,
    }
    impl eventstore::store::io::StorageFile for Counting {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
            let n = std::os::unix::fs::FileExt::read_at(&self.file, buf, offset)?;
            self.read.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<usize> {
            std::os::unix::fs::FileExt::write_at(&self.file, buf, offset)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            self.file.sync_data()
        }
        fn sync_all(&self) -> std::io::Result<()> {
            self.file.sync_all()
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.file.set_len(len)
        }
        fn file_len(&self) -> std::io::Result<u64> {
            Ok(self.file.metadata()?.len())
        }
        fn as_file(&self) -> Option<&fs::File> {
            Some(&self.file)
        }
    }

    let t = temp_store();
    let s = Uuid::new_v4();
    {
        let store = open_exact(&t.path);
        append_each(&store, &[s, s, s]);
    }
    let data = file_len(&t.path);
    OpenOptions::new()
        .write(true)
        .open(&t.path)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let read = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&read);
    let store = Store::open_with(
        &t.path,
        eventstore::OpenOptions::new()
            .preallocate(false)
            .storage(move |file| {
                Box::new(Counting {
                    file,
                    read: counter,
                })
            }),
    )
    .unwrap();
    assert_eq!(store.global_position(), 3);
    assert!(
        read.load(Ordering::Relaxed) < 16 << 20,
        "{} bytes read to open a store of {data} bytes and an 8 GiB hole",
        read.load(Ordering::Relaxed)
    );
    drop(store);
    assert_eq!(
        file_len(&t.path),
        data,
        "the hole was cut off as a torn tail"
    );
}
