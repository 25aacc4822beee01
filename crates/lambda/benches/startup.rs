//! `bootstrap` start-up time (process spawn → first `GET /next` at the Runtime API), peak RSS while handling
//! a payload whose gzip is ~1 MB, and end-to-end throughput per configuration production sends (Runtime API
//! event in, records accepted by the local TLS receiver, the process's CPU time counted), against the
//! in-repo fakes. A bench binary, not a test: it prints numbers for BENCHMARKS.md and asserts nothing about
//! speed. `BENCH_ONLY=throughput` skips the start-up and RSS parts, `BENCH_ONLY=small` runs only the 1-, 10- and
//! 100-event invocations; `BENCH_BOOTSTRAP=<script>` runs the binary
//! through a wrapper (a profiler).

use kaf_testkit::payloads::{AUDIT_STREAM, lambda_event, messages, subscription};
use kaf_testkit::process::{cpu_ns, cpu_ticks, spawn, status_kib};
use kaf_testkit::receiver::Receiver;
use kaf_testkit::runtime::{Outcome, RuntimeApi};
use kaf_testkit::{fixtures, wait_for};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// Configuration (a), what Site24x7's pages hand out: the default profile with `dateField`/`dateFormat`.
const A: &str = "logtypeconfig-a-default-profile.json";
const B: &str = "logtypeconfig-b-jsonpath-25.json";

/// A receiver for the logtypeconfig in `file`, and the bootstrap's environment pointed at it.
async fn setup(runtime: &RuntimeApi, file: &str) -> (Receiver, Vec<(String, String)>) {
    let config = fixtures::bench_config(file);
    let rx = Receiver::start(
        config["apiKey"].as_str().unwrap_or_default(),
        config["logType"].as_str().unwrap_or_default(),
    )
    .await;
    let env = env(runtime, &rx, &config);
    (rx, env)
}

fn env(runtime: &RuntimeApi, rx: &Receiver, config: &Value) -> Vec<(String, String)> {
    let mut env = runtime.lambda_env();
    env.push((
        "logTypeConfig".into(),
        fixtures::encoded_config(config, &rx.upload_domain()),
    ));
    env.push(("SSL_CERT_FILE".into(), rx.ca_file.display().to_string()));
    // The allocator as the SAM template sets it; the knobs below override it.
    env.extend(fixtures::template_allocator_env("aws/template.yaml"));
    if let Ok(v) = std::env::var("BENCH_MIMALLOC_PURGE_DELAY") {
        env.push(("MIMALLOC_PURGE_DELAY".into(), v));
    }
    // Any other allocator option, passed through as set (`MIMALLOC_VERBOSE=1` and the like).
    env.extend(std::env::vars().filter(|(k, _)| k.starts_with("MIMALLOC_")));
    env
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
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

/// Real RequestResponse events of production size: the sample events with objects, of 1.5 KB or more
/// (2.5 KB on average; the real-cluster figure behind the targets is 2.6 KB).
fn production_sized_events() -> Vec<Value> {
    let mut pool = fixtures::falco_events();
    pool.extend(fixtures::events(&fixtures::audit2rbac_demo()));
    pool.retain(|e| {
        (e.get("requestObject").is_some() || e.get("responseObject").is_some())
            && e.to_string().len() >= 1500
    });
    pool
}

/// `INVOCATIONS` invocations of `EVENTS` events each through the real `bootstrap` with the logtypeconfig in
/// `file` (tests/fixtures/bench), CPU counted over the whole process.
async fn throughput<const INVOCATIONS: usize, const EVENTS: usize>(
    bootstrap: &Path,
    name: &str,
    file: &str,
    pool: &[Value],
    detections: Detections,
    pace: Pace,
) {
    let runtime = RuntimeApi::start().await;
    let (rx, mut env) = setup(&runtime, file).await;
    if detections == Detections::Off {
        env.push(("DETECTIONS".into(), "off".into()));
    }
    let name = format!("{name}, detections {detections:?}, {pace:?}");
    let process = spawn(bootstrap, &env);
    let pid = process.child.id().unwrap_or_default();
    wait_for(Duration::from_secs(10), "first /next", || {
        runtime.first_next()
    })
    .await;
    let mut audit_bytes = 0;
    let payloads: Vec<Value> = (0..INVOCATIONS)
        .map(|inv| {
            let events: Vec<Value> = (0..EVENTS)
                .map(|i| {
                    let mut e = pool[(inv * EVENTS + i) % pool.len()].clone();
                    e["auditID"] = json!(format!("{inv:04}{i:04}-0000-4000-8000-000000000000"));
                    e
                })
                .collect();
            let messages = messages(&events);
            audit_bytes += messages.iter().map(String::len).sum::<usize>();
            let mut payload = subscription("bench", AUDIT_STREAM, &messages);
            // Ids unique across invocations too, so the receiver counts every record.
            for (i, log_event) in payload["logEvents"]
                .as_array_mut()
                .into_iter()
                .flatten()
                .enumerate()
            {
                log_event["id"] = json!(format!("3719{inv:04}{i:048}"));
            }
            lambda_event(&payload)
        })
        .collect();
    let (ticks_before, started) = (cpu_ticks(pid), std::time::Instant::now());
    // Per invocation, from the scheduler's exact accounting: the CPU the bootstrap used between the moment
    // the invocation was queued and its result arrived (one `/next` to the next).
    let mut per_invocation = Vec::with_capacity(INVOCATIONS);
    match pace {
        Pace::Queued => {
            // All queued at once, as a backlog reaches one execution environment: each `/next` is answered at
            // once, so only the mean per invocation is known.
            let (before, calls) = (cpu_ns(pid), runtime.next_calls());
            let ids: Vec<String> = payloads
                .into_iter()
                .map(|payload| runtime.invoke(payload, Duration::from_secs(120)))
                .collect();
            for id in &ids {
                let done = runtime.finished(id, Duration::from_secs(120)).await;
                assert!(
                    matches!(done.outcome, Outcome::Response(_)),
                    "{name}: invocation failed"
                );
            }
            wait_for(Duration::from_secs(10), "the last /next", || {
                (runtime.next_calls() >= calls + INVOCATIONS).then_some(())
            })
            .await;
            let mean = (cpu_ns(pid) - before) / INVOCATIONS as u64;
            per_invocation.resize(INVOCATIONS, mean);
        }
        Pace::Spaced => {
            for payload in payloads {
                let (before, calls) = (cpu_ns(pid), runtime.next_calls());
                let id = runtime.invoke(payload, Duration::from_secs(120));
                let done = runtime.finished(&id, Duration::from_secs(120)).await;
                // The bootstrap posts its result, then asks for the next invocation: let that settle too.
                wait_for(Duration::from_secs(10), "the next /next", || {
                    (runtime.next_calls() > calls).then_some(())
                })
                .await;
                per_invocation.push(cpu_ns(pid) - before);
                assert!(
                    matches!(done.outcome, Outcome::Response(_)),
                    "{name}: invocation failed"
                );
            }
        }
    }
    let (ticks, wall) = (cpu_ticks(pid) - ticks_before, started.elapsed());
    let received = rx.records();
    let records = received.len();
    let tagged = received
        .iter()
        .filter(|r| r.get("detections").is_some())
        .count();
    let cpu_s = per_invocation.iter().sum::<u64>() as f64 / 1e9;
    per_invocation.sort_unstable();
    let quantile = |p: f64| {
        per_invocation[((per_invocation.len() - 1) as f64 * p).round() as usize] as f64 / 1e3
    };
    println!(
        "end to end, {name}: {INVOCATIONS} × {EVENTS} events, {:.1} KB/event, {records} records accepted ({tagged} tagged); \
         bootstrap CPU {cpu_s:.3} s (ticks: {:.2} s): per invocation mean {:.0} µs, median {:.0} µs, p90 {:.0} µs; \
         {:.1} µs/event, {:.0} MB/s of audit JSON per CPU second; wall {wall:?}",
        audit_bytes as f64 / (INVOCATIONS * EVENTS) as f64 / 1000.0,
        ticks as f64 / 100.0,
        cpu_s * 1e6 / INVOCATIONS as f64,
        quantile(0.5),
        quantile(0.9),
        cpu_s * 1e6 / (INVOCATIONS * EVENTS) as f64,
        audit_bytes as f64 / 1e6 / cpu_s,
    );
    drop(process);
}

/// How invocations reach the function: `Spaced`, each queued when the previous one's `/next` arrived and
/// the bench has looked (the bench polls every 10 ms, so the process idles about that long in between, as on
/// a quiet cluster); `Queued`, all at once, back to back (a backlog, or a busy cluster over many streams).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    Spaced,
    Queued,
}

/// Detections on (the default) or off (`DETECTIONS=off`), measured in the same run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detections {
    On,
    Off,
}

#[tokio::main]
async fn main() {
    // `BENCH_BOOTSTRAP=<wrapper>`: run the binary through a profiler (a script that execs it).
    let bootstrap_path = std::env::var_os("BENCH_BOOTSTRAP")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_bootstrap").into());
    let bootstrap = bootstrap_path.as_path();
    let pool = production_sized_events();
    // `BENCH_ONLY=small`: only the small invocations (for a profile of the fixed cost); `BENCH_ONLY=rss`: only
    // the peak RSS of the largest payload.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "throughput" {
        // On and off alternately, twice, so drift on a shared machine shows up as a spread, not as a cost.
        for _ in 0..2 {
            for detections in [Detections::On, Detections::Off] {
                let a = "(a) default profile + dateField/dateFormat";
                throughput::<20, 1000>(bootstrap, a, A, &pool, detections, Pace::Spaced).await;
                let b = "(b) 25-entry jsonPath";
                throughput::<20, 1000>(bootstrap, b, B, &pool, detections, Pace::Spaced).await;
            }
        }
    }
    if only != "rss" {
        // Small invocations (quiet clusters, many streams): the fixed cost per invocation.
        // Spaced (a quiet cluster: the process idles between invocations, and starts each one on a cold core)
        // and queued (a backlog: back to back).
        let on = Detections::On;
        for pace in [Pace::Spaced, Pace::Queued] {
            let one = "(a), one event per invocation";
            throughput::<400, 1>(bootstrap, one, A, &pool, on, pace).await;
            let ten = "(a), ten events per invocation";
            throughput::<200, 10>(bootstrap, ten, A, &pool, on, pace).await;
            let hundred = "(a), 100 events per invocation";
            throughput::<50, 100>(bootstrap, hundred, A, &pool, on, pace).await;
        }
    }
    if only == "throughput" || only == "small" {
        return;
    }
    if only != "rss" {
        let runs = 30;
        let mut starts = Vec::with_capacity(runs);
        for _ in 0..runs {
            let runtime = RuntimeApi::start().await;
            let (_rx, env) = setup(&runtime, A).await;
            let spawned_at = tokio::time::Instant::now();
            let process = spawn(bootstrap, &env);
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
    }

    let runtime = RuntimeApi::start().await;
    let (rx, env) = setup(&runtime, A).await;
    let process = spawn(bootstrap, &env);
    let pid = process.child.id().unwrap_or_default();
    let (event, events, gz) = payload_of_compressed_size(
        // `BENCH_RSS_GZIP_BYTES`: another size (a real async invocation carries at most about 750 KB of gzip).
        std::env::var("BENCH_RSS_GZIP_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000),
    );
    let idle = {
        wait_for(Duration::from_secs(10), "first /next", || {
            runtime.first_next()
        })
        .await;
        status_kib(pid, "VmHWM:")
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
        idle,
        done.elapsed,
        rx.records().len(),
        status_kib(pid, "VmHWM:")
    );
}
