//! Reading JSON lines: events for `append` and the exported log for `import`.

use std::borrow::Cow;

use base64::Engine;
use eventstore::{ExpectedVersion, ProposedEvent, Uuid};
use serde::Deserialize;
use serde_json::value::RawValue;

/// One input line, as written (see docs/cli.md). Fields of the export schema that
/// `append` has no use for are accepted, so that exported lines can be appended.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line<'a> {
    // Borrowed from the line where it has no escapes: no allocation per field.
    #[serde(alias = "stream", borrow)]
    stream_id: Option<Cow<'a, str>>,
    #[serde(alias = "type", borrow)]
    pub event_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub payload: Option<&'a RawValue>,
    #[serde(borrow)]
    pub payload_encoding: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub metadata: Option<&'a RawValue>,
    #[serde(borrow)]
    pub metadata_encoding: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub expected_version: Option<&'a RawValue>,
    /// A line that is a whole batch: its events (without `stream_id`).
    #[serde(borrow)]
    pub events: Option<Vec<Line<'a>>>,
    pub global_position: Option<u64>,
    pub stream_version: Option<u64>,
    pub recorded_at: Option<u64>,
    /// The position of the first event of the batch the event was written in
    /// (`export`): `import` rebuilds the batches from it.
    pub batch_position: Option<u64>,
    /// Written by `export` for people; ignored when read.
    #[serde(rename = "recorded_at_utc")]
    _recorded_at_utc: Option<serde::de::IgnoredAny>,
}

/// Parses one line; the error names the cause (the caller adds the line number).
pub fn parse(text: &str) -> Result<Line<'_>, String> {
    // serde would take a JSON array for the fields in order: say what a line must be.
    if !text.trim_start().starts_with('{') && serde_json::from_str::<&RawValue>(text).is_ok() {
        return Err("expected an event object ({...}), found another JSON value".into());
    }
    serde_json::from_str(text).map_err(|e| {
        let e = e.to_string().replace("struct Line", "an event object");
        // serde_json says "at line 1 column N": within a line, only the column counts.
        match e.rfind(" at line 1 column ") {
            Some(at) => format!("{} (at column {})", &e[..at], &e[at + 18..]),
            None => e,
        }
    })
}

impl Line<'_> {
    /// The stream named by the line, if any.
    pub fn stream(&self) -> Result<Option<Uuid>, String> {
        self.stream_id
            .as_deref()
            .map(|s| uuid("stream_id", s))
            .transpose()
    }

    /// Whether the line names an event id.
    pub fn has_event_id(&self) -> bool {
        self.event_id.is_some()
    }

    /// The event this line proposes.
    pub fn event(&self) -> Result<ProposedEvent, String> {
        let mut e = ProposedEvent {
            event_id: Uuid::nil(),
            event_type: String::new(),
            metadata: Vec::new(),
            payload: Vec::new(),
        };
        self.event_into(&mut e)?;
        Ok(e)
    }

    /// [`Line::event`] into `e`, reusing its allocations (for `import`, which reads
    /// millions of lines).
    pub fn event_into(&self, e: &mut ProposedEvent) -> Result<(), String> {
        let event_type = self
            .event_type
            .as_deref()
            .ok_or("the event has no \"event_type\" (or \"type\")")?;
        e.event_id = match &self.event_id {
            Some(s) => uuid("event_id", s)?,
            None => Uuid::nil(),
        };
        e.event_type.clear();
        e.event_type.push_str(event_type);
        bytes_into(
            self.payload,
            self.payload_encoding.as_deref(),
            "payload",
            &mut e.payload,
        )?;
        bytes_into(
            self.metadata,
            self.metadata_encoding.as_deref(),
            "metadata",
            &mut e.metadata,
        )
    }

    pub fn expected(&self) -> Result<Option<ExpectedVersion>, String> {
        self.expected_version.map(expected).transpose()
    }
}

fn uuid(what: &str, s: &str) -> Result<Uuid, String> {
    Uuid::parse_str(s).map_err(|e| format!("\"{what}\" is not a UUID ({e}): {s:?}"))
}

/// The bytes of a payload or metadata value in its encoding (default `json`: the
/// value's exact text), into `out` (cleared first). Absent: no bytes.
fn bytes_into(
    value: Option<&RawValue>,
    encoding: Option<&str>,
    what: &str,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    out.clear();
    let Some(raw) = value else {
        return Ok(());
    };
    let string = |why: &str| {
        // Borrowed when the string has no escapes.
        serde_json::from_str::<Cow<'_, str>>(raw.get()).map_err(|_| {
            format!("\"{what}\" must be a JSON string with \"{what}_encoding\": \"{why}\"")
        })
    };
    match encoding.unwrap_or("json") {
        "json" => out.extend_from_slice(raw.get().as_bytes()),
        "text" => out.extend_from_slice(string("text")?.as_bytes()),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode_vec(string("base64")?.as_bytes(), out)
            .map_err(|e| format!("\"{what}\" is not valid base64: {e}"))?,
        other => {
            return Err(format!(
                "\"{what}_encoding\" is \"{other}\"; use \"json\", \"text\" or \"base64\""
            ))
        }
    }
    Ok(())
}

/// `expected_version`: a version number, or "any", "no_stream", "stream_exists".
fn expected(raw: &RawValue) -> Result<ExpectedVersion, String> {
    if let Ok(n) = serde_json::from_str::<u64>(raw.get()) {
        return Ok(ExpectedVersion::Exact(n));
    }
    match serde_json::from_str::<String>(raw.get()).as_deref() {
        Ok("any") => Ok(ExpectedVersion::Any),
        Ok("no_stream") => Ok(ExpectedVersion::NoStream),
        Ok("stream_exists") => Ok(ExpectedVersion::StreamExists),
        _ => Err(format!(
            "\"expected_version\" is {}; use a version number, \"any\", \"no_stream\" or \"stream_exists\"",
            raw.get()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_encodings_round_trip_the_exact_bytes() {
        let line = parse(r#"{"stream":"00000000-0000-0000-0000-000000000001","type":"T","payload":{"a": 1},"metadata":"aGk=","metadata_encoding":"base64"}"#).unwrap();
        let e = line.event().unwrap();
        assert_eq!(e.payload, br#"{"a": 1}"#);
        assert_eq!(e.metadata, b"hi");
        let text = parse(r#"{"type":"T","payload":"a\nb","payload_encoding":"text"}"#).unwrap();
        assert_eq!(text.event().unwrap().payload, b"a\nb");
        let bad = parse(r#"{"type":"T","payload":1,"payload_encoding":"base64"}"#).unwrap();
        assert!(bad.event().is_err());
    }

    #[test]
    fn expected_versions_and_errors() {
        let l = parse(r#"{"type":"T","expected_version":"no_stream"}"#).unwrap();
        assert_eq!(l.expected().unwrap(), Some(ExpectedVersion::NoStream));
        let l = parse(r#"{"type":"T","expected_version":4}"#).unwrap();
        assert_eq!(l.expected().unwrap(), Some(ExpectedVersion::Exact(4)));
        let l = parse(r#"{"type":"T","expected_version":"soon"}"#).unwrap();
        assert!(l.expected().is_err());
        let e = parse(r#"{"type":"T", "colour":1}"#).err().unwrap();
        assert!(e.contains("unknown field `colour`"), "{e}");
        assert!(e.contains("column"), "{e}");
    }
}
