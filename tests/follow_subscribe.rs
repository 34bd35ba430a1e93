//! Waiting and subscriptions in this process (issue 10, points 2 and 4): wake-ups on
//! writer and read-only handles, `wake`, exactly-once across the catch-up/live seam
//! under concurrent appends, filters, resuming from a saved position.

mod common;

use std::time::{Duration, Instant};

use common::{event, temp_store};
use eventstore::{ExpectedVersion, Filter, OpenOptions, Store};
use uuid::Uuid;

fn read_only(path: &std::path::Path) -> Store {
    Store::open_with(path, OpenOptions::new().read_only()).unwrap()
}

#[test]
fn wait_returns_on_an_append_on_a_timeout_or_on_wake() {
    let t = temp_store();
    let writer = Store::open(&t.path).unwrap();
    let reader = read_only(&t.path);
    let s = Uuid::new_v4();
    for store in [&writer, &reader] {
        // Nothing new: a zero timeout answers at once, a short one after it passed.
        assert_eq!(store.wait(0, Some(Duration::ZERO)).unwrap(), 0);
        let t0 = Instant::now();
        assert_eq!(store.wait(0, Some(Duration::from_millis(40))).unwrap(), 0);
        assert!(t0.elapsed() >= Duration::from_millis(35));
    }
    std::thread::scope(|scope| {
        let on_writer = scope.spawn(|| writer.wait(0, None).unwrap());
        let on_reader = scope.spawn(|| reader.wait(0, Some(Duration::from_secs(30))).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        writer
            .append(s, ExpectedVersion::Any, vec![event("A", b"")])
            .unwrap();
        assert_eq!(on_writer.join().unwrap(), 1);
        assert_eq!(on_reader.join().unwrap(), 1);
        assert!(t0.elapsed() < Duration::from_secs(5));
    });
    // Already past the position: no wait at all.
    assert_eq!(reader.wait(0, None).unwrap(), 1);
    // `wake` ends every wait on that handle, and only on that handle.
    std::thread::scope(|scope| {
        let a = scope.spawn(|| reader.wait(5, None).unwrap());
        let b = scope.spawn(|| reader.wait(5, None).unwrap());
        let other = scope.spawn(|| writer.wait(5, Some(Duration::from_millis(300))).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        reader.wake();
        assert_eq!(a.join().unwrap(), 1);
        assert_eq!(b.join().unwrap(), 1);
        assert!(t0.elapsed() < Duration::from_millis(200));
        assert_eq!(other.join().unwrap(), 1);
        assert!(
            t0.elapsed() >= Duration::from_millis(200),
            "the writer's wait was not woken"
        );
    });
}

#[test]
fn a_subscription_delivers_everything_exactly_once_across_the_seam_under_concurrent_appends() {
    let t = temp_store();
    let writer = Store::open(&t.path).unwrap();
    let reader = read_only(&t.path);
    let streams: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    const THREADS: usize = 4;
    const PER_THREAD: usize = 300;
    // Some events before anyone subscribes: the catch-up part.
    for i in 0..100usize {
        writer
            .append(
                streams[i % 4],
                ExpectedVersion::Any,
                vec![event("Early", b"")],
            )
            .unwrap();
    }
    let total: usize = 100 + THREADS * (0..PER_THREAD).map(|i| 1 + i % 3).sum::<usize>();
    std::thread::scope(|scope| {
        for th in 0..THREADS {
            let (writer, streams) = (&writer, &streams);
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    let n = 1 + i % 3;
                    let evs = (0..n).map(|_| event("Live", b"")).collect();
                    if i % 3 == 0 {
                        std::thread::yield_now();
                    }
                    writer
                        .append(streams[th], ExpectedVersion::Any, evs)
                        .unwrap();
                }
            });
        }
        // Each subscriber starts while appends are under way.
        let subscribers: Vec<_> = [&writer, &reader, &reader]
            .into_iter()
            .enumerate()
            .map(|(k, store)| {
                scope.spawn(move || {
                    std::thread::sleep(Duration::from_millis(3 * k as u64));
                    let mut sub = store.subscribe(0, Filter::all());
                    let mut seen = Vec::new();
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while Instant::now() < deadline {
                        let batch = sub
                            .next_batch(1 + 37 * k as u64, Some(Duration::from_secs(2)))
                            .unwrap();
                        seen.extend(batch.iter().map(|e| (e.global_position, e.event_id)));
                        if seen.len() >= total {
                            break;
                        }
                    }
                    seen
                })
            })
            .collect();
        let results: Vec<_> = subscribers.into_iter().map(|h| h.join().unwrap()).collect();
        let expected: Vec<(u64, Uuid)> = writer
            .read_all(0, u64::MAX)
            .unwrap()
            .iter()
            .map(|e| (e.global_position, e.event_id))
            .collect();
        assert!(expected.len() >= total);
        for seen in results {
            assert_eq!(seen, expected, "in order, exactly once, nothing missing");
        }
    });
}

#[test]
fn a_filtered_subscription_resumes_from_a_saved_position_without_repeat_or_gap() {
    let t = temp_store();
    let writer = Store::open(&t.path).unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    for i in 0..200u32 {
        let ty = if i % 4 == 0 { "OrderPlaced" } else { "Noise" };
        writer
            .append(
                if i % 2 == 0 { a } else { b },
                ExpectedVersion::Any,
                vec![event(ty, &i.to_le_bytes())],
            )
            .unwrap();
    }
    let reader = read_only(&t.path);
    let filter = Filter::prefixes(["Order"]);
    let mut sub = reader.subscribe(0, filter.clone());
    let first = sub.next_batch(7, Some(Duration::ZERO)).unwrap();
    assert_eq!(first.len(), 7);
    let saved = sub.position();
    assert_eq!(saved, first.get(6).global_position + 1);
    drop(sub);
    let mut resumed = reader.subscribe(saved, filter.clone());
    let mut positions: Vec<u64> = first.iter().map(|e| e.global_position).collect();
    loop {
        let batch = resumed.next_batch(10, Some(Duration::ZERO)).unwrap();
        if batch.is_empty() {
            break;
        }
        positions.extend(batch.iter().map(|e| e.global_position));
    }
    let want: Vec<u64> = (0..200).filter(|p| p % 4 == 0).collect();
    assert_eq!(positions, want);
    assert_eq!(
        resumed.position(),
        200,
        "after an empty batch: the end it saw"
    );
    // A stream filter, then live events of a new matching type arriving later.
    let mut sub = reader.subscribe(190, Filter::stream(a));
    let got = sub.next_batch(100, Some(Duration::ZERO)).unwrap();
    let got: Vec<u64> = got.iter().map(|e| e.global_position).collect();
    assert_eq!(got, vec![190, 192, 194, 196, 198]);
    let mut live = reader.subscribe(200, Filter::types(["Brand-new"]));
    std::thread::scope(|scope| {
        let h = scope.spawn(|| live.next_batch(10, Some(Duration::from_secs(30))).unwrap());
        std::thread::sleep(Duration::from_millis(30));
        writer
            .append(b, ExpectedVersion::Any, vec![event("Noise", b"")])
            .unwrap();
        writer
            .append(a, ExpectedVersion::Any, vec![event("Brand-new", b"x")])
            .unwrap();
        let batch = h.join().unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.get(0).event_type, "Brand-new");
        assert_eq!(batch.get(0).global_position, 201);
    });
    assert_eq!(live.position(), 202);
    // max_count 0 gives nothing, at once, and does not move.
    let mut idle = reader.subscribe(0, Filter::all());
    assert!(idle.next_batch(0, None).unwrap().is_empty());
    assert_eq!(idle.position(), 0);
}

#[test]
fn wake_ends_a_waiting_subscription_with_an_empty_batch() {
    let t = temp_store();
    let writer = Store::open(&t.path).unwrap();
    writer
        .append(Uuid::new_v4(), ExpectedVersion::Any, vec![event("A", b"")])
        .unwrap();
    let reader = read_only(&t.path);
    let mut sub = reader.subscribe(0, Filter::types(["Never"]));
    std::thread::scope(|scope| {
        let h = scope.spawn(|| {
            let b = sub.next_batch(10, None).unwrap();
            (b.len(), sub.position())
        });
        std::thread::sleep(Duration::from_millis(50));
        reader.wake();
        assert_eq!(h.join().unwrap(), (0, 1));
    });
}
