//! The read commands: info, streams, dump, tail, export.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use eventstore::Store;
use serde_json::json;

use crate::fail::{OrStdout, Result, EXIT_OK};
use crate::progress::{Progress, Unit};
use crate::render::{event_json, event_row, table_header, utc};
use crate::seams::{self, Filter, Flow, Range};

pub fn stdout() -> BufWriter<std::io::StdoutLock<'static>> {
    BufWriter::with_capacity(1 << 16, std::io::stdout().lock())
}

pub fn info(path: &Path, json: bool) -> Result<i32> {
    seams::must_exist(path)?;
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let store = seams::open_for_read(path)?;
    let format_version = format_version(path)?;
    let events = store.global_position();
    let stats = store.index_stats();
    let (data_bytes, _) = store.acknowledged_len();
    let first = first_last(&store, 0)?;
    let last = first_last(&store, events.saturating_sub(1))?;
    let writer = seams::writer_open(&store);
    let mut out = stdout();
    if json {
        let v = json!({
            "path": path.display().to_string(),
            "format_version": format_version,
            "events": events,
            "streams": stats.streams,
            "data_bytes": data_bytes,
            "file_bytes": file_bytes,
            "first_recorded_at": first,
            "first_recorded_at_utc": first.map(utc),
            "last_recorded_at": last,
            "last_recorded_at_utc": last.map(utc),
            "index_bytes": stats.heap_bytes,
            "writer_open": writer,
        });
        writeln!(out, "{v}").or_stdout()?;
    } else {
        let time =
            |t: Option<u64>| t.map_or_else(|| "-".to_string(), |t| format!("{} ({t})", utc(t)));
        writeln!(
            out,
            "path            {}\nformat version  {format_version}\nevents          {events}\nstreams         {}\ndata bytes      {data_bytes}\nfile bytes      {file_bytes}\nfirst event     {}\nlast event      {}\nindex memory    {} bytes ({:.1} MiB)\nwriter open     {}",
            path.display(),
            stats.streams,
            time(first),
            time(last),
            stats.heap_bytes,
            stats.heap_bytes as f64 / (1 << 20) as f64,
            if writer { "yes" } else { "no" },
        )
        .or_stdout()?;
    }
    out.flush().or_stdout()?;
    Ok(EXIT_OK)
}

fn format_version(path: &Path) -> Result<u16> {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| {
            crate::fail::Fail::new(
                crate::fail::EXIT_IO,
                format!("read the header of {}: {e}", path.display()),
            )
        })?;
    Ok(u16::from_le_bytes([head[6], head[7]]))
}

fn first_last(store: &Store, position: u64) -> Result<Option<u64>> {
    let e = store
        .read_all(position, 1)
        .map_err(|e| crate::fail::Fail::store(store.path(), e, false))?;
    Ok(e.first().map(|e| e.recorded_at))
}

pub fn streams(path: &Path, from: u64, limit: Option<u64>, json: bool, quiet: bool) -> Result<i32> {
    let store = seams::open_for_read(path)?;
    let progress = Progress::new(
        quiet,
        "reading the log",
        Unit::Events,
        Some(store.global_position()),
    );
    let rows = seams::list_streams(&store, &mut |n| progress.set(n))?;
    progress.done();
    let mut out = stdout();
    if !json {
        writeln!(
            out,
            "{:>8}  {:<36}  {:>10}  {:>12}  {:>14}  {:>14}",
            "INDEX", "STREAM", "EVENTS", "LAST_VERSION", "FIRST_POSITION", "LAST_POSITION"
        )
        .or_stdout()?;
    }
    let take = limit.unwrap_or(u64::MAX).min(usize::MAX as u64) as usize;
    for (i, r) in rows
        .iter()
        .enumerate()
        .skip(from.min(usize::MAX as u64) as usize)
        .take(take)
    {
        if json {
            writeln!(
                out,
                "{{\"index\":{i},\"stream_id\":\"{}\",\"events\":{},\"last_version\":{},\"first_position\":{},\"last_position\":{}}}",
                r.stream_id, r.events, r.last_version, r.first_position, r.last_position
            )
        } else {
            writeln!(
                out,
                "{i:>8}  {}  {:>10}  {:>12}  {:>14}  {:>14}",
                r.stream_id, r.events, r.last_version, r.first_position, r.last_position
            )
        }
        .or_stdout()?;
    }
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
    let store = seams::open_for_read(path)?;
    let total = store.global_position();
    let progress = Progress::new(quiet, "reading", Unit::Events, Some(total));
    let mut out = stdout();
    if !json {
        table_header(&mut out)?;
    }
    let limit = limit.unwrap_or(u64::MAX);
    let mut shown = 0u64;
    if limit > 0 {
        seams::read_matching(&store, filter, range, &mut |e| {
            if json {
                event_json(&mut out, e)?;
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

pub fn tail(
    path: &Path,
    filter: &Filter,
    lines: u64,
    follow: bool,
    json: bool,
    quiet: bool,
) -> Result<i32> {
    let store = seams::open_for_read(path)?;
    let mut out = stdout();
    let end = last_events(&store, filter, lines, json, &mut out)?;
    out.flush().or_stdout()?;
    if follow {
        if !quiet {
            eprintln!("eventstore: following; until read-only opens land this holds the store's lock, so writers in other processes cannot open it meanwhile (Ctrl-C to stop)");
        }
        follow_from(&store, filter, end, json, &mut out, &mut |_| false)?;
    }
    Ok(EXIT_OK)
}

/// Writes the last `n` matching events, oldest first; returns the position after
/// the log's end as it was read.
fn last_events(
    store: &Store,
    filter: &Filter,
    n: u64,
    json: bool,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut newest_first = Vec::new();
    let end = store.global_position();
    if n > 0 {
        seams::read_matching(
            store,
            filter,
            Range {
                from: 0,
                to: end.saturating_sub(1),
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
    } else if let Some(s) = filter.stream {
        // An unknown stream is an error also when no event is asked for.
        store
            .read_stream_batch(s, 0, 0)
            .map_err(|e| crate::fail::Fail::store(store.path(), e, false))?;
    }
    for e in newest_first.iter().rev() {
        let view = eventstore::codec::RecordView {
            global_position: e.global_position,
            stream_version: e.stream_version,
            recorded_at: e.recorded_at,
            stream_id: e.stream_id,
            event_id: e.event_id,
            event_type: &e.event_type,
            event_type_with_nul: &[],
            metadata: &e.metadata,
            payload: &e.payload,
        };
        if json {
            event_json(out, &view)?;
        } else {
            event_row(out, &view)?;
        }
    }
    Ok(end)
}

/// Shows every matching event from `position` on as it is acknowledged, until
/// `stop(position followed to)` says so or the output is closed.
pub fn follow_from(
    store: &Store,
    filter: &Filter,
    mut position: u64,
    json: bool,
    out: &mut dyn Write,
    stop: &mut dyn FnMut(u64) -> bool,
) -> Result<()> {
    while !stop(position) {
        let now = seams::wait_for_more(store, position, Duration::from_millis(500));
        if now <= position {
            continue;
        }
        position = seams::read_matching(
            store,
            filter,
            Range {
                from: position,
                to: now - 1,
                backward: false,
            },
            &mut |e| {
                if json {
                    event_json(out, e)?;
                } else {
                    event_row(out, e)?;
                }
                Ok(Flow::More)
            },
        )?
        .min(now);
        out.flush().or_stdout()?;
    }
    Ok(())
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

    /// The follow loop shows events appended after it started, filtered, in order.
    #[test]
    fn follow_shows_new_matching_events_as_they_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.store")).unwrap());
        let s = Uuid::from_u128(1);
        store
            .append(s, ExpectedVersion::Any, vec![ev("Old")])
            .unwrap();
        let writer = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..6 {
                    std::thread::sleep(Duration::from_millis(30));
                    let t = if i % 2 == 0 { "Keep" } else { "Skip" };
                    store.append(s, ExpectedVersion::Any, vec![ev(t)]).unwrap();
                }
            })
        };
        let filter = Filter {
            types: vec!["Keep".into()],
            ..Filter::default()
        };
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        follow_from(&store, &filter, 1, true, &mut out, &mut |at| {
            at >= 7 || std::time::Instant::now() > deadline
        })
        .unwrap();
        writer.join().unwrap();
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
}
