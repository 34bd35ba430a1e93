//! Reads that span many read pieces: every record arrives whole and verified, and a
//! record damaged on disk after it was indexed is reported, wherever it lies.

mod common;

use std::os::unix::fs::FileExt;

use common::{event, open_exact, temp_store};
use eventstore::{Error, ExpectedVersion};
use uuid::Uuid;

#[test]
fn large_read_all_and_read_stream_are_exact_and_catch_damage() {
    let t = temp_store();
    let store = open_exact(&t.path);
    let streams = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    let mut expected = Vec::new();
    for b in 0..60usize {
        let s = streams[b % 3];
        let events: Vec<_> = (0..50usize)
            .map(|i| {
                let n = b * 50 + i;
                event("Sized", &vec![(n % 251) as u8; 500 + n % 1500])
            })
            .collect();
        expected.extend(events.iter().map(|e| e.payload.clone()));
        store.append(s, ExpectedVersion::Any, events).unwrap();
    }
    assert!(
        common::file_len(&t.path) > 3 << 20,
        "spans several read pieces"
    );
    let all = store.read_all_batch(0, u64::MAX).unwrap();
    assert_eq!(all.len(), expected.len());
    for (i, (e, p)) in all.iter().zip(&expected).enumerate() {
        assert_eq!(e.global_position, i as u64);
        assert_eq!(e.payload, &p[..]);
    }
    let middle = store.read_all(1234, 500).unwrap();
    assert_eq!(middle.len(), 500);
    assert_eq!(middle[0].global_position, 1234);
    let one = store.read_stream_batch(streams[1], 0, u64::MAX).unwrap();
    assert_eq!(one.len(), 1000);
    assert!(one.iter().all(|e| e.stream_id == streams[1]));

    // Damage the payload of an event far into the file, behind the store's back.
    let victim = 2345;
    let before = &store.read_all(victim, 1).unwrap()[0];
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&t.path)
        .unwrap();
    let bytes = std::fs::read(&t.path).unwrap();
    let at = bytes
        .windows(16)
        .position(|w| w == before.event_id.as_bytes())
        .unwrap();
    file.write_all_at(&[bytes[at + 100] ^ 0xff], at as u64 + 100)
        .unwrap();
    match store.read_all_batch(0, u64::MAX) {
        Err(Error::CorruptRecord { position, .. }) => assert_eq!(position, victim),
        other => panic!("expected CorruptRecord, got {other:?}"),
    }
    let stream = before.stream_id;
    assert!(matches!(
        store.read_stream_batch(stream, 0, u64::MAX),
        Err(Error::CorruptRecord { .. })
    ));
    assert!(
        store.read_all_batch(0, victim).is_ok(),
        "events before it still read"
    );
}
