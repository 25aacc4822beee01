use base64::Engine as _;
use kaf_testkit::process::{Spawned, spawn};
use kaf_testkit::receiver::Receiver;
use kaf_testkit::runtime::RuntimeApi;
use serde_json::{Value, json};
use std::path::Path;

pub const KEY: &str = "lambda-test-key-SECRET-0123456789";
pub const LOG_TYPE: &str = "Kubernetes Audit Logs";

pub fn logtypeconfig(upload_domain: &str, extra: Value) -> String {
    let mut config = json!({"apiKey": KEY, "logType": LOG_TYPE, "uploadDomain": upload_domain});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    base64::engine::general_purpose::STANDARD.encode(config.to_string())
}

/// Fast retries so fault tests take seconds; everything else as in production.
pub fn base_env(runtime: &RuntimeApi, rx: &Receiver) -> Vec<(String, String)> {
    let mut env = runtime.lambda_env();
    env.extend(
        [
            ("SSL_CERT_FILE", rx.ca_file.display().to_string()),
            ("UPLOAD_BACKOFF_BASE_MS", "20".into()),
            ("UPLOAD_BACKOFF_MAX_MS", "200".into()),
            ("UPLOAD_REQUEST_TIMEOUT_MS", "1000".into()),
            ("DEADLINE_SAFETY_MARGIN_MS", "500".into()),
            ("RUST_LOG", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v)),
    );
    env
}

pub struct Lambda {
    pub runtime: RuntimeApi,
    pub rx: Receiver,
    pub process: Spawned,
}

/// Receiver, Runtime API and a running `bootstrap` configured for the receiver.
pub async fn start(extra_config: Value, extra_env: &[(&str, &str)]) -> Lambda {
    let runtime = RuntimeApi::start().await;
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let mut env = base_env(&runtime, &rx);
    env.push((
        "logTypeConfig".into(),
        logtypeconfig(&rx.upload_domain(), extra_config),
    ));
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let process = spawn(Path::new(env!("CARGO_BIN_EXE_bootstrap")), &env);
    Lambda {
        runtime,
        rx,
        process,
    }
}

/// The Embedded Metric Format lines the function printed.
pub fn emf_lines(output: &str) -> Vec<Value> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect()
}

impl Lambda {
    /// Queue `event` with the function timeout `timeout` and wait for its outcome.
    pub async fn invoke(
        &self,
        event: Value,
        timeout: std::time::Duration,
    ) -> kaf_testkit::runtime::Finished {
        let id = self.runtime.invoke(event, timeout);
        self.runtime
            .finished(&id, timeout + std::time::Duration::from_secs(10))
            .await
    }

    /// [`Lambda::invoke`] that must succeed: the returned summary.
    pub async fn summary(&self, event: Value, timeout: std::time::Duration) -> Value {
        match self.invoke(event, timeout).await.outcome {
            kaf_testkit::runtime::Outcome::Response(v) => v,
            kaf_testkit::runtime::Outcome::Error { body, .. } => {
                panic!("expected success, got {body}")
            }
        }
    }
}
