//! The bundled samples (`tests/fixtures/samples`, copied with their licences).

use serde_json::Value;
use std::path::PathBuf;

/// The repository's `tests/fixtures` folder.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub fn sample(path: &str) -> PathBuf {
    dir().join("samples").join(path)
}

/// `testdata/demo.log` of audit2rbac: 37 v1 events, 11 × 403, impersonation.
pub fn audit2rbac_demo() -> PathBuf {
    sample("liggitt__audit2rbac/testdata__demo.log")
}

/// The 757-event v1beta1 log of audit2rbac (stage pairs).
pub fn audit2rbac_v1beta1() -> PathBuf {
    sample("liggitt__audit2rbac/testdata__demo.log@501d132")
}

/// Every non-blank line of a JSON-lines sample, parsed; lines that are not JSON are skipped.
pub fn events(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("sample readable")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Every audit event of the Falco trace files (well-formed ones only).
pub fn falco_events() -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(sample("falcosecurity__falco"))
        .expect("falco samples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(events)
        .filter(|e| e.get("kind").and_then(Value::as_str) == Some("Event"))
        .collect()
}

/// How many distinct `(auditID, stage)` pairs `events` hold: what arrives after per-invocation dedupe.
/// (Two Falco trace files carry edited copies of one event each.)
pub fn distinct(events: &[Value]) -> usize {
    events
        .iter()
        .map(|e| (e["auditID"].to_string(), e["stage"].to_string()))
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// `n` events built from the real samples (audit2rbac demo, then Falco), each given its own `auditID`
/// (`<original>-<i>`), so every one is a distinct `(auditID, stage)`: for volume and crash tests.
pub fn numbered_events(n: usize) -> Vec<Value> {
    let mut base = events(&audit2rbac_demo());
    base.extend(falco_events());
    (0..n)
        .map(|i| {
            let mut e = base[i % base.len()].clone();
            let id = e["auditID"].as_str().unwrap_or("event").to_string();
            e["auditID"] = Value::String(format!("{id}-{i}"));
            e
        })
        .collect()
}

/// A production-shaped logtypeconfig from `tests/fixtures/bench` (its `uploadDomain` still `127.0.0.1:PORT`).
pub fn bench_config(file: &str) -> Value {
    let text = std::fs::read_to_string(dir().join("bench").join(file)).expect("bench config");
    serde_json::from_str(&text).expect("bench config is JSON")
}

/// `config` pointed at `upload_domain`, base64-encoded as the binaries read `logTypeConfig`.
pub fn encoded_config(config: &Value, upload_domain: &str) -> String {
    let mut config = config.clone();
    config["uploadDomain"] = Value::String(upload_domain.to_string());
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        config.to_string(),
    )
}

/// The allocator settings (`MIMALLOC_*` variables) a deploy template gives the function, read from
/// `infra/<path>` (`aws/template.yaml`, `azure/main.bicep`): what the benchmarks run with unless told
/// otherwise, so that their figures are those of a deployed function.
pub fn template_allocator_env(path: &str) -> Vec<(String, String)> {
    let file = dir().join("../../infra").join(path);
    let text = std::fs::read_to_string(&file).expect("deploy template");
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.trim().split_once(':')?;
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            name.starts_with("MIMALLOC_")
                .then(|| (name.to_string(), value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::template_allocator_env;

    /// The settings the benchmarks read are there, in both template languages: a template that loses them, or
    /// a change of syntax the reader misses, would make the benchmarks measure another allocator setting.
    #[test]
    fn the_templates_allocator_settings_are_read() {
        for (template, purge_delay) in [("aws/template.yaml", "1000"), ("azure/main.bicep", "0")] {
            let env = template_allocator_env(template);
            for (name, value) in [
                ("MIMALLOC_PURGE_DELAY", purge_delay),
                ("MIMALLOC_ALLOW_THP", "0"),
            ] {
                assert!(
                    env.contains(&(name.into(), value.into())),
                    "{template}: {env:?}"
                );
            }
        }
    }
}
