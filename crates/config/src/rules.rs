//! The per-field rules of a `logtypeconfig` (`jsonPath`, `filterConfig`, `maskingConfig`, `hashingConfig`,
//! `derivedConfig`), compiled: regexes built once, OR-ed filter values joined into one pattern.

use crate::ConfigError;
use regex::Regex;
use serde_json::{Map, Value};

/// How a jsonPath entry turns the looked-up value into a field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// Scalars as they are; objects and arrays as compact JSON text.
    Plain,
    /// An object (or a JSON string holding one) becomes `[{"key": k, "value": v-as-string}, …]`.
    JsonObject,
}

/// One `jsonPath` entry: output field `name` taken from the dotted `key` of the source document.
#[derive(Debug, Clone)]
pub struct JsonPathEntry {
    pub name: String,
    pub key: String,
    pub value_type: ValueType,
    /// Optional sub-regex: its named groups replace the field (fluent/logstash `pattern`).
    pub pattern: Option<Regex>,
}

/// `filterConfig` for one field: `include` keeps only matching records, otherwise matching records are dropped.
#[derive(Debug, Clone)]
pub struct FieldFilter {
    pub field: String,
    pub include: bool,
    pub regex: Regex,
}

/// `maskingConfig` for one field: each participating capture group (or the whole match when the pattern has
/// no groups) is replaced by `replacement`.
#[derive(Debug, Clone)]
pub struct MaskRule {
    pub field: String,
    pub regex: Regex,
    pub replacement: String,
}

/// `hashingConfig` for one field: like masking, with the lowercase hex SHA-256 of the group as replacement.
#[derive(Debug, Clone)]
pub struct HashRule {
    pub field: String,
    pub regex: Regex,
}

/// `derivedConfig` for one field: the first pattern that matches adds its named groups as fields.
#[derive(Debug, Clone)]
pub struct DeriveRule {
    pub field: String,
    pub patterns: Vec<Regex>,
}

fn compile(field: &str, pattern: &str) -> Result<Regex, ConfigError> {
    Regex::new(pattern).map_err(|e| ConfigError::regex(field, &e))
}

fn object<'a>(field: &str, value: &'a Value) -> Result<&'a Map<String, Value>, ConfigError> {
    value
        .as_object()
        .ok_or_else(|| ConfigError::wrong_type(field.to_string(), "an object"))
}

fn str_member(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<String>, ConfigError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ConfigError::wrong_type(format!("{path}.{key}"), "a string")),
    }
}

pub(crate) fn json_path(field: &str, value: &Value) -> Result<Vec<JsonPathEntry>, ConfigError> {
    let Value::Array(items) = value else {
        return Err(ConfigError::wrong_type(
            field.to_string(),
            "an array of {name, key} objects",
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("{field}[{i}]");
            let obj = object(&path, item)?;
            let name = str_member(obj, &path, "name")?
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    ConfigError::wrong_type(format!("{path}.name"), "a non-empty string")
                })?;
            let key = str_member(obj, &path, "key")?
                .filter(|k| !k.is_empty())
                .unwrap_or_else(|| name.clone());
            let value_type = match str_member(obj, &path, "type")?.as_deref() {
                None | Some("") => ValueType::Plain,
                Some("json-object") => ValueType::JsonObject,
                Some(_) => {
                    return Err(ConfigError::wrong_type(
                        format!("{path}.type"),
                        "absent or \"json-object\"",
                    ));
                }
            };
            let pattern = match str_member(obj, &path, "pattern")? {
                Some(p) => Some(compile(&format!("{path}.pattern"), &p)?),
                None => None,
            };
            Ok(JsonPathEntry {
                name,
                key,
                value_type,
                pattern,
            })
        })
        .collect()
}

pub(crate) fn filters(value: &Value) -> Result<Vec<FieldFilter>, ConfigError> {
    let obj = object("filterConfig", value)?;
    obj.iter()
        .map(|(field, spec)| {
            let path = format!("filterConfig.{field}");
            let spec = object(&path, spec)?;
            let include = match spec.get("match") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(ConfigError::wrong_type(
                        format!("{path}.match"),
                        "a boolean",
                    ));
                }
            };
            let exact = matches!(spec.get("exact"), Some(Value::Bool(true)));
            let values = match spec.get("values") {
                Some(Value::Array(values)) => values,
                Some(Value::String(_)) | None | Some(_) => {
                    return Err(ConfigError::wrong_type(
                        format!("{path}.values"),
                        "an array of regexes",
                    ));
                }
            };
            let mut alternatives = Vec::with_capacity(values.len());
            for (i, v) in values.iter().enumerate() {
                let Value::String(s) = v else {
                    return Err(ConfigError::wrong_type(
                        format!("{path}.values[{i}]"),
                        "a string",
                    ));
                };
                // Each value alone must compile, so the error can point at it.
                compile(&format!("{path}.values[{i}]"), s)?;
                alternatives.push(format!("(?:{s})"));
            }
            let joined = alternatives.join("|");
            let pattern = if exact {
                format!("^(?:{joined})$")
            } else {
                joined
            };
            Ok(FieldFilter {
                field: field.clone(),
                include,
                regex: compile(&format!("{path}.values"), &pattern)?,
            })
        })
        .collect()
}

/// `{name: {regex, …}}` (masking, hashing): each entry's name, spec object and path, with its `regex` compiled.
fn per_field<T>(
    field: &str,
    value: &Value,
    mut build: impl FnMut(String, &Map<String, Value>, &str, Regex) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    object(field, value)?
        .iter()
        .map(|(name, spec)| {
            let path = format!("{field}.{name}");
            let spec = object(&path, spec)?;
            let pattern = str_member(spec, &path, "regex")?
                .ok_or_else(|| ConfigError::wrong_type(format!("{path}.regex"), "a string"))?;
            let regex = compile(&format!("{path}.regex"), &pattern)?;
            build(name.clone(), spec, &path, regex)
        })
        .collect()
}

pub(crate) fn masks(
    field: &str,
    value: &Value,
    warnings: &mut Vec<String>,
) -> Result<Vec<MaskRule>, ConfigError> {
    per_field(field, value, |name, spec, path, regex| {
        if regex.captures_len() == 1 {
            warnings.push(format!(
                "`{path}.regex` has no capture group: the whole match is masked"
            ));
        }
        Ok(MaskRule {
            field: name,
            regex,
            replacement: str_member(spec, path, "string")?.unwrap_or_default(),
        })
    })
}

pub(crate) fn hashes(field: &str, value: &Value) -> Result<Vec<HashRule>, ConfigError> {
    per_field(field, value, |name, _, _, regex| {
        Ok(HashRule { field: name, regex })
    })
}

pub(crate) fn derives(field: &str, value: &Value) -> Result<Vec<DeriveRule>, ConfigError> {
    let obj = object(field, value)?;
    obj.iter()
        .map(|(name, spec)| {
            let path = format!("{field}.{name}");
            let list: Vec<&Value> = match spec {
                Value::Array(items) => items.iter().collect(),
                Value::String(_) => vec![spec],
                _ => return Err(ConfigError::wrong_type(path, "an array of regexes")),
            };
            let patterns = list
                .into_iter()
                .enumerate()
                .map(|(i, p)| match p {
                    Value::String(s) => compile(&format!("{path}[{i}]"), s),
                    _ => Err(ConfigError::wrong_type(format!("{path}[{i}]"), "a string")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(DeriveRule {
                field: name.clone(),
                patterns,
            })
        })
        .collect()
}
