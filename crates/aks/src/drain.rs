//! Drain mode (`aks-handler drain`): consume the Event Hub directly, for users who run the forwarder as a
//! container or VM service instead of a Function App. Each partition's events go through the same
//! [`settle`](crate::app::settle) as an invocation, and the partition is checkpointed **only after** a batch was
//! delivered completely; an undelivered batch is retried (the hub keeps it; upload ids are deterministic, so
//! records that did arrive are resent under the same id).
//!
//! The Event Hubs SDK sits behind [`PartitionSource`]: this module is tested with an in-memory source, the SDK
//! adapter (`eventhubs`, cargo feature `drain`) is a thin layer that no offline test can run (no emulator).

use crate::app::{State, settle};
use kaf_envelope::azure::{Invocation, body_from_bytes};
use kaf_upload::retry::Backoff;
use std::time::Duration;

/// One received event: its body and where it sits in the partition.
#[derive(Debug, Clone)]
pub struct SourceEvent<T> {
    pub body: Vec<u8>,
    pub sequence_number: Option<i64>,
    /// What the source needs to checkpoint through this event.
    pub token: T,
}

/// A partition to drain. `next_batch` returns `None` when the source is finished (tests; the SDK never is).
/// No `Send` bound: the SDK's event stream is not `Send`, so partitions run on a local task set.
pub trait PartitionSource {
    type Token;
    fn partition_id(&self) -> String;
    fn next_batch(
        &mut self,
        max_events: usize,
    ) -> impl Future<Output = anyhow::Result<Option<Vec<SourceEvent<Self::Token>>>>>;
    fn checkpoint(&mut self, through: &Self::Token) -> impl Future<Output = anyhow::Result<()>>;
}

#[derive(Debug, Clone)]
pub struct DrainOptions {
    pub max_events: usize,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Give up on a batch after this many settle attempts (tests); `None`: keep trying, never skip.
    pub max_attempts: Option<u32>,
}

impl Default for DrainOptions {
    fn default() -> Self {
        Self {
            max_events: 32,
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
            max_attempts: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainStats {
    pub batches: u64,
    pub checkpoints: u64,
    pub retries: u64,
}

/// Drain `source` until it ends; errors from the source (or a batch that stays undelivered past
/// `max_attempts`) stop the partition without checkpointing past undelivered events.
pub async fn drain_partition<S: PartitionSource>(
    state: &State,
    source: &mut S,
    options: &DrainOptions,
) -> anyhow::Result<DrainStats> {
    let mut stats = DrainStats::default();
    let partition = source.partition_id();
    while let Some(batch) = source.next_batch(options.max_events).await? {
        let Some(last) = batch.last() else { continue };
        stats.batches += 1;
        let invocation = Invocation {
            bodies: batch
                .iter()
                .enumerate()
                .map(|(i, e)| body_from_bytes(i, &e.body))
                .collect(),
            partition_id: Some(partition.clone()),
            sequence_numbers: batch.iter().map(|e| e.sequence_number).collect(),
        };
        let mut backoff = Backoff::new(options.retry_base, options.retry_max);
        loop {
            let attempt = backoff.attempts() + 1;
            let settled = settle(state, kaf_envelope::azure::split(invocation.clone())).await;
            if settled.undelivered == 0 {
                source.checkpoint(&last.token).await?;
                stats.checkpoints += 1;
                break;
            }
            if options.max_attempts.is_some_and(|max| attempt >= max) {
                anyhow::bail!(
                    "partition {partition}: {} records still undelivered after {attempt} attempts; not checkpointed",
                    settled.undelivered
                );
            }
            stats.retries += 1;
            let delay = backoff.next_delay();
            tracing::warn!(%partition, undelivered = settled.undelivered, attempt, delay_ms = delay.as_millis() as u64, "batch not delivered, retrying before any checkpoint");
            Backoff::wait(delay, None).await;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kaf_testkit::fixtures;
    use kaf_testkit::payloads::{aks_record, event_hub_body};
    use kaf_testkit::receiver::{Fault, Receiver};
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    const KEY: &str = "drain-key";

    /// An in-memory partition; `log` records "checkpoint <seq>" and "delivered <n>" in order.
    struct MemorySource {
        batches: VecDeque<Vec<SourceEvent<i64>>>,
        checkpoints: Vec<i64>,
        log: Arc<Mutex<Vec<String>>>,
        rx: Arc<Receiver>,
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
    }

    fn state(rx: &Receiver) -> State {
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

    /// Two batches of real events as AKS bodies, sequence numbers 100.. .
    fn batches() -> (VecDeque<Vec<SourceEvent<i64>>>, usize) {
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

    fn options() -> DrainOptions {
        DrainOptions {
            retry_base: Duration::from_millis(10),
            retry_max: Duration::from_millis(50),
            ..DrainOptions::default()
        }
    }

    #[tokio::test]
    async fn checkpoints_follow_delivery_and_an_outage_delays_them_without_loss() {
        let rx = Arc::new(Receiver::start(KEY, "t").await);
        // The first batch meets a refusal that ends each settle at once (no waiting on deadlines), three
        // times over: three settles fail before one delivers.
        let quota = Fault::Headers(200, vec![("LOG_LICENSE_EXCEEDS".into(), "True".into())]);
        rx.push_faults(std::iter::repeat_n(quota, 3));
        let (batches, events) = batches();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut source = MemorySource {
            batches,
            checkpoints: Vec::new(),
            log: log.clone(),
            rx: rx.clone(),
        };
        let stats = drain_partition(&state(&rx), &mut source, &options())
            .await
            .unwrap();
        assert_eq!(stats.retries, 3, "{stats:?}");
        assert_eq!((stats.batches, stats.checkpoints), (2, 2));
        assert_eq!(source.checkpoints, vec![102, 104]);
        // Each checkpoint came after its batch's records had arrived (20 then all 37).
        assert_eq!(
            *log.lock().unwrap(),
            vec![
                "checkpoint 102 after 20 delivered".to_string(),
                format!("checkpoint 104 after {events} delivered")
            ]
        );
        assert_eq!(rx.records().len(), events);
        assert_eq!(rx.violations(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn an_undelivered_batch_is_never_checkpointed() {
        let rx = Arc::new(Receiver::start(KEY, "t").await);
        rx.set_always(Some(Fault::Headers(
            200,
            vec![("LOG_LICENSE_EXCEEDS".into(), "True".into())],
        )));
        let (batches, _) = batches();
        let mut source = MemorySource {
            batches,
            checkpoints: Vec::new(),
            log: Arc::default(),
            rx: rx.clone(),
        };
        let err = drain_partition(
            &state(&rx),
            &mut source,
            &DrainOptions {
                max_attempts: Some(2),
                ..options()
            },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("not checkpointed"), "{err}");
        assert!(source.checkpoints.is_empty());
    }

    #[tokio::test]
    async fn bodies_that_are_not_json_do_not_block_the_partition() {
        let rx = Arc::new(Receiver::start(KEY, "t").await);
        let (mut batches, _) = batches();
        batches[0].push(SourceEvent {
            body: b"\x00 not json".to_vec(),
            sequence_number: Some(103),
            token: 103,
        });
        let mut source = MemorySource {
            batches,
            checkpoints: Vec::new(),
            log: Arc::default(),
            rx: rx.clone(),
        };
        drain_partition(&state(&rx), &mut source, &options())
            .await
            .unwrap();
        assert_eq!(source.checkpoints, vec![103, 104]);
    }
}
