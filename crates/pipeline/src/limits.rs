//! Per-record size limit (the upload API takes at most 1 MB per record). An over-size record is shrunk by
//! cutting its largest string values — never its serialized text — so it stays valid JSON; each cut value ends
//! with [`TRUNCATION_MARKER`].

use crate::Record;
use serde_json::Value;

/// Appended to every value that was cut (the marker Site24x7's agents use).
pub const TRUNCATION_MARKER: &str = "##TRUNCATED###";

/// Bytes of the record as it will be uploaded (compact JSON).
pub fn serialized_len(record: &Record) -> usize {
    serde_json::to_vec(record).map_or(usize::MAX, |v| v.len())
}

/// A cheap bound on the serialized size (a byte escapes to at most 6), so most records skip serializing.
fn upper_bound(record: &Record) -> usize {
    let text = |s: &str| 6 * s.len() + 2;
    2 + record
        .iter()
        .map(|(k, v)| {
            text(k)
                + 2
                + match v {
                    Value::String(s) => text(s),
                    Value::Number(_) | Value::Bool(_) | Value::Null => 24,
                    other => 6 * serialized_len_value(other),
                }
        })
        .sum::<usize>()
}

fn serialized_len_value(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX / 8, |v| v.len())
}

/// Shrink `record` to at most `max_bytes` serialized. Returns `Ok(true)` when something was cut, `Err(())`
/// when even cutting every string value cannot make it fit (only a pathological record with huge keys or
/// thousands of fields).
#[allow(clippy::result_unit_err)]
pub fn fit(record: &mut Record, max_bytes: usize) -> Result<bool, ()> {
    if upper_bound(record) <= max_bytes {
        return Ok(false);
    }
    let mut size = serialized_len(record);
    if size <= max_bytes {
        return Ok(false);
    }
    let mut cut_any = false;
    while size > max_bytes {
        // The largest string not already cut down to its marker.
        let Some((field, len)) = record
            .iter()
            .filter(|(k, _)| !k.starts_with("_zl") && !k.starts_with("s247"))
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.len())))
            .filter(|(_, len)| *len > TRUNCATION_MARKER.len())
            .max_by_key(|(_, len)| *len)
        else {
            return Err(());
        };
        let excess = size - max_bytes;
        let Some(Value::String(text)) = record.get_mut(&field) else {
            return Err(());
        };
        // Escaping makes serialized text longer than the raw bytes, so this may take a second round.
        let keep = len.saturating_sub(excess + TRUNCATION_MARKER.len());
        let mut boundary = keep.min(text.len());
        while !text.is_char_boundary(boundary) {
            boundary -= 1;
        }
        let already_marked = text.ends_with(TRUNCATION_MARKER);
        text.truncate(boundary);
        if !already_marked || boundary > 0 {
            text.push_str(TRUNCATION_MARKER);
        }
        cut_any = true;
        size = serialized_len(record);
    }
    Ok(cut_any)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn largest_fields_are_cut_first_and_the_record_stays_valid_json() {
        let big = "é\"\\".repeat(200_000); // multi-byte and escaped characters
        let mut record = json!({"requestobject": big, "responseobject": "x".repeat(300_000), "verb": "get", "_zl_timestamp": 1})
            .as_object()
            .unwrap()
            .clone();
        assert!(fit(&mut record, 250_000).unwrap());
        let text = serde_json::to_string(&record).unwrap();
        assert!(text.len() <= 250_000, "{}", text.len());
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["verb"], json!("get"));
        assert!(
            back["requestobject"]
                .as_str()
                .unwrap()
                .ends_with(TRUNCATION_MARKER)
        );
    }

    #[test]
    fn small_records_are_untouched() {
        let mut record = json!({"verb": "get"}).as_object().unwrap().clone();
        assert!(!fit(&mut record, 1_000).unwrap());
        assert_eq!(record["verb"], json!("get"));
    }

    #[test]
    fn a_record_of_only_non_strings_that_cannot_fit_is_reported() {
        let mut record = json!({"n": vec![1; 100]}).as_object().unwrap().clone();
        assert!(fit(&mut record, 10).is_err());
    }
}
