#![allow(clippy::unwrap_used)]

use super::*;
use kaf_envelope::RawEvent;
use serde_json::json;

/// The tests' record format: the upload API's names (`kaf_upload::format::SITE24X7`, which this crate cannot
/// depend on), so that the expectations read as the records that are sent.
pub(crate) const FORMAT: RecordFormat = RecordFormat {
    time_field: "_zl_timestamp",
    source_field: "s247agentuid",
    stream_field: "logstream",
    max_record_bytes: 1_000_000,
    is_metadata_field: |name| {
        name.starts_with("_zl") || name.starts_with("s247") || name.starts_with("inode")
    },
};

/// 2026-12-03T00:00:00Z: the tests' ingest time.
const NOW: i64 = 1_796_256_000_000;

/// The built-in rule set, parsed once for all tests.
pub(crate) fn builtin_detector() -> Arc<detect::Detector> {
    static DETECTOR: std::sync::LazyLock<Arc<detect::Detector>> =
        std::sync::LazyLock::new(|| Arc::new(detect::Detector::builtin()));
    DETECTOR.clone()
}

fn config(extra: Value) -> LogTypeConfig {
    let mut v = json!({"apiKey": "k", "logType": "t", "uploadDomain": "d"});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    LogTypeConfig::from_json(&v.to_string()).unwrap()
}

fn batch(events: Vec<(Option<i64>, Payload)>) -> Batch {
    Batch {
        source: Source {
            cluster: "demo".into(),
            stream: "kube-apiserver-audit-1".into(),
            event_pointer: None,
        },
        events: events
            .into_iter()
            .enumerate()
            .map(|(i, (t, payload))| RawEvent {
                id: format!("e{i}"),
                envelope_time_ms: t,
                payload,
            })
            .collect(),
    }
}

fn event(extra: Value) -> Value {
    let mut v = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": "id-1",
        "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/default/pods", "verb": "list",
        "user": {"username": "alice", "groups": ["g1", "g2"]}, "sourceIPs": ["10.0.0.1", "10.0.0.2"],
        "requestReceivedTimestamp": "2026-04-20T16:32:59.930178Z", "stageTimestamp": "2026-04-20T16:32:59.940000Z"
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

#[test]
fn default_profile_is_valid_and_maps_the_documented_fields() {
    let p = Pipeline::new(None, crate::tests::FORMAT).unwrap();
    let e = event(json!({
        "user": {"username": "arn-user", "uid": "u1", "groups": ["system:authenticated"],
                 "extra": {"sessionName": ["s1"], "arn": ["arn:aws:sts::1:assumed-role/r/s1"], "principalId": ["AROA1"]}},
        "impersonatedUser": {"username": "bob"},
        "objectRef": {"resource": "pods", "namespace": "default", "apiVersion": "v1"},
        "responseStatus": {"code": 403, "reason": "Forbidden", "message": "nope", "status": "Failure"},
        "annotations": {"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": "no rbac"},
        "requestObject": {"kind": "Pod", "spec": {"x": 1}}
    }));
    let out = p.process(batch(vec![(None, Payload::Json(e))]), NOW);
    let r = &out.records[0].record();
    assert_eq!(r["username"], json!("arn-user"));
    assert_eq!(r["user_sessionname"], json!("s1"));
    assert_eq!(r["user_arn"], json!("arn:aws:sts::1:assumed-role/r/s1"));
    assert_eq!(r["user_principalid"], json!("AROA1"));
    assert_eq!(r["usergroups"], json!("[\"system:authenticated\"]"));
    assert_eq!(r["impersonateduser_username"], json!("bob"));
    assert_eq!(r["sourceip"], json!("10.0.0.1"));
    assert_eq!(r["sourceips"], json!("[\"10.0.0.1\",\"10.0.0.2\"]"));
    assert_eq!(r["responsestatus_code"], json!(403));
    assert_eq!(r["authorization_decision"], json!("forbid"));
    assert_eq!(r["authorization_reason"], json!("no rbac"));
    assert_eq!(
        r["annotations"],
        json!([{"key": "authorization.k8s.io/decision", "value": "forbid"}, {"key": "authorization.k8s.io/reason", "value": "no rbac"}])
    );
    assert_eq!(
        r["requestobject"],
        json!("{\"kind\":\"Pod\",\"spec\":{\"x\":1}}")
    );
    assert_eq!(r["objectref_resource"], json!("pods"));
    assert_eq!(r["_zl_timestamp"], json!(1_776_702_779_930_i64));
    assert_eq!(
        (r["s247agentuid"].as_str(), r["logstream"].as_str()),
        (Some("demo"), Some("kube-apiserver-audit-1"))
    );
    assert!(!r.contains_key("responseobject"));
}

#[test]
fn config_json_path_alone_defines_the_record_and_keeps_falsy_values() {
    let c = config(json!({"jsonPath": [
        {"name": "code", "key": "responseStatus.code"}, {"name": "flag", "key": "x.flag"},
        {"name": "empty", "key": "x.empty"}, {"name": "nothing", "key": "x.null"}, {"name": "verb"}
    ]}));
    let p = Pipeline::new(Some(&c), crate::tests::FORMAT).unwrap();
    let e = event(
        json!({"responseStatus": {"code": 0}, "x": {"flag": false, "empty": "", "null": null}}),
    );
    let r = p
        .process(batch(vec![(None, Payload::Json(e))]), NOW)
        .records
        .remove(0)
        .record();
    let keys: Vec<&str> = r.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "_zl_timestamp",
            "code",
            "flag",
            "logstream",
            "s247agentuid",
            "verb"
        ]
    );
    assert_eq!(
        (r["code"].clone(), r["flag"].clone()),
        (json!(0), json!(false))
    );
}

#[test]
fn unreadable_timestamps_fall_back_to_the_envelope_then_ingest_time_and_are_counted() {
    let p = Pipeline::new(None, crate::tests::FORMAT).unwrap();
    let bad = event(json!({"requestReceivedTimestamp": "yesterday"}));
    let with_id = |id: &str, mut e: Value| {
        e["auditID"] = json!(id);
        e
    };
    let out = p.process(
        batch(vec![
            (Some(1_700_000_000_000), Payload::Json(bad.clone())),
            (None, Payload::Json(with_id("id-2", bad.clone()))),
            // Parses, but to the epoch or to year 1: a fallback too, never 0 or a huge negative number.
            (
                Some(1_700_000_000_001),
                Payload::Json(with_id(
                    "id-3",
                    event(json!({"requestReceivedTimestamp": "1970-01-01T00:00:00Z"})),
                )),
            ),
            (
                None,
                Payload::Json(with_id(
                    "id-4",
                    event(json!({"requestReceivedTimestamp": "0001-01-01T00:00:00Z"})),
                )),
            ),
            // An implausible envelope time is skipped as well: the ingest time it is.
            (Some(0), Payload::Json(with_id("id-5", bad))),
        ]),
        NOW,
    );
    let times: Vec<Value> = out
        .records
        .iter()
        .map(|r| r.record()["_zl_timestamp"].clone())
        .collect();
    assert_eq!(
        times,
        [
            json!(1_700_000_000_000_i64),
            json!(NOW),
            json!(1_700_000_000_001_i64),
            json!(NOW),
            json!(NOW)
        ]
    );
    assert_eq!(out.stats.timestamp_fallbacks, 5);
}

#[test]
fn v1beta1_events_get_their_times_from_legacy_fields() {
    let p = Pipeline::new(None, crate::tests::FORMAT).unwrap();
    let mut e = event(
        json!({"apiVersion": "audit.k8s.io/v1beta1", "timestamp": "2017-09-11T19:55:05Z",
                             "metadata": {"creationTimestamp": "2017-09-11T19:55:06Z"}}),
    );
    e.as_object_mut()
        .unwrap()
        .remove("requestReceivedTimestamp");
    e.as_object_mut().unwrap().remove("stageTimestamp");
    let out = p.process(batch(vec![(None, Payload::Json(e))]), NOW);
    assert_eq!(out.stats.timestamp_fallbacks, 0);
    assert_eq!(
        out.records[0].record()["_zl_timestamp"],
        json!(1_505_159_705_000_i64)
    );
    assert_eq!(
        out.records[0].record()["stagetimestamp"],
        json!("2017-09-11T19:55:06Z")
    );
}

#[test]
fn custom_date_field_and_format_from_the_config() {
    let c = config(json!({"dateField": "stageTimestamp", "dateFormat": "%Y-%m-%dT%H:%M:%S.%fZ"}));
    let p = Pipeline::new(Some(&c), crate::tests::FORMAT).unwrap();
    let out = p.process(batch(vec![(None, Payload::Json(event(json!({}))))]), NOW);
    assert_eq!(out.stats.timestamp_fallbacks, 0);
    assert_eq!(
        out.records[0].record()["_zl_timestamp"],
        json!(1_776_702_779_940_i64)
    );
}

#[test]
fn filter_runs_on_unmasked_values_then_mask_hash_derive_and_ignore() {
    let c = config(json!({
        "filterConfig": {"username": {"match": true, "values": ["^alice$"]}},
        "maskingConfig": {"username": {"regex": "(ali)ce", "string": "***"}},
        "hashingConfig": {"sourceip": {"regex": "(.*)"}},
        "derivedConfig": {"requesturi": ["^/api/(?<apiver>v\\d+)/namespaces/(?<ns>[^/]+)"]},
        "ignoredFields": ["useragent", "sourceips"]
    }));
    let p = Pipeline::new(Some(&c), crate::tests::FORMAT).unwrap();
    let bob = event(json!({"user": {"username": "bob"}, "auditID": "id-bob"}));
    let out = p.process(
        batch(vec![
            (None, Payload::Json(event(json!({"userAgent": "kubectl"})))),
            (None, Payload::Json(bob)),
        ]),
        0,
    );
    assert_eq!(out.stats.filtered, 1);
    let r = &out.records[0].record();
    assert_eq!(r["username"], json!("***ce"));
    assert_eq!(r["sourceip"], json!(rules::sha256_hex("10.0.0.1")));
    assert_eq!(
        (r["apiver"].clone(), r["ns"].clone()),
        (json!("v1"), json!("default"))
    );
    assert!(!r.contains_key("useragent") && !r.contains_key("sourceips"));
}

#[test]
fn bad_events_are_counted_and_sampled_without_content_and_never_stop_the_batch() {
    let p = Pipeline::new(None, crate::tests::FORMAT).unwrap();
    let out = p.process(
        batch(vec![
            (None, Payload::Text("{\"kind\": 0}".into())),
            (None, Payload::Text("password=hunter2 not json".into())),
            (None, Payload::Text("{\"records\": []}".into())),
            (None, Payload::Json(event(json!({})))),
        ]),
        NOW,
    );
    // The text that is not JSON is kept as an unparsed record; JSON that is not an audit event is dropped.
    assert_eq!((out.stats.events_in, out.stats.forwarded), (4, 2));
    assert_eq!((out.stats.malformed, out.stats.non_audit), (1, 2));
    assert_eq!(out.rejects.len(), 3);
    assert!(
        out.rejects.iter().all(|r| !r.reason.contains("hunter2")),
        "{:?}",
        out.rejects
    );
    assert!(out.rejects[0].reason.contains("keys: kind"));
    let unparsed = out.records[0].record();
    assert_eq!(out.unparsed, ["e1"]);
    assert!(
        unparsed["kaf_unparsed"]
            .as_str()
            .unwrap()
            .contains("expected")
    );
    assert_eq!(unparsed["raw_bytes"], json!(25));
    assert_eq!(unparsed["_zl_timestamp"], json!(NOW));
    // Redaction cannot look inside text it cannot parse: the text is withheld.
    assert!(
        !out.records[0].json.contains("hunter2"),
        "{}",
        out.records[0].json
    );
    let open = Pipeline::new(None, crate::tests::FORMAT)
        .unwrap()
        .with_secret_redaction(false)
        .process(
            batch(vec![(
                None,
                Payload::Text("password=hunter2 not json".into()),
            )]),
            NOW,
        );
    assert_eq!(
        open.records[0].record()["raw_event"],
        json!("password=hunter2 not json")
    );
}

/// Regression: one event nested deeper than serde_json's limit, or holding `1e999`, was dropped, and through
/// `serve` the whole webhook batch with it. It is salvaged field by field.
#[test]
fn an_event_with_unparsable_fields_is_forwarded_with_placeholders() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let text = event(
        json!({"level": "RequestResponse", "objectRef": {"resource": "widgets", "name": "w1"}}),
    )
    .to_string()
    .replacen(
        '{',
        &format!("{{\"requestObject\":{{\"spec\":{deep}}},\"generation\":1e999,"),
        1,
    );
    // The compiled path passes objects through as raw text, whatever their depth.
    let fast = Pipeline::new(None, crate::tests::FORMAT)
        .unwrap()
        .process(batch(vec![(None, Payload::Text(text.clone()))]), NOW);
    assert_eq!((fast.stats.forwarded, fast.stats.salvaged), (1, 0));
    let out = Pipeline::new(None, crate::tests::FORMAT)
        .unwrap()
        .generic_only()
        .process(batch(vec![(None, Payload::Text(text))]), NOW);
    assert_eq!((out.stats.forwarded, out.stats.salvaged), (1, 1));
    let r = out.records[0].record();
    assert_eq!(r["username"], json!("alice"));
    assert_eq!(r["objectref_name"], json!("w1"));
    assert!(
        r["requestobject"]
            .as_str()
            .unwrap()
            .starts_with("<unparsable, withheld")
    );
    let note = r["kaf_unparsed"].as_str().unwrap();
    assert!(
        note.contains("generation (number out of range")
            && note.contains("requestObject (recursion"),
        "{note}"
    );
    assert_eq!(out.unparsed, ["e0"]);
}

#[test]
fn events_without_kind_are_recognised_by_audit_id_and_stage() {
    let p = Pipeline::new(None, crate::tests::FORMAT).unwrap();
    let mut e = event(json!({}));
    e.as_object_mut().unwrap().remove("kind");
    e.as_object_mut().unwrap().remove("apiVersion");
    assert_eq!(
        p.process(batch(vec![(None, Payload::Json(e))]), NOW)
            .stats
            .forwarded,
        1
    );
}

#[test]
fn over_size_records_are_shrunk_and_counted() {
    let p = Pipeline::new(None, crate::tests::FORMAT)
        .unwrap()
        .with_max_record_bytes(50_000);
    let e = event(json!({"requestObject": {"data": "x".repeat(120_000)}}));
    let out = p.process(batch(vec![(None, Payload::Json(e))]), NOW);
    assert_eq!(out.stats.truncated, 1);
    let r = &out.records[0].record();
    assert!(limits::serialized_len(r) <= 50_000);
    assert!(
        r["requestobject"]
            .as_str()
            .unwrap()
            .ends_with(limits::TRUNCATION_MARKER)
    );
    assert_eq!(r["verb"], json!("list"));
}

#[test]
fn repeated_audit_id_and_stage_pairs_are_dropped_across_chunks_and_counted() {
    let p = Pipeline::new(None, crate::tests::FORMAT).unwrap();
    let received = event(json!({"stage": "RequestReceived"}));
    let complete = event(json!({}));
    let other = event(json!({"auditID": "id-2"}));
    let mut no_id = event(json!({}));
    no_id.as_object_mut().unwrap().remove("auditID");
    let events: Vec<_> = [
        &received, &complete, &complete, &other, &received, &no_id, &no_id,
    ]
    .into_iter()
    .map(|e| (None, Payload::Json(e.clone())))
    .collect();
    let bytes: u64 = [
        &received, &complete, &complete, &other, &received, &no_id, &no_id,
    ]
    .iter()
    .map(|e| e.to_string().len() as u64)
    .sum();
    // Chunks of 2: the repeats fall into other chunks than their first occurrence.
    let chunks: Vec<Processed> = p.chunks(batch(events), 2, NOW).collect();
    assert_eq!(chunks.len(), 4);
    let mut total = PipelineStats::default();
    chunks.iter().for_each(|c| total += c.stats.clone());
    assert_eq!(
        (total.events_in, total.deduplicated, total.forwarded),
        (7, 2, 5)
    );
    assert_eq!(total.bytes_in, bytes);
    // A second, separate batch starts afresh (dedupe is per invocation).
    assert_eq!(
        p.process(batch(vec![(None, Payload::Json(complete))]), NOW)
            .stats
            .forwarded,
        1
    );
}

const PANTHER: &str = include_str!(
    "../../../tests/fixtures/samples/panther-labs__panther-analysis/DERIVED__all_tests.jsonl"
);

/// The 34 real AKS diagnostic records of the Panther samples, `properties.log` parsed as the envelope does.
fn aks_records() -> Vec<Value> {
    PANTHER
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|row| row["log"].clone())
        .filter(|log| log.get("category").is_some() && log.get("properties").is_some())
        .collect()
}

/// AKS records as the envelope hands them over: each record's own text.
fn aks_batch(records: Vec<Value>) -> Batch {
    let mut b = batch(
        records
            .into_iter()
            .map(|r| (None, Payload::Shared(r.to_string().into())))
            .collect(),
    );
    b.source.event_pointer = Some(kaf_envelope::azure::EVENT_POINTER);
    b
}

#[test]
fn aks_records_map_like_their_bare_events_with_the_default_profile() {
    let records = aks_records();
    assert_eq!(records.len(), 34);
    let events: Vec<Value> = records
        .iter()
        .map(|r| match &r["properties"]["log"] {
            Value::String(text) => serde_json::from_str(text.trim_end()).unwrap(),
            object => object.clone(),
        })
        .collect();
    let p = Pipeline::new(None, crate::tests::FORMAT).unwrap();
    let from_records = p.process(aks_batch(records), NOW);
    let from_events = p.process(
        batch(
            events
                .into_iter()
                .map(|e| (None, Payload::Json(e)))
                .collect(),
        ),
        NOW,
    );
    // Two of the hand-written records share auditID `abc-123` at ResponseComplete: one is a repeat.
    assert_eq!(
        (
            from_records.stats.forwarded,
            from_records.stats.deduplicated
        ),
        (33, 1)
    );
    // Objects passed through as JSON text keep the apiserver's key order on the compiled path (AKS
    // records) and are re-serialised on the generic path: compared as JSON.
    let strip = |o: &OutRecord| json_text_parsed(o.record());
    assert_eq!(
        from_records.records.iter().map(strip).collect::<Vec<_>>(),
        from_events.records.iter().map(strip).collect::<Vec<_>>()
    );
    assert!(
        from_records
            .records
            .iter()
            .any(|r| r.record().contains_key("requestobject"))
    );
}

#[test]
fn a_custom_json_path_on_aks_is_relative_to_the_record_as_in_site24x7_configs() {
    let c = config(json!({"jsonPath": [
        {"name": "username", "key": "properties.log.user.username"},
        {"name": "category"}, {"name": "operation", "key": "operationName"}
    ]}));
    let p = Pipeline::new(Some(&c), crate::tests::FORMAT).unwrap();
    let out = p.process(aks_batch(aks_records()), NOW);
    let r = &out.records[0].record();
    assert_eq!(r["username"], json!("policy-admin@example.com"));
    assert_eq!(r["category"], json!("kube-audit"));
    assert_eq!(
        r["operation"],
        json!("Microsoft.ContainerService/managedClusters/diagnosticLogs/Read")
    );
}

#[test]
fn aks_log_lines_that_are_not_audit_json_are_counted() {
    let mut text_line = aks_records()[0].clone();
    text_line["properties"]["log"] = json!("I0420 16:29:59.995 apiserver started\n");
    let mut no_log = aks_records()[1].clone();
    no_log["properties"].as_object_mut().unwrap().remove("log");
    let out = Pipeline::new(None, crate::tests::FORMAT)
        .unwrap()
        .process(aks_batch(vec![text_line, no_log]), NOW);
    // The text line is kept as an unparsed record (the AKS handler also parks it raw); no log at all is
    // not an audit event.
    assert_eq!(
        (
            out.stats.malformed,
            out.stats.non_audit,
            out.stats.forwarded
        ),
        (1, 1, 1)
    );
    assert_eq!(out.unparsed, ["e0"]);
    assert!(
        out.rejects[0].reason.contains("not JSON"),
        "{:?}",
        out.rejects
    );
}

#[test]
fn aks_skipped_too_big_objects_are_kept_as_they_are() {
    let mut record = aks_records().remove(0);
    let mut event: Value = match &record["properties"]["log"] {
        Value::String(text) => serde_json::from_str(text.trim_end()).unwrap(),
        object => object.clone(),
    };
    event["requestObject"] = json!("skipped-too-big-size-object");
    event["responseObject"] = json!("skipped-too-big-size-object");
    record["properties"]["log"] = json!(format!("{event}\n"));
    let out = Pipeline::new(None, crate::tests::FORMAT)
        .unwrap()
        .process(aks_batch(vec![record]), NOW);
    let r = &out.records[0].record();
    assert_eq!(r["requestobject"], json!("skipped-too-big-size-object"));
    assert_eq!(r["responseobject"], json!("skipped-too-big-size-object"));
    assert_eq!(out.stats.redacted, 0);
}

#[test]
fn a_reused_audit_id_is_not_a_repeat_unless_the_timestamps_match_too() {
    let p = Pipeline::new(None, crate::tests::FORMAT).unwrap();
    let event = |received: &str| {
        json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": "chosen-by-client",
               "stage": "ResponseComplete", "verb": "delete", "requestURI": "/api/v1/namespaces/prod/secrets/db",
               "requestReceivedTimestamp": received, "stageTimestamp": received, "user": {"username": "mallory"}})
    };
    let first = event("2026-11-26T10:00:00.000001Z");
    let events = vec![
        (None, Payload::Json(first.clone())),
        // The same event again (a retried delivery): dropped.
        (None, Payload::Json(first)),
        // Another request that sent the same `Audit-ID` header: kept.
        (None, Payload::Json(event("2026-11-26T10:05:00.000001Z"))),
    ];
    let stats = p.process(batch(events), NOW).stats;
    assert_eq!((stats.forwarded, stats.deduplicated), (2, 1));
}

/// Regression: on AKS, an explicit `dateField` (as Site24x7's pages write it) was resolved against the
/// diagnostic record, found nothing there, and silently took the record's `time` (≈ stageTimestamp).
#[test]
fn aks_explicit_date_field_names_a_field_of_the_audit_event() {
    let text =
        include_str!("../../../tests/fixtures/samples/liggitt__audit2rbac/testdata__demo.log");
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(events.len() > 30);
    let records: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({"time": "2026-04-20T16:29:59.995191417Z", "category": "kube-audit",
                   "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/C1",
                   "properties": {"log": format!("{e}\n")}})
        })
        .collect();
    let config = config(json!({"dateField": "requestReceivedTimestamp",
                               "dateFormat": "%Y-%m-%dT%H:%M:%S.%fZ"}));
    let p = Pipeline::new(Some(&config), crate::tests::FORMAT).unwrap();
    let mut b = aks_batch(records);
    for e in &mut b.events {
        e.envelope_time_ms = Some(1_776_702_599_995);
    }
    let out = p.process(b, NOW);
    assert_eq!(out.stats.timestamp_fallbacks, 0);
    assert_eq!(out.records.len() as u64, out.stats.forwarded);
    for record in &out.records {
        let record = record.record();
        let received = chrono::DateTime::parse_from_rfc3339(
            record["requestreceivedtimestamp"].as_str().unwrap(),
        )
        .unwrap()
        .timestamp_millis();
        assert_eq!(record["_zl_timestamp"], json!(received));
    }
}

/// A record with every string value that holds a JSON object or array replaced by that JSON.
fn json_text_parsed(mut record: crate::Record) -> crate::Record {
    for value in record.values_mut() {
        if let Value::String(text) = value
            && text.starts_with(['{', '['])
            && let Ok(parsed) = serde_json::from_str::<Value>(text)
        {
            *value = parsed;
        }
    }
    record
}

/// A Falco trace file (one event per line), as a batch.
fn falco_trace(name: &str) -> Batch {
    let path = format!(
        "{}/../../tests/fixtures/samples/falcosecurity__falco/test__trace_files__k8s_audit__{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    batch(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| (None, Payload::Text(l.to_string())))
            .collect(),
    )
}

fn tagging(p: Pipeline) -> Pipeline {
    p.with_detections(Some(builtin_detector()), false)
}

#[test]
fn matching_records_carry_rule_ids_and_the_highest_severity_and_others_are_unchanged() {
    for generic in [false, true] {
        let build = |detections: bool| {
            let p = Pipeline::new(None, FORMAT).unwrap();
            let p = if detections { tagging(p) } else { p };
            if generic { p.generic_only() } else { p }
        };
        let tagged = build(true).process(falco_trace("create_nginx_pod_privileged"), NOW);
        let record = tagged.records[0].record();
        assert_eq!(
            record["detections"],
            json!(["privileged-pod"]),
            "generic: {generic}"
        );
        assert_eq!(record["detection_severity"], "high");
        assert_eq!(tagged.stats.detected, 1);
        assert_eq!(tagged.stats.detections.get("privileged-pod"), 1);
        // The tag is billed like any field.
        let plain = build(false).process(falco_trace("create_nginx_pod_privileged"), NOW);
        assert_eq!(
            tagged.records[0].billed_bytes,
            plain.records[0].billed_bytes
                + r#"["privileged-pod"]"#.len() as u64
                + "high".len() as u64
        );

        // An event no rule takes: byte for byte the record of today.
        let quiet = falco_trace("create_nginx_pod_unprivileged");
        let tagged = build(true).process(quiet.clone(), NOW);
        let plain = build(false).process(quiet, NOW);
        assert_eq!(tagged.records, plain.records);
        assert!(!tagged.records[0].json.contains("detection"));
        assert_eq!(
            (tagged.stats.detected, tagged.stats.detections.is_empty()),
            (0, true)
        );
    }
}

#[test]
fn detections_see_the_original_event_and_carry_no_secret() {
    // ConfigMap credentials are redacted in the record, but the rule saw them first.
    let out = tagging(Pipeline::new(None, FORMAT).unwrap())
        .process(falco_trace("create_configmap_sensitive_values"), NOW);
    let record = &out.records[0];
    assert_eq!(
        record.record()["detections"],
        json!(["configmap-credentials"])
    );
    assert!(out.stats.redacted > 0);
    assert!(!record.json.contains("MY-KEY"), "{}", record.json);

    // A Metadata-level policy removes the request object before mapping; the rule still saw the pod spec.
    let policy = policy::Policy::parse(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
    )
    .unwrap();
    let out = tagging(
        Pipeline::new(None, FORMAT)
            .unwrap()
            .with_policy(Some(policy)),
    )
    .process(falco_trace("create_nginx_pod_privileged"), NOW);
    let record = out.records[0].record();
    assert_eq!(record["detections"], json!(["privileged-pod"]));
    assert!(!out.records[0].json.contains("securityContext"));
}

#[test]
fn detections_only_forwards_what_raised_one_and_counts_the_rest() {
    let mut events = Vec::new();
    for name in [
        "create_nginx_pod_privileged",
        "create_nginx_pod_unprivileged",
        "exec_pod",
        "create_configmap",
    ] {
        events.extend(
            falco_trace(name)
                .events
                .into_iter()
                .map(|e| (None, e.payload)),
        );
    }
    // A repeat of the exec, and a line that is not JSON (kept: no rule can read it, and it is anomalous).
    let exec = events[2].1.clone();
    events.push((None, exec));
    events.push((None, Payload::Text("{not json".into())));
    for generic in [false, true] {
        let p = Pipeline::new(None, FORMAT)
            .unwrap()
            .with_detections(Some(builtin_detector()), true);
        let p = if generic { p.generic_only() } else { p };
        let out = p.process(batch(events.clone()), NOW);
        let ids: Vec<Value> = out
            .records
            .iter()
            .map(|r| r.record().get("detections").cloned().unwrap_or(Value::Null))
            .collect();
        assert_eq!(
            ids,
            vec![json!(["privileged-pod"]), json!(["pod-exec"]), Value::Null],
            "generic: {generic}"
        );
        assert_eq!(out.stats.detections_skipped, 2, "generic: {generic}");
        assert_eq!(out.stats.deduplicated, 1);
        assert_eq!(out.stats.malformed, 1);
        assert_eq!(out.stats.forwarded, 3);
        assert_eq!(out.stats.detected, 2);
    }
}

#[test]
fn detections_off_is_the_default() {
    let out = Pipeline::new(None, FORMAT)
        .unwrap()
        .process(falco_trace("create_nginx_pod_privileged"), NOW);
    assert!(!out.records[0].json.contains("detection"));
    // `only` without a rule set is not a mode: nothing is skipped.
    let out = Pipeline::new(None, FORMAT)
        .unwrap()
        .with_detections(None, true)
        .process(falco_trace("create_nginx_pod_unprivileged"), NOW);
    assert_eq!((out.stats.forwarded, out.stats.detections_skipped), (1, 0));
}

#[test]
fn a_profile_field_named_detections_is_overwritten_on_tagged_events_only() {
    let c = config(json!({"jsonPath": [
        {"name": "detections", "key": "verb"}, {"name": "username", "key": "user.username"}
    ]}));
    for generic in [false, true] {
        let p = tagging(Pipeline::new(Some(&c), FORMAT).unwrap());
        let p = if generic { p.generic_only() } else { p };
        let tagged = p.process(falco_trace("exec_pod"), NOW).records[0].record();
        assert_eq!(tagged["detections"], json!(["pod-exec"]));
        let quiet = p.process(falco_trace("create_configmap"), NOW).records[0].record();
        assert_eq!(quiet["detections"], "create");
    }
}
