//! `replay`: files → envelope → pipeline → stdout or upload.
//!
//! Exit codes: 0 all records printed/delivered; 1 some records not delivered (transient); 2 bad usage or
//! configuration; 3 quota or configuration refused by the service. Bad events inside a file never change the
//! exit code: they are counted in the summary.

use anyhow::{Context as _, bail};
use kaf_config::LogTypeConfig;
use kaf_envelope::EnvelopeStats;
use kaf_envelope::sniff::{FileContext, decode_file};
use kaf_pipeline::Pipeline;
use kaf_upload::{DeliveryError, Summary, UploadSettings, Uploader};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const EXIT_UNDELIVERED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_REFUSED: u8 = 3;

/// Events per pipeline chunk in stdout mode (memory stays flat on large files).
const CHUNK_EVENTS: usize = 1000;

#[derive(clap::Args)]
pub struct Args {
    /// Files to replay (.json, .jsonl, .log; optionally gzip-compressed).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Base64 logtypeconfig: upload instead of printing. Also read from env `logTypeConfig`.
    #[arg(long, env = "logTypeConfig", hide_env_values = true)]
    logtypeconfig: Option<String>,
    /// Cluster name (`s247agentuid`) for events that do not carry one (plain JSON lines).
    #[arg(long, default_value = "local")]
    cluster: String,
    /// Only CloudWatch streams with this prefix are forwarded.
    #[arg(long, default_value = kaf_envelope::cloudwatch::AUDIT_STREAM_PREFIX)]
    stream_prefix: String,
    /// Audit policy (YAML) to apply before forwarding; also env `AUDIT_POLICY` / `AUDIT_POLICY_FILE`.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Forward Secret values, tokens and credential-like ConfigMap values in clear (redaction is on by default).
    #[arg(long)]
    no_redact: bool,
    /// How long an upload may keep retrying, in seconds.
    #[arg(long, default_value_t = 300)]
    deadline_secs: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match args
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
    let mut options =
        kaf_pipeline::Options::from_env(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?;
    if args.no_redact {
        options.redact_secrets = false;
    }
    if let Some(path) = &args.policy {
        options.policy = kaf_pipeline::policy::from_env(None, Some(&path.display().to_string()))
            .map_err(anyhow::Error::msg)?;
    }
    for warning in options.warnings() {
        tracing::warn!(%warning, "configuration");
    }
    let pipeline = options.apply(Pipeline::new(config.as_ref()).context("building the pipeline")?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let uploader = match &config {
        Some(c) => {
            let settings = UploadSettings::from_env(|k| std::env::var(k).ok())?;
            Some(runtime.block_on(async { Uploader::new(c, settings) })?)
        }
        None => None,
    };

    let started = Instant::now();
    let mut summary = Summary::default();
    let mut worst: Option<DeliveryError> = None;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.deadline_secs);

    for path in &args.files {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).with_context(|| format!("reading {origin}"))?;
        let ctx = FileContext {
            origin: &origin,
            cluster: &args.cluster,
            stream_prefix: &args.stream_prefix,
        };
        let mut envelope = EnvelopeStats::default();
        let batches = decode_file(&bytes, &ctx, &mut envelope)
            .with_context(|| format!("decoding {origin}"))?;
        summary.envelope += envelope;
        for batch in batches {
            match &uploader {
                None => {
                    for processed in pipeline.chunks(batch, CHUNK_EVENTS, now_ms()) {
                        summary.pipeline += processed.stats;
                        log_rejects(&processed.rejects);
                        for r in &processed.records {
                            serde_json::to_writer(&mut out, &r.record)?;
                            out.write_all(b"\n")?;
                        }
                    }
                }
                Some(up) => {
                    let forwarded =
                        runtime.block_on(up.forward(&pipeline, batch, now_ms(), deadline));
                    summary.pipeline += forwarded.pipeline;
                    summary.upload += forwarded.upload;
                    log_rejects(&forwarded.rejects);
                    for failed in &forwarded.failed {
                        let first = failed.event_ids.first().map_or("", String::as_str);
                        eprintln!(
                            "not delivered: {} records from {first}: {}",
                            failed.event_ids.len(),
                            failed.error
                        );
                    }
                    if let Some(e) = forwarded.worst_error()
                        && worst.as_ref().is_none_or(|w| e.severity() > w.severity())
                    {
                        worst = Some(e.clone());
                    }
                }
            }
        }
    }
    out.flush()?;
    summary.duration_ms = started.elapsed().as_millis() as u64;
    eprintln!("summary: {}", summary.to_json());
    Ok(match worst {
        None => ExitCode::SUCCESS,
        Some(DeliveryError::Transient { .. }) => ExitCode::from(EXIT_UNDELIVERED),
        Some(_) => ExitCode::from(EXIT_REFUSED),
    })
}

fn log_rejects(rejects: &[kaf_pipeline::Reject]) {
    for reject in rejects {
        tracing::warn!(event = %reject.event_id, reason = %reject.reason, "event not forwarded");
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
