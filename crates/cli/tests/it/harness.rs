use std::path::{Path, PathBuf};
use std::process::Output;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Run the CLI from the repository root (so paths in `logstream` are stable) with only `env` set.
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kube-audit-forwarder"))
        .current_dir(repo_root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("binary runs")
}

/// Async variant for tests that run servers on the test's runtime.
pub async fn cli_async(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-audit-forwarder"))
        .current_dir(repo_root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .args(args)
        .output()
        .await
        .expect("binary runs")
}

pub fn stdout_records(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("stdout is JSON lines"))
        .collect()
}

/// The `summary: {…}` line of stderr.
pub fn summary(out: &Output) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .unwrap_or_else(|| panic!("no summary in stderr:\n{stderr}"));
    serde_json::from_str(line).unwrap()
}

/// The CLI under a real pseudo-terminal (util-linux `script`), with `shell_command` run from the repository
/// root; `None` where `script` is not installed.
pub fn on_a_terminal(shell_command: &str) -> Option<String> {
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let out = std::process::Command::new(script)
        .args(["-qec", shell_command, "/dev/null"])
        .current_dir(repo_root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .output()
        .expect("script runs");
    assert!(out.status.success(), "{out:?}");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}
