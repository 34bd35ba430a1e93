//! The read commands: info, streams, dump, tail, export.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use eventstore::{EventBatch, Filter, Store, Uuid};
use serde_json::json;

use crate::access::{self, Flow, Range};
use crate::fail::{OrStdout, Result, EXIT_OK};
use crate::progress::{Progress, Unit};
use crate::render::{event_json, event_row, table_header, utc};

/// Events `tail -f` takes from its subscription at most per call.
const FOLLOW_PAGE: u64 = 4096;

pub fn stdout() -> BufWriter<std::io::StdoutLock<'static>> {
    BufWriter::with_capacity(1 << 16, std::io::stdout().lock())
}

pub fn info(path: &Path, json: bool) -> Result<i32> {
    access::must_exist(path)?;
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let store = access::open_for_read(path)?;
    let facts = store.info();
    let events = facts.event_count;
    let first = first_last(&store, 0)?;
    let last = first_last(&store, events.saturating_sub(1))?;
    let writer = access::writer_open(&store);
    let mut out = stdout();
    if json {
        let v = json!({
            "path": path.display().to_string(),
            "format_version": facts.format_version,
            "events": events,
            "streams": facts.stream_count,
            "data_bytes": facts.data_bytes,
            "file_bytes": file_bytes,
            "first_recorded_at": first,
            "first_recorded_at_utc": first.map(utc),
            "last_recorded_at": last,
            "last_recorded_at_utc": last.map(utc),
            "index_bytes": facts.index_bytes,
            "writer_open": writer,
            "read_only": facts.read_only,
            "poisoned": facts.poisoned,
            "recovered_bytes_dropped": facts.recovered_bytes_dropped,
        });
        writeln!(out, "{v}").or_stdout()?;
    } else {
        let time =
            |t: Option<u64>| t.map_or_else(|| "-".to_string(), |t| format!("{} ({t})", utc(t)));
        let yes = |b: bool| if b { "yes" } else { "no" };
        writeln!(
            out,
            "path            {}\nformat version  {}\nevents          {events}\nstreams         {}\ndata bytes      {}\nfile bytes      {file_bytes}\nfirst event     {}\nlast event      {}\nindex memory    {} bytes ({:.1} MiB)\nwriter open     {}\nopened          {}\ncut at open     {} bytes\npoisoned        {}",
            path.display(),
            facts.format_version,
            facts.stream_count,
            facts.data_bytes,
            time(first),
            time(last),
            facts.index_bytes,
            facts.index_bytes as f64 / (1 << 20) as f64,
            yes(writer),
            if facts.read_only { "read-only" } else { "for writing" },
            facts.recovered_bytes_dropped,
            yes(facts.poisoned),
        )
        .or_stdout()?;
    }
    out.flush().or_stdout()?;
    Ok(EXIT_OK)
}

fn first_last(store: &Store, position: u64) -> Result<Option<u64>> {
    let e = store
        .read_all(position, 1)
        .map_err(|e| crate::fail::Fail::store(store.path(), e))?;
    Ok(e.first().map(|e| e.recorded_at))
}

pub fn streams(path: &Path, from: u64, limit: Option<u64>, json: bool) -> Result<i32> {
    let store = access::open_for_read(path)?;
    let mut out = stdout();
    if !json {
        writeln!(
            out,
            "{:>8}  {:<36}  {:>10}  {:>12}  {:>14}  {:>14}",
            "INDEX", "STREAM", "EVENTS", "LAST_VERSION", "FIRST_POSITION", "LAST_POSITION"
        )
        .or_stdout()?;
    }
    access::list_streams(&store, from, limit, &mut |i, r| {
        let (id, events, last) = (r.stream_id, r.last_version + 1, r.last_version);
        let (first_p, last_p) = (r.first_global_position, r.last_global_position);
        if json {
            writeln!(
                out,
                "{{\"index\":{i},\"stream_id\":\"{id}\",\"events\":{events},\"last_version\":{last},\"first_position\":{first_p},\"last_position\":{last_p}}}"
            )
        } else {
            writeln!(
                out,
                "{i:>8}  {id}  {events:>10}  {last:>12}  {first_p:>14}  {last_p:>14}"
            )
        }
        .or_stdout()?;
        Ok(Flow::More)
    })?;
    out.flush().or_stdout()?;
    Ok(EXIT_OK)
}

pub fn dump(
    path: &Path,
    filter: &Filter,
    range: Range,
    limit: Option<u64>,
    json: bool,
    quiet: bool,
) -> Result<i32> {
    let store = access::open_for_read(path)?;
    let total = store.global_position();
    let progress = Progress::new(quiet, "reading", Unit::Events, Some(total));
    let mut out = stdout();
    if !json {
        table_header(&mut out)?;
    }
    let limit = limit.unwrap_or(u64::MAX);
    let mut shown = 0u64;
    let mut batches = access::BatchOf::default();
    if limit > 0 {
        access::read_matching(&store, filter, range, &mut |e| {
            if json {
                event_json(&mut out, e, batches.of(&store, e.global_position))?;
            } else {
                event_row(&mut out, e)?;
            }
            shown += 1;
            if shown.is_multiple_of(4096) {
                progress.set(if range.backward {
                    total - e.global_position
                } else {
                    e.global_position
                });
            }
            Ok(if shown >= limit {
                Flow::Stop
            } else {
                Flow::More
            })
        })?;
    }
    progress.done();
    out.flush().or_stdout()?;
    Ok(EXIT_OK)
}

pub fn event(path: &Path, id: Uuid, json: bool) -> Result<i32> {
    let store = access::open_for_read(path)?;
    let e = store
        .read_event(id)
        .map_err(|e| crate::fail::Fail::store(path, e))?;
    let mut out = stdout();
    if json {
        let batch = access::BatchOf::default().of(&store, e.global_position);
        event_json(&mut out, &access::view(&e), batch)?;
    } else {
        table_header(&mut out)?;
        event_row(&mut out, &access::view(&e))?;
    }
    out.flush().or_stdout()?;
    Ok(EXIT_OK)
}

pub fn export(path: &Path, from: u64, quiet: bool) -> Result<i32> {
    dump(
        path,
        &Filter::default(),
        Range {
            from,
            to: u64::MAX,
            backward: false,
        },
        None,
        true,
        quiet,
    )
}

/// How long `tail -f` follows: at most `max` new events, at most `timeout`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Follow {
    pub max: Option<u64>,
    pub timeout: Option<Duration>,
}

pub fn tail(
    path: &Path,
    filter: &Filter,
    lines: u64,
    follow: Option<Follow>,
    json: bool,
) -> Result<i32> {
    let store = access::open_for_read(path)?;
    let mut out = stdout();
    let end = last_events(&store, filter, lines, follow.is_some(), json, &mut out)?;
    out.flush().or_stdout()?;
    if let Some(follow) = follow {
        follow_from(&store, filter, end, json, &mut out, follow)?;
    }
    Ok(EXIT_OK)
}

/// Writes the last `n` matching events, oldest first; returns the event count of the
/// log when it looked (following goes on from there). Without a type filter this is
/// one backward read of exactly `n` events. A stream that has no events is an error,
/// unless `following` (as `tail -F` waits for a file): then nothing is shown yet and
/// the stream's first events are followed when they come.
fn last_events(
    store: &Store,
    filter: &Filter,
    n: u64,
    following: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<u64> {
    let fail = |e| crate::fail::Fail::store(store.path(), e);
    let end = store.global_position();
    let mut newest_first = Vec::new();
    let mut absent = false;
    if let Some(s) = filter.stream_id {
        if store.stream_version(&s).is_none() {
            if !following {
                return Err(fail(eventstore::Error::StreamNotFound { stream_id: s }));
            }
            absent = true;
        }
    }
    if n == 0 || end == 0 || absent {
        // Nothing to show.
    } else if !filter.selects_types() {
        newest_first = match filter.stream_id {
            Some(s) => store.read_stream_backward(s, u64::MAX, n),
            None => store.read_all_backward(end - 1, n),
        }
        .map_err(fail)?;
        // What came after `end` (a writer's appends meanwhile) is for following.
        newest_first.retain(|e| e.global_position < end);
    } else {
        access::read_matching(
            store,
            filter,
            Range {
                from: 0,
                to: end - 1,
                backward: true,
            },
            &mut |e| {
                newest_first.push(e.to_recorded());
                Ok(if newest_first.len() as u64 >= n {
                    Flow::Stop
                } else {
                    Flow::More
                })
            },
        )?;
    }
    let mut batches = access::BatchOf::default();
    for e in newest_first.iter().rev() {
        let view = access::view(e);
        if json {
            event_json(out, &view, batches.of(store, e.global_position))?;
        } else {
            event_row(out, &view)?;
        }
    }
    Ok(end)
}

/// Shows every matching event from `position` on as it is acknowledged, through a
/// subscription (`Store::subscribe`: it reads what is there, then sleeps in the
/// library until a writer in any process publishes more), until `follow.max` events
/// were shown, `follow.timeout` passed, or the output is closed. Returns how many
/// events it showed.
pub fn follow_from(
    store: &Store,
    filter: &Filter,
    position: u64,
    json: bool,
    out: &mut dyn Write,
    follow: Follow,
) -> Result<u64> {
    let deadline = follow.timeout.map(|t| Instant::now() + t);
    let max = follow.max.unwrap_or(u64::MAX);
    let mut shown = 0u64;
    let mut subscription = store.subscribe(position, filter.clone());
    let mut batch = EventBatch::default();
    let mut batches = access::BatchOf::default();
    while shown < max {
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => break,
            },
            None => None,
        };
        subscription
            .next_batch_into((max - shown).min(FOLLOW_PAGE), wait, &mut batch)
            .map_err(|e| crate::fail::Fail::store(store.path(), e))?;
        for e in batch.iter() {
            if json {
                event_json(out, &e, batches.of(store, e.global_position))?;
            } else {
                event_row(out, &e)?;
            }
        }
        shown += batch.len() as u64;
        out.flush().or_stdout()?;
    }
    Ok(shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventstore::{ExpectedVersion, ProposedEvent, Uuid};
    use std::sync::Arc;

    fn ev(t: &str) -> ProposedEvent {
        ProposedEvent {
            event_id: Uuid::nil(),
            event_type: t.into(),
            metadata: vec![],
            payload: b"{}".to_vec(),
        }
    }

    /// The follow loop, on a read-only handle, shows the events another handle
    /// appends after it started, filtered, in order, and stops after `max` of them.
    #[test]
    fn follow_shows_new_matching_events_as_they_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.store");
        let writer = Arc::new(Store::open(&path).unwrap());
        let s = Uuid::from_u128(1);
        writer
            .append(s, ExpectedVersion::Any, vec![ev("Old")])
            .unwrap();
        let reader = access::open_for_read(&path).unwrap();
        let appender = {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                for i in 0..8 {
                    std::thread::sleep(Duration::from_millis(30));
                    let t = if i % 2 == 0 { "Keep" } else { "Skip" };
                    writer.append(s, ExpectedVersion::Any, vec![ev(t)]).unwrap();
                }
            })
        };
        let mut out = Vec::new();
        let follow = Follow {
            max: Some(3),
            timeout: Some(Duration::from_secs(20)),
        };
        let shown =
            follow_from(&reader, &Filter::types(["Keep"]), 1, true, &mut out, follow).unwrap();
        appender.join().unwrap();
        assert_eq!(shown, 3);
        let text = String::from_utf8(out).unwrap();
        let positions: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["global_position"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(positions, [1, 3, 5]);
    }

    /// With nothing new, following stops when its time is up, having shown nothing.
    #[test]
    fn follow_stops_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.store");
        let writer = Store::open(&path).unwrap();
        writer
            .append(Uuid::from_u128(1), ExpectedVersion::Any, vec![ev("Old")])
            .unwrap();
        let reader = access::open_for_read(&path).unwrap();
        let started = Instant::now();
        let follow = Follow {
            max: None,
            timeout: Some(Duration::from_millis(300)),
        };
        let mut out = Vec::new();
        let shown = follow_from(&reader, &Filter::all(), 1, true, &mut out, follow).unwrap();
        let took = started.elapsed();
        assert_eq!(shown, 0);
        assert!(out.is_empty());
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
}
