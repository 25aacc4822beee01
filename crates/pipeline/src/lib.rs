//! The record pipeline: the middle of the path, the same for every envelope (EKS, AKS, files).
//!
//! It takes a decoded [`Batch`] from `kaf-envelope` and hands flat [`Record`]s (field name → value, the profile
//! schema) to whatever delivers them (the upload client, or stdout in the CLI). Per event, in this order:
//!
//! parse and check it is an audit event → drop repeats ([`event_identity`]) → normalise old API versions → audit policy → redact secrets → map with the profile (`jsonPath`) →
//! `_zl_timestamp` from the unmasked value → filter → mask → hash → derive → drop `ignoredFields` → add
//! `s247agentuid` and `logstream` → size limit.
//!
//! The profile is compiled (`compiled.rs`), with the audit policy, the detections and the record rules: most
//! events are mapped straight from their text into the record's JSON, whatever the profile; what it cannot
//! map exactly as this generic path would, it leaves to it. The generic path is also the compiled path's test
//! oracle.
//!
//! A bad event never takes the batch down: it is counted in [`PipelineStats`] and sampled (without content)
//! in [`Processed::rejects`].
//!
//! ```
//! use kaf_envelope::{Batch, Payload, RawEvent, Source};
//! // The delivery side's format (the upload crate's is `kaf_upload::format::SITE24X7`).
//! let format = kaf_pipeline::RecordFormat {
//!     time_field: "_zl_timestamp",
//!     source_field: "s247agentuid",
//!     stream_field: "logstream",
//!     max_record_bytes: 1_000_000,
//!     is_metadata_field: |name| name.starts_with("_zl") || name.starts_with("s247"),
//! };
//! let pipeline = kaf_pipeline::Pipeline::new(None, format).unwrap();
//! let event = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a1","stage":"ResponseComplete",
//!   "verb":"list","user":{"username":"bob"},"responseStatus":{"code":403},
//!   "requestReceivedTimestamp":"2026-04-20T16:32:59.930178Z"}"#;
//! let batch = Batch {
//!     source: Source { cluster: "demo".into(), stream: "kube-apiserver-audit-1".into(), event_pointer: None },
//!     events: vec![RawEvent { id: "1".into(), envelope_time_ms: None, payload: Payload::Text(event.into()) }],
//! };
//! let now_ms = 1_796_256_000_000; // the ingest time
//! let out = pipeline.process(batch, now_ms);
//! let record = &out.records[0].record();
//! assert_eq!(record["responsestatus_code"], 403);
//! assert_eq!(record["username"], "bob");
//! assert_eq!(record["_zl_timestamp"], 1_776_702_779_930_i64);
//! assert_eq!(record["s247agentuid"], "demo");
//! ```

mod compiled;
pub mod detect;
mod events;
mod identity;
pub mod limits;
pub mod lookup;
mod mapping;
mod options;
pub mod policy;
mod profile;
mod record;
pub mod redact;
mod render;
pub mod rules;
mod salvage;
pub mod sink;

pub use identity::event_identity;
pub use options::{Options, flag, load_detector};
pub use profile::{DEFAULT_PROFILE_JSON, Profile};
pub use record::{OutRecord, PipelineStats, Processed, Record, RecordFormat, Reject, RuleCounts};
pub use sink::{Delivery, Driven, Sink, Undelivered, drive};

use events::{Read, check_event, event_at, event_at_mut, normalize, payload_len};
use identity::Seen;
use kaf_config::{ConfigError, LogTypeConfig};
use kaf_envelope::{Batch, Payload, Source};
use mapping::{event_time, fallback_time, map};
use serde_json::Value;
use std::sync::Arc;

/// A compiled pipeline: profile plus the config's rules.
#[derive(Debug, Clone)]
pub struct Pipeline {
    profile: Profile,
    rules: rules::RecordRules,
    format: RecordFormat,
    redact_secrets: bool,
    policy: Option<policy::Policy>,
    /// The default profile re-rooted at AKS's `properties.log`; `None` when the config has its own `jsonPath`
    /// (which is then relative to the whole document, as in Site24x7's AKS configs).
    aks_profile: Option<Profile>,
    /// The profile compiled ([`compiled`]), for events at the document's root and for enveloped ones
    /// (AKS); `None` when the config has what the compiled path does not do yet.
    plan: Option<compiled::Plan>,
    enveloped_plan: Option<compiled::Plan>,
    /// The detection rules records are tagged with; `None` when detections are off.
    detector: Option<Arc<detect::Detector>>,
    /// Forward only events that raised a detection (and unparsed records, which no rule can read).
    detections_only: bool,
}

/// [`Pipeline::audit_events`]: the events, and what was left out.
#[derive(Debug, Default)]
pub struct AuditEvents {
    pub events: Vec<Value>,
    /// Lines or records that are not JSON.
    pub unparsable: u64,
    /// JSON that is not an audit event.
    pub non_audit: u64,
    /// Repeats of an event already read (the same identity).
    pub repeated: u64,
}

/// The record field listing the detection rule ids an event raised (absent when it raised none).
pub const DETECTIONS_FIELD: &str = "detections";
/// The record field with the highest severity of those rules.
pub const DETECTION_SEVERITY_FIELD: &str = "detection_severity";

impl Pipeline {
    /// Records in `format` (the delivery side's fields and limit). Without a config: the default profile and
    /// no rules (the CLI's stdout mode).
    pub fn new(config: Option<&LogTypeConfig>, format: RecordFormat) -> Result<Self, ConfigError> {
        let mut pipeline = match config {
            None => Self {
                profile: Profile::kubernetes_audit()?,
                rules: rules::RecordRules::default(),
                format,
                redact_secrets: true,
                policy: None,
                aks_profile: None,
                plan: None,
                enveloped_plan: None,
                detector: None,
                detections_only: false,
            },
            Some(c) => Self {
                profile: Profile::from_config(c)?,
                rules: rules::RecordRules::from_config(c),
                format,
                redact_secrets: true,
                policy: None,
                aks_profile: None,
                plan: None,
                enveloped_plan: None,
                detector: None,
                detections_only: false,
            },
        };
        if config.is_none_or(|c| c.json_path.is_none()) {
            pipeline.aks_profile = Some(pipeline.profile.rooted_at("properties.log"));
        }
        let p = &pipeline;
        let plan = compiled::Plan::compile(&p.profile, &p.rules, false, p.format);
        // The default profile reads the event inside the envelope; a config's own `jsonPath` the document
        // (the same plan).
        let enveloped_plan = match p.aks_profile {
            Some(_) => compiled::Plan::compile(&p.profile, &p.rules, true, p.format),
            None => plan.clone(),
        };
        pipeline.plan = plan;
        pipeline.enveloped_plan = enveloped_plan;
        Ok(pipeline)
    }

    /// Secret redaction is on by default; `false` turns it off (env `REDACT_SECRETS=false` in the binaries).
    pub fn with_secret_redaction(mut self, on: bool) -> Self {
        self.redact_secrets = on;
        self
    }

    /// Evaluate every event against an audit policy before anything else looks at it.
    pub fn with_policy(mut self, policy: Option<policy::Policy>) -> Self {
        self.policy = policy;
        self
    }

    /// Tag records with what `detector`'s rules raise (`None`: no detections); `only`: forward only the events
    /// that raised one.
    pub fn with_detections(mut self, detector: Option<Arc<detect::Detector>>, only: bool) -> Self {
        self.detections_only = only && detector.is_some();
        self.detector = detector;
        self
    }

    /// The generic path only: the compiled path's test oracle, and the benchmarks' "before".
    #[doc(hidden)]
    pub fn generic_only(mut self) -> Self {
        self.plan = None;
        self.enveloped_plan = None;
        self
    }

    /// Lower the per-record limit (tests, or receivers with smaller limits).
    pub fn with_max_record_bytes(mut self, max: usize) -> Self {
        self.format.max_record_bytes = max.min(self.format.max_record_bytes);
        self
    }

    /// Run every event of `batch` through the pipeline. `now_ms` is the ingest time (injected for tests).
    pub fn process(&self, batch: Batch, now_ms: i64) -> Processed {
        self.process_with(batch, now_ms, &mut Seen::default())
    }

    /// [`Pipeline::process`] with the event identities already seen in earlier parts of the same batch.
    fn process_with(&self, batch: Batch, now_ms: i64, seen: &mut Seen) -> Processed {
        let mut out = Processed {
            records: Vec::with_capacity(batch.events.len()),
            ..Processed::default()
        };
        let pointer = batch.source.event_pointer;
        let plan = match pointer {
            None => self.plan.as_ref(),
            Some(_) => self.enveloped_plan.as_ref(),
        };
        let detect_memo = compiled::DetectMemo::default();
        let spare = std::cell::Cell::default();
        for event in batch.events {
            out.stats.events_in += 1;
            out.stats.bytes_in += payload_len(&event.payload);
            if let (Some(plan), Some(text)) = (plan, event.payload.text()) {
                let ctx = compiled::Context {
                    cluster: &batch.source.cluster,
                    stream: &batch.source.stream,
                    redact_secrets: self.redact_secrets,
                    now_ms,
                    envelope_time_ms: event.envelope_time_ms,
                    detector: self.detector.as_deref(),
                    detect_memo: &detect_memo,
                    spare: &spare,
                    detections_only: self.detections_only,
                    policy: self.policy.as_ref(),
                };
                match plan.map_event(text, pointer, &ctx, seen) {
                    Some(compiled::Compiled::Record(mapped)) => {
                        if !seen.first_time_key(mapped.identity) {
                            out.stats.deduplicated += 1;
                            continue;
                        }
                        out.stats.timestamp_fallbacks += u64::from(mapped.timestamp_fallback);
                        out.stats.policy_reduced += u64::from(mapped.reduced);
                        out.stats.redacted += mapped.redacted;
                        out.stats.forwarded += 1;
                        count_detections(&mut out.stats, &mapped.detections);
                        out.records.push(OutRecord {
                            event_id: event.id,
                            json: mapped.json,
                            billed_bytes: mapped.billed_bytes,
                        });
                        continue;
                    }
                    Some(compiled::Compiled::Skipped { identity, why }) => {
                        if !seen.first_time_key(identity) {
                            out.stats.deduplicated += 1;
                            continue;
                        }
                        let stats = &mut out.stats;
                        match why {
                            compiled::Skip::NotDetected => stats.detections_skipped += 1,
                            compiled::Skip::PolicyDropped => stats.policy_dropped += 1,
                            compiled::Skip::Filtered {
                                timestamp_fallback,
                                reduced,
                                redacted,
                            } => {
                                stats.filtered += 1;
                                stats.redacted += redacted;
                                stats.timestamp_fallbacks += u64::from(timestamp_fallback);
                                stats.policy_reduced += u64::from(reduced);
                            }
                        }
                        continue;
                    }
                    None => {}
                }
            }
            let (mut doc, salvaged) = match self.read_event(event.payload, pointer) {
                Read::Event { doc, salvaged } => (doc, salvaged),
                Read::NotAudit(reason) => {
                    out.stats.non_audit += 1;
                    out.sample_reject(&event.id, &reason);
                    continue;
                }
                Read::Unparsable { text, reason } => {
                    // Kept, never dropped: the record says what happened (see `salvage`).
                    out.stats.malformed += 1;
                    out.sample_reject(&event.id, &format!("not JSON: {reason}"));
                    let mut record = salvage::unparsed_record(&text, &reason, self.redact_secrets);
                    let time_ms = fallback_time(event.envelope_time_ms, now_ms);
                    self.finish_record(
                        &mut out,
                        event.id,
                        &mut record,
                        time_ms,
                        &batch.source,
                        true,
                    );
                    continue;
                }
            };
            if !salvaged.is_empty() {
                out.stats.salvaged += 1;
                out.sample_reject(
                    &event.id,
                    &format!("fields kept as placeholders: {}", salvaged.join(", ")),
                );
            }
            let Some(audit) = event_at_mut(&mut doc, pointer) else {
                continue;
            };
            if !seen.first_time(audit) {
                out.stats.deduplicated += 1;
                continue;
            }
            normalize(audit);
            // On the original event: before the policy reduces it and redaction replaces values.
            let detections = match &self.detector {
                Some(detector) => detector.detect(audit),
                None => detect::Detections::default(),
            };
            if self.detections_only && detections.is_empty() {
                out.stats.detections_skipped += 1;
                continue;
            }
            if let Some(policy) = &self.policy {
                match policy.apply(audit) {
                    policy::Applied::Dropped => {
                        out.stats.policy_dropped += 1;
                        continue;
                    }
                    policy::Applied::Reduced => out.stats.policy_reduced += 1,
                    policy::Applied::Kept => {}
                }
            }
            if self.redact_secrets {
                out.stats.redacted += redact::redact_event(audit);
            }
            let (profile, date_root) = match (pointer, &self.aks_profile) {
                // The default profile reads the event inside the envelope, and so does its `dateField`.
                (Some(p), Some(rooted)) => (rooted, Some(p)),
                _ => (&self.profile, None),
            };
            let mut record = map(profile, &mut doc);

            let timestamp = match event_at_mut(&mut doc, date_root) {
                Some(root) => event_time(profile, &record, root, now_ms),
                None => None,
            };
            let time_ms = match timestamp {
                Some(ms) => ms,
                None => {
                    out.stats.timestamp_fallbacks += 1;
                    fallback_time(event.envelope_time_ms, now_ms)
                }
            };
            if !self.rules.apply(&mut record) {
                out.stats.filtered += 1;
                continue;
            }
            if !salvaged.is_empty() {
                record.insert("kaf_unparsed".into(), Value::String(salvaged.join(", ")));
            }
            if let Some(severity) = detections.severity {
                record.insert(
                    DETECTIONS_FIELD.into(),
                    Value::from(detections.ids.as_slice()),
                );
                record.insert(DETECTION_SEVERITY_FIELD.into(), severity.as_str().into());
            }
            if self.finish_record(
                &mut out,
                event.id,
                &mut record,
                time_ms,
                &batch.source,
                !salvaged.is_empty(),
            ) {
                count_detections(&mut out.stats, &detections.ids);
            }
        }
        out.source = batch.source;
        out
    }

    /// The agent fields, the size limit, and the record out (`false`: too large even shrunk, dropped);
    /// `unparsed` also lists the event in [`Processed::unparsed`].
    fn finish_record(
        &self,
        out: &mut Processed,
        event_id: String,
        record: &mut Record,
        time_ms: i64,
        source: &Source,
        unparsed: bool,
    ) -> bool {
        let format = &self.format;
        record.insert(format.time_field.into(), Value::from(time_ms));
        record.insert(
            format.source_field.into(),
            Value::String(source.cluster.clone()),
        );
        record.insert(
            format.stream_field.into(),
            Value::String(source.stream.clone()),
        );
        match limits::fit(record, self.format.max_record_bytes) {
            Ok(true) => out.stats.truncated += 1,
            Ok(false) => {}
            Err(()) => {
                out.stats.oversize_dropped += 1;
                return false;
            }
        }
        if unparsed {
            out.unparsed.push(event_id.clone());
        }
        out.stats.forwarded += 1;
        out.records
            .push(OutRecord::new(event_id, record, &self.format));
        true
    }

    /// The document of one event, with the audit event checked (and, for enveloped events, its JSON-string
    /// form parsed) at `pointer`.
    fn read_event(&self, payload: Payload, pointer: Option<&str>) -> Read {
        let (mut doc, mut salvaged) = match payload {
            Payload::Json(doc) => (doc, Vec::new()),
            Payload::Text(_) | Payload::Shared(_) | Payload::InBuffer { .. } => {
                let text = payload.text().unwrap_or_default();
                match salvage::parse_text(text, self.redact_secrets) {
                    salvage::Parsed::Document { doc, salvaged } => (doc, salvaged),
                    salvage::Parsed::Unparsable(reason) => {
                        return Read::Unparsable {
                            text: text.to_string(),
                            reason,
                        };
                    }
                }
            }
        };
        // AKS: `properties.log` is the audit event as JSON text (ending in `\n`).
        if let Some(Value::String(text)) = pointer.and_then(|p| doc.pointer_mut(p)) {
            let text = std::mem::take(text);
            match salvage::parse_text(text.trim_end(), self.redact_secrets) {
                salvage::Parsed::Document {
                    doc: event,
                    salvaged: inner,
                } if event.is_object() => {
                    if let Some(slot) = pointer.and_then(|p| doc.pointer_mut(p)) {
                        *slot = event;
                    }
                    salvaged.extend(inner);
                }
                salvage::Parsed::Document { .. } => {
                    return Read::NotAudit("the log line is JSON but not an object".into());
                }
                salvage::Parsed::Unparsable(reason) => {
                    return Read::Unparsable { text, reason };
                }
            }
        }
        match check_event(event_at(&doc, pointer)) {
            Ok(()) => Read::Event { doc, salvaged },
            Err(reason) => Read::NotAudit(reason),
        }
    }

    /// The audit events of `batch` as the pipeline reads them (checked, repeats dropped, old versions
    /// normalised), before policy, redaction and mapping: what the detections see. What is left out is
    /// counted.
    pub fn audit_events(&self, batch: Batch) -> AuditEvents {
        let pointer = batch.source.event_pointer;
        let mut seen = Seen::default();
        let mut out = AuditEvents {
            events: Vec::with_capacity(batch.events.len()),
            ..AuditEvents::default()
        };
        for event in batch.events {
            let mut doc = match self.read_event(event.payload, pointer) {
                Read::Event { doc, .. } => doc,
                Read::NotAudit(_) => {
                    out.non_audit += 1;
                    continue;
                }
                Read::Unparsable { .. } => {
                    out.unparsable += 1;
                    continue;
                }
            };
            let Some(audit) = event_at_mut(&mut doc, pointer) else {
                out.non_audit += 1;
                continue;
            };
            if seen.first_time(audit) {
                normalize(audit);
                out.events.push(std::mem::take(audit));
            } else {
                out.repeated += 1;
            }
        }
        out
    }

    /// [`Pipeline::process`] over `batch` in chunks of `chunk_events` events, lazily: memory holds one chunk's
    /// records at a time (per consumer), not the whole batch's. Chunk boundaries depend only on the batch, so a
    /// redelivered batch gives the same chunks.
    pub fn chunks(&self, batch: Batch, chunk_events: usize, now_ms: i64) -> Chunks<'_> {
        Chunks {
            pipeline: self,
            seen: Seen::default(),
            source: batch.source,
            events: batch.events.into_iter(),
            chunk_events: chunk_events.max(1),
            now_ms,
        }
    }
}

/// One forwarded record's detections, counted.
fn count_detections(stats: &mut PipelineStats, ids: &[&str]) {
    if !ids.is_empty() {
        stats.detected += 1;
        for id in ids {
            stats.detections.add(id, 1);
        }
    }
}

/// Iterator returned by [`Pipeline::chunks`].
pub struct Chunks<'a> {
    pipeline: &'a Pipeline,
    seen: Seen,
    source: Source,
    events: std::vec::IntoIter<kaf_envelope::RawEvent>,
    chunk_events: usize,
    now_ms: i64,
}

impl Iterator for Chunks<'_> {
    type Item = Processed;

    fn next(&mut self) -> Option<Processed> {
        let events: Vec<_> = self.events.by_ref().take(self.chunk_events).collect();
        if events.is_empty() {
            return None;
        }
        let batch = Batch {
            source: self.source.clone(),
            events,
        };
        Some(
            self.pipeline
                .process_with(batch, self.now_ms, &mut self.seen),
        )
    }
}

#[cfg(test)]
mod tests;
