//! `doctor` against the fake upload API: a working setup, a bad key, a quota refusal, an untrusted
//! certificate, and configuration problems reported as JSON.

use crate::harness::cli_async;
use base64::Engine as _;
use kaf_testkit::receiver::{Fault, Receiver};
use serde_json::{Value, json};

const KEY: &str = "doctor-test-key-SECRET-77";
const LOG_TYPE: &str = "Kubernetes Audit Logs";

fn config(rx: &Receiver, key: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(
        json!({"apiKey": key, "logType": LOG_TYPE, "uploadDomain": rx.upload_domain()}).to_string(),
    )
}

/// The environment of a host configured for `rx` with `key`, trusting the CA in `ca_file`.
fn env_for(rx: &Receiver, key: &str, ca_file: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("logTypeConfig", config(rx, key)),
        ("SSL_CERT_FILE", ca_file.display().to_string()),
    ]
}

async fn doctor(args: &[&str], env: Vec<(&str, String)>) -> (Option<i32>, String) {
    let mut all = vec!["doctor".to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let out = cli_async(
        all,
        env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!stdout.contains(KEY), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(KEY));
    (out.status.code(), stdout)
}

#[tokio::test]
async fn a_working_setup_passes_every_check_and_the_test_record_arrives() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let (code, report) = doctor(&["--send-test"], env_for(&rx, KEY, &rx.ca_file)).await;
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.contains("ok   logtypeconfig logTypeConfig: log type \"Kubernetes Audit Logs\""),
        "{report}"
    );
    assert!(report.contains("ok   audit policy: none set"), "{report}");
    // The chain the fake server sent, in words: the leaf and who issued it, with its expiry.
    let tls = report
        .lines()
        .find(|l| l.contains(" TLS https://127.0.0.1:"))
        .unwrap();
    assert!(
        tls.starts_with("ok   ") && tls.contains("handshake verified"),
        "{tls}"
    );
    assert!(
        tls.contains("issued by") && tls.contains("expires"),
        "{tls}"
    );
    let accepted = rx.accepted();
    assert_eq!(accepted.len(), 1);
    assert!(
        report.contains(&format!("accepted, x-uploadid {}", accepted[0].upload_id)),
        "{report}"
    );
    assert_eq!(accepted[0].records.len(), 1);
    assert_eq!(accepted[0].records[0]["kaf_doctor"], true);
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());
    assert!(report.ends_with("4 checks, 0 failed\n"), "{report}");
}

#[tokio::test]
async fn a_bad_key_is_the_refusal_named() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let (code, report) = doctor(&["--send-test"], env_for(&rx, "not-the-key", &rx.ca_file)).await;
    assert_eq!(code, Some(1), "{report}");
    let line = report.lines().find(|l| l.contains("test upload")).unwrap();
    assert!(
        line.starts_with("FAIL") && line.contains("rejected with HTTP 400: check apiKey"),
        "{line}"
    );
    assert!(rx.records().is_empty());
}

#[tokio::test]
async fn a_quota_refusal_names_the_signal() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    rx.set_always(Some(Fault::Headers(
        200,
        vec![("LOG_LICENSE_EXCEEDS".into(), "True".into())],
    )));
    let (code, report) = doctor(&["--send-test"], env_for(&rx, KEY, &rx.ca_file)).await;
    assert_eq!(code, Some(1), "{report}");
    let line = report.lines().find(|l| l.contains("test upload")).unwrap();
    assert!(
        line.starts_with("FAIL") && line.contains("quota or account signal `LOG_LICENSE_EXCEEDS`"),
        "{line}"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_fails_the_handshake_and_nothing_is_sent() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let other = Receiver::start(KEY, LOG_TYPE).await;
    let (code, report) = doctor(
        &["--send-test"],
        // Another CA than the one that signed the server's certificate.
        env_for(&rx, KEY, &other.ca_file),
    )
    .await;
    assert_eq!(code, Some(1), "{report}");
    let tls = report.lines().find(|l| l.contains("TLS https://")).unwrap();
    assert!(
        tls.starts_with("FAIL") && tls.contains("UnknownIssuer"),
        "{tls}"
    );
    assert!(!report.contains("test upload"), "{report}");
    assert!(rx.attempts().is_empty());
}

#[tokio::test]
async fn configuration_problems_are_named_in_json() {
    let (code, report) = doctor(
        &["--json"],
        vec![
            (
                "S247_kube_audit",
                "@Microsoft.KeyVault(SecretUri=https://kv-kaf.vault.azure.net/secrets/logtypeconfig/)".into(),
            ),
            ("AUDIT_POLICY", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n".into()),
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{report}");
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["ok"], false);
    let checks = report["checks"].as_array().unwrap();
    let by_name = |name: &str| checks.iter().find(|c| c["name"] == name).unwrap();
    let kv = by_name("logtypeconfig S247_kube_audit");
    assert_eq!(kv["ok"], false);
    assert!(
        kv["detail"]
            .as_str()
            .unwrap()
            .contains("unresolved Key Vault reference"),
        "{kv}"
    );
    let policy = by_name("audit policy");
    assert_eq!(policy["ok"], false);
    assert!(
        policy["detail"]
            .as_str()
            .unwrap()
            .contains("at least one rule"),
        "{policy}"
    );
}
