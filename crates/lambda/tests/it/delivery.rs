use crate::harness::start;
use kaf_testkit::fixtures;
use kaf_testkit::payloads::{AUDIT_STREAM, control_message, lambda_event, messages, subscription};
use kaf_testkit::runtime::Outcome;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

fn summary(outcome: &Outcome) -> &Value {
    match outcome {
        Outcome::Response(v) => v,
        Outcome::Error { body, .. } => panic!("expected success, got {body}"),
    }
}

/// (auditID, stage) → count, from the accepted records.
fn delivered(records: &[Value]) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for r in records {
        let key = (
            r["auditid"].as_str().unwrap().to_string(),
            r["stage"].as_str().unwrap().to_string(),
        );
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

#[tokio::test]
async fn real_samples_arrive_exactly_once_mapped_to_the_profile() {
    let lambda = start(json!({}), &[]).await;
    let events = fixtures::events(&fixtures::audit2rbac_demo());
    assert_eq!(events.len(), 37);
    let payload = subscription("demo", AUDIT_STREAM, &messages(&events));
    let id = lambda
        .runtime
        .invoke(lambda_event(&payload), Duration::from_secs(30));
    let done = lambda.runtime.finished(&id, Duration::from_secs(30)).await;
    let s = summary(&done.outcome);
    assert_eq!(
        (s["eventsIn"].as_u64(), s["forwarded"].as_u64()),
        (Some(37), Some(37))
    );
    assert_eq!(lambda.rx.violations(), Vec::<String>::new());
    let records = lambda.rx.records();
    let expected: BTreeMap<_, _> = events
        .iter()
        .map(|e| {
            (
                (
                    e["auditID"].as_str().unwrap().to_string(),
                    e["stage"].as_str().unwrap().to_string(),
                ),
                1,
            )
        })
        .collect();
    assert_eq!(delivered(&records), expected);
    let forbidden = records
        .iter()
        .filter(|r| r["responsestatus_code"] == json!(403))
        .count();
    assert_eq!(forbidden, 11);
    assert!(
        records
            .iter()
            .all(|r| r["s247agentuid"] == json!("demo") && r["logstream"] == json!(AUDIT_STREAM))
    );
    assert!(
        records
            .iter()
            .any(|r| r["impersonateduser_username"] == json!("bob"))
    );
    assert_eq!(lambda.runtime.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn ten_thousand_events_are_split_within_the_limits() {
    let lambda = start(json!({}), &[]).await;
    let base = fixtures::events(&fixtures::audit2rbac_v1beta1());
    // Distinct auditIDs so exactly-once can be checked per event.
    let events: Vec<Value> = (0..10_000)
        .map(|i| {
            let mut e = base[i % base.len()].clone();
            e["auditID"] = json!(format!("{i:08}-0000-4000-8000-000000000000"));
            e
        })
        .collect();
    let event = lambda_event(&subscription("big", AUDIT_STREAM, &messages(&events)));
    assert!(
        event.to_string().len() < 1_000_000,
        "async invoke payloads are at most 1 MB"
    );
    let id = lambda.runtime.invoke(event, Duration::from_secs(60));
    let done = lambda.runtime.finished(&id, Duration::from_secs(60)).await;
    assert_eq!(summary(&done.outcome)["forwarded"], json!(10_000));
    assert_eq!(lambda.rx.violations(), Vec::<String>::new());
    let accepted = lambda.rx.accepted();
    assert!(accepted.len() >= 20, "{} requests", accepted.len());
    assert!(accepted.iter().all(|a| a.records.len() <= 500));
    let counts = delivered(&lambda.rx.records());
    assert_eq!(counts.len(), 10_000);
    assert!(counts.values().all(|&c| c == 1));
}

/// The largest payload CloudWatch can hand the function (1 MB of Lambda event, ~25 MB of audit JSON):
/// every event delivered once, within the API's limits.
#[tokio::test]
async fn the_largest_cloudwatch_payload_is_delivered_whole() {
    let lambda = start(json!({}), &[]).await;
    let (event, n) = kaf_testkit::payloads::largest_lambda_event();
    let size = event.to_string().len();
    assert!((950_000..=1_000_000).contains(&size), "{size} bytes");
    let done = lambda.invoke(event, Duration::from_secs(120)).await;
    assert_eq!(summary(&done.outcome)["forwarded"], json!(n));
    assert_eq!(lambda.rx.violations(), Vec::<String>::new());
    let counts = delivered(&lambda.rx.records());
    assert_eq!(counts.len(), n);
    assert!(counts.values().all(|&c| c == 1));
}

#[tokio::test]
async fn control_messages_and_other_streams_are_acknowledged_without_upload() {
    let lambda = start(json!({}), &[]).await;
    let s = lambda
        .summary(
            lambda_event(&control_message("demo")),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(s["controlMessages"], json!(1));

    let events = fixtures::events(&fixtures::audit2rbac_demo());
    let api_stream = subscription(
        "demo",
        "kube-apiserver-0123456789abcdef0123456789abcdef",
        &messages(&events[..5]),
    );
    let s = lambda
        .summary(lambda_event(&api_stream), Duration::from_secs(10))
        .await;
    assert_eq!(
        (s["skippedStreamEvents"].as_u64(), s["forwarded"].as_u64()),
        (Some(5), Some(0))
    );
    assert!(lambda.rx.attempts().is_empty());
}

#[tokio::test]
async fn malformed_and_non_audit_messages_never_fail_the_batch() {
    let lambda = start(json!({}), &[]).await;
    let good = fixtures::falco_events();
    let mut msgs = messages(&good);
    let bad = [
        "{\"kind\": 0}".to_string(), // Falco's fal_01_003 regression input
        "token=eyJhbGciOiJSUzI1NiJ9.not-json".to_string(),
        "{\"records\": []}".to_string(),
    ];
    msgs.splice(3..3, bad.iter().cloned());
    let s = lambda
        .summary(
            lambda_event(&subscription("demo", AUDIT_STREAM, &msgs)),
            Duration::from_secs(20),
        )
        .await;
    let distinct = fixtures::distinct(&good);
    assert_eq!(
        s["deduplicated"].as_u64(),
        Some((good.len() - distinct) as u64)
    );
    // The message that is not JSON is kept as an unparsed record (text withheld); JSON that is not an
    // audit event is counted and dropped.
    assert_eq!(s["forwarded"].as_u64(), Some(distinct as u64 + 1));
    assert_eq!(
        (s["malformed"].as_u64(), s["nonAudit"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(lambda.rx.records().len(), distinct + 1);
    let unparsed: Vec<_> = lambda
        .rx
        .records()
        .into_iter()
        .filter(|r| r.get("kaf_unparsed").is_some())
        .collect();
    assert_eq!(unparsed.len(), 1);
    assert!(!unparsed[0].to_string().contains("eyJhbGciOiJSUzI1NiJ9"));
    let log = lambda.process.output();
    assert!(log.contains("event not forwarded"), "{log}");
    // The invocation's line (the others are per detection rule).
    let emf: Vec<Value> = crate::harness::emf_lines(&log)
        .into_iter()
        .filter(|m| m["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == json!([["FunctionName"]]))
        .collect();
    assert_eq!(emf.len(), 1, "{log}");
    let m = &emf[0];
    assert_eq!(
        m["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        json!("KubeAuditForwarder")
    );
    let bytes_in: usize = msgs.iter().map(String::len).sum();
    assert_eq!(
        [
            &m["EventsIn"],
            &m["Forwarded"],
            &m["Malformed"],
            &m["NonAudit"],
            &m["Requests"],
            &m["FailedRequests"],
            &m["BytesIn"]
        ],
        [
            &json!(good.len() + 3),
            &json!(distinct + 1),
            &json!(1),
            &json!(2),
            &json!(1),
            &json!(0),
            &json!(bytes_in)
        ]
    );
    assert_eq!(
        (
            m["FunctionName"].clone(),
            m["Cluster"].clone(),
            m["message"].clone()
        ),
        (
            json!("kube-audit-forwarder"),
            json!("demo"),
            json!("invocation done")
        )
    );
    assert!(
        !log.contains("eyJhbGciOiJSUzI1NiJ9"),
        "a malformed message leaked into the log:\n{log}"
    );
}

#[tokio::test]
async fn a_record_over_one_megabyte_is_truncated_not_dropped() {
    let lambda = start(json!({}), &[]).await;
    let mut events = fixtures::falco_events();
    let configmap = events
        .iter_mut()
        .find(|e| {
            e["objectRef"]["resource"] == json!("configmaps") && e["requestObject"].is_object()
        })
        .expect("a configmap create with a request object");
    configmap["requestObject"]["data"]["big"] = json!("x".repeat(1_500_000));
    let audit_id = configmap["auditID"].as_str().unwrap().to_string();
    let s = lambda
        .summary(
            lambda_event(&subscription("demo", AUDIT_STREAM, &messages(&events))),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(s["truncated"], json!(1));
    assert_eq!(lambda.rx.violations(), Vec::<String>::new());
    let records = lambda.rx.records();
    let big = records
        .iter()
        .find(|r| r["auditid"] == json!(audit_id))
        .expect("truncated record delivered");
    assert!(
        big["requestobject"]
            .as_str()
            .unwrap()
            .ends_with("##TRUNCATED###")
    );
    assert!(big.to_string().len() <= 1_000_000);
    assert_eq!(records.len(), fixtures::distinct(&events));
}

#[tokio::test]
async fn secret_values_never_reach_the_upload_or_the_log() {
    let lambda = start(json!({}), &[("RUST_LOG", "trace")]).await;
    // Falco's real create_secret event, lifted to RequestResponse with the Secret it would then carry.
    let mut event = fixtures::falco_events()
        .into_iter()
        .find(|e| e["objectRef"]["resource"] == json!("secrets") && e["verb"] == json!("create"))
        .expect("a secret create sample");
    let secret = json!({"kind": "Secret", "apiVersion": "v1", "type": "Opaque",
        "metadata": {"name": event["objectRef"]["name"], "namespace": event["objectRef"]["namespace"],
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                        "{\"apiVersion\":\"v1\",\"data\":{\"password\":\"czNjcjN0LXZhbHVl\"},\"kind\":\"Secret\"}"}},
        "data": {"password": "czNjcjN0LXZhbHVl"}, "stringData": {"api-key": "plain-text-api-key"}});
    event["level"] = json!("RequestResponse");
    event["requestObject"] = secret.clone();
    event["responseObject"] = secret;
    let mut events = fixtures::events(&fixtures::audit2rbac_demo());
    events.push(event);
    let s = lambda
        .summary(
            lambda_event(&subscription("demo", AUDIT_STREAM, &messages(&events))),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(s["redacted"], json!(6)); // data + stringData + last-applied, in request and response
    let uploaded = serde_json::to_string(&lambda.rx.records()).unwrap();
    for secret in ["czNjcjN0LXZhbHVl", "plain-text-api-key"] {
        assert!(!uploaded.contains(secret), "{secret} was uploaded");
        assert!(
            !lambda.process.output().contains(secret),
            "{secret} was logged"
        );
    }
    assert!(uploaded.contains("<redacted sha256:"));
    assert_eq!(lambda.rx.records().len(), 38);
}

/// Small invocations reuse the upload connection: 100 one-event invocations in a row cost one TLS
/// handshake, not one each.
#[tokio::test]
async fn sequential_invocations_reuse_one_upload_connection() {
    let lambda = start(json!({}), &[]).await;
    let events = fixtures::numbered_events(100);
    for (i, event) in events.iter().enumerate() {
        let mut payload =
            subscription("demo", AUDIT_STREAM, &messages(std::slice::from_ref(event)));
        // CloudWatch ids differ between invocations (the helper numbers them from 0 in each payload).
        payload["logEvents"][0]["id"] = json!(format!("3719{i:052}"));
        let id = lambda
            .runtime
            .invoke(lambda_event(&payload), Duration::from_secs(30));
        let done = lambda.runtime.finished(&id, Duration::from_secs(30)).await;
        assert_eq!(
            summary(&done.outcome)["forwarded"].as_u64(),
            Some(1),
            "invocation {i}"
        );
    }
    assert_eq!(lambda.rx.records().len(), 100);
    assert_eq!(
        lambda.rx.handshakes(),
        1,
        "one connection for 100 invocations"
    );
}

/// The Runtime API is one kept-open connection: 50 invocations in a row open it once. An API that closes
/// the connection after each answer (some emulators do) costs a reconnect per request, and no invocation.
#[tokio::test]
async fn the_runtime_api_connection_is_kept_open_and_reopened_when_closed() {
    let lambda = start(json!({}), &[]).await;
    let events = fixtures::numbered_events(100);
    let invoke = |i: usize| {
        let mut payload = subscription(
            "demo",
            AUDIT_STREAM,
            &messages(std::slice::from_ref(&events[i])),
        );
        payload["logEvents"][0]["id"] = json!(format!("3719{i:052}"));
        lambda
            .runtime
            .invoke(lambda_event(&payload), Duration::from_secs(30))
    };
    for i in 0..50 {
        let id = invoke(i);
        let done = lambda.runtime.finished(&id, Duration::from_secs(30)).await;
        assert_eq!(summary(&done.outcome)["forwarded"].as_u64(), Some(1));
    }
    assert_eq!(
        lambda.runtime.connections(),
        1,
        "one connection for 50 invocations"
    );

    lambda.runtime.close_after_each_answer();
    for i in 50..100 {
        let id = invoke(i);
        let done = lambda.runtime.finished(&id, Duration::from_secs(30)).await;
        assert_eq!(
            summary(&done.outcome)["forwarded"].as_u64(),
            Some(1),
            "invocation {i}\n{}",
            lambda.process.output()
        );
    }
    // Each of the 50 invocations: the `next` that fetched it and its response, each on a new connection
    // (the `next` already waiting when closing began was on the old one).
    let reopened = lambda.runtime.connections() - 1;
    assert!((99..=101).contains(&reopened), "{reopened} reconnects");
    assert_eq!(lambda.rx.records().len(), 100);
    assert!(lambda.runtime.violations().is_empty());
}

/// Detections are on by default: tagged records carry the rule ids and the highest severity, untagged ones
/// neither field; the summary and one EMF line per rule count them.
#[tokio::test]
async fn records_are_tagged_with_detections_and_counted_per_rule() {
    let lambda = start(json!({}), &[]).await;
    let events = fixtures::falco_events();
    let s = lambda
        .summary(
            lambda_event(&subscription("demo", AUDIT_STREAM, &messages(&events))),
            Duration::from_secs(20),
        )
        .await;
    let records = lambda.rx.records();
    let mut per_rule: BTreeMap<String, u64> = BTreeMap::new();
    let mut tagged = 0;
    for r in &records {
        match (r.get("detections"), r.get("detection_severity")) {
            (Some(ids), Some(severity)) => {
                tagged += 1;
                assert!(
                    ["info", "low", "medium", "high", "critical"]
                        .contains(&severity.as_str().unwrap())
                );
                for id in ids.as_array().unwrap() {
                    *per_rule
                        .entry(id.as_str().unwrap().to_string())
                        .or_default() += 1;
                }
            }
            (None, None) => {}
            other => panic!("one detection field without the other: {other:?} in {r}"),
        }
    }
    assert!(tagged >= 20, "{tagged} of {}", records.len());
    assert!(tagged < records.len());
    assert_eq!(s["detected"].as_u64(), Some(tagged as u64));
    let summary_counts: BTreeMap<String, u64> =
        serde_json::from_value(s["detections"].clone()).unwrap();
    assert_eq!(summary_counts, per_rule);
    // The exec into nginx is one of them.
    let exec = records
        .iter()
        .find(|r| r["objectref_subresource"] == json!("exec"))
        .unwrap();
    assert_eq!(exec["detections"], json!(["pod-exec"]));

    let log = lambda.process.output();
    let rule_lines: BTreeMap<String, u64> = crate::harness::emf_lines(&log)
        .into_iter()
        .filter(|m| {
            m["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == json!([["FunctionName", "Rule"]])
        })
        .map(|m| {
            (
                m["Rule"].as_str().unwrap().to_string(),
                m["Detections"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rule_lines, per_rule);
}

/// `DETECTIONS_ONLY=true` forwards the tagged events only and counts the rest; `DETECTIONS=off` tags nothing.
#[tokio::test]
async fn detections_only_and_off_are_read_from_the_environment() {
    let events = fixtures::falco_events();
    let event = || lambda_event(&subscription("demo", AUDIT_STREAM, &messages(&events)));
    let only = start(json!({}), &[("DETECTIONS_ONLY", "true")]).await;
    let s = only.summary(event(), Duration::from_secs(20)).await;
    let records = only.rx.records();
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r.get("detections").is_some()));
    assert_eq!(s["forwarded"].as_u64(), Some(records.len() as u64));
    assert_eq!(
        s["detectionsSkipped"].as_u64().unwrap() + records.len() as u64,
        fixtures::distinct(&events) as u64
    );

    let off = start(json!({}), &[("DETECTIONS", "off")]).await;
    let s = off.summary(event(), Duration::from_secs(20)).await;
    let records = off.rx.records();
    assert_eq!(records.len(), fixtures::distinct(&events));
    assert!(records.iter().all(|r| r.get("detections").is_none()));
    assert_eq!(s["detected"].as_u64(), Some(0));
}

/// A request id that is not a UUID (characters a path must escape) still gets its answer: the response goes to
/// that invocation, not to an unparsable path that would end the process.
#[tokio::test]
async fn a_request_id_that_needs_escaping_is_answered() {
    let lambda = start(json!({}), &[]).await;
    let events = fixtures::numbered_events(2);
    for (i, id) in ["odd id/with?all#kinds%of", "plain-id_1.2~3"]
        .into_iter()
        .enumerate()
    {
        let mut payload = subscription(
            "demo",
            AUDIT_STREAM,
            &messages(std::slice::from_ref(&events[i])),
        );
        payload["logEvents"][0]["id"] = json!(format!("3719{i:052}"));
        let id = lambda
            .runtime
            .invoke_as(id, lambda_event(&payload), Duration::from_secs(30));
        let done = lambda.runtime.finished(&id, Duration::from_secs(30)).await;
        assert_eq!(
            summary(&done.outcome)["forwarded"].as_u64(),
            Some(1),
            "{id}\n{}",
            lambda.process.output()
        );
    }
    assert!(
        lambda.runtime.violations().is_empty(),
        "{:?}",
        lambda.runtime.violations()
    );
}
