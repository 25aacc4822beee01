//! The custom handler's HTTP side. `GET` anything answers (the host polls `GET /` for readiness); `POST
//! /<Function>` is an invocation: Event Hub bodies → records per category → pipeline → upload.
//!
//! The Functions host checkpoints whether or not an invocation fails, so delivery is settled here: uploads
//! are retried until the deadline, and whatever is still undelivered goes back in `Outputs.failover` (the
//! blob output binding) as NDJSON, one `{"reason", "class", "category", "eventId", "record"}` per record, with
//! secrets redacted. The answer is always 200 with a JSON body, whose `Logs` hold one summary line.

use crate::routes::Routes;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use kaf_envelope::azure::{self, Invocation, RecordStats};
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
        Ok(Self {
            routes: Routes::from_env(env, &settings, &options)?,
            deadline: Duration::from_secs(deadline_secs),
            binding: var("EVENTS_BINDING").unwrap_or_else(|| "events".into()),
            redact: options.redact_secrets,
        })
    }
}

pub fn app(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(ready))
        .route("/{function}", post(invoke).get(ready))
        .fallback(ready)
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

async fn invoke(AxumState(state): AxumState<Arc<State>>, body: Bytes) -> impl IntoResponse {
    let invocation = match Invocation::parse(&body, &state.binding) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "invocation not understood");
            return respond(
                Map::new(),
                format!("kube-audit-forwarder: invocation not understood: {e}"),
            );
        }
    };
    let settled = settle(&state, &invocation).await;
    if settled.parked > 0 {
        tracing::warn!(
            parked = settled.parked,
            "records parked in the failover output"
        );
    }
    let mut outputs = Map::new();
    if !settled.failover.is_empty() {
        outputs.insert("failover".into(), Value::String(settled.failover));
    }
    respond(outputs, settled.log)
}

/// What [`settle`] made of one batch of Event Hub bodies.
pub struct Settled {
    /// One line for the invocation log: every count, no content.
    pub log: String,
    /// NDJSON of the records that could not be delivered (secrets redacted); empty when all were.
    pub failover: String,
    pub parked: u64,
}

/// Deliver every record of `invocation` before the deadline, per category; whatever is still undelivered
/// comes back as failover lines. Shared by the Functions handler and drain mode.
pub async fn settle(state: &State, invocation: &Invocation) -> Settled {
    let started = Instant::now();
    let mut records = RecordStats::default();
    let groups = azure::batches(invocation, &mut records);
    let bad_bodies: Vec<usize> = invocation
        .bodies
        .iter()
        .filter_map(|b| b.as_ref().err().map(|bad| bad.index))
        .collect();
    let deadline = tokio::time::Instant::now() + state.deadline;
    let mut summary = Summary::default();
    let mut unconfigured: BTreeMap<String, u64> = BTreeMap::new();
    let mut failover = String::new();
    let mut parked = 0u64;

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
        summary.upload += forwarded.upload;
        for reject in &forwarded.rejects {
            tracing::warn!(event_id = %reject.event_id, reason = %reject.reason, "record not forwarded");
        }
        for failed in &forwarded.failed {
            for id in &failed.event_ids {
                let Some(record) = group.records.get(id) else {
                    continue;
                };
                let mut record = record.clone();
                if state.redact
                    && let Some(event) = record.pointer_mut(azure::EVENT_POINTER)
                {
                    kaf_pipeline::redact::redact_event(event);
                }
                let line = json!({"reason": failed.error.to_string(), "class": failed.error.class(),
                                  "category": group.category, "eventId": id, "record": record});
                failover.push_str(&line.to_string());
                failover.push('\n');
                parked += 1;
            }
        }
    }
    summary.duration_ms = started.elapsed().as_millis() as u64;

    let mut line = match serde_json::to_value(summary) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    line.insert("bodies".into(), json!(invocation.bodies.len()));
    line.insert("badBodies".into(), json!(bad_bodies));
    line.insert("records".into(), json!(records.records));
    line.insert("notRecords".into(), json!(records.not_records));
    line.insert("unconfiguredCategories".into(), json!(unconfigured));
    line.insert("parked".into(), json!(parked));
    let log = format!("kube-audit-forwarder {}", Value::Object(line));
    tracing::info!("{log}");
    Settled {
        log,
        failover,
        parked,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
