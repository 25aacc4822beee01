//! Property tests over generated audit events (bounded case counts, so they run in `cargo test`):
//! the compiled path and the generic path agree (fields, values, `Log-Size`) with redaction on and off, no
//! generated secret value reaches any record, and every event is forwarded or counted with a reason.

#![allow(clippy::unwrap_used)]

use super::tests::{agree, agree_under};
use crate::Pipeline;
use kaf_envelope::{Batch, Payload, RawEvent, Source};
use proptest::prelude::*;
use serde_json::{Value, json};

const NOW: i64 = 1_796_256_000_000;

/// A secret value: distinctive, so a leak is found by searching the records' text.
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{10,20}".prop_map(|s| format!("S3CR3T{s}"))
}

/// Text with the characters that make escaping hard: quotes, backslashes, controls, `<>&`, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9:.-]{1,24}",
        "\\PC{0,16}",
        Just("quote\"back\\slash<tag>&amp;\u{1}é😀".to_string()),
        Just(String::new()),
    ]
}

/// Where a generated secret is placed: every place redaction covers (`contracts/k8s-audit.md` §5).
#[derive(Debug, Clone)]
enum Holder {
    None,
    SecretObject,
    SecretPatch,
    SecretInLastApplied,
    SecretList,
    ConfigMapKey,
    ConfigMapLine,
    TokenRequest,
    TokenReview,
    UriQuery,
}

fn holder() -> impl Strategy<Value = Holder> {
    prop_oneof![
        Just(Holder::None),
        Just(Holder::SecretObject),
        Just(Holder::SecretPatch),
        Just(Holder::SecretInLastApplied),
        Just(Holder::SecretList),
        Just(Holder::ConfigMapKey),
        Just(Holder::ConfigMapLine),
        Just(Holder::TokenRequest),
        Just(Holder::TokenReview),
        Just(Holder::UriQuery),
    ]
}

/// An audit event with a secret (if any) where `holder` says, plus random identity and objects.
fn event() -> impl Strategy<Value = (Value, Option<String>)> {
    (
        "[a-f0-9]{8}-[a-f0-9]{4}",
        prop_oneof![
            Just("RequestReceived"),
            Just("ResponseStarted"),
            Just("ResponseComplete"),
            Just("Panic")
        ],
        prop_oneof![Just("get"), Just("list"), Just("create"), Just("patch"), Just("delete")],
        text(),
        proptest::collection::vec(text(), 0..3),
        holder(),
        secret(),
        (text(), any::<u16>(), any::<bool>()),
    )
        .prop_map(|(id, stage, verb, user, groups, holder, secret, (name, code, big))| {
            let mut e = json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
                "auditID": id, "stage": stage, "verb": verb,
                "requestURI": format!("/api/v1/namespaces/default/pods/{name}"),
                "user": {"username": user, "groups": groups},
                "sourceIPs": ["10.0.0.1"], "userAgent": name,
                "objectRef": {"resource": "pods", "namespace": "default", "name": name, "apiVersion": "v1"},
                "responseStatus": {"metadata": {}, "code": code},
                "requestReceivedTimestamp": "2026-04-20T16:32:59.930178Z",
                "stageTimestamp": "2026-04-20T16:32:59.940000Z",
                "annotations": {"authorization.k8s.io/decision": "allow", "note": name},
            });
            if big {
                e["responseObject"] = json!({"kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [{"name": name, "image": "x"}]}});
            }
            let resource = |e: &mut Value, r: &str| e["objectRef"]["resource"] = json!(r);
            let held = match holder {
                Holder::None => None,
                Holder::SecretObject => {
                    resource(&mut e, "secrets");
                    e["requestObject"] = json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": name},
                        "data": {"password": secret}, "stringData": {"token": secret}});
                    Some(secret)
                }
                Holder::SecretPatch => {
                    resource(&mut e, "secrets");
                    e["requestObject"] = json!([{"op": "replace", "path": "/data/password", "value": secret}]);
                    Some(secret)
                }
                Holder::SecretInLastApplied => {
                    resource(&mut e, "secrets");
                    let applied = json!({"kind": "Secret", "apiVersion": "v1", "data": {"key": secret}}).to_string();
                    e["responseObject"] = json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": name,
                        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied}}, "data": {}});
                    Some(secret)
                }
                Holder::SecretList => {
                    resource(&mut e, "secrets");
                    e["responseObject"] = json!({"kind": "SecretList", "apiVersion": "v1",
                        "items": [{"metadata": {"name": "a"}, "data": {"k": secret}}]});
                    Some(secret)
                }
                Holder::ConfigMapKey => {
                    resource(&mut e, "configmaps");
                    e["requestObject"] = json!({"kind": "ConfigMap", "apiVersion": "v1", "data": {"db_password": secret, "plain": name}});
                    Some(secret)
                }
                Holder::ConfigMapLine => {
                    resource(&mut e, "configmaps");
                    e["requestObject"] = json!({"kind": "ConfigMap", "apiVersion": "v1",
                        "data": {"app.properties": format!("mode=fast\napi_key = {secret}\n")}});
                    Some(secret)
                }
                Holder::TokenRequest => {
                    resource(&mut e, "serviceaccounts");
                    e["objectRef"]["subresource"] = json!("token");
                    e["responseObject"] = json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                        "status": {"token": secret, "expirationTimestamp": "2026-04-20T17:32:59Z"}});
                    Some(secret)
                }
                Holder::TokenReview => {
                    resource(&mut e, "tokenreviews");
                    e["objectRef"]["apiGroup"] = json!("authentication.k8s.io");
                    e["requestObject"] = json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                        "spec": {"token": secret}});
                    Some(secret)
                }
                Holder::UriQuery => {
                    e["requestURI"] = json!(format!("/api/v1/namespaces/default/pods?watch=1&token={secret}"));
                    Some(secret)
                }
            };
            (e, held)
        })
}

fn batch(payloads: Vec<Payload>) -> Batch {
    Batch {
        source: Source {
            cluster: "c1".into(),
            stream: "kube-apiserver-audit-x".into(),
            event_pointer: None,
        },
        events: payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| RawEvent {
                id: format!("e{i}"),
                envelope_time_ms: Some(NOW - 1000),
                payload,
            })
            .collect(),
    }
}

/// An event of the kinds the detection rules select (exec, pods and workloads with risky specs, bindings,
/// services, secrets), with identities that need escapes, impersonation, refusals: where the compiled path
/// reads the head from the text and the generic path from the built event.
fn detection_shaped() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just(("pods", "", "")),
            Just(("pods", "exec", "")),
            Just(("pods", "attach", "")),
            Just(("deployments", "", "apps")),
            Just(("clusterrolebindings", "", "rbac.authorization.k8s.io")),
            Just(("services", "", "")),
            Just(("secrets", "", "")),
            Just(("serviceaccounts", "token", "")),
        ],
        prop_oneof![Just("create"), Just("list"), Just("patch"), Just("get")],
        prop_oneof![Just(""), Just("kube-system"), Just("default")],
        (text(), proptest::collection::vec(text(), 0..3), proptest::option::of(text())),
        (prop_oneof![Just(200u16), Just(201), Just(403)], any::<bool>(), any::<u8>()),
    )
        .prop_map(|((resource, sub, group), verb, ns, (user, groups, imp), (code, allow, bits))| {
            let bit = |i: u8| bits & (1 << i) != 0;
            let container = json!({"name": "c", "image": if bit(0) { "nginx:1.25" } else { "quay.io/x/y@sha256:ab" },
                "securityContext": {"privileged": bit(1), "capabilities": {"add": if bit(2) { json!(["SYS_ADMIN"]) } else { json!([]) }}}});
            let spec = json!({"hostNetwork": bit(3), "hostPID": bit(4), "containers": [container],
                "volumes": if bit(5) { json!([{"name": "v", "hostPath": {"path": "/etc"}}]) } else { json!([]) }});
            let object = match resource {
                "deployments" => json!({"kind": "Deployment", "spec": {"template": {"spec": spec}}}),
                "clusterrolebindings" => json!({"kind": "ClusterRoleBinding", "roleRef": {"name": if bit(6) { "cluster-admin" } else { "view" }}}),
                "services" => json!({"kind": "Service", "spec": {"type": if bit(6) { "NodePort" } else { "ClusterIP" }}}),
                _ => json!({"kind": "Pod", "spec": spec}),
            };
            let mut e = json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
                "auditID": format!("d-{bits}-{code}"), "stage": "ResponseComplete", "verb": verb,
                "requestURI": "/x", "user": {"username": user, "groups": groups},
                "objectRef": {"resource": resource, "subresource": sub, "apiGroup": group, "namespace": ns, "name": "n"},
                "responseStatus": {"code": code},
                "annotations": {"authorization.k8s.io/decision": if allow { "allow" } else { "forbid" }},
                "sourceIPs": [if bit(7) { "203.0.113.9" } else { "10.0.0.9" }],
                "requestReceivedTimestamp": "2026-04-20T16:32:59.930178Z", "stageTimestamp": "2026-04-20T16:32:59.940000Z",
                "requestObject": object,
            });
            if let Some(imp) = imp {
                e["impersonatedUser"] = json!({"username": imp, "groups": ["system:masters"]});
            }
            e.to_string()
        })
}

/// An object's `metadata`, with `managedFields` first, in the middle, last, alone or absent.
fn metadata(name: String, at: usize) -> Value {
    let managed =
        json!([{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}]);
    let mut members: Vec<(&str, Value)> = vec![("name", json!(name)), ("uid", json!("u-1"))];
    match at {
        0 => members.insert(0, ("managedFields", managed)),
        1 => members.insert(1, ("managedFields", managed)),
        2 => members.push(("managedFields", managed)),
        3 => members = vec![("managedFields", managed)],
        _ => {}
    }
    // serde_json's map is ordered by key: the text is written by hand to keep these positions.
    let text = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", json!(k)))
        .collect::<Vec<_>>()
        .join(",");
    serde_json::from_str::<Value>(&format!("{{{text}}}"))
        .map_or(Value::Null, |_| Value::String(text))
}

/// Audit events for the policy: any level, request and response objects whose metadata (also in lists and
/// Table rows) may carry managedFields, webhook patch annotations, and with `pretty` whitespace everywhere.
fn policy_shaped() -> impl Strategy<Value = String> {
    (
        (event(), prop_oneof![Just("Metadata"), Just("Request"), Just("RequestResponse"), Just("")]),
        (0usize..5, 0usize..5, 0usize..3),
        (any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(|(((event, _), level), (request_at, response_at, shape), (patched, pretty, annotated_last))| {
            let (mut e, name) = (event, "web-1".to_string());
            if !level.is_empty() {
                e["level"] = json!(level);
            }
            let placeholder = |field: &str| format!("@{field}@");
            e["requestObject"] = json!({"kind": "Pod", "metadata": placeholder("request"), "spec": {"x": 1}});
            e["responseObject"] = match shape {
                0 => json!({"kind": "Pod", "metadata": placeholder("response")}),
                1 => json!({"kind": "PodList", "items": [{"metadata": placeholder("response")}, {"metadata": {"name": "b"}}, 7]}),
                _ => json!({"kind": "Table", "rows": [{"cells": [], "object": {"metadata": placeholder("response")}}, 3]}),
            };
            if patched {
                let annotations = e["annotations"].as_object_mut().unwrap();
                annotations.insert("patch.webhook.admission.k8s.io/round_0_index_0".into(), json!("{\"op\":\"add\"}"));
                if annotated_last {
                    annotations.insert("zz".into(), json!("kept"));
                }
            }
            let text = if pretty { serde_json::to_string_pretty(&e).unwrap() } else { e.to_string() };
            let fill = |text: String, field: &str, at: usize| match metadata(name.clone(), at) {
                Value::String(members) => text.replace(&format!("\"{}\"", placeholder(field)), &format!("{{{members}}}")),
                _ => text,
            };
            fill(fill(text, "request", request_at), "response", response_at)
        })
}

/// A policy of up to three rules (levels, verbs, stages, managed fields), tried in order.
fn audit_policy() -> impl Strategy<Value = crate::policy::Policy> {
    let rule = (
        prop_oneof![
            Just("None"),
            Just("Metadata"),
            Just("Request"),
            Just("RequestResponse")
        ],
        proptest::option::of(proptest::sample::subsequence(
            vec!["get", "list", "create", "patch", "delete"],
            1..3,
        )),
        proptest::option::of(any::<bool>()),
        any::<bool>(),
    )
        .prop_map(|(level, verbs, omit_managed, omit_received)| {
            let mut rule = json!({"level": level});
            if let Some(verbs) = verbs {
                rule["verbs"] = json!(verbs);
            }
            if let Some(omit) = omit_managed {
                rule["omitManagedFields"] = json!(omit);
            }
            if omit_received {
                rule["omitStages"] = json!(["RequestReceived"]);
            }
            rule
        });
    (proptest::collection::vec(rule, 1..4), any::<bool>(), any::<bool>()).prop_map(|(rules, omit_managed, omit_panic)| {
        let mut policy = json!({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": rules, "omitManagedFields": omit_managed});
        if omit_panic {
            policy["omitStages"] = json!(["Panic"]);
        }
        crate::policy::Policy::from_value(&policy).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Detections too: the compiled path tags what the generic path tags.
    #[test]
    fn both_paths_tag_detection_shaped_events_alike(text in detection_shaped(), redact in any::<bool>()) {
        agree(None, &text, None, redact, "detection-shaped");
    }

    /// Under any policy, the compiled path drops, reduces and strips as the generic path does: the generated
    /// events put managedFields and webhook patch annotations where the text cuts are hardest.
    #[test]
    fn both_paths_apply_a_policy_alike(text in policy_shaped(), audit_policy in audit_policy(), redact in any::<bool>()) {
        agree_under(Some(&audit_policy), None, &text, None, redact, "policy-shaped");
    }

    /// Whenever the compiled path takes an event, it writes what the generic path (the oracle) writes.
    #[test]
    fn the_compiled_and_generic_paths_agree((event, _) in event(), redact in any::<bool>()) {
        agree(None, &event.to_string(), None, redact, "generated");
    }

    /// With redaction on, no secret value reaches a record, on either path.
    #[test]
    fn no_secret_value_reaches_a_record((event, secret) in event()) {
        let text = event.to_string();
        for pipeline in [Pipeline::new(None, crate::tests::FORMAT).unwrap(), Pipeline::new(None, crate::tests::FORMAT).unwrap().generic_only()] {
            let out = pipeline.process(batch(vec![Payload::Text(text.clone())]), NOW);
            prop_assert_eq!(out.records.len(), 1);
            if let Some(secret) = &secret {
                prop_assert!(!out.records[0].json.contains(secret.as_str()), "{}", out.records[0].json);
            }
        }
    }

    /// Every event in is forwarded or counted with a reason, whatever the mix: good events, repeats, text
    /// that is not JSON, JSON that is not an event, events the parser cannot take whole.
    #[test]
    fn every_event_is_forwarded_or_counted(
        items in proptest::collection::vec(
            prop_oneof![
                event().prop_map(|(e, _)| e.to_string()),
                "\\PC{0,40}",
                Just("{\"kind\": 0}".to_string()),
                Just("[1,2]".to_string()),
                Just(format!("{{\"kind\":\"Event\",\"auditID\":\"d\",\"stage\":\"ResponseComplete\",\"requestObject\":{}{}}}", "[".repeat(200), "]".repeat(200))),
                Just("{\"kind\":\"Event\",\"auditID\":\"n\",\"stage\":\"ResponseComplete\",\"x\":1e999}".to_string()),
            ],
            0..12,
        ),
        repeat in any::<bool>(),
        compiled in any::<bool>(),
        detections_only in any::<bool>(),
    ) {
        let mut payloads: Vec<Payload> = items.iter().cloned().map(Payload::Text).collect();
        if repeat {
            payloads.extend(items.iter().cloned().map(Payload::Text));
        }
        let n = payloads.len() as u64;
        let pipeline = Pipeline::new(None, crate::tests::FORMAT)
            .unwrap()
            .with_detections(Some(crate::tests::builtin_detector()), detections_only);
        let pipeline = if compiled { pipeline } else { pipeline.generic_only() };
        let out = pipeline.process(batch(payloads), NOW);
        let s = out.stats;
        prop_assert_eq!(s.events_in, n);
        prop_assert_eq!(
            s.forwarded + s.deduplicated + s.non_audit + s.policy_dropped + s.filtered + s.oversize_dropped
                + s.detections_skipped,
            n,
            "{:?}", s
        );
        prop_assert_eq!(out.records.len() as u64, s.forwarded);
        for record in &out.records {
            let parsed: Value = serde_json::from_str(&record.json).unwrap();
            let ts = parsed["_zl_timestamp"].as_i64().unwrap();
            prop_assert!(kaf_config::plausible_ms(ts, NOW), "{}", ts);
        }
    }
}

/// The policy generators, counted: the compiled path takes most of what they make (a path that declined
/// everything would pass the property test), and the cuts are really made: generated objects carry
/// managedFields and patch annotations, no record keeps managedFields, and reduced ones lose the patches.
#[test]
fn policy_shaped_events_are_mostly_compiled_and_really_cut() {
    let strip = crate::policy::Policy::parse(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitManagedFields: true\nrules: [{level: Request, verbs: [get, list]}, {level: Metadata}]",
    )
    .unwrap();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut taken, mut holding, mut patches_cut, total) = (0, 0, 0, 300);
    for _ in 0..total {
        let text =
            proptest::strategy::ValueTree::current(&policy_shaped().new_tree(&mut runner).unwrap());
        holding += usize::from(text.contains("managedFields") || text.contains("patch.webhook"));
        taken += usize::from(agree_under(
            Some(&strip),
            None,
            &text,
            None,
            false,
            "counted",
        ));
        let out = Pipeline::new(None, crate::tests::FORMAT)
            .unwrap()
            .with_policy(Some(strip.clone()))
            .process(batch(vec![Payload::Text(text.clone())]), NOW);
        for record in &out.records {
            assert!(!record.json.contains("managedFields"), "{}", record.json);
            patches_cut += usize::from(
                text.contains("patch.webhook") && !record.json.contains("patch.webhook"),
            );
        }
    }
    eprintln!(
        "compiled path on policy-shaped events: {taken} of {total}, {holding} holding what is cut, patches cut from {patches_cut}"
    );
    assert!(patches_cut >= 10, "{patches_cut}");
    assert!(holding * 100 >= total * 70, "{holding} of {total}");
    assert!(taken * 100 >= total * 90, "{taken} of {total}");
}

/// The secret-holding events, counted: with redaction on, the compiled path takes them (a path that declined
/// them would pass the agreement alone), each of them agrees with the oracle, redacts at least one value, and
/// no record keeps the secret.
#[test]
fn secret_holding_events_are_compiled_and_redacted() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut taken, mut total) = (0, 0);
    while total < 300 {
        let (event, secret) =
            proptest::strategy::ValueTree::current(&event().new_tree(&mut runner).unwrap());
        let Some(secret) = secret else {
            continue;
        };
        total += 1;
        let text = event.to_string();
        taken += usize::from(agree(None, &text, None, true, "secret-holding"));
        let out = Pipeline::new(None, crate::tests::FORMAT)
            .unwrap()
            .process(batch(vec![Payload::Text(text)]), NOW);
        assert!(out.stats.redacted >= 1, "{:?}", out.stats);
        assert!(
            !out.records[0].json.contains(&secret),
            "{}",
            out.records[0].json
        );
    }
    eprintln!("compiled path on secret-holding events, redaction on: {taken} of {total}");
    assert_eq!(taken, total);
}
