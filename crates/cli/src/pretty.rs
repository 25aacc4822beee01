//! `--output pretty`: one block per record with what a person reads first (time, status, verb, resource,
//! user, decision), for a terminal. Reads the default profile's field names: printing happens only without a
//! logtypeconfig, so records are always in the default profile.

use serde_json::{Map, Value};
use std::fmt::Write as _;

/// How records are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Style {
    /// One compact JSON record per line, exactly what would be uploaded (the default, for pipes and tools).
    #[default]
    Json,
    /// One block per event, for reading on a terminal.
    Pretty,
}

/// `record` (the default profile's fields) as a block of a few lines, ending in a blank line.
pub fn block(record: &Map<String, Value>) -> String {
    let text = |name: &str| match record.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let unparsed = text("kaf_unparsed");
    let mut out = String::new();
    let time = text("requestreceivedtimestamp");
    let code = text("responsestatus_code");
    let resource = [text("objectref_resource"), text("objectref_subresource")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    let object = match (text("objectref_namespace"), text("objectref_name")) {
        (ns, name) if ns.is_empty() => name,
        (ns, name) if name.is_empty() => format!("{ns}/"),
        (ns, name) => format!("{ns}/{name}"),
    };
    let target = if resource.is_empty() {
        text("requesturi")
    } else {
        format!("{resource} {object}").trim_end().to_string()
    };
    let _ = writeln!(
        out,
        "{time}  {}  {}  {target}",
        if code.is_empty() { "-".into() } else { code },
        text("verb")
    );
    let mut user = text("username");
    let groups = text("usergroups");
    if !groups.is_empty() {
        let _ = write!(user, " (groups {})", list(&groups));
    }
    let impersonated = text("impersonateduser_username");
    if !impersonated.is_empty() {
        let _ = write!(user, " as {impersonated}");
    }
    let _ = writeln!(out, "  user      {user}");
    let decision = text("authorization_decision");
    if !decision.is_empty() {
        let reason = text("authorization_reason");
        let _ = writeln!(out, "  decision  {decision}  {reason}");
    }
    let message = text("responsestatus_message");
    if !message.is_empty() {
        let _ = writeln!(out, "  message   {message}");
    }
    let (source, agent) = (text("sourceip"), text("useragent"));
    if !source.is_empty() || !agent.is_empty() {
        let _ = writeln!(out, "  from      {source}  {agent}");
    }
    let _ = writeln!(
        out,
        "  event     {}  {}  {}",
        text("auditid"),
        text("stage"),
        text("level")
    );
    if !unparsed.is_empty() {
        let _ = writeln!(out, "  unparsed  {unparsed}");
    }
    // Empty columns leave trailing blanks.
    let mut block: String = out.lines().map(|l| format!("{}\n", l.trim_end())).collect();
    block.push('\n');
    block
}

/// A JSON array of strings as `a, b`; anything else as it is.
fn list(text: &str) -> String {
    match serde_json::from_str::<Vec<String>>(text) {
        Ok(items) => items.join(", "),
        Err(_) => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn a_forbidden_request_reads_as_one_block() {
        let record = json!({
            "requestreceivedtimestamp": "2017-09-11T19:48:25.069474Z", "responsestatus_code": 403, "verb": "list",
            "objectref_resource": "pods", "objectref_namespace": "kube-system", "username": "bob",
            "usergroups": "[\"system:authenticated\",\"devs\"]", "authorization_decision": "forbid",
            "authorization_reason": "", "sourceip": "10.0.0.1", "useragent": "kubectl/v1.8.0",
            "auditid": "a1", "stage": "ResponseComplete", "level": "Metadata"
        });
        assert_eq!(
            block(record.as_object().unwrap()),
            "2017-09-11T19:48:25.069474Z  403  list  pods kube-system/\n  user      bob (groups system:authenticated, devs)\n  decision  forbid\n  from      10.0.0.1  kubectl/v1.8.0\n  event     a1  ResponseComplete  Metadata\n\n"
        );
    }

    #[test]
    fn a_non_resource_request_shows_its_uri() {
        let record =
            json!({"verb": "get", "requesturi": "/healthz", "username": "system:anonymous"});
        let text = block(record.as_object().unwrap());
        assert!(text.starts_with("  -  get  /healthz\n"), "{text}");
    }
}
