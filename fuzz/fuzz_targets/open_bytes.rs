//! `Store::open` on arbitrary file bytes, held in memory behind the `StorageFile` seam.
//! No panic, no hang, no allocation beyond what the bytes themselves justify; when the
//! open succeeds, every read works.
#![no_main]

use std::io;
use std::sync::{Arc, RwLock};

use eventstore::store::io::StorageFile;
use eventstore::{OpenOptions, Store};
use libfuzzer_sys::fuzz_target;

#[derive(Clone)]
struct MemFile(Arc<RwLock<Vec<u8>>>);

impl StorageFile for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let d = self.0.read().unwrap();
        let start = (offset as usize).min(d.len());
        let n = buf.len().min(d.len() - start);
        buf[..n].copy_from_slice(&d[start..start + n]);
        Ok(n)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let mut d = self.0.write().unwrap();
        let end = offset as usize + buf.len();
        if d.len() < end {
            d.resize(end, 0);
        }
        d[offset as usize..end].copy_from_slice(buf);
        Ok(buf.len())
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn sync_all(&self) -> io::Result<()> {
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.write().unwrap().resize(len as usize, 0);
        Ok(())
    }
    fn file_len(&self) -> io::Result<u64> {
        Ok(self.0.read().unwrap().len() as u64)
    }
}

fn lock_path() -> std::path::PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("es-fuzz-{}.lock", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let mem = MemFile(Arc::new(RwLock::new(data.to_vec())));
    let m = mem.clone();
    let opened = Store::open_with(
        &lock_path(),
        OpenOptions::new().storage(move |_file| Box::new(m) as Box<dyn StorageFile>),
    );
    let Ok(store) = opened else {
        // A failed open leaves the bytes as they were.
        assert!(mem.0.read().unwrap().as_slice() == data);
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
