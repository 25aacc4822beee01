//! Evaluating a policy for one request: rules in order, first match wins (`checker.go`).

use super::{Attributes, Decision, GroupResources, Level, Policy, Rule};
use serde_json::Value;
use std::collections::BTreeSet;

impl Policy {
    pub fn evaluate(&self, attrs: &Attributes) -> Decision {
        let policy_stages = || self.omit_stages.iter().cloned().collect::<BTreeSet<_>>();
        for rule in &self.rules {
            if rule_matches(rule, attrs) {
                let mut omit_stages = policy_stages();
                omit_stages.extend(rule.omit_stages.iter().cloned());
                return Decision {
                    level: rule.level,
                    omit_stages,
                    omit_managed_fields: rule
                        .omit_managed_fields
                        .unwrap_or(self.omit_managed_fields),
                };
            }
        }
        Decision {
            level: Level::None,
            omit_stages: policy_stages(),
            omit_managed_fields: self.omit_managed_fields,
        }
    }
}

/// The evaluator's inputs from an audit event: the pre-impersonation user (none when `user` is empty, as after
/// a failed authentication), the verb, and the request target from `objectRef` and `requestURI`.
pub fn attributes(event: &Value) -> Attributes {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let user = event.get("user");
    let username = s(user.and_then(|u| u.get("username")));
    let object_ref = event.get("objectRef").filter(|o| o.is_object());
    let uri = s(event.get("requestURI"));
    Attributes {
        user: (!username.is_empty()).then_some(username),
        groups: user
            .and_then(|u| u.get("groups"))
            .and_then(Value::as_array)
            .map(|g| {
                g.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        verb: s(event.get("verb")),
        resource_request: object_ref.is_some(),
        path: uri.split('?').next().unwrap_or("").to_string(),
        namespace: s(object_ref.and_then(|o| o.get("namespace"))),
        api_group: s(object_ref.and_then(|o| o.get("apiGroup"))),
        resource: s(object_ref.and_then(|o| o.get("resource"))),
        subresource: s(object_ref.and_then(|o| o.get("subresource"))),
        name: s(object_ref.and_then(|o| o.get("name"))),
    }
}

fn rule_matches(rule: &Rule, a: &Attributes) -> bool {
    if !rule.users.is_empty() && !a.user.as_ref().is_some_and(|u| rule.users.contains(u)) {
        return false;
    }
    if !rule.user_groups.is_empty()
        && (a.user.is_none() || !a.groups.iter().any(|g| rule.user_groups.contains(g)))
    {
        return false;
    }
    if !rule.verbs.is_empty() && !rule.verbs.contains(&a.verb) {
        return false;
    }
    if !rule.namespaces.is_empty() || !rule.resources.is_empty() {
        return a.resource_request
            && (rule.namespaces.is_empty() || rule.namespaces.contains(&a.namespace))
            && (rule.resources.is_empty() || rule.resources.iter().any(|gr| group_matches(gr, a)));
    }
    if !rule.non_resource_urls.is_empty() {
        return !a.resource_request
            && rule.non_resource_urls.iter().any(|spec| {
                spec == "*"
                    || *spec == a.path
                    || spec
                        .strip_suffix('*')
                        .is_some_and(|prefix| a.path.starts_with(prefix.trim_end_matches('*')))
            });
    }
    true
}

fn group_matches(gr: &GroupResources, a: &Attributes) -> bool {
    if gr.group != a.api_group && gr.group != "*" {
        return false;
    }
    if gr.resources.is_empty() {
        return true;
    }
    let name_ok = gr.resource_names.is_empty() || gr.resource_names.contains(&a.name);
    name_ok
        && gr
            .resources
            .iter()
            .any(|spec| resource_matches(spec, &a.resource, &a.subresource))
}

/// A policy's resource spec against a request's resource and subresource: `pods`, `pods/exec`, `*`,
/// `*/scale` (that subresource of anything), `pods/*` (pods and all their subresources).
pub fn resource_matches(spec: &str, resource: &str, subresource: &str) -> bool {
    let combined_matches = if subresource.is_empty() {
        spec == resource
    } else {
        spec.len() == resource.len() + 1 + subresource.len()
            && spec.starts_with(resource)
            && spec[resource.len()..].starts_with('/')
            && spec.ends_with(subresource)
    };
    combined_matches
        || spec == "*"
        || (!subresource.is_empty() && spec.strip_prefix("*/") == Some(subresource))
        || spec.strip_suffix("/*") == Some(resource)
}
