//! One invocation: CloudWatch payload → batch → pipeline → upload → summary.
//!
//! Return `Ok(summary)` only when every record was delivered; otherwise an error whose type says what went
//! wrong (transient, quota, configuration), so Lambda's async retries and the OnFailure destination keep the
//! whole payload for replay. Bad events never fail the invocation: they are counted and sampled in the log.

use crate::init::Forwarder;
use aws_lambda_events::cloudwatch_logs::LogsEvent;
use kaf_envelope::cloudwatch::SubscriptionPayload;
use kaf_upload::{DeliveryError, Summary};
use lambda_runtime::{Diagnostic, LambdaEvent};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// An invocation that could not deliver everything.
#[derive(Debug, thiserror::Error)]
#[error("{undelivered} of {records} records not delivered: {cause}")]
pub struct ForwardError {
    pub undelivered: usize,
    pub records: usize,
    pub cause: DeliveryError,
}

impl From<ForwardError> for Diagnostic {
    fn from(e: ForwardError) -> Self {
        let error_type = match e.cause {
            DeliveryError::Transient { .. } => "UploadTransientError",
            DeliveryError::Quota { .. } => "UploadQuotaError",
            DeliveryError::Rejected { .. } | DeliveryError::Redirected { .. } => {
                "UploadConfigurationError"
            }
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

pub async fn handle(
    forwarder: &Forwarder,
    event: LambdaEvent<LogsEvent>,
) -> Result<Summary, ForwardError> {
    let started = Instant::now();
    let (logs, context) = event.into_parts();
    let mut summary = Summary::default();

    let payload = SubscriptionPayload::from(logs.aws_logs.data);
    let batch = payload.into_batch(&forwarder.stream_prefix, &mut summary.envelope);
    let cluster = batch.source.cluster.clone();

    // The runtime's deadline as a monotonic instant (the wall clock may step during the invocation).
    let left = context
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + left;
    let forwarded = forwarder
        .uploader
        .forward(&forwarder.pipeline, batch, now_ms(), deadline)
        .await;
    for reject in &forwarded.rejects {
        tracing::warn!(event_id = %reject.event_id, reason = %reject.reason, "event not forwarded");
    }
    summary.pipeline = forwarded.pipeline;
    summary.upload = forwarded.upload;
    summary.duration_ms = started.elapsed().as_millis() as u64;
    // Metrics first, so a failed invocation is counted too.
    println!(
        "{}",
        crate::metrics::emf_line(
            &summary,
            &context.env_config.function_name,
            &cluster,
            now_ms()
        )
    );
    if let Some(cause) = forwarded.worst_error() {
        tracing::error!(summary = %summary.to_json(), "delivery failed");
        return Err(ForwardError {
            undelivered: forwarded.undelivered(),
            records: summary.pipeline.forwarded as usize,
            cause: cause.clone(),
        });
    }
    tracing::info!(summary = %summary.to_json(), "invocation done");
    Ok(summary)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
