//! One CloudWatch Embedded Metric Format line per invocation: CloudWatch turns it into metrics (namespace
//! `KubeAuditForwarder`, dimension `FunctionName`) with no API call and no extra permission. The numbers are
//! the invocation's [`Summary`]; the cluster and a `message` (`invocation done`, or `delivery failed`) ride
//! along as properties, so the line is also the invocation's log line. Detections add one line per rule id
//! that fired, as metric `Detections` with dimensions `FunctionName` and `Rule`.

use kaf_upload::Summary;
use std::fmt::Write as _;
use std::sync::OnceLock;

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

/// What every invocation's line shares: the metric names in [`Summary::counts`] order, and the metric
/// declarations (built once; an invocation only writes numbers).
struct Layout {
    names: Vec<String>,
    declarations: String,
}

fn layout() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let mut names = Vec::new();
        let mut declarations = String::from("[");
        for (key, _) in Summary::default().counts() {
            let (name, unit) = metric(key);
            if !names.is_empty() {
                declarations.push(',');
            }
            let _ = write!(declarations, r#"{{"Name":"{name}","Unit":"{unit}"}}"#);
            names.push(name);
        }
        declarations.push(']');
        Layout {
            names,
            declarations,
        }
    })
}

/// `s` as a JSON string.
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The invocation's EMF line (led by `message`), then one line per rule that fired. Written directly: this
/// runs on every invocation, and building it as a JSON value cost more than the pipeline does for a one-event
/// batch.
pub fn emf_lines(
    summary: &Summary,
    message: &str,
    function_name: &str,
    cluster: &str,
    timestamp_ms: i64,
) -> String {
    let layout = layout();
    // The names as JSON strings, once: every line carries them.
    let (function, cluster) = (json_string(function_name), json_string(cluster));
    let mut lines = String::with_capacity(1024);
    let _ = write!(lines, r#"{{"message":{},"#, json_string(message));
    for ((_, value), name) in summary.counts().iter().zip(&layout.names) {
        let _ = write!(lines, r#""{name}":{value},"#);
    }
    let _ = write!(
        lines,
        r#""FunctionName":{function},"Cluster":{cluster},"_aws":{{"Timestamp":{timestamp_ms},"CloudWatchMetrics":[{{"Namespace":"{NAMESPACE}","Dimensions":[["FunctionName"]],"Metrics":{}}}]}}}}"#,
        layout.declarations
    );
    for (rule, count) in summary.pipeline.detections.iter() {
        let rule = json_string(rule);
        let _ = write!(
            lines,
            r#"
{{"Detections":{count},"FunctionName":{function},"Rule":{rule},"Cluster":{cluster},"_aws":{{"Timestamp":{timestamp_ms},"CloudWatchMetrics":[{{"Namespace":"{NAMESPACE}","Dimensions":[["FunctionName","Rule"]],"Metrics":[{{"Name":"Detections","Unit":"Count"}}]}}]}}}}"#
        );
    }
    lines
}

/// [`emf_lines`] on stdout in one write: each write to the log pipe wakes its reader, on every invocation.
pub fn print_emf(
    summary: &Summary,
    message: &str,
    function_name: &str,
    cluster: &str,
    timestamp_ms: i64,
) {
    let mut lines = emf_lines(summary, message, function_name, cluster, timestamp_ms);
    lines.push('\n');
    // A log pipe that refuses the line loses the metrics, never the invocation.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), lines.as_bytes());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn every_summary_number_is_a_declared_metric_with_its_unit() {
        let mut s = Summary::default();
        s.pipeline.events_in = 7;
        s.upload.bytes_compressed = 99;
        s.duration_ms = 12;
        let line: Value = serde_json::from_str(&emf_lines(
            &s,
            "invocation done",
            "fn",
            "prod",
            1_700_000_000_000,
        ))
        .unwrap();
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
        // The line is the invocation's log line too: it says what happened, first.
        assert_eq!(line["message"], json!("invocation done"));
        assert!(emf_lines(&s, "m", "fn", "prod", 1).starts_with(r#"{"message":"m","#));
    }

    /// Every number of the JSON summary is on the line under its metric name, and names that need escaping
    /// (a function or cluster name is the operator's) stay valid JSON.
    #[test]
    fn the_line_carries_every_summary_number_and_escapes_names() {
        let mut s = Summary::default();
        s.pipeline.events_in = 7;
        s.pipeline.policy_reduced = 3;
        s.upload.retries = 2;
        s.envelope.unreadable = 1;
        s.pipeline.detections.add("rule \"quoted\"", 4);
        let (function, cluster) = ("fn \"x\"\n\u{e9}", "c\\1");
        let text = emf_lines(&s, "delivery failed", function, cluster, 5);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let summary = serde_json::to_value(&s).unwrap();
        let numbers: Vec<_> = summary
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| v.is_number())
            .collect();
        assert_eq!(numbers.len(), 26);
        for (key, value) in numbers {
            assert_eq!(&lines[0][metric(key).0], value, "{key}");
        }
        assert_eq!(
            lines[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .len(),
            26
        );
        for line in &lines {
            assert_eq!(
                (line["FunctionName"].as_str(), line["Cluster"].as_str()),
                (Some(function), Some(cluster))
            );
        }
        assert_eq!(lines[1]["Rule"], json!("rule \"quoted\""));
        assert_eq!(lines[1]["Detections"], json!(4));
    }

    #[test]
    fn each_rule_that_fired_is_a_line_with_a_rule_dimension() {
        let mut s = Summary::default();
        s.pipeline.detected = 3;
        s.pipeline.detections.add("pod-exec", 2);
        s.pipeline.detections.add("privileged-pod", 1);
        let text = emf_lines(&s, "invocation done", "fn", "prod", 1_700_000_000_000);
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
