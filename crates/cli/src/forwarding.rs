//! What every command that forwards shares: the logtypeconfig, the pipeline options, and where records go
//! ([`Sink`]: stdout as JSON lines without a logtypeconfig, the upload API with one).

use anyhow::{Context as _, bail};
use kaf_config::LogTypeConfig;
use kaf_envelope::Batch;
use kaf_pipeline::{Pipeline, PipelineStats, Reject};
use kaf_upload::{DeliveryError, UploadSettings, UploadStats, Uploader};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Events per pipeline chunk in stdout mode (memory stays flat on large inputs).
const CHUNK_EVENTS: usize = 1000;

#[derive(clap::Args)]
pub struct ForwardArgs {
    /// Base64 logtypeconfig: upload instead of printing. Also read from env `logTypeConfig`.
    #[arg(long, env = "logTypeConfig", hide_env_values = true)]
    pub logtypeconfig: Option<String>,
    /// Cluster name (`s247agentuid`) for events that do not carry one.
    #[arg(long, default_value = "local")]
    pub cluster: String,
    /// Audit policy (YAML) to apply before forwarding; also env `AUDIT_POLICY` / `AUDIT_POLICY_FILE`.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Forward Secret values, tokens and credential-like ConfigMap values in clear (redaction is on by default).
    #[arg(long)]
    pub no_redact: bool,
}

impl ForwardArgs {
    /// Decode the logtypeconfig (if any) and build the pipeline; errors name the flag or variable at fault.
    pub fn pipeline(&self) -> anyhow::Result<(Pipeline, Option<LogTypeConfig>)> {
        let config = match self
            .logtypeconfig
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            Some(text) => Some(LogTypeConfig::decode(text).context("--logtypeconfig")?),
            None => None,
        };
        if let Some(c) = &config {
            if !c.api_upload {
                bail!(
                    "the logtypeconfig says apiUpload: false: this account does not accept API uploads"
                );
            }
            for warning in &c.warnings {
                tracing::warn!(%warning, "logtypeconfig");
            }
        }
        let mut options = kaf_pipeline::Options::from_env(|k| std::env::var(k).ok())
            .map_err(anyhow::Error::msg)?;
        if self.no_redact {
            options.redact_secrets = false;
        }
        if let Some(path) = &self.policy {
            options.policy =
                kaf_pipeline::policy::from_env(None, Some(&path.display().to_string()))
                    .map_err(anyhow::Error::msg)?;
        }
        for warning in options.warnings() {
            tracing::warn!(%warning, "configuration");
        }
        let pipeline =
            options.apply(Pipeline::new(config.as_ref()).context("building the pipeline")?);
        Ok((pipeline, config))
    }
}

/// Where records go.
pub enum Sink {
    /// JSON lines on stdout.
    Stdout,
    Upload(Uploader),
}

/// What [`Sink::deliver`] did with one batch.
#[derive(Debug, Default)]
pub struct Delivered {
    pub pipeline: PipelineStats,
    pub upload: UploadStats,
    /// Records not delivered, and the most severe reason.
    pub undelivered: usize,
    pub error: Option<DeliveryError>,
    /// Stdout could not be written (e.g. `| head` closed it).
    pub output_error: Option<std::io::Error>,
}

impl Sink {
    /// Upload with `config` (settings from the environment), or print without one. Call inside a runtime.
    pub fn new(config: Option<&LogTypeConfig>) -> anyhow::Result<Self> {
        Ok(match config {
            Some(c) => {
                let settings = UploadSettings::from_env(|k| std::env::var(k).ok())?;
                Self::Upload(Uploader::new(c, settings)?)
            }
            None => Self::Stdout,
        })
    }

    /// Run `batch` through `pipeline` and deliver it before `deadline`. Only a result without an error means
    /// every record was delivered (or printed and flushed).
    pub async fn deliver(
        &self,
        pipeline: &Pipeline,
        batch: Batch,
        deadline: tokio::time::Instant,
    ) -> Delivered {
        match self {
            Self::Stdout => {
                let mut delivered = Delivered::default();
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                let mut written = Ok(());
                for processed in pipeline.chunks(batch, CHUNK_EVENTS, now_ms()) {
                    delivered.pipeline += processed.stats;
                    log_rejects(&processed.rejects);
                    for r in &processed.records {
                        if written.is_ok() {
                            written = out
                                .write_all(r.json.as_bytes())
                                .and_then(|()| out.write_all(b"\n"));
                        }
                    }
                }
                if let Err(e) = written.and_then(|()| out.flush()) {
                    delivered.undelivered = delivered.pipeline.forwarded as usize;
                    delivered.error = Some(DeliveryError::Transient {
                        last: format!("stdout: {e}"),
                    });
                    delivered.output_error = Some(e);
                }
                delivered
            }
            Self::Upload(uploader) => {
                let forwarded = uploader.forward(pipeline, batch, now_ms(), deadline).await;
                log_rejects(&forwarded.rejects);
                for failed in &forwarded.failed {
                    let first = failed.event_ids.first().map_or("", String::as_str);
                    tracing::warn!(records = failed.event_ids.len(), first, error = %failed.error, "not delivered");
                }
                Delivered {
                    pipeline: forwarded.pipeline,
                    upload: forwarded.upload,
                    undelivered: forwarded.undelivered(),
                    error: forwarded.worst_error().cloned(),
                    output_error: None,
                }
            }
        }
    }
}

fn log_rejects(rejects: &[Reject]) {
    for reject in rejects {
        tracing::warn!(event = %reject.event_id, reason = %reject.reason, "event not forwarded");
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
