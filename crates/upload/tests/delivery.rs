//! The upload client against the strict TLS receiver: contract, limits, retries, classification.
#![allow(clippy::unwrap_used)]

use kaf_config::LogTypeConfig;
use kaf_pipeline::OutRecord;
use kaf_testkit::receiver::{Fault, Receiver};
use kaf_upload::{DeliveryError, Limits, TrustRoots, UploadSettings, Uploader};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

const KEY: &str = "test-api-key-0123456789";
const LOG_TYPE: &str = "Kubernetes Audit Logs";

fn uploader(rx: &Receiver, tweak: impl FnOnce(&mut UploadSettings)) -> Uploader {
    let config = LogTypeConfig::from_json(
        &json!({"apiKey": KEY, "logType": LOG_TYPE, "uploadDomain": rx.upload_domain()})
            .to_string(),
    )
    .unwrap();
    let mut settings = UploadSettings {
        request_timeout: Duration::from_millis(800),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        safety_margin: Duration::from_millis(200),
        trust: TrustRoots::PemFile(rx.ca_file.clone()),
        ..UploadSettings::default()
    };
    tweak(&mut settings);
    Uploader::new(&config, settings).unwrap()
}

/// Records made from the real audit2rbac events (pipeline output shape).
fn records(n: usize) -> Vec<OutRecord> {
    let events = kaf_testkit::fixtures::events(&kaf_testkit::fixtures::audit2rbac_v1beta1());
    (0..n)
        .map(|i| {
            let e = &events[i % events.len()];
            OutRecord::new(
                format!("ev-{i}"),
                json!({
                    "seq": i, "auditid": e["auditID"], "verb": e["verb"], "requesturi": e["requestURI"],
                    "responsestatus_code": e["responseStatus"]["code"], "_zl_timestamp": 1_505_159_705_000_i64 + i as i64,
                    "s247agentuid": "demo"
                })
                .as_object()
                .unwrap(),
                &kaf_upload::format::SITE24X7,
            )
        })
        .collect()
}

fn seqs(rx: &Receiver) -> Vec<u64> {
    let mut s: Vec<u64> = rx
        .records()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    s.sort_unstable();
    s
}

fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

#[tokio::test]
async fn delivers_every_record_once_within_the_limits() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let up = uploader(&rx, |_| {});
    let outcome = up
        .deliver("demo/stream", &records(1234), deadline(20))
        .await;
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert_eq!(rx.violations(), Vec::<String>::new());
    assert_eq!(seqs(&rx), (0..1234).collect::<Vec<_>>());
    assert_eq!(rx.accepted().len(), 3);
    assert_eq!(outcome.stats.records_delivered, 1234);
    assert_eq!((outcome.stats.requests, outcome.stats.retries), (3, 0));
    assert!(
        rx.accepted()[0]
            .user_agent
            .starts_with("kube-audit-forwarder/")
    );
}

#[tokio::test]
async fn byte_limit_splits_requests() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let up = uploader(&rx, |s| {
        s.limits = Limits {
            max_records: 500,
            max_bytes: 20_000,
        }
    });
    let outcome = up.deliver("demo/stream", &records(600), deadline(20)).await;
    assert!(outcome.failed.is_empty());
    assert!(rx.accepted().len() >= 6, "{}", rx.accepted().len());
    assert_eq!(seqs(&rx), (0..600).collect::<Vec<_>>());
}

#[tokio::test]
async fn transient_faults_are_retried_and_everything_arrives_once() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    rx.push_faults([
        Fault::Status(500),
        Fault::Drop,
        Fault::OkWithoutUploadId,
        Fault::Status(429),
        Fault::Status(503),
        // Accepted, but answered after the client's timeout: the retry carries the same upload-id.
        Fault::SlowAccept(Duration::from_millis(1500)),
    ]);
    let up = uploader(&rx, |s| s.concurrency = 1);
    let outcome = up
        .deliver("demo/stream", &records(1000), deadline(30))
        .await;
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert_eq!(rx.violations(), Vec::<String>::new());
    assert_eq!(seqs(&rx), (0..1000).collect::<Vec<_>>());
    assert_eq!(outcome.stats.retries, 6);
    let attempts = rx.attempts();
    assert_eq!(attempts.len(), 8);
    // Retries resend the same upload-id: only two distinct ids for two requests.
    assert_eq!(attempts.iter().collect::<BTreeSet<_>>().len(), 2);
}

#[tokio::test]
async fn persistent_failure_gives_a_transient_error_before_the_deadline() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    rx.set_always(Some(Fault::Status(500)));
    let up = uploader(&rx, |_| {});
    let started = Instant::now();
    let outcome = up.deliver("demo/stream", &records(10), deadline(3)).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(outcome.failed.len(), 1);
    assert_eq!(outcome.failed[0].records, 0..10);
    assert!(matches!(
        outcome.worst_error(),
        Some(DeliveryError::Transient { .. })
    ));
    assert!(outcome.stats.retries >= 3, "{:?}", outcome.stats);
}

#[tokio::test]
async fn quota_signals_stop_retrying_in_either_header_convention() {
    for (status, name, value) in [
        (200, "LOG_LICENSE_EXCEEDS", "True"),
        (400, "blocked_logtype", "true"),
        (200, "api_upload_enabled", "False"),
    ] {
        let rx = Receiver::start(KEY, LOG_TYPE).await;
        rx.set_always(Some(Fault::Headers(
            status,
            vec![(name.into(), value.into())],
        )));
        let up = uploader(&rx, |_| {});
        let outcome = up
            .deliver("demo/stream", &records(1200), deadline(10))
            .await;
        let error = outcome.worst_error().unwrap();
        assert_eq!(error.class(), "quota", "{error}");
        assert!(error.to_string().contains(&name.to_ascii_uppercase()));
        // No retries, and requests not yet sent were not sent after the signal.
        assert_eq!(outcome.stats.retries, 0);
        assert!(rx.attempts().len() <= 3);
        assert_eq!(outcome.undelivered(), 1200);
    }
}

#[tokio::test]
async fn bad_credentials_are_a_configuration_error_without_the_key_in_it() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    rx.set_always(Some(Fault::Status(401)));
    let up = uploader(&rx, |_| {});
    let outcome = up.deliver("demo/stream", &records(5), deadline(10)).await;
    let error = outcome.worst_error().unwrap();
    assert_eq!(
        (error.class(), outcome.stats.requests),
        ("configuration", 1)
    );
    assert!(!format!("{error} {error:?} {up:?}").contains(KEY));
}

#[tokio::test]
async fn payload_too_large_is_split_into_halves() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    rx.push_faults([Fault::Status(413), Fault::Status(413)]);
    let up = uploader(&rx, |s| s.concurrency = 1);
    let outcome = up.deliver("demo/stream", &records(400), deadline(10)).await;
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert_eq!(seqs(&rx), (0..400).collect::<Vec<_>>());
    assert_eq!(rx.accepted().len(), 3); // 400 → 200 (413 again) → 100 + 100, and 200
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let other = Receiver::start(KEY, LOG_TYPE).await; // a different CA
    let up = uploader(&rx, |s| {
        s.trust = TrustRoots::PemFile(other.ca_file.clone())
    });
    let outcome = up.deliver("demo/stream", &records(3), deadline(2)).await;
    assert!(matches!(
        outcome.worst_error(),
        Some(DeliveryError::Transient { .. })
    ));
    assert!(rx.accepted().is_empty() && rx.attempts().is_empty());
}

#[tokio::test]
async fn upload_ids_are_stable_across_redeliveries() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let up = uploader(&rx, |_| {});
    let recs = records(700);
    up.deliver("demo/stream", &recs, deadline(10)).await;
    up.deliver("demo/stream", &recs, deadline(10)).await;
    assert_eq!(rx.attempts().len(), 4);
    assert_eq!(rx.accepted().len(), 2);
    assert_eq!(rx.violations(), Vec::<String>::new());
    // The deduplicating receiver holds each record once.
    assert_eq!(seqs(&rx), (0..700).collect::<Vec<_>>());
}

#[tokio::test]
async fn redirects_are_never_followed_and_never_count_as_delivered() {
    for status in [301, 302, 303, 307, 308] {
        let rx = Receiver::start(KEY, LOG_TYPE).await;
        // Another receiver that would accept anything with the key: the key must never reach it.
        let elsewhere = Receiver::start(KEY, LOG_TYPE).await;
        for (location, named) in [
            (
                format!("https://127.0.0.1:{}/upload", rx.addr.port()),
                "the same host (127.0.0.1)".to_string(),
            ),
            (
                format!("https://localhost:{}/upload", elsewhere.addr.port()),
                format!("host `localhost:{}`", elsewhere.addr.port()),
            ),
        ] {
            rx.set_always(Some(Fault::Headers(
                status,
                vec![("Location".into(), location.clone())],
            )));
            let before = rx.attempts().len();
            let up = uploader(&rx, |s| s.concurrency = 1);
            let outcome = up.deliver("demo/stream", &records(700), deadline(10)).await;
            assert_eq!(outcome.stats.records_delivered, 0, "{status} {location}");
            assert_eq!(outcome.undelivered(), 700);
            let error = outcome.worst_error().unwrap();
            assert_eq!(error.class(), "configuration");
            let message = error.to_string();
            assert!(
                message.contains(&format!("HTTP {status}")) && message.contains(&named),
                "{message}"
            );
            // Not retried, not followed, and the other requests were not sent after the refusal.
            assert_eq!(outcome.stats.retries, 0);
            assert_eq!(rx.attempts().len() - before, 1, "{status} {location}");
            assert!(rx.records().is_empty());
            assert!(elsewhere.attempts().is_empty(), "{status} {location}");
        }
    }
}

#[tokio::test]
async fn retry_after_zero_does_not_make_a_tight_loop() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    rx.set_always(Some(Fault::Headers(
        429,
        vec![("Retry-After".into(), "0".into())],
    )));
    let up = uploader(&rx, |s| s.backoff_base = Duration::from_millis(250));
    let outcome = up.deliver("demo/stream", &records(3), deadline(2)).await;
    assert_eq!(outcome.worst_error().unwrap().class(), "transient");
    // Each wait is at least the backoff base: at most ~8 attempts in 2 s (it was 100 a second).
    assert!(rx.attempts().len() <= 8, "{}", rx.attempts().len());
    assert!(rx.attempts().len() >= 2);
}

#[tokio::test]
async fn a_huge_or_dated_retry_after_gives_up_at_once_instead_of_panicking() {
    let in_an_hour = httpdate_in(3600);
    for value in [
        "18446744073709551615",
        "99999999999999999999999",
        &in_an_hour,
    ] {
        let rx = Receiver::start(KEY, LOG_TYPE).await;
        rx.set_always(Some(Fault::Headers(
            503,
            vec![("Retry-After".into(), value.to_string())],
        )));
        let up = uploader(&rx, |_| {});
        let started = Instant::now();
        let outcome = up.deliver("demo/stream", &records(3), deadline(20)).await;
        let error = outcome.worst_error().unwrap();
        assert!(
            matches!(error, DeliveryError::Transient { last } if last.contains("past the deadline")),
            "{value}: {error}"
        );
        assert_eq!(rx.attempts().len(), 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // A date a moment away is honoured like delay-seconds.
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    rx.push_faults([Fault::Headers(
        503,
        vec![("Retry-After".into(), httpdate_in(1))],
    )]);
    let up = uploader(&rx, |_| {});
    let outcome = up.deliver("demo/stream", &records(3), deadline(20)).await;
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert_eq!(rx.attempts().len(), 2);
}

fn httpdate_in(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(secs))
}

#[tokio::test]
async fn an_empty_upload_id_is_no_receipt() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    rx.push_faults([
        Fault::Headers(200, vec![("x-uploadid".into(), String::new())]),
        Fault::Headers(200, vec![("x-uploadid".into(), "  ".into())]),
    ]);
    let up = uploader(&rx, |_| {});
    let outcome = up.deliver("demo/stream", &records(3), deadline(10)).await;
    assert!(outcome.failed.is_empty());
    assert_eq!((outcome.stats.retries, rx.attempts().len()), (2, 3));
    assert_eq!(seqs(&rx), [0, 1, 2]);
}

#[tokio::test]
async fn connection_failures_name_their_cause() {
    use kaf_testkit::receiver::ServerCert;
    let good = Receiver::start(KEY, LOG_TYPE).await;
    let cases = [
        (ServerCert::Valid, true, "UnknownIssuer"),
        (ServerCert::WrongName, false, "not valid for name"),
        (ServerCert::Expired, false, "expired"),
    ];
    for (cert, foreign_ca, expected) in cases {
        let rx = Receiver::start_with_cert(KEY, LOG_TYPE, cert).await;
        let trust = if foreign_ca {
            &good.ca_file
        } else {
            &rx.ca_file
        };
        let up = uploader(&rx, |s| s.trust = TrustRoots::PemFile(trust.clone()));
        let outcome = up.deliver("demo/stream", &records(1), deadline(2)).await;
        let message = outcome.worst_error().unwrap().to_string();
        assert!(message.contains(expected), "{cert:?}: {message}");
        assert!(!message.contains(KEY));
    }
    // Nothing listens: a refused connection says so.
    let port = kaf_testkit::free_port();
    let config = LogTypeConfig::from_json(
        &json!({"apiKey": KEY, "logType": LOG_TYPE, "uploadDomain": format!("127.0.0.1:{port}")})
            .to_string(),
    )
    .unwrap();
    let settings = UploadSettings {
        backoff_base: Duration::from_millis(20),
        safety_margin: Duration::from_millis(100),
        trust: TrustRoots::PemFile(good.ca_file.clone()),
        ..UploadSettings::default()
    };
    let up = Uploader::new(&config, settings).unwrap();
    let outcome = up.deliver("demo/stream", &records(1), deadline(1)).await;
    let message = outcome.worst_error().unwrap().to_string();
    assert!(
        message.to_lowercase().contains("connection refused"),
        "{message}"
    );
}
