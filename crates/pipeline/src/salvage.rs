//! Events the JSON parser cannot take whole are kept, never dropped: one crafted event must not hide itself,
//! or the events around it.
//!
//! - An object whose top level splits into fields, some of which do not parse (nested deeper than
//!   serde_json's 128 levels, a number like `1e999`), is **salvaged**: the fields that parse are kept as they
//!   are, each one that does not becomes a placeholder, and the record says which (`kaf_unparsed`). It goes
//!   through the pipeline like any event (policy, redaction, profile).
//! - Text that is not JSON at all becomes an **unparsed record**: `kaf_unparsed` (why), `raw_bytes`,
//!   `raw_sha256`, and `raw_event`, the text itself.
//!
//! Redaction cannot see inside text it cannot parse, so with redaction on (the default) the raw text of a
//! placeholder or an unparsed record is withheld and only its size and fingerprint are forwarded. The callers
//! that can keep raw text safely do (the AKS failover blob, `serve`'s spool until delivery).

use crate::Record;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A document as far as it could be read.
pub(crate) enum Parsed {
    /// Every field parsed; `salvaged` names those that did not, replaced by placeholders.
    Document { doc: Value, salvaged: Vec<String> },
    /// Not JSON at all: why.
    Unparsable(String),
}

/// Parse `text` as JSON, leniently (raw control characters in strings), else field by field.
pub(crate) fn parse_text(text: &str, redact: bool) -> Parsed {
    let strict = match serde_json::from_str(text) {
        Ok(doc) => {
            return Parsed::Document {
                doc,
                salvaged: Vec::new(),
            };
        }
        Err(e) => e,
    };
    if let Some(doc) = crate::lookup::parse_lenient(text) {
        return Parsed::Document {
            doc,
            salvaged: Vec::new(),
        };
    }
    // `RawValue` skips values without building them, so it has no depth limit and takes any number.
    let Ok(fields) =
        serde_json::from_str::<std::collections::BTreeMap<String, Box<RawValue>>>(text)
    else {
        return Parsed::Unparsable(strict.to_string());
    };
    let mut doc = Map::new();
    let mut salvaged = Vec::new();
    for (key, raw) in fields {
        let value = match serde_json::from_str::<Value>(raw.get()) {
            Ok(value) => value,
            Err(e) => {
                salvaged.push(format!("{key} ({e})"));
                placeholder(raw.get(), redact)
            }
        };
        doc.insert(key, value);
    }
    Parsed::Document {
        doc: Value::Object(doc),
        salvaged,
    }
}

/// What stands in for a value that could not be parsed: its text (redaction off), or its size and
/// fingerprint (redaction on: the text may hold a secret that redaction cannot find).
pub(crate) fn placeholder(raw: &str, redact: bool) -> Value {
    if redact {
        Value::String(format!(
            "<unparsable, withheld: {} bytes, sha256:{}>",
            raw.len(),
            &crate::rules::sha256_hex(raw)[..12]
        ))
    } else {
        Value::String(raw.to_string())
    }
}

/// The record for text that is not JSON: why, how big, its fingerprint and (redaction off) the text.
pub(crate) fn unparsed_record(text: &str, reason: &str, redact: bool) -> Record {
    let mut record = Record::new();
    record.insert("kaf_unparsed".into(), Value::String(reason.to_string()));
    record.insert("raw_bytes".into(), Value::from(text.len()));
    record.insert(
        "raw_sha256".into(),
        Value::String(crate::rules::sha256_hex(text)),
    );
    record.insert("raw_event".into(), placeholder(text, redact));
    record
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn deep(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn deep_and_huge_values_are_salvaged_field_by_field() {
        let text = format!(
            r#"{{"kind":"Event","auditID":"a","stage":"ResponseComplete","requestObject":{{"x":{}}},"n":1e999}}"#,
            deep(300)
        );
        let Parsed::Document { doc, salvaged } = parse_text(&text, true) else {
            panic!("not salvaged")
        };
        assert_eq!(doc["auditID"], "a");
        assert_eq!(salvaged.len(), 2, "{salvaged:?}");
        assert!(
            salvaged[0].starts_with("n (number out of range"),
            "{salvaged:?}"
        );
        assert!(salvaged[1].starts_with("requestObject (recursion limit"));
        let withheld = doc["requestObject"].as_str().unwrap();
        assert!(
            withheld.starts_with("<unparsable, withheld: 606 bytes, sha256:"),
            "{withheld}"
        );
        // Redaction off: the text itself.
        let Parsed::Document { doc, .. } = parse_text(&text, false) else {
            panic!()
        };
        assert_eq!(doc["n"], "1e999");
    }

    #[test]
    fn text_that_is_not_json_is_unparsable_with_the_reason() {
        for text in [
            "{\"kind\":\"Event\",\"auditID\":",
            "not json",
            "",
            "{\"a\":1}}",
        ] {
            let Parsed::Unparsable(reason) = parse_text(text, true) else {
                panic!("{text:?} parsed")
            };
            assert!(!reason.is_empty());
        }
        let record = unparsed_record("secret-ish text", "not JSON", true);
        assert!(
            !serde_json::to_string(&record)
                .unwrap()
                .contains("secret-ish")
        );
        assert_eq!(record["raw_bytes"], 15);
    }
}
