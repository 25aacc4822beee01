//! The custom handler's HTTP side. `GET` anything answers (the host polls `GET /` for readiness); `POST
//! /<Function>` is an invocation: Event Hub bodies → records per category → pipeline → upload.
//!
//! The Functions host checkpoints whether or not an invocation fails, so delivery is settled here: uploads
//! are retried until the deadline, and whatever is still undelivered goes back in `Outputs.failover` (the
//! blob output binding) as NDJSON of [`FailoverRecord`]s, secrets redacted; so does the raw text of what
//! could not be parsed, and a whole invocation over `MAX_INVOCATION_BYTES`. The answer is always 200 with a
//! JSON body, whose `Logs` hold one summary line.

use crate::routes::Routes;
use axum::Router;
use axum::body::Body;
use axum::extract::State as AxumState;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use kaf_envelope::azure::{self, Split};
use kaf_envelope::failover::FailoverRecord;
use kaf_upload::{Summary, UploadSettings};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct State {
    pub routes: Routes,
    /// How long an invocation may keep retrying uploads (keep it below `functionTimeout`).
    pub deadline: Duration,
    /// The trigger's binding name in function.json.
    pub binding: String,
    pub redact: bool,
    /// Largest invocation body parsed; a larger one is parked whole (`MAX_INVOCATION_BYTES`).
    pub max_invocation_bytes: usize,
}

/// The largest body the Functions host can send: `maxEventBatchSize` events of up to 1 MiB each (Event Hubs
/// Standard and Premium), each JSON-encoded twice more by the host (`Data.events` is a string of an array
/// of strings; quotes and backslashes double at each level, so allow four times), plus the metadata.
pub fn default_invocation_limit(max_event_batch_size: usize) -> usize {
    max_event_batch_size
        .saturating_mul(4 << 20)
        .saturating_add(1 << 20)
}

/// `extensions.eventHubs.maxEventBatchSize` of the app's `host.json` (the host starts the handler in the app
/// root), else the extension's default, 100.
fn max_event_batch_size() -> usize {
    std::fs::read("host.json")
        .ok()
        .and_then(|text| serde_json::from_slice::<Value>(&text).ok())
        .and_then(|host| {
            host.pointer("/extensions/eventHubs/maxEventBatchSize")?
                .as_u64()
        })
        .map_or(100, |n| n as usize)
}

impl State {
    pub fn from_env(env: &[(String, String)]) -> anyhow::Result<Self> {
        let var = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.trim().is_empty())
        };
        let settings = UploadSettings {
            user_agent: format!("kube-audit-forwarder-aks/{}", env!("CARGO_PKG_VERSION")),
            ..UploadSettings::from_env(var)?
        };
        let options = kaf_pipeline::Options::from_env(var).map_err(anyhow::Error::msg)?;
        for warning in options.warnings() {
            tracing::warn!(%warning, "configuration");
        }
        let deadline_secs: u64 = match var("HANDLER_DEADLINE_SECS") {
            None => 240,
            Some(v) => v
                .trim()
                .parse()
                .ok()
                .filter(|s| (1..=3600).contains(s))
                .ok_or_else(|| anyhow::anyhow!("HANDLER_DEADLINE_SECS must be 1–3600 seconds"))?,
        };
        let max_invocation_bytes = match var("MAX_INVOCATION_BYTES") {
            None => default_invocation_limit(max_event_batch_size()),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1 << 20)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "MAX_INVOCATION_BYTES must be a whole number of bytes, at least 1048576"
                    )
                })?,
        };
        Ok(Self {
            routes: Routes::from_env(env, &settings, &options)?,
            deadline: Duration::from_secs(deadline_secs),
            binding: var("EVENTS_BINDING").unwrap_or_else(|| "events".into()),
            redact: options.redact_secrets,
            max_invocation_bytes,
        })
    }
}

pub fn app(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(ready))
        .route("/{function}", post(invoke).get(ready))
        .fallback(ready)
        // The body is read in `invoke`, against `max_invocation_bytes`: axum's 2 MiB default would answer
        // 413, and the host would then checkpoint past the whole batch.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

async fn ready() -> &'static str {
    "ready"
}

fn respond(outputs: Map<String, Value>, log: String) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"Outputs": outputs, "Logs": [log], "ReturnValue": null}).to_string(),
    )
}

async fn invoke(
    AxumState(state): AxumState<Arc<State>>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> impl IntoResponse {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let body = match read_body(body, length, state.max_invocation_bytes).await {
        Ok(body) => body,
        Err(e) => {
            // The host went away mid-request: it will redeliver; nothing was checkpointed by this answer.
            tracing::error!(error = %e, "invocation body not read");
            return respond(
                Map::new(),
                format!("kube-audit-forwarder: invocation body not read: {e}"),
            );
        }
    };
    if body.len() > state.max_invocation_bytes {
        // Still answered 200 with the content parked: a refusal would lose the batch (the host checkpoints).
        let reason = format!(
            "invocation of {} bytes is over MAX_INVOCATION_BYTES ({}); parked unread",
            body.len(),
            state.max_invocation_bytes
        );
        tracing::error!(%reason, "invocation parked in the failover output");
        let text = String::from_utf8_lossy(&body);
        let line = FailoverRecord::raw_text(&reason, "", "invocation", &text).to_line();
        let mut outputs = Map::new();
        outputs.insert("failover".into(), Value::String(line));
        return respond(
            outputs,
            format!(
                "kube-audit-forwarder {}",
                json!({"parked": 1, "oversizeInvocationBytes": body.len()})
            ),
        );
    }
    let split = azure::split_request(body, &state.binding);
    let split = match split {
        Ok(split) => split,
        Err(e) => {
            tracing::error!(error = %e, "invocation not understood");
            return respond(
                Map::new(),
                format!("kube-audit-forwarder: invocation not understood: {e}"),
            );
        }
    };
    let settled = settle(&state, split).await;
    if settled.parked > 0 {
        tracing::warn!(
            parked = settled.parked,
            undelivered = settled.undelivered,
            "records parked in the failover output"
        );
    }
    let mut outputs = Map::new();
    if !settled.failover.is_empty() {
        outputs.insert("failover".into(), Value::String(settled.failover));
    }
    respond(outputs, settled.log)
}

/// The whole request body in one buffer sized from `Content-Length` (capped at `limit`; a body that
/// outgrows it just keeps growing), so a 50 MB invocation takes 50 MB, not the 2× of collecting chunks and
/// joining them.
async fn read_body(
    body: Body,
    length: Option<usize>,
    limit: usize,
) -> Result<Vec<u8>, axum::Error> {
    use http_body_util::BodyExt as _;
    let mut body = body;
    let mut out = Vec::with_capacity(length.unwrap_or(0).min(limit.saturating_add(1)));
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// What [`settle`] made of one batch of Event Hub bodies.
pub struct Settled {
    /// One line for the invocation log: every count, no content.
    pub log: String,
    /// NDJSON of [`FailoverRecord`]s: records not delivered (secrets redacted), and the raw text of what
    /// could not be parsed; empty when there is neither.
    pub failover: String,
    /// Lines in `failover`.
    pub parked: u64,
    /// Records whose delivery failed (drain mode retries the batch while this is not 0).
    pub undelivered: u64,
    /// Of those, the ones refused for good (configuration: bad key, log type, a redirect; quota), which
    /// retrying now will not deliver.
    pub refused: u64,
    /// The pipeline and upload counts behind `log` (drain mode's metrics).
    pub summary: Summary,
}

/// Deliver every record of `split` before the deadline, per category; whatever is still undelivered,
/// and the raw text of whatever could not be parsed, comes back as failover lines. Shared by the Functions
/// handler and drain mode.
pub async fn settle(state: &State, split: Split) -> Settled {
    let started = Instant::now();
    let Split {
        groups,
        stats: records,
        bodies,
    } = split;
    let deadline = tokio::time::Instant::now() + state.deadline;
    let mut summary = Summary::default();
    let mut unconfigured: BTreeMap<String, u64> = BTreeMap::new();
    let mut failover = String::new();
    let (mut parked, mut undelivered, mut refused) = (0u64, 0u64, 0u64);

    for bad in &records.bad_bodies {
        tracing::warn!(body = bad.index, bytes = bad.bytes, reason = %bad.reason, "event body not readable; parked");
        failover.push_str(&FailoverRecord::raw_text(&bad.reason, "", &bad.id, &bad.text).to_line());
        parked += 1;
    }
    for group in groups {
        let Some(target) = state.routes.get(&group.category) else {
            *unconfigured.entry(group.category).or_default() += group.batch.events.len() as u64;
            continue;
        };
        let forwarded = target
            .uploader
            .forward(&target.pipeline, group.batch, now_ms(), deadline)
            .await;
        summary.pipeline += forwarded.pipeline;
        summary.upload += forwarded.sink;
        for reject in &forwarded.rejects {
            tracing::warn!(event_id = %reject.event_id, reason = %reject.reason, "record not forwarded as it came");
        }
        let mut done = std::collections::HashSet::new();
        for failed in &forwarded.failed {
            for id in &failed.event_ids {
                let Some(text) = group.records.get(id) else {
                    continue;
                };
                let record = parked_record(text, state.redact);
                match FailoverRecord::new(
                    failed.error.to_string(),
                    failed.error.class(),
                    &group.category,
                    id,
                    record,
                ) {
                    Ok(line) => failover.push_str(&line.to_line()),
                    Err(e) => {
                        tracing::error!(event_id = %id, error = %e, "failover line not written")
                    }
                }
                done.insert(id.as_str());
                parked += 1;
                undelivered += 1;
                refused += u64::from(failed.error.class() != "transient");
            }
        }
        // Forwarded with placeholders or as an unparsed record: the raw text is kept here, where it is safe.
        for id in forwarded
            .unparsed
            .iter()
            .filter(|id| !done.contains(id.as_str()))
        {
            let Some(text) = group.records.get(id) else {
                continue;
            };
            match FailoverRecord::new(
                "the audit event could not be parsed whole; forwarded as an unparsed record, raw text kept here",
                "unparsable",
                &group.category,
                id,
                text.to_string(),
            ) {
                Ok(line) => failover.push_str(&line.to_line()),
                Err(e) => tracing::error!(event_id = %id, error = %e, "failover line not written"),
            }
            parked += 1;
        }
    }
    summary.duration_ms = started.elapsed().as_millis() as u64;

    let mut line = match serde_json::to_value(&summary) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    line.insert("bodies".into(), json!(bodies));
    line.insert(
        "badBodies".into(),
        json!(
            records
                .bad_bodies
                .iter()
                .map(|b| b.index)
                .collect::<Vec<_>>()
        ),
    );
    line.insert("records".into(), json!(records.records));
    line.insert("notRecords".into(), json!(records.not_records));
    line.insert("unconfiguredCategories".into(), json!(unconfigured));
    line.insert("parked".into(), json!(parked));
    line.insert("undelivered".into(), json!(undelivered));
    let log = format!("kube-audit-forwarder {}", Value::Object(line));
    tracing::info!("{log}");
    Settled {
        log,
        failover,
        parked,
        undelivered,
        refused,
        summary,
    }
}

/// A record as it is parked: its audit event parsed and (with redaction on) redacted, so replaying the
/// failover forwards fingerprints, never secrets. A record whose event cannot be parsed is kept as it came.
fn parked_record(text: &str, redact: bool) -> String {
    let Ok(mut record) = serde_json::from_str::<Value>(text) else {
        return text.to_string();
    };
    if let Some(log) = record.pointer_mut(azure::EVENT_POINTER) {
        if let Value::String(line) = log
            && let Some(parsed @ Value::Object(_)) =
                kaf_pipeline::lookup::parse_lenient(line.trim_end())
        {
            *log = parsed;
        }
        if redact && log.is_object() {
            kaf_pipeline::redact::redact_event(log);
        }
    }
    record.to_string()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
