//! One summary per invocation or run: what came in, what the pipeline did, what the upload did. The Lambda
//! returns and logs it, the CLI prints it on stderr. Counts only: no content, no secret.

use crate::UploadStats;
use kaf_envelope::EnvelopeStats;
use kaf_pipeline::PipelineStats;
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    #[serde(flatten)]
    pub envelope: EnvelopeStats,
    #[serde(flatten)]
    pub pipeline: PipelineStats,
    #[serde(flatten)]
    pub upload: UploadStats,
    pub duration_ms: u64,
}

impl Summary {
    /// One JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Every count, named as in [`Summary::to_json`], without building JSON (the Lambda's metric line is
    /// written from these on every invocation). The per-rule detection counts are not among them. The
    /// destructuring is exhaustive, so a new counter does not compile until it is listed here.
    pub fn counts(&self) -> [(&'static str, u64); 26] {
        let Summary {
            envelope:
                EnvelopeStats {
                    control_messages,
                    skipped_stream_events,
                    unreadable,
                },
            pipeline:
                PipelineStats {
                    events_in,
                    forwarded,
                    malformed,
                    salvaged,
                    non_audit,
                    filtered,
                    timestamp_fallbacks,
                    truncated,
                    oversize_dropped,
                    redacted,
                    deduplicated,
                    bytes_in,
                    policy_dropped,
                    policy_reduced,
                    detected,
                    detections_skipped,
                    detections: _,
                },
            upload:
                UploadStats {
                    requests,
                    retries,
                    failed_requests,
                    records_delivered,
                    bytes_uncompressed,
                    bytes_compressed,
                },
            duration_ms,
        } = *self;
        [
            ("controlMessages", control_messages),
            ("skippedStreamEvents", skipped_stream_events),
            ("unreadable", unreadable),
            ("eventsIn", events_in),
            ("forwarded", forwarded),
            ("malformed", malformed),
            ("salvaged", salvaged),
            ("nonAudit", non_audit),
            ("filtered", filtered),
            ("timestampFallbacks", timestamp_fallbacks),
            ("truncated", truncated),
            ("oversizeDropped", oversize_dropped),
            ("redacted", redacted),
            ("deduplicated", deduplicated),
            ("bytesIn", bytes_in),
            ("policyDropped", policy_dropped),
            ("policyReduced", policy_reduced),
            ("detected", detected),
            ("detectionsSkipped", detections_skipped),
            ("requests", requests),
            ("retries", retries),
            ("failedRequests", failed_requests),
            ("recordsDelivered", records_delivered),
            ("bytesUncompressed", bytes_uncompressed),
            ("bytesCompressed", bytes_compressed),
            ("durationMs", duration_ms),
        ]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `counts` names every number of the JSON summary, with its own value, and nothing else. The literal
    /// lists every field (no `..Default::default()`), so a new counter must be given a value here too.
    #[test]
    fn counts_are_the_numbers_of_the_json_summary() {
        let mut detections = kaf_pipeline::RuleCounts::default();
        detections.add("pod-exec", 99);
        let summary = Summary {
            envelope: EnvelopeStats {
                control_messages: 1,
                skipped_stream_events: 2,
                unreadable: 3,
            },
            pipeline: PipelineStats {
                events_in: 4,
                forwarded: 5,
                malformed: 6,
                salvaged: 7,
                non_audit: 8,
                filtered: 9,
                timestamp_fallbacks: 10,
                truncated: 11,
                oversize_dropped: 12,
                redacted: 13,
                deduplicated: 14,
                bytes_in: 15,
                policy_dropped: 16,
                policy_reduced: 17,
                detected: 18,
                detections_skipped: 19,
                detections,
            },
            upload: UploadStats {
                requests: 20,
                retries: 21,
                failed_requests: 22,
                records_delivered: 23,
                bytes_uncompressed: 24,
                bytes_compressed: 25,
            },
            duration_ms: 26,
        };
        let from_json: std::collections::BTreeMap<String, u64> = serde_json::to_value(&summary)
            .unwrap()
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)))
            .collect();
        let counted: std::collections::BTreeMap<String, u64> = summary
            .counts()
            .into_iter()
            .map(|(k, n)| (k.to_string(), n))
            .collect();
        assert_eq!(counted, from_json);
        assert_eq!(counted.len(), 26);
    }
}
