use base64::Engine as _;
use kaf_testkit::process::{Spawned, spawn};
use kaf_testkit::receiver::Receiver;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

pub const KEY: &str = "aks-test-key-SECRET-987";
pub const LOG_TYPE: &str = "Kubernetes Audit Logs";

pub fn config(rx: &Receiver, log_type: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(
        json!({"apiKey": KEY, "logType": log_type, "uploadDomain": rx.upload_domain()}).to_string(),
    )
}

pub struct Handler {
    pub process: Spawned,
    pub port: u16,
    client: reqwest::Client,
}

/// Start `aks-handler` with `env` (plus the port, fast retries and the receiver's CA) and wait until it
/// answers `GET /`, as the Functions host does before the first invocation.
pub async fn start(ca_file: &Path, env: &[(&str, String)]) -> Handler {
    let port = kaf_testkit::free_port();
    let mut all: Vec<(String, String)> = vec![
        ("FUNCTIONS_CUSTOMHANDLER_PORT".into(), port.to_string()),
        ("SSL_CERT_FILE".into(), ca_file.display().to_string()),
        ("UPLOAD_BACKOFF_BASE_MS".into(), "20".into()),
        ("UPLOAD_BACKOFF_MAX_MS".into(), "200".into()),
        ("UPLOAD_REQUEST_TIMEOUT_MS".into(), "1000".into()),
        ("DEADLINE_SAFETY_MARGIN_MS".into(), "300".into()),
        ("RUST_LOG".into(), "debug".into()),
    ];
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let process = spawn(Path::new(env!("CARGO_BIN_EXE_aks-handler")), &all);
    let client = kaf_upload::local_http_client(Some(Duration::from_secs(30))).unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "not ready:\n{}",
            process.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Handler {
        process,
        port,
        client,
    }
}

/// The host's answer, checked against the contract: 200, JSON, `Outputs`/`Logs`/`ReturnValue`.
pub struct Answer {
    pub outputs: Value,
    pub logs: Vec<String>,
}

impl Answer {
    /// The handler's one summary line, parsed.
    pub fn summary(&self) -> Value {
        assert_eq!(self.logs.len(), 1, "{:?}", self.logs);
        let json = self.logs[0]
            .strip_prefix("kube-audit-forwarder ")
            .expect("summary prefix");
        serde_json::from_str(json).unwrap()
    }

    pub fn failover(&self) -> Vec<Value> {
        self.outputs
            .get("failover")
            .and_then(Value::as_str)
            .map(|t| {
                t.lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Handler {
    pub async fn invoke(&self, request: &Value) -> Answer {
        let response = self
            .client
            .post(format!("http://127.0.0.1:{}/KubeAudit", self.port))
            .header("Content-Type", "application/json")
            .header(
                "X-Azure-Functions-InvocationId",
                "4f6c1a2e-0000-4000-8000-000000000001",
            )
            .header("User-Agent", "Azure-Functions-Host/4.1037.0")
            .body(request.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        let body: Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).expect("JSON body");
        assert!(
            body["ReturnValue"].is_null() && body["Outputs"].is_object(),
            "{body}"
        );
        let logs = body["Logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        Answer {
            outputs: body["Outputs"].clone(),
            logs,
        }
    }
}
