//! Splitting records into upload requests within the API limits, and what each request carries besides the
//! records: `Log-Size` (licence accounting) and the deterministic `upload-id`.

use kaf_pipeline::OutRecord;
use sha2::{Digest, Sha256};
use std::ops::Range;

/// API limits per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_records: usize,
    /// Uncompressed bytes of the JSON array.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_records: 500,
            max_bytes: 5_000_000,
        }
    }
}

/// Records serialized once, grouped into requests.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    /// Compact JSON of each record.
    pub serialized: Vec<Vec<u8>>,
    /// `Log-Size` contribution of each record.
    pub log_sizes: Vec<u64>,
    pub requests: Vec<Range<usize>>,
}

impl BatchPlan {
    pub fn new(records: &[OutRecord], limits: Limits) -> Self {
        let serialized: Vec<Vec<u8>> = records
            .iter()
            .map(|r| serde_json::to_vec(&r.record).unwrap_or_else(|_| b"{}".to_vec()))
            .collect();
        let log_sizes = records.iter().map(|r| log_size(&r.record)).collect();
        let mut requests = Vec::new();
        let mut start = 0;
        let mut bytes = 2; // the brackets
        for (i, record) in serialized.iter().enumerate() {
            let added = record.len() + usize::from(i > start);
            if i > start && (i - start >= limits.max_records || bytes + added > limits.max_bytes) {
                requests.push(start..i);
                start = i;
                bytes = 2 + record.len();
            } else {
                bytes += added;
            }
        }
        if start < serialized.len() {
            requests.push(start..serialized.len());
        }
        Self {
            serialized,
            log_sizes,
            requests,
        }
    }

    /// The JSON array body for `range`.
    pub fn body(&self, range: Range<usize>) -> Vec<u8> {
        let parts = &self.serialized[range];
        let mut body =
            Vec::with_capacity(parts.iter().map(Vec::len).sum::<usize>() + parts.len() + 2);
        body.push(b'[');
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(part);
        }
        body.push(b']');
        body
    }

    pub fn log_size(&self, range: Range<usize>) -> u64 {
        self.log_sizes[range].iter().sum()
    }
}

/// Sum of the byte lengths of a record's field values (strings as UTF-8, other values as JSON text), without
/// the agent's own fields (`_zl*`, `s247*`, `inode*`), as the contract's `Log-Size` defines it.
pub fn log_size(record: &kaf_pipeline::Record) -> u64 {
    record
        .iter()
        .filter(|(k, _)| !(k.starts_with("_zl") || k.starts_with("s247") || k.starts_with("inode")))
        .map(|(_, v)| match v {
            serde_json::Value::String(s) => s.len() as u64,
            other => other.to_string().len() as u64,
        })
        .sum()
}

/// 32 hex characters naming one request: the same records from the same source always get the same id, so
/// a redelivered invocation (Lambda retry, replay) resends the ids the receiver may already have seen.
pub fn upload_id(
    source_key: &str,
    first_event: &str,
    last_event: &str,
    count: usize,
    part: &str,
) -> String {
    let mut h = Sha256::new();
    for piece in [
        source_key,
        first_event,
        last_event,
        &count.to_string(),
        part,
    ] {
        h.update(piece.as_bytes());
        h.update([0u8]);
    }
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn rec(i: usize, pad: usize) -> OutRecord {
        OutRecord {
            event_id: i.to_string(),
            record:
                json!({"n": i, "pad": "x".repeat(pad), "_zl_timestamp": 1, "s247agentuid": "c"})
                    .as_object()
                    .unwrap()
                    .clone(),
        }
    }

    #[test]
    fn requests_respect_both_limits_and_cover_every_record_once_in_order() {
        for (count, pad, limits) in [
            (1200, 10, Limits::default()),
            (
                50,
                900,
                Limits {
                    max_records: 500,
                    max_bytes: 10_000,
                },
            ),
            (
                7,
                5,
                Limits {
                    max_records: 3,
                    max_bytes: 1_000_000,
                },
            ),
            (
                1,
                5000,
                Limits {
                    max_records: 10,
                    max_bytes: 100,
                },
            ),
        ] {
            let records: Vec<_> = (0..count).map(|i| rec(i, pad)).collect();
            let plan = BatchPlan::new(&records, limits);
            let mut next = 0;
            for r in &plan.requests {
                assert_eq!(r.start, next);
                next = r.end;
                assert!(r.len() <= limits.max_records);
                let body = plan.body(r.clone());
                assert!(
                    body.len() <= limits.max_bytes || r.len() == 1,
                    "{} > {}",
                    body.len(),
                    limits.max_bytes
                );
                let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(parsed.as_array().unwrap().len(), r.len());
            }
            assert_eq!(next, count);
        }
    }

    #[test]
    fn log_size_counts_value_bytes_without_agent_fields() {
        let r = json!({"verb": "get", "code": 403, "ok": true, "_zl_timestamp": 123456, "s247agentuid": "cluster", "inode": 1, "é": "é"});
        assert_eq!(log_size(r.as_object().unwrap()), 3 + 3 + 4 + 2);
    }

    #[test]
    fn upload_ids_are_deterministic_and_distinct() {
        let a = upload_id("c/s", "1", "9", 9, "0");
        assert_eq!(a, upload_id("c/s", "1", "9", 9, "0"));
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, upload_id("c/s", "1", "9", 9, "1"));
        assert_ne!(a, upload_id("c/t", "1", "9", 9, "0"));
    }
}
