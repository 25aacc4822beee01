use crate::harness::{cli, repo_root, stdout_records};
use serde_json::Value;

/// Compare the records of `fixtures` with `tests/golden/default-profile/<name>.jsonl`, record by record.
fn check(name: &str, fixtures: &[String]) {
    let mut args = vec!["replay", "--cluster", "golden"];
    args.extend(fixtures.iter().map(String::as_str));
    let out = cli(&args, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let golden = repo_root()
        .join("tests/golden/default-profile")
        .join(format!("{name}.jsonl"));
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&golden, &out.stdout).unwrap();
    }
    let expected: Vec<Value> = std::fs::read_to_string(&golden)
        .unwrap_or_else(|_| {
            panic!(
                "missing {}; run with BLESS=1 and review the diff",
                golden.display()
            )
        })
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actual = stdout_records(&out);
    assert_eq!(actual.len(), expected.len(), "record count of {name}");
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert_eq!(
            a, e,
            "{name} record {i} differs from the golden file (BLESS=1 to accept)"
        );
    }
}

#[test]
fn audit2rbac_demo_log() {
    check(
        "audit2rbac-demo",
        &["tests/fixtures/samples/liggitt__audit2rbac/testdata__demo.log".into()],
    );
}

#[test]
fn falco_trace_files() {
    let dir = repo_root().join("tests/fixtures/samples/falcosecurity__falco");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .map(|n| format!("tests/fixtures/samples/falcosecurity__falco/{n}"))
        .collect();
    files.sort();
    check("falco-traces", &files);
}
