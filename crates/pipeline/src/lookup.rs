//! `jsonPath` key lookup with Site24x7's semantics, so their users' configs behave the same here:
//!
//! 1. the whole remaining key as a literal key first (`annotations.authorization.k8s.io/decision` works because
//!    at the `annotations` level the rest is one key), then its lower-cased form;
//! 2. else split at a `.` and descend, trying the first dot first (Site24x7), then later dots (so a key that
//!    itself contains dots, like `authentication.kubernetes.io/pod-name`, is still reachable), with a
//!    `Capitalized` parent as fallback;
//! 3. a string that must be descended into is parsed as JSON — once per record: the parsed value replaces the
//!    string in the document, so later entries reuse it;
//! 4. our extension: a numeric segment indexes an array (`sourceIPs.0`).

use serde_json::Value;

enum Step {
    Key(String),
    Index(usize),
}

enum Walk<'a> {
    Found(&'a Value),
    Missing,
    /// A string at this path must be parsed before the walk can go on.
    NeedsParse(Vec<Step>),
}

/// Look `key` up in `doc`, parsing JSON strings on the way in place (at most once each).
pub fn lookup<'a>(doc: &'a mut Value, key: &str) -> Option<&'a Value> {
    // Each round turns one string into a parsed value (or gives up), so this ends.
    loop {
        match walk(doc, key, &mut Vec::new()) {
            Walk::Found(_) => break,
            Walk::Missing => return None,
            Walk::NeedsParse(path) => {
                if !parse_in_place(doc, &path) {
                    return None;
                }
            }
        }
    }
    match walk(doc, key, &mut Vec::new()) {
        Walk::Found(v) => Some(v),
        _ => None,
    }
}

fn walk<'a>(node: &'a Value, key: &str, path: &mut Vec<Step>) -> Walk<'a> {
    match node {
        Value::Object(map) => {
            if let Some(v) = map.get(key) {
                return Walk::Found(v);
            }
            if key.bytes().any(|b| b.is_ascii_uppercase())
                && let Some(v) = map.get(&key.to_ascii_lowercase())
            {
                return Walk::Found(v);
            }
            for (dot, _) in key.match_indices('.') {
                let (parent, rest) = (&key[..dot], &key[dot + 1..]);
                let child = map
                    .get(parent)
                    .map(|c| (parent.to_string(), c))
                    .or_else(|| {
                        let capitalized = capitalize(parent);
                        map.get(&capitalized).map(|c| (capitalized, c))
                    });
                if let Some((name, child)) = child {
                    path.push(Step::Key(name));
                    match walk(child, rest, path) {
                        Walk::Missing => {
                            path.pop();
                        }
                        other => return other,
                    }
                }
            }
            Walk::Missing
        }
        Value::Array(items) => {
            let (head, rest) = key
                .split_once('.')
                .map_or((key, None), |(h, r)| (h, Some(r)));
            let Some(item) = head
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i).map(|v| (i, v)))
            else {
                return Walk::Missing;
            };
            match rest {
                None => Walk::Found(item.1),
                Some(rest) => {
                    path.push(Step::Index(item.0));
                    walk(item.1, rest, path)
                }
            }
        }
        Value::String(s) if looks_like_json(s) => Walk::NeedsParse(std::mem::take(path)),
        _ => Walk::Missing,
    }
}

fn looks_like_json(s: &str) -> bool {
    matches!(s.trim_start().as_bytes().first(), Some(b'{' | b'['))
}

/// Replace the string at `path` with its parsed value. `false` when it does not parse (it stays a string).
fn parse_in_place(doc: &mut Value, path: &[Step]) -> bool {
    let mut node = doc;
    for step in path {
        let next = match (step, node) {
            (Step::Key(k), Value::Object(map)) => map.get_mut(k),
            (Step::Index(i), Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    let Value::String(text) = node else {
        return false;
    };
    match parse_lenient(text) {
        Some(parsed @ (Value::Object(_) | Value::Array(_))) => {
            *node = parsed;
            true
        }
        _ => false,
    }
}

/// JSON with raw control characters inside strings is accepted (AKS `properties.log` ends with `\n`, and
/// some producers embed tabs): they are escaped before parsing.
pub fn parse_lenient(text: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str(text) {
        return Some(v);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut backslash = false;
    for c in text.chars() {
        if in_string && (c as u32) < 0x20 {
            escaped.push_str(&format!("\\u{:04x}", c as u32));
            continue;
        }
        if c == '"' && !backslash {
            in_string = !in_string;
        }
        backslash = c == '\\' && !backslash;
        escaped.push(c);
    }
    serde_json::from_str(&escaped).ok()
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn exact_key_first_then_dotted_descent() {
        let mut doc = json!({
            "a.b": 1, "a": {"b": 2},
            "annotations": {"authorization.k8s.io/decision": "forbid"},
            "user": {"extra": {"authentication.kubernetes.io/pod-name": ["p1"], "arn": ["arn:x"]}}
        });
        assert_eq!(lookup(&mut doc, "a.b"), Some(&json!(1)));
        assert_eq!(
            lookup(&mut doc, "annotations.authorization.k8s.io/decision"),
            Some(&json!("forbid"))
        );
        assert_eq!(lookup(&mut doc, "user.extra.arn.0"), Some(&json!("arn:x")));
        assert_eq!(
            lookup(
                &mut doc,
                "user.extra.authentication.kubernetes.io/pod-name.0"
            ),
            Some(&json!("p1"))
        );
        assert_eq!(lookup(&mut doc, "user.extra.arn.1"), None);
        assert_eq!(lookup(&mut doc, "missing.path"), None);
    }

    #[test]
    fn capitalized_parent_and_lower_case_key_fallbacks() {
        let mut doc = json!({"Properties": {"log": "x"}, "category": "kube-audit"});
        assert_eq!(lookup(&mut doc, "properties.log"), Some(&json!("x")));
        assert_eq!(lookup(&mut doc, "Category"), Some(&json!("kube-audit")));
    }

    #[test]
    fn json_strings_are_parsed_once_and_reused() {
        let log = "{\"user\":{\"username\":\"alice\"},\"verb\":\"get\"}\n";
        let mut doc = json!({"properties": {"log": log}});
        assert_eq!(
            lookup(&mut doc, "properties.log.user.username"),
            Some(&json!("alice"))
        );
        // The string was replaced by its parsed object: the next entry does not parse again.
        assert!(doc["properties"]["log"].is_object());
        assert_eq!(lookup(&mut doc, "properties.log.verb"), Some(&json!("get")));
    }

    #[test]
    fn unparsable_strings_are_a_miss_not_an_error() {
        let mut doc = json!({"log": "{not json", "plain": "text"});
        assert_eq!(lookup(&mut doc, "log.user"), None);
        assert_eq!(lookup(&mut doc, "plain.x"), None);
        assert_eq!(doc["log"], json!("{not json"));
    }

    #[test]
    fn lenient_parse_accepts_raw_control_characters_in_strings() {
        assert_eq!(
            parse_lenient("{\"a\":\"x\ty\"}\n"),
            Some(json!({"a": "x\ty"}))
        );
        assert_eq!(
            parse_lenient("{\"a\":\"q\\\"\n\"}"),
            Some(json!({"a": "q\"\n"}))
        );
    }
}
