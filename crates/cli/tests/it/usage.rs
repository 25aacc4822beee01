//! What the CLI says to a person: usage lines, counts in words.

use crate::harness::cli;

/// `serve` without either credential refuses to start, and its usage line says one is required.
#[test]
fn serve_without_a_credential_option_names_both_in_the_usage() {
    let out = cli(
        &[
            "serve",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--spool-dir",
            "spool",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("<--token-file <TOKEN_FILE>|--client-ca <CLIENT_CA>>"),
        "{stderr}"
    );
    let help = cli(&["serve", "--help"], &[]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("<--token-file <TOKEN_FILE>|--client-ca <CLIENT_CA>>"),
        "{help}"
    );
    assert!(
        help.contains("auditID, stage and both timestamps"),
        "{help}"
    );
}

#[test]
fn policy_check_counts_rules_in_words() {
    let dir = tempfile::tempdir().unwrap();
    for (rules, expected) in [(1, "valid, 1 rule\n"), (2, "valid, 2 rules\n")] {
        let file = dir.path().join(format!("p{rules}.yaml"));
        let mut text = String::from("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n");
        for _ in 0..rules {
            text.push_str("- level: Metadata\n");
        }
        std::fs::write(&file, text).unwrap();
        let out = cli(&["policy", "check", file.to_str().unwrap()], &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.ends_with(expected), "{stdout}");
    }
}

/// `--output pretty`: one block per event with time, code, verb, resource, user and what was denied; the
/// default stays JSON lines, one per record, the same records.
#[test]
fn replay_prints_pretty_blocks_on_request_and_json_lines_by_default() {
    let demo = crate::harness::repo_root()
        .join("tests/fixtures/samples/liggitt__audit2rbac/testdata__demo.log")
        .display()
        .to_string();
    let json = cli(&["replay", &demo], &[]);
    assert!(json.status.success());
    let records = crate::harness::stdout_records(&json);
    assert_eq!(records.len(), 37);

    let pretty = cli(&["replay", "--output", "pretty", &demo], &[]);
    assert!(pretty.status.success());
    let text = String::from_utf8_lossy(&pretty.stdout);
    let blocks: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(blocks.len(), records.len(), "{text}");
    assert_eq!(
        blocks[0],
        "2017-09-11T19:55:05Z  403  list  pods default/\n\
         \x20 user      system:admin (groups system:masters, system:authenticated) as bob\n\
         \x20 message   pods is forbidden: User \"bob\" cannot list pods in the namespace \"default\"\n\
         \x20 from      ::1\n\
         \x20 event     033d17af-082d-4b24-aa22-627752e83d71  ResponseComplete  Metadata"
    );
    // Every block is about its record, in order.
    for (block, record) in blocks.iter().zip(&records) {
        let id = record["auditid"].as_str().unwrap();
        assert!(block.contains(id), "{block}");
        let code = record["responsestatus_code"].to_string();
        assert!(block.lines().next().unwrap().contains(&code), "{block}");
    }
    // The summary is the same either way.
    assert_eq!(
        crate::harness::summary(&pretty)["forwarded"],
        crate::harness::summary(&json)["forwarded"]
    );
}
