//! The kube-apiserver webhook backend's request body: an `audit.k8s.io` `EventList` whose items usually lack
//! `kind`/`apiVersion`. The apiserver resends a whole list when a request fails, so callers deduplicate.

use serde_json::Value;
use serde_json::value::RawValue;

/// Why a webhook body was refused. Names the field or the position, never content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("body is not valid JSON at line {line} column {column}")]
    Json { line: usize, column: usize },
    #[error("`kind` is {0:?}, expected \"EventList\"")]
    Kind(String),
    #[error("`items` is missing or not an array")]
    Items,
}

/// One item of an `EventList`: an event as JSON, or the raw text of one that the JSON parser cannot take
/// (nested deeper than its limit, a number like `1e999`). Such an item is kept, never dropped: a 400 for
/// the whole list would make the apiserver drop every other event in it (it does not retry a 400), so one
/// crafted object could hide the events around it.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Event(Value),
    Unparsed { raw: String, reason: String },
}

/// The items of an `EventList` body, in order. The list is split into raw items first (no depth limit),
/// then each item is parsed alone. A body that is not an `EventList` is refused as a whole (it is not from
/// an apiserver).
pub fn event_list_items(body: &[u8]) -> Result<Vec<Item>, WebhookError> {
    #[derive(serde::Deserialize)]
    struct EventList<'a> {
        #[serde(borrow, default)]
        kind: Option<&'a RawValue>,
        #[serde(borrow, default)]
        items: Option<&'a RawValue>,
    }
    let list: EventList<'_> = serde_json::from_slice(body).map_err(|e| WebhookError::Json {
        line: e.line(),
        column: e.column(),
    })?;
    // serde also reads a struct from an array, by position: an EventList is an object.
    if !body.trim_ascii_start().starts_with(b"{") {
        return Err(WebhookError::Items);
    }
    if let Some(kind) = list.kind {
        match serde_json::from_str::<Value>(kind.get()) {
            Ok(Value::String(k)) if k == "EventList" => {}
            Ok(other) => {
                let kind = other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string);
                return Err(WebhookError::Kind(kind.chars().take(40).collect()));
            }
            Err(_) => return Err(WebhookError::Kind(kind.get().chars().take(40).collect())),
        }
    }
    let items: Vec<&RawValue> = match list.items.map(RawValue::get) {
        None | Some("null") => return Ok(Vec::new()),
        Some(raw) if raw.starts_with('[') => {
            serde_json::from_str(raw).map_err(|_| WebhookError::Items)?
        }
        Some(_) => return Err(WebhookError::Items),
    };
    Ok(items
        .into_iter()
        .map(|raw| match serde_json::from_str::<Value>(raw.get()) {
            Ok(event) => Item::Event(event),
            Err(e) => Item::Unparsed {
                raw: raw.get().to_string(),
                reason: e.to_string(),
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn items_come_back_in_order_without_kind() {
        let body = br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},
            "items":[{"auditID":"a","stage":"RequestReceived"},{"auditID":"a","stage":"ResponseComplete"}]}"#;
        let items = event_list_items(body).unwrap();
        assert_eq!(items.len(), 2);
        let Item::Event(second) = &items[1] else {
            panic!()
        };
        assert_eq!(second["stage"], "ResponseComplete");
        assert_eq!(
            event_list_items(br#"{"kind":"EventList","items":null}"#).unwrap(),
            Vec::<Item>::new()
        );
    }

    /// Regression: one item nested past serde_json's limit, or holding `1e999`, got the whole list a 400,
    /// and the apiserver then dropped every event in it.
    #[test]
    fn one_odd_item_is_kept_raw_and_the_others_parse() {
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        let body = format!(
            r#"{{"kind":"EventList","items":[{{"auditID":"a","stage":"ResponseComplete"}},{{"auditID":"b","requestObject":{deep}}},{{"auditID":"c","n":1e999}},{{"auditID":"d","stage":"ResponseComplete"}}]}}"#
        );
        let items = event_list_items(body.as_bytes()).unwrap();
        assert_eq!(items.len(), 4);
        assert!(matches!(&items[0], Item::Event(_)) && matches!(&items[3], Item::Event(_)));
        let Item::Unparsed { raw, reason } = &items[1] else {
            panic!("{:?}", items[1])
        };
        assert!(raw.starts_with(r#"{"auditID":"b""#) && reason.contains("recursion limit"));
        assert!(
            matches!(&items[2], Item::Unparsed { reason, .. } if reason.contains("out of range"))
        );
    }

    #[test]
    fn errors_name_the_position_or_field() {
        assert_eq!(
            event_list_items(b"{\n\"items\": [,]}"),
            Err(WebhookError::Json {
                line: 2,
                column: 11
            })
        );
        assert_eq!(
            event_list_items(br#"{"kind":"Event","auditID":"x"}"#),
            Err(WebhookError::Kind("Event".into()))
        );
        assert_eq!(
            event_list_items(br#"{"kind":"EventList","items":{}}"#),
            Err(WebhookError::Items)
        );
        assert_eq!(event_list_items(b"[]"), Err(WebhookError::Items));
    }
}
