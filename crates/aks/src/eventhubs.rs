//! The Event Hubs side of drain mode, as thin as it can be: an `EventProcessor` (load balancing across
//! instances) with a blob checkpoint store, a [`PartitionSource`] over each partition client, the failover
//! container as a [`FailoverSink`], SIGTERM, the lag poll, and `/healthz` + `/metrics`. Everything it calls
//! into is tested in [`crate::drain`]; the blob side (checkpoint store, failover container) runs against
//! Azurite in `azurite.rs`; the AMQP side needs a real namespace and is compiled, not run, in CI (there is
//! no Event Hubs emulator without Docker).
//!
//! Settings: `EVENTHUB_NAMESPACE` (`<ns>.servicebus.windows.net`), `EVENTHUB_NAME`, `EVENTHUB_CONSUMER_GROUP`
//! (default `$Default`), `CHECKPOINT_CONTAINER_URL` and `FAILOVER_CONTAINER_URL`
//! (`https://<account>.blob.core.windows.net/<container>`), `DRAIN_METRICS_ADDR` (default `0.0.0.0:8080`),
//! the [`DrainOptions`] variables (`DRAIN_*`), and `AZURE_CREDENTIAL` = `managed` (default; with `AZURE_CLIENT_ID` for a
//! user-assigned identity), `workload` (AKS workload identity) or `developer` (Azure CLI / azd). Roles: Azure
//! Event Hubs Data Receiver on the hub, Storage Blob Data Contributor on both containers.
//!
//! A partition that keeps failing makes the process exit non-zero (after releasing its partitions), so the
//! platform restarts it with fresh connections and credentials; meanwhile another instance may claim them.
//!
//! Versions: azure_messaging_eventhubs 0.15 with azure_messaging_eventhubs_checkpointstore_blob 0.9 — the newest
//! pair that resolves together (0.16's blob store 0.9 wants a stable azure_core the 0.16 beta core is not).

use crate::app::State;
use crate::drain::{
    DrainMetrics, DrainOptions, FailoverSink, PartitionSource, Shutdown, SourceEvent, StartFrom,
    supervise,
};
use anyhow::{Context as _, bail};
use azure_core::credentials::TokenCredential;
use azure_core::http::{Transport, Url};
use azure_messaging_eventhubs::error::ErrorKind;
use azure_messaging_eventhubs::models::{ReceivedEventData, StartPositions};
use azure_messaging_eventhubs::processor::PartitionClient;
use azure_messaging_eventhubs::{ConsumerClient, EventProcessor, StartLocation, StartPosition};
use azure_messaging_eventhubs_checkpointstore_blob::BlobCheckpointStore;
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use futures_util::{Stream, StreamExt as _};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How often the partitions' newest sequence numbers are read for the lag metric.
const LAG_POLL: Duration = Duration::from_secs(30);

/// How long a batch waits for more events once the first one arrived.
const BATCH_WAIT: Duration = Duration::from_millis(500);

fn var(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .with_context(|| format!("drain mode needs {name}"))
}

fn credential() -> anyhow::Result<Arc<dyn TokenCredential>> {
    Ok(
        match std::env::var("AZURE_CREDENTIAL")
            .unwrap_or_default()
            .as_str()
        {
            "" | "managed" => azure_identity::ManagedIdentityCredential::new(None)?,
            "workload" => azure_identity::WorkloadIdentityCredential::new(None)?,
            "developer" => azure_identity::DeveloperToolsCredential::new(None)?,
            other => bail!("AZURE_CREDENTIAL must be managed, workload or developer, not {other}"),
        },
    )
}

/// Run until SIGTERM (exit 0 once the batches in flight are settled or the grace period is over) or until a
/// partition gives up (an error: exit non-zero).
pub async fn run(state: Arc<State>) -> anyhow::Result<()> {
    let namespace = var("EVENTHUB_NAMESPACE")?;
    let hub = var("EVENTHUB_NAME")?;
    let group = std::env::var("EVENTHUB_CONSUMER_GROUP").unwrap_or_else(|_| "$Default".into());
    let checkpoints =
        Url::parse(&var("CHECKPOINT_CONTAINER_URL")?).context("CHECKPOINT_CONTAINER_URL")?;
    let failover = Url::parse(&var("FAILOVER_CONTAINER_URL")?).context("FAILOVER_CONTAINER_URL")?;
    let metrics_addr: std::net::SocketAddr = std::env::var("DRAIN_METRICS_ADDR")
        .unwrap_or_else(|_| "0.0.0.0:8080".into())
        .parse()
        .context("DRAIN_METRICS_ADDR")?;
    let options = DrainOptions::from_env(|k| std::env::var(k).ok())?;
    let credential = credential()?;

    let (stop, shutdown) = Shutdown::new();
    let metrics = DrainMetrics::new();
    let listener = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .with_context(|| format!("DRAIN_METRICS_ADDR {metrics_addr}"))?;
    let app = crate::drain::router(metrics.clone(), shutdown.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let open = || {
        ConsumerClient::builder()
            .with_consumer_group(group.clone())
            .open(&namespace, hub.clone(), credential.clone())
    };
    let consumer = open().await.context("opening the Event Hub")?;
    // A second connection for the partition properties behind the lag metric (the processor owns the first).
    let properties = open().await.context("opening the Event Hub")?;
    let store = BlobCheckpointStore::new(container(checkpoints, credential.clone(), None)?);
    let sink = Arc::new(BlobSink(container(failover, credential, None)?));
    let start = StartPosition {
        location: match options.start_from {
            StartFrom::Earliest => StartLocation::Earliest,
            StartFrom::Latest => StartLocation::Latest,
        },
        // Also applied to a checkpoint (the last event settled): resume after it, not at it.
        inclusive: false,
    };
    let processor = EventProcessor::builder()
        // The SDK prefetches 300 events per partition by default: up to 300 MB of 1 MB AKS events buffered
        // per partition. One batch ahead is enough.
        .with_prefetch(options.max_events as u32)
        .with_start_positions(StartPositions {
            per_partition: Default::default(),
            default: start,
        })
        .build(consumer, store)
        .await
        .context("starting the event processor")?;
    let runner = processor.clone();
    let mut background = tokio::spawn(async move { runner.run().await });
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tracing::info!(metrics = %metrics_addr, "drain mode running");

    // The SDK's event streams are not Send: partitions run on this thread's local task set.
    let partitions = tokio::task::LocalSet::new();
    let (failed_tx, mut failed) = tokio::sync::mpsc::unbounded_channel::<anyhow::Error>();
    let outcome = partitions
        .run_until(async {
            tokio::task::spawn_local(poll_partition_properties(properties, metrics.clone()));
            let mut tasks = tokio::task::JoinSet::new();
            let outcome = loop {
                let client = tokio::select! {
                    client = processor.next_partition_client() => client.context("claiming a partition")?,
                    ended = &mut background => break Err(anyhow::anyhow!("event processor stopped: {ended:?}")),
                    Some(error) = failed.recv() => break Err(error),
                    _ = terminate.recv() => break Ok(()),
                };
                let (state, sink, options, shutdown, metrics, failed_tx) = (
                    state.clone(),
                    sink.clone(),
                    options.clone(),
                    shutdown.clone(),
                    metrics.clone(),
                    failed_tx.clone(),
                );
                tasks.spawn_local(async move {
                    let partition = client.get_partition_id().to_string();
                    let result = {
                        let mut source = SdkPartition::new(&client);
                        supervise(&state, &mut source, sink.as_ref(), &options, &shutdown, &metrics)
                            .await
                    };
                    // Released either way: another instance (or this one, later) may take it.
                    if let Ok(client) = Arc::try_unwrap(client)
                        && let Err(e) = client.close().await
                    {
                        tracing::warn!(%partition, error = %e, "releasing the partition failed");
                    }
                    if let Err(error) = result {
                        let _ = failed_tx.send(error);
                    }
                });
            };
            // Stop taking batches; let the ones in flight settle within the grace period.
            let _ = stop.send(true);
            tracing::info!(grace_s = options.grace.as_secs(), "shutting down: settling the batches in flight");
            let settle = async { while tasks.join_next().await.is_some() {} };
            if tokio::time::timeout(options.grace + Duration::from_secs(2), settle)
                .await
                .is_err()
            {
                tracing::warn!("grace period over; batches still in flight stay unchecked");
            }
            outcome
        })
        .await;
    if let Err(e) = processor.shutdown().await {
        tracing::warn!(error = %e, "event processor shutdown");
    }
    outcome
}

/// Every [`LAG_POLL`]: each partition's newest sequence number, for `kaf_drain_lag_events`. Failures only
/// leave the metric stale (logged at debug): they say nothing about delivery.
async fn poll_partition_properties(client: ConsumerClient, metrics: Arc<DrainMetrics>) {
    let mut tick = tokio::time::interval(LAG_POLL);
    loop {
        tick.tick().await;
        let ids = match client.get_eventhub_properties().await {
            Ok(hub) => hub.partition_ids,
            Err(e) => {
                tracing::debug!(error = %e, "event hub properties");
                continue;
            }
        };
        for id in ids {
            match client.get_partition_properties(&id).await {
                Ok(p) => metrics.set_last_enqueued(&id, p.last_enqueued_sequence_number),
                Err(e) => tracing::debug!(partition = %id, error = %e, "partition properties"),
            }
        }
    }
}

/// A blob container reached with the identity's token (the checkpoint store and the failover container).
/// `transport`: the SDK's own HTTP client when `None`; the tests pass one that trusts the emulator's CA.
fn container(
    url: Url,
    credential: Arc<dyn TokenCredential>,
    transport: Option<Transport>,
) -> anyhow::Result<BlobContainerClient> {
    let mut options = BlobContainerClientOptions::default();
    options.client_options.transport = transport;
    BlobContainerClient::new(url.clone(), Some(credential), Some(options))
        .with_context(|| format!("blob container {url}"))
}

/// The failover container.
struct BlobSink(BlobContainerClient);

impl FailoverSink for BlobSink {
    async fn park(&self, name: &str, lines: &str) -> anyhow::Result<()> {
        self.0
            .blob_client(name)
            .upload(bytes::Bytes::copy_from_slice(lines.as_bytes()).into(), None)
            .await
            .with_context(|| format!("writing {name} to the failover container"))?;
        Ok(())
    }
}

type Events<'a> =
    Pin<Box<dyn Stream<Item = azure_messaging_eventhubs::Result<ReceivedEventData>> + 'a>>;

struct SdkPartition<'a> {
    client: &'a PartitionClient,
    events: Events<'a>,
    /// An error met while a batch was filling: reported with the next batch, after that one is settled.
    pending: Option<azure_messaging_eventhubs::EventHubsError>,
}

impl<'a> SdkPartition<'a> {
    fn new(client: &'a PartitionClient) -> Self {
        Self {
            client,
            events: Box::pin(client.stream_events()),
            pending: None,
        }
    }
}

fn source_event(event: ReceivedEventData) -> SourceEvent<ReceivedEventData> {
    SourceEvent {
        body: event
            .event_data()
            .body()
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
        sequence_number: event.sequence_number(),
        token: event,
    }
}

/// The partition went to another instance: not a failure, the end of this source.
fn taken_over(error: &azure_messaging_eventhubs::EventHubsError) -> bool {
    matches!(error.kind, ErrorKind::ConsumerDisconnected(_))
}

impl PartitionSource for SdkPartition<'_> {
    type Token = ReceivedEventData;

    fn partition_id(&self) -> String {
        self.client.get_partition_id().to_string()
    }

    async fn next_batch(
        &mut self,
        max_events: usize,
    ) -> anyhow::Result<Option<Vec<SourceEvent<ReceivedEventData>>>> {
        let next = match self.pending.take() {
            Some(error) => Some(Err(error)),
            None => self.events.next().await,
        };
        let first = match next {
            None => return Ok(None),
            Some(Err(e)) if taken_over(&e) => {
                tracing::info!(partition = %self.partition_id(), "partition taken over by another instance");
                return Ok(None);
            }
            Some(event) => event?,
        };
        let mut batch = vec![source_event(first)];
        while batch.len() < max_events {
            match tokio::time::timeout(BATCH_WAIT, self.events.next()).await {
                Ok(Some(Ok(event))) => batch.push(source_event(event)),
                // Settle what arrived; the error comes back with the next batch.
                Ok(Some(Err(error))) => {
                    self.pending = Some(error);
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(Some(batch))
    }

    async fn checkpoint(&mut self, through: &ReceivedEventData) -> anyhow::Result<()> {
        self.client
            .update_checkpoint(through)
            .await
            .context("updating the checkpoint")
    }

    async fn reopen(&mut self) -> anyhow::Result<()> {
        self.pending = None;
        self.events = Box::pin(self.client.stream_events());
        Ok(())
    }
}

#[cfg(test)]
mod azurite;
