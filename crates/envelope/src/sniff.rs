//! Recognise what a replay file holds, so `kube-audit-forwarder replay` takes whatever the user has:
//!
//! | content | example |
//! |---|---|
//! | Lambda CloudWatch event | `{"awslogs":{"data":"H4sI…"}}`, one per file or one per line |
//! | Lambda OnFailure destination record | `{"requestPayload":{"awslogs":{…}}, …}` (SQS replay), one per line |
//! | decoded subscription payload | `{"messageType":"DATA_MESSAGE","logGroup":…,"logEvents":[…]}` |
//! | AKS Event Hub body | `{"records":[…]}`, one per file or one per line |
//! | Azure Functions invocation | `{"Data":{"events":…},"Metadata":…}` as the host sends it |
//! | `aks-handler` failover file | NDJSON of `{"reason","class","category","eventId","record"}` |
//! | audit events | JSON lines, a JSON array, or one pretty-printed event |
//!
//! Any of them may be gzip-compressed (recognised by its magic bytes, not the file name).

use crate::azure::{self, Invocation};
use crate::cloudwatch::{Decoded, SubscriptionPayload};
use crate::failover::FailoverRecord;
use crate::{Batch, EnvelopeError, EnvelopeStats, Payload, RawEvent, Source, lines};
use serde_json::Value;

/// How plain audit events (which carry no cloud identity) are attributed.
#[derive(Debug, Clone)]
pub struct FileContext<'a> {
    /// Names the file in event ids and as the stream.
    pub origin: &'a str,
    /// `s247agentuid` for events that do not say their cluster.
    pub cluster: &'a str,
    /// Audit-stream prefix for CloudWatch payloads.
    pub stream_prefix: &'a str,
    /// Most bytes any gzip in the file (the file itself, each `awslogs.data`) may expand to.
    pub max_decompressed: usize,
}

/// Decode a whole replay file into batches (one per CloudWatch payload, one for plain events).
pub fn decode_file(
    bytes: &[u8],
    ctx: &FileContext<'_>,
    stats: &mut EnvelopeStats,
) -> Result<Vec<Batch>, EnvelopeError> {
    let text = if bytes.starts_with(&[0x1f, 0x8b]) {
        let plain = crate::gunzip::gunzip(bytes, ctx.max_decompressed)?;
        String::from_utf8(plain)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    };

    let plain = |events: Vec<RawEvent>| Batch {
        source: Source {
            cluster: ctx.cluster.to_string(),
            stream: ctx.origin.to_string(),
            event_pointer: None,
        },
        events,
    };

    // A file that is one JSON document: a cloud envelope, an array of events, or a single event.
    if let Ok(doc) = serde_json::from_str::<Value>(&text) {
        if let Some(batch) = subscription_in(&doc, ctx, stats)? {
            return Ok(vec![batch]);
        }
        if doc.get("Data").is_some() {
            drop(doc);
            let split = azure::split_request(text.into_bytes(), "events").map_err(|e| {
                EnvelopeError::Line {
                    line: 1,
                    reason: e.to_string(),
                }
            })?;
            stats.unreadable += split.stats.bad_bodies.len() as u64;
            return Ok(split.groups.into_iter().map(|g| g.batch).collect());
        }
        if is_aks(&doc) {
            return Ok(aks_batches(Invocation {
                bodies: vec![Ok(text)],
                ..Invocation::default()
            }));
        }
        let events = match doc {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| RawEvent {
                    id: format!("{}:[{i}]", ctx.origin),
                    envelope_time_ms: None,
                    payload: Payload::Json(item),
                })
                .collect(),
            other => vec![RawEvent {
                id: format!("{}:1", ctx.origin),
                envelope_time_ms: None,
                payload: Payload::Json(other),
            }],
        };
        return Ok(vec![plain(events)]);
    }

    // JSON lines. Lines holding cloud envelopes are decoded each; the first one decides.
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if FailoverRecord::looks_like(first)
        || serde_json::from_str::<Value>(first).is_ok_and(|d| is_aks(&d))
    {
        let mut bodies = Vec::new();
        let mut invocations = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            // A failover line carries the original record under `record`; a raw text (class
            // `unparsable`) as a JSON string: a whole parked invocation, or a body that was not JSON.
            if !FailoverRecord::looks_like(line) {
                bodies.push(Ok(line.to_string()));
                continue;
            }
            let parked = FailoverRecord::parse_line(line).map_err(|e| EnvelopeError::Line {
                line: i + 1,
                reason: e.to_string(),
            })?;
            let raw = parked.record.get();
            let Some(text) = raw
                .starts_with('"')
                .then(|| crate::escape::unescape_json_string(raw))
                .flatten()
            else {
                bodies.push(Ok(raw.to_string()));
                continue;
            };
            if text.trim_start().starts_with("{\"Data\"") {
                invocations.push((i + 1, text));
            } else {
                bodies.push(Ok(text));
            }
        }
        let mut split = azure::split(Invocation {
            bodies,
            ..Invocation::default()
        });
        for (line, invocation) in invocations {
            let more = azure::split_request(invocation.into_bytes(), "events").map_err(|e| {
                EnvelopeError::Line {
                    line,
                    reason: e.to_string(),
                }
            })?;
            split.stats.bad_bodies.extend(more.stats.bad_bodies);
            split.groups.extend(more.groups);
        }
        stats.unreadable += split.stats.bad_bodies.len() as u64;
        return Ok(split.groups.into_iter().map(|g| g.batch).collect());
    }
    let envelope_lines = first.contains("\"awslogs\"") || first.contains("\"logEvents\"");
    if !envelope_lines {
        return Ok(vec![plain(lines::events(&text, ctx.origin))]);
    }
    let mut batches = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let doc: Value = serde_json::from_str(line).map_err(|e| EnvelopeError::Line {
            line: i + 1,
            reason: e.to_string(),
        })?;
        match subscription_in(&doc, ctx, stats)? {
            Some(batch) => batches.push(batch),
            None => {
                return Err(EnvelopeError::Line {
                    line: i + 1,
                    reason: "expected a CloudWatch subscription event like the first line".into(),
                });
            }
        }
    }
    Ok(batches)
}

/// An Event Hub body of AKS diagnostic records, or one such record.
fn is_aks(doc: &Value) -> bool {
    doc.get("records").is_some_and(Value::is_array)
        || (azure::category(doc).is_some() && doc.get("properties").is_some())
}

fn aks_batches(invocation: Invocation) -> Vec<Batch> {
    azure::split(invocation)
        .groups
        .into_iter()
        .map(|group| group.batch)
        .collect()
}

/// The batch of the subscription payload inside a Lambda event, a destination record, or the payload itself.
fn subscription_in(
    doc: &Value,
    ctx: &FileContext<'_>,
    stats: &mut EnvelopeStats,
) -> Result<Option<Batch>, EnvelopeError> {
    let awslogs = doc
        .get("awslogs")
        .or_else(|| doc.get("requestPayload").and_then(|p| p.get("awslogs")));
    if let Some(data) = awslogs.and_then(|a| a.get("data")).and_then(Value::as_str) {
        let decoded = Decoded::from_awslogs_data(data, ctx.max_decompressed)?;
        return Ok(Some(decoded.into_batch(ctx.stream_prefix, stats)));
    }
    if doc.get("logEvents").is_some() && doc.get("logGroup").is_some() {
        let payload: SubscriptionPayload =
            serde_json::from_value(doc.clone()).map_err(EnvelopeError::Json)?;
        return Ok(Some(payload.into_batch(ctx.stream_prefix, stats)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cloudwatch::LogEvent;
    use base64::Engine as _;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write as _;

    const CTX: FileContext<'static> = FileContext {
        origin: "f",
        cluster: "local",
        stream_prefix: "kube-apiserver-audit-",
        max_decompressed: 1 << 24,
    };

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn lambda_event() -> String {
        let payload = SubscriptionPayload {
            message_type: "DATA_MESSAGE".into(),
            log_group: "/aws/eks/c1/cluster".into(),
            log_stream: "kube-apiserver-audit-1".into(),
            log_events: vec![LogEvent {
                id: "1".into(),
                timestamp: 5,
                message: "{\"kind\":\"Event\"}".into(),
            }],
            ..Default::default()
        };
        let data = base64::engine::general_purpose::STANDARD
            .encode(gzip(&serde_json::to_vec(&payload).unwrap()));
        serde_json::json!({"awslogs": {"data": data}}).to_string()
    }

    #[test]
    fn recognises_every_replay_shape() {
        let mut stats = EnvelopeStats::default();
        let one = decode_file(lambda_event().as_bytes(), &CTX, &mut stats).unwrap();
        assert_eq!((one.len(), one[0].source.cluster.as_str()), (1, "c1"));

        let destination = format!(
            "{{\"version\":\"1.0\",\"requestPayload\":{}}}",
            lambda_event()
        );
        let two_lines = format!("{destination}\n\n{}\n", lambda_event());
        let batches = decode_file(gzip(two_lines.as_bytes()).as_slice(), &CTX, &mut stats).unwrap();
        assert_eq!(batches.len(), 2);

        let lines = decode_file(
            b"{\"kind\":\"Event\"}\n{\"kind\":\"Event\"}\n",
            &CTX,
            &mut stats,
        )
        .unwrap();
        assert_eq!(
            (lines[0].events.len(), lines[0].source.cluster.as_str()),
            (2, "local")
        );

        let array = decode_file(b"[{\"a\":1},{\"b\":2},{\"c\":3}]", &CTX, &mut stats).unwrap();
        assert_eq!(array[0].events.len(), 3);
        let pretty = decode_file(b"{\n  \"kind\": \"Event\"\n}\n", &CTX, &mut stats).unwrap();
        assert_eq!(pretty[0].events.len(), 1);
    }

    #[test]
    fn aks_bodies_invocations_and_failover_files_are_recognised() {
        let record = serde_json::json!({"category": "kube-audit", "resourceId": "/X/MANAGEDCLUSTERS/C1",
            "properties": {"log": "{\"kind\":\"Event\",\"auditID\":\"a\",\"stage\":\"ResponseComplete\"}\n"}});
        let body = serde_json::json!({"records": [record, record]});
        let mut stats = EnvelopeStats::default();
        let one = decode_file(body.to_string().as_bytes(), &CTX, &mut stats).unwrap();
        assert_eq!(
            (
                one.len(),
                one[0].events.len(),
                one[0].source.cluster.as_str()
            ),
            (1, 2, "C1")
        );
        assert_eq!(one[0].source.event_pointer, Some(azure::EVENT_POINTER));

        let lines = format!("{body}\n{body}\n");
        assert_eq!(
            decode_file(lines.as_bytes(), &CTX, &mut stats).unwrap()[0]
                .events
                .len(),
            4
        );

        let failover = format!(
            "{}\n{}\n",
            serde_json::json!({"reason": "r", "class": "transient", "category": "kube-audit", "eventId": "p0-s1-r0", "record": record}),
            serde_json::json!({"reason": "r", "class": "transient", "category": "kube-audit", "eventId": "p0-s1-r1", "record": record})
        );
        assert_eq!(
            decode_file(failover.as_bytes(), &CTX, &mut stats).unwrap()[0]
                .events
                .len(),
            2
        );

        let invocation = serde_json::json!({"Data": {"events": serde_json::to_string(&vec![body.to_string()]).unwrap()}});
        assert_eq!(
            decode_file(invocation.to_string().as_bytes(), &CTX, &mut stats).unwrap()[0]
                .events
                .len(),
            2
        );
    }

    /// What the AKS handler parks raw replays too: a whole invocation (over `MAX_INVOCATION_BYTES`) is
    /// split again, and a body that was not JSON is counted as unreadable, not silently skipped.
    #[test]
    fn raw_failover_lines_replay_the_invocation_and_count_the_unreadable() {
        let record = serde_json::json!({"category": "kube-audit", "resourceId": "/X/MANAGEDCLUSTERS/C1",
            "properties": {"log": "{\"kind\":\"Event\",\"auditID\":\"a\",\"stage\":\"ResponseComplete\"}\n"}});
        let body = serde_json::json!({"records": [record, record, record]}).to_string();
        let invocation = serde_json::json!({"Data": {"events": serde_json::to_string(&vec![body]).unwrap()},
            "Metadata": {"PartitionContext": {"PartitionId": "4"}, "SequenceNumberArray": "[9]"}});
        let lines = [
            crate::failover::FailoverRecord::raw_text(
                "over MAX_INVOCATION_BYTES",
                "",
                "invocation",
                &invocation.to_string(),
            ),
            crate::failover::FailoverRecord::raw_text(
                "event body is not JSON",
                "",
                "p4-s10",
                "{\"records\": [ oops",
            ),
        ];
        let file: String = lines
            .iter()
            .map(crate::failover::FailoverRecord::to_line)
            .collect();
        let mut stats = EnvelopeStats::default();
        let batches = decode_file(file.as_bytes(), &CTX, &mut stats).unwrap();
        let ids: Vec<&str> = batches
            .iter()
            .flat_map(|b| b.events.iter().map(|e| e.id.as_str()))
            .collect();
        assert_eq!(ids, ["p4-s9-r0", "p4-s9-r1", "p4-s9-r2"]);
        assert_eq!(stats.unreadable, 1);
    }

    #[test]
    fn a_bad_envelope_line_names_its_line() {
        let text = format!("{}\nnot json\n", lambda_event());
        let err = decode_file(text.as_bytes(), &CTX, &mut EnvelopeStats::default()).unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
    }
}
