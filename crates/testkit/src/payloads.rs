//! Cloud wrappers around sample events, built as the real services build them.

use base64::Engine as _;
use flate2::{Compression, write::GzEncoder};
use serde_json::{Value, json};
use std::io::Write as _;

pub const AUDIT_STREAM: &str = "kube-apiserver-audit-0123456789abcdef0123456789abcdef";

/// A CloudWatch Logs `DATA_MESSAGE` with all six fields, one log event per message.
pub fn subscription(cluster: &str, stream: &str, messages: &[String]) -> Value {
    json!({
        "messageType": "DATA_MESSAGE",
        "owner": "111122223333",
        "logGroup": format!("/aws/eks/{cluster}/cluster"),
        "logStream": stream,
        "subscriptionFilters": ["audit-to-forwarder"],
        "logEvents": messages.iter().enumerate().map(|(i, m)| json!({
            // CloudWatch ids are decimal strings longer than u64.
            "id": format!("3719{:052}", i),
            "timestamp": 1_760_000_000_000_i64 + i as i64,
            "message": m,
        })).collect::<Vec<_>>(),
    })
}

/// A `CONTROL_MESSAGE` as CloudWatch sends when a subscription is created.
pub fn control_message(cluster: &str) -> Value {
    json!({
        "messageType": "CONTROL_MESSAGE",
        "owner": "CloudwatchLogs",
        "logGroup": format!("/aws/eks/{cluster}/cluster"),
        "logStream": "",
        "subscriptionFilters": [],
        "logEvents": [{"id": "", "timestamp": 1_760_000_000_000_i64,
                        "message": "CWL CONTROL MESSAGE: Checking health of destination Lambda function."}],
    })
}

/// The Lambda event: gzip, then padded standard base64 (what `aws_lambda_events` requires).
pub fn lambda_event(payload: &Value) -> Value {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(payload.to_string().as_bytes()).unwrap();
    let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    json!({"awslogs": {"data": data}})
}

/// Compact one-line JSON of each event, as CloudWatch carries them in `message`.
pub fn messages(events: &[Value]) -> Vec<String> {
    events.iter().map(Value::to_string).collect()
}
