//! CloudWatch Logs subscription payloads (EKS control-plane logs).
//!
//! The Lambda receives `aws_lambda_events`' `LogsEvent`, already base64-decoded and gunzipped; replay files are
//! decoded here with a more lenient decoder (padding optional, multi-member gzip) because files come from many
//! tools. Both end in [`SubscriptionPayload::into_batch`], which applies the audit-stream selection.

use crate::{Batch, EnvelopeError, EnvelopeStats, Payload, RawEvent, Source};
use aws_lambda_events::cloudwatch_logs::LogData;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};

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

impl From<LogData> for SubscriptionPayload {
    fn from(data: LogData) -> Self {
        Self {
            message_type: data.message_type,
            owner: data.owner,
            log_group: data.log_group,
            log_stream: data.log_stream,
            subscription_filters: data.subscription_filters,
            log_events: data
                .log_events
                .into_iter()
                .map(|e| LogEvent {
                    id: e.id,
                    timestamp: e.timestamp,
                    message: e.message,
                })
                .collect(),
        }
    }
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
    /// Decode the `awslogs.data` string: base64 (padding optional), gzip (multi-member, at most `limit` bytes
    /// decompressed), then the JSON of CloudWatch's `LogData` (all six fields, as CloudWatch always sends
    /// them), parsed from the slice.
    pub fn from_awslogs_data(data: &str, limit: usize) -> Result<Self, EnvelopeError> {
        let engine = GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let compressed = engine
            .decode(data.trim())
            .map_err(|_| EnvelopeError::Base64)?;
        let json = crate::gunzip::gunzip(&compressed, limit)?;
        drop(compressed);
        Self::from_json(&json)
    }

    /// The payload of a Lambda event from a CloudWatch Logs subscription (`{"awslogs":{"data":"…"}}`), read
    /// from the event's bytes. Unlike `aws_lambda_events`' `LogsEvent`, which decodes during deserialisation
    /// without bounds, the gzip is expanded through [`crate::gunzip`] with `limit`.
    pub fn from_lambda_event(event: &[u8], limit: usize) -> Result<Self, EnvelopeError> {
        #[derive(Deserialize)]
        struct Event<'a> {
            #[serde(borrow)]
            awslogs: AwsLogs<'a>,
        }
        #[derive(Deserialize)]
        struct AwsLogs<'a> {
            #[serde(borrow)]
            data: std::borrow::Cow<'a, str>,
        }
        let event: Event<'_> = serde_json::from_slice(event).map_err(EnvelopeError::Json)?;
        Self::from_awslogs_data(&event.awslogs.data, limit)
    }

    /// A decoded payload's JSON; `LogData` when it has all six fields, else the lenient shape (files made by
    /// other tools may lack `owner` or `subscriptionFilters`).
    pub fn from_json(json: &[u8]) -> Result<Self, EnvelopeError> {
        match serde_json::from_slice::<LogData>(json) {
            Ok(data) => Ok(data.into()),
            Err(strict) => {
                serde_json::from_slice::<Self>(json).map_err(|_| EnvelopeError::Json(strict))
            }
        }
    }

    /// The events to forward. `CONTROL_MESSAGE`s and streams not starting with `stream_prefix` give an empty
    /// batch and are counted in `stats`.
    pub fn into_batch(self, stream_prefix: &str, stats: &mut EnvelopeStats) -> Batch {
        let source = Source {
            cluster: cluster_from_log_group(&self.log_group).to_string(),
            stream: self.log_stream,
            event_pointer: None,
        };
        if self.message_type == "CONTROL_MESSAGE" {
            stats.control_messages += 1;
            return Batch {
                source,
                events: Vec::new(),
            };
        }
        if !source.stream.starts_with(stream_prefix) {
            stats.skipped_stream_events += self.log_events.len() as u64;
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
                skipped_stream_events: 1
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
        let decoded = SubscriptionPayload::from_awslogs_data(&data, 1 << 20).unwrap();
        assert_eq!(decoded.log_stream, "kube-apiserver-audit-a");
        assert!(matches!(
            SubscriptionPayload::from_awslogs_data(&data, 10),
            Err(EnvelopeError::TooLarge { limit: 10 })
        ));
        assert!(matches!(
            SubscriptionPayload::from_awslogs_data("%%%", 1 << 20),
            Err(EnvelopeError::Base64)
        ));
        assert!(matches!(
            SubscriptionPayload::from_awslogs_data("aGVsbG8=", 1 << 20),
            Err(EnvelopeError::Gzip(_))
        ));
    }
}
