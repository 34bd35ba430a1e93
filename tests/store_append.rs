//! Appends: expected versions, limits, atomic validation (AC-6 to AC-11).

mod common;

use common::{all, event, file_len, temp_store};
use eventstore::{
    Error, ExpectedVersion, ProposedEvent, Store, MAX_EVENT_SIZE, MAX_EVENT_TYPE_LEN,
    RECORD_OVERHEAD,
};
use uuid::Uuid;

#[test]
fn ac6_single_event_to_a_new_stream() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    let recorded = store
        .append(
            s,
            ExpectedVersion::NoStream,
            vec![event("Opened", b"hello")],
        )
        .unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].stream_version, 0);
    assert_eq!(recorded[0].global_position, 0);
    assert_eq!(recorded[0].stream_id, s);
    assert_eq!(all(&store), recorded);
    assert_eq!(store.read_stream(s, 0, 100).unwrap(), recorded);
}

#[test]
fn ac7_batch_of_three_is_contiguous() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    let recorded = store
        .append(
            s,
            ExpectedVersion::NoStream,
            vec![event("A", b"1"), event("B", b"2"), event("C", b"3")],
        )
        .unwrap();
    let placed: Vec<(u64, u64)> = recorded
        .iter()
        .map(|e| (e.stream_version, e.global_position))
        .collect();
    assert_eq!(placed, vec![(0, 0), (1, 1), (2, 2)]);
    assert_eq!(all(&store), recorded);
}

#[test]
fn ac8_any_creates_and_extends() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    let first = store
        .append(s, ExpectedVersion::Any, vec![event("A", b"")])
        .unwrap();
    assert_eq!(first[0].stream_version, 0);
    store
        .append(
            s,
            ExpectedVersion::Any,
            vec![event("B", b""), event("C", b"")],
        )
        .unwrap();
    assert_eq!(store.stream_version(&s), Some(2));
    let next = store
        .append(s, ExpectedVersion::Any, vec![event("D", b"")])
        .unwrap();
    assert_eq!(next[0].stream_version, 3);
}

#[test]
fn ac9_no_stream_succeeds_once_then_conflicts() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    store
        .append(s, ExpectedVersion::NoStream, vec![event("A", b"")])
        .unwrap();
    let len = file_len(&t.path);
    match store.append(s, ExpectedVersion::NoStream, vec![event("B", b"")]) {
        Err(Error::WrongExpectedVersion {
            stream_id,
            expected,
            actual,
        }) => {
            assert_eq!(stream_id, s);
            assert_eq!(expected, ExpectedVersion::NoStream);
            assert_eq!(actual, Some(0));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(file_len(&t.path), len, "a rejected append writes nothing");
    assert_eq!(store.global_position(), 1);
}

#[test]
fn ac10_exact_version() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    store
        .append(s, ExpectedVersion::NoStream, vec![event("A", b"")])
        .unwrap();
    let second = store
        .append(s, ExpectedVersion::Exact(0), vec![event("B", b"")])
        .unwrap();
    assert_eq!(second[0].stream_version, 1);
    store
        .append(
            s,
            ExpectedVersion::Exact(1),
            vec![event("C", b""), event("D", b"")],
        )
        .unwrap();
    // AC-10b: the stream is at version 3, not 5.
    match store.append(s, ExpectedVersion::Exact(5), vec![event("E", b"")]) {
        Err(e @ Error::WrongExpectedVersion { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&s.to_string()) && text.contains("5") && text.contains("3"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    // AC-10c: Exact(0) on a stream that does not exist.
    let missing = Uuid::new_v4();
    assert!(matches!(
        store.append(missing, ExpectedVersion::Exact(0), vec![event("A", b"")]),
        Err(Error::WrongExpectedVersion { actual: None, .. })
    ));
    assert_eq!(store.stream_version(&missing), None);
}

#[test]
fn stream_exists_requires_an_event() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    assert!(matches!(
        store.append(s, ExpectedVersion::StreamExists, vec![event("A", b"")]),
        Err(Error::WrongExpectedVersion { actual: None, .. })
    ));
    store
        .append(s, ExpectedVersion::Any, vec![event("A", b"")])
        .unwrap();
    let r = store
        .append(s, ExpectedVersion::StreamExists, vec![event("B", b"")])
        .unwrap();
    assert_eq!(r[0].stream_version, 1);
}

fn sized(payload_len: usize) -> ProposedEvent {
    ProposedEvent {
        event_id: Uuid::new_v4(),
        event_type: "T".into(),
        metadata: vec![],
        payload: vec![0xAB; payload_len],
    }
}

#[test]
fn ac11a_too_large_event_is_rejected_before_any_write() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    let exact_fit = MAX_EVENT_SIZE - RECORD_OVERHEAD - 1;
    store
        .append(s, ExpectedVersion::Any, vec![sized(exact_fit)])
        .unwrap();
    store.close().unwrap();
    let store = Store::open(&t.path).unwrap();
    let len = file_len(&t.path);
    // A valid first event must not be written when the second is too large.
    match store.append(
        s,
        ExpectedVersion::Any,
        vec![sized(10), sized(exact_fit + 1)],
    ) {
        Err(Error::EventTooLarge { size, max }) => {
            assert_eq!(size, MAX_EVENT_SIZE + 1);
            assert_eq!(max, MAX_EVENT_SIZE);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(file_len(&t.path), len);
    assert_eq!(store.global_position(), 1);
    assert_eq!(
        store.read_stream(s, 0, 10).unwrap()[0].payload.len(),
        exact_fit
    );
}

#[test]
fn ac11b_c_event_type_length_limits() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    let len = file_len(&t.path);
    let mut long = event("x", b"");
    long.event_type = "x".repeat(MAX_EVENT_TYPE_LEN + 1);
    assert!(matches!(
        store.append(s, ExpectedVersion::Any, vec![long]),
        Err(Error::InvalidArgument(_))
    ));
    let mut empty = event("x", b"");
    empty.event_type = String::new();
    assert!(matches!(
        store.append(s, ExpectedVersion::Any, vec![empty]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        store.append(s, ExpectedVersion::Any, vec![]),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(file_len(&t.path), len, "nothing written");
    let mut longest = event("x", b"");
    longest.event_type = "é".repeat(MAX_EVENT_TYPE_LEN / 2);
    store
        .append(s, ExpectedVersion::Any, vec![longest.clone()])
        .unwrap();
    assert_eq!(
        store.read_stream(s, 0, 1).unwrap()[0].event_type,
        longest.event_type
    );
}

/// Issue 9, defect 5: a NUL byte in an event type (which C readers get NUL-terminated,
/// and so cut short) is an invalid argument, wherever it is; nothing of the batch is
/// written.
#[test]
fn event_types_with_a_nul_byte_are_rejected() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    let len = file_len(&t.path);
    for ty in ["\0", "Order\0Placed", "Order\0", "\0Order"] {
        let mut bad = event("x", b"");
        bad.event_type = ty.into();
        let good = event("Fine", b"");
        match store.append(s, ExpectedVersion::Any, vec![good, bad]) {
            Err(Error::InvalidArgument(why)) => assert!(why.contains("NUL"), "{why}"),
            other => panic!("{ty:?}: {other:?}"),
        }
    }
    assert_eq!(file_len(&t.path), len, "nothing written");
    assert_eq!(store.global_position(), 0);
}

#[test]
fn nil_event_ids_are_assigned_and_given_ids_kept() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    let mut a = event("A", b"");
    a.event_id = Uuid::nil();
    let b = event("B", b"");
    let recorded = store
        .append(s, ExpectedVersion::Any, vec![a.clone(), a, b.clone()])
        .unwrap();
    assert!(!recorded[0].event_id.is_nil());
    assert_ne!(recorded[0].event_id, recorded[1].event_id);
    assert_eq!(recorded[2].event_id, b.event_id);
    store.close().unwrap();
    let store = Store::open(&t.path).unwrap();
    assert_eq!(all(&store), recorded);
}

#[test]
fn one_commit_time_per_append_never_going_backwards() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let s = Uuid::new_v4();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let first = store
        .append(
            s,
            ExpectedVersion::Any,
            vec![event("A", b""), event("B", b""), event("C", b"")],
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let second = store
        .append(s, ExpectedVersion::Any, vec![event("D", b"")])
        .unwrap();
    assert!(first.iter().all(|e| e.recorded_at == first[0].recorded_at));
    assert!(first[0].recorded_at >= before);
    assert!(second[0].recorded_at > first[0].recorded_at);
    assert_eq!(
        all(&store)
            .iter()
            .map(|e| e.recorded_at)
            .collect::<Vec<_>>(),
        vec![
            first[0].recorded_at,
            first[0].recorded_at,
            first[0].recorded_at,
            second[0].recorded_at
        ]
    );
}

#[test]
fn appends_from_many_threads_get_one_winner_per_version() {
    let t = temp_store();
    let store = Store::open(&t.path).unwrap();
    let shared = Uuid::new_v4();
    let threads = 6;
    let rounds = 40u64;
    std::thread::scope(|scope| {
        for th in 0..threads {
            let store = &store;
            scope.spawn(move || {
                let own = Uuid::new_v4();
                for i in 0..rounds {
                    // Contended stream: keep trying with the version just observed.
                    loop {
                        let seen = store.stream_version(&shared);
                        let expected =
                            seen.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                        let payload = format!("{th}:{i}");
                        match store.append(
                            shared,
                            expected,
                            vec![event("Contended", payload.as_bytes())],
                        ) {
                            Ok(r) => {
                                assert_eq!(r[0].stream_version, seen.map_or(0, |v| v + 1));
                                break;
                            }
                            Err(Error::WrongExpectedVersion { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    // Uncontended stream: never conflicts.
                    let expected = if i == 0 {
                        ExpectedVersion::NoStream
                    } else {
                        ExpectedVersion::Exact(i - 1)
                    };
                    store
                        .append(own, expected, vec![event("Own", b"")])
                        .unwrap();
                }
            });
        }
    });
    let total = threads as u64 * rounds;
    assert_eq!(store.stream_version(&shared), Some(total - 1));
    assert_eq!(store.global_position(), 2 * total);
    let check = |store: &Store| {
        let events = all(store);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.global_position, i as u64);
        }
        let contended = store.read_stream(shared, 0, u64::MAX).unwrap();
        let mut payloads: Vec<_> = contended.iter().map(|e| e.payload.clone()).collect();
        for (v, e) in contended.iter().enumerate() {
            assert_eq!(e.stream_version, v as u64);
        }
        payloads.sort();
        payloads.dedup();
        assert_eq!(
            payloads.len() as u64,
            total,
            "every winning append is there once"
        );
        events
    };
    let before = check(&store);
    store.close().unwrap();
    let store = Store::open(&t.path).unwrap();
    assert_eq!(check(&store), before);
}
