//! Envelope decoders: the first step of the path. They take what a cloud (or a file) hands us and produce a
//! [`Batch`]: where the events came from ([`Source`]) and the raw events, each still one audit event as text
//! or JSON. They know nothing of profiles or the upload wire format.
//!
//! - [`cloudwatch`]: CloudWatch Logs subscription payloads (EKS), from the Lambda's event or from a file
//!   (`{"awslogs":{"data":…}}` or the decoded payload), with the audit-stream selection.
//! - [`azure`]: the Azure Functions custom-handler invocation and the AKS diagnostic records in its bodies.
//! - [`lines`]: plain audit JSON lines (`.log`, `.jsonl`), blank lines skipped.
//! - [`webhook`]: the kube-apiserver webhook backend's `EventList` bodies (self-managed clusters).
//! - [`gunzip`]: bounded decompression, shared by every decoder that meets gzip.
//! - [`failover`]: the typed line of the AKS failover output, written by the handler and read by `replay`.
//! - [`sniff`]: recognise which of these a replay file holds.

pub mod azure;
pub mod cloudwatch;
pub mod escape;
pub mod failover;
pub mod gunzip;
pub mod lines;
#[cfg(test)]
mod props;
mod skip;
pub mod sniff;
pub mod webhook;

use serde_json::Value;

/// Where a batch came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Source {
    /// The cluster (EKS: from the log group name), sent as `s247agentuid`.
    pub cluster: String,
    /// The log stream (EKS), category (AKS) or file the events were read from.
    pub stream: String,
    /// Where the audit event sits in each event's document (a JSON pointer); `None`: the document is the
    /// event. AKS records carry it at `/properties/log`.
    pub event_pointer: Option<&'static str>,
}

/// One event as the envelope carried it: still to be parsed and checked by the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    /// Stable id within the source (CloudWatch event id, `file:line`): keys the deterministic upload id.
    pub id: String,
    /// The envelope's own time for the event (ms), the fallback when the event's timestamp is unreadable.
    pub envelope_time_ms: Option<i64>,
    pub payload: Payload,
}

/// An event as text (to parse) or already parsed by the envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Text(String),
    /// Text the envelope keeps too (AKS records, for the failover), shared instead of copied.
    Shared(std::sync::Arc<str>),
    /// A slice of a buffer shared by the whole batch (CloudWatch messages, unescaped in place).
    InBuffer {
        buffer: std::sync::Arc<String>,
        range: std::ops::Range<usize>,
    },
    Json(Value),
}

impl Payload {
    /// The event's text, unless the envelope already parsed it.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t),
            Self::Shared(t) => Some(t),
            Self::InBuffer { buffer, range } => buffer.get(range.clone()),
            Self::Json(_) => None,
        }
    }
}

/// Events of one source, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    pub source: Source,
    pub events: Vec<RawEvent>,
}

/// What an envelope decoder counted while deciding what to forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvelopeStats {
    /// CloudWatch `CONTROL_MESSAGE` payloads (reachability probes).
    pub control_messages: u64,
    /// Events of streams that are not audit streams (e.g. `kube-apiserver-…`, `authenticator-…`).
    pub skipped_stream_events: u64,
    /// Event Hub bodies (or parked raw texts) that are not JSON at all: nothing in them can be forwarded.
    pub unreadable: u64,
}

impl std::ops::AddAssign for EnvelopeStats {
    fn add_assign(&mut self, o: Self) {
        self.control_messages += o.control_messages;
        self.skipped_stream_events += o.skipped_stream_events;
        self.unreadable += o.unreadable;
    }
}

/// An envelope that could not be read at all. Carries positions, never content.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("`awslogs.data` is not valid base64")]
    Base64,
    #[error("`awslogs.data` is not valid gzip: {0}")]
    Gzip(std::io::Error),
    /// A gzip stream that expands past the limit: refused before it can exhaust memory (a gzip bomb, or a
    /// payload far larger than any the platform sends).
    #[error(
        "gzip data decompresses to more than {limit} bytes, the limit (MAX_DECOMPRESSED_BYTES / --max-decompressed-bytes)"
    )]
    TooLarge { limit: usize },
    #[error("subscription payload is not the expected JSON: {0}")]
    Json(serde_json::Error),
    #[error("line {line}: not valid JSON ({reason})")]
    Line { line: usize, reason: String },
}
