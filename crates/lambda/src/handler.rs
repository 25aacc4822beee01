//! One invocation: Lambda event bytes → CloudWatch payload (bounded decode) → batch → pipeline → upload →
//! summary.
//!
//! Return `Ok(summary)` only when every record was delivered; otherwise a [`Diagnostic`] whose type says what
//! went wrong (transient, quota, configuration, an unreadable event), so Lambda's async retries and the
//! OnFailure destination keep the whole payload for replay. Bad audit events never fail the invocation: they
//! are counted and sampled in the log.

use crate::init::Forwarder;
use crate::runtime::{Diagnostic, Invocation, retry_budget};
use kaf_envelope::EnvelopeError;
use kaf_envelope::cloudwatch::Decoded;
use kaf_upload::{DeliveryError, Summary};
use std::sync::atomic::Ordering;
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

/// The event is not a readable CloudWatch subscription event. It fails the invocation, so Lambda's retries
/// and then the OnFailure destination keep it (replay it with a larger `--max-decompressed-bytes`).
fn unreadable(error: &EnvelopeError) -> Diagnostic {
    let error_type = match error {
        EnvelopeError::TooLarge { .. } => "PayloadTooLargeError",
        _ => "InvalidEventError",
    };
    Diagnostic {
        error_type: error_type.into(),
        error_message: format!("not a readable CloudWatch Logs subscription event: {error}"),
    }
}

/// The summary as JSON (the invocation's response body), or why the invocation failed.
pub async fn handle(forwarder: &Forwarder, invocation: &Invocation) -> Result<String, Diagnostic> {
    let started = Instant::now();
    let budget = retry_budget(
        invocation.deadline_ms,
        SystemTime::now(),
        forwarder.deadline_fallback,
    );
    if let Some(reason) = budget.fallback
        && !forwarder.fallback_warned.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            reason,
            fallback_secs = forwarder.deadline_fallback.as_secs(),
            "using DEADLINE_FALLBACK_SECS as the retry budget (said once per process)"
        );
    }
    // A monotonic deadline: the wall clock may step during the invocation.
    let deadline = tokio::time::Instant::now() + budget.remaining;

    let mut summary = Summary::default();
    let payload = Decoded::from_lambda_event(&invocation.body, forwarder.max_decompressed)
        .map_err(|e| {
            let diagnostic = unreadable(&e);
            tracing::error!(error = %diagnostic.error_message, "event not forwarded; failing the invocation so Lambda keeps it");
            diagnostic
        })?;
    let batch = payload.into_batch(&forwarder.stream_prefix, &mut summary.envelope);
    let cluster = batch.source.cluster.clone();

    let forwarded = forwarder
        .uploader
        .forward(&forwarder.pipeline, batch, now_ms(), deadline)
        .await;
    for reject in &forwarded.rejects {
        tracing::warn!(event_id = %reject.event_id, reason = %reject.reason, "event not forwarded");
    }
    let undelivered = forwarded.undelivered();
    summary.pipeline = forwarded.pipeline;
    summary.upload = forwarded.sink;
    summary.duration_ms = started.elapsed().as_millis() as u64;
    let failure = kaf_upload::worst_error(&forwarded.failed);
    // Metrics first, so a failed invocation is counted too. The metrics line carries every number of the
    // summary, so it is also the invocation's log line: a second line repeating them (a JSON string escaped
    // inside a JSON log line) cost 4% of a one-event invocation's instructions and another write to the log
    // pipe.
    let message = match failure {
        Some(_) => "delivery failed",
        None => "invocation done",
    };
    crate::metrics::print_emf(
        &summary,
        message,
        &forwarder.function_name,
        &cluster,
        now_ms(),
    );
    if let Some(cause) = failure {
        tracing::error!(summary = %summary.to_json(), "delivery failed");
        return Err(ForwardError {
            undelivered,
            records: summary.pipeline.forwarded as usize,
            cause: cause.clone(),
        }
        .into());
    }
    Ok(summary.to_json())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
