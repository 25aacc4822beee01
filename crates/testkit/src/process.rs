//! Spawn a real binary with a clean environment plus the given variables, capture its stdout and stderr, and
//! kill it when the handle is dropped.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};

pub struct Spawned {
    pub child: Child,
    output: Arc<Mutex<String>>,
}

impl Spawned {
    /// stdout and stderr so far, interleaved by line.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

/// Start `binary` with only `PATH` from this environment, plus `env`.
pub fn spawn(binary: &Path, env: &[(String, String)]) -> Spawned {
    spawn_command(binary, &[], env)
}

/// [`spawn`] with command-line arguments.
pub fn spawn_command(binary: &Path, args: &[String], env: &[(String, String)]) -> Spawned {
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("binary starts");
    let output = Arc::new(Mutex::new(String::new()));
    let stdout = child.stdout.take().expect("stdout piped");
    let stderr = child.stderr.take().expect("stderr piped");
    for stream in [
        Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(stderr),
    ] {
        let output = output.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut out = output.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
    }
    Spawned { child, output }
}

/// A `/proc/<pid>/status` field in KiB (`VmHWM:` peak RSS, `VmRSS:` now); 0 if unreadable.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time `pid`'s live threads have run, in nanoseconds, from the scheduler's own accounting
/// (`/proc/<pid>/task/*/schedstat`): exact, where `/proc/<pid>/stat` rounds to 10 ms ticks. Threads that have
/// exited are not counted (the bootstrap keeps its threads); 0 if unreadable.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// utime + stime of `pid`, in clock ticks (100 per second on Linux); 0 if unreadable.
pub fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}
