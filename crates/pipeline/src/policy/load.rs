//! Loading a policy: YAML or JSON, validated field by field as the apiserver does; unknown fields are warnings.

use super::{GroupResources, Level, Policy, PolicyError, Rule};
use serde_json::{Map, Value};

const STAGES: [&str; 4] = [
    "RequestReceived",
    "ResponseStarted",
    "ResponseComplete",
    "Panic",
];

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
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
}

/// `AUDIT_POLICY=builtin:<name>` names one of these.
pub const BUILTIN_PREFIX: &str = "builtin:";

/// The policies shipped inside the binaries (`templates/policies/`).
pub const BUILTIN: &[(&str, &str)] = &[(
    "managed-cluster",
    include_str!("../../../../templates/policies/managed-cluster.yaml"),
)];

/// The policy the binaries run with: env `AUDIT_POLICY` (inline YAML, or base64 of it) or a file named by
/// `AUDIT_POLICY_FILE`; `None` when neither is set. Errors name the variable.
pub fn from_env(inline: Option<&str>, file: Option<&str>) -> Result<Option<Policy>, String> {
    // `AUDIT_POLICY=builtin:<name>`: a policy shipped inside the binary. The Lambda's whole environment is
    // limited to 4 KB, and the recommended policy's base64 alone is 3.9 KB.
    use base64::Engine as _;
    let (text, source) = match (
        inline.filter(|s| !s.trim().is_empty()),
        file.filter(|s| !s.trim().is_empty()),
    ) {
        (Some(_), Some(_)) => return Err("set AUDIT_POLICY or AUDIT_POLICY_FILE, not both".into()),
        (Some(text), None) if text.trim().starts_with(BUILTIN_PREFIX) => {
            let name = text.trim().trim_start_matches(BUILTIN_PREFIX);
            let policy = BUILTIN
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, p)| *p)
                .ok_or_else(|| {
                    let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
                    format!(
                        "AUDIT_POLICY: no built-in policy `{name}` (built in: {})",
                        names.join(", ")
                    )
                })?;
            (policy.to_string(), "AUDIT_POLICY")
        }
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
