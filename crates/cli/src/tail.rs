//! `tail FILE`: the kube-apiserver log backend (`--audit-log-path`) on self-managed clusters.
//!
//! Follows the file across lumberjack rotation and compression, truncation and our own restarts. The
//! checkpoint is advanced only after a chunk is delivered; before sending, the chunk's range is written down,
//! so after a crash exactly that chunk is resent, with the same event ids and hence the same `upload-id`.
//! Failed deliveries are retried forever with backoff: the file is the buffer.

use crate::forwarding::{ForwardArgs, Output};
use anyhow::Context as _;
use kaf_envelope::{Batch, Source};
use kaf_tail::{Checkpoint, Follower, Start};
use kaf_upload::retry::Backoff;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// While the file does not exist (a mistyped path, or an apiserver that has not written it yet): one
/// warning at most this often.
const MISSING_WARNING_EVERY: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct Args {
    /// The live audit log, e.g. /var/log/kubernetes/audit/audit.log.
    file: PathBuf,
    /// Checkpoint file [default: FILE with `.kaf-checkpoint` appended].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Ignore the checkpoint: read every rotated backup (oldest first), then the live file. Without a
    /// checkpoint and without this flag, reading starts at the beginning of the live file.
    #[arg(long)]
    from_start: bool,
    /// Exit once everything present has been delivered, instead of following.
    #[arg(long)]
    once: bool,
    /// How often to look for new lines and rotations, in milliseconds.
    #[arg(long, default_value_t = 250)]
    poll_ms: u64,
    /// Most events per delivery.
    #[arg(long, default_value_t = 500)]
    batch_events: usize,
    /// How long one delivery attempt may retry before backing off, in seconds.
    #[arg(long, default_value_t = 60)]
    deadline_secs: u64,
    #[command(flatten)]
    forward: ForwardArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (pipeline, config) = args.forward.pipeline()?;
    let checkpoint_path = args.checkpoint.clone().unwrap_or_else(|| {
        let mut p = args.file.clone().into_os_string();
        p.push(".kaf-checkpoint");
        p.into()
    });
    let start = if args.from_start {
        Start::FromStart
    } else {
        match Checkpoint::load(&checkpoint_path)? {
            Some(checkpoint) => Start::Checkpoint(checkpoint),
            None => Start::LiveFile,
        }
    };
    let stream = args.file.file_name().map_or_else(
        || args.file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    // With --once, a file that is not there is a mistake to report, not "nothing new".
    if args.once && !args.file.exists() {
        eprintln!("error: {}: no such file", args.file.display());
        return Ok(ExitCode::from(crate::replay::EXIT_USAGE));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let mut summary = kaf_upload::Summary::default();
    let exit = runtime.block_on(async {
        let sink = Output::new(config.as_ref(), args.forward.output)?;
        let mut follower = Follower::new(&args.file, start);
        let mut stop = std::pin::pin!(crate::serve::shutdown_signal()?);
        let poll = Duration::from_millis(args.poll_ms);
        let mut warned_missing: Option<std::time::Instant> = None;
        // From the start, the backlog (backups, then the live file) is a long input: show how far along it is.
        let backlog = match args.from_start {
            true => kaf_tail::Follower::backlog(&args.file).unwrap_or_default(),
            false => Vec::new(),
        };
        let progress = match backlog.len() {
            0 => indicatif::ProgressBar::hidden(),
            n => crate::progress::bar(n as u64, false, config.is_none()),
        };
        loop {
            let chunk = follower
                .poll(args.batch_events, kaf_upload::Limits::default().max_bytes)
                .with_context(|| format!("reading {}", args.file.display()))?;
            let Some(chunk) = chunk else {
                // Caught up.
                progress.finish_and_clear();
                if args.once {
                    return Ok(ExitCode::SUCCESS);
                }
                if !args.file.exists()
                    && warned_missing.is_none_or(|at| at.elapsed() >= MISSING_WARNING_EVERY)
                {
                    tracing::warn!(file = %args.file.display(), "no such file yet; waiting for it to appear");
                    warned_missing = Some(std::time::Instant::now());
                }
                tokio::select! {
                    () = tokio::time::sleep(poll) => continue,
                    () = &mut stop => return Ok(ExitCode::SUCCESS),
                }
            };
            if let Some(at) = backlog.iter().position(|p| *p == chunk.path) {
                progress.set_position(at as u64);
                progress.set_message(chunk.path.display().to_string());
            }
            chunk.pending().save(&checkpoint_path)?;
            let mut backoff = Backoff::new(Duration::from_secs(1), MAX_BACKOFF);
            loop {
                let batch = Batch {
                    source: Source {
                        cluster: args.forward.cluster.clone(),
                        stream: stream.clone(),
                        event_pointer: None,
                    },
                    events: chunk.events.clone(),
                };
                let deadline = tokio::time::Instant::now() + Duration::from_secs(args.deadline_secs);
                // A delivery in progress is finished before a clean stop, so a restart resends nothing.
                let delivered = sink.deliver(&pipeline, batch, deadline).await;
                summary.pipeline += delivered.pipeline;
                summary.upload += delivered.upload;
                if let Some(e) = delivered.output_error {
                    return Err(anyhow::Error::new(e).context("writing records to stdout"));
                }
                let Some(error) = delivered.error else { break };
                let delay = backoff.next_delay();
                tracing::warn!(%error, file = %chunk.path.display(), offset = chunk.start, retry_in_ms = delay.as_millis() as u64, "not delivered; will retry the same lines");
                tokio::select! {
                    _ = Backoff::wait(delay, None) => {}
                    () = &mut stop => return Ok(ExitCode::SUCCESS),
                }
            }
            chunk.delivered().save(&checkpoint_path)?;
        }
    });
    // The same summary line as `replay`, on the way out (--once, or a stop signal).
    summary.duration_ms = started.elapsed().as_millis() as u64;
    eprintln!("summary: {}", summary.to_json());
    exit
}
