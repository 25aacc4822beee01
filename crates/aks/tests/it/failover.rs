use crate::harness::{KEY, LOG_TYPE, config, start};
use kaf_testkit::fixtures;
use kaf_testkit::payloads::{aks_record, event_hub_body, functions_invocation};
use kaf_testkit::receiver::{Fault, Receiver};
use serde_json::{Value, json};

fn events_with_a_secret() -> (Vec<Value>, &'static str) {
    let secret_value = "c3VwZXItc2VjcmV0LXBhc3N3b3Jk";
    let mut events = fixtures::events(&fixtures::audit2rbac_demo());
    let mut secret = fixtures::falco_events()
        .into_iter()
        .find(|e| e["objectRef"]["resource"] == json!("secrets"))
        .unwrap();
    secret["level"] = json!("Request");
    secret["requestObject"] =
        json!({"kind": "Secret", "apiVersion": "v1", "data": {"password": secret_value}});
    events.push(secret);
    (events, secret_value)
}

#[tokio::test]
async fn transient_faults_are_retried_and_everything_is_delivered_once() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    rx.push_faults([
        Fault::Status(503),
        Fault::Drop,
        Fault::OkWithoutUploadId,
        Fault::Status(429),
    ]);
    let handler = start(&rx.ca_file, &[("logTypeConfig", config(&rx, LOG_TYPE))]).await;
    let records: Vec<Value> = fixtures::events(&fixtures::audit2rbac_v1beta1())
        .iter()
        .map(|e| aks_record("kube-audit", "c1", e))
        .collect();
    let bodies: Vec<String> = records.chunks(100).map(event_hub_body).collect();
    let answer = handler
        .invoke(&functions_invocation(&bodies, "0", 1000))
        .await;
    let s = answer.summary();
    assert!(answer.failover().is_empty(), "{:?}", answer.outputs);
    assert_eq!(s["forwarded"].as_u64(), Some(757));
    assert!(s["retries"].as_u64().unwrap() >= 4);
    assert_eq!(rx.records().len(), 757);
    assert_eq!(rx.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn an_outage_returns_200_with_exactly_the_undelivered_records_in_failover_redacted() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    rx.set_always(Some(Fault::Status(503)));
    let handler = start(
        &rx.ca_file,
        &[
            ("logTypeConfig", config(&rx, LOG_TYPE)),
            ("HANDLER_DEADLINE_SECS", "3".into()),
        ],
    )
    .await;
    let (events, secret_value) = events_with_a_secret();
    let records: Vec<Value> = events
        .iter()
        .map(|e| aks_record("kube-audit", "c1", e))
        .collect();
    let started = std::time::Instant::now();
    let answer = handler
        .invoke(&functions_invocation(&[event_hub_body(&records)], "0", 9))
        .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "answered within the deadline"
    );
    let parked = answer.failover();
    assert_eq!(parked.len(), events.len());
    let ids: Vec<String> = parked
        .iter()
        .map(|p| p["eventId"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..events.len()).map(|i| format!("p0-s9-r{i}")).collect();
    assert_eq!(ids, expected);
    assert!(
        parked
            .iter()
            .all(|p| p["class"] == json!("transient") && p["category"] == json!("kube-audit"))
    );
    // The parked record is the original record (replayable), with the audit event's secrets redacted.
    assert_eq!(
        parked[0]["record"]["properties"]["log"]["auditID"],
        events[0]["auditID"]
    );
    let failover_text = answer.outputs["failover"].as_str().unwrap();
    assert!(!failover_text.contains(secret_value));
    assert!(failover_text.contains("<redacted sha256:"));
    let s = answer.summary();
    assert_eq!(
        (s["parked"].as_u64(), s["failedRequests"].as_u64()),
        (Some(events.len() as u64), Some(1))
    );
    // Secrets and the key stay out of the Logs line and the process output.
    assert!(!answer.logs[0].contains(secret_value) && !answer.logs[0].contains(KEY));
    assert!(
        !handler.process.output().contains(secret_value) && !handler.process.output().contains(KEY)
    );
}

#[tokio::test]
async fn only_the_failed_requests_records_are_parked() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    // The first request is accepted, every later one refused by quota.
    rx.push_faults([Fault::Accept]);
    rx.set_always(Some(Fault::Headers(
        200,
        vec![("LOG_LICENSE_EXCEEDS".into(), "True".into())],
    )));
    let handler = start(
        &rx.ca_file,
        &[
            ("logTypeConfig", config(&rx, LOG_TYPE)),
            ("UPLOAD_MAX_RECORDS", "300".into()),
            ("UPLOAD_CONCURRENCY", "1".into()),
        ],
    )
    .await;
    let events = fixtures::events(&fixtures::audit2rbac_v1beta1());
    let records: Vec<Value> = events
        .iter()
        .map(|e| aks_record("kube-audit", "c1", e))
        .collect();
    let answer = handler
        .invoke(&functions_invocation(&[event_hub_body(&records)], "0", 1))
        .await;
    let parked = answer.failover();
    assert_eq!(rx.records().len(), 300);
    assert_eq!(parked.len(), 757 - 300);
    assert!(parked.iter().all(|p| p["class"] == json!("quota")));
    // Exactly the records after the first 300, in order.
    let first_parked = parked[0]["record"]["properties"]["log"]["auditID"].clone();
    assert_eq!(first_parked, events[300]["auditID"]);
}
