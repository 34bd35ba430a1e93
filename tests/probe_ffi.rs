//! An outside check of the C entry points' edge cases, called through the Rust
//! declarations of the same `extern "C"` functions the shared library exports:
//! zero and huge `max_count`, positions past the end, empty filters, filters with
//! hundreds of types, NULL and empty strings, a filter freed while a subscription
//! uses it, and a subscription whose store was closed meanwhile.

mod common;

use std::ffi::CString;
use std::ptr::{null, null_mut};

use eventstore::ffi::append::es_append_multi;
use eventstore::ffi::events::{es_free, es_read_event};
use eventstore::ffi::filter::{es_filter, es_read_all_filtered, es_string};
use eventstore::ffi::follow::{
    es_subscribe, es_subscription_close, es_subscription_next, es_subscription_position,
};
use eventstore::ffi::store::{es_append, es_close, es_open};
use eventstore::ffi::streams::{es_free_streams, es_list_streams};
use eventstore::ffi::*;

fn uuid(n: u8) -> es_uuid {
    es_uuid { bytes: [n; 16] }
}

fn event(id: u8, ty: &'static [u8]) -> es_proposed_event {
    es_proposed_event {
        event_id: uuid(id),
        event_type: ty.as_ptr().cast(),
        event_type_len: ty.len(),
        metadata: null(),
        metadata_len: 0,
        payload: b"p".as_ptr(),
        payload_len: 1,
    }
}

/// A store with 6 events: stream 1 `A`,`B`,`A`; stream 2 `C`,`A`,`B`.
fn store(path: &std::path::Path) -> *mut es_store {
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let mut s = null_mut();
    assert_eq!(es_open(p.as_ptr(), &mut s), es_status::ES_OK);
    let (one, two) = (uuid(1), uuid(2));
    let a = [event(10, b"A"), event(11, b"B"), event(12, b"A")];
    let b = [event(13, b"C"), event(14, b"A"), event(15, b"B")];
    assert_eq!(
        es_append(s, &one, -2, a.as_ptr(), 3, null_mut()),
        es_status::ES_OK
    );
    assert_eq!(
        es_append(s, &two, -2, b.as_ptr(), 3, null_mut()),
        es_status::ES_OK
    );
    s
}

fn filtered(
    s: *const es_store,
    from: u64,
    max: u64,
    filter: *const es_filter,
) -> Result<(Vec<u64>, u64), es_status> {
    let mut out = es_events::EMPTY;
    let mut next = 7777;
    let st = es_read_all_filtered(s, from, max, filter, &mut out, &mut next);
    if st != es_status::ES_OK {
        assert!(
            out.items.is_null() && out.len == 0,
            "a failure leaves the empty value"
        );
        assert_eq!(next, 7777, "outputs written only on success");
        return Err(st);
    }
    let items = if out.len == 0 {
        &[][..]
    } else {
        // SAFETY: `len` events at `items`, alive until es_free.
        unsafe { std::slice::from_raw_parts(out.items, out.len) }
    };
    let positions = items.iter().map(|e| e.global_position).collect();
    es_free(&mut out);
    Ok((positions, next))
}

fn types_filter(types: &[es_string]) -> es_filter {
    es_filter {
        stream_id: null(),
        event_types: if types.is_empty() {
            null()
        } else {
            types.as_ptr()
        },
        event_type_count: types.len(),
        event_type_prefixes: null(),
        event_type_prefix_count: 0,
    }
}

fn string(s: &[u8]) -> es_string {
    es_string {
        ptr: s.as_ptr().cast(),
        len: s.len(),
    }
}

#[test]
fn filtered_reads_at_the_edges() {
    let t = common::temp_store();
    let s = store(&t.path);
    // NULL filter: everything; zero max_count examines nothing; huge is fine.
    assert_eq!(filtered(s, 0, u64::MAX, null()), Ok(((0..6).collect(), 6)));
    assert_eq!(filtered(s, 3, 0, null()), Ok((vec![], 3)));
    // Past the end: empty, next position where it started (or the end).
    let (evs, next) = filtered(s, 1_000, u64::MAX, null()).unwrap();
    assert!(evs.is_empty() && next >= 6, "next {next}");
    let (evs, _) = filtered(s, u64::MAX, u64::MAX, null()).unwrap();
    assert!(evs.is_empty());
    // An empty filter (no stream, no types, no prefixes) selects everything.
    let empty = types_filter(&[]);
    assert_eq!(filtered(s, 0, 100, &empty), Ok(((0..6).collect(), 6)));
    // Hundreds of types, one of which matches.
    let names: Vec<Vec<u8>> = (0..500).map(|i| format!("Nope{i}").into_bytes()).collect();
    let mut many: Vec<es_string> = names.iter().map(|n| string(n)).collect();
    many.push(string(b"C"));
    let f = types_filter(&many);
    assert_eq!(filtered(s, 0, 100, &f), Ok((vec![3], 6)));
    // An empty type name matches nothing (no event has one); an empty prefix all.
    let f = types_filter(&[string(b"")]);
    assert_eq!(filtered(s, 0, 100, &f), Ok((vec![], 6)));
    let prefixes = [string(b"")];
    let f = es_filter {
        event_type_prefixes: prefixes.as_ptr(),
        event_type_prefix_count: 1,
        ..types_filter(&[])
    };
    assert_eq!(filtered(s, 0, 100, &f), Ok(((0..6).collect(), 6)));
    // NULL strings: with length 0 fine, with a length refused; NULL arrays likewise.
    let f = types_filter(&[es_string {
        ptr: null(),
        len: 0,
    }]);
    assert_eq!(filtered(s, 0, 100, &f), Ok((vec![], 6)));
    let f = types_filter(&[es_string {
        ptr: null(),
        len: 3,
    }]);
    assert_eq!(
        filtered(s, 0, 100, &f),
        Err(es_status::ES_ERR_INVALID_ARGUMENT)
    );
    let f = es_filter {
        event_type_count: 2,
        ..types_filter(&[])
    };
    assert_eq!(
        filtered(s, 0, 100, &f),
        Err(es_status::ES_ERR_INVALID_ARGUMENT)
    );
    // Invalid UTF-8 in a filter string is refused.
    let f = types_filter(&[string(b"\xff\xfe")]);
    assert_eq!(
        filtered(s, 0, 100, &f),
        Err(es_status::ES_ERR_INVALID_ARGUMENT)
    );
    // A stream filter on a stream with no events: empty, not an error.
    let nobody = uuid(9);
    let f = es_filter {
        stream_id: &nobody,
        ..types_filter(&[])
    };
    assert_eq!(filtered(s, 0, 100, &f).map(|r| r.0), Ok(vec![]));
    es_close(s);
}

#[test]
fn listing_streams_and_reading_events_at_the_edges() {
    let t = common::temp_store();
    let s = store(&t.path);
    let mut out = es_streams::EMPTY;
    for (from, max, want) in [
        (0, 0, 0),
        (0, u64::MAX, 2),
        (1, u64::MAX, 1),
        (2, 5, 0),
        (u64::MAX, u64::MAX, 0),
    ] {
        assert_eq!(es_list_streams(s, from, max, &mut out), es_status::ES_OK);
        assert_eq!(out.len, want, "from {from} max {max}");
        es_free_streams(&mut out);
        assert!(out.items.is_null() && out.owner.is_null());
    }
    assert_eq!(
        es_list_streams(s, 0, 1, null_mut()),
        es_status::ES_ERR_INVALID_ARGUMENT
    );
    let mut ev = es_events::EMPTY;
    assert_eq!(es_read_event(s, &uuid(14), &mut ev), es_status::ES_OK);
    assert_eq!(ev.len, 1);
    es_free(&mut ev);
    assert_eq!(
        es_read_event(s, &uuid(0), &mut ev),
        es_status::ES_ERR_EVENT_NOT_FOUND
    );
    assert_eq!(
        es_read_event(s, &uuid(99), &mut ev),
        es_status::ES_ERR_EVENT_NOT_FOUND
    );
    assert_eq!(
        es_read_event(s, null(), &mut ev),
        es_status::ES_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        es_read_event(s, &uuid(14), null_mut()),
        es_status::ES_ERR_INVALID_ARGUMENT
    );
    es_close(s);
}

#[test]
fn a_nul_or_invalid_utf8_event_type_is_refused_by_the_c_appends_naming_the_event() {
    let t = common::temp_store();
    let s = store(&t.path);
    let (one, two) = (uuid(1), uuid(2));
    let last_error = || {
        // SAFETY: never NULL, NUL-terminated.
        unsafe { std::ffi::CStr::from_ptr(eventstore::ffi::misc::es_last_error()) }
            .to_string_lossy()
            .into_owned()
    };
    let bad = [event(20, b"Ok"), event(21, b"A\0B")];
    assert_eq!(
        es_append(s, &one, -2, bad.as_ptr(), 2, null_mut()),
        es_status::ES_ERR_INVALID_ARGUMENT
    );
    let m = last_error();
    assert!(m.contains("events[1]") && m.contains("NUL"), "{m}");
    let bad = [event(22, b"\xc3\x28")];
    assert_eq!(
        es_append(s, &one, -2, bad.as_ptr(), 1, null_mut()),
        es_status::ES_ERR_INVALID_ARGUMENT
    );
    let m = last_error();
    assert!(m.contains("events[0]") && m.contains("UTF-8"), "{m}");
    let good = [event(23, b"Ok")];
    let nul = [event(24, b"\0")];
    let parts = [
        es_stream_append {
            stream_id: one,
            expected_version: -2,
            events: good.as_ptr(),
            count: 1,
        },
        es_stream_append {
            stream_id: two,
            expected_version: -2,
            events: nul.as_ptr(),
            count: 1,
        },
    ];
    assert_eq!(
        es_append_multi(s, parts.as_ptr(), 2, null_mut()),
        es_status::ES_ERR_INVALID_ARGUMENT
    );
    let m = last_error();
    assert!(m.contains("appends[1]") && m.contains("NUL"), "{m}");
    assert_eq!(
        eventstore::ffi::store::es_global_position(s),
        6,
        "nothing written"
    );
    es_close(s);
}

#[test]
fn a_subscription_outlives_its_filter_and_its_closed_store() {
    let t = common::temp_store();
    let s = store(&t.path);
    let mut sub = null_mut();
    {
        // The filter and its strings live only for the call.
        let names = [b"A".to_vec(), b"C".to_vec()];
        let strings: Vec<es_string> = names.iter().map(|n| string(n)).collect();
        let f = types_filter(&strings);
        assert_eq!(es_subscribe(s, 0, &f, &mut sub), es_status::ES_OK);
        drop(strings);
        drop(names);
    }
    // Overwrite the freed memory's likely neighbourhood with other allocations.
    let _noise: Vec<Vec<u8>> = (0..64).map(|i| vec![b'Z'; 1 + i % 3]).collect();
    let mut out = es_events::EMPTY;
    assert_eq!(
        es_subscription_next(sub, 100, 0, &mut out),
        es_status::ES_OK
    );
    // SAFETY: `len` events at `items`.
    let got: Vec<u64> = unsafe { std::slice::from_raw_parts(out.items, out.len) }
        .iter()
        .map(|e| e.global_position)
        .collect();
    assert_eq!(
        got,
        [0, 2, 3, 4],
        "A and C, as the filter said when it was given"
    );
    es_free(&mut out);
    // The store is closed while the subscription is open: it stays usable until the
    // subscription closes (as documented), and a zero max_count returns at once.
    es_close(s);
    assert_eq!(es_subscription_next(sub, 0, -1, &mut out), es_status::ES_OK);
    assert_eq!(out.len, 0);
    assert_eq!(
        es_subscription_next(sub, u64::MAX, 0, &mut out),
        es_status::ES_OK
    );
    assert_eq!(out.len, 0);
    assert_eq!(es_subscription_position(sub), 6);
    es_subscription_close(sub);
    es_subscription_close(null_mut());
    assert_eq!(
        es_subscription_next(null_mut(), 1, 0, &mut out),
        es_status::ES_ERR_INVALID_ARGUMENT
    );
    // Reopens cleanly: the last close released the lock.
    let p = CString::new(t.path.to_str().unwrap()).unwrap();
    let mut again = null_mut();
    assert_eq!(es_open(p.as_ptr(), &mut again), es_status::ES_OK);
    es_close(again);
}
