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

/// Progress is drawn on a terminal while records go elsewhere, and never when stderr is piped or when the
/// records themselves are printed on the terminal.
#[test]
fn progress_shows_on_a_terminal_only_and_never_when_piped() {
    let demo = "tests/fixtures/samples/liggitt__audit2rbac/testdata__demo.log";
    let bar = "/21.61 KiB";
    // Piped, as every other test runs it: nothing but the summary on stderr.
    let piped = cli(&["replay", demo], &[]);
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(
        !stderr.contains(bar) && !stderr.contains('\u{1b}'),
        "{stderr}"
    );
    assert!(stderr.starts_with("summary: "), "{stderr}");

    let bin = env!("CARGO_BIN_EXE_kube-audit-forwarder");
    let Some(drawn) = crate::harness::on_a_terminal(&format!("{bin} replay {demo} > /dev/null"))
    else {
        eprintln!("skipped the terminal half: util-linux `script` is not installed");
        return;
    };
    assert!(drawn.contains(bar), "{drawn:?}");
    assert!(drawn.contains("summary: "), "{drawn:?}");
    // Records on the terminal: no bar between them.
    let printed = crate::harness::on_a_terminal(&format!("{bin} replay {demo} 2>&1")).unwrap();
    assert!(!printed.contains(bar), "{printed:?}");
    assert!(printed.contains("\"auditid\""));
    // stderr redirected away from the terminal: nothing drawn.
    let redirected =
        crate::harness::on_a_terminal(&format!("{bin} replay {demo} > /dev/null 2>/tmp/kaf-progress-$$.txt; cat /tmp/kaf-progress-$$.txt; rm /tmp/kaf-progress-$$.txt")).unwrap();
    assert!(!redirected.contains(bar), "{redirected:?}");
    assert!(redirected.contains("summary: "));
}
