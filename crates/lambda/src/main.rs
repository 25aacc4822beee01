//! `bootstrap`: the AWS Lambda (provided.al2023) behind a CloudWatch Logs subscription on
//! `/aws/eks/<cluster>/cluster`. Wiring only: configuration at init, then the runtime loop calling
//! [`handler::handle`]. Configuration errors are reported to the Runtime API's init-error endpoint and end the
//! process, so a bad logtypeconfig shows up as an init failure, never as lost events.

mod handler;
mod init;
mod metrics;

use lambda_runtime::{LambdaEvent, service_fn};

// mimalloc: the pipeline allocates many small strings; it measured 17–45% faster per stage than glibc malloc
// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let forwarder = match init::Forwarder::from_env().await {
        Ok(f) => Arc::new(f),
        Err(e) => {
            init::report_init_error(&e).await;
            std::process::exit(1);
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        let forwarder = forwarder.clone();
        async move { handler::handle(&forwarder, event).await }
    }))
    .await
}
