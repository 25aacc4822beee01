//! Decode → map → serialize → gzip of a 10k-event CloudWatch payload built from the bundled samples:
//! the CPU work of one Lambda invocation without the network. Throughput is reported per core (one thread)
//! in audit-JSON bytes and in events. Numbers and machine: BENCHMARKS.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kaf_envelope::EnvelopeStats;
use kaf_envelope::cloudwatch::{AUDIT_STREAM_PREFIX, Decoded};
use kaf_pipeline::Pipeline;
use kaf_testkit::fixtures;
use kaf_testkit::payloads::{AUDIT_STREAM, lambda_event, messages, subscription};
use kaf_upload::BatchPlan;
use serde_json::Value;
use std::hint::black_box;

// The allocator the shipped binaries use (see their main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 10_000;

/// A realistic mix: the v1beta1 stage pairs (small Metadata events) and Falco's RequestResponse events, each
/// with its own auditID (repeats would be dropped by the per-invocation dedupe and measure nothing).
fn sample_events() -> Vec<Value> {
    let mut pool = fixtures::events(&fixtures::audit2rbac_v1beta1());
    pool.extend(fixtures::falco_events());
    (0..EVENTS)
        .map(|i| {
            let mut e = pool[i % pool.len()].clone();
            e["auditID"] = Value::String(format!("{i:08}-0000-4000-8000-000000000000"));
            e
        })
        .collect()
}

fn process(data: &str, pipeline: &Pipeline) -> usize {
    let payload = Decoded::from_awslogs_data(data, kaf_envelope::gunzip::DEFAULT_PAYLOAD_LIMIT)
        .expect("valid payload");
    let mut stats = EnvelopeStats::default();
    let batch = payload.into_batch(AUDIT_STREAM_PREFIX, &mut stats);
    let processed = pipeline.process(batch, now_ms());
    assert_eq!(
        processed.records.len(),
        EVENTS,
        "every event must be mapped (no dedupe, no rejects)"
    );
    let plan = BatchPlan::new(&processed.records, kaf_upload::Limits::default());
    let mut compressed = 0;
    for range in &plan.requests {
        // As the client does, at its default level.
        let level = kaf_upload::UploadSettings::default().gzip_level;
        compressed += plan
            .gzip_body(range.clone(), level)
            .expect("gzip to memory")
            .0
            .len();
    }
    compressed
}

fn bench(c: &mut Criterion) {
    let events = sample_events();
    let audit_json_bytes: usize = messages(&events).iter().map(String::len).sum();
    let event = lambda_event(&subscription("bench", AUDIT_STREAM, &messages(&events)));
    let data = event["awslogs"]["data"].as_str().expect("data").to_string();
    let pipeline = Pipeline::new(None, kaf_upload::format::SITE24X7).expect("default profile");
    eprintln!(
        "payload: {EVENTS} events, {audit_json_bytes} bytes of audit JSON, {} bytes base64(gzip)",
        data.len()
    );

    stage_breakdown(&data, &pipeline);
    gzip_levels(&data, &pipeline);
    stage_breakdown(
        &data,
        &Pipeline::new(None, kaf_upload::format::SITE24X7)
            .expect("default profile")
            .generic_only(),
    );

    let mut group = c.benchmark_group("pipeline_10k_events");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(audit_json_bytes as u64));
    group.bench_function("decode_map_gzip/bytes", |b| {
        b.iter(|| black_box(process(black_box(&data), &pipeline)))
    });
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("decode_map_gzip/events", |b| {
        b.iter(|| black_box(process(black_box(&data), &pipeline)))
    });
    // The same work on the generic path only (rules or a policy take it).
    let generic = Pipeline::new(None, kaf_upload::format::SITE24X7)
        .expect("default profile")
        .generic_only();
    group.throughput(Throughput::Bytes(audit_json_bytes as u64));
    group.bench_function("decode_map_gzip_generic/bytes", |b| {
        b.iter(|| black_box(process(black_box(&data), &generic)))
    });
    group.finish();

    // The configurations production sends (tests/fixtures/bench), each on the compiled path (what runs)
    // and on the generic path (what ran before it): mapping only, no gzip.
    let mut group = c.benchmark_group("mapping_10k_events");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(audit_json_bytes as u64));
    for (name, file) in [
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
        let compiled = Pipeline::new(Some(&config), kaf_upload::format::SITE24X7).expect("config");
        let generic = Pipeline::new(Some(&config), kaf_upload::format::SITE24X7)
            .expect("config")
            .generic_only();
        for (path, pipeline) in [("compiled", &compiled), ("generic", &generic)] {
            group.bench_function(format!("{name}/{path}"), |b| {
                b.iter(|| black_box(map_only(black_box(&data), pipeline)))
            });
        }
        // With the recommended audit policy (AUDIT_POLICY=builtin:managed-cluster): it drops and reduces
        // events, so fewer records come out; the throughput is still per byte of audit JSON in.
        let managed_cluster = kaf_pipeline::policy::from_env(Some("builtin:managed-cluster"), None)
            .expect("built-in policy")
            .expect("a policy");
        for (path, pipeline) in [("compiled", &compiled), ("generic", &generic)] {
            let with_policy = pipeline.clone().with_policy(Some(managed_cluster.clone()));
            let (records, stats) = map_kept(&data, &with_policy);
            eprintln!(
                "{name}, managed-cluster policy, {path}: {records} records ({} dropped, {} reduced)",
                stats.policy_dropped, stats.policy_reduced
            );
            group.bench_function(format!("{name}/managed_cluster_policy/{path}"), |b| {
                b.iter(|| black_box(map_kept(black_box(&data), &with_policy)))
            });
        }
    }
    // Configuration (a) with record rules as an operator sets them on the log type: a filter, a mask, a
    // hash, a derived field and an ignored one.
    let mut ruled = bench_config_json("logtypeconfig-a-default-profile.json");
    ruled["filterConfig"] =
        serde_json::json!({"verb": {"match": false, "values": ["watch"], "exact": true}});
    ruled["maskingConfig"] =
        serde_json::json!({"username": {"regex": "^([^@:]+)@", "string": "***"}});
    ruled["hashingConfig"] = serde_json::json!({"sourceip": {"regex": "(.*)"}});
    ruled["derivedConfig"] =
        serde_json::json!({"requesturi": ["^/apis?/(?<api_path>[^?]*)(?<query>\\?.*)?"]});
    ruled["ignoredFields"] = serde_json::json!(["useragent"]);
    let ruled = kaf_config::LogTypeConfig::from_json(&ruled.to_string()).expect("ruled config");
    let compiled = Pipeline::new(Some(&ruled), kaf_upload::format::SITE24X7).expect("config");
    let generic = compiled.clone().generic_only();
    for (path, pipeline) in [("compiled", &compiled), ("generic", &generic)] {
        group.bench_function(format!("a_with_record_rules/{path}"), |b| {
            b.iter(|| black_box(map_kept(black_box(&data), pipeline)))
        });
    }
    // Configuration (b) with `pattern`s on two of its entries, as an operator splits fields: `requestURI`
    // into API version and namespace, `userAgent` into client and version.
    let mut patterned = bench_config_json("logtypeconfig-b-jsonpath-25.json");
    for entry in patterned["jsonPath"].as_array_mut().expect("jsonPath") {
        match entry["key"].as_str() {
            Some("requestURI") => {
                entry["pattern"] = serde_json::json!(
                    "^/apis?/(?:[^/]+/)?(?<api_version>v\\d\\w*)(?:/namespaces/(?<uri_namespace>[^/?]+))?"
                )
            }
            Some("userAgent") => {
                entry["pattern"] =
                    serde_json::json!("^(?<client>[^/ ]+)/(?<client_version>v?[0-9][^ ]*)")
            }
            _ => {}
        }
    }
    let patterned =
        kaf_config::LogTypeConfig::from_json(&patterned.to_string()).expect("patterned config");
    let compiled = Pipeline::new(Some(&patterned), kaf_upload::format::SITE24X7).expect("config");
    let generic = compiled.clone().generic_only();
    for (path, pipeline) in [("compiled", &compiled), ("generic", &generic)] {
        group.bench_function(format!("b_with_patterns/{path}"), |b| {
            b.iter(|| black_box(map_only(black_box(&data), pipeline)))
        });
    }
    let default = Pipeline::new(None, kaf_upload::format::SITE24X7).expect("default profile");
    group.bench_function("no_config_default_profile/compiled", |b| {
        b.iter(|| black_box(map_only(black_box(&data), &default)))
    });
    group.finish();
}

/// A production configuration from tests/fixtures/bench, as JSON to extend.
fn bench_config_json(file: &str) -> Value {
    let text = std::fs::read_to_string(fixtures::dir().join("bench").join(file))
        .expect("bench config")
        .replace("PORT", "8443");
    serde_json::from_str(&text).expect("bench config is JSON")
}

/// Decode and map, no upload work: the mapping paths compared.
fn map_only(data: &str, pipeline: &Pipeline) -> usize {
    let payload = Decoded::from_awslogs_data(data, kaf_envelope::gunzip::DEFAULT_PAYLOAD_LIMIT)
        .expect("valid payload");
    let mut stats = EnvelopeStats::default();
    let batch = payload.into_batch(AUDIT_STREAM_PREFIX, &mut stats);
    let processed = pipeline.process(batch, now_ms());
    assert_eq!(processed.records.len(), EVENTS);
    processed.records.iter().map(|r| r.json.len()).sum()
}

/// Decode and map with a policy that drops some events: the records kept, and the pipeline's counters.
fn map_kept(data: &str, pipeline: &Pipeline) -> (usize, kaf_pipeline::PipelineStats) {
    let payload = Decoded::from_awslogs_data(data, kaf_envelope::gunzip::DEFAULT_PAYLOAD_LIMIT)
        .expect("valid payload");
    let mut stats = EnvelopeStats::default();
    let batch = payload.into_batch(AUDIT_STREAM_PREFIX, &mut stats);
    let processed = pipeline.process(batch, now_ms());
    (processed.records.len(), processed.stats)
}

/// One timed pass per stage (best of 5), printed to show where the time goes.
fn stage_breakdown(data: &str, pipeline: &Pipeline) {
    use std::time::{Duration, Instant};
    let mut best = [Duration::MAX; 5];
    for _ in 0..5 {
        let t = Instant::now();
        let payload = Decoded::from_awslogs_data(data, kaf_envelope::gunzip::DEFAULT_PAYLOAD_LIMIT)
            .expect("valid payload");
        let t1 = t.elapsed();
        let mut stats = EnvelopeStats::default();
        let batch = payload.into_batch(AUDIT_STREAM_PREFIX, &mut stats);
        let parsed: Vec<Value> = batch
            .events
            .iter()
            .map(|e| match (&e.payload, e.payload.text()) {
                (_, Some(t)) => serde_json::from_str(t).expect("json"),
                (kaf_envelope::Payload::Json(v), None) => v.clone(),
                _ => Value::Null,
            })
            .collect();
        let t2 = t.elapsed();
        black_box(parsed);
        let t3 = t.elapsed();
        let processed = pipeline.process(batch, now_ms());
        let t4 = t.elapsed();
        let plan = BatchPlan::new(&processed.records, kaf_upload::Limits::default());
        let t5 = t.elapsed();
        let mut out = 0;
        for range in &plan.requests {
            out += plan.gzip_body(range.clone(), 3).expect("gzip").0.len();
        }
        black_box(out);
        let t6 = t.elapsed();
        for (slot, d) in best
            .iter_mut()
            .zip([t1, t2 - t1, t4 - t3, t5 - t4, t6 - t5])
        {
            *slot = (*slot).min(d);
        }
    }
    eprintln!(
        "stages (best of 5): base64+gunzip+payload JSON {:?} | event JSON parse alone {:?} | pipeline (parse, map, render records) {:?} | request plan {:?} | bodies + gzip level 3 {:?}",
        best[0], best[1], best[2], best[3], best[4]
    );
}

/// What each gzip level costs and saves on this payload (best of 5).
fn gzip_levels(data: &str, pipeline: &Pipeline) {
    use std::time::{Duration, Instant};
    let payload = Decoded::from_awslogs_data(data, kaf_envelope::gunzip::DEFAULT_PAYLOAD_LIMIT)
        .expect("valid payload");
    let batch = payload.into_batch(AUDIT_STREAM_PREFIX, &mut EnvelopeStats::default());
    let processed = pipeline.process(batch, now_ms());
    let plan = BatchPlan::new(&processed.records, kaf_upload::Limits::default());
    for level in [1, 2, 3, 6] {
        let mut best = Duration::MAX;
        let mut size = 0;
        for _ in 0..5 {
            let t = Instant::now();
            size = plan
                .requests
                .iter()
                .map(|r| plan.gzip_body(r.clone(), level).expect("gzip").0.len())
                .sum::<usize>();
            best = best.min(t.elapsed());
        }
        eprintln!("gzip level {level}: {best:?}, {size} bytes");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

/// The ingest time, as the binaries pass it (event times more than a day ahead of it are fallbacks).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
