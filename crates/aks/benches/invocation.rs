//! The real `aks-handler` (bench profile = release) on a production-sized invocation: 32 Event Hub bodies of
//! 1 MB each (Azure Monitor packs them full), as the Functions host double-encodes them, against the
//! in-repo TLS receiver. Prints wall time, the handler's CPU time, audit JSON per CPU second, and peak RSS
//! against the body size. A bench binary: it asserts nothing about speed.
//!
//! `cargo bench -p kaf-aks --bench invocation`. `BENCH_INVOCATIONS=n` (5): the same invocation n times, the
//! first in a fresh process, the rest what a running host pays; `BENCH_BODIES=n`: another size;
//! `BENCH_MIMALLOC_PURGE_DELAY=n` (or any `MIMALLOC_*` variable): another allocator setting than the
//! templates' (`infra/azure/main.bicep`); `BENCH_RSS_TRACE=1`: RSS every 50 ms; `BENCH_SHOW_LOG=1`: the
//! handler's log.

use kaf_testkit::payloads::production_aks_invocation;
use kaf_testkit::process::{cpu_ns, spawn, status_kib};
use kaf_testkit::receiver::Receiver;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let bodies: usize = std::env::var("BENCH_BODIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    // Configuration (a) by default, as Site24x7's pages write it; `BENCH_CONFIG=<file in
    // tests/fixtures/bench>` for another.
    let file = std::env::var("BENCH_CONFIG")
        .unwrap_or_else(|_| "logtypeconfig-a-default-profile.json".into());
    let config = kaf_testkit::fixtures::bench_config(&file);
    let rx = Receiver::start(
        config["apiKey"].as_str().unwrap_or_default(),
        config["logType"].as_str().unwrap_or_default(),
    )
    .await;
    let config = kaf_testkit::fixtures::encoded_config(&config, &rx.upload_domain());
    let port = kaf_testkit::free_port();
    let mut env = vec![
        ("FUNCTIONS_CUSTOMHANDLER_PORT".to_string(), port.to_string()),
        ("SSL_CERT_FILE".into(), rx.ca_file.display().to_string()),
        ("logTypeConfig".into(), config),
        ("RUST_LOG".into(), "warn".into()),
    ];
    // The allocator as the Azure templates set it; the knob and any `MIMALLOC_*` variable override it.
    env.extend(kaf_testkit::fixtures::template_allocator_env(
        "azure/main.bicep",
    ));
    if let Ok(v) = std::env::var("BENCH_MIMALLOC_PURGE_DELAY") {
        env.push(("MIMALLOC_PURGE_DELAY".into(), v));
    }
    env.extend(std::env::vars().filter(|(k, _)| k.starts_with("MIMALLOC_")));
    let handler = spawn(Path::new(env!("CARGO_BIN_EXE_aks-handler")), &env);
    let pid = handler.child.id().unwrap_or_default();
    let client = kaf_upload::local_http_client(Some(Duration::from_secs(600))).expect("client");
    let url = format!("http://127.0.0.1:{port}/");
    let until = Instant::now() + Duration::from_secs(10);
    while client.get(&url).send().await.is_err() {
        assert!(Instant::now() < until, "handler not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (request, events) = production_aks_invocation(bodies);
    let body = request.to_string();
    let audit_bytes: usize = request["Data"]["events"]
        .as_str()
        .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
        .unwrap_or_default()
        .iter()
        .filter_map(|b| serde_json::from_str::<Value>(b).ok())
        .flat_map(|b| b["records"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["properties"]["log"].as_str().map(str::len))
        .sum();
    drop(request);
    // The split alone (the request into record batches, before the pipeline), here in the bench's process:
    // a steadier figure than the whole invocation's for changes to the envelope code.
    let mut splits: Vec<Duration> = (0..5)
        .map(|_| {
            let bytes = body.clone().into_bytes();
            let started = Instant::now();
            let split = kaf_envelope::azure::split_request(bytes, "events");
            let took = started.elapsed();
            assert!(split.is_ok(), "the invocation splits");
            took
        })
        .collect();
    splits.sort();
    println!(
        "split alone, median of 5: {:?} → {:.1} MB/s of audit JSON",
        splits[2],
        audit_bytes as f64 / splits[2].as_secs_f64() / 1e6
    );
    let idle_kib = status_kib(pid, "VmHWM:");
    let sampler = std::env::var("BENCH_RSS_TRACE").is_ok().then(|| {
        tokio::spawn(async move {
            let t0 = Instant::now();
            loop {
                eprintln!(
                    "{:>6} ms  RSS {:>7} KiB",
                    t0.elapsed().as_millis(),
                    status_kib(pid, "VmRSS:")
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });
    // The first invocation of a fresh process touches every page for the first time; a Functions host keeps
    // the handler running, so the later ones are what production pays per invocation.
    let invocations: usize = std::env::var("BENCH_INVOCATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let mut cpu_each = Vec::with_capacity(invocations);
    let (mut status, mut text, mut wall) = (reqwest::StatusCode::OK, String::new(), Duration::ZERO);
    for i in 0..invocations {
        let cpu_before = cpu_ns(pid);
        let started = Instant::now();
        let answer = client
            .post(format!("http://127.0.0.1:{port}/KubeAudit"))
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("answer");
        status = answer.status();
        text = answer.text().await.unwrap_or_default();
        wall = started.elapsed();
        let cpu = Duration::from_nanos(cpu_ns(pid) - cpu_before);
        println!(
            "invocation {}: wall {wall:?}, handler CPU {cpu:?} → {:.1} MB/s of audit JSON per CPU second",
            i + 1,
            audit_bytes as f64 / 1e6 / cpu.as_secs_f64().max(1e-9)
        );
        cpu_each.push(cpu);
    }
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    let first = cpu_each[0];
    let mut warm: Vec<Duration> = cpu_each[1..].to_vec();
    warm.sort();
    let peak_kib = status_kib(pid, "VmHWM:");
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if std::env::var("BENCH_SHOW_LOG").is_ok() {
        eprintln!("{}", handler.output());
    }
    println!(
        "{bodies} bodies, {events} events, invocation {:.1} MB, audit JSON {:.1} MB: HTTP {status}, {} records accepted, failover {}",
        body.len() as f64 / 1e6,
        audit_bytes as f64 / 1e6,
        rx.records().len(),
        answer["Outputs"].get("failover").is_some()
    );
    let mb_s = |cpu: Duration| audit_bytes as f64 / 1e6 / cpu.as_secs_f64().max(1e-9);
    match warm.get(warm.len() / 2) {
        Some(median) => println!(
            "first invocation (fresh process): {:.1} MB/s; later ones, median of {}: handler CPU {median:?} → {:.1} MB/s of audit JSON per CPU second (last wall {wall:?})",
            mb_s(first),
            warm.len(),
            mb_s(*median)
        ),
        None => println!(
            "wall {wall:?}, handler CPU {first:?} → {:.1} MB/s of audit JSON per CPU second",
            mb_s(first)
        ),
    }
    println!(
        "peak RSS: idle {:.1} MiB, after the invocation {:.1} MiB = {:.2}× the body size",
        idle_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0,
        peak_kib as f64 * 1024.0 / body.len() as f64
    );
}
