//! `serve`: the kube-apiserver webhook backend's receiving end, for self-managed clusters.
//!
//! HTTPS listener → auth → `EventList` → durable spool (answer 200 only after fsync) → delivery loop →
//! pipeline → upload. A spool over its bound answers 429 with `Retry-After`, so the apiserver backs off
//! and resends; resent events are dropped by `(auditID, stage)`. A group of segments is removed from the
//! spool only after delivery, and resent with the same ids (hence `upload-id`s) after a crash.

mod auth;
mod conn;
mod http;
mod metrics;
mod tls;

use crate::forwarding::{ForwardArgs, Output};
use anyhow::Context as _;
use http::{AppState, Peer};
use kaf_envelope::{Batch, Source};
use kaf_pipeline::Pipeline;
use kaf_spool::{Spool, SpoolOptions};
use kaf_upload::retry::Backoff;
use metrics::{ClassLabel, Metrics};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// Events per delivery group: a few upload requests' worth, so a crash resends little.
const GROUP_EVENTS: usize = 2000;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
#[command(group(
    clap::ArgGroup::new("authentication").required(true).multiple(true).args(["token_file", "client_ca"])
))]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Server certificate chain (PEM).
    #[arg(long)]
    tls_cert: PathBuf,
    /// Server private key (PEM).
    #[arg(long)]
    tls_key: PathBuf,
    /// Accepted bearer tokens, one per line (several for rotation). This, --client-ca, or both is required.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// CA (PEM) whose client certificates are accepted. This, --token-file, or both is required.
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// Accept only client certificates with this CN or DNS name (repeatable).
    #[arg(long, requires = "client_ca")]
    client_name: Vec<String>,
    /// Where accepted batches wait for delivery.
    #[arg(long)]
    spool_dir: PathBuf,
    /// Undelivered bytes past which requests get 429.
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    spool_max_bytes: u64,
    /// `Retry-After` seconds sent with 429.
    #[arg(long, default_value_t = 10)]
    retry_after_secs: u64,
    /// Largest request body accepted (after decompression).
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    max_body_bytes: usize,
    /// How long delivered events are remembered to drop resent batches. An event is identified by its
    /// auditID, stage and both timestamps.
    #[arg(long, default_value_t = 900)]
    dedupe_window_secs: u64,
    /// How long one delivery attempt of a spool group may retry before backing off, in seconds.
    #[arg(long, default_value_t = 60)]
    deadline_secs: u64,
    /// Most open client connections; at the cap the oldest idle one is closed for a new one. Never more than
    /// the descriptor limit (`ulimit -n`) allows.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a client has to complete the TLS handshake.
    #[arg(long, default_value_t = 10)]
    handshake_timeout_secs: u64,
    /// Seconds a client has to send a request's headers (also how long an idle keep-alive connection stays).
    #[arg(long, default_value_t = 20)]
    header_timeout_secs: u64,
    /// Seconds a client has to send a request's body.
    #[arg(long, default_value_t = 60)]
    body_timeout_secs: u64,
    #[command(flatten)]
    forward: ForwardArgs,
}

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(
        args.token_file.is_some() || args.client_ca.is_some(),
        "serve needs --token-file and/or --client-ca: the endpoint never runs unauthenticated"
    );
    let (pipeline, config) = args.forward.pipeline()?;
    let tls = tls::server_config(&args.tls_cert, &args.tls_key, args.client_ca.as_deref())?;
    let auth = auth::Auth::load(args.token_file.as_deref(), args.client_name.clone())?;
    let spool = Spool::open(
        &args.spool_dir,
        SpoolOptions {
            max_bytes: args.spool_max_bytes,
            dedupe_window: Duration::from_secs(args.dedupe_window_secs),
            ..SpoolOptions::default()
        },
    )
    .with_context(|| format!("--spool-dir {}", args.spool_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let sink = Output::new(config.as_ref(), args.forward.output)?;
        let state = Arc::new(AppState {
            spool: Arc::new(spool),
            auth,
            metrics: Metrics::new(),
            retry_after_secs: args.retry_after_secs,
            max_body_bytes: args.max_body_bytes,
            body_timeout: Duration::from_secs(args.body_timeout_secs),
            spooled: tokio::sync::Notify::new(),
        });
        let fd_room = conn::descriptor_limit().map_or(usize::MAX, |n| {
            n.saturating_sub(conn::RESERVED_DESCRIPTORS).max(1)
        });
        if args.max_connections > fd_room {
            tracing::warn!(
                max_connections = args.max_connections,
                allowed = fd_room,
                "--max-connections is above what the descriptor limit allows; using the lower value"
            );
        }
        let limits = ConnectionLimits {
            connections: conn::Connections::new(args.max_connections.min(fd_room)),
            handshake: Duration::from_secs(args.handshake_timeout_secs),
            headers: Duration::from_secs(args.header_timeout_secs),
        };
        let shutdown = shutdown_signal()?;
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("--listen {}", args.listen))?;
        tracing::info!(addr = %listener.local_addr()?, "serving the audit webhook");
        eprintln!("listening on https://{}", listener.local_addr()?);
        let delivery = Delivery {
            state: state.clone(),
            pipeline,
            sink,
            cluster: args.forward.cluster.clone(),
            attempt_deadline: Duration::from_secs(args.deadline_secs),
        };
        tokio::select! {
            () = accept_loop(listener, TlsAcceptor::from(Arc::new(tls)), state, limits) => {}
            () = delivery.run() => {}
            () = shutdown => tracing::info!("shutting down; undelivered events stay in the spool"),
        }
        Ok(std::process::ExitCode::SUCCESS)
    })
}

/// How connections are admitted and how long each may take.
struct ConnectionLimits {
    connections: Arc<conn::Connections>,
    handshake: Duration,
    headers: Duration,
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<AppState>,
    limits: ConnectionLimits,
) {
    let app = http::router(state.clone());
    let connections = limits.connections.clone();
    let mut backoff = Backoff::exact(Duration::from_millis(10), Duration::from_secs(1));
    let mut last_report: Option<tokio::time::Instant> = None;
    let mut unreported = 0u64;
    loop {
        state
            .metrics
            .connections_evicted
            .inc_by(connections.room().await);
        let (tcp, addr) = match listener.accept().await {
            Ok(conn) => {
                backoff.reset();
                conn
            }
            Err(e) => {
                state.metrics.accept_errors.inc();
                let exhausted = conn::is_resource_exhaustion(&e);
                // Out of descriptors: free one by closing the oldest idle connection, and back off
                // instead of spinning on an accept that fails at once.
                if exhausted && connections.evict_idle() {
                    state.metrics.connections_evicted.inc();
                }
                unreported += 1;
                let now = tokio::time::Instant::now();
                if last_report.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
                    tracing::warn!(error = %e, failures = unreported, "accept failed; backing off (said at most every 10 s)");
                    last_report = Some(now);
                    unreported = 0;
                }
                Backoff::wait(backoff.next_delay(), None).await;
                continue;
            }
        };
        let admitted = connections.admit();
        state
            .metrics
            .connections_open
            .set(connections.open() as i64);
        let (acceptor, app, state, connections) = (
            acceptor.clone(),
            app.clone(),
            state.clone(),
            connections.clone(),
        );
        let (handshake, headers) = (limits.handshake, limits.headers);
        tokio::spawn(async move {
            let id = admitted.id;
            let close = admitted.close.clone();
            let serve = async {
                let tls = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(remote = %addr, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(remote = %addr, "TLS handshake timed out");
                        return;
                    }
                };
                let peer = Peer {
                    addr,
                    cert: auth::PeerCert::from_tls(tls.get_ref().1.peer_certificates()),
                };
                let service = hyper::service::service_fn(
                    move |mut request: hyper::Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(peer.clone());
                        let (app, connections) = (app.clone(), connections.clone());
                        async move {
                            connections.request(id, true);
                            let response = app.oneshot(request).await;
                            connections.request(id, false);
                            response
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(headers)
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            };
            tokio::select! {
                () = serve => {}
                () = close.notified() => tracing::debug!(remote = %addr, "idle connection closed to make room"),
            }
            drop(admitted);
            state
                .metrics
                .connections_open
                .set(state.metrics.connections_open.get() - 1);
        });
    }
}

struct Delivery {
    state: Arc<AppState>,
    pipeline: Pipeline,
    sink: Output,
    cluster: String,
    attempt_deadline: Duration,
}

impl Delivery {
    /// Deliver spool groups oldest first, forever; a failed group is retried (same ids) after a backoff, so
    /// the spool fills and the apiserver is told to wait instead of events being dropped.
    async fn run(self) {
        let mut backoff = Backoff::new(Duration::from_secs(1), MAX_BACKOFF);
        loop {
            let spool = self.state.spool.clone();
            let next = tokio::task::spawn_blocking(move || {
                let group = spool.next_group(GROUP_EVENTS)?;
                match group {
                    Some(group) => Ok(Some((spool.read_group(&group)?, group))),
                    None => Ok(None),
                }
            })
            .await
            .unwrap_or_else(|e| {
                Err(kaf_spool::SpoolError::Io {
                    action: "read",
                    path: PathBuf::new(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
            let (events, group) = match next {
                Ok(Some(found)) => found,
                Ok(None) => {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), self.state.spooled.notified())
                            .await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool");
                    Backoff::wait(backoff.next_delay(), None).await;
                    continue;
                }
            };
            let batch = Batch {
                source: Source {
                    cluster: self.cluster.clone(),
                    stream: "webhook".into(),
                    event_pointer: None,
                },
                events,
            };
            let deadline = tokio::time::Instant::now() + self.attempt_deadline;
            let delivered = self.sink.deliver(&self.pipeline, batch, deadline).await;
            let metrics = &self.state.metrics;
            metrics
                .records_delivered
                .inc_by(delivered.upload.records_delivered);
            if let Some(error) = delivered.error {
                metrics
                    .delivery_failures
                    .get_or_create(&ClassLabel {
                        class: error.class(),
                    })
                    .inc();
                let delay = backoff.next_delay();
                tracing::warn!(%error, undelivered = delivered.undelivered, retry_in_ms = delay.as_millis() as u64, "spool group not delivered; kept for retry");
                Backoff::wait(delay, None).await;
                continue;
            }
            metrics.count_delivered(&delivered.pipeline);
            backoff.reset();
            let spool = self.state.spool.clone();
            match tokio::task::spawn_blocking(move || spool.complete(&group)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "delivered, but the spool could not be updated; the group will be resent with the same upload-ids")
                }
                Err(e) => tracing::error!(error = %e, "spool task failed"),
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed now, not on first poll, so a signal that
/// arrives while work is in progress is remembered instead of killing the process.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
