//! `detect`: the rule report over real samples, the 403 reports, operator rule files, and the conformance
//! suites, through the real binary.

use crate::harness::cli;
use serde_json::Value;
use std::collections::BTreeMap;

const FALCO: &str = "tests/fixtures/samples/falcosecurity__falco";
const DEMO: &str = "tests/fixtures/samples/liggitt__audit2rbac/testdata__demo.log";

fn falco_traces() -> Vec<String> {
    let root = crate::harness::repo_root();
    let mut files: Vec<String> = std::fs::read_dir(root.join(FALCO))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.ends_with(".json").then(|| format!("{FALCO}/{name}"))
        })
        .collect();
    files.sort();
    files
}

fn report(args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = cli(args, env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rule_counts(report: &Value) -> BTreeMap<String, u64> {
    report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn falco_traces_give_each_rule_its_count_with_who_and_what() {
    let files = falco_traces();
    let mut args = vec!["detect", "--json"];
    args.extend(files.iter().map(String::as_str));
    let report = report(&args, &[]);
    let counts = rule_counts(&report);
    // The trace files Falco labels: one exec, one attach, three privileged pods (first, second and
    // no-securityContext-first container), six ConfigMaps with credentials.
    assert_eq!(counts["pod-exec"], 1);
    assert_eq!(counts["pod-attach"], 1);
    assert_eq!(counts["privileged-pod"], 3);
    assert_eq!(counts["configmap-credentials"], 6);
    assert_eq!(counts["nodeport-service"], 1);
    assert!(
        !counts.contains_key("disallowed-user"),
        "opt-in rules stay off"
    );
    let exec = &report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "pod-exec")
        .unwrap();
    assert_eq!(exec["severity"], "medium");
    assert_eq!(exec["mitre"], "T1609");
    assert_eq!(exec["users"][0]["name"], "minikube-user");
    assert_eq!(exec["sourceIPs"][0]["name"], "192.168.99.1");
    assert_eq!(
        exec["objects"][0]["name"],
        "default/pods/exec/nginx-deployment-7998647bdf-phvq7"
    );
    assert!(report["events"].as_u64().unwrap() >= 50);
}

/// What `detect` reads but no rule sees is counted, in the JSON and in the table: lines that are not JSON,
/// JSON that is not an audit event, and repeats.
#[test]
fn skipped_lines_are_counted() {
    let root = crate::harness::repo_root();
    let demo = std::fs::read_to_string(root.join(DEMO)).unwrap();
    let first = demo.lines().find(|l| l.starts_with('{')).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.log");
    std::fs::write(
        &file,
        format!("{first}\nnot json at all\n{{\"kind\":0}}\n{first}\n[1,2]\n"),
    )
    .unwrap();
    let path = file.display().to_string();
    let report = report(&["detect", "--json", &path], &[]);
    assert_eq!(report["events"], 1);
    assert_eq!(
        report["skipped"],
        serde_json::json!({"notJson": 1, "notAuditEvents": 2, "repeats": 1})
    );
    let out = cli(&["detect", &path], &[]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("skipped: 1 not JSON, 2 not an audit event, 1 repeated"),
        "{table}"
    );
}

/// The seed query, counted independently from the sample, against the report's.
#[test]
fn the_403_reports_answer_the_seed_query() {
    let root = crate::harness::repo_root();
    let mut expected = BTreeMap::<String, u64>::new();
    for line in std::fs::read_to_string(root.join(DEMO)).unwrap().lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if e["responseStatus"]["code"] == 403
            && e["verb"] == "list"
            && e["stage"] == "ResponseComplete"
        {
            let user = format!(
                "{} (impersonated by {})",
                e["impersonatedUser"]["username"].as_str().unwrap(),
                e["user"]["username"].as_str().unwrap()
            );
            *expected.entry(user).or_default() += 1;
        }
    }
    assert!(!expected.is_empty());
    let report = report(&["detect", "--json", DEMO], &[]);
    let got: BTreeMap<String, u64> = report["forbiddenListByUser"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["user"].as_str().unwrap().to_string(),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        report["eventsWithDetections"], 0,
        "ordinary traffic raises nothing"
    );

    let table = cli(&["detect", DEMO], &[]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("403 on list, by username"), "{table}");
    assert!(
        table.contains("bob (impersonated by system:admin)"),
        "{table}"
    );
    assert!(table.contains("403 by user and request:"), "{table}");
}

#[test]
fn an_operator_file_amends_the_rules_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let amend = dir.path().join("mine.yaml");
    std::fs::write(
        &amend,
        "extends: builtin\ndisable: [pod-exec]\nexceptions:\n  privileged-pod: [{images: [nginx]}]\n",
    )
    .unwrap();
    let files = falco_traces();
    let mut args = vec!["detect", "--json"];
    args.extend(files.iter().map(String::as_str));
    let counts = rule_counts(&report(
        &args,
        &[("DETECTIONS_FILE", amend.to_str().unwrap())],
    ));
    assert!(!counts.contains_key("pod-exec"));
    // The single-container nginx pod is trusted now; pods that also run another image are not.
    let privileged = counts.get("privileged-pod").copied().unwrap_or(0);
    assert!(privileged < 3, "{counts:?}");
    assert_eq!(counts["pod-attach"], 1);

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "rules:\n  - id: my-rule\n    title: t\n    severity: urgent\n",
    )
    .unwrap();
    let out = cli(
        &["detect", "--detections", bad.to_str().unwrap(), DEMO],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rules[0] (my-rule): field `severity`") && stderr.contains("bad.yaml"),
        "{stderr}"
    );
}

#[test]
fn conformance_prints_each_suite_and_passes() {
    let out = cli(&["detect", "--conformance"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for suite in ["falco: ", "panther: ", "ours: "] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(suite) && l.contains(" passed, ")),
            "{stdout}"
        );
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
}

/// Per rule, how many records `replay` tagged with it.
fn tagged_counts(records: &[Value]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for r in records {
        for id in r["detections"].as_array().into_iter().flatten() {
            *counts.entry(id.as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    counts
}

/// What `replay` forwards is tagged as `detect` reports it (the forwarders' compiled path against the
/// report's generic one), and the summary counts it per rule.
#[test]
fn replay_tags_the_records_detect_reports() {
    let files = falco_traces();
    let mut args = vec!["detect", "--json"];
    args.extend(files.iter().map(String::as_str));
    let reported = rule_counts(&report(&args, &[]));
    let mut args = vec!["replay"];
    args.extend(files.iter().map(String::as_str));
    let out = cli(&args, &[]);
    assert!(out.status.success());
    let records = crate::harness::stdout_records(&out);
    let tagged = tagged_counts(&records);
    assert_eq!(tagged, reported);
    let s = crate::harness::summary(&out);
    let summary: BTreeMap<String, u64> = serde_json::from_value(s["detections"].clone()).unwrap();
    assert_eq!(summary, tagged);
    let with_tags = records
        .iter()
        .filter(|r| r.get("detections").is_some())
        .count();
    assert_eq!(s["detected"].as_u64(), Some(with_tags as u64));
    for r in &records {
        assert_eq!(
            r.get("detections").is_some(),
            r.get("detection_severity").is_some(),
            "{r}"
        );
    }
}

#[test]
fn detections_only_no_detections_and_an_operator_file_on_replay() {
    let files = falco_traces();
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["replay"];
        args.extend_from_slice(extra);
        args.extend(files.iter().map(String::as_str));
        let out = cli(&args, env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            crate::harness::stdout_records(&out),
            crate::harness::summary(&out),
        )
    };
    let (all, s_all) = run(&[], &[]);
    let tagged = all.iter().filter(|r| r.get("detections").is_some()).count();

    for (flags, env) in [
        (&["--detections-only"][..], &[][..]),
        (&[][..], &[("DETECTIONS_ONLY", "true")][..]),
    ] {
        let (only, s) = run(flags, env);
        assert_eq!(only.len(), tagged);
        assert!(only.iter().all(|r| r.get("detections").is_some()));
        assert_eq!(
            s["detectionsSkipped"].as_u64().unwrap(),
            s_all["forwarded"].as_u64().unwrap() - tagged as u64
        );
    }
    for (flags, env) in [
        (&["--no-detections"][..], &[][..]),
        (&[][..], &[("DETECTIONS", "off")][..]),
    ] {
        let (off, s) = run(flags, env);
        assert_eq!(off.len(), all.len());
        assert!(off.iter().all(|r| r.get("detections").is_none()));
        assert_eq!(s["detected"].as_u64(), Some(0));
    }

    // An operator's file amends the built-in set: no pod-exec, an nginx exception to privileged-pod.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "extends: builtin\ndisable: [pod-exec]\nexceptions:\n  privileged-pod: [{images: [nginx]}]\n",
    )
    .unwrap();
    let path = rules.to_str().unwrap();
    for (flags, env) in [
        (&["--detections", path][..], &[][..]),
        (&[][..], &[("DETECTIONS_FILE", path)][..]),
    ] {
        let (amended, _) = run(flags, env);
        let counts = tagged_counts(&amended);
        let before = tagged_counts(&all);
        assert_eq!(counts.get("pod-exec"), None);
        assert!(
            counts.get("privileged-pod") < before.get("privileged-pod"),
            "{counts:?}"
        );
        assert_eq!(counts.get("pod-attach"), before.get("pod-attach"));
    }

    // A bad file stops the run before any record, naming the rule and the field.
    std::fs::write(
        &rules,
        "extends: builtin\nrules:\n- id: mine\n  title: t\n  severity: high\n  match: {verbz: [get]}\n",
    )
    .unwrap();
    let out = cli(&["replay", "--detections", path, DEMO], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rules[0] (mine): field `match.verbz`"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
