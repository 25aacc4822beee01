//! A forwarder-side `audit.k8s.io/v1` Policy, evaluated with exactly the kube-apiserver's semantics
//! (`pkg/audit/policy/checker.go`, `pkg/apis/audit/validation`; `contracts/k8s-audit.md` §4), so a policy that
//! managed clusters do not let you install can still cut what you ship and pay for.
//!
//! Loading: YAML or JSON; unknown fields are ignored with a warning, as the apiserver's lenient fallback does
//! (a typo like `resource:` widens a rule, so the warning matters); invalid policies are refused with the
//! field named. Evaluation: rules in order, first match wins; a matched `None` is final; no match is `None`.
//! Applying to an event: `None` or an omitted stage drops it; a lower level than the event's strips the objects
//! the level does not carry; `omitManagedFields` strips `metadata.managedFields` (also in lists and Tables).

pub mod cases;

use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Audit levels, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "None" => Some(Self::None),
            "Metadata" => Some(Self::Metadata),
            "Request" => Some(Self::Request),
            "RequestResponse" => Some(Self::RequestResponse),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Metadata => "Metadata",
            Self::Request => "Request",
            Self::RequestResponse => "RequestResponse",
        }
    }
}

const STAGES: [&str; 4] = [
    "RequestReceived",
    "ResponseStarted",
    "ResponseComplete",
    "Panic",
];

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("audit policy is not valid YAML or JSON: {0}")]
    Syntax(String),
    #[error("audit policy field `{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupResources {
    pub group: String,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub level: Level,
    pub users: Vec<String>,
    pub user_groups: Vec<String>,
    pub verbs: Vec<String>,
    pub resources: Vec<GroupResources>,
    pub namespaces: Vec<String>,
    pub non_resource_urls: Vec<String>,
    pub omit_stages: Vec<String>,
    pub omit_managed_fields: Option<bool>,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub omit_stages: Vec<String>,
    pub omit_managed_fields: bool,
    /// Unknown fields that were ignored, e.g. `rules[1].resource`.
    pub warnings: Vec<String>,
}

/// What the evaluator sees of a request (`authorizer.Attributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `None`: the request failed authentication (not the same as `system:anonymous`).
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub verb: String,
    pub resource_request: bool,
    /// URL path without the query string.
    pub path: String,
    pub namespace: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

/// The evaluator's answer (`RequestAuditConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub level: Level,
    pub omit_stages: BTreeSet<String>,
    pub omit_managed_fields: bool,
}

/// What applying the policy did to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Dropped,
    Reduced,
    Kept,
}

impl Policy {
    /// Parse YAML (or JSON) text.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let value: Value =
            serde_saphyr::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        Self::from_value(&value)
    }

    /// Validate a policy given as JSON.
    pub fn from_value(value: &Value) -> Result<Self, PolicyError> {
        let obj = value
            .as_object()
            .ok_or_else(|| invalid("(root)", "must be a mapping"))?;
        let mut warnings = Vec::new();
        unknown_fields(
            obj,
            "",
            &[
                "apiVersion",
                "kind",
                "metadata",
                "rules",
                "omitStages",
                "omitManagedFields",
            ],
            &mut warnings,
        );
        match obj.get("apiVersion").and_then(Value::as_str) {
            Some("audit.k8s.io/v1") => {}
            _ => return Err(invalid("apiVersion", "must be audit.k8s.io/v1")),
        }
        if obj.get("kind").and_then(Value::as_str) != Some("Policy") {
            return Err(invalid("kind", "must be Policy"));
        }
        let omit_stages = stages(obj.get("omitStages"), "omitStages")?;
        let omit_managed_fields =
            optional_bool(obj.get("omitManagedFields"), "omitManagedFields")?.unwrap_or(false);
        let rules = match obj.get("rules") {
            Some(Value::Array(rules)) if !rules.is_empty() => rules
                .iter()
                .enumerate()
                .map(|(i, r)| rule(r, &format!("rules[{i}]"), &mut warnings))
                .collect::<Result<Vec<_>, _>>()?,
            Some(Value::Array(_)) | None | Some(Value::Null) => {
                return Err(invalid("rules", "a policy needs at least one rule"));
            }
            Some(_) => return Err(invalid("rules", "must be a list")),
        };
        Ok(Self {
            rules,
            omit_stages,
            omit_managed_fields,
            warnings,
        })
    }

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

    /// Apply to a parsed audit event: drop it, reduce it, or keep it as it is.
    pub fn apply(&self, event: &mut Value) -> Applied {
        let decision = self.evaluate(&attributes(event));
        if decision.level == Level::None {
            return Applied::Dropped;
        }
        let Value::Object(map) = event else {
            return Applied::Dropped;
        };
        if map
            .get("stage")
            .and_then(Value::as_str)
            .is_some_and(|s| decision.omit_stages.contains(s))
        {
            return Applied::Dropped;
        }
        let mut changed = false;
        let event_level = map
            .get("level")
            .and_then(Value::as_str)
            .and_then(Level::parse);
        if event_level.is_some_and(|l| l > decision.level) {
            map.insert(
                "level".into(),
                Value::String(decision.level.as_str().into()),
            );
            map.remove("responseObject");
            if decision.level == Level::Metadata {
                map.remove("requestObject");
                // patch.webhook… annotations are recorded from level Request on.
                if let Some(Value::Object(annotations)) = map.get_mut("annotations") {
                    annotations.retain(|k, _| !k.starts_with("patch.webhook.admission.k8s.io/"));
                }
            }
            changed = true;
        }
        if decision.omit_managed_fields {
            for key in ["requestObject", "responseObject"] {
                if let Some(object) = map.get_mut(key) {
                    changed |= strip_managed_fields(object);
                }
            }
        }
        if changed {
            Applied::Reduced
        } else {
            Applied::Kept
        }
    }
}

/// The policy the binaries run with: env `AUDIT_POLICY` (inline YAML, or base64 of it) or a file named by
/// `AUDIT_POLICY_FILE`; `None` when neither is set. Errors name the variable.
pub fn from_env(inline: Option<&str>, file: Option<&str>) -> Result<Option<Policy>, String> {
    use base64::Engine as _;
    let (text, source) = match (
        inline.filter(|s| !s.trim().is_empty()),
        file.filter(|s| !s.trim().is_empty()),
    ) {
        (Some(_), Some(_)) => return Err("set AUDIT_POLICY or AUDIT_POLICY_FILE, not both".into()),
        (Some(text), None) if text.contains("apiVersion") || text.contains("rules") => {
            (text.to_string(), "AUDIT_POLICY")
        }
        (Some(encoded), None) => {
            let compact: String = encoded.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact.trim_end_matches('='))
                .or_else(|_| {
                    base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(compact.trim_end_matches('='))
                })
                .map_err(|_| {
                    "AUDIT_POLICY is neither a YAML policy nor base64 of one".to_string()
                })?;
            (
                String::from_utf8(bytes).map_err(|_| "AUDIT_POLICY decodes to non-UTF-8 bytes")?,
                "AUDIT_POLICY",
            )
        }
        (None, Some(path)) => (
            std::fs::read_to_string(path).map_err(|e| format!("AUDIT_POLICY_FILE {path}: {e}"))?,
            "AUDIT_POLICY_FILE",
        ),
        (None, None) => return Ok(None),
    };
    Policy::parse(&text)
        .map(Some)
        .map_err(|e| format!("{source}: {e}"))
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
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let name_ok = gr.resource_names.is_empty() || gr.resource_names.contains(&a.name);
    name_ok
        && gr.resources.iter().any(|r| {
            *r == combined
                || r == "*"
                || (!a.subresource.is_empty()
                    && r.strip_prefix("*/") == Some(a.subresource.as_str()))
                || r.strip_suffix("/*") == Some(a.resource.as_str())
        })
}

fn strip_managed_fields(v: &mut Value) -> bool {
    let mut changed = false;
    if let Value::Object(map) = v {
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            changed |= meta.remove("managedFields").is_some();
        }
        if let Some(Value::Array(items)) = map.get_mut("items") {
            for item in items {
                changed |= strip_managed_fields(item);
            }
        }
        // meta.k8s.io Table rows carry (partial) objects.
        if let Some(Value::Array(rows)) = map.get_mut("rows") {
            for row in rows {
                if let Some(object) = row.get_mut("object") {
                    changed |= strip_managed_fields(object);
                }
            }
        }
    }
    changed
}

fn unknown_fields(
    obj: &Map<String, Value>,
    path: &str,
    known: &[&str],
    warnings: &mut Vec<String>,
) {
    for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        warnings.push(format!(
            "unknown field `{path}{key}` ignored (as the kube-apiserver does)"
        ));
    }
}

fn strings(v: Option<&Value>, field: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(format!("{field}[{i}]"), "must be a string"))
            })
            .collect(),
        Some(_) => Err(invalid(field, "must be a list of strings")),
    }
}

fn optional_bool(v: Option<&Value>, field: &str) -> Result<Option<bool>, PolicyError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(field, "must be true or false")),
    }
}

fn stages(v: Option<&Value>, field: &str) -> Result<Vec<String>, PolicyError> {
    let list = strings(v, field)?;
    for (i, stage) in list.iter().enumerate() {
        if !STAGES.contains(&stage.as_str()) {
            return Err(invalid(
                format!("{field}[{i}]"),
                format!("must be one of {}", STAGES.join(", ")),
            ));
        }
    }
    Ok(list)
}

/// `""`, `"*"` (Kubernetes ≥ 1.36) or a lower-case DNS-1123 subdomain.
fn valid_group(group: &str) -> bool {
    if group.is_empty() || group == "*" {
        return true;
    }
    group.len() <= 253
        && group.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn rule(value: &Value, path: &str, warnings: &mut Vec<String>) -> Result<Rule, PolicyError> {
    let obj = value
        .as_object()
        .ok_or_else(|| invalid(path, "must be a mapping"))?;
    unknown_fields(
        obj,
        &format!("{path}."),
        &[
            "level",
            "users",
            "userGroups",
            "verbs",
            "resources",
            "namespaces",
            "nonResourceURLs",
            "omitStages",
            "omitManagedFields",
        ],
        warnings,
    );
    let field = |name: &str| format!("{path}.{name}");
    let level = match obj.get("level") {
        Some(Value::String(s)) => Level::parse(s).ok_or_else(|| {
            invalid(
                field("level"),
                "must be None, Metadata, Request or RequestResponse",
            )
        })?,
        None | Some(Value::Null) => return Err(invalid(field("level"), "is required")),
        Some(_) => return Err(invalid(field("level"), "must be a string")),
    };
    let non_resource_urls = strings(obj.get("nonResourceURLs"), &field("nonResourceURLs"))?;
    for (i, url) in non_resource_urls.iter().enumerate() {
        let f = format!("{path}.nonResourceURLs[{i}]");
        if url != "*" && !url.starts_with('/') {
            return Err(invalid(f, "must be \"*\" or start with \"/\""));
        }
        if url.trim_end_matches('*').contains('*') || url.matches('*').count() > 1 {
            return Err(invalid(f, "\"*\" is allowed only as the last character"));
        }
    }
    let namespaces = strings(obj.get("namespaces"), &field("namespaces"))?;
    let resources = match obj.get("resources") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, gr)| {
                let p = format!("{path}.resources[{i}]");
                let o = gr
                    .as_object()
                    .ok_or_else(|| invalid(&p, "must be a mapping"))?;
                unknown_fields(
                    o,
                    &format!("{p}."),
                    &["group", "resources", "resourceNames"],
                    warnings,
                );
                let group = match o.get("group") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(g)) => g.clone(),
                    Some(_) => return Err(invalid(format!("{p}.group"), "must be a string")),
                };
                if !valid_group(&group) {
                    return Err(invalid(
                        format!("{p}.group"),
                        "must be \"\", \"*\" or a lower-case DNS subdomain",
                    ));
                }
                let resources = strings(o.get("resources"), &format!("{p}.resources"))?;
                let resource_names =
                    strings(o.get("resourceNames"), &format!("{p}.resourceNames"))?;
                if !resource_names.is_empty() && resources.is_empty() {
                    return Err(invalid(format!("{p}.resourceNames"), "requires resources"));
                }
                Ok(GroupResources {
                    group,
                    resources,
                    resource_names,
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(invalid(field("resources"), "must be a list")),
    };
    if !non_resource_urls.is_empty() && (!resources.is_empty() || !namespaces.is_empty()) {
        return Err(invalid(
            field("nonResourceURLs"),
            "cannot be combined with resources or namespaces in one rule",
        ));
    }
    Ok(Rule {
        level,
        users: strings(obj.get("users"), &field("users"))?,
        user_groups: strings(obj.get("userGroups"), &field("userGroups"))?,
        verbs: strings(obj.get("verbs"), &field("verbs"))?,
        resources,
        namespaces,
        non_resource_urls,
        omit_stages: stages(obj.get("omitStages"), &field("omitStages"))?,
        omit_managed_fields: optional_bool(
            obj.get("omitManagedFields"),
            &field("omitManagedFields"),
        )?,
    })
}

#[cfg(test)]
mod tests;
