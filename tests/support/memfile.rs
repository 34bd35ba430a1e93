//! An in-memory [`StorageFile`]: lets a test open a store on bytes it built (a crash
//! image, hostile bytes) without writing a file, and see what the store did to them.

use std::io;
use std::sync::{Arc, RwLock};

use eventstore::store::io::StorageFile;
use eventstore::{OpenOptions, Store};

#[derive(Clone, Default)]
pub struct MemFile(pub Arc<RwLock<Vec<u8>>>);

impl MemFile {
    pub fn new(bytes: Vec<u8>) -> MemFile {
        MemFile(Arc::new(RwLock::new(bytes)))
    }
    pub fn bytes(&self) -> Vec<u8> {
        self.0.read().unwrap().clone()
    }
}

impl StorageFile for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let data = self.0.read().unwrap();
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let mut data = self.0.write().unwrap();
        let end = offset as usize + buf.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[offset as usize..end].copy_from_slice(buf);
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

/// Opens a store whose file holds `mem`'s bytes; `lock_path` only carries the lock.
pub fn open_mem(lock_path: &std::path::Path, mem: &MemFile) -> Result<Store, eventstore::Error> {
    let m = mem.clone();
    Store::open_with(
        lock_path,
        OpenOptions::new().storage(move |_file| Box::new(m) as Box<dyn StorageFile>),
    )
}
