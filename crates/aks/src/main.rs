//! `aks-handler`: the Azure Functions custom handler behind an Event Hub trigger fed by AKS diagnostic
//! settings (`kube-audit`, `kube-audit-admin`). Wiring only: per-category configuration at start-up
//! ([`routes`]), then an HTTP server on `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT` ([`app`]), or with
//! `aks-handler drain` a direct Event Hub consumer ([`drain`], cargo feature `drain`).

mod app;
// Without the `drain` feature only the tests use the drain core (the SDK adapter is what calls it).
#[cfg_attr(not(feature = "drain"), allow(dead_code))]
mod drain;
#[cfg(feature = "drain")]
mod eventhubs;
mod routes;

use anyhow::Context as _;
use std::sync::Arc;

// mimalloc: measured faster per pipeline stage than glibc malloc (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let state = app::State::from_env(&env).context("configuration")?;
    if std::env::args().nth(1).as_deref() == Some("drain") {
        return drain(Arc::new(state)).await;
    }
    let port = ["FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT"]
        .iter()
        .find_map(|k| std::env::var(k).ok())
        .unwrap_or_else(|| "8080".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{port}"))?;
    tracing::info!(port = %port, categories = %state.routes.describe(), "aks-handler ready");
    axum::serve(listener, app::app(Arc::new(state))).await?;
    Ok(())
}

#[cfg(feature = "drain")]
async fn drain(state: Arc<app::State>) -> anyhow::Result<()> {
    eventhubs::run(state).await
}

#[cfg(not(feature = "drain"))]
async fn drain(_state: Arc<app::State>) -> anyhow::Result<()> {
    anyhow::bail!(
        "this aks-handler was built without drain mode: cargo build --release -p kaf-aks --features drain"
    )
}
