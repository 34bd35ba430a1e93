//! The side file `<path>-shm`: how the writer tells other handles, in any process,
//! how far the log is durable, and wakes the ones waiting for more.
//!
//! One 4096-byte page, mapped shared (layout in `docs/format.md`): a magic, the store's
//! salt (binding the page to its log), the writer's generation, the durable end offset
//! and event count under a sequence counter (so that a reader never pairs an end with
//! another publish's count), and a 32-bit wake word. After each `fdatasync` the writer
//! publishes the new end, increments the wake word and `futex`-wakes it; readers
//! `futex`-wait on it. The page is never shrunk nor recreated while it exists, so that
//! a mapping outlives writers (no `SIGBUS`) and every generation of writers wakes the
//! same word.
//!
//! Whether a writer is live is told by an OFD lock the writer holds on one byte of the
//! *store file*, far past any data (`LIVE_MARK`); `F_OFD_GETLK` tests it without taking
//! it, from a read-only descriptor, and the kernel drops it when the writer's process
//! dies. It is on the store file rather than on the side file so that a reader can tell
//! a live writer even when no side file could be created.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// Size of the side file and of its mapping.
pub const PAGE: usize = 4096;
pub const MAGIC: [u8; 8] = *b"EVSTSHM\0";
pub const LAYOUT_VERSION: u32 = 1;

const AT_MAGIC: usize = 0;
const AT_VERSION: usize = 8;
const AT_PAGE: usize = 12;
const AT_SALT: usize = 16;
const AT_GENERATION: usize = 24;
const AT_SEQ: usize = 32;
const AT_END: usize = 40;
const AT_COUNT: usize = 48;
const AT_WAKE: usize = 56;

/// The byte of the store file on which a live writer holds an OFD write lock.
pub const LIVE_MARK: i64 = 1 << 62;

/// The side file's path for a store at `path`.
pub fn side_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push("-shm");
    PathBuf::from(s)
}

/// Removes the side file of a store that no handle has open and that nobody follows (a
/// private temporary store about to be renamed or deleted). Never used on a store
/// others may follow: a reader that outlives the writer keeps waiting on the page it
/// mapped, which a new writer must find at the same path.
pub(crate) fn remove_side_file(path: &Path) {
    let _ = std::fs::remove_file(side_path(path));
}

/// What a side file says, read consistently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub salt: u64,
    pub generation: u64,
    /// End of the durable data: readers may read up to here.
    pub end: u64,
    /// Number of events in the durable data.
    pub count: u64,
}

/// A mapped side file.
#[derive(Debug)]
pub struct SideFile {
    map: *mut u8,
    writable: bool,
    _file: File,
}

// SAFETY: the mapping is only accessed through atomics (fields read and written
// concurrently by other threads and processes) or, before it is shared, by its
// creator; the pointer stays valid until `Drop` unmaps it.
unsafe impl Send for SideFile {}
// SAFETY: as above.
unsafe impl Sync for SideFile {}

impl Drop for SideFile {
    fn drop(&mut self) {
        // SAFETY: `map` is the start of a `PAGE`-byte mapping made by `map_page` and not
        // unmapped before; no reference into it outlives `self`.
        unsafe {
            libc::munmap(self.map.cast(), PAGE);
        }
    }
}

fn map_page(file: &File, writable: bool) -> io::Result<*mut u8> {
    let prot = if writable {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    // SAFETY: a fresh shared mapping of the first page of a file at least `PAGE` long
    // (checked by the callers); the kernel picks the address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            prot,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

impl SideFile {
    fn u32_at(&self, at: usize) -> &AtomicU32 {
        debug_assert!(at.is_multiple_of(4) && at + 4 <= PAGE);
        // SAFETY: `at` is 4-aligned inside the page-aligned mapping, which lives as
        // long as `self`; every access to shared words is atomic.
        unsafe { &*self.map.add(at).cast::<AtomicU32>() }
    }

    fn u64_at(&self, at: usize) -> &AtomicU64 {
        debug_assert!(at.is_multiple_of(8) && at + 8 <= PAGE);
        // SAFETY: as in `u32_at`, 8-aligned.
        unsafe { &*self.map.add(at).cast::<AtomicU64>() }
    }

    /// The word readers wait on; it changes after every publish.
    pub fn wake_word(&self) -> &AtomicU32 {
        self.u32_at(AT_WAKE)
    }

    fn has_magic(&self) -> bool {
        let lo = self.u64_at(AT_MAGIC).load(Ordering::Acquire);
        lo == u64::from_le_bytes(MAGIC)
            && self.u32_at(AT_VERSION).load(Ordering::Acquire) == LAYOUT_VERSION
    }

    /// Opens (creating it if needed, with the store's permissions and owner) and
    /// maps the side file of the store whose open file is `store`, as its writer, and
    /// publishes `end` and `count` as a new generation. Called before the writer takes
    /// its live mark, so that a reader that sees the mark finds the page ready.
    pub fn open_for_writer(
        path: &Path,
        store: &File,
        salt: u64,
        end: u64,
        count: u64,
    ) -> io::Result<SideFile> {
        let meta = store.metadata()?;
        let mode = meta.permissions().mode() & 0o666;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode)
            .open(path)?;
        let own = file.metadata()?;
        if own.len() == 0 {
            // New: the store's permissions whatever the umask, and (when running as
            // root for another user's store) the store's owner, so that the store's
            // own writer can open it later. Best effort: a failure leaves a side
            // file that still works for this writer.
            let _ = file.set_permissions(std::fs::Permissions::from_mode(mode));
            // SAFETY: plain system call on an open descriptor.
            if unsafe { libc::geteuid() } == 0
                && (own.uid() != meta.uid() || own.gid() != meta.gid())
            {
                let _ = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()));
            }
        }
        if own.len() < PAGE as u64 {
            // Never shrunk: only grown to the page (another writer's readers may map it).
            file.set_len(PAGE as u64)?;
        }
        let side = SideFile {
            map: map_page(&file, true)?,
            writable: true,
            _file: file,
        };
        let previous = if side.has_magic() {
            side.u64_at(AT_GENERATION).load(Ordering::Relaxed)
        } else {
            0
        };
        let seq = side.u32_at(AT_SEQ);
        // A writer that died in the middle of a publish left the counter odd.
        let s = seq.load(Ordering::Relaxed) & !1;
        seq.store(s + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        side.u64_at(AT_MAGIC)
            .store(u64::from_le_bytes(MAGIC), Ordering::Relaxed);
        side.u32_at(AT_VERSION)
            .store(LAYOUT_VERSION, Ordering::Relaxed);
        side.u32_at(AT_PAGE).store(PAGE as u32, Ordering::Relaxed);
        side.u64_at(AT_SALT).store(salt, Ordering::Relaxed);
        side.u64_at(AT_GENERATION)
            .store(previous.wrapping_add(1), Ordering::Relaxed);
        side.u64_at(AT_END).store(end, Ordering::Relaxed);
        side.u64_at(AT_COUNT).store(count, Ordering::Relaxed);
        seq.store(s + 2, Ordering::Release);
        side.bump();
        Ok(side)
    }

    /// Maps an existing side file for reading; `None` when there is none yet, it is
    /// shorter than a page (a writer is creating it), or it is not a regular file.
    pub fn open_for_reader(path: &Path) -> io::Result<Option<SideFile>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.is_file() || meta.len() < PAGE as u64 {
            return Ok(None);
        }
        Ok(Some(SideFile {
            map: map_page(&file, false)?,
            writable: false,
            _file: file,
        }))
    }

    /// What the page says, read consistently; `None` when it holds no valid page
    /// (not initialised, or a writer died in the middle of a publish and none is
    /// live to finish it: the caller decides by liveness).
    pub fn read(&self) -> Option<Published> {
        let seq = self.u32_at(AT_SEQ);
        for attempt in 0..10_000 {
            let s1 = seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                if !self.has_magic() {
                    return None;
                }
                let p = Published {
                    salt: self.u64_at(AT_SALT).load(Ordering::Relaxed),
                    generation: self.u64_at(AT_GENERATION).load(Ordering::Relaxed),
                    end: self.u64_at(AT_END).load(Ordering::Relaxed),
                    count: self.u64_at(AT_COUNT).load(Ordering::Relaxed),
                };
                fence(Ordering::Acquire);
                if seq.load(Ordering::Relaxed) == s1 {
                    return Some(p);
                }
            }
            if attempt > 16 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        None
    }

    /// Publishes a new durable end (writer only) and wakes every waiter, in every
    /// process. Called after the `fdatasync` that made the data durable.
    pub fn publish(&self, end: u64, count: u64) {
        debug_assert!(self.writable);
        if self.u64_at(AT_END).load(Ordering::Relaxed) == end
            && self.u64_at(AT_COUNT).load(Ordering::Relaxed) == count
        {
            return;
        }
        let seq = self.u32_at(AT_SEQ);
        let s = seq.load(Ordering::Relaxed);
        seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.u64_at(AT_END).store(end, Ordering::Relaxed);
        self.u64_at(AT_COUNT).store(count, Ordering::Relaxed);
        seq.store(s.wrapping_add(2), Ordering::Release);
        self.bump();
    }

    /// Changes the wake word and wakes its waiters.
    fn bump(&self) {
        let w = self.wake_word();
        w.fetch_add(1, Ordering::Release);
        futex_wake(w, true);
    }
}

/// Takes the live mark: an OFD write lock on `LIVE_MARK` of the store file, held until
/// every descriptor of this open file is closed (or the process dies).
pub fn hold_live_mark(store: &File) -> io::Result<()> {
    let mut lock = live_lock(libc::F_WRLCK);
    // SAFETY: fcntl on an open descriptor with a valid `flock` structure.
    let r = unsafe { libc::fcntl(store.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether another open file description (a writer, in any process) holds the live
/// mark of the store. Works on a read-only descriptor; takes nothing.
pub fn writer_is_live(store: &File) -> io::Result<bool> {
    let mut lock = live_lock(libc::F_WRLCK);
    // SAFETY: fcntl on an open descriptor with a valid `flock` structure, which the
    // kernel overwrites with the conflicting lock, if any.
    let r = unsafe { libc::fcntl(store.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(i32::from(lock.l_type) != libc::F_UNLCK)
}

fn live_lock(kind: i32) -> libc::flock {
    // SAFETY: `flock` is plain data; all-zero is a valid value (l_pid must be 0 for
    // OFD locks).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = LIVE_MARK;
    lock.l_len = 1;
    lock
}

// ---------------------------------------------------------------------------------
// Futexes

/// Wakes every thread waiting on `word`; `shared`: waiters may be in other processes
/// (a word of a shared mapping), else only in this one.
pub fn futex_wake(word: &AtomicU32, shared: bool) {
    let op = if shared {
        libc::FUTEX_WAKE
    } else {
        libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG
    };
    // SAFETY: FUTEX_WAKE only uses the address as a key; `word` is a live, aligned u32.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), op, i32::MAX);
    }
}

#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

const SYS_FUTEX_WAITV: libc::c_long = 449;
const FUTEX2_SIZE_U32: u32 = 0x02;
const FUTEX2_PRIVATE: u32 = 128;

static NO_WAITV: AtomicU32 = AtomicU32::new(0);

/// Sleeps until one of the words differs from the value given with it, one is woken,
/// or `deadline` passes (spurious returns are possible: callers re-check). `shared`:
/// a word of the side file (any process), or `None`; `local`: a word of this process.
pub fn futex_wait(
    shared: Option<(&AtomicU32, u32)>,
    local: (&AtomicU32, u32),
    deadline: Option<Instant>,
) {
    let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    if remaining.is_some_and(|r| r.is_zero()) {
        return;
    }
    if let Some((word, val)) = shared {
        if NO_WAITV.load(Ordering::Relaxed) == 0 {
            let waiters = [
                FutexWaitv {
                    val: u64::from(val),
                    uaddr: word.as_ptr() as u64,
                    flags: FUTEX2_SIZE_U32,
                    reserved: 0,
                },
                FutexWaitv {
                    val: u64::from(local.1),
                    uaddr: local.0.as_ptr() as u64,
                    flags: FUTEX2_SIZE_U32 | FUTEX2_PRIVATE,
                    reserved: 0,
                },
            ];
            let abs = remaining.map(|r| {
                let mut now = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: writes the current monotonic time into `now`.
                unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
                let total = now.tv_nsec as u64 + u64::from(r.subsec_nanos());
                libc::timespec {
                    tv_sec: now
                        .tv_sec
                        .saturating_add(r.as_secs().min(i64::MAX as u64 / 2) as libc::time_t)
                        + (total / 1_000_000_000) as libc::time_t,
                    tv_nsec: (total % 1_000_000_000) as libc::c_long,
                }
            });
            let ts = abs
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `waiters` is a valid array of two futex_waitv entries whose
            // addresses are live aligned u32s; `ts` is NULL or a valid absolute
            // CLOCK_MONOTONIC time.
            let r = unsafe {
                libc::syscall(
                    SYS_FUTEX_WAITV,
                    waiters.as_ptr(),
                    2u32,
                    0u32,
                    ts,
                    libc::CLOCK_MONOTONIC,
                )
            };
            if r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                NO_WAITV.store(1, Ordering::Relaxed);
            } else {
                return;
            }
        }
        // Kernels before 5.16 have no futex_waitv: wait on the shared word, in short
        // steps so that a wake of this handle (`local`) is seen within 10 ms.
        let step = std::time::Duration::from_millis(10);
        wait_one(
            word,
            val,
            true,
            Some(remaining.map_or(step, |r| r.min(step))),
        );
        return;
    }
    wait_one(local.0, local.1, false, remaining);
}

fn wait_one(word: &AtomicU32, val: u32, shared: bool, timeout: Option<std::time::Duration>) {
    let op = if shared {
        libc::FUTEX_WAIT
    } else {
        libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG
    };
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64 / 2) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let tp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live aligned u32; `tp` is NULL or a valid relative timeout.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, tp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_publishes_consistently_and_survives_a_new_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store_path = dir.path().join("s");
        let store = File::create(&store_path).unwrap();
        let path = side_path(&store_path);
        assert!(SideFile::open_for_reader(&path).unwrap().is_none());
        let w = SideFile::open_for_writer(&path, &store, 7, 32, 0).unwrap();
        let r = SideFile::open_for_reader(&path).unwrap().unwrap();
        let first = r.read().unwrap();
        assert_eq!((first.salt, first.end, first.count), (7, 32, 0));
        let word = r.wake_word().load(Ordering::Acquire);
        w.publish(100, 3);
        assert_ne!(r.wake_word().load(Ordering::Acquire), word);
        assert_eq!(r.read().unwrap().end, 100);
        drop(w);
        let w2 = SideFile::open_for_writer(&path, &store, 7, 100, 3).unwrap();
        let again = r.read().unwrap();
        assert_eq!(again.generation, first.generation + 1);
        assert_eq!((again.end, again.count), (100, 3));
        drop(w2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), PAGE as u64);
    }

    #[test]
    fn the_live_mark_is_seen_from_another_descriptor_and_released_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let writer = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .unwrap();
        let reader = File::open(&p).unwrap();
        assert!(!writer_is_live(&reader).unwrap());
        hold_live_mark(&writer).unwrap();
        assert!(writer_is_live(&reader).unwrap());
        drop(writer);
        assert!(!writer_is_live(&reader).unwrap());
    }

    #[test]
    fn a_waiter_wakes_on_a_bump_and_times_out_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let store_path = dir.path().join("s");
        let store = File::create(&store_path).unwrap();
        let w = SideFile::open_for_writer(&side_path(&store_path), &store, 1, 32, 0).unwrap();
        let local = AtomicU32::new(0);
        let t0 = Instant::now();
        let v = w.wake_word().load(Ordering::Acquire);
        futex_wait(
            Some((w.wake_word(), v)),
            (&local, 0),
            Some(t0 + std::time::Duration::from_millis(30)),
        );
        assert!(t0.elapsed() >= std::time::Duration::from_millis(25));
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                w.publish(64, 1);
            });
            let t1 = Instant::now();
            futex_wait(Some((w.wake_word(), v)), (&local, 0), None);
            assert!(t1.elapsed() < std::time::Duration::from_secs(5));
        });
    }
}
