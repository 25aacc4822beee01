//! Reading an audit event out of its document: recognising it, and normalising old API versions.

use kaf_envelope::Payload;
use serde_json::{Map, Value};

pub(crate) fn payload_len(payload: &Payload) -> u64 {
    match payload {
        Payload::Text(t) => t.len() as u64,
        Payload::Shared(t) => t.len() as u64,
        Payload::InBuffer { range, .. } => range.len() as u64,
        Payload::Json(v) => {
            struct Count(u64);
            impl std::io::Write for Count {
                fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                    self.0 += buf.len() as u64;
                    Ok(buf.len())
                }
                fn flush(&mut self) -> std::io::Result<()> {
                    Ok(())
                }
            }
            let mut count = Count(0);
            serde_json::to_writer(&mut count, v).map_or(0, |()| count.0)
        }
    }
}

/// One event as [`Pipeline::read_event`] found it.
pub(crate) enum Read {
    Event {
        doc: Value,
        salvaged: Vec<String>,
    },
    /// JSON, but not a Kubernetes audit event: why.
    NotAudit(String),
    /// Not JSON (the document, or the event inside it): the text and why.
    Unparsable {
        text: String,
        reason: String,
    },
}

pub(crate) fn event_at<'a>(doc: &'a Value, pointer: Option<&str>) -> Option<&'a Value> {
    match pointer {
        None => Some(doc),
        Some(p) => doc.pointer(p),
    }
}

pub(crate) fn event_at_mut<'a>(doc: &'a mut Value, pointer: Option<&str>) -> Option<&'a mut Value> {
    match pointer {
        None => Some(doc),
        Some(p) => doc.pointer_mut(p),
    }
}

pub(crate) fn check_event(event: Option<&Value>) -> Result<(), String> {
    let Some(Value::Object(map)) = event else {
        let what = match event {
            None => "no audit event in the record",
            Some(Value::String(_)) => "the log line is not JSON",
            Some(_) => "not a JSON object",
        };
        return Err(format!("not a Kubernetes audit event ({what})"));
    };
    let is_event = match map.get("kind") {
        Some(Value::String(kind)) => kind == "Event",
        // Some exporters strip kind/apiVersion (webhook EventList items): recognise the event by its keys.
        None => {
            map.get("auditID").is_some_and(Value::is_string)
                && map.get("stage").is_some_and(Value::is_string)
        }
        Some(_) => false,
    };
    if !is_event {
        let keys: Vec<&str> = map.keys().take(6).map(String::as_str).collect();
        return Err(format!(
            "not a Kubernetes audit event (top-level keys: {})",
            keys.join(", ")
        ));
    }
    Ok(())
}

/// `audit.k8s.io/v1beta1` archives carry the received time as `timestamp` and the stage time as
/// `metadata.creationTimestamp`; fill the v1 fields from them when missing.
pub(crate) fn normalize(doc: &mut Value) {
    let Value::Object(map) = doc else { return };
    let missing = |m: &Map<String, Value>, k: &str| m.get(k).is_none_or(Value::is_null);
    if missing(map, "requestReceivedTimestamp")
        && let Some(ts) = map.get("timestamp").filter(|v| v.is_string()).cloned()
    {
        map.insert("requestReceivedTimestamp".into(), ts);
    }
    if missing(map, "stageTimestamp")
        && let Some(ts) = map
            .get("metadata")
            .and_then(|m| m.get("creationTimestamp"))
            .filter(|v| v.is_string())
            .cloned()
    {
        map.insert("stageTimestamp".into(), ts);
    }
}
