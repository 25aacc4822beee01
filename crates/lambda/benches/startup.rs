//! `bootstrap` start-up time (process spawn → first `GET /next` at the Runtime API) and peak RSS while handling
//! a payload whose gzip is ~1 MB, against the in-repo fakes. A bench binary, not a test: it prints numbers
//! for BENCHMARKS.md and asserts nothing about speed.

use base64::Engine as _;
use kaf_testkit::payloads::{AUDIT_STREAM, lambda_event, messages, subscription};
use kaf_testkit::process::spawn;
use kaf_testkit::receiver::Receiver;
use kaf_testkit::runtime::{Outcome, RuntimeApi};
use kaf_testkit::{fixtures, wait_for};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const KEY: &str = "bench-key";
const LOG_TYPE: &str = "Kubernetes Audit Logs";

fn env(runtime: &RuntimeApi, rx: &Receiver) -> Vec<(String, String)> {
    let config = base64::engine::general_purpose::STANDARD.encode(
        json!({"apiKey": KEY, "logType": LOG_TYPE, "uploadDomain": rx.upload_domain()}).to_string(),
    );
    let mut env = runtime.lambda_env();
    env.push(("logTypeConfig".into(), config));
    env.push(("SSL_CERT_FILE".into(), rx.ca_file.display().to_string()));
    if let Ok(v) = std::env::var("BENCH_MIMALLOC_PURGE_DELAY") {
        env.push(("MIMALLOC_PURGE_DELAY".into(), v));
    }
    env
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Events whose CloudWatch payload gzips to about `target` bytes.
fn payload_of_compressed_size(target: usize) -> (Value, usize, usize) {
    let mut pool = fixtures::events(&fixtures::audit2rbac_v1beta1());
    pool.extend(fixtures::falco_events());
    let mut n = 5_000;
    loop {
        let events: Vec<Value> = (0..n)
            .map(|i| {
                let mut e = pool[i % pool.len()].clone();
                e["auditID"] = json!(format!("{i:08}-0000-4000-8000-000000000000"));
                e
            })
            .collect();
        let event = lambda_event(&subscription("bench", AUDIT_STREAM, &messages(&events)));
        let b64 = event["awslogs"]["data"].as_str().unwrap_or_default().len();
        let gz = b64 / 4 * 3;
        if gz >= target {
            return (event, n, gz);
        }
        n = (n as f64 * target as f64 / gz as f64 * 1.02) as usize + 1;
    }
}

#[tokio::main]
async fn main() {
    let bootstrap = Path::new(env!("CARGO_BIN_EXE_bootstrap"));
    let runs = 30;
    let mut starts = Vec::with_capacity(runs);
    for _ in 0..runs {
        let runtime = RuntimeApi::start().await;
        let rx = Receiver::start(KEY, LOG_TYPE).await;
        let spawned_at = tokio::time::Instant::now();
        let process = spawn(bootstrap, &env(&runtime, &rx));
        let first = wait_for(Duration::from_secs(10), "first /next", || {
            runtime.first_next()
        })
        .await;
        starts.push(first - spawned_at);
        drop(process);
    }
    starts.sort();
    println!(
        "init (spawn → first /next), {runs} runs: min {:?}, median {:?}, p90 {:?}, max {:?}",
        starts[0],
        percentile(&starts, 0.5),
        percentile(&starts, 0.9),
        starts[runs - 1]
    );

    let runtime = RuntimeApi::start().await;
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let process = spawn(bootstrap, &env(&runtime, &rx));
    let pid = process.child.id().unwrap_or_default();
    let (event, events, gz) = payload_of_compressed_size(1_000_000);
    let idle = {
        wait_for(Duration::from_secs(10), "first /next", || {
            runtime.first_next()
        })
        .await;
        peak_rss_kib(pid)
    };
    // `BENCH_RSS_TRACE=1`: the handler's RSS every 20 ms while it works.
    let trace = std::env::var("BENCH_RSS_TRACE").is_ok().then(|| {
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            loop {
                let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find(|l| l.starts_with("VmRSS:"))
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                eprintln!("{:>5} ms {rss}", start.elapsed().as_millis());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    });
    let id = runtime.invoke(event, Duration::from_secs(120));
    let done = runtime.finished(&id, Duration::from_secs(120)).await;
    if let Some(trace) = trace {
        trace.abort();
    }
    let ok = matches!(done.outcome, Outcome::Response(_));
    println!(
        "peak RSS: idle {} KiB; after a {events}-event payload ({gz} bytes gzip) handled in {:?} (ok: {ok}, {} records uploaded): {} KiB",
        idle.unwrap_or(0),
        done.elapsed,
        rx.records().len(),
        peak_rss_kib(pid).unwrap_or(0)
    );
}
