//! `/metrics`: the service's counters in the Prometheus text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    pub class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

#[derive(Default)]
pub struct Metrics {
    pub requests: Family<CodeLabel, Counter>,
    pub events_spooled: Counter,
    pub events_duplicate: Counter,
    pub records_delivered: Counter,
    pub events_rejected: Counter,
    pub secrets_redacted: Counter,
    pub policy_dropped: Counter,
    pub detections: Family<RuleLabel, Counter>,
    pub detections_skipped: Counter,
    pub delivery_failures: Family<ClassLabel, Counter>,
    pub spool_bytes: Gauge,
    pub spool_events: Gauge,
    pub spool_segments: Gauge,
    pub events_unparsed: Counter,
    pub connections_open: Gauge,
    pub connections_evicted: Counter,
    pub accept_errors: Counter,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Self::default();
        let mut registry = Registry::with_prefix("kaf");
        registry.register(
            "webhook_requests",
            "Webhook requests by HTTP status",
            m.requests.clone(),
        );
        registry.register(
            "events_spooled",
            "Audit events written to the spool",
            m.events_spooled.clone(),
        );
        registry.register(
            "events_duplicate",
            "Audit events dropped as repeats of a spooled or delivered (auditID, stage)",
            m.events_duplicate.clone(),
        );
        registry.register(
            "records_delivered",
            "Records accepted by the upload API",
            m.records_delivered.clone(),
        );
        registry.register(
            "events_rejected",
            "Spooled items that were JSON but not audit events",
            m.events_rejected.clone(),
        );
        registry.register(
            "secrets_redacted",
            "Secret values replaced by fingerprints",
            m.secrets_redacted.clone(),
        );
        registry.register(
            "policy_dropped",
            "Events the forwarder-side audit policy dropped",
            m.policy_dropped.clone(),
        );
        registry.register(
            "detections",
            "Delivered records tagged with a detection rule, by rule id",
            m.detections.clone(),
        );
        registry.register(
            "detections_skipped",
            "Events not forwarded in detections-only mode: they raised no detection",
            m.detections_skipped.clone(),
        );
        registry.register(
            "delivery_failures",
            "Delivery attempts of a spool group that failed, by class",
            m.delivery_failures.clone(),
        );
        registry.register(
            "spool_bytes",
            "Bytes of undelivered events on disk",
            m.spool_bytes.clone(),
        );
        registry.register(
            "spool_events",
            "Undelivered events on disk",
            m.spool_events.clone(),
        );
        registry.register(
            "spool_segments",
            "Undelivered segment files",
            m.spool_segments.clone(),
        );
        registry.register(
            "events_unparsed",
            "Events forwarded as unparsed or salvaged records (kept, never dropped)",
            m.events_unparsed.clone(),
        );
        registry.register(
            "connections_open",
            "Open client connections",
            m.connections_open.clone(),
        );
        registry.register(
            "connections_evicted",
            "Idle connections closed to admit new ones at --max-connections or when out of file descriptors",
            m.connections_evicted.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accepts (e.g. out of file descriptors)",
            m.accept_errors.clone(),
        );
        m.registry = registry;
        m
    }

    /// One delivered group's pipeline counters.
    pub fn count_delivered(&self, p: &kaf_pipeline::PipelineStats) {
        self.events_rejected.inc_by(p.non_audit);
        self.events_unparsed.inc_by(p.malformed + p.salvaged);
        self.secrets_redacted.inc_by(p.redacted);
        self.policy_dropped.inc_by(p.policy_dropped);
        self.detections_skipped.inc_by(p.detections_skipped);
        for (rule, n) in p.detections.iter() {
            self.detections
                .get_or_create(&RuleLabel {
                    rule: rule.to_string(),
                })
                .inc_by(n);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
