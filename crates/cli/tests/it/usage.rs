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
