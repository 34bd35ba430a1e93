//! How events and facts are shown: the JSON-lines event schema (shared by `dump
//! --json`, `tail --json` and `export`, and read back by `import`), the table, times.

use std::io::Write;

use base64::Engine;
use eventstore::codec::RecordView;
use serde_json::value::RawValue;

use crate::fail::{OrStdout, Result};

/// How the bytes of a payload or metadata are written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The bytes are a JSON value, written as it is (its exact text).
    Json,
    /// The bytes are UTF-8 text, written as a JSON string.
    Text,
    /// Anything else, written as a base64 string (standard alphabet, padded).
    Base64,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Text => "text",
            Encoding::Base64 => "base64",
        }
    }

    /// `json` when the bytes are one JSON value whose exact text can stand inside a
    /// JSON line (no surrounding whitespace, no line break), so that reading it back
    /// gives the same bytes; else `text` when they are UTF-8; else `base64`.
    pub fn of(bytes: &[u8]) -> Encoding {
        match std::str::from_utf8(bytes) {
            Ok(s) if is_exact_json(s) => Encoding::Json,
            Ok(s)
                if !s
                    .chars()
                    .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) =>
            {
                Encoding::Text
            }
            _ => Encoding::Base64,
        }
    }
}

fn is_exact_json(s: &str) -> bool {
    if s.is_empty() || s.contains(['\n', '\r']) {
        return false;
    }
    match serde_json::from_str::<&RawValue>(s) {
        Ok(raw) => raw.get().len() == s.len(),
        Err(_) => false,
    }
}

/// Writes `bytes` as a JSON value in `encoding`.
fn write_bytes(out: &mut dyn Write, bytes: &[u8], encoding: Encoding) -> std::io::Result<()> {
    match encoding {
        Encoding::Json => out.write_all(bytes),
        Encoding::Text => {
            let s = std::str::from_utf8(bytes).expect("checked by Encoding::of");
            serde_json::to_writer(&mut *out, s).map_err(std::io::Error::other)
        }
        Encoding::Base64 => {
            let s = base64::engine::general_purpose::STANDARD.encode(bytes);
            write!(out, "\"{s}\"")
        }
    }
}

/// One event as a line of JSON (see docs/cli.md, "The event schema"); `batch` is the
/// position of the first event of its batch.
pub fn event_json(out: &mut dyn Write, e: &RecordView<'_>, batch: u64) -> Result<()> {
    (|| -> std::io::Result<()> {
        write!(
            out,
            "{{\"global_position\":{},\"stream_id\":\"{}\",\"stream_version\":{},\"event_id\":\"{}\",\"event_type\":",
            e.global_position, e.stream_id, e.stream_version, e.event_id
        )?;
        serde_json::to_writer(&mut *out, e.event_type).map_err(std::io::Error::other)?;
        write!(
            out,
            ",\"recorded_at\":{},\"recorded_at_utc\":\"{}\",\"payload\":",
            e.recorded_at,
            utc(e.recorded_at)
        )?;
        let p = Encoding::of(e.payload);
        write_bytes(out, e.payload, p)?;
        write!(out, ",\"payload_encoding\":\"{}\",\"metadata\":", p.name())?;
        let m = Encoding::of(e.metadata);
        write_bytes(out, e.metadata, m)?;
        writeln!(
            out,
            ",\"metadata_encoding\":\"{}\",\"batch_position\":{batch}}}",
            m.name()
        )
    })()
    .or_stdout()
}

/// The table's header line.
pub fn table_header(out: &mut dyn Write) -> Result<()> {
    writeln!(
        out,
        "{:>10}  {:<36}  {:>7}  {:<27}  {:<24}  PAYLOAD [METADATA]",
        "POSITION", "STREAM", "VERSION", "RECORDED_AT (UTC)", "TYPE"
    )
    .or_stdout()
}

/// One event as a table row: payload and metadata as JSON, text or base64.
pub fn event_row(out: &mut dyn Write, e: &RecordView<'_>) -> Result<()> {
    (|| -> std::io::Result<()> {
        write!(
            out,
            "{:>10}  {}  {:>7}  {:<27}  {:<24}  ",
            e.global_position,
            e.stream_id,
            e.stream_version,
            utc(e.recorded_at),
            e.event_type
        )?;
        shown(out, e.payload)?;
        if !e.metadata.is_empty() {
            out.write_all(b" [")?;
            shown(out, e.metadata)?;
            out.write_all(b"]")?;
        }
        out.write_all(b"\n")
    })()
    .or_stdout()
}

/// Bytes for a person: JSON or text as they are (line breaks escaped), else base64.
fn shown(out: &mut dyn Write, bytes: &[u8]) -> std::io::Result<()> {
    match (Encoding::of(bytes), std::str::from_utf8(bytes)) {
        (Encoding::Base64, _) | (_, Err(_)) => write!(
            out,
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
        (_, Ok(s)) if !s.contains(['\n', '\r']) => out.write_all(bytes),
        (_, Ok(s)) => out.write_all(s.replace('\n', "\\n").replace('\r', "\\r").as_bytes()),
    }
}

/// Microseconds since the Unix epoch as `2026-11-26T16:00:00.123456Z`.
pub fn utc(micros: u64) -> String {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(utc(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(utc(1_764_172_800_123_456), "2025-11-26T16:00:00.123456Z");
    }

    #[test]
    fn encodings_keep_the_exact_bytes_readable() {
        assert_eq!(Encoding::of(br#"{"a":1}"#), Encoding::Json);
        assert_eq!(Encoding::of(br#"{"a": 1}"#), Encoding::Json);
        assert_eq!(Encoding::of(b"42"), Encoding::Json);
        assert_eq!(Encoding::of(b" 42"), Encoding::Text);
        assert_eq!(Encoding::of(b"{\"a\":\n1}"), Encoding::Text);
        assert_eq!(Encoding::of(b"hello"), Encoding::Text);
        assert_eq!(Encoding::of(b""), Encoding::Text);
        assert_eq!(Encoding::of(&[0xff, 0, 1]), Encoding::Base64);
        assert_eq!(Encoding::of(&[0, 1, 2]), Encoding::Base64);
        assert_eq!(Encoding::of(b"a\tb\nc"), Encoding::Text);
    }
}
