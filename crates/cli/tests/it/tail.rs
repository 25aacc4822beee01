use crate::harness::{cli, stdout_records};
use crate::serve::{counts, upload_env};
use kaf_testkit::fixtures;
use kaf_testkit::lumberjack::Lumberjack;
use kaf_testkit::process::{Spawned, spawn_command};
use kaf_testkit::receiver::{Fault, Receiver};
use kaf_testkit::wait_for;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const KEY: &str = "serve-test-key-SECRET-7";
const LOG_TYPE: &str = "Kubernetes Audit Logs";

fn start_tail(rx: &Receiver, live: &Path, extra: &[&str]) -> Spawned {
    let mut args: Vec<String> = [
        "tail",
        &live.display().to_string(),
        "--poll-ms",
        "20",
        "--cluster",
        "onprem-2",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    let env = upload_env(rx);
    spawn_command(
        Path::new(env!("CARGO_BIN_EXE_kube-audit-forwarder")),
        &args,
        &env,
    )
}

fn lines(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect()
}

/// How often each `upload-id` was attempted.
fn attempts(rx: &Receiver) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for id in rx.attempts() {
        *out.entry(id).or_default() += 1;
    }
    out
}

async fn all_delivered_once(rx: &Receiver, n: usize) {
    wait_for(Duration::from_secs(60), "every line delivered", || {
        (counts(&rx.records()).len() >= n).then_some(())
    })
    .await;
    let got = counts(&rx.records());
    assert_eq!(got.len(), n);
    let twice: Vec<_> = got.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "{twice:?}");
    assert_eq!(rx.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn follows_lumberjack_rotation_and_compression_and_a_clean_restart_sends_nothing_twice() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    let events = fixtures::numbered_events(1200);
    let mut tail = start_tail(
        &rx,
        &live,
        &["--batch-events", "100", "--deadline-secs", "3"],
    );
    let writer = {
        let (live, lines) = (live.clone(), lines(&events));
        std::thread::spawn(move || {
            let mut log = Lumberjack::new(&live, 150, 2);
            for (i, line) in lines.iter().enumerate() {
                log.write(line);
                if i % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(15));
                }
            }
            log.rotations
        })
    };
    wait_for(Duration::from_secs(30), "a third delivered", || {
        (rx.records().len() >= 400).then_some(())
    })
    .await;
    let pid = tail.child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tail.child.wait().await.unwrap();
    assert!(
        status.success(),
        "clean stop on SIGTERM: {status:?}\n{}",
        tail.output()
    );
    let mut tail = start_tail(
        &rx,
        &live,
        &["--batch-events", "100", "--deadline-secs", "3"],
    );
    let rotations = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    assert!(rotations >= 7, "{rotations}");
    assert!(std::fs::read_dir(dir.path()).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".log.gz")
    }));

    all_delivered_once(&rx, 1200).await;
    let repeated: Vec<_> = attempts(&rx).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(
        repeated.is_empty(),
        "nothing sent twice after a clean restart: {repeated:?}"
    );
    let record = &rx.records()[0];
    assert_eq!(
        (
            record["s247agentuid"].as_str(),
            record["logstream"].as_str()
        ),
        (Some("onprem-2"), Some("audit.log"))
    );
    tail.child.start_kill().unwrap();
}

#[tokio::test]
async fn after_kill_9_only_the_batch_in_flight_is_resent_with_the_same_upload_id() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    // The second request is accepted but answered late: the process dies while it is in flight.
    rx.push_faults([Fault::Accept, Fault::SlowAccept(Duration::from_secs(30))]);
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    let events = fixtures::numbered_events(300);
    std::fs::write(&live, lines(&events).join("\n") + "\n").unwrap();
    let mut tail = start_tail(
        &rx,
        &live,
        &["--batch-events", "100", "--deadline-secs", "60"],
    );
    wait_for(Duration::from_secs(20), "the second request", || {
        (rx.attempts().len() == 2).then_some(())
    })
    .await;
    tail.child.start_kill().unwrap();
    tail.child.wait().await.unwrap();
    let in_flight = rx.attempts()[1].clone();

    let mut tail = start_tail(
        &rx,
        &live,
        &["--batch-events", "100", "--deadline-secs", "3"],
    );
    all_delivered_once(&rx, 300).await;
    let attempts = attempts(&rx);
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert_eq!(
        attempts[&in_flight], 2,
        "resent once, same upload-id: {attempts:?}"
    );
    assert!(
        attempts
            .iter()
            .filter(|(id, _)| **id != in_flight)
            .all(|(_, n)| *n == 1),
        "{attempts:?}"
    );
    tail.child.start_kill().unwrap();
}

#[test]
fn from_start_reads_the_backlog_first_and_the_checkpoint_prevents_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    let events = fixtures::numbered_events(50);
    let mut log = Lumberjack::new(&live, 20, 1);
    for line in lines(&events[..45]) {
        log.write(&line);
    }
    let run = |extra: &[&str]| {
        let mut args = vec!["tail", live.to_str().unwrap(), "--once"];
        args.extend_from_slice(extra);
        let out = cli(&args, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout_records(&out)
            .iter()
            .map(|r| r["auditid"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let ids = |range: std::ops::Range<usize>| {
        events[range]
            .iter()
            .map(|e| e["auditID"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    // No checkpoint: the live file only (5 lines after two rotations); nothing new on the second run.
    assert_eq!(run(&[]), ids(40..45));
    assert_eq!(run(&[]), Vec::<String>::new());
    // --from-start: both compressed backups, in order, then the live file.
    assert_eq!(run(&["--from-start"]), ids(0..45));
    for line in lines(&events[45..]) {
        log.write(&line);
    }
    assert_eq!(run(&[]), ids(45..50));
}

/// `--from-start` over a backlog shows how many of its files are done, on a terminal (the rule for when is
/// the same as replay's, tested there).
#[test]
fn from_start_shows_progress_over_the_backlog_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    let mut log = Lumberjack::new(&live, 20, 1);
    for line in lines(&fixtures::numbered_events(45)) {
        log.write(&line);
    }
    let bin = env!("CARGO_BIN_EXE_kube-audit-forwarder");
    let command = format!(
        "{bin} tail {} --once --from-start --batch-events 5 > /dev/null",
        live.display()
    );
    let Some(drawn) = crate::harness::on_a_terminal(&command) else {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    };
    assert!(drawn.contains("/3 files"), "{drawn:?}");
    assert!(drawn.contains("summary: "), "{drawn:?}");
}

/// Regression: a mistyped path with `--once` exited 0 having done nothing, exactly like "no new lines".
#[test]
fn once_on_a_missing_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("audit.lgo");
    let out = cli(&["tail", missing.to_str().unwrap(), "--once"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: no such file", missing.display())),
        "{stderr}"
    );
    assert!(!missing.with_extension("lgo.kaf-checkpoint").exists());
}

/// Regression: following a path that does not exist waited without a word, even at RUST_LOG=info. Now one
/// warning names it (not one per poll), and the file is read once it appears.
#[tokio::test]
async fn following_a_missing_file_warns_once_then_reads_it_when_it_appears() {
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    let tail = start_tail(&rx, &live, &[]);
    wait_for(Duration::from_secs(20), "the warning", || {
        tail.output().contains("no such file yet").then_some(())
    })
    .await;
    // 20 ms polls for half a second: still the one warning.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let output = tail.output();
    assert_eq!(output.matches("no such file yet").count(), 1, "{output}");
    assert!(output.contains(&live.display().to_string()), "{output}");
    let events = fixtures::numbered_events(5);
    std::fs::write(&live, lines(&events).join("\n") + "\n").unwrap();
    all_delivered_once(&rx, 5).await;
}

/// `tail --once` prints replay's summary line: what was read, forwarded and uploaded.
#[test]
fn once_prints_the_summary_line() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    std::fs::write(
        &live,
        lines(&fixtures::numbered_events(7)).join("\n") + "\n",
    )
    .unwrap();
    let out = cli(&["tail", live.to_str().unwrap(), "--once"], &[]);
    assert!(out.status.success());
    assert_eq!(stdout_records(&out).len(), 7);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .unwrap_or_else(|| panic!("no summary line: {stderr}"));
    let summary: Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        (summary["eventsIn"].as_u64(), summary["forwarded"].as_u64()),
        (Some(7), Some(7))
    );
}

/// `tail` tags what it forwards, and takes the same detection flags as replay.
#[test]
fn tail_tags_records_and_takes_detections_only() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    let events = fixtures::falco_events();
    std::fs::write(&live, lines(&events).join("\n") + "\n").unwrap();
    let run = |extra: &[&str]| {
        // `--from-start` ignores the checkpoint the run before wrote.
        let mut args = vec!["tail", live.to_str().unwrap(), "--once", "--from-start"];
        args.extend_from_slice(extra);
        let out = cli(&args, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout_records(&out)
    };
    let all = run(&[]);
    let tagged: Vec<&Value> = all
        .iter()
        .filter(|r| r.get("detections").is_some())
        .collect();
    assert!(tagged.len() >= 20, "{}", tagged.len());
    let exec = all
        .iter()
        .find(|r| r["objectref_subresource"] == "exec")
        .unwrap();
    assert_eq!(exec["detections"], serde_json::json!(["pod-exec"]));
    let only = run(&["--detections-only"]);
    assert_eq!(only.len(), tagged.len());
}

/// `tail` applies the audit policy as replay does: replaying the same lines with the same policy is the
/// reference for what is kept and what is dropped.
#[test]
fn tail_applies_the_audit_policy_as_replay_does() {
    let policy = crate::harness::repo_root().join("templates/policies/managed-cluster.yaml");
    let policy = policy.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("audit.log");
    std::fs::copy(fixtures::audit2rbac_demo(), &live).unwrap();
    let live = live.to_str().unwrap();
    let replayed = cli(&["replay", "--policy", policy, live], &[]);
    let tailed = cli(&["tail", live, "--once", "--policy", policy], &[]);
    for out in [&replayed, &tailed] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dropped = |out| crate::harness::summary(out)["policyDropped"].as_u64();
    assert!(dropped(&replayed) > Some(0));
    assert_eq!(dropped(&tailed), dropped(&replayed));
    let kept = counts(&stdout_records(&replayed));
    assert!(!kept.is_empty());
    assert_eq!(counts(&stdout_records(&tailed)), kept);
}
