//! The failover record: one line of NDJSON per record that could not be delivered, written by the AKS
//! handler (the `Outputs.failover` blob) and drain mode, read back by `replay`. One type for both sides, so
//! the writer and the reader cannot drift apart; `version` lets a newer format be refused instead of
//! misread.
//!
//! ```json
//! {"version":1,"reason":"…","class":"transient","category":"kube-audit","eventId":"p0-s12-r3","record":{…}}
//! ```
//!
//! `record` is the diagnostic record as it arrived (its audit event redacted unless redaction is off), or,
//! for a body that was not JSON at all, that body's text as a JSON string.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The format written by this version.
pub const FAILOVER_VERSION: u32 = 1;

/// Why a failover line could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FailoverError {
    #[error("not a failover record: {0}")]
    Shape(String),
    #[error("failover record version {0} is newer than this forwarder reads ({FAILOVER_VERSION})")]
    Version(u32),
}

/// One parked record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    /// Absent in lines written before versioning (read as 0, same shape).
    #[serde(default)]
    pub version: u32,
    /// The delivery error or parse failure, without content.
    pub reason: String,
    /// `transient`, `quota`, `configuration` or `unparsable`.
    pub class: String,
    pub category: String,
    pub event_id: String,
    /// The record's JSON, kept as text (never re-serialised).
    pub record: Box<RawValue>,
}

impl FailoverRecord {
    /// A record to park; `record` must be JSON text (a body that is not JSON is passed as a JSON string).
    pub fn new(
        reason: impl Into<String>,
        class: impl Into<String>,
        category: impl Into<String>,
        event_id: impl Into<String>,
        record: String,
    ) -> Result<Self, FailoverError> {
        Ok(Self {
            version: FAILOVER_VERSION,
            reason: reason.into(),
            class: class.into(),
            category: category.into(),
            event_id: event_id.into(),
            record: RawValue::from_string(record)
                .map_err(|e| FailoverError::Shape(e.to_string()))?,
        })
    }

    /// For a body whose text is not JSON: the text becomes a JSON string.
    pub fn raw_text(
        reason: impl Into<String>,
        category: impl Into<String>,
        event_id: impl Into<String>,
        text: &str,
    ) -> Self {
        let record = serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
        Self {
            version: FAILOVER_VERSION,
            reason: reason.into(),
            class: "unparsable".into(),
            category: category.into(),
            event_id: event_id.into(),
            record: RawValue::from_string(record)
                .unwrap_or_else(|_| unreachable!("a serialised string is JSON")),
        }
    }

    /// One NDJSON line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }

    /// A line of a failover file.
    pub fn parse_line(line: &str) -> Result<Self, FailoverError> {
        let record: Self =
            serde_json::from_str(line).map_err(|e| FailoverError::Shape(e.to_string()))?;
        if record.version > FAILOVER_VERSION {
            return Err(FailoverError::Version(record.version));
        }
        Ok(record)
    }

    /// Whether a JSON line looks like a failover record (has `eventId` and `record`), to recognise a file.
    pub fn looks_like(line: &str) -> bool {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe<'a> {
            #[serde(borrow)]
            event_id: Option<&'a RawValue>,
            #[serde(borrow)]
            record: Option<&'a RawValue>,
        }
        serde_json::from_str::<Probe<'_>>(line)
            .is_ok_and(|p| p.event_id.is_some() && p.record.is_some())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lines_round_trip_and_newer_versions_are_refused() {
        let record = r#"{"category":"kube-audit","properties":{"log":"{\"kind\":\"Event\"}\n"}}"#;
        let line = FailoverRecord::new(
            "HTTP 503",
            "transient",
            "kube-audit",
            "p0-s1-r0",
            record.into(),
        )
        .unwrap()
        .to_line();
        assert!(line.ends_with('\n') && line.starts_with("{\"version\":1,"));
        assert!(FailoverRecord::looks_like(&line));
        let back = FailoverRecord::parse_line(&line).unwrap();
        assert_eq!(back.record.get(), record);
        assert_eq!(
            (back.event_id.as_str(), back.class.as_str()),
            ("p0-s1-r0", "transient")
        );
        // Lines from before versioning still read.
        let legacy =
            r#"{"reason":"r","class":"quota","category":"c","eventId":"e","record":{"a":1}}"#;
        assert_eq!(FailoverRecord::parse_line(legacy).unwrap().version, 0);
        let newer = legacy.replacen('{', "{\"version\":2,", 1);
        assert_eq!(
            FailoverRecord::parse_line(&newer).unwrap_err(),
            FailoverError::Version(2)
        );
        // A body that is not JSON is kept as text.
        let raw = FailoverRecord::raw_text("not JSON", "", "p0-s9", "\u{0} not json {");
        let back = FailoverRecord::parse_line(&raw.to_line()).unwrap();
        assert_eq!(
            serde_json::from_str::<String>(back.record.get()).unwrap(),
            "\u{0} not json {"
        );
    }
}
