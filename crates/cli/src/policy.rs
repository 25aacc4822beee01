//! `policy check FILE`: validate an audit policy as the kube-apiserver would (exit 2 when invalid).
//! `policy test CASES.json`: run conformance cases; one line per failing case, then `N passed, M failed`;
//! exit 1 on any failure.

use anyhow::Context as _;
use kaf_pipeline::policy::{Policy, cases};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate an audit.k8s.io/v1 Policy (YAML or JSON).
    Check { file: PathBuf },
    /// Run conformance cases (format: tests/fixtures/policy/policy-cases.md).
    Test { cases: PathBuf },
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let policy = Policy::parse(&text).with_context(|| file.display().to_string())?;
            for warning in &policy.warnings {
                eprintln!("warning: {warning}");
            }
            let n = policy.rules.len();
            println!(
                "{}: valid, {n} {}",
                file.display(),
                if n == 1 { "rule" } else { "rules" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Test { cases: path } => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let results = cases::run(&text).map_err(anyhow::Error::msg)?;
            let failed: Vec<_> = results
                .iter()
                .filter_map(|r| r.failure.as_ref().map(|f| (&r.name, f)))
                .collect();
            for (name, failure) in &failed {
                println!("FAIL {name}: {failure}");
            }
            println!(
                "{} passed, {} failed",
                results.len() - failed.len(),
                failed.len()
            );
            Ok(if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
