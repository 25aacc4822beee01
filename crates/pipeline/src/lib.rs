//! The record pipeline: the middle of the path, the same for every envelope (EKS, AKS, files).
//!
//! It takes a decoded [`Batch`] from `kaf-envelope` and hands flat [`Record`]s (field name → value, the profile
//! schema) to whatever delivers them (the upload client, or stdout in the CLI). Per event, in this order:
//!
//! parse and check it is an audit event → drop repeats ([`event_identity`]) → normalise old API versions → audit policy → redact secrets → map with the profile (`jsonPath`) →
//! `_zl_timestamp` from the unmasked value → filter → mask → hash → derive → drop `ignoredFields` → add
//! `s247agentuid` and `logstream` → size limit.
//!
//! Without rules or a policy, the profile is compiled (`compiled.rs`): most events are mapped straight from
//! their text into the record's JSON, whatever the profile; what it cannot map exactly as this generic path
//! would, it leaves to it. The generic path is also the compiled path's test oracle.
//!
//! A bad event never takes the batch down: it is counted in [`PipelineStats`] and sampled (without content)
//! in [`Processed::rejects`].
//!
//! ```
//! use kaf_envelope::{Batch, Payload, RawEvent, Source};
//! let pipeline = kaf_pipeline::Pipeline::new(None).unwrap();
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
pub mod limits;
pub mod lookup;
pub mod policy;
pub mod redact;
mod render;
pub mod rules;
mod salvage;

use kaf_config::{
    ConfigError, DateFormat, FieldFilter, HashRule, JsonPathEntry, LogTypeConfig, MaskRule,
    ValueType,
};
use kaf_envelope::{Batch, Payload, Source};
use serde_json::{Map, Value};

/// One output record: a flat map in the profile schema.
pub type Record = Map<String, Value>;

/// The default profile for Kubernetes audit events, shipped as data (documented field by field there).
pub const DEFAULT_PROFILE_JSON: &str =
    include_str!("../../../templates/logtypes/kubernetes-audit.json");

/// Upload API limit for one record, in bytes of compact JSON.
pub const MAX_RECORD_BYTES: usize = 1_000_000;

/// Which fields a record has and where the event time comes from.
#[derive(Debug, Clone)]
pub struct Profile {
    pub entries: Vec<JsonPathEntry>,
    /// An output field name, or else a dotted path on the source event.
    pub date_field: String,
    pub date_format: DateFormat,
}

impl Profile {
    /// The shipped Kubernetes audit profile.
    pub fn kubernetes_audit() -> Result<Self, ConfigError> {
        let doc: Value =
            serde_json::from_str(DEFAULT_PROFILE_JSON).map_err(|e| ConfigError::Json {
                line: e.line(),
                column: e.column(),
            })?;
        let entries =
            kaf_config::compile_json_path("jsonPath", doc.get("jsonPath").unwrap_or(&Value::Null))?;
        let date_field = doc
            .get("dateField")
            .and_then(Value::as_str)
            .unwrap_or("requestreceivedtimestamp")
            .to_string();
        Ok(Self {
            entries,
            date_field,
            date_format: DateFormat::default(),
        })
    }

    /// The same profile with every key under `prefix` (the default profile, for documents that carry the event
    /// inside an envelope: AKS records at `properties.log`).
    fn rooted_at(&self, prefix: &str) -> Self {
        let mut profile = self.clone();
        for entry in &mut profile.entries {
            entry.key = format!("{prefix}.{}", entry.key);
        }
        profile
    }

    /// The config's own `jsonPath` if it has one, else the default profile; date settings from the config win.
    pub fn from_config(config: &LogTypeConfig) -> Result<Self, ConfigError> {
        let mut profile = match &config.json_path {
            Some(entries) => Self {
                entries: entries.clone(),
                date_field: "requestReceivedTimestamp".into(),
                date_format: DateFormat::default(),
            },
            None => Self::kubernetes_audit()?,
        };
        if let Some(field) = &config.date_field {
            profile.date_field = field.clone();
        }
        if let Some(format) = &config.date_format {
            profile.date_format = format.clone();
        }
        Ok(profile)
    }
}

/// The forwarder-wide pipeline settings, read the same way by every binary: `REDACT_SECRETS`, and
/// `AUDIT_POLICY` (inline YAML or base64) or `AUDIT_POLICY_FILE`.
#[derive(Debug, Clone)]
pub struct Options {
    pub redact_secrets: bool,
    pub policy: Option<policy::Policy>,
}

impl Options {
    /// From variables read through `var`; errors name the variable.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        Ok(Self {
            redact_secrets: redact::enabled_from_env(var("REDACT_SECRETS").as_deref())?,
            policy: policy::from_env(
                var("AUDIT_POLICY").as_deref(),
                var("AUDIT_POLICY_FILE").as_deref(),
            )?,
        })
    }

    /// What a start-up log should say about these settings.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .policy
            .iter()
            .flat_map(|p| p.warnings.iter().map(|w| format!("audit policy: {w}")))
            .collect();
        if !self.redact_secrets {
            warnings.push("secret redaction is off (REDACT_SECRETS=false): Secret values are forwarded in clear".into());
        }
        warnings
    }

    /// `pipeline` with these settings.
    pub fn apply(&self, pipeline: Pipeline) -> Pipeline {
        pipeline
            .with_secret_redaction(self.redact_secrets)
            .with_policy(self.policy.clone())
    }
}

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
    fn sample_reject(&mut self, event_id: &str, reason: &str) {
        if self.rejects.len() < MAX_REJECT_SAMPLES {
            self.rejects.push(Reject {
                event_id: event_id.to_string(),
                reason: reason.to_string(),
            });
        }
    }
}

const MAX_REJECT_SAMPLES: usize = 5;

/// A compiled pipeline: profile plus the config's rules.
#[derive(Debug, Clone)]
pub struct Pipeline {
    profile: Profile,
    filters: Vec<FieldFilter>,
    masks: Vec<MaskRule>,
    hashes: Vec<HashRule>,
    derives: Vec<kaf_config::DeriveRule>,
    ignored_fields: Vec<String>,
    max_record_bytes: usize,
    redact_secrets: bool,
    policy: Option<policy::Policy>,
    /// The default profile re-rooted at AKS's `properties.log`; `None` when the config has its own `jsonPath`
    /// (which is then relative to the whole document, as in Site24x7's AKS configs).
    aks_profile: Option<Profile>,
    /// The profile compiled ([`compiled`]), for events at the document's root and for enveloped ones
    /// (AKS); `None` when the config has what the compiled path does not do yet.
    plan: Option<compiled::Plan>,
    enveloped_plan: Option<compiled::Plan>,
}

impl Pipeline {
    /// Without a config: the default profile and no rules (the CLI's stdout mode).
    pub fn new(config: Option<&LogTypeConfig>) -> Result<Self, ConfigError> {
        let mut pipeline = match config {
            None => Self {
                profile: Profile::kubernetes_audit()?,
                filters: Vec::new(),
                masks: Vec::new(),
                hashes: Vec::new(),
                derives: Vec::new(),
                ignored_fields: Vec::new(),
                max_record_bytes: MAX_RECORD_BYTES,
                redact_secrets: true,
                policy: None,
                aks_profile: None,
                plan: None,
                enveloped_plan: None,
            },
            Some(c) => Self {
                profile: Profile::from_config(c)?,
                filters: c.filters.clone(),
                masks: c.masks.clone(),
                hashes: c.hashes.clone(),
                derives: c.derives.clone(),
                ignored_fields: c.ignored_fields.clone(),
                max_record_bytes: MAX_RECORD_BYTES,
                redact_secrets: true,
                policy: None,
                aks_profile: None,
                plan: None,
                enveloped_plan: None,
            },
        };
        if config.is_none_or(|c| c.json_path.is_none()) {
            pipeline.aks_profile = Some(pipeline.profile.rooted_at("properties.log"));
        }
        let p = &pipeline;
        let no_rules = p.filters.is_empty()
            && p.masks.is_empty()
            && p.hashes.is_empty()
            && p.derives.is_empty()
            && p.ignored_fields.is_empty();
        if no_rules {
            pipeline.plan = compiled::Plan::compile(&pipeline.profile, false);
            // The default profile reads the event inside the envelope; a config's own `jsonPath` the document
            // (the same plan).
            pipeline.enveloped_plan = if pipeline.aks_profile.is_some() {
                compiled::Plan::compile(&pipeline.profile, true)
            } else {
                pipeline.plan.clone()
            };
        }
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

    /// The generic path only: the compiled path's test oracle, and the benchmarks' "before".
    #[doc(hidden)]
    pub fn generic_only(mut self) -> Self {
        self.plan = None;
        self.enveloped_plan = None;
        self
    }

    /// Lower the per-record limit (tests, or receivers with smaller limits).
    pub fn with_max_record_bytes(mut self, max: usize) -> Self {
        self.max_record_bytes = max.min(MAX_RECORD_BYTES);
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
        let plan = match (&self.policy, pointer) {
            (Some(_), _) => None,
            (None, None) => self.plan.as_ref(),
            (None, Some(_)) => self.enveloped_plan.as_ref(),
        };
        for event in batch.events {
            out.stats.events_in += 1;
            out.stats.bytes_in += payload_len(&event.payload);
            if let (Some(plan), Some(text)) = (plan, event.payload.text()) {
                let ctx = compiled::Context {
                    cluster: &batch.source.cluster,
                    stream: &batch.source.stream,
                    redact_secrets: self.redact_secrets,
                    max_record_bytes: self.max_record_bytes,
                    now_ms,
                    envelope_time_ms: event.envelope_time_ms,
                };
                if let Some(mapped) = plan.map_event(text, pointer, &ctx, seen) {
                    if !seen.first_time_key(mapped.identity) {
                        out.stats.deduplicated += 1;
                        continue;
                    }
                    out.stats.timestamp_fallbacks += u64::from(mapped.timestamp_fallback);
                    out.stats.forwarded += 1;
                    out.records.push(OutRecord {
                        event_id: event.id,
                        json: mapped.json,
                        log_size: mapped.log_size,
                    });
                    continue;
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
            if !rules::passes(&self.filters, &record) {
                out.stats.filtered += 1;
                continue;
            }
            rules::mask(&self.masks, &mut record);
            rules::hash(&self.hashes, &mut record);
            rules::derive(&self.derives, &mut record);
            for field in &self.ignored_fields {
                record.remove(field);
            }
            if !salvaged.is_empty() {
                record.insert("kaf_unparsed".into(), Value::String(salvaged.join(", ")));
            }
            self.finish_record(
                &mut out,
                event.id,
                &mut record,
                time_ms,
                &batch.source,
                !salvaged.is_empty(),
            );
        }
        out.source = batch.source;
        out
    }

    /// The agent fields, the size limit, and the record out; `unparsed` also lists the event in
    /// [`Processed::unparsed`].
    fn finish_record(
        &self,
        out: &mut Processed,
        event_id: String,
        record: &mut Record,
        time_ms: i64,
        source: &Source,
        unparsed: bool,
    ) {
        record.insert("_zl_timestamp".into(), Value::from(time_ms));
        record.insert("s247agentuid".into(), Value::String(source.cluster.clone()));
        record.insert("logstream".into(), Value::String(source.stream.clone()));
        match limits::fit(record, self.max_record_bytes) {
            Ok(true) => out.stats.truncated += 1,
            Ok(false) => {}
            Err(()) => {
                out.stats.oversize_dropped += 1;
                return;
            }
        }
        if unparsed {
            out.unparsed.push(event_id.clone());
        }
        out.stats.forwarded += 1;
        out.records.push(OutRecord::new(event_id, record));
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

fn map(profile: &Profile, doc: &mut Value) -> Record {
    let mut record = Record::new();
    for entry in &profile.entries {
        let Some(Some(value)) = lookup::with_value(doc, &entry.key, |found| {
            field_value(found, entry.value_type)
        }) else {
            continue;
        };
        if let Some(pattern) = &entry.pattern
            && let Some(caps) = pattern.captures(&rules::string_form(&value))
        {
            for name in pattern.capture_names().flatten() {
                if let Some(m) = caps.name(name) {
                    record.insert(name.to_string(), Value::String(m.as_str().to_string()));
                }
            }
            continue;
        }
        record.insert(entry.name.clone(), value);
    }
    record
}

/// The event time from the profile's date field (an output field, else a path under `doc`), `None` when absent,
/// unreadable or implausible.
fn event_time(profile: &Profile, record: &Record, doc: &mut Value, now_ms: i64) -> Option<i64> {
    let field = &profile.date_field;
    let format = &profile.date_format;
    match record.get(field) {
        Some(v) => format.parse_ms(v, now_ms).ok(),
        None => lookup::with_value(doc, field, |v| format.parse_ms(v, now_ms).ok())?,
    }
}

/// The time of an event whose own time is unreadable or implausible: the envelope's (CloudWatch event time,
/// AKS record time) if that is plausible, else the ingest time. Never 0.
pub(crate) fn fallback_time(envelope_time_ms: Option<i64>, now_ms: i64) -> i64 {
    envelope_time_ms
        .filter(|t| kaf_config::plausible_ms(*t, now_ms))
        .unwrap_or(now_ms)
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

/// The identity of an audit event for deduplication: `auditID` and `stage`, plus both timestamps.
///
/// A retried delivery repeats an event byte for byte, so the timestamps match. `auditID` alone is not
/// enough, because it is client-settable (`Audit-ID` header): a client could reuse the ID of an earlier
/// request, and its own request would then be dropped as a repeat. Events without an `auditID` have no
/// identity and are never deduplicated.
pub fn event_identity(event: &Value) -> Option<String> {
    identity_parts(event).map(|[id, stage, received, staged]| {
        format!("{id}\u{0}{stage}\u{0}{received}\u{0}{staged}")
    })
}

/// The four parts of [`event_identity`], borrowed.
fn identity_parts(event: &Value) -> Option<[&str; 4]> {
    let id = event.get("auditID")?.as_str().filter(|s| !s.is_empty())?;
    let text = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or_default();
    Some([
        id,
        text("stage"),
        text("requestReceivedTimestamp"),
        text("stageTimestamp"),
    ])
}

/// Identities seen in one batch (see [`event_identity`]), kept as 128-bit keyed hashes: no allocation per
/// event, and with per-process random keys a client cannot craft a collision to have an event dropped.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    keys: (std::hash::RandomState, std::hash::RandomState),
    seen: std::collections::HashSet<u128>,
}

impl Seen {
    fn first_time(&mut self, doc: &Value) -> bool {
        self.first_time_parts(identity_parts(doc))
    }

    /// `parts`: `auditID`, `stage` and the two timestamps; `None` (no auditID) is never a repeat.
    fn first_time_parts(&mut self, parts: Option<[&str; 4]>) -> bool {
        let key = self.key(parts);
        self.first_time_key(key)
    }

    fn first_time_key(&mut self, key: Option<u128>) -> bool {
        key.is_none_or(|k| self.seen.insert(k))
    }

    pub(crate) fn key(&self, parts: Option<[&str; 4]>) -> Option<u128> {
        use std::hash::{BuildHasher as _, Hasher as _};
        let parts = parts?;
        let hash = |state: &std::hash::RandomState| {
            let mut h = state.build_hasher();
            for part in parts {
                h.write(part.as_bytes());
                // Never part of UTF-8 text: the parts cannot run into each other.
                h.write_u8(0xff);
            }
            h.finish()
        };
        Some((u128::from(hash(&self.keys.0)) << 64) | u128::from(hash(&self.keys.1)))
    }
}

fn payload_len(payload: &Payload) -> u64 {
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
enum Read {
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

fn event_at<'a>(doc: &'a Value, pointer: Option<&str>) -> Option<&'a Value> {
    match pointer {
        None => Some(doc),
        Some(p) => doc.pointer(p),
    }
}

fn event_at_mut<'a>(doc: &'a mut Value, pointer: Option<&str>) -> Option<&'a mut Value> {
    match pointer {
        None => Some(doc),
        Some(p) => doc.pointer_mut(p),
    }
}

fn check_event(event: Option<&Value>) -> Result<(), String> {
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
fn normalize(doc: &mut Value) {
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

/// A looked-up value as a field value: absent for `null` and `""` (kept: `0`, `false`).
fn field_value(found: &Value, value_type: ValueType) -> Option<Value> {
    match (value_type, found) {
        (_, Value::Null) => None,
        (_, Value::String(s)) if s.is_empty() => None,
        (ValueType::JsonObject, Value::Object(map)) => Some(key_value_list(map)),
        (ValueType::JsonObject, Value::String(s)) => match lookup::parse_lenient(s) {
            Some(Value::Object(map)) => Some(key_value_list(&map)),
            _ => Some(found.clone()),
        },
        (_, Value::Object(_) | Value::Array(_)) => Some(Value::String(found.to_string())),
        (_, scalar) => Some(scalar.clone()),
    }
}

fn key_value_list(map: &Map<String, Value>) -> Value {
    Value::Array(
        map.iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                serde_json::json!({"key": k, "value": value})
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
