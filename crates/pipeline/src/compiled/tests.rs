//! The compiled path against the generic path, the test oracle: on every bundled sample, for the
//! configurations production sends and for generated ones (proptest), with redaction on and off, both give
//! the same fields, values, `Log-Size` and counters. Where the compiled path declines, the oracle ran; the
//! tests count how often.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::policy::Policy;
use crate::{OutRecord, Pipeline, Record};
use kaf_config::LogTypeConfig;
use kaf_envelope::{Batch, Payload, RawEvent, Source};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// 2026-12-03T00:00:00Z: the ingest time of these tests.
const NOW: i64 = 1_796_256_000_000;
const AKS: &str = kaf_envelope::azure::EVENT_POINTER;

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/samples")
}

/// Every audit event of the bundled samples, as text (the line as found, or the nested event re-serialised).
pub(crate) fn sample_texts() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(samples_dir()).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(dir).unwrap() {
            files.push(file.unwrap().path());
        }
    }
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for (i, line) in text.lines().enumerate() {
            let Ok(doc) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let origin = format!("{name}:{}", i + 1);
            if doc.get("auditID").is_some() {
                out.push((origin, line.to_string()));
            } else if let Some(log) = doc.get("log").filter(|l| l.get("auditID").is_some()) {
                out.push((origin, log.to_string()));
            }
        }
    }
    out
}

/// A logtypeconfig with these profile settings (`jsonPath`, `dateField`, `dateFormat`).
fn config(profile: Value) -> LogTypeConfig {
    let mut config = json!({"apiKey": "k", "logType": "t", "uploadDomain": "127.0.0.1:8443"});
    for (key, value) in profile.as_object().unwrap() {
        config[key] = value.clone();
    }
    LogTypeConfig::from_json(&config.to_string()).unwrap()
}

fn bench_config(name: &str) -> LogTypeConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/bench")
        .join(name);
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("PORT", "8443");
    LogTypeConfig::from_json(&text).unwrap()
}

/// The configurations production sends, and none (the CLI's default).
fn production_configs() -> Vec<(&'static str, Option<LogTypeConfig>)> {
    vec![
        ("no config", None),
        (
            "(a) default profile + dateField/dateFormat",
            Some(bench_config("logtypeconfig-a-default-profile.json")),
        ),
        (
            "(b) 25-entry jsonPath",
            Some(bench_config("logtypeconfig-b-jsonpath-25.json")),
        ),
    ]
}

fn one(text: &str, pointer: Option<&'static str>) -> Batch {
    Batch {
        source: Source {
            cluster: "c1".into(),
            stream: "kube-apiserver-audit-x".into(),
            event_pointer: pointer,
        },
        events: vec![RawEvent {
            id: "e".into(),
            envelope_time_ms: Some(1_796_255_000_000),
            payload: Payload::Text(text.to_string()),
        }],
    }
}

/// An AKS diagnostic record holding `event` as its `properties.log` line.
fn aks_record(event: &str) -> String {
    json!({
        "time": "2026-12-02T10:00:00.0000000Z",
        "resourceId": "/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/C1",
        "category": "kube-audit",
        "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
        "properties": {"log": format!("{event}\n"), "stream": "stdout", "pod": "kube-apiserver-1"}
    })
    .to_string()
}

/// `text` through the oracle and through the compiled pipeline: the same counters and records. Returns
/// whether the compiled plan took the event (rather than declining to the oracle).
pub(super) fn agree(
    config: Option<&LogTypeConfig>,
    text: &str,
    pointer: Option<&'static str>,
    redact: bool,
    origin: &str,
) -> bool {
    agree_under(None, config, text, pointer, redact, origin)
}

/// [`agree`] with an audit policy on both paths.
pub(super) fn agree_under(
    audit_policy: Option<&Policy>,
    config: Option<&LogTypeConfig>,
    text: &str,
    pointer: Option<&'static str>,
    redact: bool,
    origin: &str,
) -> bool {
    // Detections on, as in production.
    let detector = Some(crate::tests::builtin_detector());
    let oracle = Pipeline::new(config, crate::tests::FORMAT)
        .unwrap()
        .with_secret_redaction(redact)
        .with_detections(detector.clone(), false)
        .with_policy(audit_policy.cloned())
        .generic_only();
    let compiled = Pipeline::new(config, crate::tests::FORMAT)
        .unwrap()
        .with_secret_redaction(redact)
        .with_detections(detector.clone(), false)
        .with_policy(audit_policy.cloned());
    let want = oracle.process(one(text, pointer), NOW);
    let got = compiled.process(one(text, pointer), NOW);
    assert_eq!(got.stats, want.stats, "{origin}: counters");
    assert_eq!(got.records.len(), want.records.len(), "{origin}: records");
    for (g, w) in got.records.iter().zip(&want.records) {
        same_record(g, w, origin);
    }
    let plan = match pointer {
        None => compiled.plan.as_ref(),
        Some(_) => compiled.enveloped_plan.as_ref(),
    };
    let ctx = Context {
        cluster: "c1",
        stream: "kube-apiserver-audit-x",
        redact_secrets: redact,
        now_ms: NOW,
        envelope_time_ms: Some(1_796_255_000_000),
        detector: detector.as_deref(),
        detect_memo: &Default::default(),
        spare: &Default::default(),
        detections_only: false,
        policy: audit_policy,
    };
    plan.and_then(|p| p.map_event(text, pointer, &ctx, &crate::Seen::default()))
        .is_some()
}

/// The same fields and values, and the same `Log-Size`. A value that is an object's JSON text may list
/// the object's keys in another order (the compiled path keeps the apiserver's); everything else is equal
/// byte for byte.
fn same_record(got: &OutRecord, want: &OutRecord, origin: &str) {
    let (g, w): (Record, Record) = (got.record(), want.record());
    assert_eq!(
        g.keys().collect::<Vec<_>>(),
        w.keys().collect::<Vec<_>>(),
        "{origin}: fields"
    );
    let mut reordered = false;
    for (name, value) in &w {
        if &g[name] == value {
            continue;
        }
        let as_json = |v: &Value| {
            v.as_str()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
        };
        match (as_json(&g[name]), as_json(value)) {
            (Some(a @ (Value::Object(_) | Value::Array(_))), Some(b)) if a == b => reordered = true,
            _ => panic!("{origin}: {name}: {} vs {}", g[name], value),
        }
    }
    assert_eq!(got.billed_bytes, want.billed_bytes, "{origin}: Log-Size");
    if !reordered {
        assert_eq!(got.json, want.json, "{origin}: the same bytes");
    }
}

#[test]
fn every_sample_agrees_under_each_production_configuration() {
    let samples = sample_texts();
    assert!(samples.len() > 850, "{}", samples.len());
    for (name, config) in production_configs() {
        let (mut taken, mut total) = (0, 0);
        for (origin, text) in &samples {
            for redact in [true, false] {
                total += 1;
                taken += usize::from(agree(config.as_ref(), text, None, redact, origin));
            }
        }
        eprintln!(
            "compiled path, {name}: {taken} of {total} (sample, redaction) pairs, the rest declined"
        );
        assert!(
            taken * 100 >= total * 90,
            "{name}: compiled path took {taken} of {total}"
        );
    }
}

/// A profile as an operator extends the default one: `requestURI` split into API version and namespace,
/// the client and its version out of `userAgent`, the status class out of the code (a number), and a group
/// that never takes part.
fn pattern_profile() -> Value {
    json!({
        "jsonPath": [
            {"name": "verb", "key": "verb"},
            {"name": "username", "key": "user.username"},
            {"name": "requesturi", "key": "requestURI",
             "pattern": "^/apis?/(?:[^/]+/)?(?<api_version>v\\d\\w*)(?:/namespaces/(?<uri_namespace>[^/?]+))?(?<never>~~)?"},
            {"name": "useragent", "key": "userAgent",
             "pattern": "^(?<client>[^/ ]+)/(?<client_version>v?[0-9][^ ]*)"},
            {"name": "responsestatus_code", "key": "responseStatus.code",
             "pattern": "^(?<status_class>[1-5])\\d\\d$"},
            {"name": "objectref", "key": "objectRef", "pattern": "\"resource\":\"(?<object_resource>[a-z]+)\""},
            {"name": "stagetimestamp", "key": "stageTimestamp"}
        ],
        "dateField": "stagetimestamp",
        "dateFormat": "%Y-%m-%dT%H:%M:%S.%fZ"
    })
}

/// `jsonPath` patterns on the compiled path: every sample agrees with the oracle, and the compiled path takes
/// them (a plan that declined patterns would pass the agreement alone).
#[test]
fn every_sample_agrees_under_a_profile_with_patterns() {
    let config = config(pattern_profile());
    let samples = sample_texts();
    let (mut taken, mut total, mut split) = (0, 0, [0; 4]);
    for (origin, text) in &samples {
        for redact in [true, false] {
            total += 1;
            taken += usize::from(agree(Some(&config), text, None, redact, origin));
        }
        let records = Pipeline::new(Some(&config), crate::tests::FORMAT)
            .unwrap()
            .process(one(text, None), NOW)
            .records;
        if let Some(record) = records.first().map(OutRecord::record) {
            let groups = ["api_version", "client", "status_class", "object_resource"];
            for (i, g) in groups.iter().enumerate() {
                split[i] += usize::from(record.contains_key(*g));
            }
            assert!(!record.contains_key("never"), "{origin}");
        }
    }
    eprintln!(
        "compiled path, pattern profile: {taken} of {total}; records with api_version, client, status_class, object_resource: {split:?} of {}",
        samples.len()
    );
    assert!(taken * 100 >= total * 90, "{taken} of {total}");
    // Few samples carry a `userAgent` (audit2rbac's demo predates it); every group must still have split some.
    assert!(split.iter().all(|&found| found >= 20), "{split:?}");
    // Aks records too: the same plan rooted at `properties.log`.
    for (origin, text) in samples.iter().take(200) {
        agree(Some(&config), &aks_record(text), Some(AKS), false, origin);
    }
}

/// The audit policies the differential tests apply: the shipped one, audit2rbac's (a real one, from its
/// repository), and the shapes those two lack: everything at Metadata with managed fields kept, Request
/// with them stripped, and RequestResponse that only strips them.
pub(super) fn test_policies() -> Vec<(&'static str, Policy)> {
    let parse = |text: &str| Policy::parse(text).unwrap();
    let audit2rbac = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/samples/liggitt__audit2rbac/testdata__demo-policy.yaml");
    vec![
        (
            "managed-cluster",
            crate::policy::from_env(Some("builtin:managed-cluster"), None)
                .unwrap()
                .unwrap(),
        ),
        (
            "audit2rbac demo",
            parse(&std::fs::read_to_string(audit2rbac).unwrap()),
        ),
        (
            "Metadata, managed fields kept",
            parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Metadata}]"),
        ),
        (
            "Request, managed fields stripped",
            parse(
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitManagedFields: true\nrules: [{level: Request}]",
            ),
        ),
        (
            "RequestResponse, managed fields stripped, RequestReceived omitted",
            parse(
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules: [{level: RequestResponse, omitManagedFields: true}]",
            ),
        ),
    ]
}

/// With an audit policy, the compiled path drops and reduces events as the generic path does, and maps
/// what it keeps the same, on every sample, in every production configuration.
#[test]
fn every_sample_agrees_under_each_policy() {
    let samples = sample_texts();
    let configs = production_configs();
    for (policy_name, audit_policy) in test_policies() {
        for (name, config) in &configs {
            let (mut taken, mut total) = (0, 0);
            for (origin, text) in &samples {
                for redact in [true, false] {
                    total += 1;
                    let origin = format!("{policy_name}, {name}: {origin}");
                    taken += usize::from(agree_under(
                        Some(&audit_policy),
                        config.as_ref(),
                        text,
                        None,
                        redact,
                        &origin,
                    ));
                }
            }
            eprintln!("compiled path, {policy_name}, {name}: {taken} of {total}");
            assert!(
                taken * 100 >= total * 90,
                "{policy_name}, {name}: compiled path took {taken} of {total}"
            );
        }
    }
}

/// Record rules as an operator sets them on a log type (keep writes and denials, mask e-mail users, hash
/// addresses, split the request URI, drop the user agent), on each production profile: every sample agrees,
/// most are compiled, and the rules act.
#[test]
fn every_sample_agrees_under_record_rules() {
    let rules = json!({
        "filterConfig": {"verb": {"match": false, "values": ["watch"], "exact": true}},
        "maskingConfig": {"username": {"regex": "^([^@:]+)@", "string": "***"}},
        "hashingConfig": {"sourceip": {"regex": "(.*)"}},
        "derivedConfig": {"requesturi": ["^/apis?/(?<api_path>[^?]*)(?<query>\\?.*)?"]},
        "ignoredFields": ["useragent"],
    });
    let samples = sample_texts();
    for (name, config) in production_configs() {
        let mut merged = match &config {
            None => json!({}),
            Some(_) => serde_json::from_str(
                &std::fs::read_to_string(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("../../tests/fixtures/bench")
                        .join(match name.starts_with("(a)") {
                            true => "logtypeconfig-a-default-profile.json",
                            false => "logtypeconfig-b-jsonpath-25.json",
                        }),
                )
                .unwrap()
                .replace("PORT", "8443"),
            )
            .unwrap(),
        };
        for (key, value) in rules.as_object().unwrap() {
            merged[key] = value.clone();
        }
        // The CLI's case has no config of its own: the default profile, with these rules.
        let config = match merged.get("apiKey") {
            Some(_) => LogTypeConfig::from_json(&merged.to_string()).unwrap(),
            None => super::tests::config(merged),
        };
        let (mut taken, mut total) = (0, 0);
        for (origin, text) in &samples {
            for redact in [true, false] {
                total += 1;
                taken += usize::from(agree(Some(&config), text, None, redact, origin));
            }
        }
        let pipeline = Pipeline::new(Some(&config), crate::tests::FORMAT).unwrap();
        let (mut filtered, mut hashed) = (0, 0);
        for (_, text) in &samples {
            let out = pipeline.process(one(text, None), NOW);
            filtered += out.stats.filtered;
            hashed += out
                .records
                .iter()
                .filter(|r| {
                    r.record()
                        .get("sourceip")
                        .and_then(Value::as_str)
                        .is_some_and(|ip| ip.len() == 64)
                })
                .count();
        }
        eprintln!(
            "compiled path, record rules, {name}: {taken} of {total}; {filtered} filtered, {hashed} hashed"
        );
        assert!(
            taken * 100 >= total * 90,
            "{name}: compiled path took {taken} of {total}"
        );
        assert!(
            filtered > 0 && hashed > 100,
            "{name}: {filtered} filtered, {hashed} hashed"
        );
    }
}

/// The policies change what the samples become (or the test above would prove little): some are dropped,
/// some reduced. No sample carries managedFields or patch annotations; the property tests cut those.
#[test]
fn the_test_policies_drop_reduce_and_strip_samples() {
    let samples = sample_texts();
    for (policy_name, audit_policy) in test_policies() {
        let pipeline = Pipeline::new(None, crate::tests::FORMAT)
            .unwrap()
            .with_policy(Some(audit_policy.clone()));
        let (mut dropped, mut reduced, mut forwarded) = (0, 0, 0);
        for (_, text) in &samples {
            let out = pipeline.process(one(text, None), NOW);
            dropped += out.stats.policy_dropped;
            reduced += out.stats.policy_reduced;
            forwarded += out.stats.forwarded;
        }
        eprintln!("{policy_name}: {dropped} dropped, {reduced} reduced, {forwarded} forwarded");
        assert!(forwarded > 0, "{policy_name}");
        assert!(
            dropped + reduced > 20,
            "{policy_name}: {dropped} dropped, {reduced} reduced"
        );
    }
}

#[test]
fn aks_records_agree_with_the_default_profile_and_with_a_record_relative_json_path() {
    // Also under the shipped audit policy.
    let record_relative = config(json!({
            "jsonPath": [
                {"name": "username", "key": "properties.log.user.username"},
                {"name": "verb", "key": "properties.log.verb"},
                {"name": "category", "key": "category"},
                {"name": "resource", "key": "properties.log.objectRef.resource"},
                {"name": "decision", "key": "properties.log.annotations.authorization.k8s.io/decision"},
                {"name": "annotations", "key": "properties.log.annotations", "type": "json-object"},
                {"name": "pod", "key": "Properties.pod"},
                {"name": "received", "key": "properties.log.requestReceivedTimestamp"}
            ],
            "dateField": "received"
    }));
    let samples = sample_texts();
    let mut configs = production_configs();
    configs.push(("record-relative jsonPath", Some(record_relative)));
    let managed_cluster = test_policies().remove(0).1;
    for (name, config) in configs {
        let (mut taken, mut total) = (0, 0);
        for (origin, text) in samples.iter().step_by(3) {
            let record = aks_record(text);
            for (redact, audit_policy) in
                [(true, None), (false, None), (true, Some(&managed_cluster))]
            {
                total += 1;
                taken += usize::from(agree_under(
                    audit_policy,
                    config.as_ref(),
                    &record,
                    Some(AKS),
                    redact,
                    origin,
                ));
            }
        }
        eprintln!("compiled path, AKS, {name}: {taken} of {total}");
        assert!(
            taken * 100 >= total * 90,
            "{name}: compiled path took {taken} of {total}"
        );
    }
}

#[test]
fn lookup_rules_and_odd_shapes_agree_or_decline() {
    let config = config(json!({
            "jsonPath": [
                {"name": "user", "key": "user.username"},
                {"name": "user", "key": "User.uid"},
                {"name": "verb", "key": "Verb"},
                {"name": "pod", "key": "user.extra.authentication.kubernetes.io/pod-name.0"},
                {"name": "decision", "key": "annotations.authorization.k8s.io/decision"},
                {"name": "ip2", "key": "sourceIPs.1"},
                {"name": "kind", "key": "requestObject.kind"},
                {"name": "code", "key": "responseStatus.code"},
                {"name": "ok", "key": "responseStatus.ok"},
                {"name": "ratio", "key": "responseStatus.ratio"},
                {"name": "obj", "key": "requestObject"},
                {"name": "ann", "key": "annotations", "type": "json-object"},
                {"name": "logstream", "key": "verb"},
                {"name": "s247x", "key": "stage"}
            ],
            "dateField": "stageTimestamp"
    }));
    let base = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": "a-1",
        "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/default/pods", "verb": "create",
        "user": {"username": "alice", "uid": "u-1",
                 "extra": {"authentication.kubernetes.io/pod-name": ["p"]}},
        "sourceIPs": ["10.0.0.1", "10.0.0.2"],
        "objectRef": {"resource": "pods", "namespace": "default", "name": "p"},
        "responseStatus": {"code": 201, "ok": true, "ratio": 1.50},
        "requestObject": {"kind": "Pod", "metadata": {"name": "p"}},
        "requestReceivedTimestamp": "2026-11-26T10:00:00.000001Z",
        "stageTimestamp": "2026-11-26T10:00:00.100001Z",
        "annotations": {"authorization.k8s.io/decision": "allow", "z": 3, "a": null}
    });
    let text = base.to_string();
    let cases: Vec<(&str, String, bool)> = vec![
        ("plain", text.clone(), true),
        (
            "pretty-printed",
            serde_json::to_string_pretty(&base).unwrap(),
            true,
        ),
        // A dotted literal key at the top is what Site24x7's lookup finds first.
        (
            "dotted literal key",
            text.replacen('{', r#"{"user.username":"shadow","#, 1),
            true,
        ),
        // The last of duplicate keys, as a map keeps it.
        (
            "duplicate key",
            format!("{},\"verb\":\"dup\"}}", &text[..text.len() - 1]),
            true,
        ),
        (
            "capitalised key",
            text.replacen('{', r#"{"Verb":"SHOUT","#, 1),
            true,
        ),
        (
            "escapes",
            text.replace("alice", r#"al\u0069ce \"q\" \u00e9\ud83d\ude00"#),
            true,
        ),
        (
            "no sourceIPs",
            text.replace(r#""sourceIPs":["10.0.0.1","10.0.0.2"],"#, ""),
            true,
        ),
        // A JSON string on the way: the generic path parses it in place; the compiled path declines.
        (
            "JSON-string child",
            text.replace(
                r#""requestObject":{"kind":"Pod","metadata":{"name":"p"}}"#,
                r#""requestObject":"{\"kind\":\"Pod\"}""#,
            ),
            false,
        ),
        ("not an event", r#"{"kind":"Pod"}"#.into(), false),
        (
            "v1beta1 timestamps",
            text.replace("requestReceivedTimestamp", "timestamp"),
            true,
        ),
        (
            "v1beta1 stage time",
            text.replace(
                "stageTimestamp",
                "metadata\":{\"creationTimestamp\":\"2026-11-26T10:00:01Z\"},\"x",
            ),
            true,
        ),
        ("not JSON", "{not json".into(), false),
        (
            "an unreadable time",
            text.replace("2026-11-26T10:00:00.100001Z", "yesterday"),
            true,
        ),
    ];
    for (name, text, taken) in cases {
        for redact in [true, false] {
            assert_eq!(
                agree(Some(&config), &text, None, redact, name),
                taken,
                "{name}"
            );
        }
    }
}

/// Keys a generated profile draws from: Site24x7's lookup rules, literal dotted keys, array indexes,
/// capitals, JSON-string children (when the event has one), and misses.
const KEYS: [&str; 26] = [
    "verb",
    "Verb",
    "user.username",
    "User.username",
    "user.groups",
    "user.extra",
    "user.extra.authentication.kubernetes.io/pod-name.0",
    "user.extra.authentication.kubernetes.io/pod-name",
    "annotations.authorization.k8s.io/decision",
    "annotations",
    "sourceIPs",
    "sourceIPs.0",
    "sourceIPs.1",
    "objectRef",
    "objectRef.resource",
    "responseStatus.code",
    "responseStatus",
    "requestObject",
    "requestObject.metadata.name",
    "requestObject.kind",
    "responseObject.metadata",
    "auditID",
    "requestReceivedTimestamp",
    "stageTimestamp",
    "a.b.c",
    "impersonatedUser.groups",
];

const NAMES: [&str; 10] = [
    "f1",
    "f2",
    "verb",
    "user",
    "Zed",
    "a.b",
    "logstream",
    "_zl_timestamp",
    "inode_x",
    "received",
];

/// `jsonPath` patterns: groups named like generated fields, agent and detection fields, or new names; groups
/// that may not take part; patterns for strings, numbers and object texts.
const ENTRY_PATTERNS: [&str; 10] = [
    "^/api/(?<g_version>v\\d+)(?:/namespaces/(?<g_ns>[^/?]+))?",
    "^/apis/(?<g_group>[^/]+)",
    "^(?<g_client>[^/ ]+)/(?<g_client_version>\\S+)",
    "(?<g_class>\\d)\\d\\d",
    "\"(?<g_key>[a-z]+)\":",
    "(?<g_empty>x*)(?<g_never>zzz)?",
    "^(?<g_first>.)",
    "system:(?<g_system>[a-z-]+)",
    "(?<f2>.)",
    "(?<detections>e)",
];

fn profile_json() -> impl Strategy<Value = Value> {
    let entry = (
        prop::sample::select(&NAMES[..]),
        prop::sample::select(&KEYS[..]),
        prop::bool::weighted(0.2),
        prop::option::weighted(0.1, prop::sample::select(&ENTRY_PATTERNS[..])),
    )
        .prop_map(|(name, key, object, pattern)| {
            let mut e = json!({"name": name, "key": key});
            if object {
                e["type"] = json!("json-object");
            }
            if let Some(pattern) = pattern {
                e["pattern"] = json!(pattern);
            }
            e
        });
    (
        prop::collection::vec(entry, 1..12),
        prop_oneof![
            prop::sample::select(&NAMES[..]).prop_map(str::to_string),
            prop::sample::select(&KEYS[..]).prop_map(str::to_string),
        ],
        prop::sample::select(&["", "%Y-%m-%dT%H:%M:%S.%fZ", "unix"][..]),
    )
        .prop_map(|(entries, date_field, date_format)| {
            let mut profile = json!({"jsonPath": entries, "dateField": date_field});
            if !date_format.is_empty() {
                profile["dateFormat"] = json!(date_format);
            }
            profile
        })
}

/// A sample event, perhaps altered the ways that matter to lookups.
fn event_text() -> impl Strategy<Value = String> {
    let samples = sample_texts();
    (0..samples.len(), 0..6usize).prop_map(move |(i, change)| {
        let text = samples[i].1.clone();
        match change {
            0 => text.replacen('{', r#"{"user.username":"shadow","#, 1),
            1 => text.replacen('{', r#"{"Verb":"SHOUT","#, 1),
            2 => match serde_json::from_str::<Value>(&text) {
                // `requestObject` as a JSON string holding the object.
                Ok(mut v) if v.get("requestObject").is_some() => {
                    let inner = v["requestObject"].to_string();
                    v["requestObject"] = Value::String(inner);
                    v.to_string()
                }
                _ => text,
            },
            3 => format!(
                "{},\"verb\":\"dup\"}}",
                text.trim_end().trim_end_matches('}')
            ),
            _ => text,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_profiles_agree_on_generated_events(
        profile in profile_json(),
        text in event_text(),
        redact in any::<bool>(),
        enveloped in prop::bool::weighted(0.25),
    ) {
        let config = config(profile);
        if enveloped {
            agree(Some(&config), &aks_record(&text), Some(AKS), redact, "generated, AKS");
        } else {
            agree(Some(&config), &text, None, redact, "generated");
        }
    }
}

/// Record fields the rules act on: the default profile's (strings, numbers, object texts), generated
/// profiles' names, and fields no record has.
const RULE_FIELDS: [&str; 14] = [
    "verb",
    "username",
    "useragent",
    "sourceip",
    "requesturi",
    "responsestatus_code",
    "objectref_name",
    "stage",
    "annotations",
    "requestobject",
    "f1",
    "user",
    "logstream",
    "absent",
];

const RULE_PATTERNS: [&str; 8] = [
    "(.*)",
    "^(s)",
    "e",
    "(\\d)\\d*",
    "[a-z]+",
    "x(y)?z",
    "^$",
    "(?:a)(b)?",
];

/// Named-group patterns for `derivedConfig`, naming profile, agent, detection and new fields.
const DERIVE_PATTERNS: [&str; 6] = [
    "^/api/(?<api_version>v\\d+)(?:/namespaces/(?<ns>[^/?]+))?",
    "(?<verb>[a-z]+)",
    "(?<logstream>.)",
    "(?<detections>e)",
    "^(?<f1>.)(?<unmatched>zzz)?",
    "(?<empty>x*)",
];

/// `filterConfig`, `maskingConfig`, `hashingConfig`, `derivedConfig` and `ignoredFields` as a log type's
/// settings write them, on [`RULE_FIELDS`].
fn rules_json() -> impl Strategy<Value = Value> {
    let field = || prop::sample::select(&RULE_FIELDS[..]);
    let pattern = || prop::sample::select(&RULE_PATTERNS[..]);
    let filter = (
        field(),
        any::<bool>(),
        prop::collection::vec(pattern(), 1..3),
        any::<bool>(),
    )
        .prop_map(|(f, include, values, exact)| {
            (
                f,
                json!({"match": include, "values": values, "exact": exact}),
            )
        });
    let mask = (
        field(),
        pattern(),
        prop::sample::select(&["***", "", "#"][..]),
    )
        .prop_map(|(f, regex, string)| (f, json!({"regex": regex, "string": string})));
    let hash = (field(), pattern()).prop_map(|(f, regex)| (f, json!({"regex": regex})));
    let derive = (
        field(),
        prop::collection::vec(prop::sample::select(&DERIVE_PATTERNS[..]), 1..3),
    )
        .prop_map(|(f, patterns)| (f, json!(patterns)));
    let map = |entries: Vec<(&str, Value)>| {
        Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    };
    (
        prop::collection::vec(filter, 0..2),
        prop::collection::vec(mask, 0..3),
        prop::collection::vec(hash, 0..2),
        prop::collection::vec(derive, 0..2),
        prop::collection::vec(field(), 0..3),
    )
        .prop_map(move |(filters, masks, hashes, derives, ignored)| {
            json!({
                "filterConfig": map(filters),
                "maskingConfig": map(masks),
                "hashingConfig": map(hashes),
                "derivedConfig": map(derives),
                "ignoredFields": ignored,
            })
        })
}

/// A generated profile (or the default one) with generated record rules.
fn ruled_config(profile: Option<Value>, rules: Value) -> LogTypeConfig {
    let mut merged = profile.unwrap_or_else(|| json!({}));
    for (key, value) in rules.as_object().unwrap() {
        merged[key] = value.clone();
    }
    config(merged)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The record rules on the compiled path do what they do on the generic path.
    #[test]
    fn generated_rules_agree_on_generated_events(
        rules in rules_json(),
        profile in prop::option::weighted(0.3, profile_json()),
        text in event_text(),
        redact in any::<bool>(),
        audit_policy in prop::option::weighted(0.3, 0..5usize),
    ) {
        let config = ruled_config(profile, rules);
        let audit_policy = audit_policy.map(|i| test_policies().swap_remove(i).1);
        agree_under(audit_policy.as_ref(), Some(&config), &text, None, redact, "generated rules");
    }
}

/// The rules' generators, counted: the compiled path takes most of it (only rules on an object's text, and
/// what declines without rules, go to the generic path), and the rules did something.
#[test]
fn generated_rules_are_mostly_compiled_and_act() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (rules_json(), event_text());
    let (mut taken, mut acted, total) = (0, 0, 300);
    for _ in 0..total {
        let (rules, text) =
            proptest::strategy::ValueTree::current(&strategy.new_tree(&mut runner).unwrap());
        let config = ruled_config(None, rules);
        taken += usize::from(agree(Some(&config), &text, None, false, "counted"));
        let plain = Pipeline::new(None, crate::tests::FORMAT)
            .unwrap()
            .process(one(&text, None), NOW);
        let ruled = Pipeline::new(Some(&config), crate::tests::FORMAT)
            .unwrap()
            .process(one(&text, None), NOW);
        let jsons =
            |p: &crate::Processed| p.records.iter().map(|r| r.json.clone()).collect::<Vec<_>>();
        acted += usize::from(jsons(&plain) != jsons(&ruled));
    }
    eprintln!("compiled path on generated rules: {taken} of {total}, {acted} changed by the rules");
    assert!(taken * 100 >= total * 60, "{taken} of {total}");
    assert!(acted * 100 >= total * 50, "{acted} of {total}");
}

#[test]
fn generated_profiles_are_mostly_compiled_not_declined() {
    // The same generators, counted: a compiled path that declined everything would pass the property test.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (profile_json(), event_text());
    let (mut taken, total) = (0, 300);
    // Profiles with a `pattern` entry: how many, how many the compiled path took an event of.
    let (mut patterned, mut patterned_taken) = (0, 0);
    for _ in 0..total {
        let (profile, text) =
            proptest::strategy::ValueTree::current(&strategy.new_tree(&mut runner).unwrap());
        let has_pattern = profile["jsonPath"]
            .as_array()
            .is_some_and(|entries| entries.iter().any(|e| e.get("pattern").is_some()));
        let config = config(profile);
        let took = agree(Some(&config), &text, None, false, "counted");
        taken += usize::from(took);
        patterned += usize::from(has_pattern);
        patterned_taken += usize::from(has_pattern && took);
    }
    eprintln!(
        "compiled path on generated profiles and events: {taken} of {total}; with a pattern: {patterned_taken} of {patterned}"
    );
    assert!(taken * 100 >= total * 60, "{taken} of {total}");
    assert!(
        patterned >= 50 && patterned_taken * 100 >= patterned * 40,
        "{patterned_taken} of {patterned}"
    );
}

#[test]
fn hostile_and_unusual_shapes_with_the_default_profile_agree_or_decline() {
    let base = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": "a-1",
        "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/default/pods", "verb": "create",
        "user": {"username": "alice", "groups": ["dev", "system:authenticated"],
                 "extra": {"authentication.kubernetes.io/pod-name": ["p"], "sessionName": ["s1"]}},
        "sourceIPs": ["10.0.0.1", "10.0.0.2"], "userAgent": "kubectl",
        "objectRef": {"resource": "pods", "namespace": "default", "name": "p", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestObject": {"kind": "Pod", "metadata": {"name": "p"}},
        "responseObject": {"kind": "Pod", "metadata": {"name": "p", "uid": "u"}},
        "requestReceivedTimestamp": "2026-11-26T10:00:00.000001Z",
        "stageTimestamp": "2026-11-26T10:00:00.100001Z",
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC"}
    });
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(&str, String, bool)> = vec![
        ("plain", base.to_string(), true),
        (
            "pretty-printed",
            serde_json::to_string_pretty(&base).unwrap(),
            true,
        ),
        (
            "webhook item without kind",
            with(&|v| {
                v.as_object_mut().unwrap().remove("kind");
            }),
            true,
        ),
        (
            "empty annotations",
            with(&|v| v["annotations"] = json!({})),
            true,
        ),
        (
            "null objects",
            with(&|v| {
                v["requestObject"] = Value::Null;
                v["responseStatus"] = Value::Null;
            }),
            true,
        ),
        (
            "dotted key at the top",
            with(&|v| v["user.username"] = json!("mallory")),
            true,
        ),
        (
            "other letter case",
            with(&|v| v["auditid"] = json!("x")),
            true,
        ),
        (
            "capitalised parent",
            with(&|v| v["User"] = json!({"username": "m"})),
            true,
        ),
        (
            "dotted extra key",
            with(&|v| v["user"]["extra"]["sessionName.0"] = json!("m")),
            true,
        ),
        (
            "annotation prefix",
            with(&|v| v["annotations"]["authorization"] = json!("{\"k8s\":1}")),
            true,
        ),
        (
            "user as JSON text",
            with(&|v| v["user"] = json!("{\"username\":\"m\"}")),
            false,
        ),
        ("numeric verb", with(&|v| v["verb"] = json!(7)), true),
        (
            "string object",
            with(&|v| v["responseObject"] = json!("skipped-too-big-size-object")),
            true,
        ),
        ("not an event", with(&|v| v["kind"] = json!("Pod")), false),
        (
            "secret resource",
            with(&|v| v["objectRef"]["resource"] = json!("secrets")),
            true,
        ),
        (
            "secret in a list",
            with(&|v| {
                v["responseObject"] = json!({"kind": "List", "items": [{"kind": "Secret", "data": {"k": "c2VjcmV0"}}]})
            }),
            true,
        ),
        (
            "escaped kind",
            base.to_string().replace(
                "\"kind\":\"Pod\"",
                "\"kind\":\"\\u0053ecret\",\"data\":{\"k\":\"v\"}",
            ),
            true,
        ),
        (
            "token in the URI",
            with(&|v| v["requestURI"] = json!("/api/v1/pods?watch=1&access_token=abc")),
            true,
        ),
        (
            "unreadable time",
            with(&|v| v["requestReceivedTimestamp"] = json!("yesterday")),
            true,
        ),
        (
            "duplicate key",
            base.to_string().replacen(
                "\"verb\":\"create\"",
                "\"verb\":\"get\",\"verb\":\"create\"",
                1,
            ),
            true,
        ),
        ("not JSON", "{\"auditID\": ".to_string(), false),
    ];
    for (name, text, compiled) in cases {
        for redact in [true, false] {
            // The secret-shaped cases are compiled with redaction on too: the objects it changes are redacted
            // by the generic path's code and written back as text.
            let took = agree(None, &text, None, redact, name);
            assert_eq!(took, compiled, "{name} (redact: {redact})");
        }
    }
}

#[test]
fn both_paths_share_one_identity_for_deduplication() {
    let compiled = r#"{"kind":"Event","auditID":"d-1","stage":"ResponseComplete","verb":"get","requestReceivedTimestamp":"2026-11-26T10:00:00.000001Z","stageTimestamp":"2026-11-26T10:00:00.000002Z"}"#;
    // The same event with a JSON-string child only the generic path handles, then the compiled one again.
    let generic = compiled.replace(
        r#""verb":"get""#,
        r#""verb":"get","user":"{\"username\":\"x\"}""#,
    );
    assert!(agree(None, compiled, None, true, "compiled"));
    assert!(!agree(None, &generic, None, true, "generic"));
    for order in [[&generic, compiled], [compiled, &generic]] {
        let mut batch = one(order[0], None);
        batch.events.push(one(order[1], None).events.remove(0));
        let out = Pipeline::new(None, crate::tests::FORMAT)
            .unwrap()
            .process(batch, NOW);
        assert_eq!((out.stats.forwarded, out.stats.deduplicated), (1, 1));
    }
}

/// Tagged events are mapped by the compiled path too (the differential tests above check that it tags them
/// as the generic path does), unless secret redaction or the profile send them to the generic path.
#[test]
fn tagged_events_are_compiled_not_declined() {
    let detector = crate::tests::builtin_detector();
    for (name, config) in production_configs() {
        let pipeline = Pipeline::new(config.as_ref(), crate::tests::FORMAT)
            .unwrap()
            .with_detections(Some(detector.clone()), false);
        let ctx = Context {
            cluster: "c1",
            stream: "kube-apiserver-audit-x",
            redact_secrets: true,
            now_ms: NOW,
            envelope_time_ms: None,
            detector: Some(&detector),
            detect_memo: &Default::default(),
            spare: &Default::default(),
            detections_only: false,
            policy: None,
        };
        let (mut tagged, mut compiled) = (0, 0);
        for (_, text) in sample_texts() {
            let out = pipeline.process(one(&text, None), NOW);
            if out.stats.detected == 0 {
                continue;
            }
            tagged += 1;
            let plan = pipeline.plan.as_ref().unwrap();
            if let Some(Compiled::Record(m)) = plan.map_event(&text, None, &ctx, &Seen::default()) {
                assert!(!m.detections.is_empty());
                compiled += 1;
            }
        }
        eprintln!("{name}: {compiled} of {tagged} tagged samples compiled");
        assert!(tagged > 30, "{name}: {tagged}");
        assert!(
            compiled * 10 >= tagged * 7,
            "{name}: {compiled} of {tagged}"
        );
    }
}

/// The compiled path reads the rules' values from the text, not from a built event: where text and built
/// value differ (duplicate keys, where the last one counts; escaped strings; numbers; workloads' nested pod
/// specs; an impersonated identity whose groups an exception reads), it must tag exactly as the built event.
#[test]
fn detections_read_from_text_agree_with_the_built_event() {
    let detector = crate::tests::builtin_detector();
    let ctx = Context {
        cluster: "c1",
        stream: "kube-apiserver-audit-x",
        redact_secrets: false,
        now_ms: NOW,
        envelope_time_ms: None,
        detector: Some(&detector),
        detect_memo: &Default::default(),
        spare: &Default::default(),
        detections_only: false,
        policy: None,
    };
    let head = r#""kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete","requestURI":"/x","sourceIPs":["10.0.0.1"],"user":{"username":"alice","groups":["dev"]},"responseStatus":{"code":201},"requestReceivedTimestamp":"2026-01-01T00:00:00.000000Z","stageTimestamp":"2026-01-01T00:00:00.100000Z""#;
    let pod = |spec: &str| {
        format!(
            r#"{{{head},"verb":"create","objectRef":{{"resource":"pods","namespace":"default","name":"p","apiVersion":"v1"}},"requestObject":{{"kind":"Pod","spec":{spec}}}}}"#
        )
    };
    let cases = [
        // The last of duplicate keys is the one a built object keeps: privileged, then not.
        pod(
            r#"{"containers":[{"name":"a","image":"nginx","securityContext":{"privileged":true,"privileged":false}}]}"#,
        ),
        pod(
            r#"{"containers":[{"name":"a","image":"nginx","securityContext":{"privileged":false,"privileged":true}}]}"#,
        ),
        // Escapes in keys and values.
        pod(r#"{"host\u004eetwork":true,"containers":[{"name":"a","image":"ngin\u0078"}]}"#),
        pod(
            r#"{"volumes":[{"name":"v","hostPath":{"path":"\/etc"}}],"containers":[{"name":"a","image":"nginx"}]}"#,
        ),
        // A capability list with a duplicate, and a number where a string is expected.
        pod(
            r#"{"containers":[{"name":"a","image":"nginx","securityContext":{"capabilities":{"add":["NET_ADMIN","SYS_ADMIN","SYS_ADMIN"]}}},{"name":"b","image":7}]}"#,
        ),
        // A workload's pod spec, and a CronJob's, under several container lists.
        format!(
            r#"{{{head},"verb":"create","objectRef":{{"resource":"cronjobs","namespace":"default","name":"j","apiGroup":"batch"}},"requestObject":{{"spec":{{"jobTemplate":{{"spec":{{"template":{{"spec":{{"hostPID":true,"initContainers":[{{"name":"i","image":"busybox"}}],"containers":[{{"name":"c","image":"nginx","securityContext":{{"privileged":true}}}}]}}}}}}}}}}}}}}"#
        ),
        // ConfigMap data: `*` over an object whose keys repeat.
        format!(
            r#"{{{head},"verb":"create","objectRef":{{"resource":"configmaps","namespace":"default","name":"c","apiVersion":"v1"}},"requestObject":{{"data":{{"password":"x","password":"hunter2","aws_secret_access_key":"k"}}}}}}"#
        ),
        // An impersonated identity: exceptions on groups must cover both.
        format!(
            r#"{{{head},"verb":"create","impersonatedUser":{{"username":"system:node:n1","groups":["system:nodes"]}},"objectRef":{{"resource":"certificatesigningrequests","name":"csr","apiGroup":"certificates.k8s.io"}},"requestObject":{{"spec":{{"signerName":"kubernetes.io/kube-apiserver-client","usages":["client auth"]}}}}}}"#
        ),
    ];
    // Source addresses, as the two public-address rules read them: plain, escaped, a scalar, mixed elements,
    // one private address among public ones, and none that parses.
    let from = |ips: &str| {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a2","stage":"ResponseComplete","requestURI":"/x","verb":"get","sourceIPs":{ips},"user":{{"username":"system:serviceaccount:kube-system:foo"}},"objectRef":{{"resource":"pods","namespace":"kube-system","name":"p"}},"responseStatus":{{"code":200}},"requestReceivedTimestamp":"2026-01-01T00:00:00.000000Z","stageTimestamp":"2026-01-01T00:00:00.100000Z"}}"#
        )
    };
    let addresses = [
        r#"["203.0.113.7"]"#,
        r#"["203.0.113.7"]"#,
        r#""203.0.113.7""#,
        r#"[7,"203.0.113.7",null]"#,
        r#"["203.0.113.7","10.0.0.1"]"#,
        r#"["not an address"]"#,
        r#"[]"#,
    ];
    let cases: Vec<String> = cases
        .into_iter()
        .chain(addresses.iter().map(|ips| from(ips)))
        .collect();
    let plan = Pipeline::new(None, crate::tests::FORMAT)
        .unwrap()
        .plan
        .unwrap();
    let mut tagged = 0;
    for text in &cases {
        let mut event: Value = serde_json::from_str(text).unwrap();
        crate::events::normalize(&mut event);
        let want = detector.detect(&event).ids;
        tagged += usize::from(!want.is_empty());
        match plan.map_event(text, None, &ctx, &Seen::default()) {
            Some(Compiled::Record(m)) => assert_eq!(m.detections, want, "{text}"),
            other => panic!("declined or skipped ({}): {text}", other.is_some()),
        }
    }
    // Most cases raise something: they test the values, not only the selectors.
    assert!(tagged >= 10, "{tagged} of {} tagged", cases.len());
}

/// A batch remembers each `sourceIPs` text's address verdict: more distinct texts than the memo keeps, each
/// seen several times and public, private, escaped or odd in turn, are tagged in one batch exactly as each
/// event alone, built, is tagged (a stale or misfiled verdict would tag the wrong events).
#[test]
fn a_batch_remembers_address_verdicts_by_text() {
    let detector = crate::tests::builtin_detector();
    let pipeline = Pipeline::new(None, crate::tests::FORMAT)
        .unwrap()
        .with_detections(Some(detector.clone()), false);
    let addresses = [
        r#"["203.0.113.7"]"#,
        r#"["10.0.0.7"]"#,
        r#"["203.0.113.8", "10.0.0.8"]"#,
        r#""198.51.100.9""#,
        r#"["198.51.100.10"]"#,
        r#"["\u0031\u0030.0.0.1"]"#,
        r#"["2001:db8::11"]"#,
        r#"["fd00::12"]"#,
        r#"["192.0.2.13"]"#,
        r#"["172.16.0.14"]"#,
        r#"[]"#,
        r#"null"#,
    ];
    // A forwarded-for chain longer than the memo keeps: all public, then one private address at its end.
    let chain = |last: &str| {
        let mut ips: Vec<String> = (1..=60).map(|i| format!("\"198.51.100.{i}\"")).collect();
        ips.push(format!("\"{last}\""));
        format!("[{}]", ips.join(","))
    };
    let (public_chain, private_chain) = (chain("203.0.113.99"), chain("10.9.9.9"));
    let addresses: Vec<&str> = addresses
        .into_iter()
        .chain([public_chain.as_str(), private_chain.as_str()])
        .collect();
    let texts: Vec<String> = (0..3 * addresses.len())
        .map(|i| {
            // Distinct texts in a shuffled order, so verdicts are evicted and read again.
            let ips = addresses[(i * 5) % addresses.len()];
            format!(
                r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a{i}","stage":"ResponseComplete","requestURI":"/x","verb":"get","sourceIPs":{ips},"user":{{"username":"system:serviceaccount:kube-system:foo"}},"objectRef":{{"resource":"pods","namespace":"kube-system","name":"p"}},"responseStatus":{{"code":200}},"requestReceivedTimestamp":"2026-01-01T00:00:00.000000Z","stageTimestamp":"2026-01-01T00:00:00.100000Z"}}"#
            )
        })
        .collect();
    let mut batch = one("", None);
    batch.events = texts
        .iter()
        .enumerate()
        .map(|(i, text)| RawEvent {
            id: format!("e{i}"),
            envelope_time_ms: None,
            payload: Payload::Text(text.clone()),
        })
        .collect();
    let out = pipeline.process(batch, NOW);
    assert_eq!(out.records.len(), texts.len());
    let mut public = 0;
    for (record, text) in out.records.iter().zip(&texts) {
        let mut event: Value = serde_json::from_str(text).unwrap();
        crate::events::normalize(&mut event);
        let want = detector.detect(&event).ids;
        let got: Value = serde_json::from_str(&record.json).unwrap();
        let got: Vec<&str> = got["detections"]
            .as_array()
            .map(|ids| ids.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(got, want, "{text}");
        public += usize::from(want.contains(&"system-principal-public-ip"));
    }
    // Both verdicts occur, several times each.
    assert!((12..=30).contains(&public), "{public} of {}", texts.len());
}

proptest! {
    /// The parser-free read of `sourceIPs` gives what serde gives, or leaves the array to serde: on arrays of
    /// addresses, odd strings (quotes, backslashes, commas, control characters), numbers and whitespace.
    #[test]
    fn plain_strings_are_what_serde_reads_or_left_to_it(
        items in prop::collection::vec(
            prop_oneof![
                "[0-9a-f.:]{0,15}".prop_map(Value::String),
                "[ -~]{0,6}".prop_map(Value::String),
                Just(Value::String("a,b".into())),
                Just(Value::String("\n".into())),
                Just(json!(7)),
            ],
            0..4,
        ),
        spaced in any::<bool>(),
    ) {
        let text = if spaced {
            serde_json::to_string_pretty(&items).unwrap()
        } else {
            serde_json::to_string(&items).unwrap()
        };
        let mut out = vec!["kept"];
        if push_plain_strings(&text, &mut out) {
            let by_serde: Vec<&str> = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&out[1..], &by_serde[..]);
        } else {
            prop_assert_eq!(out, vec!["kept"]);
        }
    }
}

#[test]
fn plain_strings_take_the_usual_source_ips() {
    let mut out = Vec::new();
    assert!(push_plain_strings(
        r#"["10.0.0.1", "2001:db8::1"]"#,
        &mut out
    ));
    assert_eq!(out, ["10.0.0.1", "2001:db8::1"]);
    for text in [
        r#"["a\"b"]"#,
        r#"["a\\b"]"#,
        "[1]",
        r#"["a",]"#,
        r#"["a" "b"]"#,
        "[",
        "x",
    ] {
        assert!(!push_plain_strings(text, &mut Vec::new()), "{text}");
    }
}

#[test]
fn a_vector_passed_on_keeps_its_allocation() {
    let text = String::from("{\"a\":1}");
    let mut members: Vec<(Str<'_>, Raw<'_>)> = Vec::with_capacity(40);
    members.push((
        Str(std::borrow::Cow::Borrowed(&text[2..3])),
        Raw::new(&text[5..6]),
    ));
    let (at, capacity) = (members.as_ptr() as usize, members.capacity());
    let passed: Vec<(Str<'static>, Raw<'static>)> = emptied(members);
    assert_eq!(
        (passed.as_ptr() as usize, passed.capacity()),
        (at, capacity)
    );
    assert!(passed.is_empty());
}
