//! The upload API's record format: the fields the agent adds to every record, the per-record limit, and what
//! `Log-Size` bills (`contracts/site24x7-upload.md`). The pipeline renders records to [`SITE24X7`]; nothing
//! else in the workspace knows these names.

use kaf_pipeline::{Record, RecordFormat};

/// Upload API limit for one record, in bytes of compact JSON.
pub const MAX_RECORD_BYTES: usize = 1_000_000;

/// The upload API's format: `_zl_timestamp` (epoch ms), `s247agentuid` (the cluster), `logstream`.
pub const SITE24X7: RecordFormat = RecordFormat {
    time_field: "_zl_timestamp",
    source_field: "s247agentuid",
    stream_field: "logstream",
    max_record_bytes: MAX_RECORD_BYTES,
    is_metadata_field: is_agent_field,
};

/// The agent's own fields, which `Log-Size` leaves out.
pub fn is_agent_field(name: &str) -> bool {
    name.starts_with("_zl") || name.starts_with("s247") || name.starts_with("inode")
}

/// Sum of the byte lengths of a record's field values (strings as UTF-8, other values as JSON text), without
/// the agent's own fields (`_zl*`, `s247*`, `inode*`), as the contract's `Log-Size` defines it.
pub fn log_size(record: &Record) -> u64 {
    SITE24X7.billed_bytes(record)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn log_size_counts_value_bytes_without_agent_fields() {
        let r = json!({"verb": "get", "code": 403, "ok": true, "_zl_timestamp": 123456, "s247agentuid": "cluster", "inode": 1, "é": "é"});
        assert_eq!(log_size(r.as_object().unwrap()), 3 + 3 + 4 + 2);
    }

    #[test]
    fn records_carry_the_agent_fields_and_bill_the_rest() {
        let pipeline = kaf_pipeline::Pipeline::new(None, SITE24X7).unwrap();
        let event = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a1","stage":"ResponseComplete","verb":"get","user":{"username":"bob"},"requestReceivedTimestamp":"2026-04-20T16:32:59.930178Z"}"#;
        let batch = kaf_envelope::Batch {
            source: kaf_envelope::Source {
                cluster: "demo".into(),
                stream: "kube-apiserver-audit-1".into(),
                event_pointer: None,
            },
            events: vec![kaf_envelope::RawEvent {
                id: "1".into(),
                envelope_time_ms: None,
                payload: kaf_envelope::Payload::Text(event.into()),
            }],
        };
        let out = pipeline.process(batch, 1_796_256_000_000);
        let record = out.records[0].record();
        assert_eq!(record["_zl_timestamp"], 1_776_702_779_930_i64);
        assert_eq!(record["s247agentuid"], "demo");
        assert_eq!(record["logstream"], "kube-apiserver-audit-1");
        assert_eq!(out.records[0].billed_bytes, log_size(&record));
        assert!(out.records[0].billed_bytes > 0);
    }
}
