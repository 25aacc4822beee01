//! Drain mode (`aks-handler drain`): consume the Event Hub directly, for users who run the forwarder as a
//! container or VM service instead of a Function App. Each partition's events go through the same
//! [`settle`](crate::app::settle) as an invocation, and the partition is checkpointed **only after** a batch was
//! delivered completely, or parked; an undelivered batch is retried (the hub keeps it; upload ids are
//! deterministic, so records that did arrive are resent under the same id).
//!
//! What a long-running deployment meets, and what this module does about it:
//! - **Transient failures** (network, 5xx, 429) are retried without limit, with backoff: the hub is the
//!   buffer, for its retention period.
//! - **Refusals for good** (a bad key or log type, a redirect, a quota): after
//!   [`DrainOptions::refused_attempts`] attempts the batch is written to the failover container and
//!   checkpointed past ([`OnRefusal::Park`], the default), or kept blocking the partition
//!   ([`OnRefusal::Block`]) for operators who would rather stall than park.
//! - **Raw text that cannot be parsed** is parked too, after the batch was delivered, before the checkpoint.
//! - **A failing partition** (receive or checkpoint errors) is restarted with backoff; after
//!   [`DrainOptions::restart_limit`] failures in a row without a checkpoint in between, [`supervise`] gives up
//!   and the caller exits non-zero, so the platform restarts the process (and another instance may take the
//!   partition meanwhile).
//! - **Shutdown** (SIGTERM): no new batch is taken; the one in flight may finish within
//!   [`DrainOptions::grace`], and is checkpointed only if it was delivered; otherwise it is abandoned
//!   unchecked, to be received again.
//!
//! The Event Hubs SDK sits behind [`PartitionSource`] and the blob container behind [`FailoverSink`]: this
//! module is tested with in-memory ones; the SDK adapters (`eventhubs`, cargo feature `drain`) are thin.

use crate::app::{State, settle};
use kaf_envelope::azure::{Invocation, body_from_bytes};
use kaf_upload::retry::Backoff;
use std::time::Duration;
use tokio::sync::watch;

/// One received event: its body and where it sits in the partition.
#[derive(Debug, Clone)]
pub struct SourceEvent<T> {
    pub body: Vec<u8>,
    pub sequence_number: Option<i64>,
    /// What the source needs to checkpoint through this event.
    pub token: T,
}

/// A partition to drain. `next_batch` returns `None` when the source is finished (the partition was taken by
/// another instance; tests). No `Send` bound: the SDK's event stream is not `Send`, so partitions run on a
/// local task set.
pub trait PartitionSource {
    type Token;
    fn partition_id(&self) -> String;
    fn next_batch(
        &mut self,
        max_events: usize,
    ) -> impl Future<Output = anyhow::Result<Option<Vec<SourceEvent<Self::Token>>>>>;
    fn checkpoint(&mut self, through: &Self::Token) -> impl Future<Output = anyhow::Result<()>>;
    /// Start receiving afresh after a failure (a new event stream on the same partition).
    fn reopen(&mut self) -> impl Future<Output = anyhow::Result<()>>;
}

/// Where drain mode keeps what it cannot deliver: the failover container.
pub trait FailoverSink {
    /// Store `lines` (NDJSON of failover records) as `name`. A batch always gets the same name, so parking it
    /// again after a crash overwrites the blob instead of adding a second copy.
    fn park(&self, name: &str, lines: &str) -> impl Future<Output = anyhow::Result<()>>;
}

/// What to do with a batch the upload API refuses for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRefusal {
    /// Write it to the failover container and checkpoint past it: nothing is lost, the partition goes on.
    Park,
    /// Keep retrying: the partition stalls (visible in the metrics) until the cause is fixed; past the hub's
    /// retention the events are gone.
    Block,
}

impl OnRefusal {
    /// `DRAIN_ON_PERMANENT_ERROR`: `park` (default) or `block`.
    pub fn from_setting(value: Option<&str>) -> anyhow::Result<Self> {
        match value.map(str::trim) {
            None | Some("") | Some("park") => Ok(Self::Park),
            Some("block") => Ok(Self::Block),
            Some(_) => anyhow::bail!("DRAIN_ON_PERMANENT_ERROR must be park or block"),
        }
    }
}

/// Where a partition with no checkpoint yet starts (`DRAIN_START`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest event the hub still keeps (default): nothing sent before the first start is skipped, at
    /// the cost of forwarding up to the retention period once.
    Earliest,
    /// Only events enqueued after the first start.
    Latest,
}

#[derive(Debug, Clone)]
pub struct DrainOptions {
    pub max_events: usize,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Settle attempts refused for good before [`OnRefusal`] applies (`DRAIN_PERMANENT_ATTEMPTS`).
    pub refused_attempts: u32,
    pub on_refusal: OnRefusal,
    /// Failures in a row, with no checkpoint between them, after which a partition gives up.
    pub restart_limit: u32,
    /// How long the batch in flight may take to finish once shutdown was asked for (`DRAIN_GRACE_SECS`).
    pub grace: Duration,
    pub start_from: StartFrom,
}

impl DrainOptions {
    /// Defaults overridden by `DRAIN_ON_PERMANENT_ERROR` (`park`|`block`), `DRAIN_PERMANENT_ATTEMPTS`
    /// (1–100, default 3), `DRAIN_GRACE_SECS` (1–3600, default 20: below Kubernetes' 30 s) and
    /// `DRAIN_BATCH_EVENTS` (1–1000, default 32; also the prefetch, so it bounds what is buffered too) and
    /// `DRAIN_START` (`earliest`|`latest`); errors name the variable.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let number =
            |name: &str, range: std::ops::RangeInclusive<u64>, default: u64| match var(name)
                .filter(|v| !v.trim().is_empty())
            {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "{name} must be a whole number from {} to {}",
                            range.start(),
                            range.end()
                        )
                    }),
            };
        let defaults = Self::default();
        Ok(Self {
            on_refusal: OnRefusal::from_setting(var("DRAIN_ON_PERMANENT_ERROR").as_deref())?,
            refused_attempts: number("DRAIN_PERMANENT_ATTEMPTS", 1..=100, 3)? as u32,
            grace: Duration::from_secs(number("DRAIN_GRACE_SECS", 1..=3600, 20)?),
            max_events: number("DRAIN_BATCH_EVENTS", 1..=1000, 32)? as usize,
            start_from: match var("DRAIN_START").as_deref().map(str::trim) {
                None | Some("") | Some("earliest") => StartFrom::Earliest,
                Some("latest") => StartFrom::Latest,
                Some(_) => anyhow::bail!("DRAIN_START must be earliest or latest"),
            },
            ..defaults
        })
    }
}

impl Default for DrainOptions {
    fn default() -> Self {
        Self {
            max_events: 32,
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
            refused_attempts: 3,
            on_refusal: OnRefusal::Park,
            restart_limit: 5,
            grace: Duration::from_secs(20),
            start_from: StartFrom::Earliest,
        }
    }
}

/// Counts of one partition, across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainStats {
    pub batches: u64,
    pub checkpoints: u64,
    pub retries: u64,
    /// Batches refused for good and parked, then checkpointed past.
    pub parked_batches: u64,
    /// Batches that were delivered, with raw text parked beside them.
    pub unparsable_parked: u64,
    pub restarts: u64,
    /// Batches given up unchecked at shutdown (they are received again).
    pub abandoned: u64,
    /// Records the batches held (counted once per batch, however often it was retried).
    pub events: u64,
    /// What the settle attempts did, as `serve` counts it.
    pub records_delivered: u64,
    pub secrets_redacted: u64,
    pub policy_dropped: u64,
    pub delivery_failures: u64,
    /// Events per detection rule id, and those not forwarded in detections-only mode.
    pub detections: kaf_pipeline::RuleCounts,
    pub detections_skipped: u64,
    /// Sequence number of the last event checkpointed.
    pub last_checkpoint: Option<i64>,
}

/// Partition and rule labels for the per-rule detection counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct RuleLabel {
    pub partition: String,
    pub rule: String,
}

/// Partition label for the metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct PartitionLabel {
    pub partition: String,
}

type PerPartition<M> = prometheus_client::metrics::family::Family<PartitionLabel, M>;
type Counter = prometheus_client::metrics::counter::Counter;
type Gauge = prometheus_client::metrics::gauge::Gauge;

/// `/metrics` of drain mode: per partition, what [`DrainStats`] counts, and when and where it last
/// checkpointed (lag = the hub's last enqueued sequence number minus the checkpoint, where the SDK says it).
#[derive(Default)]
pub struct DrainMetrics {
    batches: PerPartition<Counter>,
    checkpoints: PerPartition<Counter>,
    retries: PerPartition<Counter>,
    parked_batches: PerPartition<Counter>,
    unparsable_parked: PerPartition<Counter>,
    restarts: PerPartition<Counter>,
    abandoned: PerPartition<Counter>,
    events: PerPartition<Counter>,
    records_delivered: PerPartition<Counter>,
    secrets_redacted: PerPartition<Counter>,
    policy_dropped: PerPartition<Counter>,
    delivery_failures: PerPartition<Counter>,
    detections_skipped: PerPartition<Counter>,
    detections: prometheus_client::metrics::family::Family<RuleLabel, Counter>,
    last_checkpoint_seconds: PerPartition<Gauge>,
    last_checkpoint_sequence: PerPartition<Gauge>,
    last_enqueued_sequence: PerPartition<Gauge>,
    lag: PerPartition<Gauge>,
    registry: prometheus_client::registry::Registry,
}

impl DrainMetrics {
    pub fn new() -> std::sync::Arc<Self> {
        let mut m = Self::default();
        let mut registry = prometheus_client::registry::Registry::with_prefix("kaf_drain");
        let counters: [(&str, &str, &PerPartition<Counter>); 13] = [
            ("batches", "Batches received", &m.batches),
            (
                "checkpoints",
                "Checkpoints written (only after delivery or parking)",
                &m.checkpoints,
            ),
            (
                "retries",
                "Settle attempts of a batch that failed",
                &m.retries,
            ),
            (
                "parked_batches",
                "Batches refused for good, parked in the failover container and checkpointed past",
                &m.parked_batches,
            ),
            (
                "unparsable_parked",
                "Delivered batches whose unparsable raw text was parked",
                &m.unparsable_parked,
            ),
            (
                "restarts",
                "Partition restarts after receive or checkpoint errors",
                &m.restarts,
            ),
            (
                "abandoned",
                "Batches left unchecked at shutdown (received again)",
                &m.abandoned,
            ),
            ("events", "Records received (once per batch)", &m.events),
            (
                "records_delivered",
                "Records accepted by the upload API",
                &m.records_delivered,
            ),
            (
                "secrets_redacted",
                "Secret values replaced by fingerprints",
                &m.secrets_redacted,
            ),
            (
                "policy_dropped",
                "Events dropped by the audit policy",
                &m.policy_dropped,
            ),
            (
                "delivery_failures",
                "Upload requests that failed",
                &m.delivery_failures,
            ),
            (
                "detections_skipped",
                "Events not forwarded in detections-only mode: they raised no detection",
                &m.detections_skipped,
            ),
        ];
        for (name, help, family) in counters {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "detections",
            "Records tagged with a detection rule, by partition and rule id",
            m.detections.clone(),
        );
        registry.register(
            "last_checkpoint_timestamp_seconds",
            "When the partition was last checkpointed (unix seconds)",
            m.last_checkpoint_seconds.clone(),
        );
        registry.register(
            "last_checkpoint_sequence_number",
            "The sequence number the partition was last checkpointed through",
            m.last_checkpoint_sequence.clone(),
        );
        registry.register(
            "last_enqueued_sequence_number",
            "The hub's newest sequence number in the partition (polled)",
            m.last_enqueued_sequence.clone(),
        );
        registry.register(
            "lag_events",
            "Events enqueued after the last checkpoint (polled)",
            m.lag.clone(),
        );
        m.registry = registry;
        std::sync::Arc::new(m)
    }

    /// Publish what changed between two snapshots of a partition's stats.
    pub fn publish(&self, partition: &str, before: &DrainStats, after: &DrainStats) {
        let label = PartitionLabel {
            partition: partition.to_string(),
        };
        let pairs: [(&PerPartition<Counter>, u64, u64); 13] = [
            (&self.batches, before.batches, after.batches),
            (&self.checkpoints, before.checkpoints, after.checkpoints),
            (&self.retries, before.retries, after.retries),
            (
                &self.parked_batches,
                before.parked_batches,
                after.parked_batches,
            ),
            (
                &self.unparsable_parked,
                before.unparsable_parked,
                after.unparsable_parked,
            ),
            (&self.restarts, before.restarts, after.restarts),
            (&self.abandoned, before.abandoned, after.abandoned),
            (&self.events, before.events, after.events),
            (
                &self.records_delivered,
                before.records_delivered,
                after.records_delivered,
            ),
            (
                &self.secrets_redacted,
                before.secrets_redacted,
                after.secrets_redacted,
            ),
            (
                &self.policy_dropped,
                before.policy_dropped,
                after.policy_dropped,
            ),
            (
                &self.delivery_failures,
                before.delivery_failures,
                after.delivery_failures,
            ),
            (
                &self.detections_skipped,
                before.detections_skipped,
                after.detections_skipped,
            ),
        ];
        for (family, was, is) in pairs {
            family.get_or_create(&label).inc_by(is.saturating_sub(was));
        }
        for (rule, is) in after.detections.iter() {
            let was = before.detections.get(rule);
            if is > was {
                self.detections
                    .get_or_create(&RuleLabel {
                        partition: partition.to_string(),
                        rule: rule.to_string(),
                    })
                    .inc_by(is - was);
            }
        }
        if after.checkpoints > before.checkpoints {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.last_checkpoint_seconds
                .get_or_create(&label)
                .set(i64::try_from(now).unwrap_or(i64::MAX));
            if let Some(seq) = after.last_checkpoint {
                self.last_checkpoint_sequence.get_or_create(&label).set(seq);
                self.update_lag(&label);
            }
        }
    }

    /// The hub's newest sequence number in `partition` (the SDK's partition properties, polled).
    pub fn set_last_enqueued(&self, partition: &str, sequence_number: i64) {
        let label = PartitionLabel {
            partition: partition.to_string(),
        };
        self.last_enqueued_sequence
            .get_or_create(&label)
            .set(sequence_number);
        self.update_lag(&label);
    }

    /// Lag is known once both ends are: the newest enqueued and the last checkpointed sequence number.
    fn update_lag(&self, label: &PartitionLabel) {
        let (Some(enqueued), Some(checkpoint)) = (
            self.last_enqueued_sequence.get(label).map(|g| g.get()),
            self.last_checkpoint_sequence.get(label).map(|g| g.get()),
        ) else {
            return;
        };
        self.lag
            .get_or_create(label)
            .set(enqueued.saturating_sub(checkpoint).max(0));
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `GET /healthz` (200 `ok`, 503 once shutting down) and `GET /metrics` (OpenMetrics text).
pub fn router(metrics: std::sync::Arc<DrainMetrics>, shutdown: Shutdown) -> axum::Router {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/healthz",
            get(move || {
                let shutdown = shutdown.clone();
                async move {
                    if shutdown.requested() {
                        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
                    } else {
                        (StatusCode::OK, "ok\n")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
}

/// Shutdown, as the drain loops see it: asked for once, never taken back.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A shutdown and the sender that asks for it.
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    pub fn requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown is asked for (at once if it already was).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// [`drain_partition`] restarted after failures, with backoff; `Err` once [`DrainOptions::restart_limit`]
/// failures came in a row without a checkpoint between them (the caller then exits non-zero).
pub async fn supervise<S: PartitionSource, F: FailoverSink>(
    state: &State,
    source: &mut S,
    sink: &F,
    options: &DrainOptions,
    shutdown: &Shutdown,
    metrics: &DrainMetrics,
) -> anyhow::Result<DrainStats> {
    let mut stats = DrainStats::default();
    let partition = source.partition_id();
    let report = Report {
        metrics,
        partition: &partition,
    };
    let mut backoff = Backoff::new(options.retry_base, options.retry_max);
    let mut failures = 0;
    loop {
        let checkpoints = stats.checkpoints;
        let Err(error) =
            drain_partition(state, source, sink, options, shutdown, &mut stats, &report).await
        else {
            return Ok(stats);
        };
        failures = if stats.checkpoints > checkpoints {
            1
        } else {
            failures + 1
        };
        if failures > options.restart_limit {
            return Err(error.context(format!(
                "partition {partition}: {failures} failures in a row without a checkpoint; giving up"
            )));
        }
        let delay = backoff.next_delay();
        tracing::error!(%partition, error = %format!("{error:#}"), failures, delay_ms = delay.as_millis() as u64, "partition failed; restarting");
        tokio::select! {
            _ = Backoff::wait(delay, None) => {}
            () = shutdown.wait() => return Ok(stats),
        }
        let before = stats.clone();
        stats.restarts += 1;
        report.publish(&before, &stats);
        if let Err(e) = source.reopen().await {
            tracing::error!(%partition, error = %format!("{e:#}"), "reopening the partition failed");
        }
    }
}

/// Drain `source` until it ends or shutdown is asked for. Errors from the source stop it without
/// checkpointing past undelivered events; counts accumulate in `stats`.
pub async fn drain_partition<S: PartitionSource, F: FailoverSink>(
    state: &State,
    source: &mut S,
    sink: &F,
    options: &DrainOptions,
    shutdown: &Shutdown,
    stats: &mut DrainStats,
    report: &Report<'_>,
) -> anyhow::Result<()> {
    let partition = source.partition_id();
    loop {
        let before = stats.clone();
        let result = drain_batch(state, source, sink, options, shutdown, stats, &partition).await;
        report.publish(&before, stats);
        match result? {
            Step::More => {}
            Step::Done => return Ok(()),
        }
    }
}

/// Where [`drain_partition`] publishes its counts.
pub struct Report<'a> {
    metrics: &'a DrainMetrics,
    partition: &'a str,
}

impl Report<'_> {
    fn publish(&self, before: &DrainStats, after: &DrainStats) {
        self.metrics.publish(self.partition, before, after);
    }
}

enum Step {
    More,
    Done,
}

/// `attempt`, run to completion, or once shutdown is asked for (at once if it already was), given until the
/// grace period ends; `None`: cut off.
async fn within_grace<T>(
    attempt: impl Future<Output = T>,
    shutdown: &Shutdown,
    grace: Duration,
) -> Option<T> {
    let mut attempt = std::pin::pin!(attempt);
    if !shutdown.requested() {
        tokio::select! {
            done = &mut attempt => return Some(done),
            () = shutdown.wait() => {}
        }
    }
    tokio::time::timeout(grace, attempt).await.ok()
}

/// One batch: received, settled, checkpointed (or parked, or left for later).
async fn drain_batch<S: PartitionSource, F: FailoverSink>(
    state: &State,
    source: &mut S,
    sink: &F,
    options: &DrainOptions,
    shutdown: &Shutdown,
    stats: &mut DrainStats,
    partition: &str,
) -> anyhow::Result<Step> {
    if shutdown.requested() {
        return Ok(Step::Done);
    }
    let batch = tokio::select! {
        batch = source.next_batch(options.max_events) => batch?,
        () = shutdown.wait() => return Ok(Step::Done),
    };
    let Some(batch) = batch else {
        return Ok(Step::Done);
    };
    let Some(last) = batch.last() else {
        return Ok(Step::More);
    };
    stats.batches += 1;
    let first = batch.first().and_then(|e| e.sequence_number);
    // The same batch always parks under the same name (see `FailoverSink::park`).
    let name = format!(
        "drain/p{partition}/{}-{}.ndjson",
        first.map_or_else(|| "x".into(), |s| s.to_string()),
        last.sequence_number
            .map_or_else(|| "x".into(), |s| s.to_string())
    );
    let invocation = Invocation {
        bodies: batch
            .iter()
            .enumerate()
            .map(|(i, e)| body_from_bytes(i, &e.body))
            .collect(),
        partition_id: Some(partition.to_string()),
        sequence_numbers: batch.iter().map(|e| e.sequence_number).collect(),
    };
    let mut backoff = Backoff::new(options.retry_base, options.retry_max);
    let mut refusals = 0;
    let mut first_attempt = true;
    loop {
        let attempt = settle(state, kaf_envelope::azure::split(invocation.clone()));
        let Some(settled) = within_grace(attempt, shutdown, options.grace).await else {
            stats.abandoned += 1;
            tracing::warn!(%partition, "shutdown: batch in flight abandoned unchecked; it will be received again");
            return Ok(Step::Done);
        };
        let counts = &settled.summary;
        // What the pipeline counts is the same on every attempt; what the upload counts is not.
        if std::mem::take(&mut first_attempt) {
            stats.events += counts.pipeline.events_in;
            stats.secrets_redacted += counts.pipeline.redacted;
            stats.policy_dropped += counts.pipeline.policy_dropped;
            stats.detections_skipped += counts.pipeline.detections_skipped;
            for (rule, n) in counts.pipeline.detections.iter() {
                stats.detections.add(rule, n);
            }
        }
        stats.records_delivered += counts.upload.records_delivered;
        stats.delivery_failures += counts.upload.failed_requests;
        let delivered = settled.undelivered == 0;
        let refused_only = !delivered && settled.refused == settled.undelivered;
        refusals = if refused_only { refusals + 1 } else { 0 };
        let park = !delivered
            && refusals >= options.refused_attempts
            && options.on_refusal == OnRefusal::Park;
        if delivered || park {
            // What is parked now: raw text beside a delivered batch, or the refused records.
            if !settled.failover.is_empty() {
                sink.park(&name, &settled.failover).await?;
                if park {
                    stats.parked_batches += 1;
                    tracing::error!(%partition, records = settled.undelivered, blob = %name, "batch refused for good; parked in the failover container and checkpointed past");
                } else {
                    stats.unparsable_parked += 1;
                }
            }
            source.checkpoint(&last.token).await?;
            stats.checkpoints += 1;
            stats.last_checkpoint = last.sequence_number.or(stats.last_checkpoint);
            return Ok(Step::More);
        }
        if shutdown.requested() {
            stats.abandoned += 1;
            return Ok(Step::Done);
        }
        stats.retries += 1;
        let delay = backoff.next_delay();
        tracing::warn!(%partition, undelivered = settled.undelivered, refused = settled.refused, attempt = backoff.attempts(), delay_ms = delay.as_millis() as u64, "batch not delivered, retrying before any checkpoint");
        tokio::select! {
            _ = Backoff::wait(delay, None) => {}
            () = shutdown.wait() => {
                stats.abandoned += 1;
                return Ok(Step::Done);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kaf_testkit::fixtures;
    use kaf_testkit::payloads::{aks_record, event_hub_body};
    use kaf_testkit::receiver::{Fault, Receiver};
    use std::collections::{BTreeMap, VecDeque};
    use std::sync::{Arc, Mutex};

    pub(crate) const KEY: &str = "drain-key";

    /// An in-memory partition; `log` records "checkpoint <seq> after <n> delivered" in order. `failures`
    /// receive errors come first.
    pub(crate) struct MemorySource {
        batches: VecDeque<Vec<SourceEvent<i64>>>,
        pub(crate) checkpoints: Vec<i64>,
        log: Arc<Mutex<Vec<String>>>,
        rx: Arc<Receiver>,
        failures: u32,
        reopened: u32,
    }

    impl MemorySource {
        pub(crate) fn new(rx: &Arc<Receiver>, batches: VecDeque<Vec<SourceEvent<i64>>>) -> Self {
            Self {
                batches,
                checkpoints: Vec::new(),
                log: Arc::default(),
                rx: rx.clone(),
                failures: 0,
                reopened: 0,
            }
        }
    }

    impl PartitionSource for MemorySource {
        type Token = i64;
        fn partition_id(&self) -> String {
            "3".into()
        }
        async fn next_batch(
            &mut self,
            _max: usize,
        ) -> anyhow::Result<Option<Vec<SourceEvent<i64>>>> {
            if self.failures > 0 {
                self.failures -= 1;
                anyhow::bail!("link detached");
            }
            Ok(self.batches.pop_front())
        }
        async fn checkpoint(&mut self, through: &i64) -> anyhow::Result<()> {
            // What the receiver holds at the moment of the checkpoint.
            let delivered = self.rx.records().len();
            self.log
                .lock()
                .unwrap()
                .push(format!("checkpoint {through} after {delivered} delivered"));
            self.checkpoints.push(*through);
            Ok(())
        }
        async fn reopen(&mut self) -> anyhow::Result<()> {
            self.reopened += 1;
            Ok(())
        }
    }

    /// The failover container, in memory: blob name → content.
    #[derive(Default)]
    struct MemorySink(Mutex<BTreeMap<String, String>>);

    impl FailoverSink for MemorySink {
        async fn park(&self, name: &str, lines: &str) -> anyhow::Result<()> {
            self.0.lock().unwrap().insert(name.into(), lines.into());
            Ok(())
        }
    }

    impl MemorySink {
        fn blobs(&self) -> BTreeMap<String, String> {
            self.0.lock().unwrap().clone()
        }
    }

    pub(crate) fn state(rx: &Receiver) -> State {
        let config = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            serde_json::json!({"apiKey": KEY, "logType": "t", "uploadDomain": rx.upload_domain()})
                .to_string(),
        );
        let env: Vec<(String, String)> = [
            ("logTypeConfig", config),
            ("UPLOAD_CA_FILE", rx.ca_file.display().to_string()),
            ("HANDLER_DEADLINE_SECS", "1".into()),
            ("UPLOAD_BACKOFF_BASE_MS", "10".into()),
            ("UPLOAD_BACKOFF_MAX_MS", "50".into()),
            ("DEADLINE_SAFETY_MARGIN_MS", "100".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        State::from_env(&env).unwrap()
    }

    /// Two batches of real events as AKS bodies, sequence numbers 101..=104.
    pub(crate) fn batches() -> (VecDeque<Vec<SourceEvent<i64>>>, usize) {
        let events = fixtures::events(&fixtures::audit2rbac_demo());
        let bodies: Vec<String> = events
            .chunks(10)
            .map(|chunk| {
                event_hub_body(
                    &chunk
                        .iter()
                        .map(|e| aks_record("kube-audit", "c1", e))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let mut seq = 100;
        let mut out = VecDeque::new();
        for pair in bodies.chunks(2) {
            out.push_back(
                pair.iter()
                    .map(|b| {
                        seq += 1;
                        SourceEvent {
                            body: b.clone().into_bytes(),
                            sequence_number: Some(seq),
                            token: seq,
                        }
                    })
                    .collect(),
            );
        }
        (out, events.len())
    }

    pub(crate) fn options() -> DrainOptions {
        DrainOptions {
            retry_base: Duration::from_millis(10),
            retry_max: Duration::from_millis(50),
            refused_attempts: 2,
            grace: Duration::from_secs(5),
            ..DrainOptions::default()
        }
    }

    pub(crate) fn quota() -> Fault {
        Fault::Headers(200, vec![("LOG_LICENSE_EXCEEDS".into(), "True".into())])
    }

    /// [`supervise`] with the tests' state and options, never shut down: until the source ends or fails.
    pub(crate) async fn drain_until_done<F: FailoverSink>(
        rx: &Receiver,
        source: &mut MemorySource,
        sink: &F,
        metrics: &DrainMetrics,
    ) -> anyhow::Result<DrainStats> {
        supervise(&state(rx), source, sink, &options(), &running(), metrics).await
    }

    pub(crate) fn running() -> Shutdown {
        let (tx, shutdown) = Shutdown::new();
        std::mem::forget(tx);
        shutdown
    }

    #[tokio::test]
    async fn checkpoints_follow_delivery_and_an_outage_delays_them_without_loss() {
        let rx = Arc::new(Receiver::start(KEY, "t").await);
        // The first batch meets an outage longer than one settle deadline.
        rx.push_faults(std::iter::repeat_n(Fault::Status(503), 40));
        let (batches, events) = batches();
        let mut source = MemorySource::new(&rx, batches);
        let sink = MemorySink::default();
        let stats = drain_until_done(&rx, &mut source, &sink, &DrainMetrics::new())
            .await
            .unwrap();
        assert!(stats.retries >= 1, "{stats:?}");
        assert_eq!((stats.batches, stats.checkpoints), (2, 2));
        assert_eq!(source.checkpoints, vec![102, 104]);
        assert_eq!(stats.last_checkpoint, Some(104));
        // Each checkpoint came after its batch's records had arrived (20 then all 37).
        assert_eq!(
            *source.log.lock().unwrap(),
            vec![
                "checkpoint 102 after 20 delivered".to_string(),
                format!("checkpoint 104 after {events} delivered")
            ]
        );
        assert_eq!(rx.records().len(), events);
        assert!(sink.blobs().is_empty());
        assert_eq!(rx.violations(), Vec::<String>::new());
        // Events once per batch despite the retries; every record delivered at least once; the outage's
        // failed requests counted.
        assert_eq!(stats.events, events as u64);
        assert!(stats.records_delivered >= events as u64, "{stats:?}");
        assert!(stats.delivery_failures >= 1, "{stats:?}");
    }

    /// Regression: a 401/403/quota refusal was retried like an outage, without limit, until the hub's
    /// retention turned "blocked" into "lost".
    #[tokio::test]
    async fn a_refused_batch_is_parked_after_n_attempts_and_checkpointed_past() {
        let rx = Arc::new(Receiver::start(KEY, "t").await);
        rx.set_always(Some(quota()));
        let (batches, events) = batches();
        let mut source = MemorySource::new(&rx, batches);
        let sink = MemorySink::default();
        let metrics = DrainMetrics::new();
        let stats = drain_until_done(&rx, &mut source, &sink, &metrics)
            .await
            .unwrap();
        assert_eq!((stats.parked_batches, stats.checkpoints), (2, 2));
        // The hub's newest sequence number (polled from the SDK) against the last checkpoint: the lag.
        metrics.set_last_enqueued("3", 110);
        let text = metrics.render();
        for line in [
            "kaf_drain_lag_events{partition=\"3\"} 6",
            "kaf_drain_last_enqueued_sequence_number{partition=\"3\"} 110",
            "kaf_drain_records_delivered_total{partition=\"3\"} 0",
            "kaf_drain_parked_batches_total{partition=\"3\"} 2",
            "kaf_drain_checkpoints_total{partition=\"3\"} 2",
            "kaf_drain_last_checkpoint_sequence_number{partition=\"3\"} 104",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        assert_eq!(source.checkpoints, vec![102, 104]);
        let blobs = sink.blobs();
        assert_eq!(
            blobs.keys().collect::<Vec<_>>(),
            ["drain/p3/101-102.ndjson", "drain/p3/103-104.ndjson"]
        );
        let lines: Vec<kaf_envelope::failover::FailoverRecord> = blobs
            .values()
            .flat_map(|text| {
                text.lines()
                    .map(|l| kaf_envelope::failover::FailoverRecord::parse_line(l).unwrap())
            })
            .collect();
        assert_eq!(lines.len(), events);
        assert!(lines.iter().all(|l| l.class == "quota" && l.version == 1));
        // Two attempts per batch, then parked: no unbounded retries.
        assert_eq!(stats.retries, 2);
    }

    /// `DRAIN_ON_PERMANENT_ERROR=block`: the partition waits for the cause to be fixed, never checkpointing.
    #[tokio::test]
    async fn block_keeps_a_refused_batch_unchecked_until_shutdown() {
        let rx = Arc::new(Receiver::start(KEY, "t").await);
        rx.set_always(Some(quota()));
        let (batches, _) = batches();
        let mut source = MemorySource::new(&rx, batches);
        let sink = MemorySink::default();
        let (stop, shutdown) = Shutdown::new();
        let watcher = {
            let rx = rx.clone();
            tokio::spawn(async move {
                kaf_testkit::wait_for(Duration::from_secs(10), "several refusals", || {
                    (rx.attempts().len() >= 6).then_some(())
                })
                .await;
                stop.send(true).unwrap();
            })
        };
        let options = DrainOptions {
            on_refusal: OnRefusal::Block,
            ..options()
        };
        let stats = supervise(
            &state(&rx),
            &mut source,
            &sink,
            &options,
            &shutdown,
            &DrainMetrics::new(),
        )
        .await
        .unwrap();
        watcher.await.unwrap();
        assert!(source.checkpoints.is_empty());
        assert!(sink.blobs().is_empty());
        assert_eq!(stats.abandoned, 1);
        assert!(stats.retries >= 5, "{stats:?}");
    }

    #[tokio::test]
    async fn raw_text_is_parked_beside_a_delivered_batch_before_the_checkpoint() {
        let rx = Arc::new(Receiver::start(KEY, "t").await);
        let (mut batches, _) = batches();
        batches[0].push(SourceEvent {
            body: b"\x00 not json".to_vec(),
            sequence_number: Some(103),
            token: 103,
        });
        let mut source = MemorySource::new(&rx, batches);
        let sink = MemorySink::default();
        let stats = drain_until_done(&rx, &mut source, &sink, &DrainMetrics::new())
            .await
            .unwrap();
        assert_eq!(source.checkpoints, vec![103, 104]);
        assert_eq!(stats.unparsable_parked, 1);
        let parked = &sink.blobs()["drain/p3/101-103.ndjson"];
        let record =
            kaf_envelope::failover::FailoverRecord::parse_line(parked.lines().next().unwrap())
                .unwrap();
        assert_eq!(record.class, "unparsable");
        assert_eq!(
            serde_json::from_str::<String>(record.record.get()).unwrap(),
            "\u{0} not json"
        );
    }

    /// Regression: a receive error ended the partition's task for good while the process kept ownership.
    #[tokio::test]
    async fn a_failing_partition_is_restarted_and_one_that_keeps_failing_gives_up() {
        let rx = Arc::new(Receiver::start(KEY, "t").await);
        let (batches, events) = batches();
        let mut source = MemorySource::new(&rx, batches.clone());
        source.failures = 3;
        let sink = MemorySink::default();
        let stats = drain_until_done(&rx, &mut source, &sink, &DrainMetrics::new())
            .await
            .unwrap();
        assert_eq!((stats.restarts, source.reopened), (3, 3));
        assert_eq!(source.checkpoints, vec![102, 104]);
        assert_eq!(rx.records().len(), events);

        let mut broken = MemorySource::new(&rx, batches);
        broken.failures = u32::MAX;
        let err = supervise(
            &state(&rx),
            &mut broken,
            &sink,
            &options(),
            &running(),
            &DrainMetrics::new(),
        )
        .await
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("6 failures in a row"),
            "{err:#}"
        );
        assert!(broken.checkpoints.is_empty());
    }

    /// Regression: SIGTERM abandoned the batch in flight. It now gets the grace period: finished and
    /// checkpointed if it can be, else left unchecked (received again); no new batch is taken.
    #[tokio::test]
    async fn shutdown_finishes_the_batch_in_flight_within_the_grace_period_or_leaves_it_unchecked()
    {
        for (grace, finished) in [
            (Duration::from_secs(10), true),
            (Duration::from_millis(200), false),
        ] {
            let rx = Arc::new(Receiver::start(KEY, "t").await);
            // The first upload is slow: shutdown arrives while it is in flight.
            rx.push_faults([Fault::SlowAccept(Duration::from_millis(600))]);
            let (batches, _) = batches();
            let mut source = MemorySource::new(&rx, batches);
            let sink = MemorySink::default();
            let (stop, shutdown) = Shutdown::new();
            let watcher = {
                let rx = rx.clone();
                tokio::spawn(async move {
                    kaf_testkit::wait_for(Duration::from_secs(10), "an upload in flight", || {
                        (!rx.attempts().is_empty()).then_some(())
                    })
                    .await;
                    stop.send(true).unwrap();
                })
            };
            let options = DrainOptions { grace, ..options() };
            let stats = supervise(
                &state(&rx),
                &mut source,
                &sink,
                &options,
                &shutdown,
                &DrainMetrics::new(),
            )
            .await
            .unwrap();
            watcher.await.unwrap();
            assert_eq!(stats.batches, 1, "no batch taken after shutdown");
            if finished {
                assert_eq!(source.checkpoints, vec![102]);
            } else {
                assert!(source.checkpoints.is_empty());
                assert_eq!(stats.abandoned, 1);
            }
        }
    }

    #[test]
    fn settings_are_read_and_bad_ones_named() {
        let options = DrainOptions::from_env(|k| match k {
            "DRAIN_ON_PERMANENT_ERROR" => Some("block".into()),
            "DRAIN_PERMANENT_ATTEMPTS" => Some("7".into()),
            "DRAIN_GRACE_SECS" => Some("25".into()),
            "DRAIN_START" => Some("latest".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            (
                options.on_refusal,
                options.refused_attempts,
                options.grace,
                options.start_from
            ),
            (
                OnRefusal::Block,
                7,
                Duration::from_secs(25),
                StartFrom::Latest
            )
        );
        let defaults = DrainOptions::from_env(|_| None).unwrap();
        assert_eq!(
            (
                defaults.on_refusal,
                defaults.refused_attempts,
                defaults.start_from
            ),
            (OnRefusal::Park, 3, StartFrom::Earliest)
        );
        for (name, value) in [
            ("DRAIN_ON_PERMANENT_ERROR", "drop"),
            ("DRAIN_PERMANENT_ATTEMPTS", "0"),
            ("DRAIN_GRACE_SECS", "soon"),
            ("DRAIN_START", "yesterday"),
        ] {
            let err =
                DrainOptions::from_env(|k| (k == name).then(|| value.to_string())).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[tokio::test]
    async fn healthz_turns_503_at_shutdown_and_metrics_are_openmetrics() {
        use tower::ServiceExt as _;
        let (stop, shutdown) = Shutdown::new();
        let app = router(DrainMetrics::new(), shutdown);
        let get = |path: &str| {
            axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let health = app.clone().oneshot(get("/healthz")).await.unwrap();
        assert_eq!(health.status(), 200);
        let metrics = app.clone().oneshot(get("/metrics")).await.unwrap();
        assert!(
            metrics.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        stop.send(true).unwrap();
        assert_eq!(app.oneshot(get("/healthz")).await.unwrap().status(), 503);
    }
}
