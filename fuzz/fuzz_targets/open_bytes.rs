//! `Store::open` on arbitrary file bytes, held in memory behind the `StorageFile` seam.
//! No panic, no hang, no allocation beyond what the bytes themselves justify; when the
//! open succeeds, every read works.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The same in-memory file the integration tests use.
#[allow(dead_code)]
#[path = "../../tests/support/memfile.rs"]
mod memfile;

use memfile::{open_mem, MemFile};

fn lock_path() -> std::path::PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("es-fuzz-{}.lock", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let mem = MemFile::new(data.to_vec());
    let Ok(store) = open_mem(&lock_path(), &mem) else {
        // A failed open leaves the bytes as they were.
        assert!(mem.bytes() == data);
        return;
    };
    let all = store
        .read_all(0, u64::MAX)
        .expect("read_all of an opened store");
    assert_eq!(all.len() as u64, store.global_position());
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.global_position, i as u64);
        let stream = store
            .read_stream(e.stream_id, 0, u64::MAX)
            .expect("read_stream");
        assert_eq!(stream[e.stream_version as usize], *e);
    }
    let _ = store.index_stats();
    store.close().expect("close");
});
