//! The whole path for one batch: pipeline and upload, chunk by chunk, so memory is bounded by the chunk size
//! and the concurrency instead of the batch (a 1 MB gzip'd CloudWatch payload is ~25 MB of audit JSON).
//! The binaries call [`Uploader::forward`]; nothing else joins the pipeline to the upload client.

use crate::client::{Ctx, FailedRequest, UploadStats, Uploader};
use crate::{BatchPlan, DeliveryError};
use futures_util::stream::{self, StreamExt as _};
use kaf_envelope::Batch;
use kaf_pipeline::{Pipeline, PipelineStats, Reject};
use std::sync::Mutex;
use tokio::time::Instant;

/// What happened to a batch.
#[derive(Debug, Clone, Default)]
pub struct Forwarded {
    pub pipeline: PipelineStats,
    pub upload: UploadStats,
    /// Records not delivered, by request, with event ids so they can be named or parked.
    pub failed: Vec<FailedChunk>,
    /// A few rejected events (ids and reasons, no content) for the log.
    pub rejects: Vec<Reject>,
    /// Every event forwarded as an unparsed or salvaged record, by id (the AKS handler parks their raw text).
    pub unparsed: Vec<String>,
}

/// The event ids of one undelivered request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedChunk {
    pub event_ids: Vec<String>,
    pub error: DeliveryError,
}

impl Forwarded {
    pub fn undelivered(&self) -> usize {
        self.failed.iter().map(|f| f.event_ids.len()).sum()
    }

    /// The error to report for the batch: the most severe one.
    pub fn worst_error(&self) -> Option<&DeliveryError> {
        self.failed
            .iter()
            .map(|f| &f.error)
            .max_by_key(|e| e.severity())
    }
}

const MAX_REJECT_SAMPLES: usize = 5;

impl Uploader {
    /// Run `batch` through `pipeline` and deliver its records before `deadline`, one chunk of at most
    /// `limits.max_records` events per request group, `concurrency` chunks in flight.
    pub async fn forward(
        &self,
        pipeline: &Pipeline,
        batch: Batch,
        now_ms: i64,
        deadline: Instant,
    ) -> Forwarded {
        let source_key = format!("{}/{}", batch.source.cluster, batch.source.stream);
        let halt: Mutex<Option<DeliveryError>> = Mutex::new(None);
        let chunk_events = self.settings().limits.max_records;
        // Records are dropped as soon as their chunk is sent: only counts and ids come back.
        type ChunkResult = (
            PipelineStats,
            Vec<Reject>,
            Vec<String>,
            UploadStats,
            Vec<FailedChunk>,
        );
        let results: Vec<ChunkResult> =
            stream::iter(pipeline.chunks(batch, chunk_events, now_ms).enumerate())
                .map(|(index, processed)| {
                    let (source_key, halt) = (&source_key, &halt);
                    async move {
                        let plan = BatchPlan::new(&processed.records, self.settings().limits);
                        let ctx = Ctx {
                            plan: &plan,
                            records: &processed.records,
                            source_key,
                            deadline,
                            halt,
                        };
                        let mut stats = UploadStats::default();
                        let mut failed = Vec::new();
                        for (i, range) in plan.requests.iter().enumerate() {
                            let (s, f) = self
                                .send_range(&ctx, range.clone(), format!("{index}.{i}"))
                                .await;
                            stats += s;
                            failed.extend(f.into_iter().map(|FailedRequest { records, error }| {
                                FailedChunk {
                                    event_ids: processed.records[records]
                                        .iter()
                                        .map(|r| r.event_id.clone())
                                        .collect(),
                                    error,
                                }
                            }));
                        }
                        (
                            processed.stats,
                            processed.rejects,
                            processed.unparsed,
                            stats,
                            failed,
                        )
                    }
                })
                .buffered(self.settings().concurrency.max(1))
                .collect()
                .await;
        let mut out = Forwarded::default();
        for (pipeline_stats, rejects, unparsed, upload_stats, failed) in results {
            out.pipeline += pipeline_stats;
            out.upload += upload_stats;
            out.failed.extend(failed);
            out.unparsed.extend(unparsed);
            let room = MAX_REJECT_SAMPLES.saturating_sub(out.rejects.len());
            out.rejects.extend(rejects.into_iter().take(room));
        }
        out
    }
}
