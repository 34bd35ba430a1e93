//! The file seam: every byte the store reads or writes, and every sync, goes through
//! [`StorageFile`]. Production uses `std::fs::File`; tests wrap it to inject faults
//! (a failed Nth write or fsync, a short write) or to record unsynced writes and build
//! crash images from them.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Positioned I/O on the store's file. Implementations must be usable from many
/// threads at once: reads happen concurrently with one writer.
pub trait StorageFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; may return fewer (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes up to `buf.len()` bytes at `offset`; may write fewer.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// `fdatasync`: data, and the file size when it changed, reach stable storage.
    fn sync_data(&self) -> io::Result<()>;
    /// `fsync`: data and all metadata reach stable storage.
    fn sync_all(&self) -> io::Result<()>;
    /// `ftruncate`: sets the file's length, dropping or zero-extending.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's current length.
    fn file_len(&self) -> io::Result<u64>;
    /// The file itself when this is a plain file, so that bytes can be copied from it
    /// inside the kernel (`copy_file_range`: `Store::backup_to`); `None` (the default)
    /// for a wrapper, whose bytes are then read through `read_at`.
    fn as_file(&self) -> Option<&File> {
        None
    }
}

impl StorageFile for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        FileExt::write_at(self, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn file_len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn as_file(&self) -> Option<&File> {
        Some(self)
    }
}

/// Fills `buf` from `offset`, retrying short reads; end of file first is an error.
pub fn read_exact_at(
    file: &dyn StorageFile,
    mut buf: &mut [u8],
    mut offset: u64,
) -> io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file ends before byte offset {}", offset + buf.len() as u64),
                ))
            }
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `buf` at `offset`, retrying short writes; a write of 0 bytes is an error.
pub fn write_all_at(file: &dyn StorageFile, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write_at(buf, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "write returned 0 bytes",
                ))
            }
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes a directory entry durable: after creating a file, its name survives a crash
/// only once the directory itself is synced.
pub fn sync_dir(dir: &std::path::Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Renames `from` to `to` only if nothing is at `to` (`renameat2` with
/// `RENAME_NOREPLACE`): a copy built under a temporary name (backup, salvage, import)
/// never replaces a file that appeared at its destination meanwhile, such as a store an
/// application created there, whose writer would then go on appending to a file no
/// longer reachable by its name. `AlreadyExists` when something is there. On a file
/// system without that call, `link` then `unlink` give the same guarantee; where
/// neither exists, a plain rename after a last look.
pub fn rename_new(from: &std::path::Path, to: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &std::path::Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path holds a NUL byte"))
    };
    let (src, dst) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths, relative to the working directory.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            src.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
        return Err(e);
    }
    match std::fs::hard_link(from, to) {
        Ok(()) => std::fs::remove_file(from),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) if std::fs::symlink_metadata(to).is_ok() => {
            Err(io::Error::from_raw_os_error(libc::EEXIST))
        }
        Err(_) => std::fs::rename(from, to),
    }
}

#[cfg(test)]
mod tests {
    use super::rename_new;

    #[test]
    fn rename_new_never_replaces_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"built").unwrap();
        std::fs::write(&b, b"theirs").unwrap();
        let e = rename_new(&a, &b).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read(&a).unwrap(), b"built");
        assert_eq!(std::fs::read(&b).unwrap(), b"theirs");
        std::fs::remove_file(&b).unwrap();
        rename_new(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"built");
        assert!(!a.exists());
    }
}
