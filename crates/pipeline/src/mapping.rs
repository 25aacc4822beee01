//! The generic mapping: profile entries looked up on a parsed event (the compiled path's test oracle).

use crate::{Profile, Record, lookup, rules};
use kaf_config::ValueType;
use serde_json::{Map, Value};

pub(crate) fn map(profile: &Profile, doc: &mut Value) -> Record {
    let mut record = Record::new();
    for entry in &profile.entries {
        let Some(Some(value)) = lookup::with_value(doc, &entry.key, |found| {
            field_value(found, entry.value_type)
        }) else {
            continue;
        };
        if let Some(pattern) = &entry.pattern
            && let Some(caps) = pattern.captures(&rules::string_form(&value))
        {
            for name in pattern.capture_names().flatten() {
                if let Some(m) = caps.name(name) {
                    record.insert(name.to_string(), Value::String(m.as_str().to_string()));
                }
            }
            continue;
        }
        record.insert(entry.name.clone(), value);
    }
    record
}

/// The event time from the profile's date field (an output field, else a path under `doc`), `None` when absent,
/// unreadable or implausible.
pub(crate) fn event_time(
    profile: &Profile,
    record: &Record,
    doc: &mut Value,
    now_ms: i64,
) -> Option<i64> {
    let field = &profile.date_field;
    let format = &profile.date_format;
    match record.get(field) {
        Some(v) => format.parse_ms(v, now_ms).ok(),
        None => lookup::with_value(doc, field, |v| format.parse_ms(v, now_ms).ok())?,
    }
}

/// The time of an event whose own time is unreadable or implausible: the envelope's (CloudWatch event time,
/// AKS record time) if that is plausible, else the ingest time. Never 0.
pub(crate) fn fallback_time(envelope_time_ms: Option<i64>, now_ms: i64) -> i64 {
    envelope_time_ms
        .filter(|t| kaf_config::plausible_ms(*t, now_ms))
        .unwrap_or(now_ms)
}

/// A looked-up value as a field value: absent for `null` and `""` (kept: `0`, `false`).
pub(crate) fn field_value(found: &Value, value_type: ValueType) -> Option<Value> {
    match (value_type, found) {
        (_, Value::Null) => None,
        (_, Value::String(s)) if s.is_empty() => None,
        (ValueType::JsonObject, Value::Object(map)) => Some(key_value_list(map)),
        (ValueType::JsonObject, Value::String(s)) => match lookup::parse_lenient(s) {
            Some(Value::Object(map)) => Some(key_value_list(&map)),
            _ => Some(found.clone()),
        },
        (_, Value::Object(_) | Value::Array(_)) => Some(Value::String(found.to_string())),
        (_, scalar) => Some(scalar.clone()),
    }
}

pub(crate) fn key_value_list(map: &Map<String, Value>) -> Value {
    Value::Array(
        map.iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                serde_json::json!({"key": k, "value": value})
            })
            .collect(),
    )
}
