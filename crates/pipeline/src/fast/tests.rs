//! The fast path against the generic path: on every bundled sample and on hostile variants, either the fast
//! path declines or both give the same record, `Log-Size` and counters.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::{Pipeline, Record};
use kaf_envelope::{Batch, Payload, RawEvent, Source};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// 2026-12-03T00:00:00Z: the ingest time of these tests.
const NOW: i64 = 1_796_256_000_000;

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/samples")
}

/// Every audit event of the bundled samples, as text (the line as found, or the nested event re-serialised).
fn sample_texts() -> Vec<(String, String)> {
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

fn one(text: &str) -> Batch {
    Batch {
        source: Source {
            cluster: "c1".into(),
            stream: "kube-apiserver-audit-x".into(),
            event_pointer: None,
        },
        events: vec![RawEvent {
            id: "e".into(),
            envelope_time_ms: Some(7),
            payload: Payload::Text(text.to_string()),
        }],
    }
}

fn context(redact: bool) -> Context<'static> {
    Context {
        cluster: "c1",
        stream: "kube-apiserver-audit-x",
        redact_secrets: redact,
        max_record_bytes: crate::MAX_RECORD_BYTES,
        now_ms: NOW,
        envelope_time_ms: Some(7),
    }
}

/// Fields whose value is JSON text: equal when they parse to the same JSON (the fast path keeps the
/// apiserver's own text, the generic path re-serialises).
const JSON_TEXT: [&str; 2] = ["requestobject", "responseobject"];

/// Compare the fast path's record with the generic pipeline's for `text`; `true` if the fast path took it.
pub(super) fn agree(text: &str, redact: bool, origin: &str) -> bool {
    let generic = Pipeline::new(None)
        .unwrap()
        .with_secret_redaction(redact)
        .without_fast_path();
    let slow = generic.process(one(text), NOW);
    let Some(mapped) = map_event(text, &context(redact), &crate::Seen::default()) else {
        return false;
    };
    assert_eq!(
        slow.records.len(),
        1,
        "{origin}: the generic path dropped what the fast path kept"
    );
    assert_eq!(
        slow.stats.redacted, 0,
        "{origin}: the fast path took an event that needed redaction"
    );
    let expected = &slow.records[0];
    let got: Record = serde_json::from_str(&mapped.json).unwrap();
    let want = expected.record();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{origin}: fields"
    );
    let mut log_size_delta: i64 = 0;
    for (name, value) in &want {
        if JSON_TEXT.contains(&name.as_str()) {
            let (a, b) = (got[name].as_str().unwrap(), value.as_str().unwrap());
            let parse = |t: &str| serde_json::from_str::<Value>(t).unwrap();
            assert_eq!(parse(a), parse(b), "{origin}: {name}");
            log_size_delta += a.len() as i64 - b.len() as i64;
        } else {
            assert_eq!(&got[name], value, "{origin}: {name}");
        }
    }
    assert_eq!(
        mapped.log_size as i64,
        expected.log_size as i64 + log_size_delta,
        "{origin}: Log-Size"
    );
    if log_size_delta == 0 && !want.keys().any(|k| JSON_TEXT.contains(&k.as_str())) {
        assert_eq!(
            mapped.json, expected.json,
            "{origin}: same bytes without objects"
        );
    }
    assert_eq!(
        mapped.timestamp_fallback,
        slow.stats.timestamp_fallbacks == 1,
        "{origin}: time fallback"
    );
    true
}

#[test]
fn the_fast_path_agrees_with_the_generic_path_on_every_sample() {
    let samples = sample_texts();
    assert!(samples.len() > 850, "{}", samples.len());
    let mut taken = 0;
    for (origin, text) in &samples {
        for redact in [true, false] {
            taken += usize::from(agree(text, redact, origin));
        }
    }
    // Nearly everything goes fast; what does not is secrets, configmaps and unusual shapes.
    eprintln!(
        "fast path: {taken} of {} (sample, redaction) pairs",
        samples.len() * 2
    );
    assert!(
        taken * 100 >= samples.len() * 2 * 90,
        "fast path took {taken} of {}",
        samples.len() * 2
    );
}

#[test]
fn hostile_and_unusual_shapes_are_left_to_the_generic_path_or_agree() {
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
            false,
        ),
        (
            "other letter case",
            with(&|v| v["auditid"] = json!("x")),
            false,
        ),
        (
            "capitalised parent",
            with(&|v| v["User"] = json!({"username": "m"})),
            false,
        ),
        (
            "dotted extra key",
            with(&|v| v["user"]["extra"]["sessionName.0"] = json!("m")),
            false,
        ),
        (
            "annotation prefix",
            with(&|v| v["annotations"]["authorization"] = json!("{\"k8s\":1}")),
            false,
        ),
        (
            "user as JSON text",
            with(&|v| v["user"] = json!("{\"username\":\"m\"}")),
            false,
        ),
        ("numeric verb", with(&|v| v["verb"] = json!(7)), false),
        (
            "string object",
            with(&|v| v["responseObject"] = json!("skipped-too-big-size-object")),
            false,
        ),
        ("not an event", with(&|v| v["kind"] = json!("Pod")), false),
        (
            "secret resource",
            with(&|v| v["objectRef"]["resource"] = json!("secrets")),
            false,
        ),
        (
            "secret in a list",
            with(&|v| {
                v["responseObject"] = json!({"kind": "List", "items": [{"kind": "Secret", "data": {"k": "c2VjcmV0"}}]})
            }),
            false,
        ),
        (
            "escaped kind",
            base.to_string().replace(
                "\"kind\":\"Pod\"",
                "\"kind\":\"\\u0053ecret\",\"data\":{\"k\":\"v\"}",
            ),
            false,
        ),
        (
            "token in the URI",
            with(&|v| v["requestURI"] = json!("/api/v1/pods?watch=1&access_token=abc")),
            false,
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
    for (name, text, fast) in cases {
        for redact in [true, false] {
            let took = agree(&text, redact, name);
            // Without redaction, the secret-shaped cases may go fast (they agree, which `agree` checked).
            if redact || fast {
                assert_eq!(took, fast, "{name} (redact: {redact})");
            }
        }
    }
}

#[test]
fn the_field_table_is_the_shipped_profile_and_in_write_order() {
    let profile = crate::Profile::kubernetes_audit().unwrap();
    assert!(covers(
        &profile.entries,
        &profile.date_field,
        &profile.date_format
    ));
    let names: Vec<&str> = FIELDS.iter().map(|f| f.0).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    assert!(Pipeline::new(None).unwrap().fast);
}

#[test]
fn json_text_is_escaped_like_serde_escapes_the_compact_text() {
    for raw in [
        r#"{"a": [1, 2],
 "b": "x y\" z", "c": "\\", "d": "\u003c/\n\t", "e": {"f": null}}"#,
        r#"["a\"b","\\\"",{"k":"v w"}]"#,
        "{}",
        r#"{"only":"plain"}"#,
        r#"{"go":"a \u003cb\u003E \u0026\u0026 c \u00e9 \\u003c"}"#,
    ] {
        let value: Value = serde_json::from_str(raw).unwrap();
        let raw_value: &RawValue = serde_json::from_str(raw).unwrap();
        let mut buf = Vec::new();
        let len = write_json_text(&mut buf, raw_value.get());
        let text: String = serde_json::from_slice(&buf).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            value,
            "{raw}"
        );
        assert_eq!(len, text.len(), "{raw}");
        assert!(
            !text.contains('\n'),
            "whitespace outside strings dropped: {text}"
        );
        assert_eq!(buf, serde_json::to_vec(&text).unwrap(), "{raw}");
    }
    let mut buf = Vec::new();
    write_json_text(&mut buf, r#"{"go":"a \u003cb\u003E \u0026 \\u003c"}"#);
    let text: String = serde_json::from_slice(&buf).unwrap();
    assert_eq!(
        text, r#"{"go":"a <b> & \\u003c"}"#,
        "Go's HTML escapes undone, an escaped backslash kept"
    );
}

#[test]
fn both_paths_share_one_identity_for_deduplication() {
    let fast = r#"{"kind":"Event","auditID":"d-1","stage":"ResponseComplete","verb":"get","requestReceivedTimestamp":"2026-11-26T10:00:00.000001Z","stageTimestamp":"2026-11-26T10:00:00.000002Z"}"#;
    // The same event with a key only the generic path handles, then the fast one again.
    let generic = fast.replace(r#""verb":"get""#, r#""verb":"get","user.username":"x""#);
    assert!(map_event(fast, &context(true), &crate::Seen::default()).is_some());
    assert!(map_event(&generic, &context(true), &crate::Seen::default()).is_none());
    for order in [[&generic, fast], [fast, &generic]] {
        let mut batch = one(order[0]);
        batch.events.push(one(order[1]).events.remove(0));
        let out = Pipeline::new(None).unwrap().process(batch, NOW);
        assert_eq!((out.stats.forwarded, out.stats.deduplicated), (1, 1));
    }
}

#[test]
fn strings_are_written_as_serde_writes_them() {
    for text in [
        "plain",
        "",
        "quote \" and \\ slash",
        "tab\tnew\nline",
        "\u{1}",
        "é ünïcode \u{2028}",
        "</script>",
    ] {
        let mut w = Writer::with_capacity(0);
        w.buf.clear();
        w.string(text);
        assert_eq!(w.buf, serde_json::to_vec(text).unwrap(), "{text:?}");
    }
}

#[test]
fn lists_are_written_as_the_json_text_serde_makes() {
    for items in [
        vec![],
        vec!["system:masters"],
        vec!["a", "b c", "10.0.0.1"],
        vec!["q\"uote", "back\\slash"],
    ] {
        let list: Vec<Str<'_>> = items.iter().map(|s| Str(Cow::Borrowed(*s))).collect();
        let mut w = Writer::with_capacity(0);
        w.list_json("l", Some(&list));
        let (json, log_size) = w.finish();
        let record: Value = serde_json::from_str(&json).unwrap();
        let expected = serde_json::to_string(&items).unwrap();
        assert_eq!(record["l"], Value::String(expected.clone()), "{items:?}");
        assert_eq!(log_size, expected.len() as u64, "{items:?}");
        assert_eq!(
            json,
            serde_json::to_string(&json!({"l": expected})).unwrap()
        );
    }
}
