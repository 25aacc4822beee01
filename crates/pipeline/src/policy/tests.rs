#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::{Value, json};

const CASES: &str = include_str!("../../../../tests/fixtures/policy/policy-cases.json");
const DEMO_POLICY: &str = include_str!(
    "../../../../tests/fixtures/samples/liggitt__audit2rbac/testdata__demo-policy.yaml"
);
const DEMO_LOG: &str = include_str!(
    "../../../../tests/fixtures/samples/liggitt__audit2rbac/testdata__demo.log@501d132"
);

#[test]
fn every_shared_conformance_case_passes() {
    let results = cases::run(CASES).unwrap();
    assert_eq!(results.len(), 43);
    let failures: Vec<_> = results.iter().filter(|r| r.failure.is_some()).collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_wrong_expectation_is_reported_as_a_failure() {
    let mut cases: Value = serde_json::from_str(CASES).unwrap();
    cases[0]["expect"]["level"] = json!("Request");
    let results = cases::run(&cases.to_string()).unwrap();
    assert!(
        results[0]
            .failure
            .as_deref()
            .unwrap()
            .contains("level Metadata (want Request)")
    );
}

fn policy(rules: Value) -> Result<Policy, PolicyError> {
    Policy::from_value(&json!({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": rules}))
}

#[test]
fn validation_refuses_what_the_apiserver_refuses_and_names_the_field() {
    let cases = [
        (json!([{"level": "metadata"}]), "rules[0].level"),
        (json!([{}]), "rules[0].level"),
        (
            json!([{"level": "None", "omitStages": ["ResponseDone"]}]),
            "rules[0].omitStages[0]",
        ),
        (
            json!([{"level": "None", "nonResourceURLs": ["healthz"]}]),
            "rules[0].nonResourceURLs[0]",
        ),
        (
            json!([{"level": "None", "nonResourceURLs": ["/a*b"]}]),
            "rules[0].nonResourceURLs[0]",
        ),
        (
            json!([{"level": "None", "nonResourceURLs": ["/a"], "namespaces": ["x"]}]),
            "rules[0].nonResourceURLs",
        ),
        (
            json!([{"level": "None", "resources": [{"group": "Apps"}]}]),
            "rules[0].resources[0].group",
        ),
        (
            json!([{"level": "None", "resources": [{"resourceNames": ["x"]}]}]),
            "rules[0].resources[0].resourceNames",
        ),
        (json!([]), "rules"),
    ];
    for (rules, field) in cases {
        let err = policy(rules.clone()).unwrap_err().to_string();
        assert!(err.contains(&format!("`{field}`")), "{rules} → {err}");
    }
    assert!(policy(json!([{"level": "None", "resources": [{"group": "*"}]}])).is_ok());
    assert!(policy(json!([{"level": "None", "nonResourceURLs": ["/healthz*", "*"]}])).is_ok());
    let v1beta1 = json!({"apiVersion": "audit.k8s.io/v1beta1", "kind": "Policy", "rules": [{"level": "None"}]});
    assert!(
        Policy::from_value(&v1beta1)
            .unwrap_err()
            .to_string()
            .contains("apiVersion")
    );
}

#[test]
fn unknown_fields_are_ignored_with_a_warning_like_the_apiserver() {
    // `resource:` is a typo for `resources:`; the apiserver ignores it, which widens the rule.
    let p = Policy::parse(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  resource:\n  - group: \"\"\n",
    )
    .unwrap();
    assert_eq!(
        p.warnings,
        vec!["unknown field `rules[0].resource` ignored (as the kube-apiserver does)".to_string()]
    );
    assert_eq!(p.evaluate(&Attributes::default()).level, Level::None);
    assert!(
        Policy::parse("rules: [")
            .unwrap_err()
            .to_string()
            .contains("not valid YAML")
    );
}

fn event(level: &str, stage: &str) -> Value {
    json!({"kind": "Event", "level": level, "stage": stage, "auditID": "a", "verb": "get",
           "requestURI": "/api/v1/namespaces/default/secrets/s?x=1",
           "user": {"username": "alice", "groups": ["dev"]},
           "objectRef": {"resource": "secrets", "namespace": "default", "name": "s", "apiVersion": "v1"},
           "annotations": {"patch.webhook.admission.k8s.io/round_0_index_0": "{}", "authorization.k8s.io/decision": "allow"},
           "requestObject": {"kind": "Secret", "metadata": {"managedFields": [{"manager": "kubectl"}]}},
           "responseObject": {"kind": "SecretList", "items": [{"metadata": {"name": "s", "managedFields": []}}]}})
}

#[test]
fn applying_reduces_drops_and_strips_like_the_apiserver_would_have() {
    let p = Policy::parse(
        r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
omitManagedFields: true
rules:
- level: Metadata
  resources: [{group: "", resources: ["secrets"]}]
- level: None
  users: ["system:kube-proxy"]
- level: RequestResponse
  omitManagedFields: false
"#,
    )
    .unwrap();

    let mut e = event("RequestResponse", "ResponseComplete");
    assert_eq!(p.apply(&mut e), Applied::Reduced);
    assert_eq!(e["level"], json!("Metadata"));
    assert!(e.get("requestObject").is_none() && e.get("responseObject").is_none());
    assert_eq!(
        e["annotations"],
        json!({"authorization.k8s.io/decision": "allow"})
    );

    let mut received = event("Metadata", "RequestReceived");
    assert_eq!(p.apply(&mut received), Applied::Dropped);

    let mut proxy = event("Metadata", "ResponseComplete");
    proxy["objectRef"] = json!({"resource": "endpoints"});
    proxy["user"]["username"] = json!("system:kube-proxy");
    assert_eq!(p.apply(&mut proxy), Applied::Dropped);

    // Catch-all keeps everything; its explicit `omitManagedFields: false` beats the policy's `true`.
    let mut pods = event("RequestResponse", "ResponseComplete");
    pods["objectRef"]["resource"] = json!("pods");
    assert_eq!(p.apply(&mut pods), Applied::Kept);
    assert!(
        pods["requestObject"]["metadata"]
            .get("managedFields")
            .is_some()
    );
}

#[test]
fn managed_fields_are_stripped_in_objects_lists_and_tables() {
    let p = Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitManagedFields: true\nrules: [{level: RequestResponse}]\n").unwrap();
    let mut e = event("RequestResponse", "ResponseComplete");
    e["responseObject"]["rows"] =
        json!([{"cells": [], "object": {"metadata": {"managedFields": [1]}}}]);
    assert_eq!(p.apply(&mut e), Applied::Reduced);
    assert!(!e.to_string().contains("managedFields"));
}

#[test]
fn failed_authentication_has_no_user_for_user_and_group_rules() {
    let p = policy(json!([{"level": "Metadata", "userGroups": ["system:unauthenticated"]}, {"level": "Request"}])).unwrap();
    let mut e = event("Metadata", "ResponseStarted");
    e["user"] = json!({});
    assert_eq!(attributes(&e).user, None);
    assert_eq!(p.evaluate(&attributes(&e)).level, Level::Request);
}

#[test]
fn the_audit2rbac_policy_on_its_own_log() {
    let p = Policy::parse(DEMO_POLICY).unwrap();
    let mut kept = 0;
    let mut total = 0;
    for line in DEMO_LOG.lines().filter(|l| !l.trim().is_empty()) {
        let mut e: Value = serde_json::from_str(line).unwrap();
        total += 1;
        if p.apply(&mut e) != Applied::Dropped {
            kept += 1;
            assert_eq!(e["stage"], json!("ResponseComplete"));
        }
    }
    // The policy omits RequestReceived (320 events) and audits the four listed users only.
    assert_eq!((total, kept), (757, 437));
}

/// `AUDIT_POLICY=builtin:managed-cluster` is the shipped policy file, parsed the same; an unknown name says
/// which exist.
#[test]
fn a_builtin_policy_is_the_shipped_file() {
    let builtin = from_env(Some("builtin:managed-cluster"), None)
        .unwrap()
        .unwrap();
    let shipped = Policy::parse(include_str!(
        "../../../../templates/policies/managed-cluster.yaml"
    ))
    .unwrap();
    assert_eq!(builtin, shipped);
    let error = from_env(Some("builtin:nope"), None).unwrap_err();
    assert!(
        error.contains("builtin:") || error.contains("managed-cluster"),
        "{error}"
    );
    assert!(error.contains("managed-cluster"), "{error}");
}
