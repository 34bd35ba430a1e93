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
fn write_bytes(out: &mut Vec<u8>, bytes: &[u8], encoding: Encoding) -> std::io::Result<()> {
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
/// position of the first event of its batch. The line is put together in a reused
/// buffer without `fmt` (a whole-log export writes millions of them).
pub fn event_json(out: &mut dyn Write, e: &RecordView<'_>, batch: u64) -> Result<()> {
    thread_local! {
        static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    LINE.with_borrow_mut(|line| {
        line.clear();
        line.extend_from_slice(b"{\"global_position\":");
        put_u64(line, e.global_position);
        line.extend_from_slice(b",\"stream_id\":\"");
        put_uuid(line, &e.stream_id);
        line.extend_from_slice(b"\",\"stream_version\":");
        put_u64(line, e.stream_version);
        line.extend_from_slice(b",\"event_id\":\"");
        put_uuid(line, &e.event_id);
        line.extend_from_slice(b"\",\"event_type\":");
        serde_json::to_writer(&mut *line, e.event_type).expect("writing to a Vec");
        line.extend_from_slice(b",\"recorded_at\":");
        put_u64(line, e.recorded_at);
        line.extend_from_slice(b",\"recorded_at_utc\":\"");
        line.extend_from_slice(&utc_bytes(e.recorded_at));
        line.extend_from_slice(b"\",\"payload\":");
        let p = Encoding::of(e.payload);
        write_bytes(line, e.payload, p).expect("writing to a Vec");
        line.extend_from_slice(b",\"payload_encoding\":\"");
        line.extend_from_slice(p.name().as_bytes());
        line.extend_from_slice(b"\",\"metadata\":");
        let m = Encoding::of(e.metadata);
        write_bytes(line, e.metadata, m).expect("writing to a Vec");
        line.extend_from_slice(b",\"metadata_encoding\":\"");
        line.extend_from_slice(m.name().as_bytes());
        line.extend_from_slice(b"\",\"batch_position\":");
        put_u64(line, batch);
        line.extend_from_slice(b"}\n");
        out.write_all(line).or_stdout()
    })
}

/// Appends the decimal digits of `n`.
fn put_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends a UUID, lowercase and hyphenated.
fn put_uuid(out: &mut Vec<u8>, id: &eventstore::Uuid) {
    let mut text = [0u8; 36];
    out.extend_from_slice(id.hyphenated().encode_lower(&mut text).as_bytes());
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

/// One event as a table row: payload and metadata as JSON, text or base64. Put
/// together in a reused buffer without `fmt`, as [`event_json`].
pub fn event_row(out: &mut dyn Write, e: &RecordView<'_>) -> Result<()> {
    thread_local! {
        static ROW: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    ROW.with_borrow_mut(|row| {
        row.clear();
        put_u64_right(row, e.global_position, 10);
        row.extend_from_slice(b"  ");
        put_uuid(row, &e.stream_id);
        row.extend_from_slice(b"  ");
        put_u64_right(row, e.stream_version, 7);
        row.extend_from_slice(b"  ");
        row.extend_from_slice(&utc_bytes(e.recorded_at));
        row.extend_from_slice(b"  ");
        row.extend_from_slice(e.event_type.as_bytes());
        // Padded to 24 characters, as `{:<24}` would.
        let chars = if e.event_type.is_ascii() {
            e.event_type.len()
        } else {
            e.event_type.chars().count()
        };
        row.resize(row.len() + 24usize.saturating_sub(chars), b' ');
        row.extend_from_slice(b"  ");
        shown(row, e.payload);
        if !e.metadata.is_empty() {
            row.extend_from_slice(b" [");
            shown(row, e.metadata);
            row.extend_from_slice(b"]");
        }
        row.push(b'\n');
        out.write_all(row).or_stdout()
    })
}

/// Appends `n` right-aligned in `width` columns.
fn put_u64_right(out: &mut Vec<u8>, n: u64, width: usize) {
    let start = out.len();
    put_u64(out, n);
    let len = out.len() - start;
    if len < width {
        out.splice(start..start, std::iter::repeat_n(b' ', width - len));
    }
}

/// UTF-8 without control characters other than tab and line breaks.
fn is_text(s: &str) -> bool {
    if s.is_ascii() {
        return s
            .bytes()
            .all(|b| (b >= 0x20 && b != 0x7f) || matches!(b, b'\t' | b'\n' | b'\r'));
    }
    !s.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// Bytes for a person: JSON or text as they are (line breaks escaped), else base64
/// (the choice of [`Encoding::of`], with the JSON parse only where text alone does not
/// decide it).
fn shown(out: &mut Vec<u8>, bytes: &[u8]) {
    match std::str::from_utf8(bytes)
        .ok()
        .filter(|s| is_text(s) || is_exact_json(s))
    {
        None => {
            out.extend_from_slice(b"base64:");
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .as_bytes(),
            );
        }
        Some(s) if !s.contains(['\n', '\r']) => out.extend_from_slice(bytes),
        Some(s) => out.extend_from_slice(s.replace('\n', "\\n").replace('\r', "\\r").as_bytes()),
    }
}

/// Microseconds since the Unix epoch as `2026-11-26T16:00:00.123456Z`.
pub fn utc(micros: u64) -> String {
    String::from_utf8(utc_bytes(micros).to_vec()).expect("ASCII digits")
}

/// [`utc`] without an allocation: 27 ASCII bytes (years after 9999 would not fit
/// four digits: they are shown as 9999, which no commit time reaches).
pub fn utc_bytes(micros: u64) -> [u8; 27] {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u64);
    put(5, 2, u64::from(m));
    put(8, 2, u64::from(d));
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    put(20, 6, frac);
    b
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

    /// The row as `fmt` would write it: the layout the table had before it was put
    /// together by hand.
    fn reference_row(e: &RecordView<'_>) -> String {
        let shown = |b: &[u8]| match (Encoding::of(b), std::str::from_utf8(b)) {
            (Encoding::Base64, _) | (_, Err(_)) => format!(
                "base64:{}",
                base64::engine::general_purpose::STANDARD.encode(b)
            ),
            (_, Ok(s)) => s.replace('\n', "\\n").replace('\r', "\\r"),
        };
        let mut row = format!(
            "{:>10}  {}  {:>7}  {:<27}  {:<24}  {}",
            e.global_position,
            e.stream_id,
            e.stream_version,
            utc(e.recorded_at),
            e.event_type,
            shown(e.payload)
        );
        if !e.metadata.is_empty() {
            row.push_str(&format!(" [{}]", shown(e.metadata)));
        }
        row + "\n"
    }

    #[test]
    fn table_rows_keep_their_layout() {
        let types = [
            "OrderPlaced",
            "Größenänderung",
            "A-type-longer-than-24-characters",
        ];
        let bytes: [&[u8]; 6] = [
            br#"{"a": 1}"#,
            b"plain text",
            b"line\nbreak\r",
            &[0xff, 0, 1],
            b"",
            b"tab\there \x7f",
        ];
        let mut n = 0u64;
        for t in types {
            for p in bytes {
                for m in bytes {
                    n += 1;
                    let e = RecordView {
                        global_position: n * 999_999_937 % 10_000_000_000_000,
                        stream_version: n * 13,
                        recorded_at: 1_764_172_800_123_456 + n,
                        stream_id: eventstore::Uuid::from_u128(u128::from(n) << 64 | 0xabc),
                        event_id: eventstore::Uuid::nil(),
                        event_type: t,
                        event_type_with_nul: &[],
                        metadata: m,
                        payload: p,
                    };
                    let mut out = Vec::new();
                    event_row(&mut out, &e).unwrap();
                    assert_eq!(String::from_utf8(out).unwrap(), reference_row(&e));
                }
            }
        }
    }

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
