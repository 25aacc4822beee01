//! `bootstrap`: the AWS Lambda (provided.al2023) behind a CloudWatch Logs subscription on
//! `/aws/eks/<cluster>/cluster`. Wiring only: configuration at init ([`init`]), then the Runtime API loop
//! ([`runtime`]) calling [`handler::handle`]. Configuration errors are reported to the Runtime API's
//! init-error endpoint and end the process, so a bad logtypeconfig shows up as an init failure, never as lost
//! events.

mod handler;
mod init;
mod metrics;
mod runtime;

use futures_util::FutureExt as _;
use runtime::{Diagnostic, RuntimeApi};
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;

// mimalloc: the pipeline allocates many small strings; it measured 17–45% faster per stage than glibc malloc
// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread: a Lambda function gets a fraction of a vCPU, and hand-offs between runtime workers are context
// switches it pays for (issue "Small invocations").
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    init_tracing();
    let api = match RuntimeApi::from_env() {
        Ok(api) => api,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot reach the Runtime API");
            return ExitCode::FAILURE;
        }
    };
    let forwarder = match init::Forwarder::from_env().await {
        Ok(f) => f,
        Err(e) => {
            let message = format!("{e:#}");
            tracing::error!(error = %message, "initialisation failed");
            let diagnostic = Diagnostic {
                error_type: "InitConfigurationError".into(),
                error_message: message,
            };
            if let Err(e) = api.init_error(&diagnostic).await {
                tracing::error!(error = %format!("{e:#}"), "init error not reported");
            }
            return ExitCode::FAILURE;
        }
    };
    // The loop runs as a spawned task, not as `block_on`'s own future: `block_on` polls the I/O driver (an
    // `epoll_wait` that does not block) each time its own future is woken, while a task woken on this thread
    // is only queued. Six `epoll_wait` calls per invocation became three (strace).
    tokio::spawn(serve(api, forwarder))
        .await
        .unwrap_or(ExitCode::FAILURE)
}

/// `next` → handler → result, until the Runtime API goes away.
async fn serve(api: RuntimeApi, forwarder: init::Forwarder) -> ExitCode {
    loop {
        let invocation = match api.next().await {
            Ok(invocation) => invocation,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "Runtime API gone; exiting");
                return ExitCode::FAILURE;
            }
        };
        // A panic fails this invocation (Lambda keeps the event), never the process.
        let outcome = AssertUnwindSafe(handler::handle(&forwarder, &invocation))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Err(Diagnostic {
                    error_type: "HandlerPanic".into(),
                    error_message: "the handler panicked; the event is kept for Lambda's retries"
                        .into(),
                })
            });
        let reported = match outcome {
            Ok(summary) => api.respond(&invocation.request_id, summary).await,
            Err(error) => api.fail(&invocation.request_id, &error).await,
        };
        if let Err(e) = reported {
            tracing::error!(error = %format!("{e:#}"), "Runtime API refused the result; exiting");
            return ExitCode::FAILURE;
        }
    }
}

/// Lambda's advanced logging controls: `AWS_LAMBDA_LOG_FORMAT=JSON` for JSON lines, level from
/// `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `info`. Lambda stamps each line itself: no timestamps.
fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(level.to_ascii_lowercase())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .with_env_filter(filter);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
