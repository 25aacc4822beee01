//! `filterConfig`, `maskingConfig`, `hashingConfig` and `derivedConfig` applied to a mapped record.
//! They work on the string form of a value (numbers in decimal, objects as JSON text) so that filters on
//! `responsestatus_code` work; an absent field keeps the record (audit events legitimately omit fields).

use crate::Record;
use kaf_config::{DeriveRule, FieldFilter, HashRule, MaskRule};
use regex::{Captures, Regex};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// The string form of a field value.
pub fn string_form(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// A config's record rules, applied in this order to a mapped record: filters, masks, hashes, derived
/// fields, then `ignoredFields` dropped.
#[derive(Debug, Clone, Default)]
pub struct RecordRules {
    pub filters: Vec<FieldFilter>,
    pub masks: Vec<MaskRule>,
    pub hashes: Vec<HashRule>,
    pub derives: Vec<DeriveRule>,
    pub ignored_fields: Vec<String>,
}

impl RecordRules {
    pub fn from_config(config: &kaf_config::LogTypeConfig) -> Self {
        Self {
            filters: config.filters.clone(),
            masks: config.masks.clone(),
            hashes: config.hashes.clone(),
            derives: config.derives.clone(),
            ignored_fields: config.ignored_fields.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
            && self.masks.is_empty()
            && self.hashes.is_empty()
            && self.derives.is_empty()
            && self.ignored_fields.is_empty()
    }

    /// Apply every rule to `record`; `false`: a filter drops it.
    pub fn apply(&self, record: &mut Record) -> bool {
        if !passes(&self.filters, record) {
            return false;
        }
        mask(&self.masks, record);
        hash(&self.hashes, record);
        derive(&self.derives, record);
        for field in &self.ignored_fields {
            record.remove(field);
        }
        true
    }
}

/// `true` when the record passes every filter.
pub fn passes(filters: &[FieldFilter], record: &Record) -> bool {
    filters
        .iter()
        .all(|f| keeps(f, record.get(&f.field).map(string_form).as_deref()))
}

/// Whether `filter` keeps a record whose field has the string form `value` (an absent field keeps it).
pub(crate) fn keeps(filter: &FieldFilter, value: Option<&str>) -> bool {
    value.is_none_or(|v| filter.regex.is_match(v) == filter.include)
}

pub fn mask(rules: &[MaskRule], record: &mut Record) {
    for rule in rules {
        replace_field(record, &rule.field, |text| masked(rule, text));
    }
}

pub fn hash(rules: &[HashRule], record: &mut Record) {
    for rule in rules {
        replace_field(record, &rule.field, |text| hashed(rule, text));
    }
}

/// `text` with `rule`'s matches masked; `None` when nothing matched (the value stays as it was).
pub(crate) fn masked(rule: &MaskRule, text: &str) -> Option<String> {
    replaced(text, &rule.regex, |_| rule.replacement.clone())
}

/// `text` with `rule`'s matches hashed; `None` when nothing matched.
pub(crate) fn hashed(rule: &HashRule, text: &str) -> Option<String> {
    replaced(text, &rule.regex, sha256_hex)
}

pub fn derive(rules: &[DeriveRule], record: &mut Record) {
    for rule in rules {
        let Some(text) = record.get(&rule.field).map(|v| string_form(v).into_owned()) else {
            continue;
        };
        for (name, value) in derived(rule, &text) {
            record.insert(name.to_string(), Value::String(value));
        }
    }
}

/// The fields the first of `rule`'s patterns that matches `text` adds: each named group, `-` where it did
/// not take part; none when no pattern matches.
pub(crate) fn derived<'r>(rule: &'r DeriveRule, text: &str) -> Vec<(&'r str, String)> {
    let Some((regex, caps)) = rule
        .patterns
        .iter()
        .find_map(|r| r.captures(text).map(|c| (r, c)))
    else {
        return Vec::new();
    };
    regex
        .capture_names()
        .flatten()
        .map(|name| {
            (
                name,
                caps.name(name).map_or("-", |m| m.as_str()).to_string(),
            )
        })
        .collect()
}

pub fn sha256_hex(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(2 * digest.len());
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// The field's string form rewritten by `rewrite`, if it rewrote it.
fn replace_field(record: &mut Record, field: &str, rewrite: impl Fn(&str) -> Option<String>) {
    let Some(value) = record.get(field) else {
        return;
    };
    if let Some(out) = rewrite(&string_form(value)) {
        record.insert(field.to_string(), Value::String(out));
    }
}

/// Replace every participating capture group of every match (the whole match when the pattern has no
/// groups — fail safe: a group-less mask must not leave the value in clear). `None` when nothing matched.
fn replaced(text: &str, regex: &Regex, replacement: impl Fn(&str) -> String) -> Option<String> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for caps in regex.captures_iter(text) {
        collect_spans(&caps, &mut spans);
    }
    if spans.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    for (start, end) in spans {
        // Nested or overlapping groups: the outer (earlier) one wins.
        if start < cursor {
            continue;
        }
        out.push_str(&text[cursor..start]);
        out.push_str(&replacement(&text[start..end]));
        cursor = end;
    }
    out.push_str(&text[cursor..]);
    Some(out)
}

fn collect_spans(caps: &Captures<'_>, spans: &mut Vec<(usize, usize)>) {
    if caps.len() == 1 {
        if let Some(m) = caps.get(0) {
            spans.push((m.start(), m.end()));
        }
        return;
    }
    spans.extend(caps.iter().skip(1).flatten().map(|m| (m.start(), m.end())));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn record(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    fn filter(field: &str, include: bool, pattern: &str) -> FieldFilter {
        FieldFilter {
            field: field.into(),
            include,
            regex: Regex::new(pattern).unwrap(),
        }
    }

    #[test]
    fn filters_keep_absent_fields_and_compare_numbers_as_text() {
        let r = record(json!({"responsestatus_code": 403, "verb": "list"}));
        assert!(passes(
            &[filter("responsestatus_code", true, "^40[13]$")],
            &r
        ));
        assert!(!passes(&[filter("responsestatus_code", false, "403")], &r));
        assert!(passes(&[filter("objectref_resource", true, "secrets")], &r));
        assert!(!passes(
            &[
                filter("verb", true, "get"),
                filter("responsestatus_code", true, "403")
            ],
            &r
        ));
    }

    #[test]
    fn masking_replaces_groups_or_the_whole_match_and_keeps_the_rest() {
        let mut r = record(json!({"username": "user-1234 and user-99", "n": 42, "ip": "10.1.2.3"}));
        mask(
            &[
                MaskRule {
                    field: "username".into(),
                    regex: Regex::new(r"user-(\d+)").unwrap(),
                    replacement: "***".into(),
                },
                MaskRule {
                    field: "n".into(),
                    regex: Regex::new(r"\d").unwrap(),
                    replacement: "#".into(),
                },
            ],
            &mut r,
        );
        assert_eq!(r["username"], json!("user-*** and user-***"));
        assert_eq!(r["n"], json!("##"));
        assert_eq!(r["ip"], json!("10.1.2.3"));
    }

    #[test]
    fn hashing_uses_lowercase_sha256_of_each_group() {
        let mut r = record(json!({"sourceip": "10.1.2.3"}));
        hash(
            &[HashRule {
                field: "sourceip".into(),
                regex: Regex::new(r"(\d+)\.\d+\.\d+\.\d+").unwrap(),
            }],
            &mut r,
        );
        assert_eq!(r["sourceip"], json!(format!("{}.1.2.3", sha256_hex("10"))));
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn derive_takes_the_first_matching_pattern_and_marks_unmatched_groups() {
        let mut r = record(json!({"requesturi": "/api/v1/namespaces/default/pods"}));
        derive(
            &[DeriveRule {
                field: "requesturi".into(),
                patterns: vec![
                    Regex::new(r"^/apis/(?<group>[^/]+)/").unwrap(),
                    Regex::new(
                        r"^/api/(?<version>v\d+)(?:/namespaces/(?<ns>[^/]+))?(?<watch>\?watch)?",
                    )
                    .unwrap(),
                ],
            }],
            &mut r,
        );
        assert_eq!(r["version"], json!("v1"));
        assert_eq!(r["ns"], json!("default"));
        assert_eq!(r["watch"], json!("-"));
        assert!(!r.contains_key("group"));
    }
}
