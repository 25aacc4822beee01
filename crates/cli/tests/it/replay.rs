use crate::harness::{cli, stdout_records, summary};
use flate2::{Compression, write::GzEncoder};
use kaf_testkit::fixtures;
use kaf_testkit::payloads::{AUDIT_STREAM, control_message, lambda_event, messages, subscription};
use serde_json::{Value, json};
use std::io::Write as _;

const DEMO: &str = "tests/fixtures/samples/liggitt__audit2rbac/testdata__demo.log";

/// Records without the per-source fields, to compare across envelopes.
fn content(mut records: Vec<Value>) -> Vec<Value> {
    for r in &mut records {
        let o = r.as_object_mut().unwrap();
        o.remove("s247agentuid");
        o.remove("logstream");
    }
    records
}

#[test]
fn plain_lines_print_records_and_a_summary() {
    let out = cli(&["replay", DEMO], &[]);
    assert!(out.status.success());
    let records = stdout_records(&out);
    assert_eq!(records.len(), 37);
    assert_eq!(forbidden(&records), 11);
    let s = summary(&out);
    assert_eq!(
        (s["eventsIn"].as_u64(), s["forwarded"].as_u64()),
        (Some(37), Some(37))
    );
}

#[test]
fn every_envelope_shape_gives_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let events = fixtures::events(&fixtures::audit2rbac_demo());
    let payload = subscription("prod", AUDIT_STREAM, &messages(&events));
    let event = lambda_event(&payload);

    let lambda_file = dir.path().join("event.json");
    std::fs::write(&lambda_file, event.to_string()).unwrap();
    let payload_file = dir.path().join("payload.json");
    std::fs::write(&payload_file, payload.to_string()).unwrap();
    // OnFailure destination records as an SQS dump: one JSON per line, gzip'd, plus a control message.
    let destination = json!({"version": "1.0", "requestContext": {"condition": "RetriesExhausted"}, "requestPayload": event});
    let control =
        json!({"version": "1.0", "requestPayload": lambda_event(&control_message("prod"))});
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    writeln!(gz, "{destination}\n{control}").unwrap();
    let sqs_file = dir.path().join("sqs-dump.jsonl.gz");
    std::fs::write(&sqs_file, gz.finish().unwrap()).unwrap();

    let plain = content(stdout_records(&cli(&["replay", DEMO], &[])));
    for file in [&lambda_file, &payload_file, &sqs_file] {
        let out = cli(&["replay", file.to_str().unwrap()], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let records = stdout_records(&out);
        assert!(
            records.iter().all(
                |r| r["s247agentuid"] == json!("prod") && r["logstream"] == json!(AUDIT_STREAM)
            )
        );
        assert_eq!(content(records), plain, "{}", file.display());
    }
    assert_eq!(
        summary(&cli(&["replay", sqs_file.to_str().unwrap()], &[]))["controlMessages"],
        json!(1)
    );
}

#[test]
fn a_malformed_event_is_counted_and_the_rest_printed() {
    let out = cli(
        &[
            "replay",
            DEMO,
            "tests/fixtures/samples/falcosecurity__falco/test__trace_files__k8s_audit__fal_01_003.json",
        ],
        &[],
    );
    assert!(out.status.success());
    assert_eq!(stdout_records(&out).len(), 37);
    assert_eq!(summary(&out)["nonAudit"], json!(1));
}

#[test]
fn unreadable_files_and_bad_configs_exit_2_naming_the_problem() {
    let out = cli(&["replay", "no/such/file.log"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/file.log"));

    let out = cli(&["replay", DEMO, "--logtypeconfig", "e30"], &[]); // "{}"
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`apiKey`"));
    assert!(out.stdout.is_empty());
}

#[test]
fn credentials_are_redacted_by_default_and_only_the_opt_out_shows_them() {
    let sensitive = "tests/fixtures/samples/falcosecurity__falco/test__trace_files__k8s_audit__create_configmap_sensitive_values.json";
    let out = cli(&["replay", sensitive], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 6);
    assert!(
        !stdout.contains("MY-ID") && !stdout.contains("MY-KEY"),
        "{stdout}"
    );
    assert_eq!(summary(&out)["redacted"], json!(24)); // 2 lines × request and response × 6 events
    assert!(stdout.contains("color.good=purple"));

    for opt_out in [
        cli(&["replay", "--no-redact", sensitive], &[]),
        cli(&["replay", sensitive], &[("REDACT_SECRETS", "false")]),
    ] {
        assert!(String::from_utf8_lossy(&opt_out.stdout).contains("MY-KEY"));
        assert_eq!(summary(&opt_out)["redacted"], json!(0));
    }
    let typo = cli(&["replay", sensitive], &[("REDACT_SECRETS", "flase")]);
    assert_eq!(typo.status.code(), Some(2));
}

#[test]
fn the_recommended_policy_keeps_every_denial_and_write_and_drops_noise() {
    let out = cli(
        &[
            "replay",
            "--policy",
            "templates/policies/managed-cluster.yaml",
            DEMO,
            "tests/fixtures/samples/liggitt__audit2rbac/testdata__demo.log@501d132",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = stdout_records(&out);
    assert!(
        records
            .iter()
            .all(|r| r["stage"] != json!("RequestReceived"))
    );
    assert_eq!(forbidden(&records), 22);
    let s = summary(&out);
    assert_eq!(
        (s["eventsIn"].as_u64(), s["policyDropped"].as_u64()),
        (Some(794), Some(324))
    );
    assert_eq!(s["forwarded"].as_u64(), Some(794 - 324));
}

#[test]
fn policy_check_and_test_subcommands() {
    let ok = cli(
        &["policy", "check", "templates/policies/managed-cluster.yaml"],
        &[],
    );
    assert!(ok.status.success());
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n- level: metadata\n",
    )
    .unwrap();
    let out = cli(&["policy", "check", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`rules[1].level`"));

    let passing = cli(
        &["policy", "test", "tests/fixtures/policy/policy-cases.json"],
        &[],
    );
    assert!(passing.status.success());
    assert!(String::from_utf8_lossy(&passing.stdout).ends_with("43 passed, 0 failed\n"));
    let mut cases: Value = serde_json::from_str(
        &std::fs::read_to_string(
            crate::harness::repo_root().join("tests/fixtures/policy/policy-cases.json"),
        )
        .unwrap(),
    )
    .unwrap();
    cases[1]["expect"]["omitManagedFields"] = json!(true);
    let broken = dir.path().join("cases.json");
    std::fs::write(&broken, cases.to_string()).unwrap();
    let failing = cli(&["policy", "test", broken.to_str().unwrap()], &[]);
    assert_eq!(failing.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&failing.stdout);
    assert!(
        stdout.contains("FAIL upstream/namespaced/user-match: omitManagedFields false (want true)"),
        "{stdout}"
    );
    assert!(stdout.ends_with("42 passed, 1 failed\n"));
}

#[test]
fn a_repeated_event_within_one_input_is_forwarded_once_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let demo = std::fs::read_to_string(crate::harness::repo_root().join(DEMO)).unwrap();
    let first = demo.lines().next().unwrap();
    // A retried delivery: the first event again at the end.
    let file = dir.path().join("retried.log");
    std::fs::write(&file, format!("{demo}{first}\n")).unwrap();
    let out = cli(&["replay", file.to_str().unwrap()], &[]);
    let s = summary(&out);
    assert_eq!(
        (
            s["eventsIn"].as_u64(),
            s["deduplicated"].as_u64(),
            s["forwarded"].as_u64()
        ),
        (Some(38), Some(1), Some(37))
    );
    assert_eq!(
        s["bytesIn"].as_u64(),
        Some(demo.lines().map(str::len).sum::<usize>() as u64 + first.len() as u64)
    );
}

#[test]
fn aks_event_hub_bodies_and_handler_failover_files_replay_to_the_same_records() {
    use kaf_testkit::payloads::{aks_record, event_hub_body};
    let dir = tempfile::tempdir().unwrap();
    let events = fixtures::events(&fixtures::audit2rbac_demo());
    let records: Vec<Value> = events
        .iter()
        .map(|e| aks_record("kube-audit-admin", "prod-aks", e))
        .collect();
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, event_hub_body(&records)).unwrap();
    // aks-handler's failover NDJSON: the record with properties.log already parsed.
    let failover: String = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = r.clone();
            let log: Value = serde_json::from_str(r["properties"]["log"].as_str().unwrap().trim_end()).unwrap();
            r["properties"]["log"] = log;
            format!("{}\n", json!({"reason": "transient", "class": "transient", "category": "kube-audit-admin", "eventId": format!("p0-s1-r{i}"), "record": r}))
        })
        .collect();
    let failover_file = dir.path().join("failover.ndjson");
    std::fs::write(&failover_file, failover).unwrap();

    let plain = content(stdout_records(&cli(&["replay", DEMO], &[])));
    for file in [&body_file, &failover_file] {
        let out = cli(&["replay", file.to_str().unwrap()], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let records = stdout_records(&out);
        assert!(
            records
                .iter()
                .all(|r| r["s247agentuid"] == json!("PROD-AKS")
                    && r["logstream"] == json!("kube-audit-admin"))
        );
        assert_eq!(content(records), plain, "{}", file.display());
    }
}

/// How many records are 403s.
fn forbidden(records: &[serde_json::Value]) -> usize {
    records
        .iter()
        .filter(|r| r["responsestatus_code"] == json!(403))
        .count()
}

/// Regression: replaying a 4.3 MB gzip file took 1 GB of memory. A gzip bomb now fails alone, naming the
/// file and the limit, and the other files are still forwarded.
#[test]
fn a_gzip_bomb_fails_alone_and_the_other_files_are_still_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&vec![b'\n'; 8 << 20]).unwrap();
    let bomb = gz.finish().unwrap().repeat(40); // 320 MiB of blank lines in ~300 KB
    let bomb_file = dir.path().join("bomb.log.gz");
    std::fs::write(&bomb_file, bomb).unwrap();
    let out = cli(
        &[
            "replay",
            bomb_file.to_str().unwrap(),
            DEMO,
            "--max-decompressed-bytes",
            "67108864",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bomb.log.gz") && stderr.contains("67108864"),
        "{stderr}"
    );
    assert_eq!(stdout_records(&out).len(), 37);
}
