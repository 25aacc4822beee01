//! Conformance cases in the format of `tests/fixtures/policy/policy-cases.md`: a policy, the request
//! attributes the evaluator sees, and the expected level, omitted stages (a set) and `omitManagedFields`.

use super::{Attributes, Policy};
use serde_json::Value;
use std::collections::BTreeSet;

/// One case's outcome; `failure` is `None` when it passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    pub failure: Option<String>,
}

/// Run every case of a cases file.
pub fn run(json: &str) -> Result<Vec<CaseResult>, String> {
    let cases: Value =
        serde_json::from_str(json).map_err(|e| format!("cases file is not JSON: {e}"))?;
    let cases = cases.as_array().ok_or("cases file must be a JSON array")?;
    Ok(cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let name = case["name"]
                .as_str()
                .map_or_else(|| format!("case {i}"), str::to_string);
            let failure = check(case).err();
            CaseResult { name, failure }
        })
        .collect())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn check(case: &Value) -> Result<(), String> {
    let policy =
        Policy::from_value(&case["policy"]).map_err(|e| format!("policy rejected: {e}"))?;
    let r = &case["request"];
    let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
    let attrs = Attributes {
        user: r["user"].as_str().map(str::to_string),
        groups: strings(&r["groups"]),
        verb: s("verb"),
        resource_request: r["resourceRequest"]
            .as_bool()
            .ok_or("request.resourceRequest missing")?,
        path: s("path"),
        namespace: s("namespace"),
        api_group: s("apiGroup"),
        resource: s("resource"),
        subresource: s("subresource"),
        name: s("name"),
    };
    let got = policy.evaluate(&attrs);
    let expect = &case["expect"];
    let level = expect["level"].as_str().ok_or("expect.level missing")?;
    let stages: BTreeSet<String> = strings(&expect["omitStages"]).into_iter().collect();
    let omit_managed = expect["omitManagedFields"]
        .as_bool()
        .ok_or("expect.omitManagedFields missing")?;
    let mut problems = Vec::new();
    if got.level.as_str() != level {
        problems.push(format!("level {} (want {level})", got.level.as_str()));
    }
    if got.omit_stages != stages {
        problems.push(format!(
            "omitStages {:?} (want {stages:?})",
            got.omit_stages
        ));
    }
    if got.omit_managed_fields != omit_managed {
        problems.push(format!(
            "omitManagedFields {} (want {omit_managed})",
            got.omit_managed_fields
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join(", "))
    }
}
