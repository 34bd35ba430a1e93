//! Arbitrary bytes as the index file `<path>-index` next to a valid log (issue 14).
//! The log is the truth: whatever the index file holds, the store opens, and every
//! read gives exactly the log's events or an error, never a wrong event; no panic, no
//! hang. When the first input byte is odd, every page of the input is re-sealed with
//! the log's salt and its own offset (a valid CRC over garbage), which reaches the
//! decoding of manifests and segments past the page checks.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use eventstore::{OpenOptions, RecordedEvent, Store};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    dir: PathBuf,
    log: Vec<u8>,
    salt: u64,
    model: Vec<RecordedEvent>,
}

/// A log of 40 events and, as seed (`fuzz/corpus/index_bytes/`), its index file:
/// written by `tests/index_file.rs` (`ES_WRITE_FUZZ_SEED=1`), so that the seed's
/// pages carry this log's salt.
const LOG: &[u8] = include_bytes!("../index_log.bin");

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("es-fuzz-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model");
        std::fs::write(&path, LOG).unwrap();
        let store = Store::open_with(&path, OpenOptions::new().read_only()).unwrap();
        let model = store.read_all(0, u64::MAX).unwrap();
        assert_eq!(model.len(), 40);
        drop(store);
        let salt = u64::from_le_bytes(LOG[8..16].try_into().unwrap());
        Fixture {
            dir,
            log: LOG.to_vec(),
            salt,
            model,
        }
    })
}

fn reseal(bytes: &mut [u8], salt: u64) {
    for (k, page) in bytes.chunks_mut(4096).enumerate() {
        if page.len() < 4096 {
            break;
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&salt.to_le_bytes());
        h.update(&((k * 4096) as u64).to_le_bytes());
        h.update(&page[..4092]);
        page[4092..].copy_from_slice(&h.finalize().to_le_bytes());
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let path = f.dir.join("store");
    let mut index = data.to_vec();
    if data.first().is_some_and(|b| b & 1 == 1) {
        reseal(&mut index, f.salt);
    }
    std::fs::write(&path, &f.log).unwrap();
    let mut ipath = path.clone().into_os_string();
    ipath.push("-index");
    std::fs::write(&ipath, &index).unwrap();
    let store = Store::open(&path).expect("a valid log opens whatever the index holds");
    // Damage (a page that fails its CRC) is caught and the log read instead, so the
    // answers are exact. A re-sealed page passes its CRC: that needs the log's salt (a
    // forged file, or a bug); then every read either fails or returns records of this
    // log at the positions named (each record's CRC and position are verified).
    let exact = !data.first().is_some_and(|b| b & 1 == 1);
    let ok = |got: &RecordedEvent| {
        assert_eq!(got, &f.model[got.global_position as usize]);
    };
    if let Ok(all) = store.read_all(0, u64::MAX) {
        all.iter().for_each(ok);
        if exact {
            assert_eq!(all, f.model);
        }
    }
    for e in &f.model {
        match store.read_event(e.event_id) {
            Ok(got) => assert_eq!(&got, e),
            Err(_) => assert!(!exact, "read_event failed"),
        }
        match store.read_stream(e.stream_id, e.stream_version, 1) {
            Ok(s) => {
                s.iter().for_each(ok);
                if exact {
                    assert_eq!(&s[0], e);
                }
            }
            Err(_) => assert!(!exact, "read_stream failed"),
        }
    }
    store.close().expect("close");
});
