//! What detections cost: decode and map 10k events with the built-in rule set on and off, in the same run, on
//! the compiled path, for both configurations production sends (tests/fixtures/bench) and three pools of real
//! sample events: ordinary traffic (audit2rbac's demo, which raises nothing), the mix the throughput bench
//! uses (v1beta1 stage pairs and Falco's traces), and the production-sized RequestResponse events, three in
//! four of them tagged (a worst case). Numbers and machine: BENCHMARKS.md.
//!
//! On a shared 2-vCPU machine timings drift by more than the effects measured, so there is also a count that
//! does not drift: `BENCH_ONE_PASS=off` (or `on`) maps each selected case once, untimed, for
//! `valgrind --tool=callgrind --toggle-collect='kaf_pipeline::Pipeline::process_with*'`, whose instruction
//! count is the same on every run (`BENCH_PASSES=n` repeats it, for a sampling profiler). `BENCH_POOL_RESOURCE=pods` keeps only that resource's events in the
//! production-sized pool.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kaf_envelope::EnvelopeStats;
use kaf_envelope::cloudwatch::{AUDIT_STREAM_PREFIX, Decoded};
use kaf_pipeline::Pipeline;
use kaf_pipeline::detect::Detector;
use kaf_testkit::fixtures;
use kaf_testkit::payloads::{AUDIT_STREAM, lambda_event, messages, subscription};
use serde_json::Value;
use std::hint::black_box;
use std::sync::Arc;

// The allocator the shipped binaries use (see their main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 10_000;

/// `EVENTS` events cycled from `pool`, each with its own auditID (repeats would be deduplicated).
fn cycled(pool: &[Value]) -> Vec<Value> {
    (0..EVENTS)
        .map(|i| {
            let mut e = pool[i % pool.len()].clone();
            e["auditID"] = Value::String(format!("{i:08}-0000-4000-8000-000000000000"));
            e
        })
        .collect()
}

fn pools() -> Vec<(&'static str, Vec<Value>)> {
    let ordinary = fixtures::events(&fixtures::audit2rbac_demo());
    let mut mix = fixtures::events(&fixtures::audit2rbac_v1beta1());
    mix.extend(fixtures::falco_events());
    let mut sized = fixtures::falco_events();
    sized.extend(fixtures::events(&fixtures::audit2rbac_demo()));
    sized.retain(|e| {
        (e.get("requestObject").is_some() || e.get("responseObject").is_some())
            && e.to_string().len() >= 1500
    });
    if let Ok(resource) = std::env::var("BENCH_POOL_RESOURCE") {
        sized.retain(|e| e["objectRef"]["resource"].as_str() == Some(resource.as_str()));
    }
    vec![
        ("ordinary", cycled(&ordinary)),
        ("mix", cycled(&mix)),
        ("tag_heavy", cycled(&sized)),
    ]
}

/// Decode and map; the records' bytes and how many carry detections.
fn map_only(data: &str, pipeline: &Pipeline) -> (usize, usize) {
    let payload = Decoded::from_awslogs_data(data, kaf_envelope::gunzip::DEFAULT_PAYLOAD_LIMIT)
        .expect("valid payload");
    let mut stats = EnvelopeStats::default();
    let batch = payload.into_batch(AUDIT_STREAM_PREFIX, &mut stats);
    let processed = pipeline.process(batch, now_ms());
    assert_eq!(processed.records.len(), EVENTS);
    let bytes = processed.records.iter().map(|r| r.json.len()).sum();
    (bytes, processed.stats.detected as usize)
}

/// One pool in one configuration: the payload, its audit JSON size, and the pipeline without and with rules.
struct Case {
    name: String,
    data: String,
    audit_json_bytes: usize,
    off: Pipeline,
    on: Pipeline,
}

fn cases() -> Vec<Case> {
    let detector = Arc::new(Detector::builtin());
    let mut cases = Vec::new();
    for (pool_name, events) in pools() {
        let audit_json_bytes: usize = messages(&events).iter().map(String::len).sum();
        let event = lambda_event(&subscription("bench", AUDIT_STREAM, &messages(&events)));
        let data = event["awslogs"]["data"].as_str().expect("data").to_string();
        for (config_name, file) in [
            (
                "a_default_profile_datefield",
                "logtypeconfig-a-default-profile.json",
            ),
            ("b_jsonpath_25", "logtypeconfig-b-jsonpath-25.json"),
        ] {
            let text = std::fs::read_to_string(fixtures::dir().join("bench").join(file))
                .expect("bench config")
                .replace("PORT", "8443");
            let config = kaf_config::LogTypeConfig::from_json(&text).expect("bench config parses");
            let off = Pipeline::new(Some(&config), kaf_upload::format::SITE24X7).expect("config");
            let on = Pipeline::new(Some(&config), kaf_upload::format::SITE24X7)
                .expect("config")
                .with_detections(Some(detector.clone()), false);
            let one_pass = std::env::var_os("BENCH_ONE_PASS").is_some();
            let tagged = if one_pass { 0 } else { map_only(&data, &on).1 };
            eprintln!(
                "{pool_name}: {EVENTS} events, {:.1} KB/event, {tagged} tagged",
                audit_json_bytes as f64 / EVENTS as f64 / 1000.0
            );
            cases.push(Case {
                name: format!("{pool_name}/{config_name}"),
                data: data.clone(),
                audit_json_bytes,
                off,
                on,
            });
        }
    }
    cases
}

fn bench(c: &mut Criterion) {
    // Criterion's filter (`cargo bench … -- ordinary/a`) also picks the alternated pass's cases.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|case| {
            filter
                .as_ref()
                .is_none_or(|f| case.name.contains(f.as_str()))
        })
        .collect();
    if let Ok(which) = std::env::var("BENCH_ONE_PASS") {
        // `BENCH_PASSES=n`: n passes instead of one (long enough for a sampling profiler such as `perf`).
        let passes = std::env::var("BENCH_PASSES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        for case in &cases {
            let pipeline = if which == "on" { &case.on } else { &case.off };
            for _ in 0..passes {
                black_box(map_only(black_box(&case.data), pipeline));
            }
        }
        return;
    }
    // `BENCH_ALTERNATED_ONLY=1`: only the alternated pass (the figures BENCHMARKS.md quotes).
    if std::env::var_os("BENCH_ALTERNATED_ONLY").is_some() {
        alternated(&cases);
        return;
    }
    let mut group = c.benchmark_group("detections_10k_events");
    group.sample_size(20);
    for case in &cases {
        group.throughput(Throughput::Bytes(case.audit_json_bytes as u64));
        // Off and on back to back, per configuration, so the pair shares the machine's state.
        for (state, pipeline) in [("off", &case.off), ("on", &case.on)] {
            group.bench_function(format!("{}/{state}", case.name), |b| {
                b.iter(|| black_box(map_only(black_box(&case.data), pipeline)))
            });
        }
    }
    group.finish();
    alternated(&cases);
}

/// On a shared 2-vCPU machine the speed drifts by more than the cost being measured between one criterion
/// benchmark and the next. So the cost is also measured with off and on interleaved, round by round, each
/// first in every other round: each round's ratio sees the same machine state. Printed to stderr; BENCHMARKS.md quotes it.
fn alternated(cases: &[Case]) {
    const ROUNDS: usize = 21;
    let time = |pipeline: &Pipeline, data: &str| {
        let start = std::time::Instant::now();
        black_box(map_only(black_box(data), pipeline));
        start.elapsed().as_secs_f64()
    };
    eprintln!("\nalternated, {ROUNDS} rounds of off and on, in turn first (cost = on / off - 1):");
    for case in cases {
        let (mut offs, mut ons, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            // Which runs first alternates too: the second of a pair may pay for what the first freed.
            let (off, on) = if round % 2 == 0 {
                let off = time(&case.off, &case.data);
                (off, time(&case.on, &case.data))
            } else {
                let on = time(&case.on, &case.data);
                (time(&case.off, &case.data), on)
            };
            offs.push(off);
            ons.push(on);
            ratios.push(on / off - 1.0);
        }
        let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        ratios.sort_by(f64::total_cmp);
        let mb_s = |secs: f64| case.audit_json_bytes as f64 / secs / 1e6;
        eprintln!(
            "{:40} off {:6.1} MB/s, on {:6.1} MB/s (best of {ROUNDS}); cost: best-of {:+5.1}%, median round {:+5.1}%",
            case.name,
            mb_s(best(&offs)),
            mb_s(best(&ons)),
            100.0 * (best(&ons) / best(&offs) - 1.0),
            100.0 * ratios[ROUNDS / 2],
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

/// The ingest time, as the binaries pass it.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
