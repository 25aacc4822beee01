//! Secret redaction, on by default: managed clusters log `RequestResponse` events with Secret values in clear,
//! and nobody can change their audit policy, so the forwarder is the last place to remove them.
//!
//! Runs on the parsed event before the profile mapping, so before masking, hashing and any log line. A
//! redacted value keeps its key and becomes `<redacted sha256:0123456789ab>`, a 12-hex fingerprint of the value:
//! a changed secret stays visible as a changed fingerprint, without the value.
//!
//! What is redacted (`contracts/k8s-audit.md` §5):
//! - any object of kind `Secret` (also inside lists, watch events, Tables): `data`, `stringData`, and the Secret
//!   inside its `kubectl.kubernetes.io/last-applied-configuration` annotation;
//! - requests on `secrets` whatever their shape: merge patches (`data`, `stringData`) and JSON patches on
//!   `/data…`, `/stringData…`;
//! - `TokenRequest` `status.token` (`serviceaccounts/token`), `TokenReview` `spec.token` (request and response);
//! - ConfigMaps: values under sensitive keys, and `name = value` / `name: value` lines with a sensitive name;
//! - `requestURI` query parameters that carry tokens or passwords.

use crate::rules::sha256_hex;
use regex::Regex;
use serde_json::{Map, Value};
use std::sync::LazyLock;

const PREFIX: &str = "<redacted sha256:";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

static SENSITIVE_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)pass(?:word|wd|phrase)?|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|auth")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});
/// The definition of a `name = value` or `name: value` line (properties, ini, YAML, env files):
/// [`split_setting`] reads it by hand, and this regex is the test oracle it must agree with. It is not used at
/// run time because its Unicode `\w` costs about 15 ms to compile on the first ConfigMap a process sees,
/// and capturing every line of a large ConfigMap was a measurable share of a batch.
#[cfg(test)]
const SETTING_LINE: &str = r#"(?m)^([ \t]*["']?[\w.\-]+["']?[ \t]*[=:][ \t]*)(\S.*?)[ \t]*\r?$"#;
static URI_SECRET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)([?&](?:access_token|id_token|token|password|passwd|secret|client_secret)=)([^&#]*)",
    )
    .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// The `REDACT_SECRETS` setting: on unless it says `false`, `0`, `no` or `off`; anything else unknown is an
/// error (a typo must not silently turn redaction off — or on).
pub fn enabled_from_env(value: Option<&str>) -> Result<bool, String> {
    crate::options::flag("REDACT_SECRETS", value, true)
}

/// The replacement for `text`.
pub fn fingerprint(text: &str) -> String {
    format!("{PREFIX}{}>", &sha256_hex(text)[..12])
}

/// Redact `event` in place; returns how many values were replaced.
pub fn redact_event(event: &mut Value) -> u64 {
    let mut count = 0;
    let Value::Object(map) = event else { return 0 };
    let object_ref = map.get("objectRef");
    let field = |k: &str| {
        object_ref
            .and_then(|o| o.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let target = Target::new(field("resource"), field("subresource"), field("apiGroup"));
    for key in ["requestObject", "responseObject"] {
        if let Some(object) = map.get_mut(key) {
            count += target.redact_object(object);
        }
    }
    if let Some(Value::String(uri)) = map.get_mut("requestURI")
        && let Some((redacted, n)) = redact_uri(uri)
    {
        *uri = redacted;
        count += n;
    }
    count
}

/// What an event's `objectRef` says its objects are: the redaction by shape follows from it.
pub(crate) struct Target {
    resource: String,
    subresource: String,
    core: bool,
}

impl Target {
    /// `objectRef`'s `resource`, `subresource` and `apiGroup` (`""` where missing or not a string).
    pub(crate) fn new(resource: &str, subresource: &str, api_group: &str) -> Self {
        Self {
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            core: api_group.is_empty(),
        }
    }

    /// Redact the event's request or response object in place; how many values were replaced.
    pub(crate) fn redact_object(&self, object: &mut Value) -> u64 {
        let mut count = 0;
        walk(object, &mut count);
        // Only the listed resources are redacted by shape: the list is what `may_change` asks about, so an
        // arm for a resource missing from it never runs (and its tests fail) instead of going unflagged.
        if !REDACTED_RESOURCES.contains(&self.resource.as_str()) {
            return count;
        }
        match (self.resource.as_str(), self.subresource.as_str()) {
            ("secrets", _) if self.core => secret_shaped(object, &mut count),
            ("configmaps", _) if self.core => configmap_shaped(object, &mut count),
            ("serviceaccounts", "token") if self.core => {
                token_at(object, &["status", "token"], &mut count)
            }
            ("tokenreviews", _) => token_at(object, &["spec", "token"], &mut count),
            _ => {}
        }
        count
    }
}

/// `uri` with the values of its secret-carrying query parameters replaced, and how many; `None` when
/// nothing changes.
pub(crate) fn redact_uri(uri: &str) -> Option<(String, u64)> {
    if !uri.contains('?') {
        return None;
    }
    let mut count = 0;
    let replaced = URI_SECRET.replace_all(uri, |c: &regex::Captures<'_>| {
        count += 1;
        format!("{}{}", &c[1], fingerprint(&c[2]))
    });
    match replaced {
        std::borrow::Cow::Owned(new) => Some((new, count)),
        std::borrow::Cow::Borrowed(_) => None,
    }
}

/// The kinds [`redact_event`] redacts wherever an object says it is one (see `walk`).
pub(crate) const REDACTED_KINDS: [&str; 6] = [
    "Secret",
    "SecretList",
    "ConfigMap",
    "ConfigMapList",
    "TokenRequest",
    "TokenReview",
];

/// The resources whose request and response objects [`redact_event`] redacts by shape, whatever they say.
pub(crate) const REDACTED_RESOURCES: [&str; 4] =
    ["secrets", "configmaps", "serviceaccounts", "tokenreviews"];

/// [`REDACTED_KINDS`] as JSON string tokens (`"Secret`), without those another one already finds
/// (`"Secret` finds `"SecretList`).
static KIND_TOKENS: LazyLock<Vec<memchr::memmem::Finder<'static>>> = LazyLock::new(|| {
    let tokens: Vec<String> = REDACTED_KINDS.iter().map(|k| format!("\"{k}")).collect();
    tokens
        .iter()
        .filter(|t| !tokens.iter().any(|o| o != *t && t.starts_with(o.as_str())))
        .map(|t| memchr::memmem::Finder::new(t.as_bytes()).into_owned())
        .collect()
});
static LETTER_ESCAPE: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(b"\\u00"));

/// Could [`redact_event`] change an event with this `objectRef.resource`, these request/response objects
/// (as JSON text) and this `requestURI`? Conservative, and cheap enough to ask of every event: the mapping
/// path, which works from text, parses and redacts the event's objects only when it says `true`.
/// Kinds are found as JSON string tokens (`"Secret…`); text that spells a letter as a `\u00xx` escape
/// (which could hide a kind from that search) always says `true`.
pub(crate) fn may_change(resource: &str, objects: &[&str], request_uri: Option<&str>) -> bool {
    if !objects.is_empty() && REDACTED_RESOURCES.contains(&resource) {
        return true;
    }
    let names_a_kind = |text: &str| {
        KIND_TOKENS
            .iter()
            .any(|f| f.find(text.as_bytes()).is_some())
    };
    let hides_a_letter = |text: &str| {
        LETTER_ESCAPE
            .find_iter(text.as_bytes())
            .any(|i| matches!(text.as_bytes().get(i + 4), Some(b'4'..=b'7')))
    };
    objects
        .iter()
        .any(|text| names_a_kind(text) || hides_a_letter(text))
        || request_uri.is_some_and(uri_may_carry_secret)
}

/// Whether [`redact_event`] could change `uri` (a query parameter that carries a token or password).
pub fn uri_may_carry_secret(uri: &str) -> bool {
    // Every parameter name URI_SECRET knows contains one of these; most query strings (watch, limit,
    // labelSelector) skip the regex.
    let Some((_, query)) = uri.split_once('?') else {
        return false;
    };
    let hints: [&[u8]; 3] = [b"token", b"pass", b"secret"];
    query.as_bytes().windows(4).enumerate().any(|(i, w)| {
        hints.iter().any(|h| {
            w.eq_ignore_ascii_case(&h[..4])
                && query
                    .as_bytes()
                    .get(i..i + h.len())
                    .is_some_and(|s| s.eq_ignore_ascii_case(h))
        })
    }) && URI_SECRET.is_match(uri)
}

/// Kind-driven: every object below `v` that says what it is.
fn walk(v: &mut Value, count: &mut u64) {
    match v {
        Value::Object(map) => {
            // Only the listed kinds are redacted: the list is what `may_change` searches for (see
            // REDACTED_RESOURCES for why an arm outside it must not run).
            let kind = map
                .get("kind")
                .and_then(Value::as_str)
                .filter(|k| REDACTED_KINDS.contains(k));
            match kind {
                Some("Secret") => secret_fields(map, count),
                Some("SecretList") | Some("ConfigMapList") => {
                    let secret = map.get("kind").and_then(Value::as_str) == Some("SecretList");
                    if let Some(Value::Array(items)) = map.get_mut("items") {
                        for item in items.iter_mut().filter_map(Value::as_object_mut) {
                            if secret {
                                secret_fields(item, count);
                            } else {
                                configmap_fields(item, count);
                            }
                        }
                    }
                }
                Some("ConfigMap") => configmap_fields(map, count),
                Some("TokenRequest") => token_in(map, &["status", "token"], count),
                Some("TokenReview") => token_in(map, &["spec", "token"], count),
                _ => {}
            }
            for child in map.values_mut() {
                walk(child, count);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| walk(i, count)),
        _ => {}
    }
}

/// A request or response on `secrets`, whatever its shape (object, merge patch, JSON patch).
fn secret_shaped(v: &mut Value, count: &mut u64) {
    match v {
        Value::Object(map) => secret_fields(map, count),
        Value::Array(ops) => {
            for op in ops.iter_mut().filter_map(Value::as_object_mut) {
                let path = op.get("path").and_then(Value::as_str).unwrap_or("");
                let whole = path == "/data" || path == "/stringData";
                let member = path.starts_with("/data/") || path.starts_with("/stringData/");
                let annotation = path.contains("last-applied-configuration");
                if let Some(value) = op.get_mut("value") {
                    if whole {
                        redact_members(value, count);
                    } else if member || annotation {
                        redact(value, count);
                    }
                }
            }
        }
        _ => {}
    }
}

fn secret_fields(map: &mut Map<String, Value>, count: &mut u64) {
    for key in ["data", "stringData"] {
        if let Some(data) = map.get_mut(key) {
            redact_members(data, count);
        }
    }
    last_applied(map, count, |inner, count| {
        if let Value::Object(m) = inner {
            secret_fields(m, count);
        }
    });
}

fn configmap_shaped(v: &mut Value, count: &mut u64) {
    if let Value::Object(map) = v {
        configmap_fields(map, count);
    }
}

fn configmap_fields(map: &mut Map<String, Value>, count: &mut u64) {
    for key in ["data", "binaryData"] {
        let Some(Value::Object(data)) = map.get_mut(key) else {
            continue;
        };
        for (name, value) in data.iter_mut() {
            if SENSITIVE_NAME.is_match(name) {
                redact(value, count);
            } else if let Value::String(text) = value {
                redact_sensitive_lines(text, count);
            }
        }
    }
    last_applied(map, count, |inner, count| {
        if let Value::Object(m) = inner {
            configmap_fields(m, count);
        }
    });
}

/// Redact the values of sensitive `name = value` / `name: value` lines in a ConfigMap value.
fn redact_sensitive_lines(text: &mut String, count: &mut u64) {
    // A sensitive line's name is part of the text: most ConfigMaps (whole config files) have none.
    if !SENSITIVE_NAME.is_match(text) {
        return;
    }
    let mut out: Option<String> = None;
    let (mut done, mut start) = (0, 0);
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        let body = line.strip_suffix('\n').unwrap_or(line);
        if let Some((name, value)) = split_setting(body)
            && SENSITIVE_NAME.is_match(name)
            && !value.starts_with(PREFIX)
        {
            *count += 1;
            let out = out.get_or_insert_with(|| String::with_capacity(text.len() + 32));
            out.push_str(&text[done..start]);
            out.push_str(name);
            out.push_str(&fingerprint(value));
            // What followed the value on its line (blanks, a `\r`) goes with it; the line end stays.
            done = start + body.len();
        }
        start = end;
    }
    if let Some(mut out) = out {
        out.push_str(&text[done..]);
        *text = out;
    }
}

/// One line (without its `\n`) as `(name part, value)` if it is a setting as [`SETTING_LINE`] defines it: the
/// name part runs from the line start through the separator and the blanks after it, the value from the first
/// non-blank character to the last, before trailing blanks and one `\r`.
fn split_setting(line: &str) -> Option<(&str, &str)> {
    let blanks = |from: usize| {
        from + line[from..]
            .bytes()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count()
    };
    let quote = |at: usize| usize::from(matches!(line.as_bytes().get(at), Some(b'"' | b'\'')));
    let name_start = blanks(0);
    let name_start = name_start + quote(name_start);
    let name_end = name_start
        + line[name_start..]
            .chars()
            .take_while(|&c| c == '.' || c == '-' || regex_syntax::is_word_character(c))
            .map(char::len_utf8)
            .sum::<usize>();
    if name_end == name_start {
        return None;
    }
    let separator = blanks(name_end + quote(name_end));
    if !matches!(line.as_bytes().get(separator), Some(b'=' | b':')) {
        return None;
    }
    let value_start = blanks(separator + 1);
    let first = line[value_start..].chars().next()?;
    if first.is_whitespace() {
        return None;
    }
    let rest = line.strip_suffix('\r').unwrap_or(line);
    let value_end = rest.trim_end_matches([' ', '\t']).len();
    // The first character is not blank, so trimming never reaches it.
    Some((&line[..value_start], &line[value_start..value_end]))
}

/// The last-applied annotation is a JSON copy of the object: redact inside it with `inner`, or all of it when
/// it does not parse.
fn last_applied(
    map: &mut Map<String, Value>,
    count: &mut u64,
    inner: impl Fn(&mut Value, &mut u64),
) {
    let Some(annotation) = map
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(|a| a.get_mut(LAST_APPLIED))
    else {
        return;
    };
    let Value::String(text) = annotation else {
        return;
    };
    match serde_json::from_str::<Value>(text) {
        Ok(mut parsed) => {
            let before = *count;
            inner(&mut parsed, count);
            walk(&mut parsed, count);
            if *count != before {
                *annotation = Value::String(parsed.to_string());
            }
        }
        Err(_) => redact(annotation, count),
    }
}

fn token_at(v: &mut Value, path: &[&str], count: &mut u64) {
    if let Value::Object(map) = v {
        token_in(map, path, count);
    }
}

fn token_in(map: &mut Map<String, Value>, path: &[&str], count: &mut u64) {
    let [first, rest @ ..] = path else { return };
    let Some(next) = map.get_mut(*first) else {
        return;
    };
    if rest.is_empty() {
        redact(next, count);
    } else {
        token_at(next, rest, count);
    }
}

fn redact_members(v: &mut Value, count: &mut u64) {
    match v {
        Value::Object(members) => members.values_mut().for_each(|m| redact(m, count)),
        Value::Null => {}
        other => redact(other, count),
    }
}

fn redact(v: &mut Value, count: &mut u64) {
    let text = match &mut *v {
        Value::Null => return,
        Value::String(s) if s.starts_with(PREFIX) => return,
        Value::String(s) => std::mem::take(s),
        other => other.to_string(),
    };
    *v = Value::String(fingerprint(&text));
    *count += 1;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    /// The triggers the text-reading mapping paths ask ([`may_change`]) come from the rules themselves:
    /// an object of every kind `walk` redacts, and every resource redacted by shape, is redacted here and
    /// flagged there. A new rule that is not in the trigger lists fails this test.
    #[test]
    fn every_redacting_rule_is_a_trigger_of_may_change() {
        let filled = |kind: &str| {
            json!({"kind": kind, "data": {"password": "hunter2"}, "stringData": {"token": "t0k3n"},
                   "status": {"token": "t0k3n"}, "spec": {"token": "t0k3n"},
                   "items": [{"data": {"password": "hunter2"}, "stringData": {"token": "t0k3n"}}]})
        };
        for kind in REDACTED_KINDS {
            let mut e = event("pods", None, filled(kind), Value::Null);
            let text = e["requestObject"].to_string();
            assert!(redact_event(&mut e) > 0, "{kind}: no rule redacts it");
            assert!(may_change("pods", &[&text], None), "{kind}: not a trigger");
        }
        // Kinds outside the list are not redacted by kind (so they need no trigger).
        let mut e = event("pods", None, filled("Pod"), Value::Null);
        assert_eq!(redact_event(&mut e), 0);
        let shaped = json!({"data": {"password": "x"}, "stringData": {"p": "y"},
                            "status": {"token": "t"}, "spec": {"token": "t"}});
        for resource in REDACTED_RESOURCES {
            let sub = (resource == "serviceaccounts").then_some("token");
            let mut e = event(resource, sub, shaped.clone(), Value::Null);
            let text = e["requestObject"].to_string();
            assert!(
                redact_event(&mut e) > 0,
                "{resource}: no rule redacts it by shape"
            );
            assert!(
                may_change(resource, &[&text], None),
                "{resource}: not a trigger"
            );
        }
        let uri = "/api/v1/namespaces/default/pods?watch=1&access_token=abc";
        let mut e = event("pods", None, Value::Null, Value::Null);
        e["requestURI"] = json!(uri);
        assert!(redact_event(&mut e) > 0);
        assert!(may_change("pods", &[], Some(uri)));
        assert!(!may_change(
            "pods",
            &[r#"{"kind":"Pod"}"#],
            Some("/api/v1/pods?watch=1")
        ));
    }

    fn event(resource: &str, subresource: Option<&str>, request: Value, response: Value) -> Value {
        let mut object_ref =
            json!({"resource": resource, "namespace": "default", "apiVersion": "v1"});
        if let Some(s) = subresource {
            object_ref["subresource"] = json!(s);
        }
        json!({"kind": "Event", "auditID": "a", "stage": "ResponseComplete", "requestURI": "/api/v1/x",
               "objectRef": object_ref, "requestObject": request, "responseObject": response})
    }

    fn leaks(v: &Value, secrets: &[&str]) -> Vec<String> {
        let text = v.to_string();
        secrets
            .iter()
            .filter(|s| text.contains(*s))
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn secret_create_and_response_keep_keys_and_fingerprint_values() {
        let secret = json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "db"},
                            "data": {"password": "aHVudGVyMg=="}, "stringData": {"user": "admin-user"}});
        let mut e = event("secrets", None, secret.clone(), secret);
        assert_eq!(redact_event(&mut e), 4);
        assert_eq!(
            leaks(&e, &["aHVudGVyMg==", "admin-user"]),
            Vec::<String>::new()
        );
        assert_eq!(
            e["requestObject"]["data"]["password"],
            json!(fingerprint("aHVudGVyMg=="))
        );
        assert!(
            e["responseObject"]["stringData"]["user"]
                .as_str()
                .unwrap()
                .starts_with(PREFIX)
        );
        // Idempotent: a second pass changes nothing.
        let before = e.clone();
        assert_eq!(redact_event(&mut e), 0);
        assert_eq!(e, before);
    }

    #[test]
    fn lists_watch_events_and_tables_are_covered() {
        let list = json!({"kind": "SecretList", "items": [{"data": {"a": "QQ=="}}, {"data": {"b": "Qg=="}}]});
        let mut e = event("secrets", None, Value::Null, list);
        redact_event(&mut e);
        assert_eq!(leaks(&e, &["QQ==", "Qg=="]), Vec::<String>::new());

        let watch =
            json!({"type": "MODIFIED", "object": {"kind": "Secret", "data": {"k": "c2VjcmV0"}}});
        let table =
            json!({"kind": "List", "items": [{"kind": "Secret", "data": {"t": "dGFibGU="}}]});
        let mut e = event("pods", None, watch, table); // kind-driven, whatever the resource
        redact_event(&mut e);
        assert_eq!(leaks(&e, &["c2VjcmV0", "dGFibGU="]), Vec::<String>::new());
    }

    #[test]
    fn merge_and_json_patches_on_secrets() {
        let merge = json!({"data": {"token": "bmV3"}, "metadata": {"labels": {"a": "b"}}});
        let mut e = event("secrets", None, merge, Value::Null);
        redact_event(&mut e);
        assert_eq!(leaks(&e, &["bmV3"]), Vec::<String>::new());
        assert_eq!(e["requestObject"]["metadata"]["labels"]["a"], json!("b"));

        let json_patch = json!([
            {"op": "replace", "path": "/data/password", "value": "cGF0Y2hlZA=="},
            {"op": "add", "path": "/stringData", "value": {"x": "plain-secret"}},
            {"op": "replace", "path": "/metadata/labels/app", "value": "web"}
        ]);
        let mut e = event("secrets", None, json_patch, Value::Null);
        assert_eq!(redact_event(&mut e), 2);
        assert_eq!(
            leaks(&e, &["cGF0Y2hlZA==", "plain-secret"]),
            Vec::<String>::new()
        );
        assert_eq!(e["requestObject"][2]["value"], json!("web"));
    }

    #[test]
    fn last_applied_configuration_of_a_secret_is_redacted_inside() {
        let applied = json!({"apiVersion": "v1", "kind": "Secret", "data": {"key": "bGFzdA=="}, "metadata": {"name": "s"}});
        let secret = json!({"kind": "Secret", "metadata": {"annotations": {LAST_APPLIED: applied.to_string()}}, "data": {"key": "bGFzdA=="}});
        let mut e = event("secrets", None, secret, Value::Null);
        redact_event(&mut e);
        assert_eq!(leaks(&e, &["bGFzdA=="]), Vec::<String>::new());
        let inner: Value = serde_json::from_str(
            e["requestObject"]["metadata"]["annotations"][LAST_APPLIED]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(inner["metadata"]["name"], json!("s"));

        let broken = json!({"kind": "Secret", "metadata": {"annotations": {LAST_APPLIED: "{not json \"data\":\"c2Vj\""}}});
        let mut e = event("secrets", None, broken, Value::Null);
        redact_event(&mut e);
        assert_eq!(leaks(&e, &["c2Vj"]), Vec::<String>::new());
    }

    #[test]
    fn token_request_and_token_review() {
        let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.eyJzdWIiOiJ4In0.c2ln";
        let request = json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "spec": {"audiences": ["api"]}});
        let response = json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "status": {"token": jwt, "expirationTimestamp": "2026-01-01T00:00:00Z"}});
        let mut e = event("serviceaccounts", Some("token"), request, response);
        assert_eq!(redact_event(&mut e), 1);
        assert_eq!(leaks(&e, &[jwt]), Vec::<String>::new());
        assert_eq!(
            e["responseObject"]["status"]["expirationTimestamp"],
            json!("2026-01-01T00:00:00Z")
        );

        let review = json!({"apiVersion": "authentication.k8s.io/v1", "spec": {"token": jwt}});
        let mut e = event("tokenreviews", None, review.clone(), review);
        e["objectRef"]["apiGroup"] = json!("authentication.k8s.io");
        assert_eq!(redact_event(&mut e), 2);
        assert_eq!(leaks(&e, &[jwt]), Vec::<String>::new());
    }

    #[test]
    fn configmap_values_under_sensitive_names_and_lines() {
        let cm = json!({"kind": "ConfigMap", "data": {
            "access.properties": "aws_access_key_id = MY-ID\naws_secret_access_key = MY-KEY\n",
            "ui.properties": "color.good=purple\ncolor.bad=yellow\n",
            "db_password": "hunter2",
            "app.yaml": "server:\n  port: 8080\n  apiKey: abc123\n"
        }});
        let mut e = event("configmaps", None, cm, Value::Null);
        assert_eq!(redact_event(&mut e), 4);
        assert_eq!(
            leaks(&e, &["MY-ID", "MY-KEY", "hunter2", "abc123"]),
            Vec::<String>::new()
        );
        let data = &e["requestObject"]["data"];
        assert_eq!(
            data["ui.properties"],
            json!("color.good=purple\ncolor.bad=yellow\n")
        );
        assert!(data["app.yaml"].as_str().unwrap().contains("port: 8080"));
        assert!(
            data["access.properties"]
                .as_str()
                .unwrap()
                .starts_with("aws_access_key_id = <redacted sha256:")
        );
    }

    #[test]
    fn tokens_in_request_uri_queries() {
        let mut e = json!({"requestURI": "/api/v1/namespaces/x/pods/p/exec?command=sh&access_token=abc.def&stdin=true"});
        assert_eq!(redact_event(&mut e), 1);
        let uri = e["requestURI"].as_str().unwrap();
        assert!(
            !uri.contains("abc.def") && uri.contains("command=sh") && uri.contains("stdin=true"),
            "{uri}"
        );
    }

    #[test]
    fn other_objects_are_untouched() {
        let pod = json!({"kind": "Pod", "spec": {"containers": [{"env": [{"name": "TOKEN_FILE", "value": "/var/run/x"}]}]}});
        let mut e = event("pods", None, pod.clone(), pod.clone());
        assert_eq!(redact_event(&mut e), 0);
        assert_eq!(e["requestObject"], pod);
    }

    /// The whole text through [`SETTING_LINE`] in one `replace_all`: the definition line-wise redaction keeps.
    fn redact_lines_by_regex(text: &str) -> (String, u64) {
        static LINE: LazyLock<Regex> = LazyLock::new(|| Regex::new(SETTING_LINE).unwrap());
        let mut count = 0;
        let out = LINE.replace_all(text, |c: &regex::Captures<'_>| {
            if SENSITIVE_NAME.is_match(&c[1]) && !c[2].starts_with(PREFIX) {
                count += 1;
                format!("{}{}", &c[1], fingerprint(&c[2]))
            } else {
                c[0].to_string()
            }
        });
        (out.into_owned(), count)
    }

    proptest::proptest! {
        /// Read by hand, line by line, is exactly the regex over the whole text: Unicode word characters (a
        /// mark, a letter number, a connector, a joiner) in names, Unicode blanks, quotes, `\r`, empty values.
        #[test]
        fn line_wise_redaction_is_the_regex_over_the_whole_text(
            lines in proptest::collection::vec(
                r#"[ \t\u{a0}]{0,2}["']?(password|db_token|Auth|user|key|x\.y|a-b|pässwort|tokén|se\u{301}cret|Ⅻ_token|a‿b|z\u{200d}auth|٣|\u{2003}|\*)?["']?[ \t]?[=: ]?[ \t\u{a0}]?(\S{0,6}|<redacted sha256:|\r|[ \t]+x)[ \t\r]{0,2}\r?"#,
                0..8,
            ),
            end in r"\n?",
        ) {
            let text = lines.join("\n") + &end;
            let (whole, whole_count) = redact_lines_by_regex(&text);
            let mut count = 0;
            let mut line_wise = text.clone();
            redact_sensitive_lines(&mut line_wise, &mut count);
            proptest::prop_assert_eq!(line_wise, whole);
            proptest::prop_assert_eq!(count, whole_count);
        }
    }
}
