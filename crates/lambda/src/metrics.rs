//! One CloudWatch Embedded Metric Format line per invocation: CloudWatch turns it into metrics (namespace
//! `KubeAuditForwarder`, dimension `FunctionName`) with no API call and no extra permission. The numbers are
//! the invocation's [`Summary`]; the cluster rides along as a property for Logs Insights. Detections add one
//! line per rule id that fired, as metric `Detections` with dimensions `FunctionName` and `Rule`.

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

pub fn emf_lines(
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
    // Numbers only: the per-rule counts are lines of their own (below).
    for (key, value) in numbers.into_iter().filter(|(_, v)| v.is_number()) {
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
    let mut lines = Value::Object(line).to_string();
    for (rule, count) in summary.pipeline.detections.iter() {
        let per_rule = json!({
            "Detections": count, "FunctionName": function_name, "Rule": rule, "Cluster": cluster,
            "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [{
                "Namespace": NAMESPACE, "Dimensions": [["FunctionName", "Rule"]],
                "Metrics": [{"Name": "Detections", "Unit": "Count"}]}]},
        });
        lines.push('\n');
        lines.push_str(&per_rule.to_string());
    }
    lines
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
            serde_json::from_str(&emf_lines(&s, "fn", "prod", 1_700_000_000_000)).unwrap();
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

    #[test]
    fn each_rule_that_fired_is_a_line_with_a_rule_dimension() {
        let mut s = Summary::default();
        s.pipeline.detected = 3;
        s.pipeline.detections.add("pod-exec", 2);
        s.pipeline.detections.add("privileged-pod", 1);
        let text = emf_lines(&s, "fn", "prod", 1_700_000_000_000);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        // The invocation's line declares numbers only.
        assert_eq!(lines[0]["Detected"], json!(3));
        assert!(lines[0].get("Detections").is_none());
        for (line, (rule, count)) in lines[1..]
            .iter()
            .zip([("pod-exec", 2), ("privileged-pod", 1)])
        {
            let directive = &line["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(directive["Dimensions"], json!([["FunctionName", "Rule"]]));
            assert_eq!(
                directive["Metrics"],
                json!([{"Name": "Detections", "Unit": "Count"}])
            );
            assert_eq!(
                (
                    line["Rule"].clone(),
                    line["Detections"].clone(),
                    line["FunctionName"].clone()
                ),
                (json!(rule), json!(count), json!("fn"))
            );
        }
    }
}
