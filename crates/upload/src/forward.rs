//! The upload API as a [`Sink`]: each chunk of the pipeline's records becomes requests within the API limits,
//! sent before the batch's deadline. [`Uploader::forward`] drives a batch through the pipeline into it, chunk by
//! chunk, so memory is bounded by the chunk size and the concurrency instead of the batch (a 1 MB gzip'd
//! CloudWatch payload is ~25 MB of audit JSON).

use crate::client::{Ctx, FailedRequest, UploadStats, Uploader};
use crate::{BatchPlan, DeliveryError};
use kaf_envelope::{Batch, Source};
use kaf_pipeline::{Delivery, Driven, OutRecord, Pipeline, Sink, Undelivered};
use std::sync::Mutex;
use tokio::time::Instant;

/// What happened to a batch.
pub type Forwarded = Driven<UploadStats, DeliveryError>;

/// The event ids of one undelivered request.
pub type FailedChunk = Undelivered<DeliveryError>;

/// The error to report for a batch that had several: the most severe one.
pub fn worst_error(failed: &[FailedChunk]) -> Option<&DeliveryError> {
    failed.iter().map(|f| &f.error).max_by_key(|e| e.severity())
}

/// The upload API for one batch: its deadline, and the refusal that stops the requests not yet sent.
pub struct UploadSink<'a> {
    uploader: &'a Uploader,
    deadline: Instant,
    /// After a quota or configuration refusal, requests not yet sent fail the same way without being sent.
    halt: Mutex<Option<DeliveryError>>,
}

impl Uploader {
    /// A sink delivering one batch before `deadline`.
    pub fn sink(&self, deadline: Instant) -> UploadSink<'_> {
        UploadSink {
            uploader: self,
            deadline,
            halt: Mutex::new(None),
        }
    }

    /// Run `batch` through `pipeline` and deliver its records before `deadline`, one chunk of at most
    /// `limits.max_records` events per request group, `concurrency` chunks in flight.
    pub async fn forward(
        &self,
        pipeline: &Pipeline,
        batch: Batch,
        now_ms: i64,
        deadline: Instant,
    ) -> Forwarded {
        kaf_pipeline::drive(pipeline, batch, now_ms, &self.sink(deadline)).await
    }
}

impl Sink for UploadSink<'_> {
    type Stats = UploadStats;
    type Error = DeliveryError;

    fn chunk_events(&self) -> usize {
        self.uploader.settings().limits.max_records
    }

    fn concurrency(&self) -> usize {
        self.uploader.settings().concurrency
    }

    async fn deliver(
        &self,
        index: usize,
        source: &Source,
        records: &[OutRecord],
    ) -> Delivery<UploadStats, DeliveryError> {
        let source_key = format!("{}/{}", source.cluster, source.stream);
        let plan = BatchPlan::new(records, self.uploader.settings().limits);
        let ctx = Ctx {
            plan: &plan,
            records,
            source_key: &source_key,
            deadline: self.deadline,
            halt: &self.halt,
        };
        let mut stats = UploadStats::default();
        let mut failed = Vec::new();
        for (i, range) in plan.requests.iter().enumerate() {
            let (s, f) = self
                .uploader
                .send_range(&ctx, range.clone(), format!("{index}.{i}"))
                .await;
            stats += s;
            failed.extend(f.into_iter().map(
                |FailedRequest {
                     records: range,
                     error,
                 }| FailedChunk {
                    event_ids: records[range].iter().map(|r| r.event_id.clone()).collect(),
                    error,
                },
            ));
        }
        Delivery { stats, failed }
    }
}
