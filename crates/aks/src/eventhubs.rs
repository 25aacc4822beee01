//! The Event Hubs side of drain mode, as thin as it can be: an `EventProcessor` (load balancing across
//! instances) with a blob checkpoint store, and a [`PartitionSource`] over each partition client. Everything it
//! calls into is tested in [`crate::drain`]; this layer itself needs a real namespace and is compiled, not run,
//! in CI (there is no Event Hubs emulator without Docker).
//!
//! Settings: `EVENTHUB_NAMESPACE` (`<ns>.servicebus.windows.net`), `EVENTHUB_NAME`, `EVENTHUB_CONSUMER_GROUP`
//! (default `$Default`), `CHECKPOINT_CONTAINER_URL` (`https://<account>.blob.core.windows.net/<container>`), and
//! `AZURE_CREDENTIAL` = `managed` (default; with `AZURE_CLIENT_ID` for a user-assigned identity), `workload`
//! (AKS workload identity) or `developer` (Azure CLI / azd, for a workstation). Roles: Azure Event Hubs Data
//! Receiver on the hub, Storage Blob Data Contributor on the container.
//!
//! Versions: azure_messaging_eventhubs 0.15 with azure_messaging_eventhubs_checkpointstore_blob 0.9 — the newest
//! pair that resolves together (0.16's blob store 0.9 wants a stable azure_core the 0.16 beta core is not).

use crate::app::State;
use crate::drain::{DrainOptions, PartitionSource, SourceEvent, drain_partition};
use anyhow::{Context as _, bail};
use azure_core::credentials::TokenCredential;
use azure_core::http::Url;
use azure_messaging_eventhubs::models::ReceivedEventData;
use azure_messaging_eventhubs::processor::PartitionClient;
use azure_messaging_eventhubs::{ConsumerClient, EventProcessor};
use azure_messaging_eventhubs_checkpointstore_blob::BlobCheckpointStore;
use azure_storage_blob::BlobContainerClient;
use futures_util::{Stream, StreamExt as _};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

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

/// Run until the processor fails: one task per partition this instance owns.
pub async fn run(state: Arc<State>) -> anyhow::Result<()> {
    let namespace = var("EVENTHUB_NAMESPACE")?;
    let hub = var("EVENTHUB_NAME")?;
    let group = std::env::var("EVENTHUB_CONSUMER_GROUP").unwrap_or_else(|_| "$Default".into());
    let container =
        Url::parse(&var("CHECKPOINT_CONTAINER_URL")?).context("CHECKPOINT_CONTAINER_URL")?;
    let credential = credential()?;

    let consumer = ConsumerClient::builder()
        .with_consumer_group(group)
        .open(&namespace, hub, credential.clone())
        .await
        .context("opening the Event Hub")?;
    let store =
        BlobCheckpointStore::new(BlobContainerClient::new(container, Some(credential), None)?);
    let processor = EventProcessor::builder()
        .build(consumer, store)
        .await
        .context("starting the event processor")?;
    let runner = processor.clone();
    let mut background = tokio::spawn(async move { runner.run().await });
    tracing::info!("drain mode running");
    // The SDK's event streams are not Send: partitions run on this thread's local task set.
    let partitions = tokio::task::LocalSet::new();
    partitions
        .run_until(async move {
            loop {
                let client = tokio::select! {
                    client = processor.next_partition_client() => client.context("claiming a partition")?,
                    ended = &mut background => bail!("event processor stopped: {ended:?}"),
                };
                let state = state.clone();
                tokio::task::spawn_local(async move {
                    let mut source = SdkPartition::new(&client);
                    if let Err(e) = drain_partition(&state, &mut source, &DrainOptions::default()).await {
                        tracing::error!(partition = %client.get_partition_id(), error = %format!("{e:#}"), "partition stopped");
                    }
                });
            }
        })
        .await
}

type Events<'a> =
    Pin<Box<dyn Stream<Item = azure_messaging_eventhubs::Result<ReceivedEventData>> + 'a>>;

struct SdkPartition<'a> {
    client: &'a PartitionClient,
    events: Events<'a>,
}

impl<'a> SdkPartition<'a> {
    fn new(client: &'a PartitionClient) -> Self {
        Self {
            client,
            events: Box::pin(client.stream_events()),
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

impl PartitionSource for SdkPartition<'_> {
    type Token = ReceivedEventData;

    fn partition_id(&self) -> String {
        self.client.get_partition_id().to_string()
    }

    async fn next_batch(
        &mut self,
        max_events: usize,
    ) -> anyhow::Result<Option<Vec<SourceEvent<ReceivedEventData>>>> {
        let Some(first) = self.events.next().await else {
            return Ok(None);
        };
        let mut batch = vec![source_event(first?)];
        while batch.len() < max_events {
            match tokio::time::timeout(BATCH_WAIT, self.events.next()).await {
                Ok(Some(event)) => batch.push(source_event(event?)),
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
}
