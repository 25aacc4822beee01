//! The kube-apiserver webhook backend's request body: an `audit.k8s.io` `EventList` whose items usually lack
//! `kind`/`apiVersion`. The apiserver resends a whole list when a request fails, so callers deduplicate.

use serde_json::Value;

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

/// The items of an `EventList` body, in order. A body that is not an `EventList` is refused as a whole (it
/// is not from an apiserver); items are returned as they are, for the pipeline to check one by one.
pub fn event_list_items(body: &[u8]) -> Result<Vec<Value>, WebhookError> {
    let mut doc: Value = serde_json::from_slice(body).map_err(|e| WebhookError::Json {
        line: e.line(),
        column: e.column(),
    })?;
    match doc.get("kind") {
        None => {}
        Some(Value::String(kind)) if kind == "EventList" => {}
        Some(other) => {
            let kind = other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_string);
            return Err(WebhookError::Kind(kind.chars().take(40).collect()));
        }
    }
    match doc.get_mut("items").map(Value::take) {
        Some(Value::Array(items)) => Ok(items),
        Some(Value::Null) => Ok(Vec::new()),
        _ => Err(WebhookError::Items),
    }
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
        assert_eq!(items[1]["stage"], "ResponseComplete");
        assert_eq!(
            event_list_items(br#"{"kind":"EventList","items":null}"#).unwrap(),
            Vec::<Value>::new()
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
