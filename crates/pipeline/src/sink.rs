//! The seam between mapping and delivery: the pipeline renders chunks of records, a [`Sink`] consumes them
//! (the upload API, stdout, …) and [`drive`] joins the two. Neither side knows the other: a sink sees only
//! rendered records, the pipeline only its profile and the sink's [`crate::RecordFormat`].

use crate::{OutRecord, Pipeline, PipelineStats, Reject};
use futures_util::stream::{self, StreamExt as _};
use kaf_envelope::{Batch, Source};

/// Where rendered records go.
pub trait Sink {
    /// What the sink counts (requests, bytes…), summed over the chunks of a batch.
    type Stats: Default + std::ops::AddAssign;
    /// Why records were not delivered.
    type Error;

    /// The most events of one chunk: memory holds one chunk's records per chunk in flight, never the batch's.
    fn chunk_events(&self) -> usize;

    /// Chunks delivered at once.
    fn concurrency(&self) -> usize {
        1
    }

    /// Deliver one chunk's records. `index` numbers the chunks of a batch from 0; the chunks depend only on
    /// the batch, so a redelivered batch gives the same chunks (and the same upload ids).
    fn deliver(
        &self,
        index: usize,
        source: &Source,
        records: &[OutRecord],
    ) -> impl Future<Output = Delivery<Self::Stats, Self::Error>>;
}

/// What a sink did with one chunk.
#[derive(Debug)]
pub struct Delivery<S, E> {
    pub stats: S,
    pub failed: Vec<Undelivered<E>>,
}

/// Records a sink did not deliver, by event id, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered<E> {
    pub event_ids: Vec<String>,
    pub error: E,
}

/// What happened to a batch: the pipeline's and the sink's counts, and what was not delivered.
#[derive(Debug, Clone)]
pub struct Driven<S, E> {
    pub pipeline: PipelineStats,
    pub sink: S,
    pub failed: Vec<Undelivered<E>>,
    /// A few rejected events (ids and reasons, no content) for the log.
    pub rejects: Vec<Reject>,
    /// Every event forwarded as an unparsed or salvaged record, by id (the AKS handler parks their raw text).
    pub unparsed: Vec<String>,
}

impl<S: Default, E> Default for Driven<S, E> {
    fn default() -> Self {
        Self {
            pipeline: PipelineStats::default(),
            sink: S::default(),
            failed: Vec::new(),
            rejects: Vec::new(),
            unparsed: Vec::new(),
        }
    }
}

impl<S, E> Driven<S, E> {
    /// Records not delivered.
    pub fn undelivered(&self) -> usize {
        self.failed.iter().map(|f| f.event_ids.len()).sum()
    }
}

/// Run `batch` through `pipeline` into `sink`, chunk by chunk, [`Sink::concurrency`] chunks at once. Records are
/// dropped as soon as their chunk is delivered: only counts and ids come back.
pub async fn drive<K: Sink>(
    pipeline: &Pipeline,
    batch: Batch,
    now_ms: i64,
    sink: &K,
) -> Driven<K::Stats, K::Error> {
    let source = batch.source.clone();
    let chunks = pipeline.chunks(batch, sink.chunk_events(), now_ms);
    let mut delivered = stream::iter(chunks.enumerate())
        .map(|(index, processed)| {
            let source = &source;
            async move {
                let delivery = sink.deliver(index, source, &processed.records).await;
                (
                    processed.stats,
                    processed.rejects,
                    processed.unparsed,
                    delivery,
                )
            }
        })
        .buffered(sink.concurrency().max(1));
    let mut out = Driven::default();
    while let Some((stats, rejects, unparsed, delivery)) = delivered.next().await {
        out.pipeline += stats;
        out.sink += delivery.stats;
        out.failed.extend(delivery.failed);
        out.unparsed.extend(unparsed);
        let room = crate::record::MAX_REJECT_SAMPLES.saturating_sub(out.rejects.len());
        out.rejects.extend(rejects.into_iter().take(room));
    }
    out
}
