//! `replay`: files → envelope → pipeline → stdout or upload.
//!
//! Exit codes: 0 all records printed/delivered; 1 some records not delivered (transient); 2 bad usage or
//! configuration, or a file that could not be decoded (the other files are still forwarded); 3 quota or
//! configuration refused by the service. Bad events inside a file never change the exit code: they are
//! counted in the summary.

use crate::forwarding::{ForwardArgs, Output};
use anyhow::Context as _;
use kaf_envelope::EnvelopeStats;
use kaf_envelope::sniff::{FileContext, decode_file};
use kaf_upload::{DeliveryError, Summary};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub const EXIT_UNDELIVERED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_REFUSED: u8 = 3;
/// The default bound on what one gzip'd file, or one CloudWatch payload in it, may decompress to.
pub const DEFAULT_MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;

#[derive(clap::Args)]
pub struct Args {
    /// Files to replay (.json, .jsonl, .log; optionally gzip-compressed).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    forward: ForwardArgs,
    /// Only CloudWatch streams with this prefix are forwarded.
    #[arg(long, default_value = kaf_envelope::cloudwatch::AUDIT_STREAM_PREFIX)]
    stream_prefix: String,
    /// How long an upload may keep retrying, in seconds.
    #[arg(long, default_value_t = 300)]
    deadline_secs: u64,
    /// Most bytes a gzip'd file, or one CloudWatch payload inside it, may decompress to. A file over it fails
    /// alone, with an error naming it (a gzip bomb cannot exhaust memory).
    #[arg(long, default_value_t = DEFAULT_MAX_DECOMPRESSED)]
    max_decompressed_bytes: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (pipeline, config) = args.forward.pipeline()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sink = runtime.block_on(async { Output::new(config.as_ref(), args.forward.output) })?;

    let started = Instant::now();
    let mut summary = Summary::default();
    let mut worst: Option<DeliveryError> = None;
    let mut unreadable = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.deadline_secs);
    let sizes: Vec<u64> = args
        .files
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .collect();
    let progress = crate::progress::bar(sizes.iter().sum(), true, config.is_none());
    let mut done_bytes = 0;

    for (path, size) in args.files.iter().zip(sizes) {
        let origin = path.display().to_string();
        progress.set_message(origin.clone());
        let bytes = std::fs::read(path).with_context(|| format!("reading {origin}"))?;
        let ctx = FileContext {
            origin: &origin,
            cluster: &args.forward.cluster,
            stream_prefix: &args.stream_prefix,
            max_decompressed: args.max_decompressed_bytes,
        };
        let mut envelope = EnvelopeStats::default();
        // A file that cannot be decoded fails alone: the others are still forwarded.
        let batches = match decode_file(&bytes, &ctx, &mut envelope) {
            Ok(batches) => batches,
            Err(e) => {
                progress.suspend(|| eprintln!("error: decoding {origin}: {e}"));
                unreadable += 1;
                done_bytes += size;
                progress.set_position(done_bytes);
                continue;
            }
        };
        drop(bytes);
        summary.envelope += envelope;
        let batch_count = batches.len().max(1) as u64;
        for batch in batches {
            progress.inc(size / batch_count);
            let delivered = runtime.block_on(sink.deliver(&pipeline, batch, deadline));
            summary.pipeline += delivered.pipeline;
            summary.upload += delivered.upload;
            if let Some(e) = delivered.output_error {
                // stdout is gone (`| head`) or full: nothing more can be printed.
                return Err(anyhow::Error::new(e).context("writing records to stdout"));
            }
            if let Some(e) = delivered.error
                && worst.as_ref().is_none_or(|w| e.severity() > w.severity())
            {
                worst = Some(e);
            }
        }
        done_bytes += size;
        progress.set_position(done_bytes);
    }
    progress.finish_and_clear();
    summary.duration_ms = started.elapsed().as_millis() as u64;
    eprintln!("summary: {}", summary.to_json());
    Ok(match worst {
        None if unreadable > 0 => ExitCode::from(EXIT_USAGE),
        None => ExitCode::SUCCESS,
        Some(DeliveryError::Transient { .. }) => ExitCode::from(EXIT_UNDELIVERED),
        Some(_) => ExitCode::from(EXIT_REFUSED),
    })
}
