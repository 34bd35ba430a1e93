//! Issue 4, point 5: failing I/O. Through the `StorageFile` seam, the Nth write, short
//! write, `fdatasync`, `fsync` and `ftruncate` fails, for every N over a scenario (open,
//! appends that cross several preallocation steps, close), with and without
//! preallocation. When the failing call writes or syncs a batch, the store must report
//! `Error::Io`, poison itself (`is_poisoned`, later appends `Poisoned`), keep serving
//! every acknowledged event, recover on reopen and take appends again; when it belongs to
//! a preallocation, which steps aside (issue 9), the append may succeed instead. A short
//! write that is not an error must be completed, not fail.
//!
//! A real disk is also filled to ENOSPC: a small tmpfs and a small loop-mounted ext4
//! (skipped, with a note, where mounting is not allowed); and left nearly full, at
//! several fill levels, with stores of several sizes, where every append that fits must
//! be accepted (issue 9, defect 1).
//!
//! Knobs: `ES_FAULT_BATCHES` (default 10).

mod support;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use eventstore::store::io::StorageFile;
use eventstore::{Error, OpenOptions, Store};
use support::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Write,
    SyncData,
    SyncAll,
    SetLen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Eio,
    Enospc,
    /// Half the bytes are written and reported; the write of the rest fails (ENOSPC).
    ShortThenEnospc,
    /// Half the bytes are written and reported; nothing fails.
    ShortOk,
}

struct Faulty {
    file: File,
    counts: [AtomicUsize; 4],
    kind: Kind,
    n: usize,
    mode: Mode,
    fired: Arc<AtomicBool>,
    fail_next_write: AtomicBool,
}

impl Faulty {
    /// Whether this call is the one that must fail.
    fn hit(&self, kind: Kind) -> bool {
        let c = self.counts[kind as usize].fetch_add(1, Ordering::SeqCst) + 1;
        let hit = kind == self.kind && c == self.n;
        if hit {
            self.fired.store(true, Ordering::SeqCst);
        }
        hit
    }
    fn error(&self) -> io::Error {
        match self.mode {
            Mode::Eio => io::Error::from_raw_os_error(libc::EIO),
            _ => io::Error::from_raw_os_error(libc::ENOSPC),
        }
    }
}

impl StorageFile for Faulty {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(&self.file, buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if self.fail_next_write.swap(false, Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        if self.hit(Kind::Write) {
            match self.mode {
                Mode::Eio | Mode::Enospc => return Err(self.error()),
                Mode::ShortThenEnospc | Mode::ShortOk if buf.len() > 1 => {
                    let n = FileExt::write_at(&self.file, &buf[..buf.len() / 2], offset)?;
                    if self.mode == Mode::ShortThenEnospc {
                        self.fail_next_write.store(true, Ordering::SeqCst);
                    }
                    return Ok(n);
                }
                _ => return Err(self.error()),
            }
        }
        FileExt::write_at(&self.file, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.hit(Kind::SyncData) {
            return Err(self.error());
        }
        self.file.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        if self.hit(Kind::SyncAll) {
            return Err(self.error());
        }
        self.file.sync_all()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.hit(Kind::SetLen) {
            return Err(self.error());
        }
        self.file.set_len(len)
    }
    fn file_len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

const PROFILE: Profile = Profile {
    streams: 2,
    max_payload: 30_000,
    max_size_one_in: 4,
    multi_one_in: 0,
};

/// One run with the `n`th call of `kind` failing. Returns whether the fault fired.
fn run(
    dir: &Path,
    batches: &[PlannedBatch],
    preallocate: bool,
    kind: Kind,
    n: usize,
    mode: Mode,
) -> bool {
    let what = format!("{kind:?} #{n} {mode:?} (preallocate {preallocate})");
    let path = dir.join(format!("{kind:?}-{n}-{mode:?}-{preallocate}.store"));
    let fired = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&fired);
    let opened = Store::open_with(
        &path,
        OpenOptions::new()
            .preallocate(preallocate)
            .storage(move |file| {
                Box::new(Faulty {
                    file,
                    counts: Default::default(),
                    kind,
                    n,
                    mode,
                    fired: f,
                    fail_next_write: AtomicBool::new(false),
                }) as Box<dyn StorageFile>
            }),
    );
    let tolerated = mode == Mode::ShortOk;
    let mut acked = Vec::new();
    let mut failed = Vec::new();
    match opened {
        Err(Error::Io { .. }) if !tolerated && fired.load(Ordering::SeqCst) => {}
        Err(e) => panic!("{what}: open: {e}"),
        Ok(store) => {
            for b in batches {
                match append(&store, b) {
                    Ok(a) => acked.push(a),
                    Err(Error::Io { .. }) if !tolerated && fired.load(Ordering::SeqCst) => {
                        assert!(store.is_poisoned(), "{what}: not poisoned");
                        let next = append(&store, &planned(1 << 47, PROFILE, 1));
                        assert!(
                            matches!(next, Err(Error::Poisoned { .. })),
                            "{what}: then {next:?}"
                        );
                        // Reads keep working and return exactly the acknowledged events.
                        check_store(&store, &acked, &[])
                            .unwrap_or_else(|e| panic!("{what}: poisoned reads: {e}"));
                        failed.push(b.clone());
                        break;
                    }
                    Err(e) => panic!("{what}: append: {e}"),
                }
            }
            if failed.is_empty() {
                assert!(!store.is_poisoned(), "{what}: poisoned without a failure");
            }
            match store.close() {
                Ok(()) => {}
                Err(Error::Io { .. }) if !tolerated && fired.load(Ordering::SeqCst) => {}
                Err(e) => panic!("{what}: close: {e}"),
            }
        }
    }
    check_recovers_and_continues(&path, &acked, &failed, 1 << 46 | n as u64)
        .unwrap_or_else(|e| panic!("{what}: after reopening: {e}"));
    let _ = std::fs::remove_file(&path);
    fired.load(Ordering::SeqCst)
}

#[test]
fn every_nth_io_call_fails() {
    let _serial = serial();
    let dir = scratch();
    let batches: Vec<_> = (0..env_usize("ES_FAULT_BATCHES", 10) as u64)
        .map(|k| planned(50_000 + k, PROFILE, 0))
        .collect();
    let mut total = 0;
    let mut lines = Vec::new();
    for preallocate in [true, false] {
        for (kind, modes) in [
            (
                Kind::Write,
                &[
                    Mode::Eio,
                    Mode::Enospc,
                    Mode::ShortThenEnospc,
                    Mode::ShortOk,
                ][..],
            ),
            (Kind::SyncData, &[Mode::Eio, Mode::Enospc][..]),
            (Kind::SyncAll, &[Mode::Eio][..]),
            (Kind::SetLen, &[Mode::Eio][..]),
        ] {
            for &mode in modes {
                let mut n = 1;
                while run(dir.path(), &batches, preallocate, kind, n, mode) {
                    n += 1;
                }
                total += n - 1;
                lines.push(format!(
                    "{kind:?}/{mode:?}/prealloc={preallocate}: N=1..{}",
                    n - 1
                ));
            }
        }
    }
    eprintln!(
        "I/O faults: {total} injected failures ({}); every failed batch write or sync reported and poisoned (a failed preallocation stepped aside), nothing acknowledged lost, recovered",
        lines.join(", ")
    );
    assert!(total > 100);
}

/// A small file system mounted for one test, unmounted when dropped.
struct Mount {
    dir: PathBuf,
    image: Option<PathBuf>,
}

impl Mount {
    fn new(base: &Path, fs: &str) -> Result<Mount, String> {
        let dir = base.join(format!("mnt-{fs}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let (image, status) = match fs {
            "tmpfs" => (
                None,
                Command::new("mount")
                    .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
                    .arg(&dir)
                    .status(),
            ),
            _ => {
                let img = base.join("ext4.img");
                File::create(&img)
                    .and_then(|f| f.set_len(8 << 20))
                    .map_err(|e| e.to_string())?;
                let mkfs = Command::new("mkfs.ext4")
                    .args(["-q", "-F"])
                    .arg(&img)
                    .status();
                if !matches!(mkfs, Ok(s) if s.success()) {
                    return Err("mkfs.ext4 failed or is missing".into());
                }
                (
                    Some(img.clone()),
                    Command::new("mount")
                        .args(["-o", "loop"])
                        .arg(&img)
                        .arg(&dir)
                        .status(),
                )
            }
        };
        match status {
            Ok(s) if s.success() => Ok(Mount { dir, image }),
            other => Err(format!("mount failed: {other:?}")),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        if let Some(img) = &self.image {
            let _ = std::fs::remove_file(img);
        }
    }
}

fn fill_to_enospc(fs: &str) {
    let base = scratch();
    let mount = match Mount::new(base.path(), fs) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED: real ENOSPC on {fs}: {e}");
            return;
        }
    };
    let path = mount.dir.join("full.store");
    let filler = mount.dir.join("filler");
    // Take most of the space first, so that the store runs out within a few appends.
    {
        let f = File::create(&filler).unwrap();
        let chunk = vec![0xa5u8; 64 << 10];
        let mut off = 0u64;
        while off < (2 << 20) && FileExt::write_at(&f, &chunk, off).is_ok() {
            off += chunk.len() as u64;
        }
        f.sync_all().unwrap();
    }
    let store = Store::open(&path).unwrap();
    let mut acked = Vec::new();
    let mut failed = Vec::new();
    for k in 0..10_000u64 {
        let b = planned(60_000 + k, PROFILE, 0);
        match append(&store, &b) {
            Ok(a) => acked.push(a),
            Err(Error::Io { source, context }) => {
                assert_eq!(
                    source.raw_os_error(),
                    Some(libc::ENOSPC),
                    "{context}: {source}"
                );
                failed.push(b);
                break;
            }
            Err(e) => panic!("{fs}: {e}"),
        }
    }
    assert_eq!(failed.len(), 1, "{fs}: the disk never filled");
    assert!(store.is_poisoned());
    assert!(matches!(
        append(&store, &planned(1 << 47, PROFILE, 1)),
        Err(Error::Poisoned { .. })
    ));
    check_store(&store, &acked, &[]).unwrap();
    drop(store);
    // Reopen while the disk is still full: recovery must work and lose nothing.
    let v = check_path(&path, &acked, &failed).unwrap_or_else(|e| panic!("{fs}, disk full: {e}"));
    let model = merged(&acked, &v);
    std::fs::remove_file(&filler).unwrap();
    check_recovers_and_continues(&path, &model, &[], 1 << 45)
        .unwrap_or_else(|e| panic!("{fs}: {e}"));
    eprintln!(
        "ENOSPC on {fs}: {} batches acknowledged before the disk filled; the failing append reported ENOSPC and poisoned the store; nothing acknowledged lost; appends accepted after space was freed",
        acked.len()
    );
    drop(mount);
}

#[test]
fn real_enospc_on_a_small_tmpfs() {
    let _serial = serial();
    fill_to_enospc("tmpfs");
}

#[test]
fn real_enospc_on_a_small_loop_mounted_ext4() {
    let _serial = serial();
    fill_to_enospc("ext4");
}

/// Batches of one event of up to 2,000 bytes: "a 2 KiB append".
const SMALL_APPENDS: Profile = Profile {
    streams: 3,
    max_payload: 2000,
    max_size_one_in: 0,
    multi_one_in: 0,
};

/// Fills the file system holding `dir` to the last byte with a file `filler`, then
/// frees `free` bytes of it again; returns the filler's length.
fn fill_leaving(dir: &Path, free: u64) -> u64 {
    let filler = dir.join("filler");
    let f = File::create(&filler).unwrap();
    let mut off = 0u64;
    for chunk in [vec![0xa5u8; 64 << 10], vec![0xa5u8; 4096]] {
        while FileExt::write_at(&f, &chunk, off).is_ok_and(|n| n == chunk.len()) {
            off += chunk.len() as u64;
        }
    }
    f.set_len(off).unwrap();
    f.sync_all().unwrap();
    let len = off.saturating_sub(free);
    f.set_len(len).unwrap();
    f.sync_all().unwrap();
    len
}

/// Issue 9, defect 1: on a nearly full disk, preallocation (which asks for at least
/// 256 KiB) must shrink or step aside: appends that fit are accepted, only the write
/// of a batch that does not fit fails (ENOSPC, never "preallocate"), and no stray
/// bytes are left (after close the file is exactly its data). Stores of several sizes,
/// several amounts of free space. Returns a line of figures per case.
fn nearly_full(fs: &str) -> Vec<String> {
    let base = scratch();
    let mount = match Mount::new(base.path(), fs) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED: nearly full disk on {fs}: {e}");
            return vec![];
        }
    };
    let mut lines = Vec::new();
    let mut key = 80_000u64;
    for store_kib in [0u64, 256, 1024] {
        for free_kib in [8u64, 64, 224, 1024] {
            let what = format!("{fs}, store of {store_kib} KiB, {free_kib} KiB free");
            let path = mount.dir.join("nearly-full.store");
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(mount.dir.join("filler"));
            // The store, built while there is room.
            let mut acked = Vec::new();
            {
                let store = Store::open(&path).unwrap();
                while store.info().data_bytes < store_kib << 10 {
                    key += 1;
                    acked.push(append(&store, &planned(key, Profile::MIXED, 17)).unwrap());
                }
                store.close().unwrap();
            }
            let size = file_len(&path);
            fill_leaving(&mount.dir, free_kib << 10);
            // Appends until the disk is full.
            let store = Store::open(&path).unwrap();
            let mut failed = Vec::new();
            let first_acked = acked.len();
            loop {
                key += 1;
                let b = planned(key, SMALL_APPENDS, 1);
                match append(&store, &b) {
                    Ok(a) => acked.push(a),
                    Err(Error::Io { source, context }) => {
                        assert_eq!(
                            source.raw_os_error(),
                            Some(libc::ENOSPC),
                            "{what}: {context}"
                        );
                        assert!(
                            !context.contains("preallocate"),
                            "{what}: preallocation failed the append: {context}: {source}"
                        );
                        failed.push(b);
                        break;
                    }
                    Err(e) => panic!("{what}: {e}"),
                }
            }
            let appended = store.info().data_bytes - size;
            let count = acked.len() - first_acked;
            // What fits is accepted: all the free space but a few batches' worth and
            // what the file system keeps for itself (ext4: an extent block or two).
            let slack = 3 * 2100 + (16 << 10);
            assert!(
                appended + slack >= free_kib << 10,
                "{what}: only {appended} bytes appended"
            );
            assert!(store.is_poisoned(), "{what}");
            check_store(&store, &acked, &[]).unwrap_or_else(|e| panic!("{what}: {e}"));
            let data = store.info().data_bytes;
            store.close().unwrap();
            assert_eq!(file_len(&path), data, "{what}: stray bytes after close");
            // Reopened while the disk is still full, then with room again.
            let v = check_path(&path, &acked, &failed).unwrap_or_else(|e| panic!("{what}: {e}"));
            let model = merged(&acked, &v);
            std::fs::remove_file(mount.dir.join("filler")).unwrap();
            key += 1;
            check_recovers_and_continues(&path, &model, &[], 1 << 46 | key)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            lines.push(format!(
                "nearly full {what}: {count} appends ({appended} bytes) accepted, then ENOSPC from the batch's own write"
            ));
        }
    }
    drop(mount);
    lines
}

#[test]
fn nearly_full_tmpfs_accepts_what_fits() {
    let _serial = serial();
    for line in nearly_full("tmpfs") {
        eprintln!("{line}");
    }
}

#[test]
fn nearly_full_loop_mounted_ext4_accepts_what_fits() {
    let _serial = serial();
    for line in nearly_full("ext4") {
        eprintln!("{line}");
    }
}
