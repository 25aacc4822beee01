//! The built-in detection rules against Falco's and Panther's public test suites (copied into
//! tests/fixtures/samples with their licences).
#![allow(clippy::unwrap_used)]

use kaf_pipeline::detect::Detector;
use kaf_pipeline::detect::conformance::{self, Outcome, Suite};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn report(suite: &Suite) {
    println!("{}", suite.summary());
    for case in &suite.cases {
        match &case.outcome {
            Outcome::Failed(why) => match conformance::deviation(&case.name) {
                Some(known) => println!("  failed (known) {}: {why} ({known})", case.name),
                None => println!("  FAILED {}: {why}", case.name),
            },
            Outcome::Skipped(why) => println!("  skipped {}: {why}", case.name),
            Outcome::Passed => {}
        }
    }
}

#[test]
fn falco_suite() {
    let suite = conformance::falco(&fixtures(), &Detector::builtin()).unwrap();
    report(&suite);
    assert_eq!(suite.cases.len(), 66);
    assert_eq!(suite.failed(), 0, "{}", suite.summary());
    assert_eq!(suite.passed(), 50, "{}", suite.summary());
}

#[test]
fn panther_suite() {
    let suite = conformance::panther(&fixtures(), &Detector::builtin()).unwrap();
    report(&suite);
    assert_eq!(suite.cases.len(), 287);
    let names =
        |cases: Vec<&conformance::Case>| cases.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert!(
        suite.unexpected_failures().is_empty(),
        "regressions: {:?}",
        names(suite.unexpected_failures())
    );
    assert!(
        suite.deviations_now_passing().is_empty(),
        "take these off KNOWN_DEVIATIONS: {:?}",
        names(suite.deviations_now_passing())
    );
    assert_eq!(suite.failed(), conformance::KNOWN_DEVIATIONS.len());
    assert_eq!(suite.passed(), 195, "{}", suite.summary());
}

#[test]
fn our_cases() {
    let suite = conformance::ours(&fixtures(), &Detector::builtin()).unwrap();
    report(&suite);
    assert!(suite.cases.len() >= 8);
    assert_eq!(suite.failed(), 0, "{}", suite.summary());
}

/// Every rule in the built-in file, the opt-in ones too, has a passed case showing it fire and one showing it
/// stay quiet on an event it selects.
#[test]
fn every_rule_has_a_positive_and_a_negative_case() {
    let detector = Detector::builtin();
    let suites = conformance::all(&fixtures(), &detector).unwrap();
    let mut coverage = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for suite in &suites {
        for (id, (pos, neg)) in suite.coverage() {
            let entry = coverage.entry(id).or_default();
            entry.0 += pos;
            entry.1 += neg;
        }
    }
    let missing: Vec<String> = detector
        .rules()
        .iter()
        .filter_map(|rule| {
            let (pos, neg) = coverage.get(&rule.id).copied().unwrap_or_default();
            (pos == 0 || neg == 0).then(|| format!("{} (+{pos} -{neg})", rule.id))
        })
        .collect();
    assert!(missing.is_empty(), "rules without both cases: {missing:?}");
}

/// Noise: audit2rbac's two real logs (people and controllers at work, 33 × 403) raise nothing.
#[test]
fn ordinary_traffic_raises_nothing() {
    let detector = Detector::builtin();
    let dir = fixtures().join("samples/liggitt__audit2rbac");
    let mut events = 0;
    for file in ["testdata__demo.log", "testdata__demo.log@501d132"] {
        for line in std::fs::read_to_string(dir.join(file)).unwrap().lines() {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            events += 1;
            let found = detector.detect(&event);
            assert!(found.is_empty(), "{file}: {:?} on {line}", found.ids);
        }
    }
    assert_eq!(events, 794);
}

/// A broken case file is refused naming the case, not a line.
#[test]
fn a_bad_case_is_named() {
    let dir = std::env::temp_dir().join(format!("kaf-cases-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("detections")).unwrap();
    std::fs::write(
        dir.join("detections/cases.yaml"),
        "- {name: mine, rule: no-such-rule, expected: true, sample: x, line: 1}\n",
    )
    .unwrap();
    let sample = fixtures().join("samples/liggitt__audit2rbac/testdata__demo.log");
    std::fs::create_dir_all(dir.join("samples")).unwrap();
    std::fs::copy(sample, dir.join("samples/x")).unwrap();
    let error = conformance::ours(&dir, &Detector::builtin())
        .unwrap_err()
        .to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        error.contains("cases.yaml, mine: no rule `no-such-rule`"),
        "{error}"
    );
}
