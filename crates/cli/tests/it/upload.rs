use crate::harness::{cli_async, summary};
use base64::Engine as _;
use kaf_testkit::receiver::{Fault, Receiver};
use serde_json::json;

const KEY: &str = "cli-test-key-SECRET-42";
const LOG_TYPE: &str = "Kubernetes Audit Logs";
const DEMO: &str = "tests/fixtures/samples/liggitt__audit2rbac/testdata__demo.log";

async fn replay(rx: &Receiver, extra: &[(&str, &str)]) -> std::process::Output {
    let config = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        json!({"apiKey": KEY, "logType": LOG_TYPE, "uploadDomain": rx.upload_domain()}).to_string(),
    );
    let mut env = vec![
        ("logTypeConfig".to_string(), config),
        (
            "SSL_CERT_FILE".to_string(),
            rx.ca_file.display().to_string(),
        ),
        ("UPLOAD_BACKOFF_BASE_MS".to_string(), "20".to_string()),
        ("UPLOAD_BACKOFF_MAX_MS".to_string(), "100".to_string()),
        ("RUST_LOG".to_string(), "debug".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    cli_async(
        vec![
            "replay".into(),
            DEMO.into(),
            "--deadline-secs".into(),
            "3".into(),
        ],
        env,
    )
    .await
}

#[tokio::test]
async fn uploads_every_record_and_prints_nothing_on_stdout() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let out = replay(&rx, &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    assert_eq!(rx.records().len(), 37);
    assert_eq!(rx.violations(), Vec::<String>::new());
    assert_eq!(summary(&out)["recordsDelivered"], json!(37));
}

#[tokio::test]
async fn exit_codes_follow_the_failure_class_and_never_show_the_key() {
    for (fault, code) in [
        (Fault::Status(500), 1),
        (
            Fault::Headers(200, vec![("BLOCKED_LOGTYPE".into(), "TRUE".into())]),
            3,
        ),
        (Fault::Status(403), 3),
    ] {
        let rx = Receiver::start(KEY, LOG_TYPE).await;
        rx.set_always(Some(fault.clone()));
        let out = replay(&rx, &[]).await;
        assert_eq!(out.status.code(), Some(code), "{fault:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not delivered records=37"), "{stderr}");
        assert!(!stderr.contains(KEY));
    }
}

#[tokio::test]
async fn the_system_trust_store_does_not_trust_the_test_ca() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let config = base64::engine::general_purpose::STANDARD.encode(
        json!({"apiKey": KEY, "logType": LOG_TYPE, "uploadDomain": rx.upload_domain()}).to_string(),
    );
    // No SSL_CERT_FILE: verification against the system store must fail, never fall back to "insecure".
    let out = cli_async(
        vec![
            "replay".into(),
            DEMO.into(),
            "--deadline-secs".into(),
            "2".into(),
        ],
        vec![("logTypeConfig".into(), config)],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(rx.attempts().is_empty());
}
