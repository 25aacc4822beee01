//! Local emulators and hostile payloads: a deadline that is missing or sent as a duration, the real
//! `cargo lambda watch` as the Runtime API, and a gzip bomb in `awslogs.data`.

use crate::harness::{KEY, LOG_TYPE, base_env, logtypeconfig, start};
use base64::Engine as _;
use flate2::{Compression, write::GzEncoder};
use kaf_testkit::fixtures;
use kaf_testkit::payloads::{AUDIT_STREAM, lambda_event, messages, subscription};
use kaf_testkit::process::spawn;
use kaf_testkit::receiver::{Fault, Receiver};
use kaf_testkit::runtime::{DeadlineHeader, Outcome};
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

fn demo() -> (Value, usize) {
    let events = fixtures::events(&fixtures::audit2rbac_demo());
    (
        lambda_event(&subscription("demo", AUDIT_STREAM, &messages(&events))),
        events.len(),
    )
}

/// Regression: under `cargo lambda watch` (deadline `600000`, a duration) and emulators that send no
/// deadline, every invocation failed with "deadline reached before the first attempt".
#[tokio::test]
async fn a_missing_or_duration_deadline_still_leaves_a_retry_budget() {
    let lambda = start(json!({}), &[("DEADLINE_FALLBACK_SECS", "20")]).await;
    let (event, n) = demo();
    for shape in [DeadlineHeader::Missing, DeadlineHeader::Duration] {
        // A transient fault first: the retry needs a budget.
        lambda.rx.push_faults([Fault::Status(503)]);
        let id = lambda
            .runtime
            .invoke_with(event.clone(), Duration::from_secs(600), shape);
        let done = lambda.runtime.finished(&id, Duration::from_secs(30)).await;
        let Outcome::Response(summary) = &done.outcome else {
            panic!("{shape:?}: {:?}\n{}", done.outcome, lambda.process.output())
        };
        assert_eq!(summary["forwarded"].as_u64(), Some(n as u64), "{shape:?}");
        assert!(summary["retries"].as_u64().unwrap() >= 1);
    }
    assert_eq!(lambda.rx.records().len(), n);
    let output = lambda.process.output();
    assert_eq!(
        output.matches("DEADLINE_FALLBACK_SECS").count(),
        1,
        "one warning per process:\n{output}"
    );
}

/// The emulator people use, for real: `cargo lambda watch --only-lambda-apis` serves the Runtime API, the
/// real `bootstrap` polls it, and `cargo lambda invoke` sends a bundled payload. Runs when cargo-lambda is on
/// PATH (CI installs it; set `KAF_REQUIRE_CARGO_LAMBDA=1` to make its absence a failure).
#[tokio::test]
async fn works_under_cargo_lambda_watch() {
    let Some(cargo_lambda) = which("cargo-lambda") else {
        assert!(
            std::env::var("KAF_REQUIRE_CARGO_LAMBDA").is_err(),
            "cargo-lambda is required here but not on PATH"
        );
        eprintln!("skipped: cargo-lambda not on PATH (pip install cargo-lambda)");
        return;
    };
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let port = kaf_testkit::free_port();
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut watch = tokio::process::Command::new(&cargo_lambda)
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
        ])
        .current_dir(crate_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("cargo lambda watch starts");
    wait_listening(port).await;

    let mut env = base_env(&kaf_testkit::runtime::RuntimeApi::start().await, &rx);
    // What `cargo lambda watch` tells you to set, verbatim.
    for (k, v) in [
        (
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        ),
        ("AWS_LAMBDA_FUNCTION_NAME", "_".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "1".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "4096".into()),
        (
            "logTypeConfig",
            logtypeconfig(&rx.upload_domain(), json!({})),
        ),
    ] {
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v));
    }
    let function = spawn(Path::new(env!("CARGO_BIN_EXE_bootstrap")), &env);

    // The README's local-run payload, as it is committed.
    let data_file = fixtures::dir().join("local/lambda-event.json");
    let n = demo().1;
    let invoke = tokio::process::Command::new(&cargo_lambda)
        .args([
            "lambda",
            "invoke",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
        ])
        .arg(port.to_string())
        .arg("--data-file")
        .arg(&data_file)
        .arg("_")
        .current_dir(crate_dir)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), invoke)
        .await
        .expect("invoke answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{answer}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        function.output()
    );
    let summary: Value = serde_json::from_str(answer.trim()).expect("the summary JSON");
    assert_eq!(summary["forwarded"].as_u64(), Some(n as u64));
    assert_eq!(rx.records().len(), n);
    assert!(function.output().contains("DEADLINE_FALLBACK_SECS"));
    let _ = watch.kill().await;
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

async fn wait_listening(port: u16) {
    kaf_testkit::wait_for(
        Duration::from_secs(60),
        "cargo lambda watch listening",
        || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        },
    )
    .await;
}

/// An `awslogs.data` under 1 MB (what Lambda's async limit allows) that expands to 720 MiB: many gzip
/// members of 16 MiB of zeros each.
fn gzip_bomb_event() -> Value {
    let member = |prefix: &[u8]| {
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        gz.write_all(prefix).unwrap();
        gz.write_all(&vec![b' '; 16 << 20]).unwrap();
        gz.finish().unwrap()
    };
    // A payload whose one message never ends: valid JSON as far as it goes, for 720 MiB.
    let mut bomb = member(br#"{"messageType":"DATA_MESSAGE","logEvents":[{"message":""#);
    bomb.extend(member(b"").repeat(44));
    let data = base64::engine::general_purpose::STANDARD.encode(&bomb);
    assert!(data.len() < 1_000_000, "{}", data.len());
    json!({"awslogs": {"data": data}})
}

fn peak_rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024
}

/// Regression: a 1.4 MB `awslogs.data` reached 1.9 GB of RSS before failing (a 256 MB Lambda is
/// OOM-killed). The bomb fails alone with its own error type, memory stays within the limit, and the next
/// invocation works.
#[tokio::test]
async fn a_gzip_bomb_fails_alone_within_the_decompression_limit() {
    let lambda = start(json!({}), &[]).await;
    let done = lambda
        .invoke(gzip_bomb_event(), Duration::from_secs(30))
        .await;
    let Outcome::Error { body, .. } = &done.outcome else {
        panic!("{:?}", done.outcome)
    };
    assert_eq!(body["errorType"], json!("PayloadTooLargeError"), "{body}");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("MAX_DECOMPRESSED_BYTES"),
        "{body}"
    );
    let pid = lambda.process.child.id().unwrap();
    let peak = peak_rss_mib(pid);
    // Bounded by the 64 MiB default limit, not by the 720 MiB the bomb expands to: at worst one string of
    // the limit's size being grown (twice the limit), plus the process itself; below Lambda's 256 MB.
    assert!(peak < 160, "peak RSS {peak} MiB");
    let (event, n) = demo();
    let summary = lambda.summary(event, Duration::from_secs(30)).await;
    assert_eq!(summary["forwarded"].as_u64(), Some(n as u64));
}

/// What is not a CloudWatch event at all fails the invocation with an error naming the field.
#[tokio::test]
async fn an_event_that_is_not_a_subscription_event_names_the_field() {
    let lambda = start(json!({}), &[]).await;
    for (event, expected) in [
        (json!({"Records": []}), "awslogs"),
        (json!({"awslogs": {"data": "%%%"}}), "base64"),
        (json!({"awslogs": {"data": "aGVsbG8="}}), "gzip"),
    ] {
        let done = lambda.invoke(event, Duration::from_secs(10)).await;
        let Outcome::Error { body, .. } = &done.outcome else {
            panic!("{:?}", done.outcome)
        };
        assert_eq!(body["errorType"], json!("InvalidEventError"));
        assert!(
            body["errorMessage"].as_str().unwrap().contains(expected),
            "{body}"
        );
    }
}

/// `tests/fixtures/local/lambda-event.json`, the README's local-run payload, is the bundled demo sample as
/// a CloudWatch subscription event (`KAF_REGENERATE=1` rewrites it).
#[test]
fn the_bundled_local_event_is_the_demo_sample() {
    let path = fixtures::dir().join("local/lambda-event.json");
    let expected = kaf_testkit::payloads::demo_lambda_event();
    if std::env::var("KAF_REGENERATE").is_ok() {
        std::fs::write(&path, format!("{expected:#}\n")).unwrap();
    }
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let payload = kaf_testkit::payloads::decoded_lambda_event(&committed);
    assert_eq!(
        payload,
        kaf_testkit::payloads::decoded_lambda_event(&expected)
    );
    assert_eq!(payload["logEvents"].as_array().unwrap().len(), 37);
}
