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

use serde_json::{Map, Value};

enum Walk<'a> {
    Found(&'a Value),
    Missing,
    /// A JSON string on the way must be parsed before the walk can go on.
    NeedsParse,
}

/// Look `key` up in `doc`, parsing JSON strings on the way in place (at most once each), and hand the value
/// to `f`. The common case (no string to parse) is one walk without allocation.
pub fn with_value<R>(doc: &mut Value, key: &str, f: impl FnOnce(&Value) -> R) -> Option<R> {
    // Each round turns one string into a parsed value or gives up, so this ends.
    loop {
        match walk(doc, key) {
            Walk::Found(v) => return Some(f(v)),
            Walk::Missing => return None,
            Walk::NeedsParse => {
                if !parse_along(doc, key) {
                    return None;
                }
            }
        }
    }
}

/// [`with_value`] returning a copy.
pub fn lookup(doc: &mut Value, key: &str) -> Option<Value> {
    with_value(doc, key, Value::clone)
}

/// The ways to go one level down at `key` in `map`: the exact key, its lower-cased form (leaf keys only), then
/// each `parent.rest` split with the parent as written or `Capitalized`.
fn exact<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        if key.contains('.') || !key.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        with_ascii(key, |k| k.make_ascii_lowercase(), |k| map.get(k))
    })
}

fn child<'a>(map: &'a Map<String, Value>, parent: &str) -> Option<&'a Value> {
    map.get(parent).or_else(|| {
        if !parent
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_lowercase)
        {
            return None;
        }
        with_ascii(parent, |k| k[..1].make_ascii_uppercase(), |k| map.get(k))
    })
}

/// Run `f` on a modified copy of `key` kept on the stack (keys are short; long ones go to the heap).
fn with_ascii<R>(
    key: &str,
    modify: impl FnOnce(&mut str),
    f: impl FnOnce(&str) -> Option<R>,
) -> Option<R> {
    let mut buf = [0u8; 96];
    if key.len() <= buf.len() {
        buf[..key.len()].copy_from_slice(key.as_bytes());
        let copy = std::str::from_utf8_mut(&mut buf[..key.len()]).ok()?;
        modify(copy);
        f(copy)
    } else {
        let mut copy = key.to_string();
        modify(&mut copy);
        f(&copy)
    }
}

fn dots(key: &str) -> impl Iterator<Item = usize> + '_ {
    key.bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'.')
        .map(|(i, _)| i)
}

fn walk<'a>(node: &'a Value, key: &str) -> Walk<'a> {
    match node {
        Value::Object(map) => {
            if let Some(v) = exact(map, key) {
                return Walk::Found(v);
            }
            for dot in dots(key) {
                if let Some(c) = child(map, &key[..dot]) {
                    match walk(c, &key[dot + 1..]) {
                        Walk::Missing => {}
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
            match (head.parse::<usize>().ok().and_then(|i| items.get(i)), rest) {
                (Some(item), None) => Walk::Found(item),
                (Some(item), Some(rest)) => walk(item, rest),
                (None, _) => Walk::Missing,
            }
        }
        Value::String(s) if looks_like_json(s) => Walk::NeedsParse,
        _ => Walk::Missing,
    }
}

/// Walk as [`walk`] does and parse the first JSON string the walk must descend into. `false` when there is
/// none or it does not parse (it then stays a string).
fn parse_along(node: &mut Value, key: &str) -> bool {
    match node {
        Value::Object(map) => {
            if exact(map, key).is_some() {
                return false;
            }
            for dot in dots(key) {
                let parent = &key[..dot];
                let name = if map.contains_key(parent) {
                    parent.to_string()
                } else {
                    let mut capitalized = parent.to_string();
                    if let Some(first) = capitalized.get_mut(..1) {
                        first.make_ascii_uppercase();
                    }
                    capitalized
                };
                if let Some(c) = map.get_mut(&name)
                    && parse_along(c, &key[dot + 1..])
                {
                    return true;
                }
            }
            false
        }
        Value::Array(items) => {
            let (head, rest) = key
                .split_once('.')
                .map_or((key, None), |(h, r)| (h, Some(r)));
            match (
                head.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
                rest,
            ) {
                (Some(item), Some(rest)) => parse_along(item, rest),
                _ => false,
            }
        }
        Value::String(text) if looks_like_json(text) => match parse_lenient(text) {
            Some(parsed @ (Value::Object(_) | Value::Array(_))) => {
                *node = parsed;
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// A string the lookup rules descend into as JSON (an object or array after leading whitespace).
pub(crate) fn looks_like_json(s: &str) -> bool {
    matches!(s.trim_start().as_bytes().first(), Some(b'{' | b'['))
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
        assert_eq!(lookup(&mut doc, "a.b"), Some(json!(1)));
        assert_eq!(
            lookup(&mut doc, "annotations.authorization.k8s.io/decision"),
            Some(json!("forbid"))
        );
        assert_eq!(lookup(&mut doc, "user.extra.arn.0"), Some(json!("arn:x")));
        assert_eq!(
            lookup(
                &mut doc,
                "user.extra.authentication.kubernetes.io/pod-name.0"
            ),
            Some(json!("p1"))
        );
        assert_eq!(lookup(&mut doc, "user.extra.arn.1"), None);
        assert_eq!(lookup(&mut doc, "missing.path"), None);
    }

    #[test]
    fn capitalized_parent_and_lower_case_key_fallbacks() {
        let mut doc = json!({"Properties": {"log": "x"}, "category": "kube-audit"});
        assert_eq!(lookup(&mut doc, "properties.log"), Some(json!("x")));
        assert_eq!(lookup(&mut doc, "Category"), Some(json!("kube-audit")));
    }

    #[test]
    fn json_strings_are_parsed_once_and_reused() {
        let log = "{\"user\":{\"username\":\"alice\"},\"verb\":\"get\"}\n";
        let mut doc = json!({"properties": {"log": log}});
        assert_eq!(
            lookup(&mut doc, "properties.log.user.username"),
            Some(json!("alice"))
        );
        // The string was replaced by its parsed object: the next entry does not parse again.
        assert!(doc["properties"]["log"].is_object());
        assert_eq!(lookup(&mut doc, "properties.log.verb"), Some(json!("get")));
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
