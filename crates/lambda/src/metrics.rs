//! One CloudWatch Embedded Metric Format line per invocation: CloudWatch turns it into metrics (namespace
//! `KubeAuditForwarder`, dimension `FunctionName`) with no API call and no extra permission. The numbers are
//! the invocation's [`Summary`]; the cluster rides along as a property for Logs Insights.

use kaf_upload::Summary;
use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "KubeAuditForwarder";

/// `eventsIn` → `EventsIn`, with the unit its name implies.
fn metric(key: &str) -> (String, &'static str) {
    let mut name = key.to_string();
    if let Some(first) = name.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    let unit = if key.starts_with("bytes") {
        "Bytes"
    } else if key.ends_with("Ms") {
        "Milliseconds"
    } else {
        "Count"
    };
    (name, unit)
}

pub fn emf_line(
    summary: &Summary,
    function_name: &str,
    cluster: &str,
    timestamp_ms: i64,
) -> String {
    let Ok(Value::Object(numbers)) = serde_json::to_value(summary) else {
        return String::new();
    };
    let mut line = Map::new();
    let mut definitions = Vec::with_capacity(numbers.len());
    for (key, value) in numbers {
        let (name, unit) = metric(&key);
        definitions.push(json!({"Name": name, "Unit": unit}));
        line.insert(name, value);
    }
    line.insert("FunctionName".into(), json!(function_name));
    line.insert("Cluster".into(), json!(cluster));
    line.insert(
        "_aws".into(),
        json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": [{
            "Namespace": NAMESPACE, "Dimensions": [["FunctionName"]], "Metrics": definitions}]}),
    );
    Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_summary_number_is_a_declared_metric_with_its_unit() {
        let mut s = Summary::default();
        s.pipeline.events_in = 7;
        s.upload.bytes_compressed = 99;
        s.duration_ms = 12;
        let line: Value =
            serde_json::from_str(&emf_line(&s, "fn", "prod", 1_700_000_000_000)).unwrap();
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], json!(NAMESPACE));
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        let metrics = directive["Metrics"].as_array().unwrap();
        // Every declared metric has a value at the top level (EMF requires it).
        for m in metrics {
            assert!(line[m["Name"].as_str().unwrap()].is_number(), "{m}");
        }
        let unit =
            |n: &str| metrics.iter().find(|m| m["Name"] == json!(n)).unwrap()["Unit"].clone();
        assert_eq!(
            (
                unit("EventsIn"),
                unit("BytesCompressed"),
                unit("DurationMs")
            ),
            (json!("Count"), json!("Bytes"), json!("Milliseconds"))
        );
        assert_eq!(
            (
                line["EventsIn"].clone(),
                line["FunctionName"].clone(),
                line["Cluster"].clone()
            ),
            (json!(7), json!("fn"), json!("prod"))
        );
        assert_eq!(line["_aws"]["Timestamp"], json!(1_700_000_000_000_i64));
    }
}
