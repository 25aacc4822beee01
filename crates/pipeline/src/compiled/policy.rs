//! The audit policy on the lazy document: [`crate::policy::Policy::apply`] without building the event. The
//! request's attributes are read from the text; a lower level removes members from the event's node, and
//! what the policy strips inside an object that is passed through as text (`managedFields`, webhook patch
//! annotations) becomes a hole: a byte range of the text that lookups no longer see and writing skips.

use super::{Doc, Node, NodeId, Raw, Str, strings};
use crate::policy::{Applied, Attributes, Level, Policy};
use serde_json::value::RawValue;
use std::sync::LazyLock;

/// What the policy did to the event, or `None` to decline (the generic path decides).
pub(super) fn apply<'a>(policy: &Policy, doc: &mut Doc<'a>, event: NodeId) -> Option<Applied> {
    let decision = policy.evaluate(&attributes(doc, event)?);
    if decision.level == Level::None {
        return Some(Applied::Dropped);
    }
    if doc
        .text(event, "stage")
        .is_some_and(|s| decision.omit_stages.contains(&*s))
    {
        return Some(Applied::Dropped);
    }
    let mut changed = false;
    let event_level = doc.text(event, "level").and_then(|l| Level::parse(&l));
    if event_level.is_some_and(|l| l > decision.level) {
        set_member(doc, event, "level", level_text(decision.level));
        remove_member(doc, event, "responseObject");
        if decision.level == Level::Metadata {
            remove_member(doc, event, "requestObject");
            // patch.webhook… annotations are recorded from level Request on.
            if let Some(annotations) = doc.get(event, "annotations")
                && annotations.get().starts_with('{')
            {
                let id = doc.object(annotations)?;
                cut_members(doc, id, annotations, |k| {
                    k.starts_with("patch.webhook.admission.k8s.io/")
                })?;
            }
        }
        changed = true;
    }
    if decision.omit_managed_fields {
        for key in ["requestObject", "responseObject"] {
            if let Some(object) = doc.get(event, key) {
                changed |= strip_managed_fields(doc, object)?;
            }
        }
    }
    Some(if changed {
        Applied::Reduced
    } else {
        Applied::Kept
    })
}

/// [`crate::policy::attributes`], read from the document.
fn attributes(doc: &mut Doc<'_>, event: NodeId) -> Option<Attributes> {
    let text = |doc: &Doc<'_>, id: NodeId, key: &str| {
        doc.text(id, key)
            .map(|s| s.into_owned())
            .unwrap_or_default()
    };
    let (username, groups) = match doc.get(event, "user") {
        Some(user) if user.get().starts_with('{') => {
            let id = doc.object(user)?;
            let groups = strings(doc, id, "groups")?;
            (text(doc, id, "username"), groups)
        }
        _ => (String::new(), Vec::new()),
    };
    let uri = doc.text(event, "requestURI").unwrap_or_default();
    let mut attrs = Attributes {
        user: (!username.is_empty()).then_some(username),
        groups: groups.into_iter().map(|g| g.into_owned()).collect(),
        verb: text(doc, event, "verb"),
        resource_request: false,
        path: uri.split('?').next().unwrap_or("").to_string(),
        ..Attributes::default()
    };
    if let Some(object_ref) = doc.get(event, "objectRef")
        && object_ref.get().starts_with('{')
    {
        let id = doc.object(object_ref)?;
        attrs.resource_request = true;
        attrs.namespace = text(doc, id, "namespace");
        attrs.api_group = text(doc, id, "apiGroup");
        attrs.resource = text(doc, id, "resource");
        attrs.subresource = text(doc, id, "subresource");
        attrs.name = text(doc, id, "name");
    }
    Some(attrs)
}

/// The level as a JSON string, for the event's `level` member.
fn level_text(level: Level) -> Raw<'static> {
    static TEXTS: LazyLock<Vec<Box<RawValue>>> = LazyLock::new(|| {
        [
            Level::None,
            Level::Metadata,
            Level::Request,
            Level::RequestResponse,
        ]
        .iter()
        .filter_map(|l| RawValue::from_string(format!("\"{}\"", l.as_str())).ok())
        .collect()
    });
    Raw::new(TEXTS[level as usize].get())
}

/// Set `key` of the event's node, as a map insert does (the last of duplicate keys is the one lookups find).
pub(super) fn set_member<'a>(doc: &mut Doc<'a>, id: NodeId, key: &'static str, value: Raw<'a>) {
    if let Node::Object(members, lengths) = &mut doc.nodes[id.0].1 {
        members.retain(|(k, _)| &**k != key);
        *lengths |= super::length_bit(key.len());
        members.push((Str(key.into()), value));
    }
}

/// Remove `key` (every duplicate) from a node whose own text is never written whole (the event's).
fn remove_member(doc: &mut Doc<'_>, id: NodeId, key: &str) {
    if let Node::Object(members, _) = &mut doc.nodes[id.0].1 {
        members.retain(|(k, _)| &**k != key);
    }
}

/// [`crate::policy`]'s `strip_managed_fields` on an object passed through as text: `metadata.managedFields`
/// of the object, of each of its `items`, and of each Table row's `object`. Whether anything was stripped.
fn strip_managed_fields<'a>(doc: &mut Doc<'a>, raw: Raw<'a>) -> Option<bool> {
    if !raw.get().starts_with('{') {
        return Some(false);
    }
    let id = doc.object(raw)?;
    let mut changed = false;
    if let Some(metadata) = doc.get(id, "metadata")
        && metadata.get().starts_with('{')
    {
        let meta = doc.object(metadata)?;
        changed |= cut_members(doc, meta, metadata, |k| k == "managedFields")?;
    }
    for (key, nested) in [("items", None), ("rows", Some("object"))] {
        let Some(list) = doc.get(id, key).filter(|l| l.get().starts_with('[')) else {
            continue;
        };
        let list = doc.node(list)?;
        let Node::Array(elements) = &doc.nodes[list.0].1 else {
            continue;
        };
        for element in elements.clone() {
            let object = match nested {
                None => Some(element),
                Some(field) if element.get().starts_with('{') => {
                    let row = doc.object(element)?;
                    doc.get(row, field)
                }
                Some(_) => None,
            };
            if let Some(object) = object {
                changed |= strip_managed_fields(doc, object)?;
            }
        }
    }
    Some(changed)
}

/// Remove the members of the object `id` (whose text is `raw`) whose key `cut` selects: from the node, for
/// lookups, and from the text, as holes that writing skips, so the object's compact text is what the generic
/// path writes for the object without them. Whether any was removed; `None` declines (a key with escapes, or
/// a member the node's text does not show where expected).
fn cut_members<'a>(
    doc: &mut Doc<'a>,
    id: NodeId,
    raw: Raw<'a>,
    cut: impl Fn(&str) -> bool,
) -> Option<bool> {
    let text = raw.get();
    let Node::Object(members, _) = &doc.nodes[id.0].1 else {
        return Some(false);
    };
    let removed: Vec<bool> = members.iter().map(|(k, _)| cut(k)).collect();
    if !removed.contains(&true) {
        return Some(false);
    }
    // Where each member starts (its key's opening quote) and ends (its value's last byte + 1), in `text`.
    let mut spans = Vec::with_capacity(members.len());
    for (key, value) in members {
        let std::borrow::Cow::Borrowed(key) = &key.0 else {
            return None;
        };
        let value_at = (value.get().as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
        let before = text
            .get(..value_at)?
            .trim_end()
            .strip_suffix(':')?
            .trim_end();
        let key_at = before
            .strip_suffix('"')?
            .strip_suffix(key)?
            .strip_suffix('"')?
            .len();
        spans.push((key_at, value_at + value.get().len()));
    }
    // Each run of removed members, with one separating comma: up to the next kept member's key, else from
    // the previous kept member's end (an object left empty keeps its braces).
    let base = text.as_ptr() as usize;
    let mut i = 0;
    while i < removed.len() {
        if !removed[i] {
            i += 1;
            continue;
        }
        let mut j = i;
        while j + 1 < removed.len() && removed[j + 1] {
            j += 1;
        }
        let hole = match (i.checked_sub(1), spans.get(j + 1)) {
            (_, Some(next)) => (spans[i].0, next.0),
            (Some(previous), None) => (spans[previous].1, spans[j].1),
            (None, None) => (spans[i].0, spans[j].1),
        };
        doc.holes.push((base + hole.0, base + hole.1));
        i = j + 1;
    }
    if let Node::Object(members, _) = &mut doc.nodes[id.0].1 {
        members.retain(|(k, _)| !cut(k));
    }
    Some(true)
}

/// The holes inside `raw`'s text, relative to it and in order (writing skips them).
pub(super) fn holes_in(doc: &Doc<'_>, raw: Raw<'_>) -> Vec<(usize, usize)> {
    if doc.holes.is_empty() {
        return Vec::new();
    }
    let start = raw.get().as_ptr() as usize;
    let end = start + raw.get().len();
    let mut inside: Vec<(usize, usize)> = doc
        .holes
        .iter()
        .filter(|(s, e)| *s >= start && *e <= end)
        .map(|(s, e)| (s - start, e - start))
        .collect();
    inside.sort_unstable();
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The object's text with `cut` keys removed, as the compiled path writes it.
    fn cut_text(text: &str, cut: &[&str]) -> Option<String> {
        let raw = Raw::new(serde_json::from_str::<&RawValue>(text).ok()?.get());
        let mut doc = Doc::default();
        let id = doc.object(raw)?;
        cut_members(&mut doc, id, raw, |k| cut.contains(&k))?;
        let mut buf = Vec::new();
        crate::render::write_json_text_except(&mut buf, raw.get(), &holes_in(&doc, raw));
        serde_json::from_slice::<String>(&buf).ok()
    }

    #[test]
    fn cut_members_leave_valid_compact_text_in_every_position() {
        let text = r#"{ "a" : 1 , "b":{"x":[1,2]}, "c" : "s,\"}" ,"d":null }"#;
        let cases: &[(&[&str], &str)] = &[
            (&["a"], r#"{"b":{"x":[1,2]},"c":"s,\"}","d":null}"#),
            (&["b"], r#"{"a":1,"c":"s,\"}","d":null}"#),
            (&["d"], r#"{"a":1,"b":{"x":[1,2]},"c":"s,\"}"}"#),
            (&["b", "c"], r#"{"a":1,"d":null}"#),
            (&["c", "d"], r#"{"a":1,"b":{"x":[1,2]}}"#),
            (&["a", "b"], r#"{"c":"s,\"}","d":null}"#),
            (&["a", "c"], r#"{"b":{"x":[1,2]},"d":null}"#),
            (&["a", "b", "c", "d"], "{}"),
        ];
        for (cut, want) in cases {
            assert_eq!(cut_text(text, cut).as_deref(), Some(*want), "{cut:?}");
        }
        assert_eq!(cut_text(r#"{"only":1}"#, &["only"]).as_deref(), Some("{}"));
        assert_eq!(
            cut_text(r#"{"a":1}"#, &["zzz"]).as_deref(),
            Some(r#"{"a":1}"#)
        );
    }

    #[test]
    fn a_key_with_escapes_declines() {
        assert_eq!(cut_text(r#"{"a\u0062":1,"c":2}"#, &["ab"]), None);
        // Only the keys of the object are read back: an escaped key elsewhere is fine.
        assert_eq!(
            cut_text(r#"{"a":{"\u0062":1},"c":2}"#, &["c"]).as_deref(),
            Some(r#"{"a":{"b":1}}"#)
        );
    }
}
