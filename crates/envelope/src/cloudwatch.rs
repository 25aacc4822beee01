//! CloudWatch Logs subscription payloads (EKS control-plane logs).
//!
//! `awslogs.data` (base64 of gzip'd JSON) is decoded here, for the Lambda and for replay files alike, by
//! [`Decoded::from_awslogs_data`]: padding optional, multi-member gzip, at most `limit` bytes decompressed
//! (a gzip bomb fails alone), into one buffer sized from the gzip trailer. The messages, each one audit event
//! as a JSON string, are then unescaped **in place** inside that buffer, so a full payload (25 MB of audit
//! JSON) lives in memory once, with no copy per message, and every event refers to its slice of it.
//!
//! `aws_lambda_events`' `LogsEvent` is not used: it decodes during deserialisation without any bound, and its
//! `LogData` copies every message. [`SubscriptionPayload`] is the same payload as plain serde types, for files
//! that hold it already decoded and for building fixtures. Both end in the same audit-stream selection.

use crate::escape::unescape_literal_in_place;
use crate::{Batch, EnvelopeError, EnvelopeStats, Payload, RawEvent, Source};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;

mod read;

/// The stream prefix of EKS audit logs (`kube-apiserver-` alone also matches the API server's own log).
pub const AUDIT_STREAM_PREFIX: &str = "kube-apiserver-audit-";

/// A decoded subscription payload, as CloudWatch documents it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionPayload {
    pub message_type: String,
    #[serde(default)]
    pub owner: String,
    pub log_group: String,
    pub log_stream: String,
    #[serde(default)]
    pub subscription_filters: Vec<String>,
    pub log_events: Vec<LogEvent>,
}

/// One CloudWatch log event: `message` holds one audit event as JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LogEvent {
    pub id: String,
    pub timestamp: i64,
    pub message: String,
}

/// A payload decoded from `awslogs.data`: its messages unescaped side by side in one shared buffer (freed
/// when the last event of the batch is dropped).
#[derive(Debug, Clone)]
pub struct Decoded {
    pub message_type: String,
    pub log_group: String,
    pub log_stream: String,
    pub events: Vec<DecodedEvent>,
}

/// One log event of a [`Decoded`] payload: its message is `buffer[range]`.
#[derive(Debug, Clone)]
pub struct DecodedEvent {
    pub id: String,
    pub timestamp: i64,
    pub buffer: Arc<String>,
    pub range: std::ops::Range<usize>,
}

impl DecodedEvent {
    pub fn message(&self) -> &str {
        self.buffer.get(self.range.clone()).unwrap_or_default()
    }
}

/// The JSON of a payload, borrowed from the decompressed buffer; messages only located, not read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    #[serde(borrow)]
    message_type: Cow<'a, str>,
    #[serde(borrow)]
    log_group: Cow<'a, str>,
    #[serde(borrow)]
    log_stream: Cow<'a, str>,
    #[serde(borrow)]
    log_events: Vec<WireEvent<'a>>,
}

#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    timestamp: i64,
    #[serde(borrow)]
    message: &'a RawValue,
}

impl Decoded {
    /// The payload of a Lambda event from a CloudWatch Logs subscription (`{"awslogs":{"data":"…"}}`).
    pub fn from_lambda_event(event: &[u8], limit: usize) -> Result<Self, EnvelopeError> {
        #[derive(Deserialize)]
        struct Event<'a> {
            #[serde(borrow)]
            awslogs: AwsLogs<'a>,
        }
        #[derive(Deserialize)]
        struct AwsLogs<'a> {
            #[serde(borrow)]
            data: Cow<'a, str>,
        }
        let event: Event<'_> = serde_json::from_slice(event).map_err(EnvelopeError::Json)?;
        Self::from_awslogs_data(&event.awslogs.data, limit)
    }

    /// Decode the `awslogs.data` string: base64 (padding optional), gzip (multi-member, at most `limit` bytes
    /// decompressed), the payload's JSON, and each message unescaped in place.
    pub fn from_awslogs_data(data: &str, limit: usize) -> Result<Self, EnvelopeError> {
        let engine = GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let compressed = |data: &str| {
            engine
                .decode(data.trim())
                .map_err(|_| EnvelopeError::Base64)
        };
        let mut buffer = crate::gunzip::gunzip(&compressed(data)?, limit)?;
        let read = match read::in_place(&mut buffer) {
            Some(read) => read,
            None => {
                // Not the usual shape, or not valid: read again from the start, by serde, which says why.
                buffer = crate::gunzip::gunzip(&compressed(data)?, limit)?;
                with_serde(&mut buffer)?
            }
        };
        let read::Read {
            message_type,
            log_group,
            log_stream,
            events,
            written,
        } = read;
        buffer.truncate(written);
        let buffer = Arc::new(String::from_utf8(buffer).map_err(|_| {
            EnvelopeError::Json(serde::de::Error::custom("a message is not valid UTF-8"))
        })?);
        let pieces = events
            .into_iter()
            .map(|(id, timestamp, range)| DecodedEvent {
                id,
                timestamp,
                buffer: buffer.clone(),
                range,
            })
            .collect();
        Ok(Self {
            message_type,
            log_group,
            log_stream,
            events: pieces,
        })
    }

    /// The events to forward: see [`select`].
    pub fn into_batch(self, stream_prefix: &str, stats: &mut EnvelopeStats) -> Batch {
        let (source, forward) = select(
            &self.message_type,
            &self.log_group,
            self.log_stream,
            self.events.len(),
            stream_prefix,
            stats,
        );
        if !forward {
            return Batch {
                source,
                events: Vec::new(),
            };
        }
        let events = self
            .events
            .into_iter()
            .map(|e| RawEvent {
                id: e.id,
                envelope_time_ms: Some(e.timestamp),
                payload: Payload::InBuffer {
                    buffer: e.buffer,
                    range: e.range,
                },
            })
            .collect();
        Batch { source, events }
    }
}

/// [`read::in_place`] by serde: for any payload the one-pass reader does not take. The messages are located
/// by serde (which checks the whole payload), then unescaped in place.
fn with_serde(buffer: &mut [u8]) -> Result<read::Read, EnvelopeError> {
    let (message_type, log_group, log_stream, located) = {
        let wire: Wire<'_> = serde_json::from_slice(buffer).map_err(EnvelopeError::Json)?;
        let base = buffer.as_ptr() as usize;
        let located: Vec<(String, i64, std::ops::Range<usize>)> = wire
            .log_events
            .iter()
            .map(|e| {
                let raw = e.message.get();
                let start = raw.as_ptr() as usize - base;
                (e.id.to_string(), e.timestamp, start..start + raw.len())
            })
            .collect();
        (
            wire.message_type.into_owned(),
            wire.log_group.into_owned(),
            wire.log_stream.into_owned(),
            located,
        )
    };
    // Unescape each message over the bytes already read: output never outruns input.
    let mut written = 0;
    let mut events = Vec::with_capacity(located.len());
    for (index, (id, timestamp, literal)) in located.into_iter().enumerate() {
        match unescape_literal_in_place(buffer, literal.start, written) {
            Some((end, until)) if end == literal.end => {
                events.push((id, timestamp, written..until));
                written = until;
            }
            _ => {
                return Err(EnvelopeError::Json(serde::de::Error::custom(format!(
                    "logEvents[{index}].message is not a JSON string"
                ))));
            }
        }
    }
    Ok(read::Read {
        message_type,
        log_group,
        log_stream,
        events,
        written,
    })
}

/// The audit-stream selection, shared by both payload shapes: the source, and whether its events are
/// forwarded. `CONTROL_MESSAGE`s and streams not starting with `stream_prefix` are not, and are counted.
fn select(
    message_type: &str,
    log_group: &str,
    log_stream: String,
    events: usize,
    stream_prefix: &str,
    stats: &mut EnvelopeStats,
) -> (Source, bool) {
    let source = Source {
        cluster: cluster_from_log_group(log_group).to_string(),
        stream: log_stream,
        event_pointer: None,
    };
    if message_type == "CONTROL_MESSAGE" {
        stats.control_messages += 1;
        return (source, false);
    }
    if !source.stream.starts_with(stream_prefix) {
        stats.skipped_stream_events += events as u64;
        return (source, false);
    }
    (source, true)
}

/// `/aws/eks/<cluster>/cluster` → `<cluster>`; any other log group is its own identity.
pub fn cluster_from_log_group(log_group: &str) -> &str {
    log_group
        .strip_prefix("/aws/eks/")
        .and_then(|rest| rest.strip_suffix("/cluster"))
        .filter(|name| !name.is_empty() && !name.contains('/'))
        .unwrap_or(log_group)
}

impl SubscriptionPayload {
    /// The events to forward; see [`select`].
    pub fn into_batch(self, stream_prefix: &str, stats: &mut EnvelopeStats) -> Batch {
        let count = self.log_events.len();
        let (source, forward) = select(
            &self.message_type,
            &self.log_group,
            self.log_stream,
            count,
            stream_prefix,
            stats,
        );
        if !forward {
            return Batch {
                source,
                events: Vec::new(),
            };
        }
        let events = self
            .log_events
            .into_iter()
            .map(|e| RawEvent {
                id: e.id,
                envelope_time_ms: Some(e.timestamp),
                payload: Payload::Text(e.message),
            })
            .collect();
        Batch { source, events }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write as _;

    fn payload(stream: &str, message_type: &str) -> SubscriptionPayload {
        SubscriptionPayload {
            message_type: message_type.into(),
            owner: "111122223333".into(),
            log_group: "/aws/eks/demo/cluster".into(),
            log_stream: stream.into(),
            subscription_filters: vec!["f".into()],
            log_events: vec![LogEvent {
                id: "37190000000000000000000000000000000000000000000000000001".into(),
                timestamp: 1_760_000_000_000,
                message: "{}".into(),
            }],
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn escapes_of_every_kind_unescape_in_place() {
        let payload = r#"{"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/c/cluster","logStream":"kube-apiserver-audit-1","logEvents":[
            {"id":"1","timestamp":1,"message":"{\"a\":\"\ud83d\ude00 \u00e9 \u2028 \/ \\ \b\f\n\r\t\"}"},
            {"id":"2","timestamp":2,"message":""},
            {"id":"3","timestamp":3,"message":"plain"}]}"#;
        let data = base64::engine::general_purpose::STANDARD.encode(gzip(payload.as_bytes()));
        let decoded = Decoded::from_awslogs_data(&data, 1 << 20).unwrap();
        let batch = decoded.into_batch(AUDIT_STREAM_PREFIX, &mut EnvelopeStats::default());
        let texts: Vec<&str> = batch
            .events
            .iter()
            .map(|e| e.payload.text().unwrap())
            .collect();
        assert_eq!(
            texts,
            [
                "{\"a\":\"😀 é \u{2028} / \\ \u{8}\u{c}\n\r\t\"}",
                "",
                "plain"
            ]
        );
        for bad in [r#"\ud83d"#, r#"\x"#, r#"\u12"#] {
            let payload = format!(
                r#"{{"messageType":"DATA_MESSAGE","logGroup":"g","logStream":"s","logEvents":[{{"id":"1","timestamp":1,"message":"{bad}"}}]}}"#
            );
            let data = base64::engine::general_purpose::STANDARD.encode(gzip(payload.as_bytes()));
            assert!(Decoded::from_awslogs_data(&data, 1 << 20).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_name_comes_from_the_eks_log_group() {
        assert_eq!(cluster_from_log_group("/aws/eks/prod-1/cluster"), "prod-1");
        assert_eq!(cluster_from_log_group("/custom/group"), "/custom/group");
        assert_eq!(
            cluster_from_log_group("/aws/eks//cluster"),
            "/aws/eks//cluster"
        );
    }

    #[test]
    fn audit_streams_are_forwarded_and_others_counted() {
        let mut stats = EnvelopeStats::default();
        let audit = payload(
            "kube-apiserver-audit-0123456789abcdef0123456789abcdef",
            "DATA_MESSAGE",
        );
        let batch = audit.into_batch(AUDIT_STREAM_PREFIX, &mut stats);
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.source.cluster, "demo");
        assert_eq!(batch.events[0].envelope_time_ms, Some(1_760_000_000_000));

        let api = payload(
            "kube-apiserver-0123456789abcdef0123456789abcdef",
            "DATA_MESSAGE",
        );
        assert!(
            api.into_batch(AUDIT_STREAM_PREFIX, &mut stats)
                .events
                .is_empty()
        );
        let control = payload("kube-apiserver-audit-x", "CONTROL_MESSAGE");
        assert!(
            control
                .into_batch(AUDIT_STREAM_PREFIX, &mut stats)
                .events
                .is_empty()
        );
        assert_eq!(
            stats,
            EnvelopeStats {
                control_messages: 1,
                skipped_stream_events: 1,
                unreadable: 0
            }
        );
    }

    #[test]
    fn awslogs_data_accepts_missing_padding_and_multi_member_gzip() {
        let json = serde_json::to_vec(&payload("kube-apiserver-audit-a", "DATA_MESSAGE")).unwrap();
        let (first, second) = json.split_at(json.len() / 2);
        let mut two_members = gzip(first);
        two_members.extend(gzip(second));
        let data = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&two_members);
        let decoded = Decoded::from_awslogs_data(&data, 1 << 20).unwrap();
        assert_eq!(decoded.log_stream, "kube-apiserver-audit-a");
        let batch = decoded.into_batch(AUDIT_STREAM_PREFIX, &mut EnvelopeStats::default());
        assert_eq!(batch.events[0].payload.text(), Some("{}"));
        assert!(matches!(
            Decoded::from_awslogs_data(&data, 10),
            Err(EnvelopeError::TooLarge { limit: 10 })
        ));
        assert!(matches!(
            Decoded::from_awslogs_data("%%%", 1 << 20),
            Err(EnvelopeError::Base64)
        ));
        assert!(matches!(
            Decoded::from_awslogs_data("aGVsbG8=", 1 << 20),
            Err(EnvelopeError::Gzip(_))
        ));
    }
}
