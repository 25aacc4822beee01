//! What the pipeline produces: rendered records, the counters of a run, and samples of what it rejected.

use kaf_envelope::Source;
use serde_json::{Map, Value};

/// One output record: a flat map in the profile schema.
pub type Record = Map<String, Value>;

/// Upload API limit for one record, in bytes of compact JSON.
pub const MAX_RECORD_BYTES: usize = 1_000_000;

/// Counters of one run of the pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStats {
    pub events_in: u64,
    pub forwarded: u64,
    /// Not JSON at all: forwarded as unparsed records (`kaf_unparsed`, `raw_event`), never dropped.
    pub malformed: u64,
    /// JSON objects with fields the parser cannot take (too deep, a number out of range): forwarded with
    /// those fields as placeholders.
    pub salvaged: u64,
    /// JSON, but not a Kubernetes audit event.
    pub non_audit: u64,
    pub filtered: u64,
    /// Event time unreadable: the envelope time (or the ingest time) was used instead.
    pub timestamp_fallbacks: u64,
    /// Records shrunk to the per-record limit.
    pub truncated: u64,
    /// Records that could not be shrunk to the limit (never seen in practice; counted, not sent).
    pub oversize_dropped: u64,
    /// Secret values replaced by fingerprints.
    pub redacted: u64,
    /// Repeated events ([`event_identity`]) within one batch (retried deliveries, both AKS categories enabled).
    pub deduplicated: u64,
    /// Bytes of audit JSON that came in.
    pub bytes_in: u64,
    /// Events the audit policy dropped (level `None` or an omitted stage).
    pub policy_dropped: u64,
    /// Events the audit policy reduced (objects removed for a lower level, managedFields stripped).
    pub policy_reduced: u64,
}

impl std::ops::AddAssign for PipelineStats {
    fn add_assign(&mut self, o: Self) {
        self.events_in += o.events_in;
        self.forwarded += o.forwarded;
        self.malformed += o.malformed;
        self.salvaged += o.salvaged;
        self.non_audit += o.non_audit;
        self.filtered += o.filtered;
        self.timestamp_fallbacks += o.timestamp_fallbacks;
        self.truncated += o.truncated;
        self.oversize_dropped += o.oversize_dropped;
        self.redacted += o.redacted;
        self.deduplicated += o.deduplicated;
        self.bytes_in += o.bytes_in;
        self.policy_dropped += o.policy_dropped;
        self.policy_reduced += o.policy_reduced;
    }
}

/// Why one event was not forwarded, for a log line. Never holds event content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub event_id: String,
    pub reason: String,
}

/// A record with the id of the event it came from, rendered once: the compact JSON object that is uploaded or
/// printed, and its `Log-Size` contribution.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    pub event_id: String,
    /// Compact JSON of the record (an object in the profile schema).
    pub json: String,
    /// [`log_size`] of the record.
    pub log_size: u64,
}

impl OutRecord {
    pub fn new(event_id: String, record: &Record) -> Self {
        Self {
            event_id,
            // A map of strings to JSON values always serialises.
            json: serde_json::to_string(record).unwrap_or_else(|_| "{}".into()),
            log_size: log_size(record),
        }
    }

    /// The record as a map again (tests and tools; the hot path never parses it back).
    pub fn record(&self) -> Record {
        serde_json::from_str(&self.json).unwrap_or_default()
    }
}

/// Sum of the byte lengths of a record's field values (strings as UTF-8, other values as JSON text), without
/// the agent's own fields (`_zl*`, `s247*`, `inode*`), as the contract's `Log-Size` defines it.
pub fn log_size(record: &Record) -> u64 {
    record
        .iter()
        .filter(|(k, _)| !is_agent_field(k))
        .map(|(_, v)| match v {
            Value::String(s) => s.len() as u64,
            other => other.to_string().len() as u64,
        })
        .sum()
}

/// The agent's own fields, which `Log-Size` leaves out.
pub fn is_agent_field(name: &str) -> bool {
    name.starts_with("_zl") || name.starts_with("s247") || name.starts_with("inode")
}

/// The pipeline's result for one batch.
#[derive(Debug, Clone, Default)]
pub struct Processed {
    pub source: Source,
    pub records: Vec<OutRecord>,
    pub stats: PipelineStats,
    /// The first few rejected events, for a short log sample.
    pub rejects: Vec<Reject>,
    /// Every event forwarded as an unparsed or salvaged record ([`salvage`]), by id: what a caller that can
    /// keep raw text (the AKS failover) parks as well.
    pub unparsed: Vec<String>,
}

impl Processed {
    pub(crate) fn sample_reject(&mut self, event_id: &str, reason: &str) {
        if self.rejects.len() < MAX_REJECT_SAMPLES {
            self.rejects.push(Reject {
                event_id: event_id.to_string(),
                reason: reason.to_string(),
            });
        }
    }
}

pub(crate) const MAX_REJECT_SAMPLES: usize = 5;
