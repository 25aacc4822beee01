use crate::harness::{KEY, LOG_TYPE, config, start};
use kaf_testkit::fixtures;
use kaf_testkit::payloads::{aks_record, event_hub_body, functions_invocation};
use kaf_testkit::receiver::Receiver;
use serde_json::{Value, json};

fn demo_records(category: &str) -> Vec<Value> {
    fixtures::events(&fixtures::audit2rbac_demo())
        .iter()
        .map(|e| aks_record(category, "prod-aks", e))
        .collect()
}

#[tokio::test]
async fn readiness_answers_any_get_before_the_first_invocation() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let handler = start(&rx.ca_file, &[("logTypeConfig", config(&rx, LOG_TYPE))]).await;
    let client = kaf_upload::local_http_client(Some(std::time::Duration::from_secs(5))).unwrap();
    for path in ["/", "/KubeAudit", "/anything/else"] {
        let r = client
            .get(format!("http://127.0.0.1:{}{path}", handler.port))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}");
    }
    assert!(rx.attempts().is_empty());
}

#[tokio::test]
async fn each_record_is_routed_by_its_category_and_unconfigured_ones_are_skipped_and_counted() {
    let admin_rx = Receiver::start(KEY, "AKS Admin").await;
    let handler = start(
        &admin_rx.ca_file,
        &[("S247_kube_audit_admin", config(&admin_rx, "AKS Admin"))],
    )
    .await;
    let mut records = demo_records("kube-audit-admin");
    let audit = demo_records("kube-audit");
    // One Event Hub body holding both categories (Azure Monitor mixes them).
    records.splice(5..5, audit[..4].iter().cloned());
    let answer = handler
        .invoke(&functions_invocation(&[event_hub_body(&records)], "1", 100))
        .await;
    let s = answer.summary();
    assert_eq!(s["unconfiguredCategories"], json!({"kube-audit": 4}));
    assert_eq!(
        (s["records"].as_u64(), s["forwarded"].as_u64()),
        (Some(41), Some(37))
    );
    assert_eq!(admin_rx.records().len(), 37);
    assert!(
        admin_rx
            .records()
            .iter()
            .all(|r| r["s247agentuid"] == json!("PROD-AKS")
                && r["logstream"] == json!("kube-audit-admin"))
    );
    assert_eq!(admin_rx.violations(), Vec::<String>::new());
    assert!(answer.failover().is_empty());
}

#[tokio::test]
async fn both_spellings_and_the_fallback_config_are_used() {
    let a = Receiver::start(KEY, "A").await;
    let b = Receiver::start(KEY, "B").await;
    // Both receivers' CAs differ; trust each through a combined bundle.
    let bundle = std::env::temp_dir().join(format!("kaf-aks-ca-{}.pem", std::process::id()));
    std::fs::write(
        &bundle,
        [
            std::fs::read(&a.ca_file).unwrap(),
            std::fs::read(&b.ca_file).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let handler = start(
        &bundle,
        &[
            ("S247_kubeaudit", config(&a, "A")),
            ("logTypeConfig", config(&b, "B")),
        ],
    )
    .await;
    let mut records = demo_records("kube-audit");
    records.extend(demo_records("kube-audit-admin").into_iter().take(3));
    handler
        .invoke(&functions_invocation(&[event_hub_body(&records)], "0", 1))
        .await;
    assert_eq!((a.records().len(), b.records().len()), (37, 3));
}

#[tokio::test]
async fn a_body_that_is_not_json_does_not_stop_the_others() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let handler = start(&rx.ca_file, &[("logTypeConfig", config(&rx, LOG_TYPE))]).await;
    let records = demo_records("kube-audit");
    let bodies = vec![
        event_hub_body(&records[..20]),
        "{\"records\": [ this is not json".to_string(),
        event_hub_body(&records[20..]),
    ];
    let answer = handler.invoke(&functions_invocation(&bodies, "0", 7)).await;
    let s = answer.summary();
    assert_eq!(
        (s["bodies"].as_u64(), s["badBodies"].clone()),
        (Some(3), json!([1]))
    );
    assert_eq!(rx.records().len(), 37);
    // Regression: the bad body was counted but not parked. Its text is in the failover output, whole.
    let parked = answer.failover();
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (
            parked[0]["class"].clone(),
            parked[0]["eventId"].clone(),
            parked[0]["version"].clone()
        ),
        (json!("unparsable"), json!("p0-s8"), json!(1))
    );
    assert_eq!(
        parked[0]["record"],
        json!("{\"records\": [ this is not json")
    );
}

#[tokio::test]
async fn real_aks_records_and_log_lines_that_are_not_json() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let handler = start(&rx.ca_file, &[("logTypeConfig", config(&rx, LOG_TYPE))]).await;
    // The Panther samples' real AKS records (properties.log as a JSON string), plus a plain-text log line.
    let panther = std::fs::read_to_string(fixtures::sample(
        "panther-labs__panther-analysis/DERIVED__all_tests.jsonl",
    ))
    .unwrap();
    let mut records: Vec<Value> = panther
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["log"].clone())
        .filter(|log| log.get("category").is_some() && log.get("properties").is_some())
        .collect();
    assert_eq!(records.len(), 34);
    let mut text = records[0].clone();
    text["properties"]["log"] =
        json!("I0420 16:29:59.995191 1 controller.go:42] not an audit event\n");
    records.push(text);
    let answer = handler
        .invoke(&functions_invocation(&[event_hub_body(&records)], "2", 500))
        .await;
    let s = answer.summary();
    // The text line is not an audit event, but it came on the audit category: it is forwarded as an
    // unparsed record (its text withheld: redaction cannot see inside it) and parked raw in the failover.
    assert_eq!(
        (
            s["malformed"].as_u64(),
            s["deduplicated"].as_u64(),
            s["forwarded"].as_u64()
        ),
        (Some(1), Some(1), Some(34))
    );
    assert_eq!(rx.records().len(), 34);
    assert_eq!(rx.violations(), Vec::<String>::new());
    let unparsed: Vec<Value> = rx
        .records()
        .into_iter()
        .filter(|r| r.get("kaf_unparsed").is_some())
        .collect();
    assert_eq!(unparsed.len(), 1);
    assert!(!unparsed[0].to_string().contains("controller.go"));
    let parked = answer.failover();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0]["class"], json!("unparsable"));
    assert_eq!(parked[0]["eventId"], json!("p2-s500-r34"));
    assert!(
        parked[0]["record"]["properties"]["log"]
            .as_str()
            .unwrap()
            .contains("controller.go:42] not an audit event")
    );
}

#[tokio::test]
async fn an_oversize_record_is_truncated_and_delivered() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let handler = start(&rx.ca_file, &[("logTypeConfig", config(&rx, LOG_TYPE))]).await;
    let mut event = fixtures::falco_events()
        .into_iter()
        .find(|e| e["requestObject"].is_object())
        .unwrap();
    event["requestObject"]["metadata"]["annotations"] = json!({"big": "y".repeat(1_200_000)});
    let answer = handler
        .invoke(&functions_invocation(
            &[event_hub_body(&[aks_record("kube-audit", "c1", &event)])],
            "0",
            1,
        ))
        .await;
    assert_eq!(answer.summary()["truncated"], json!(1));
    assert_eq!(rx.violations(), Vec::<String>::new());
    assert!(
        rx.records()[0]["requestobject"]
            .as_str()
            .unwrap()
            .ends_with("##TRUNCATED###")
    );
}

#[tokio::test]
async fn a_redelivered_invocation_resends_the_same_upload_ids() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let handler = start(&rx.ca_file, &[("logTypeConfig", config(&rx, LOG_TYPE))]).await;
    let request = functions_invocation(&[event_hub_body(&demo_records("kube-audit"))], "0", 42);
    handler.invoke(&request).await;
    handler.invoke(&request).await;
    let attempts = rx.attempts();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0], attempts[1]);
    assert_eq!(rx.records().len(), 37);
}

/// `tests/fixtures/local/aks-invocation.json`, the README's local-run invocation, is the bundled demo sample
/// as `kube-audit` records in one Event Hub body (`KAF_REGENERATE=1` rewrites it), and every event in it is
/// delivered.
#[tokio::test]
async fn the_bundled_local_invocation_is_the_demo_sample_and_is_delivered() {
    let path = fixtures::dir().join("local/aks-invocation.json");
    let expected = kaf_testkit::payloads::demo_aks_invocation();
    if std::env::var("KAF_REGENERATE").is_ok() {
        std::fs::write(&path, format!("{expected:#}\n")).unwrap();
    }
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(committed, expected);
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let handler = start(&rx.ca_file, &[("logTypeConfig", config(&rx, LOG_TYPE))]).await;
    handler.invoke(&committed).await;
    assert_eq!(rx.records().len(), 37);
}

/// Regression (first deployment): a Key Vault reference resolved before the identity could read the vault is
/// left as literal text, and the handler said only "not valid base64". It now stops naming the variable and
/// what to do.
#[test]
fn an_unresolved_key_vault_reference_stops_start_up_saying_what_to_do() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_aks-handler"))
        .env_clear()
        .env(
            "FUNCTIONS_CUSTOMHANDLER_PORT",
            kaf_testkit::free_port().to_string(),
        )
        .env(
            "logTypeConfig",
            "@Microsoft.KeyVault(SecretUri=https://kv-kaf.vault.azure.net/secrets/logtypeconfig/)",
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("environment variable logTypeConfig")
            && stderr.contains("unresolved Key Vault reference")
            && stderr.contains("Key Vault Secrets User"),
        "{stderr}"
    );
}

/// Detections read the audit event inside the AKS record (`properties.log`), on by default; a bad rule file
/// stops start-up naming the rule and the field.
#[tokio::test]
async fn aks_records_are_tagged_with_detections_and_counted() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let handler = start(&rx.ca_file, &[("logTypeConfig", config(&rx, LOG_TYPE))]).await;
    let records: Vec<Value> = fixtures::falco_events()
        .iter()
        .map(|e| aks_record("kube-audit", "prod-aks", e))
        .collect();
    let answer = handler
        .invoke(&functions_invocation(&[event_hub_body(&records)], "1", 100))
        .await;
    let s = answer.summary();
    let delivered = rx.records();
    let tagged: Vec<&Value> = delivered
        .iter()
        .filter(|r| r.get("detections").is_some())
        .collect();
    assert!(tagged.len() >= 20, "{}", tagged.len());
    assert_eq!(s["detected"].as_u64(), Some(tagged.len() as u64));
    assert!(s["detections"]["pod-exec"].as_u64() >= Some(1), "{s}");
    assert!(tagged.iter().all(|r| r["detection_severity"].is_string()));
    assert!(
        delivered
            .iter()
            .filter(|r| r.get("detections").is_none())
            .all(|r| r.get("detection_severity").is_none())
    );
}

#[test]
fn a_bad_detection_rule_file_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n- id: exec\n  title: exec\n  severity: high\n  match: {verbs: [create]}\n  where: [{pointer: requestObject, equals: 1}]\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_aks-handler"))
        .env_clear()
        .env(
            "FUNCTIONS_CUSTOMHANDLER_PORT",
            kaf_testkit::free_port().to_string(),
        )
        .env("logTypeConfig", "e30=")
        .env("DETECTIONS_FILE", &rules)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("DETECTIONS_FILE") && stderr.contains("rules[0] (exec)"),
        "{stderr}"
    );
}

/// An audit policy from the environment applies to AKS records (events inside `properties.log`) as to
/// CloudWatch events: `get`s dropped and counted, everything else delivered.
#[tokio::test]
async fn an_audit_policy_from_the_environment_applies_to_aks_records() {
    let policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  verbs: [get]\n- level: Metadata\n";
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let handler = start(
        &rx.ca_file,
        &[
            ("logTypeConfig", config(&rx, LOG_TYPE)),
            ("AUDIT_POLICY", policy.to_string()),
        ],
    )
    .await;
    let events = fixtures::events(&fixtures::audit2rbac_demo());
    let gets = events.iter().filter(|e| e["verb"] == json!("get")).count();
    assert!(gets > 0);
    let answer = handler
        .invoke(&functions_invocation(
            &[event_hub_body(&demo_records("kube-audit"))],
            "1",
            100,
        ))
        .await;
    assert_eq!(
        answer.summary()["policyDropped"].as_u64(),
        Some(gets as u64)
    );
    let records = rx.records();
    assert_eq!(records.len(), events.len() - gets);
    assert!(
        records
            .iter()
            .all(|r| r["verb"].is_string() && r["verb"] != json!("get"))
    );
}
