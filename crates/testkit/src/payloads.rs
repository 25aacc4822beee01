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

/// The Lambda event: gzip, then padded standard base64, as CloudWatch Logs sends it.
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

/// An AKS diagnostic record around an audit event, as Azure Monitor writes it: upper-case `resourceId`,
/// 9-digit `time`, `properties.log` = the event as a JSON string ending in `\n`.
pub fn aks_record(category: &str, cluster: &str, event: &Value) -> Value {
    json!({
        "time": "2026-04-20T16:29:59.995191417Z",
        "resourceId": format!("/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/RG-AKS/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/{}", cluster.to_uppercase()),
        "category": category,
        "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
        "serviceBuild": "na",
        "properties": {"log": format!("{event}\n"), "stream": "stdout", "pod": "kube-apiserver-7d9f8c6b5-abcde",
                       "containerID": "0123456789abcdef"}
    })
}

/// One Event Hub event body: `{"records": [...]}`.
pub fn event_hub_body(records: &[Value]) -> String {
    json!({"records": records}).to_string()
}

/// The request the Functions host POSTs for `cardinality: many`, `dataType: string`: `Data.events` is a string
/// holding a JSON array of strings (one body each), `Metadata.*Array` values are JSON strings.
pub fn functions_invocation(bodies: &[String], partition: &str, first_sequence: i64) -> Value {
    let n = bodies.len() as i64;
    let sequence: Vec<i64> = (first_sequence..first_sequence + n).collect();
    let enqueued: Vec<String> = (0..n)
        .map(|i| format!("2026-04-20T16:30:{:02}.000Z", i % 60))
        .collect();
    json!({
        "Data": {"events": serde_json::to_string(bodies).unwrap()},
        "Metadata": {
            "PartitionContext": {"EventHubName": "aks-audit", "ConsumerGroup": "auditfn", "PartitionId": partition},
            "SequenceNumberArray": serde_json::to_string(&sequence).unwrap(),
            "EnqueuedTimeUtcArray": serde_json::to_string(&enqueued).unwrap(),
            "sys": {"MethodName": "KubeAudit", "UtcNow": "2026-04-20T16:30:05Z", "RandGuid": "8c5e2f1a-0000-4000-8000-000000000000"}
        }
    })
}

/// Event Hub bodies of AKS records around `events` (cluster `c1`, category `kube-audit`), packed greedily as
/// Azure Monitor packs them: each body as large as fits in `max_body_bytes` (Event Hubs Standard allows
/// 1 MB per event).
pub fn packed_event_hub_bodies(events: &[Value], max_body_bytes: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut current: Vec<Value> = Vec::new();
    let mut size = 14; // `{"records":[]}`
    for event in events {
        let record = aks_record("kube-audit", "c1", event);
        let len = record.to_string().len() + 1;
        if !current.is_empty() && size + len > max_body_bytes {
            bodies.push(event_hub_body(&current));
            current.clear();
            size = 14;
        }
        size += len;
        current.push(record);
    }
    if !current.is_empty() {
        bodies.push(event_hub_body(&current));
    }
    bodies
}

/// A Functions invocation of `bodies` full Event Hub bodies (≤ 1 MB each) of real events, each with its own
/// `auditID`, and how many events it carries: what a busy cluster sends with `maxEventBatchSize` = `bodies`.
pub fn production_aks_invocation(bodies: usize) -> (Value, usize) {
    // Real events average ~1.3 KB here; enough for `bodies` full bodies.
    let events = crate::fixtures::numbered_events(bodies * 800);
    let mut packed = packed_event_hub_bodies(&events, 1_000_000);
    packed.truncate(bodies);
    let carried = packed
        .iter()
        .map(|b| b.matches("\"category\":\"kube-audit\"").count())
        .sum();
    (functions_invocation(&packed, "0", 1), carried)
}

/// The largest Lambda event a CloudWatch Logs subscription can deliver: as many real events (Metadata and
/// RequestResponse, each with its own `auditID`) as fit in Lambda's 1 MB async payload limit, and how many.
pub fn largest_lambda_event() -> (Value, usize) {
    const LIMIT: usize = 1_000_000;
    let mut pool = crate::fixtures::events(&crate::fixtures::audit2rbac_v1beta1());
    pool.extend(crate::fixtures::falco_events());
    let events_of = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| {
                let mut e = pool[i % pool.len()].clone();
                e["auditID"] = json!(format!("{i:08}-0000-4000-8000-000000000000"));
                e
            })
            .collect()
    };
    let size = |n: usize| {
        lambda_event(&subscription("big", AUDIT_STREAM, &messages(&events_of(n))))
            .to_string()
            .len()
    };
    // Grow, then bisect to the last count that fits.
    let (mut low, mut high) = (1_000, 2_000);
    while size(high) <= LIMIT {
        low = high;
        high *= 2;
    }
    while high - low > 50 {
        let mid = (low + high) / 2;
        if size(mid) <= LIMIT {
            low = mid;
        } else {
            high = mid;
        }
    }
    let events = events_of(low);
    (
        lambda_event(&subscription("big", AUDIT_STREAM, &messages(&events))),
        low,
    )
}

/// The bundled audit2rbac demo (37 real events) as one CloudWatch subscription Lambda event: what
/// `tests/fixtures/local/lambda-event.json` holds, for `cargo lambda invoke --data-file`.
pub fn demo_lambda_event() -> Value {
    let events = crate::fixtures::events(&crate::fixtures::audit2rbac_demo());
    lambda_event(&subscription("demo", AUDIT_STREAM, &messages(&events)))
}

/// The same events as one Functions invocation of an Event Hub body of `kube-audit` records: what
/// `tests/fixtures/local/aks-invocation.json` holds, for `curl` against a local `aks-handler`.
pub fn demo_aks_invocation() -> Value {
    let events = crate::fixtures::events(&crate::fixtures::audit2rbac_demo());
    functions_invocation(&packed_event_hub_bodies(&events, 1_000_000), "0", 1)
}

/// The decoded CloudWatch payload of a Lambda event (to compare events whose gzip bytes may differ).
pub fn decoded_lambda_event(event: &Value) -> Value {
    use std::io::Read as _;
    let data = event["awslogs"]["data"].as_str().unwrap_or_default();
    let gz = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap_or_default();
    let mut text = String::new();
    let _ = flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text);
    serde_json::from_str(&text).unwrap_or(Value::Null)
}
