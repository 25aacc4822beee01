//! Azure: the Functions custom-handler invocation for an Event Hub trigger, and the AKS diagnostic records in
//! its event bodies (`contracts/azure-functions.md` §3, §7).
//!
//! The host's encoding is full of traps, all handled here: `Data.events` is a string holding a JSON array (or
//! an array), its elements are strings holding one body each (or objects); `Metadata.*Array` values are JSON
//! strings or arrays. One body that is not JSON is reported and never stops the others. Each body is
//! `{"records":[…]}`; a record's `properties.log` is the audit event as a JSON string ending in `\n` (or an
//! object), parsed once here.

use crate::{Batch, Payload, RawEvent, Source};
use serde_json::Value;
use std::collections::BTreeMap;

/// Where the audit event sits inside an AKS record (a JSON pointer).
pub const EVENT_POINTER: &str = "/properties/log";

/// The invocation request the Functions host POSTs to `/<FunctionName>`.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// One entry per Event Hub event: its body, or why it could not be read.
    pub bodies: Vec<Result<Value, BadBody>>,
    pub partition_id: Option<String>,
    /// Sequence numbers, aligned with `bodies` when the host sent them.
    pub sequence_numbers: Vec<Option<i64>>,
}

/// An event body that is not JSON. Only its size and fingerprint are kept: the text may hold anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBody {
    pub index: usize,
    pub bytes: usize,
    pub reason: String,
}

/// A request that is not a custom-handler invocation at all.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("request body is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("request has no `Data.{0}`")]
    MissingBinding(String),
}

/// One Event Hub event body as raw bytes (drain mode receives them so): JSON, or why not.
pub fn body_from_bytes(index: usize, bytes: &[u8]) -> Result<Value, BadBody> {
    serde_json::from_slice(bytes).map_err(|e| BadBody {
        index,
        bytes: bytes.len(),
        reason: format!("event body is not JSON ({e})"),
    })
}

/// A JSON value the host may have sent JSON-encoded as a string.
fn decoded(value: &Value) -> Option<Value> {
    match value {
        Value::String(s) => serde_json::from_str(s).ok(),
        other => Some(other.clone()),
    }
}

impl Invocation {
    /// Parse the host's request; `binding` is the trigger's binding name (`events`).
    pub fn parse(body: &[u8], binding: &str) -> Result<Self, InvocationError> {
        let request: Value = serde_json::from_slice(body).map_err(InvocationError::NotJson)?;
        let data = request
            .get("Data")
            .and_then(|d| d.get(binding))
            .ok_or_else(|| InvocationError::MissingBinding(binding.to_string()))?;
        let elements: Vec<Value> = match data {
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Array(items)) => items,
                // A single body (cardinality one) sent as a string.
                Ok(other) => vec![other],
                Err(_) => vec![data.clone()],
            },
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        let bodies = elements
            .iter()
            .enumerate()
            .map(|(index, element)| match element {
                Value::String(s) => body_from_bytes(index, s.as_bytes()),
                other => Ok(other.clone()),
            })
            .collect();
        let metadata = request.get("Metadata");
        let partition_id = metadata
            .and_then(|m| m.get("PartitionContext"))
            .and_then(decoded)
            .and_then(|p| {
                p.get("PartitionId")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        let sequence_numbers = metadata
            .and_then(|m| m.get("SequenceNumberArray"))
            .and_then(decoded)
            .and_then(|v| v.as_array().cloned())
            .map(|a| a.iter().map(Value::as_i64).collect())
            .unwrap_or_default();
        Ok(Self {
            bodies,
            partition_id,
            sequence_numbers,
        })
    }
}

/// `…/MANAGEDCLUSTERS/<NAME>` → `<NAME>` (as emitted, upper-case), else the last segment.
pub fn cluster_from_resource_id(resource_id: &str) -> &str {
    let segments: Vec<&str> = resource_id.split('/').filter(|s| !s.is_empty()).collect();
    segments
        .iter()
        .position(|s| s.eq_ignore_ascii_case("managedclusters"))
        .and_then(|i| segments.get(i + 1))
        .or(segments.last())
        .copied()
        .unwrap_or("")
}

/// The category of a record (`category`, or `Category` in some exports).
pub fn category(record: &Value) -> Option<&str> {
    record
        .get("category")
        .or_else(|| record.get("Category"))
        .and_then(Value::as_str)
}

/// Records of one category from one cluster, ready for the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryBatch {
    pub category: String,
    pub batch: Batch,
    /// The original records (with `properties.log` parsed), by event id: what a failover keeps.
    pub records: BTreeMap<String, Value>,
}

/// Records that were not JSON objects, per body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordStats {
    pub records: u64,
    pub not_records: u64,
}

/// Split bodies into batches per (category, cluster). Event ids are stable across redeliveries:
/// `p<partition>-s<sequence>-r<record>` when the host sent sequence numbers, else `b<body>-r<record>`.
pub fn batches(invocation: &Invocation, stats: &mut RecordStats) -> Vec<CategoryBatch> {
    let mut groups: BTreeMap<(String, String), CategoryBatch> = BTreeMap::new();
    for (body_index, body) in invocation.bodies.iter().enumerate() {
        let Ok(body) = body else { continue };
        let records: Vec<&Value> = match body.get("records").or_else(|| body.get("Records")) {
            Some(Value::Array(records)) => records.iter().collect(),
            // A bare record (some exporters, failover files).
            _ if category(body).is_some() => vec![body],
            _ => {
                stats.not_records += 1;
                continue;
            }
        };
        let body_id = match (
            &invocation.partition_id,
            invocation
                .sequence_numbers
                .get(body_index)
                .copied()
                .flatten(),
        ) {
            (Some(p), Some(seq)) => format!("p{p}-s{seq}"),
            _ => format!("b{body_index}"),
        };
        for (record_index, record) in records.into_iter().enumerate() {
            if !record.is_object() {
                stats.not_records += 1;
                continue;
            }
            stats.records += 1;
            let category = category(record).unwrap_or("").to_string();
            let cluster = record
                .get("resourceId")
                .or_else(|| record.get("ResourceId"))
                .and_then(Value::as_str)
                .map(cluster_from_resource_id)
                .unwrap_or("")
                .to_string();
            let mut record = record.clone();
            parse_log_in_place(&mut record);
            let id = format!("{body_id}-r{record_index}");
            let envelope_time_ms = record
                .get("time")
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis());
            let group = groups
                .entry((category.clone(), cluster.clone()))
                .or_insert_with(|| CategoryBatch {
                    category: category.clone(),
                    batch: Batch {
                        source: Source {
                            cluster,
                            stream: category.clone(),
                            event_pointer: Some(EVENT_POINTER),
                        },
                        events: Vec::new(),
                    },
                    records: BTreeMap::new(),
                });
            group.records.insert(id.clone(), record.clone());
            group.batch.events.push(RawEvent {
                id,
                envelope_time_ms,
                payload: Payload::Json(record),
            });
        }
    }
    groups.into_values().collect()
}

/// `properties.log` as a parsed object when it is a JSON string (trailing newline and all); left as it is
/// otherwise, so the pipeline counts it as not an audit event.
pub fn parse_log_in_place(record: &mut Value) {
    let Some(log) = record.pointer_mut(EVENT_POINTER) else {
        return;
    };
    if let Value::String(text) = log
        && let Ok(parsed @ Value::Object(_)) = serde_json::from_str::<Value>(text.trim_end())
    {
        *log = parsed;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn record(category: &str, log: &str) -> Value {
        json!({"time": "2026-04-20T16:29:59.995191417Z", "category": category,
               "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-AKS",
               "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
               "properties": {"log": log, "stream": "stdout", "pod": "kube-apiserver-1"}})
    }

    #[test]
    fn every_host_encoding_of_data_events_is_read_and_a_bad_body_stands_alone() {
        let body = json!({"records": [record("kube-audit", "{\"kind\":\"Event\"}\n")]}).to_string();
        let double_encoded = json!([body, "not json {", body]).to_string();
        for data in [
            json!(double_encoded),             // string holding an array of strings
            json!([body, "not json {", body]), // array of strings
            json!([
                serde_json::from_str::<Value>(&body).unwrap(),
                "not json {",
                body
            ]), // mixed
        ] {
            let request = json!({"Data": {"events": data}, "Metadata": {
                "PartitionContext": {"PartitionId": "3"}, "SequenceNumberArray": "[10, 11, 12]"}});
            let inv = Invocation::parse(request.to_string().as_bytes(), "events").unwrap();
            assert_eq!(inv.bodies.len(), 3);
            assert!(inv.bodies[0].is_ok() && inv.bodies[2].is_ok());
            assert_eq!(inv.bodies[1].as_ref().unwrap_err().index, 1);
            assert_eq!(inv.partition_id.as_deref(), Some("3"));
            assert_eq!(inv.sequence_numbers, vec![Some(10), Some(11), Some(12)]);
        }
        assert!(matches!(
            Invocation::parse(b"{}", "events"),
            Err(InvocationError::MissingBinding(_))
        ));
        assert!(matches!(
            Invocation::parse(b"<xml/>", "events"),
            Err(InvocationError::NotJson(_))
        ));
    }

    #[test]
    fn records_are_grouped_by_category_with_stable_ids_and_parsed_logs() {
        let body1 = json!({"records": [record("kube-audit", "{\"kind\":\"Event\",\"auditID\":\"a\"}\n"), record("kube-audit-admin", "{\"kind\":\"Event\"}\n")]});
        let body2 = json!({"records": [record("kube-audit", "plain text line\n"), 7]});
        let inv = Invocation {
            bodies: vec![Ok(body1), Ok(body2), Ok(json!({"unexpected": true}))],
            partition_id: Some("0".into()),
            sequence_numbers: vec![Some(41), Some(42)],
        };
        let mut stats = RecordStats::default();
        let groups = batches(&inv, &mut stats);
        assert_eq!(
            stats,
            RecordStats {
                records: 3,
                not_records: 2
            }
        );
        assert_eq!(groups.len(), 2);
        let audit = groups.iter().find(|g| g.category == "kube-audit").unwrap();
        let ids: Vec<&str> = audit.batch.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["p0-s41-r0", "p0-s42-r0"]);
        assert_eq!(audit.batch.source.cluster, "PROD-AKS");
        assert_eq!(audit.batch.source.event_pointer, Some(EVENT_POINTER));
        let Payload::Json(first) = &audit.batch.events[0].payload else {
            panic!()
        };
        assert_eq!(first.pointer("/properties/log/auditID"), Some(&json!("a")));
        let Payload::Json(second) = &audit.batch.events[1].payload else {
            panic!()
        };
        assert_eq!(
            second.pointer("/properties/log"),
            Some(&json!("plain text line\n"))
        );
        assert_eq!(
            audit.batch.events[0].envelope_time_ms,
            Some(1_776_702_599_995)
        );
    }

    #[test]
    fn cluster_names_come_from_resource_ids_in_any_case() {
        assert_eq!(
            cluster_from_resource_id(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/dev1"
            ),
            "dev1"
        );
        assert_eq!(cluster_from_resource_id("/X/Y/Z"), "Z");
        assert_eq!(cluster_from_resource_id(""), "");
    }
}
