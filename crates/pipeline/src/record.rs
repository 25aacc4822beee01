//! What the pipeline produces: rendered records, the counters of a run, and samples of what it rejected.

use kaf_envelope::Source;
use serde_json::{Map, Value};

/// One output record: a flat map in the profile schema.
pub type Record = Map<String, Value>;

/// What the delivery side adds to every record, and how it bounds and bills one. The pipeline renders each
/// record to it and knows nothing else of the wire format: the upload crate defines the upload API's
/// (`kaf_upload::format::SITE24X7`).
#[derive(Debug, Clone, Copy)]
pub struct RecordFormat {
    /// The event time, in epoch milliseconds.
    pub time_field: &'static str,
    /// The source's name (the cluster).
    pub source_field: &'static str,
    /// The stream the event came from.
    pub stream_field: &'static str,
    /// The most bytes of compact JSON one record may have.
    pub max_record_bytes: usize,
    /// The delivery side's own fields, left out of the size it bills.
    pub is_metadata_field: fn(&str) -> bool,
}

impl RecordFormat {
    /// Sum of the byte lengths of a record's field values (strings as UTF-8, other values as JSON text), without
    /// the metadata fields: the size the delivery side bills.
    pub fn billed_bytes(&self, record: &Record) -> u64 {
        record
            .iter()
            .filter(|(k, _)| !(self.is_metadata_field)(k))
            .map(|(_, v)| match v {
                Value::String(s) => s.len() as u64,
                other => other.to_string().len() as u64,
            })
            .sum()
    }
}

/// Counters of one run of the pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
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
    /// Records tagged with at least one detection.
    pub detected: u64,
    /// Events that raised no detection, not forwarded in detections-only mode.
    pub detections_skipped: u64,
    /// Events per detection rule id (an event that raises two rules counts in both).
    #[serde(skip_serializing_if = "RuleCounts::is_empty")]
    pub detections: RuleCounts,
}

/// Counts by detection rule id, in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct RuleCounts(std::collections::BTreeMap<String, u64>);

impl RuleCounts {
    pub fn add(&mut self, id: &str, n: u64) {
        match self.0.get_mut(id) {
            Some(count) => *count += n,
            None => {
                self.0.insert(id.to_string(), n);
            }
        }
    }
    pub fn get(&self, id: &str) -> u64 {
        self.0.get(id).copied().unwrap_or(0)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(id, n)| (id.as_str(), *n))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
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
        self.detected += o.detected;
        self.detections_skipped += o.detections_skipped;
        for (id, n) in o.detections.iter() {
            self.detections.add(id, n);
        }
    }
}

/// Why one event was not forwarded, for a log line. Never holds event content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub event_id: String,
    pub reason: String,
}

/// A record with the id of the event it came from, rendered once: the compact JSON object that is uploaded or
/// printed, and the bytes it bills ([`RecordFormat::billed_bytes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    pub event_id: String,
    /// Compact JSON of the record (an object in the profile schema).
    pub json: String,
    /// [`RecordFormat::billed_bytes`] of the record.
    pub billed_bytes: u64,
}

impl OutRecord {
    pub fn new(event_id: String, record: &Record, format: &RecordFormat) -> Self {
        Self {
            event_id,
            // A map of strings to JSON values always serialises.
            json: serde_json::to_string(record).unwrap_or_else(|_| "{}".into()),
            billed_bytes: format.billed_bytes(record),
        }
    }

    /// The record as a map again (tests and tools; the hot path never parses it back).
    pub fn record(&self) -> Record {
        serde_json::from_str(&self.json).unwrap_or_default()
    }
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
