//! The commands that check and copy whole files: verify, backup, salvage.

use std::io::Write;
use std::path::Path;

use eventstore::inspect::{self, DamagedRange, Inspection, RangeKind};
use eventstore::Error;
use serde_json::{json, Value};

use crate::access;
use crate::fail::{Fail, OrStdout, Result, EXIT_FOUND, EXIT_OK};
use crate::progress::{Progress, Unit};
use crate::read::stdout;

/// "1 event", "3 events".
fn events(n: u64) -> String {
    if n == 1 {
        "1 event".into()
    } else {
        format!("{n} events")
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn range_json(r: &DamagedRange) -> Value {
    json!({
        "kind": r.kind.name(),
        "start": r.start,
        "end": r.end,
        "bytes": r.end - r.start,
        "first_lost_position": r.first_lost_position,
        "lost_events": r.lost_events,
        "detail": r.detail,
    })
}

/// One line per range, for a person.
fn range_line(r: &DamagedRange) -> String {
    let what = match r.kind {
        RangeKind::Damage => "damage",
        RangeKind::TornTail => "torn tail",
        RangeKind::Unused => "unused",
    };
    let lost = match (r.kind, r.lost_events) {
        (RangeKind::Unused, _) => "preallocated space, nothing lost".to_string(),
        (_, Some(0)) => format!("no event lost before position {}", r.first_lost_position),
        (_, Some(1)) => format!("position {} lost (1 event)", r.first_lost_position),
        (_, Some(n)) => format!(
            "positions {}-{} lost ({n} events)",
            r.first_lost_position,
            r.first_lost_position + n - 1
        ),
        (_, None) => format!(
            "from position {} on: an unfinished last write, never acknowledged",
            r.first_lost_position
        ),
    };
    format!(
        "  {what:<9} bytes {}..{} ({} bytes): {lost}: {}",
        r.start,
        r.end,
        r.end - r.start,
        r.detail
    )
}

pub fn verify(path: &Path, json: bool, quiet: bool) -> Result<i32> {
    access::must_exist(path)?;
    let total = file_len(path);
    let progress = Progress::new(quiet, "verifying", Unit::Bytes, Some(total));
    let mut kept_batches = 0u64;
    let found = inspect::scan(path, |b| {
        kept_batches += 1;
        if kept_batches.is_multiple_of(1024) {
            progress.set(b.offset + b.len);
        }
        Ok(())
    })
    .map_err(|e| Fail::store(path, e))?;
    progress.done();
    let sound = found.is_sound();
    let mut out = stdout();
    if json {
        let v = json!({
            "path": path.display().to_string(),
            "sound": sound,
            "format_version": found.format_version,
            "file_bytes": found.file_len,
            "batches": found.batches,
            "events": found.events,
            "streams": found.streams,
            "valid_bytes": found.valid_end,
            "valid_events": found.valid_events,
            "ranges": found.ranges.iter().map(range_json).collect::<Vec<_>>(),
            "salvage": {
                "batches": found.batches,
                "events": found.events,
                "lost_events": found.lost_events(),
            },
        });
        writeln!(out, "{v}").or_stdout()?;
    } else {
        write_verdict(&mut out, path, &found)?;
    }
    out.flush().or_stdout()?;
    Ok(if sound { EXIT_OK } else { EXIT_FOUND })
}

fn write_verdict(out: &mut dyn Write, path: &Path, found: &Inspection) -> Result<()> {
    let p = path.display();
    let verdict = if found.is_sound() { "sound" } else { "DAMAGED" };
    let mut text = format!(
        "{p}: {verdict}\n  format {}, {} bytes; {} intact batches holding {} events of {} streams\n",
        found.format_version, found.file_len, found.batches, found.events, found.streams
    );
    for r in &found.ranges {
        text.push_str(&range_line(r));
        text.push('\n');
    }
    if found.is_sound() {
        if found.valid_end < found.file_len {
            text.push_str(&format!(
                "  open keeps {} events ({} bytes) and cuts off the {} bytes after them\n",
                found.valid_events,
                found.valid_end,
                found.file_len - found.valid_end
            ));
        }
    } else {
        text.push_str(&format!(
            "  open refuses this store (CorruptRecord); its intact prefix is {} events ({} bytes)\n  salvage would keep {} batches ({} events) and lose {}: run `eventstore salvage {p} NEW`\n",
            found.valid_events,
            found.valid_end,
            found.batches,
            found.events,
            events(found.lost_events())
        ));
    }
    out.write_all(text.as_bytes()).or_stdout()
}

fn must_be_new(dest: &Path) -> Result<()> {
    if dest.exists() {
        return Err(Fail::usage(format!(
            "{} already exists: give a path that does not exist",
            dest.display()
        )));
    }
    Ok(())
}

pub fn backup(path: &Path, dest: &Path, json: bool, quiet: bool) -> Result<i32> {
    must_be_new(dest)?;
    let store = access::open_for_read(path)?;
    let progress = Progress::new(quiet, "backing up", Unit::Bytes, None);
    let report = store
        .backup_to(dest, &mut |done, total| {
            progress.set_total(total);
            progress.set(done);
        })
        .map_err(|e| Fail::store(dest, e))?;
    progress.done();
    let mut out = stdout();
    if json {
        let v = json!({
            "path": path.display().to_string(),
            "dest": dest.display().to_string(),
            "events": report.events,
            "bytes": report.bytes,
            "verified": true,
        });
        writeln!(out, "{v}")
    } else {
        writeln!(
            out,
            "backed up {} events ({} bytes) from {} to {}; the copy verifies",
            report.events,
            report.bytes,
            path.display(),
            dest.display()
        )
    }
    .or_stdout()?;
    out.flush().or_stdout()?;
    Ok(EXIT_OK)
}

pub fn salvage(path: &Path, dest: &Path, json: bool, quiet: bool) -> Result<i32> {
    access::must_exist(path)?;
    must_be_new(dest)?;
    let progress = Progress::new(quiet, "salvaging", Unit::Bytes, Some(file_len(path)));
    let report =
        inspect::salvage(path, dest, &mut |done, _| progress.set(done)).map_err(|e| match e {
            Error::InvalidHeader { .. } | Error::Io { .. } if !dest.exists() => {
                Fail::store(path, e)
            }
            e => Fail::store(dest, e),
        })?;
    progress.done();
    let found = &report.inspection;
    let damaged = !found.is_sound();
    let mut out = stdout();
    if json {
        let v = json!({
            "path": path.display().to_string(),
            "dest": dest.display().to_string(),
            "damage_found": damaged,
            "kept_batches": report.kept_batches,
            "kept_events": report.kept_events,
            "lost_events": found.lost_events(),
            "renumbered_from": report.renumbered_from,
            "ranges": found.ranges.iter().map(range_json).collect::<Vec<_>>(),
        });
        writeln!(out, "{v}").or_stdout()?;
    } else {
        let mut text = format!(
            "salvaged {} batches ({} events) from {} into {}\n",
            report.kept_batches,
            report.kept_events,
            path.display(),
            dest.display()
        );
        if found.ranges.is_empty() {
            text.push_str("  nothing was lost: the source is sound\n");
        }
        for r in &found.ranges {
            text.push_str(&range_line(r));
            text.push('\n');
        }
        if damaged {
            text.push_str(&format!("  lost: {}\n", events(found.lost_events())));
        }
        if let Some(p) = report.renumbered_from {
            text.push_str(&format!(
                "  events from source position {p} on moved down to close the gaps (positions and the versions of streams that lost events changed)\n"
            ));
        }
        out.write_all(text.as_bytes()).or_stdout()?;
    }
    out.flush().or_stdout()?;
    Ok(if damaged { EXIT_FOUND } else { EXIT_OK })
}
