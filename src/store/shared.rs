//! The side file `<path>-shm`: how the writer tells other handles, in any process,
//! how far the log is durable, and wakes the ones waiting for more.
//!
//! One 4096-byte page, mapped shared (layout in `docs/format.md`): a magic, the store's
//! salt (binding the page to its log), the writer's generation, the durable end offset
//! and event count under a sequence counter (so that a reader never pairs an end with
//! another publish's count), and a 32-bit wake word. After each `fdatasync` the writer
//! publishes the new end, increments the wake word and `futex`-wakes it; readers
//! `futex`-wait on it. The page is read and written with `pread`/`pwrite`, never
//! through the mapping (a page truncated by someone else would be a `SIGBUS`); the
//! mapping only gives the wake word its futex address. Every generation of writers wakes the
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
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
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
/// The byte of the *side file* on which its live writer holds an OFD write lock, so
/// that a reader can tell the live writer's side file from a stale one left at another
/// name of the same store (a hard link) by an earlier writer: the publishing mark on
/// the store file says that the writer has a side file, not that it is this one.
pub const SIDE_MARK: i64 = 1 << 62;

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

/// One mapping of one side file. Its bytes are never loaded or stored from user space
/// (a file truncated under a mapping turns such an access into a `SIGBUS`): the page
/// is read and written with `pread`/`pwrite`, and the mapping only gives the wake
/// word an address for `futex`, which the kernel resolves itself (a truncated page
/// makes the futex call fail with `EFAULT`, never a signal).
#[derive(Debug)]
struct Mapping {
    map: *mut u8,
    file: File,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `map` is the start of a `PAGE`-byte mapping made by `map_page` and not
        // unmapped before; only its address was handed out (to futex calls), never a
        // reference into it.
        unsafe {
            libc::munmap(self.map.cast(), PAGE);
        }
    }
}

impl Mapping {
    fn word(&self) -> SharedWord {
        // SAFETY: `AT_WAKE` lies inside the mapping.
        SharedWord(unsafe { self.map.add(AT_WAKE) }.cast())
    }

    /// `N` bytes at `at`; `None` when the file is shorter (truncated) or unreadable.
    fn read<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        let mut b = [0u8; N];
        match FileExt::read_at(&self.file, &mut b, at as u64) {
            Ok(n) if n == N => Some(b),
            _ => None,
        }
    }

    fn read_u32(&self, at: usize) -> Option<u32> {
        self.read::<4>(at).map(u32::from_le_bytes)
    }

    fn write(&self, at: usize, bytes: &[u8]) -> io::Result<()> {
        FileExt::write_all_at(&self.file, bytes, at as u64)
    }
}

/// The address of a side file's wake word, for `futex` calls only (never dereferenced
/// in user space, see [`Mapping`]). Valid while its [`SideFile`] lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedWord(*const u32);

/// What a writer keeps of the page it publishes, to write it whole again.
#[derive(Debug)]
struct WriterPage {
    salt: u64,
    generation: u64,
    end: u64,
    count: u64,
    seq: u32,
    wake: u32,
    /// Mode and owner a recreated side file gets (the store's).
    mode: u32,
    owner: (u32, u32),
}

/// A side file, as mapped by a writer or a reader.
///
/// Someone else may delete, truncate, overwrite or replace the file meanwhile: the
/// writer notices at its next publish (an `fstat`) and writes the whole page again,
/// into a new file at the path if the old one was unlinked (waking the old file's
/// waiters so that they look again); a reader reads a short page as no page, and
/// when its file was unlinked maps the one now at the path. Every mapping is kept
/// until the `SideFile` is dropped, because a waiter may still sleep on an old one.
#[derive(Debug)]
pub struct SideFile {
    path: PathBuf,
    maps: Mutex<Vec<Arc<Mapping>>>,
    writer: Option<Mutex<WriterPage>>,
}

// SAFETY: the mappings are only accessed through `pread`/`pwrite` and used as futex
// addresses; the pointers stay valid until `Drop` unmaps them.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}
// SAFETY: a futex address, never dereferenced in user space.
unsafe impl Send for SharedWord {}
// SAFETY: as above.
unsafe impl Sync for SharedWord {}

fn map_page(file: File, writable: bool) -> io::Result<Mapping> {
    let prot = if writable {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    // SAFETY: a fresh shared mapping of the first page of a file; the kernel picks the
    // address. Its bytes are never accessed from user space (see `Mapping`), so a
    // file shorter than the page cannot fault this process.
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
    Ok(Mapping {
        map: p.cast(),
        file,
    })
}

/// Opens the side file at `path` for reading without blocking (a FIFO put there must
/// not hang the open) or following a symbolic link, and maps it; `None` when there is
/// none, it is shorter than a page (a writer is creating it), or it is not a regular
/// file.
fn map_for_reader(path: &Path) -> io::Result<Option<Mapping>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // A symbolic link, not followed: no side file, as for one that is no regular file.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() < PAGE as u64 {
        return Ok(None);
    }
    map_page(file, false).map(Some)
}

/// Opens (creating it with `mode` and `owner` if needed) the side file at `path` for
/// a writer, at least a page long, and maps it. A symbolic link there is not followed
/// (`ELOOP`: the writer runs without a side file): one planted in a shared directory
/// would have the writer, perhaps root, grow and overwrite the file it points to; a
/// store's own symbolic names are resolved before its side file is named.
fn map_for_writer(path: &Path, mode: u32, owner: (u32, u32)) -> io::Result<Mapping> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    let own = file.metadata()?;
    if !own.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if own.len() > 0 {
        // Someone else's file at the side file's name (another store named
        // `<this store>-shm`, say) is never written: only a side file, or the zeros of
        // one a writer died creating, is taken over.
        let mut head = [0u8; 8];
        let n = FileExt::read_at(&file, &mut head, 0)?;
        let foreign = head != [0; 8] && !(n == head.len() && head == MAGIC);
        if foreign {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "it holds something else than a side file (another store of that name?), \
                 which is left untouched",
            ));
        }
    }
    if own.len() == 0 {
        // New: the store's permissions whatever the umask, and (when running as
        // root for another user's store) the store's owner, so that the store's
        // own writer can open it later. Best effort: a failure leaves a side
        // file that still works for this writer.
        let _ = file.set_permissions(std::fs::Permissions::from_mode(mode));
        // SAFETY: plain system call.
        if unsafe { libc::geteuid() } == 0 && (own.uid(), own.gid()) != owner {
            let _ = std::os::unix::fs::fchown(&file, Some(owner.0), Some(owner.1));
        }
    }
    if own.len() < PAGE as u64 {
        // Never shrunk: only grown to the page (another writer's readers may map it).
        file.set_len(PAGE as u64)?;
    }
    // The side file's own mark: this file is the live writer's (see `SIDE_MARK`).
    hold_mark(&file, SIDE_MARK, 1)?;
    map_page(file, true)
}

impl SideFile {
    /// Whether a live writer holds this side file's mark (see [`SIDE_MARK`]): the
    /// file now in use is that writer's own.
    pub fn held_by_a_writer(&self) -> io::Result<bool> {
        marked(&self.current().file, SIDE_MARK)
    }

    fn current(&self) -> Arc<Mapping> {
        let maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(maps.last().expect("a side file has a mapping"))
    }

    fn push(&self, m: Mapping) -> Arc<Mapping> {
        let m = Arc::new(m);
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        maps.push(Arc::clone(&m));
        m
    }

    /// The wake word's address and its value now: wait on the pair. The address is
    /// that of the file now in use; see [`SideFile::is_current`].
    pub fn wake_word(&self) -> (SharedWord, u32) {
        let m = self.current();
        (m.word(), m.read_u32(AT_WAKE).unwrap_or(0))
    }

    /// Whether `word` is still the wake word of the file in use (a reader that moved
    /// to a replaced side file must not sleep on the old one's word).
    pub fn is_current(&self, word: SharedWord) -> bool {
        self.current().word() == word
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
        let owner = (meta.uid(), meta.gid());
        let m = map_for_writer(path, mode, owner)?;
        let valid =
            m.read::<8>(AT_MAGIC) == Some(MAGIC) && m.read_u32(AT_VERSION) == Some(LAYOUT_VERSION);
        let previous = if valid {
            m.read::<8>(AT_GENERATION).map_or(0, u64::from_le_bytes)
        } else {
            0
        };
        // A writer that died in the middle of a publish left the counter odd.
        let seq = m.read_u32(AT_SEQ).unwrap_or(0) & !1;
        let wake = m.read_u32(AT_WAKE).unwrap_or(0);
        let side = SideFile {
            path: path.to_path_buf(),
            maps: Mutex::new(vec![Arc::new(m)]),
            writer: Some(Mutex::new(WriterPage {
                salt,
                generation: previous.wrapping_add(1),
                end,
                count,
                seq,
                wake,
                mode,
                owner,
            })),
        };
        side.write_page()?;
        Ok(side)
    }

    /// Maps an existing side file for reading; `None` when there is none yet, it is
    /// shorter than a page (a writer is creating it), or it is not a regular file.
    pub fn open_for_reader(path: &Path) -> io::Result<Option<SideFile>> {
        Ok(map_for_reader(path)?.map(|m| SideFile {
            path: path.to_path_buf(),
            maps: Mutex::new(vec![Arc::new(m)]),
            writer: None,
        }))
    }

    /// What the page says, read consistently; `None` when it holds no valid page
    /// (not initialised, truncated, overwritten, or a writer died in the middle of a
    /// publish and none is live to finish it: the caller decides by liveness).
    pub fn read(&self) -> Option<Published> {
        if self.writer.is_none() {
            self.follow_replacement();
        }
        let m = self.current();
        for attempt in 0..10_000 {
            let s1 = m.read_u32(AT_SEQ)?;
            if s1 & 1 == 0 {
                let page = m.read::<64>(0)?;
                let s2 = m.read_u32(AT_SEQ)?;
                if s1 == s2 {
                    let u64_at = |at: usize| {
                        u64::from_le_bytes(page[at..at + 8].try_into().expect("8 bytes"))
                    };
                    let version =
                        u32::from_le_bytes(page[AT_VERSION..AT_VERSION + 4].try_into().ok()?);
                    if page[AT_MAGIC..AT_MAGIC + 8] != MAGIC || version != LAYOUT_VERSION {
                        return None;
                    }
                    return Some(Published {
                        salt: u64_at(AT_SALT),
                        generation: u64_at(AT_GENERATION),
                        end: u64_at(AT_END),
                        count: u64_at(AT_COUNT),
                    });
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

    /// A reader whose file was unlinked (deleted, or renamed over) maps the file now
    /// at the path, if there is one: a writer made it.
    fn follow_replacement(&self) {
        let m = self.current();
        let unlinked = m.file.metadata().map(|meta| meta.nlink() == 0);
        if unlinked.unwrap_or(false) {
            if let Ok(Some(new)) = map_for_reader(&self.path) {
                self.push(new);
            }
        }
    }

    /// Publishes a new durable end (writer only) and wakes every waiter, in every
    /// process. Called after the `fdatasync` that made the data durable. Never fails:
    /// the data is durable already; a side file that cannot be written leaves readers
    /// beside this writer refused (`read` finds no valid page), never misled.
    pub fn publish(&self, end: u64, count: u64) {
        let Some(writer) = &self.writer else {
            debug_assert!(false, "publish on a reader's side file");
            return;
        };
        {
            let mut page = writer.lock().unwrap_or_else(|p| p.into_inner());
            if page.end == end && page.count == count {
                return;
            }
            page.end = end;
            page.count = count;
        }
        let _ = self.write_page();
    }

    /// Writes the writer's whole page under the sequence counter, changes the wake
    /// word and wakes its waiters; first repairs the file if someone else shortened
    /// or unlinked it.
    fn write_page(&self) -> io::Result<()> {
        let writer = self.writer.as_ref().expect("writer");
        let mut page = writer.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..3 {
            let m = self.repaired(&page)?;
            let mut head = [0u8; 32];
            head[AT_MAGIC..AT_MAGIC + 8].copy_from_slice(&MAGIC);
            head[AT_VERSION..AT_VERSION + 4].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
            head[AT_PAGE..AT_PAGE + 4].copy_from_slice(&(PAGE as u32).to_le_bytes());
            head[AT_SALT..AT_SALT + 8].copy_from_slice(&page.salt.to_le_bytes());
            head[AT_GENERATION..AT_GENERATION + 8].copy_from_slice(&page.generation.to_le_bytes());
            let mut tail = [0u8; 16];
            tail[..8].copy_from_slice(&page.end.to_le_bytes());
            tail[8..].copy_from_slice(&page.count.to_le_bytes());
            // Separate writes, in this order: a reader that reads the counter, the
            // page, then the counter again, and finds it even and unchanged, read no
            // half-written page.
            page.seq = (page.seq & !1).wrapping_add(1);
            m.write(AT_SEQ, &page.seq.to_le_bytes())?;
            m.write(0, &head)?;
            m.write(AT_END, &tail)?;
            page.seq = page.seq.wrapping_add(1);
            m.write(AT_SEQ, &page.seq.to_le_bytes())?;
            page.wake = page.wake.wrapping_add(1);
            m.write(AT_WAKE, &page.wake.to_le_bytes())?;
            if wake_all(m.word().0, true) {
                return Ok(());
            }
            // The page vanished between the repair and the wake (truncated again):
            // repair and publish once more, so that no waiter misses this publish.
        }
        Ok(())
    }

    /// The writer's mapping, repaired: a file someone unlinked is replaced by a new
    /// one at the path (the old one's waiters are woken to look again), a shortened
    /// one grown back to its page.
    fn repaired(&self, page: &WriterPage) -> io::Result<Arc<Mapping>> {
        let m = self.current();
        let meta = m.file.metadata()?;
        if meta.nlink() == 0 {
            let new = self.push(map_for_writer(&self.path, page.mode, page.owner)?);
            wake_all(m.word().0, true);
            return Ok(new);
        }
        if meta.len() < PAGE as u64 {
            m.file.set_len(PAGE as u64)?;
        }
        Ok(m)
    }
}

/// Takes the live mark: an OFD write lock on `LIVE_MARK` of the store file, held until
/// every descriptor of this open file is closed (or the process dies); with
/// `publishes` (the writer has its side file) also on the byte after it, the
/// publishing mark, which tells readers that the side file at the path is this
/// writer's (a stale one it could not open must not be trusted).
pub fn hold_live_mark(store: &File, publishes: bool) -> io::Result<()> {
    hold_mark(store, LIVE_MARK, if publishes { 2 } else { 1 })
}

/// Takes an OFD write lock on `len` bytes at `at` of `file`, held until every
/// descriptor of this open file is closed (or the process dies).
fn hold_mark(file: &File, at: i64, len: i64) -> io::Result<()> {
    let mut lock = live_lock(libc::F_WRLCK, at);
    lock.l_len = len;
    // SAFETY: fcntl on an open descriptor with a valid `flock` structure.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether another open file description (a writer, in any process) holds the live
/// mark of the store. Works on a read-only descriptor; takes nothing.
pub fn writer_is_live(store: &File) -> io::Result<bool> {
    marked(store, LIVE_MARK)
}

/// Whether the live writer holds the publishing mark: it opened its side file, so
/// the one at the path is its own (see [`hold_live_mark`]).
pub fn writer_publishes(store: &File) -> io::Result<bool> {
    marked(store, LIVE_MARK + 1)
}

fn marked(store: &File, at: i64) -> io::Result<bool> {
    let mut lock = live_lock(libc::F_WRLCK, at);
    // SAFETY: fcntl on an open descriptor with a valid `flock` structure, which the
    // kernel overwrites with the conflicting lock, if any.
    let r = unsafe { libc::fcntl(store.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(i32::from(lock.l_type) != libc::F_UNLCK)
}

fn live_lock(kind: i32, at: i64) -> libc::flock {
    // SAFETY: `flock` is plain data; all-zero is a valid value (l_pid must be 0 for
    // OFD locks).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = at;
    lock.l_len = 1;
    lock
}

// ---------------------------------------------------------------------------------
// Futexes

/// Wakes every thread waiting on `word`; `shared`: waiters may be in other processes
/// (a word of a shared mapping), else only in this one.
pub fn futex_wake(word: &AtomicU32, shared: bool) {
    wake_all(word.as_ptr(), shared);
}

/// `FUTEX_WAKE` of every waiter on `word`; `false` when the kernel could not reach the
/// word (`EFAULT`: a side file truncated under its mapping).
fn wake_all(word: *const u32, shared: bool) -> bool {
    let op = if shared {
        libc::FUTEX_WAKE
    } else {
        libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG
    };
    // SAFETY: FUTEX_WAKE only uses the address as a key, resolved by the kernel (an
    // unbacked page is EFAULT, not a signal); `word` is aligned inside a live mapping
    // or a live u32.
    let r = unsafe { libc::syscall(libc::SYS_futex, word, op, i32::MAX) };
    !(r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT))
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
    shared: Option<(SharedWord, u32)>,
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
                    uaddr: word.0 as u64,
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
            match (r == -1).then(|| io::Error::last_os_error().raw_os_error()) {
                Some(Some(libc::ENOSYS)) => NO_WAITV.store(1, Ordering::Relaxed),
                Some(Some(libc::EFAULT)) => {
                    // The side file's page is gone (truncated under the mapping): sleep
                    // on this handle's word in short steps until the writer repairs it.
                    wait_one(local.0.as_ptr(), local.1, false, Some(short(remaining)));
                    return;
                }
                _ => return,
            }
        }
        // Kernels before 5.16 have no futex_waitv: wait on the shared word, in short
        // steps so that a wake of this handle (`local`) is seen within 10 ms.
        if !wait_one(word.0, val, true, Some(short(remaining))) {
            wait_one(local.0.as_ptr(), local.1, false, Some(short(remaining)));
        }
        return;
    }
    wait_one(local.0.as_ptr(), local.1, false, remaining);
}

/// A 10 ms step, or less when less remains.
fn short(remaining: Option<std::time::Duration>) -> std::time::Duration {
    let step = std::time::Duration::from_millis(10);
    remaining.map_or(step, |r| r.min(step))
}

/// `FUTEX_WAIT`; `false` when the kernel could not reach the word (`EFAULT`).
fn wait_one(
    word: *const u32,
    val: u32,
    shared: bool,
    timeout: Option<std::time::Duration>,
) -> bool {
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
    // SAFETY: `word` is an aligned u32 in a live mapping or variable, resolved by the
    // kernel; `tp` is NULL or a valid relative timeout.
    let r = unsafe { libc::syscall(libc::SYS_futex, word, op, val, tp) };
    !(r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT))
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
        let (_, word) = r.wake_word();
        w.publish(100, 3);
        assert_ne!(r.wake_word().1, word);
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
        hold_live_mark(&writer, false).unwrap();
        assert!(writer_is_live(&reader).unwrap());
        assert!(!writer_publishes(&reader).unwrap());
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
        let v = w.wake_word();
        futex_wait(
            Some(v),
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
            futex_wait(Some(v), (&local, 0), None);
            assert!(t1.elapsed() < std::time::Duration::from_secs(5));
        });
    }
}
