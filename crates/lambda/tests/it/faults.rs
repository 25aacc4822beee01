use crate::harness::{KEY, start};
use kaf_testkit::fixtures;
use kaf_testkit::payloads::{AUDIT_STREAM, lambda_event, messages, subscription};
use kaf_testkit::receiver::Fault;
use kaf_testkit::runtime::Outcome;
use serde_json::{Value, json};
use std::time::Duration;

fn demo_event() -> (Value, usize) {
    let events = fixtures::events(&fixtures::audit2rbac_v1beta1());
    let n = events.len();
    (
        lambda_event(&subscription("demo", AUDIT_STREAM, &messages(&events))),
        n,
    )
}

fn error_of(outcome: &Outcome) -> (&str, &Value) {
    match outcome {
        Outcome::Error {
            error_type: _,
            body,
        } => (body["errorType"].as_str().unwrap_or(""), body),
        Outcome::Response(v) => panic!("expected an error, got {v}"),
    }
}

#[tokio::test]
async fn transient_faults_are_retried_and_every_event_arrives_once() {
    let lambda = start(json!({}), &[("UPLOAD_CONCURRENCY", "2")]).await;
    lambda.rx.push_faults([
        Fault::Status(500),
        Fault::Drop,
        Fault::SlowAccept(Duration::from_millis(1500)),
        Fault::OkWithoutUploadId,
        Fault::Status(429),
    ]);
    let (event, n) = demo_event();
    let id = lambda.runtime.invoke(event, Duration::from_secs(30));
    let done = lambda.runtime.finished(&id, Duration::from_secs(30)).await;
    let Outcome::Response(s) = &done.outcome else {
        panic!("{:?}", done.outcome)
    };
    assert_eq!(s["forwarded"].as_u64(), Some(n as u64));
    assert!(s["retries"].as_u64().unwrap() >= 5, "{s}");
    assert_eq!(lambda.rx.violations(), Vec::<String>::new());
    assert_eq!(lambda.rx.records().len(), n);
}

#[tokio::test]
async fn persistent_failure_reports_an_error_before_the_deadline_and_a_retry_resends_the_same_ids()
{
    let lambda = start(json!({}), &[]).await;
    lambda.rx.set_always(Some(Fault::Status(503)));
    let (event, n) = demo_event();
    let id = lambda.runtime.invoke(event.clone(), Duration::from_secs(4));
    let done = lambda.runtime.finished(&id, Duration::from_secs(10)).await;
    assert!(
        done.before_deadline,
        "answered after the deadline ({:?})",
        done.elapsed
    );
    let (error_type, body) = error_of(&done.outcome);
    assert_eq!(error_type, "UploadTransientError", "{body}");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains(&format!("{n} of {n} records not delivered"))
    );
    let first_ids: std::collections::BTreeSet<String> = lambda.rx.attempts().into_iter().collect();

    // Lambda's async retry redelivers the same event: once the service is back, the same upload-ids arrive.
    lambda.rx.set_always(None);
    let retry = lambda.runtime.invoke(event, Duration::from_secs(10));
    let done = lambda
        .runtime
        .finished(&retry, Duration::from_secs(10))
        .await;
    assert!(
        matches!(done.outcome, Outcome::Response(_)),
        "{:?}",
        done.outcome
    );
    let accepted: std::collections::BTreeSet<String> = lambda
        .rx
        .accepted()
        .into_iter()
        .map(|a| a.upload_id)
        .collect();
    assert_eq!(accepted, first_ids);
    assert_eq!(lambda.rx.records().len(), n);
}

#[tokio::test]
async fn quota_and_configuration_rejections_have_their_own_error_types() {
    for (fault, expected) in [
        (
            Fault::Headers(200, vec![("LOG_LICENSE_EXCEEDS".into(), "True".into())]),
            "UploadQuotaError",
        ),
        (
            Fault::Headers(400, vec![("invalid_logtype".into(), "true".into())]),
            "UploadQuotaError",
        ),
        (Fault::Status(401), "UploadConfigurationError"),
    ] {
        let lambda = start(json!({}), &[]).await;
        lambda.rx.set_always(Some(fault));
        let (event, _) = demo_event();
        let id = lambda.runtime.invoke(event, Duration::from_secs(20));
        let done = lambda.runtime.finished(&id, Duration::from_secs(20)).await;
        let (error_type, body) = error_of(&done.outcome);
        assert_eq!(error_type, expected, "{body}");
        assert!(
            done.elapsed < Duration::from_secs(5),
            "no blind retries: {:?}",
            done.elapsed
        );
        assert!(!body.to_string().contains(KEY));
        let log = lambda.process.output();
        assert!(!log.contains(KEY));
        // The invocation's metrics line says it failed, not "invocation done".
        let messages: Vec<Value> = crate::harness::emf_lines(&log)
            .into_iter()
            .filter_map(|m| m.get("message").cloned())
            .collect();
        assert_eq!(messages, [json!("delivery failed")], "{log}");
    }
}
