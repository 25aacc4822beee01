//! Production sizes and the limits around them: a full 32-event invocation (Azure Monitor packs each
//! Event Hub event to 1 MB), an invocation over `MAX_INVOCATION_BYTES`, and repeated sequence numbers.

use crate::harness::{KEY, LOG_TYPE, config, start};
use kaf_testkit::payloads::{
    aks_record, event_hub_body, functions_invocation, production_aks_invocation,
};
use kaf_testkit::receiver::{Fault, Receiver};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Regression: any invocation over 2 MiB got axum's default 413, so the host retried and then
/// checkpointed past it: the whole batch was lost.
#[tokio::test]
async fn a_full_32_event_invocation_over_16_mb_is_delivered_once() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let handler = start(&rx.ca_file, &[("logTypeConfig", config(&rx, LOG_TYPE))]).await;
    let (request, events) = production_aks_invocation(32);
    let size = request.to_string().len();
    assert!(size >= 16 << 20, "{size} bytes");
    let answer = handler.invoke(&request).await;
    let s = answer.summary();
    assert!(answer.failover().is_empty(), "{s}");
    assert_eq!(s["bodies"], json!(32));
    assert_eq!(s["forwarded"].as_u64(), Some(events as u64), "{s}");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for record in rx.records() {
        *seen
            .entry(record["auditid"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), events);
    assert!(seen.values().all(|n| *n == 1));
    assert_eq!(rx.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn an_invocation_over_the_limit_is_answered_200_with_its_content_parked() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let handler = start(
        &rx.ca_file,
        &[
            ("logTypeConfig", config(&rx, LOG_TYPE)),
            ("MAX_INVOCATION_BYTES", "1048576".into()),
        ],
    )
    .await;
    let (request, _) = production_aks_invocation(2);
    let text = request.to_string();
    assert!(text.len() > 1 << 20);
    let answer = handler.invoke(&request).await;
    let parked = answer.failover();
    assert_eq!(parked.len(), 1);
    assert!(
        parked[0]["reason"]
            .as_str()
            .unwrap()
            .contains("MAX_INVOCATION_BYTES")
    );
    // The invocation itself, byte for byte, ready to be replayed.
    assert_eq!(parked[0]["record"], Value::String(text));
    assert!(rx.attempts().is_empty());
}

/// Regression: `SequenceNumberArray` `[5,5]` made two records share an id, so in an outage one was parked
/// twice and the other lost.
#[tokio::test]
async fn repeated_sequence_numbers_still_park_every_record_once() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    rx.set_always(Some(Fault::Status(503)));
    let handler = start(
        &rx.ca_file,
        &[
            ("logTypeConfig", config(&rx, LOG_TYPE)),
            ("HANDLER_DEADLINE_SECS", "2".into()),
        ],
    )
    .await;
    let events = kaf_testkit::fixtures::numbered_events(6);
    let bodies: Vec<String> = events
        .chunks(3)
        .map(|c| {
            event_hub_body(
                &c.iter()
                    .map(|e| aks_record("kube-audit", "c1", e))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let mut request = functions_invocation(&bodies, "0", 5);
    request["Metadata"]["SequenceNumberArray"] = json!("[5,5]");
    let parked = handler.invoke(&request).await.failover();
    let ids: std::collections::BTreeSet<String> = parked
        .iter()
        .map(|p| p["eventId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!((parked.len(), ids.len()), (6, 6), "{ids:?}");
    let audit_ids: std::collections::BTreeSet<String> = parked
        .iter()
        .map(|p| p["record"]["properties"]["log"]["auditID"].to_string())
        .collect();
    assert_eq!(audit_ids.len(), 6);
}
