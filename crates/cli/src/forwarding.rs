//! What every command that forwards shares: the logtypeconfig, the pipeline options, and where records go
//! ([`Output`]: stdout as JSON lines without a logtypeconfig, the upload API with one).

use crate::pretty::Style;
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
    /// Do not tag records with detections (they are on by default); also env `DETECTIONS=off`.
    #[arg(long)]
    pub no_detections: bool,
    /// Detection rules: a file that replaces the built-in set, or extends it (`extends: builtin`); also env
    /// `DETECTIONS_FILE`.
    #[arg(long, value_name = "FILE")]
    pub detections: Option<PathBuf>,
    /// Forward only events that raise a detection (a cost mode: security signals without the full audit
    /// trail); also env `DETECTIONS_ONLY=true`. The summary counts what was skipped.
    #[arg(long, conflicts_with = "no_detections")]
    pub detections_only: bool,
    /// How records are printed without a logtypeconfig: `json` lines (what would be uploaded), or `pretty`
    /// blocks for reading on a terminal.
    #[arg(long, value_enum, default_value_t = Style::Json)]
    pub output: Style,
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
        // Flags win over the environment.
        let options = kaf_pipeline::Options::from_env(|k| {
            let flag = match k {
                "DETECTIONS" if self.no_detections => Some("off".to_string()),
                "DETECTIONS_ONLY" if self.detections_only => Some("true".to_string()),
                "DETECTIONS_FILE" => self.detections.as_ref().map(|p| p.display().to_string()),
                _ => None,
            };
            flag.or_else(|| std::env::var(k).ok())
        });
        let mut options = options.map_err(anyhow::Error::msg)?;
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
        let pipeline = options.apply(
            Pipeline::new(config.as_ref(), kaf_upload::format::SITE24X7)
                .context("building the pipeline")?,
        );
        Ok((pipeline, config))
    }
}

/// Where records go.
pub enum Output {
    /// On stdout, in this style.
    Stdout(Style),
    Upload(Uploader),
}

/// What [`Output::deliver`] did with one batch.
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

impl Output {
    /// Upload with `config` (settings from the environment), or print without one. Call inside a runtime.
    pub fn new(config: Option<&LogTypeConfig>, style: Style) -> anyhow::Result<Self> {
        Ok(match config {
            Some(c) => {
                let settings = UploadSettings::from_env(|k| std::env::var(k).ok())?;
                Self::Upload(Uploader::new(c, settings)?)
            }
            None => Self::Stdout(style),
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
            Self::Stdout(style) => {
                let sink = StdoutSink {
                    style: *style,
                    error: std::sync::Mutex::new(None),
                };
                let printed = kaf_pipeline::drive(pipeline, batch, now_ms(), &sink).await;
                log_rejects(&printed.rejects);
                let undelivered = printed.undelivered();
                Delivered {
                    pipeline: printed.pipeline,
                    upload: UploadStats::default(),
                    undelivered,
                    error: printed.failed.into_iter().next().map(|f| f.error),
                    output_error: sink.error.into_inner().ok().flatten(),
                }
            }
            Self::Upload(uploader) => {
                let forwarded = uploader.forward(pipeline, batch, now_ms(), deadline).await;
                log_rejects(&forwarded.rejects);
                for failed in &forwarded.failed {
                    let first = failed.event_ids.first().map_or("", String::as_str);
                    tracing::warn!(records = failed.event_ids.len(), first, error = %failed.error, "not delivered");
                }
                let undelivered = forwarded.undelivered();
                Delivered {
                    pipeline: forwarded.pipeline,
                    upload: forwarded.sink,
                    undelivered,
                    error: kaf_upload::worst_error(&forwarded.failed).cloned(),
                    output_error: None,
                }
            }
        }
    }
}

/// Records on stdout, flushed chunk by chunk. After a write error (e.g. `| head` closed the pipe), every later
/// chunk fails too: nothing is reported printed that was not.
struct StdoutSink {
    style: Style,
    error: std::sync::Mutex<Option<std::io::Error>>,
}

impl kaf_pipeline::Sink for StdoutSink {
    /// Records printed.
    type Stats = u64;
    type Error = DeliveryError;

    fn chunk_events(&self) -> usize {
        CHUNK_EVENTS
    }

    async fn deliver(
        &self,
        _index: usize,
        _source: &kaf_envelope::Source,
        records: &[kaf_pipeline::OutRecord],
    ) -> kaf_pipeline::Delivery<u64, DeliveryError> {
        let mut error = self
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if error.is_none() {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let written = records
                .iter()
                .try_for_each(|r| match self.style {
                    Style::Json => out
                        .write_all(r.json.as_bytes())
                        .and_then(|()| out.write_all(b"\n")),
                    Style::Pretty => out.write_all(crate::pretty::block(&r.record()).as_bytes()),
                })
                .and_then(|()| out.flush());
            if let Err(e) = written {
                *error = Some(e);
            }
        }
        let (printed, failed) = match &*error {
            Some(e) if !records.is_empty() => (
                0,
                vec![kaf_pipeline::Undelivered {
                    event_ids: records.iter().map(|r| r.event_id.clone()).collect(),
                    error: DeliveryError::Transient {
                        last: format!("stdout: {e}"),
                    },
                }],
            ),
            _ => (records.len() as u64, Vec::new()),
        };
        kaf_pipeline::Delivery {
            stats: printed,
            failed,
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
