//! The rule set against two public suites we did not write: Falco's k8s_audit tests (trace files with
//! expected detections per rule) and Panther's kubernetes rule tests (one labelled event each). The data
//! lives in `tests/fixtures/samples` (copied with licences), our own cases in `tests/fixtures/detections`; `kube-audit-forwarder detect --conformance` and
//! `cargo test` both run this.
//!
//! Each suite's rule names are mapped to our ids in a table here. A case whose rule we deliberately do not
//! have (Falco's INFO activity rules, Panther's window aggregates and threat-intel lookups, GKE- and
//! Azure-Monitor-shaped logs) is counted as skipped, with the reason.

use super::Detector;
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub outcome: Outcome,
    /// Our rules this case shows firing (`true`) or staying quiet on an event they select (`false`).
    pub covers: Vec<(String, bool)>,
}

#[derive(Debug, Clone)]
pub struct Suite {
    pub name: &'static str,
    pub cases: Vec<Case>,
}

impl Suite {
    pub fn count(&self, pick: fn(&Outcome) -> bool) -> usize {
        self.cases.iter().filter(|c| pick(&c.outcome)).count()
    }
    pub fn passed(&self) -> usize {
        self.count(|o| *o == Outcome::Passed)
    }
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }
    /// `panther: 195 passed, 9 failed (9 known deviations), 83 skipped`
    pub fn summary(&self) -> String {
        let known = self
            .cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)) && deviation(&c.name).is_some())
            .count();
        format!(
            "{}: {} passed, {} failed ({known} known deviations), {} skipped",
            self.name,
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }

    /// Per rule id: how many passed cases show it firing, and staying quiet.
    pub fn coverage(&self) -> std::collections::BTreeMap<String, (usize, usize)> {
        let mut coverage = std::collections::BTreeMap::<String, (usize, usize)>::new();
        for case in self.cases.iter().filter(|c| c.outcome == Outcome::Passed) {
            for (id, fires) in &case.covers {
                let entry = coverage.entry(id.clone()).or_default();
                if *fires {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
        }
        coverage
    }

    /// Failures that are not known deviations: regressions.
    pub fn unexpected_failures(&self) -> Vec<&Case> {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)) && deviation(&c.name).is_none())
            .collect()
    }

    /// Known deviations that no longer fail: the list should shrink.
    pub fn deviations_now_passing(&self) -> Vec<&Case> {
        self.cases
            .iter()
            .filter(|c| c.outcome == Outcome::Passed && deviation(&c.name).is_some())
            .collect()
    }
}

/// Every suite, in the order they are reported.
pub fn all(fixtures: &Path, detector: &Detector) -> Result<Vec<Suite>, ConformanceError> {
    Ok(vec![
        falco(fixtures, detector)?,
        panther(fixtures, detector)?,
        ours(fixtures, detector)?,
    ])
}

/// Cases where our rules decide differently from the suite on purpose, and why.
pub const KNOWN_DEVIATIONS: &[(&str, &str)] = &[
    (
        "Kubernetes.Pod.SystemNamespace: System principal creating pod in kube-system (excluded)",
        "Falco's suite counts the pods controllers create in kube-system (a Deployment written there shows up as its pods); Panther's excludes them. We follow Falco, at low severity",
    ),
    (
        "Kubernetes.Pod.Privileged.Created: Run-As-Root Pod Created",
        "privileged-pod means `privileged: true`; running as root inside an unprivileged container is many images' default and would be noise",
    ),
    (
        "Kubernetes.Pod.Privileged.Created: Pod with runAsUser=0 (root)",
        "as above: root is not privileged",
    ),
    (
        "Amazon.EKS.AnonymousAPIAccess: ELB Health Check from Public IP",
        "health endpoints are open to anyone by design; judging by the source needs the cloud's address ranges",
    ),
    (
        "Amazon.EKS.AnonymousAPIAccess: Anonymous API Access Web Scanner Denied",
        "anonymous-allowed is about allowed requests; refused ones are in the 403 reports",
    ),
    (
        "Amazon.EKS.Audit.SystemNamespaceFromPublicIP: system user from non-AWS public IP - should alert",
        "nodes are excepted: telling an AWS address from another needs AWS's published ranges, which we do not ship",
    ),
    (
        "Amazon.EKS.Audit.SystemNamespaceFromPublicIP: attacker from non-AWS IP targeting AWS resource - should alert despite AWS target",
        "as above",
    ),
    (
        "Kubernetes.System.Principal.PublicIP: AKS CSI Disk Driver from Azure Node",
        "needs Azure's address ranges: node agents on hostNetwork in public subnets come from public addresses",
    ),
    (
        "Kubernetes.System.Principal.PublicIP: AKS CSI File Driver from Azure Node",
        "as above",
    ),
];

pub fn deviation(case: &str) -> Option<&'static str> {
    KNOWN_DEVIATIONS
        .iter()
        .find(|(name, _)| *name == case)
        .map(|(_, why)| *why)
}

#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}")]
    Format {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{path}, {case}: {reason}")]
    Case {
        path: String,
        /// `case 3` or the case's name.
        case: String,
        reason: String,
    },
    #[error(transparent)]
    Rules(#[from] super::DetectError),
}

fn read(path: &Path) -> Result<String, ConformanceError> {
    std::fs::read_to_string(path).map_err(|source| ConformanceError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Our own cases (`detections/cases.yaml` under `fixtures`): real sample events with a few fields replaced,
/// for what neither public suite covers.
pub fn ours(fixtures: &Path, detector: &Detector) -> Result<Suite, ConformanceError> {
    let path = fixtures.join("detections/cases.yaml");
    let text = read(&path)?;
    let case_error = |case: String, reason: String| ConformanceError::Case {
        path: path.display().to_string(),
        case,
        reason,
    };
    let list: Value =
        serde_saphyr::from_str(&text).map_err(|e| case_error("(file)".into(), e.to_string()))?;
    let items = list
        .as_array()
        .ok_or_else(|| case_error("(file)".into(), "must be a list of cases".into()))?;
    let mut cases = Vec::new();
    for (i, case) in items.iter().enumerate() {
        let field = |name: &str| {
            case.get(name)
                .ok_or_else(|| case_error(format!("case {i}"), format!("no `{name}`")))
        };
        let name = field("name")?.as_str().unwrap_or_default().to_string();
        let rule = field("rule")?.as_str().unwrap_or_default().to_string();
        let expected = field("expected")?.as_bool().unwrap_or_default();
        let sample = fixtures
            .join("samples")
            .join(field("sample")?.as_str().unwrap_or_default());
        let line = field("line")?.as_u64().unwrap_or_default() as usize;
        let sample_text = read(&sample)?;
        let mut event: Value = sample_text
            .lines()
            .nth(line.saturating_sub(1))
            .and_then(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| {
                case_error(
                    name.clone(),
                    format!("line {line} of the sample is not JSON"),
                )
            })?;
        if let Some(Value::Object(set)) = case.get("set") {
            for (pointer, value) in set {
                let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
                let key = key.replace("~1", "/").replace("~0", "~");
                match event.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.insert(key, value.clone());
                    }
                    _ => {
                        return Err(case_error(name.clone(), format!("no object at `{parent}`")));
                    }
                }
            }
        }
        if !detector.rules().iter().any(|r| r.id == rule) {
            return Err(case_error(name.clone(), format!("no rule `{rule}`")));
        }
        let fired = is_audit_event(&event) && detector.detect(&event).ids.contains(&rule.as_str());
        let outcome = match (fired, expected) {
            (a, b) if a == b => Outcome::Passed,
            (_, true) => Outcome::Failed(format!("{rule} did not fire")),
            _ => Outcome::Failed(format!("{rule} fired")),
        };
        cases.push(Case {
            name,
            outcome,
            covers: vec![(rule, expected)],
        });
    }
    Ok(Suite {
        name: "ours",
        cases,
    })
}

/// Whether the pipeline would take `event` as an audit event (and so run the detections on it).
fn is_audit_event(event: &Value) -> bool {
    crate::events::check_event(Some(event)).is_ok()
}

/// Falco rule names → our ids (`None`: an INFO activity rule; our set starts at NOTICE).
const FALCO_RULES: &[(&str, Option<&[&str]>)] = &[
    ("Create Disallowed Pod", Some(&["disallowed-image-pod"])),
    ("Create Privileged Pod", Some(&["privileged-pod"])),
    ("Create HostNetwork Pod", Some(&["host-network-pod"])),
    ("Create Sensitive Mount Pod", Some(&["sensitive-mount-pod"])),
    ("Disallowed K8s User", Some(&["disallowed-user"])),
    (
        "Create Disallowed Namespace",
        Some(&["disallowed-namespace"]),
    ),
    ("Create NodePort Service", Some(&["nodeport-service"])),
    (
        "Create/Modify Configmap With Private Credentials",
        Some(&["configmap-credentials"]),
    ),
    ("Anonymous Request Allowed", Some(&["anonymous-allowed"])),
    ("Attach/Exec Pod", Some(&["pod-exec", "pod-attach"])),
    (
        "Pod Created in Kube Namespace",
        Some(&["pod-in-system-namespace"]),
    ),
    (
        "Service Account Created in Kube Namespace",
        Some(&["serviceaccount-in-system-namespace"]),
    ),
    (
        "System ClusterRole Modified/Deleted",
        Some(&["system-role-modified"]),
    ),
    (
        "Attach to cluster-admin Role",
        Some(&["cluster-admin-binding"]),
    ),
    (
        "ClusterRole With Wildcard Created",
        Some(&["wildcard-role"]),
    ),
    (
        "ClusterRole With Write Privileges Created",
        Some(&["write-privileges-role"]),
    ),
    (
        "ClusterRole With Pod Exec Created",
        Some(&["pod-exec-role"]),
    ),
    ("json_pointer_example", Some(&["json-pointer-example"])),
];

/// Falco turns on its allowlist rules with built-in lists; ours are off until an operator gives the lists.
/// This is the operator file that reproduces Falco's defaults.
const FALCO_DEFAULTS: &str = r#"
extends: builtin
enable: [disallowed-user, disallowed-namespace]
exceptions:
  disallowed-user:
    - users: [minikube, minikube-user, kubelet, kops, admin, kube, kube-proxy, kube-apiserver-healthcheck,
              kubernetes-admin, cluster-autoscaler, "system:addon-manager", cloud-controller-manager]
"#;

/// Falco's extra rule files in the test table, as our operator files (`None`: nothing to change for us).
fn falco_extra(file: &str) -> Option<Option<&'static str>> {
    Some(match file {
        "allow_namespace_foo.yaml" => {
            Some("extends: builtin\nexceptions: {disallowed-namespace: [{names: [foo]}]}")
        }
        "allow_user_some-user.yaml" => {
            Some("extends: builtin\nexceptions: {disallowed-user: [{users: [some-user]}]}")
        }
        "allow_nginx_container.yaml" | "engine_v4__allow_nginx_container.yaml" => Some(
            "extends: builtin\nenable: [disallowed-image-pod]\nexceptions: {disallowed-image-pod: [{images: [nginx]}]}",
        ),
        "allow_only_apache_container.yaml" | "engine_v4__allow_only_apache_container.yaml" => Some(
            "extends: builtin\nenable: [disallowed-image-pod]\nexceptions: {disallowed-image-pod: [{images: [apache]}]}",
        ),
        "trust_nginx_container.yaml" => Some(
            "extends: builtin\nexceptions:\n  privileged-pod: [{images: [nginx]}]\n  sensitive-mount-pod: [{images: [nginx]}]\n  host-network-pod: [{images: [nginx]}]",
        ),
        "single_rule_with_json_pointer.yaml" => Some(
            r#"
extends: builtin
rules:
  - id: json-pointer-example
    title: An authorization decision without the key a/~b
    severity: medium
    where: [{pointer: "/annotations/authorization.k8s.io~1decision", exists: true}]
    none: [{pointer: "/a~1~0b", exists: true}]
"#,
        ),
        // Our set has no INFO activity rules to disable, and is the same for every engine version.
        "disallow_kactivity.yaml" | "engine_v4_k8s_audit_rules.yaml" => None,
        _ => return None,
    })
}

/// Falco's suite: `samples/falcosecurity__falco/DERIVED__expected_detections.tsv` under `fixtures`.
pub fn falco(fixtures: &Path, base: &Detector) -> Result<Suite, ConformanceError> {
    let dir = fixtures.join("samples/falcosecurity__falco");
    let table_path = dir.join("DERIVED__expected_detections.tsv");
    let table = read(&table_path)?;
    let mapped: Vec<&str> = FALCO_RULES
        .iter()
        .filter_map(|(_, ids)| *ids)
        .flatten()
        .copied()
        .collect();
    let mut cases = Vec::new();
    for (i, line) in table.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let format_error = |reason: String| ConformanceError::Format {
            path: table_path.display().to_string(),
            line: i + 1,
            reason,
        };
        let cols: Vec<&str> = line.split('\t').collect();
        let [name, trace, detect, level, counts, extras] = cols[..] else {
            return Err(format_error(format!("{} columns, expected 6", cols.len())));
        };
        let (outcome, covers) = falco_case(
            &dir,
            base,
            &mapped,
            trace,
            detect == "True",
            level,
            counts,
            extras,
        )
        .map_err(format_error)?;
        cases.push(Case {
            name: name.to_string(),
            outcome,
            covers,
        });
    }
    Ok(Suite {
        name: "falco",
        cases,
    })
}

#[allow(clippy::too_many_arguments)]
fn falco_case(
    dir: &Path,
    base: &Detector,
    mapped: &[&str],
    trace: &str,
    detect: bool,
    level: &str,
    counts: &str,
    extras: &str,
) -> Result<(Outcome, Vec<(String, bool)>), String> {
    // Which of our ids must fire how often.
    let mut expected: Vec<(&[&str], usize)> = Vec::new();
    for pair in counts.split(',').filter(|p| !p.is_empty()) {
        let (rule, n) = pair
            .rsplit_once('=')
            .ok_or_else(|| format!("count `{pair}` is not Rule=N"))?;
        let n: usize = n.parse().map_err(|_| format!("count `{pair}`"))?;
        match FALCO_RULES.iter().find(|(name, _)| *name == rule) {
            Some((_, Some(ids))) => expected.push((ids, n)),
            Some((_, None)) | None => {
                return Ok((
                    Outcome::Skipped(format!(
                        "Falco {level} rule `{rule}` has no counterpart (our set starts at NOTICE)"
                    )),
                    Vec::new(),
                ));
            }
        }
    }
    if detect && expected.is_empty() {
        return Ok((
            Outcome::Skipped(format!("a {level} detection with no rule named")),
            Vec::new(),
        ));
    }
    let mut detector = base
        .clone()
        .with_file(FALCO_DEFAULTS)
        .map_err(|e| e.to_string())?;
    for extra in extras.split(',').filter(|e| !e.is_empty()) {
        match falco_extra(extra) {
            Some(Some(text)) => detector = detector.with_file(text).map_err(|e| e.to_string())?,
            Some(None) => {}
            None => {
                return Ok((
                    Outcome::Skipped(format!("no translation of `{extra}`")),
                    Vec::new(),
                ));
            }
        }
    }
    let text = std::fs::read_to_string(dir.join(format!("test__trace_files__k8s_audit__{trace}")))
        .map_err(|e| format!("{trace}: {e}"))?;
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(is_audit_event)
        .collect();
    let fired: Vec<Vec<String>> = events
        .iter()
        .map(|event| {
            detector
                .detect(event)
                .ids
                .iter()
                .map(|s| s.to_string())
                .collect()
        })
        .collect();
    let mut covers: Vec<(String, bool)> = expected
        .iter()
        .flat_map(|(ids, _)| ids.iter().map(|id| (id.to_string(), true)))
        .collect();
    if !detect {
        for event in &events {
            for id in detector.selecting(event) {
                if mapped.contains(&id) && !covers.iter().any(|(c, _)| c == id) {
                    covers.push((id.to_string(), false));
                }
            }
        }
    }
    let mut problems = Vec::new();
    for (ids, n) in &expected {
        let got = fired
            .iter()
            .filter(|f| f.iter().any(|id| ids.contains(&id.as_str())))
            .count();
        if got != *n {
            problems.push(format!("{} fired {got} times, expected {n}", ids.join("|")));
        }
    }
    if !detect {
        let unexpected: Vec<&String> = fired
            .iter()
            .flatten()
            .filter(|id| mapped.contains(&id.as_str()))
            .collect();
        if !unexpected.is_empty() {
            problems.push(format!("expected no detection, got {unexpected:?}"));
        }
    }
    let outcome = if problems.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed(problems.join("; "))
    };
    Ok((outcome, covers))
}

/// What a Panther rule is to us.
enum Panther {
    Rule(&'static str),
    Skip(&'static str),
}

const PANTHER_RULES: &[(&str, Panther)] = {
    use Panther::{Rule, Skip};
    const AGGREGATE: &str =
        "a count over a time window, answered by the backend (templates/site24x7/queries.md)";
    const ENRICHMENT: &str = "needs Panther's threat-intelligence enrichment (p_enrichment)";
    &[
        ("Amazon.EKS.AnonymousAPIAccess", Rule("anonymous-allowed")),
        ("Kubernetes.API.AnonymousAccess", Rule("anonymous-allowed")),
        ("Amazon.EKS.Audit.Multiple403", Skip(AGGREGATE)),
        ("Kubernetes.API.Multiple403.PublicIP", Skip(AGGREGATE)),
        ("Kubernetes.BulkSecretAccess", Skip(AGGREGATE)),
        ("Kubernetes.API.IOC.Activity", Skip(ENRICHMENT)),
        ("GCP.K8s.IOC.Activity", Skip(ENRICHMENT)),
        (
            "Azure.MonitorActivity.Kubernetes.RoleBindingCreated",
            Skip("Azure Monitor activity records, not audit events"),
        ),
        (
            "Amazon.EKS.Audit.SystemNamespaceFromPublicIP",
            Rule("system-namespace-public-ip"),
        ),
        (
            "Kubernetes.AdmissionController.Created",
            Rule("admission-webhook-created"),
        ),
        (
            "Kubernetes.ClientCertificate.Created",
            Rule("client-certificate-requested"),
        ),
        (
            "Kubernetes.ClusterRoleBinding.Privileged",
            Rule("cluster-admin-binding"),
        ),
        (
            "Kubernetes.CronJob.CreatedOrModified",
            Rule("cronjob-written"),
        ),
        ("Kubernetes.DaemonSet.Created", Rule("daemonset-created")),
        ("Kubernetes.Pod.Exec", Rule("pod-exec")),
        ("Kubernetes.Ingress.NoTLS", Rule("ingress-without-tls")),
        (
            "Kubernetes.Kubectl.CP.Operation",
            Rule("kubectl-cp-from-pod"),
        ),
        (
            "Kubernetes.Pod.SystemNamespace",
            Rule("pod-in-system-namespace"),
        ),
        (
            "Kubernetes.Pod.Dangerous.Capabilities",
            Rule("dangerous-capabilities-pod"),
        ),
        ("Kubernetes.Pod.Host.IPC", Rule("host-ipc-pod")),
        ("Kubernetes.Pod.Host.Network", Rule("host-network-pod")),
        ("Kubernetes.Pod.Host.PID", Rule("host-pid-pod")),
        (
            "Kubernetes.Pod.HostPath.Volume",
            Rule("hostpath-volume-pod"),
        ),
        ("Kubernetes.Pod.Privileged.Created", Rule("privileged-pod")),
        (
            "Kubernetes.Role.NodeProxyPermissions",
            Rule("node-proxy-role"),
        ),
        ("Kubernetes.Role.PodExec", Rule("pod-exec-role")),
        ("Kubernetes.Role.Wildcard", Rule("wildcard-role")),
        (
            "Kubernetes.Role.WritePermissions",
            Rule("write-privileges-role"),
        ),
        (
            "Kubernetes.Secret.AccessDenied",
            Rule("secret-access-denied"),
        ),
        (
            "Kubernetes.Secrets.DumpAllNamespaces",
            Rule("secrets-listed-all-namespaces"),
        ),
        (
            "Kubernetes.Service.NodePort.Deployed",
            Rule("nodeport-service"),
        ),
        (
            "Kubernetes.ServiceAccount.TokenCreated",
            Rule("serviceaccount-token-created"),
        ),
        (
            "Kubernetes.Pod.StealServiceAccountToken",
            Rule("serviceaccount-token-stolen"),
        ),
        (
            "Kubernetes.System.Principal.PublicIP",
            Rule("system-principal-public-ip"),
        ),
        (
            "Kubernetes.SystemRole.Modified",
            Rule("system-role-modified"),
        ),
    ]
};

/// Panther's suite: `samples/panther-labs__panther-analysis/DERIVED__all_tests.jsonl` under `fixtures`.
pub fn panther(fixtures: &Path, detector: &Detector) -> Result<Suite, ConformanceError> {
    let path = fixtures.join("samples/panther-labs__panther-analysis/DERIVED__all_tests.jsonl");
    let text = read(&path)?;
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let format_error = |reason: String| ConformanceError::Format {
            path: path.display().to_string(),
            line: i + 1,
            reason,
        };
        let test: Value = serde_json::from_str(line).map_err(|e| format_error(e.to_string()))?;
        let field = |name: &str| {
            test.get(name)
                .ok_or_else(|| format_error(format!("no `{name}`")))
        };
        let rule_id = field("rule_id")?.as_str().unwrap_or_default().to_string();
        let expected = field("expected")?.as_bool().unwrap_or_default();
        let name = format!(
            "{rule_id}: {}",
            field("test_name")?.as_str().unwrap_or_default()
        );
        let outcome = panther_case(detector, &rule_id, expected, field("log")?);
        let covers = match PANTHER_RULES.iter().find(|(id, _)| *id == rule_id) {
            Some((_, Panther::Rule(ours))) => vec![(ours.to_string(), expected)],
            _ => Vec::new(),
        };
        cases.push(Case {
            name,
            outcome,
            covers,
        });
    }
    Ok(Suite {
        name: "panther",
        cases,
    })
}

fn panther_case(detector: &Detector, rule_id: &str, expected: bool, log: &Value) -> Outcome {
    let ours = match PANTHER_RULES.iter().find(|(id, _)| *id == rule_id) {
        Some((_, Panther::Rule(ours))) => *ours,
        Some((_, Panther::Skip(reason))) => return Outcome::Skipped(reason.to_string()),
        None if rule_id.starts_with("GCP.") => {
            return Outcome::Skipped("a GKE rule (protoPayload log entries)".into());
        }
        None => return Outcome::Skipped("no counterpart in our set".into()),
    };
    if log.get("protoPayload").is_some() {
        return Outcome::Skipped("a GKE-shaped log entry (protoPayload)".into());
    }
    // An AKS diagnostic record carries the event as a JSON string; Panther's `p_*` fields are its own.
    let event = match log.pointer("/properties/log").and_then(Value::as_str) {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(event) => event,
            Err(e) => return Outcome::Failed(format!("properties.log is not JSON: {e}")),
        },
        None => match log {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| !k.starts_with("p_"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            _ => return Outcome::Skipped("not an object".into()),
        },
    };
    let fired = is_audit_event(&event) && detector.detect(&event).ids.contains(&ours);
    if fired == expected {
        Outcome::Passed
    } else if expected {
        Outcome::Failed(format!("{ours} did not fire"))
    } else {
        Outcome::Failed(format!("{ours} fired"))
    }
}
