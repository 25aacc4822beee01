use crate::harness::{KEY, LOG_TYPE, base_env, logtypeconfig, start};
use base64::Engine as _;
use kaf_testkit::fixtures;
use kaf_testkit::payloads::{AUDIT_STREAM, lambda_event, messages, subscription};
use kaf_testkit::process::spawn;
use kaf_testkit::receiver::Receiver;
use kaf_testkit::runtime::{Outcome, RuntimeApi};
use kaf_testkit::secrets::SecretsExtension;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// The environment for reading the logtypeconfig from secret `arn` through an extension on `port`.
fn secret_env(
    runtime: &RuntimeApi,
    rx: &Receiver,
    arn: &str,
    token: &str,
    port: u16,
) -> Vec<(String, String)> {
    let mut env = base_env(runtime, rx);
    env.extend([
        ("LOGTYPECONFIG_SECRET_ARN".to_string(), arn.to_string()),
        ("AWS_SESSION_TOKEN".to_string(), token.to_string()),
        (
            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT".to_string(),
            port.to_string(),
        ),
    ]);
    env
}

fn bootstrap() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bootstrap"))
}

#[tokio::test]
async fn invalid_config_is_an_init_error_naming_the_field_and_the_process_exits() {
    let runtime = RuntimeApi::start().await;
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let bad = base64::engine::general_purpose::STANDARD.encode(
        json!({"apiKey": KEY, "logType": LOG_TYPE, "uploadDomain": "x", "filterConfig": {"verb": {"values": ["(get"]}}})
            .to_string(),
    );
    let mut env = base_env(&runtime, &rx);
    env.push(("logTypeConfig".into(), bad));
    let mut process = spawn(bootstrap(), &env);
    let error = runtime.init_error(Duration::from_secs(10)).await;
    let message = error["errorMessage"].as_str().unwrap();
    assert!(message.contains("filterConfig.verb.values[0]"), "{message}");
    assert!(!message.contains(KEY));
    let status = tokio::time::timeout(Duration::from_secs(10), process.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success());
    assert_eq!(runtime.next_calls(), 0);
    assert!(!process.output().contains(KEY));
}

#[tokio::test]
async fn missing_config_is_an_init_error() {
    let runtime = RuntimeApi::start().await;
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let _process = spawn(bootstrap(), &base_env(&runtime, &rx));
    let error = runtime.init_error(Duration::from_secs(10)).await;
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap()
            .contains("logTypeConfig")
    );
}

#[tokio::test]
async fn config_from_a_secret_arn_is_read_once_through_the_extension() {
    let runtime = RuntimeApi::start().await;
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:kaf/logtypeconfig-AbCdEf";
    let secret = logtypeconfig(&rx.upload_domain(), json!({}));
    let extension = SecretsExtension::start("session-token-1", &[(arn, &secret)]).await;
    let env = secret_env(&runtime, &rx, arn, "session-token-1", extension.addr.port());
    let process = spawn(bootstrap(), &env);
    let events = fixtures::events(&fixtures::audit2rbac_demo());
    let id = runtime.invoke(
        lambda_event(&subscription("demo", AUDIT_STREAM, &messages(&events))),
        Duration::from_secs(20),
    );
    let done = runtime.finished(&id, Duration::from_secs(20)).await;
    assert!(
        matches!(done.outcome, Outcome::Response(_)),
        "{:?}",
        done.outcome
    );
    assert_eq!(rx.records().len(), events.len());
    assert!(!process.output().contains(KEY));
    // The configuration checks' result, logged once per process.
    let output = process.output();
    let checked: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("configuration checked"))
        .collect();
    assert_eq!(checked.len(), 1, "{output}");
    assert!(
        checked[0].contains("LOGTYPECONFIG_SECRET_ARN") && checked[0].contains(LOG_TYPE),
        "{}",
        checked[0]
    );
}

#[tokio::test]
async fn a_wrong_session_token_is_an_init_error_without_the_token() {
    let runtime = RuntimeApi::start().await;
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let extension = SecretsExtension::start("right-token", &[("arn:x", "irrelevant")]).await;
    let mut env = base_env(&runtime, &rx);
    env.extend([
        ("LOGTYPECONFIG_SECRET_ARN".to_string(), "arn:x".to_string()),
        ("AWS_SESSION_TOKEN".to_string(), "wrong-token".to_string()),
        (
            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT".to_string(),
            extension.addr.port().to_string(),
        ),
    ]);
    let _process = spawn(bootstrap(), &env);
    let error = runtime.init_error(Duration::from_secs(20)).await;
    let message = error["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("HTTP 401") && !message.contains("wrong-token"),
        "{message}"
    );
}

#[tokio::test]
async fn the_api_key_never_appears_in_logs_even_at_debug_level() {
    let lambda = start(
        json!({}),
        &[("RUST_LOG", "trace"), ("AWS_LAMBDA_LOG_LEVEL", "TRACE")],
    )
    .await;
    let events = fixtures::events(&fixtures::audit2rbac_demo());
    lambda
        .rx
        .push_faults([kaf_testkit::receiver::Fault::Status(500)]);
    let id = lambda.runtime.invoke(
        lambda_event(&subscription("demo", AUDIT_STREAM, &messages(&events))),
        Duration::from_secs(20),
    );
    lambda.runtime.finished(&id, Duration::from_secs(20)).await;
    let log = lambda.process.output();
    assert!(
        log.contains("retrying"),
        "trace output expected:\n{}",
        &log[..log.len().min(2000)]
    );
    assert!(!log.contains(KEY));
}

#[tokio::test]
async fn an_audit_policy_from_the_environment_is_applied_and_an_invalid_one_stops_init() {
    let policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  verbs: [get]\n- level: Metadata\n";
    let lambda = crate::harness::start(json!({}), &[("AUDIT_POLICY", policy)]).await;
    let events = fixtures::events(&fixtures::audit2rbac_demo());
    let gets = events.iter().filter(|e| e["verb"] == json!("get")).count();
    let id = lambda.runtime.invoke(
        lambda_event(&subscription("demo", AUDIT_STREAM, &messages(&events))),
        Duration::from_secs(20),
    );
    let Outcome::Response(s) = lambda
        .runtime
        .finished(&id, Duration::from_secs(20))
        .await
        .outcome
    else {
        panic!()
    };
    assert_eq!(s["policyDropped"].as_u64(), Some(gets as u64));
    assert_eq!(lambda.rx.records().len(), events.len() - gets);

    let runtime = RuntimeApi::start().await;
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let mut env = base_env(&runtime, &rx);
    env.push((
        "logTypeConfig".into(),
        logtypeconfig(&rx.upload_domain(), json!({})),
    ));
    env.push((
        "AUDIT_POLICY".into(),
        base64::engine::general_purpose::STANDARD
            .encode("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n"),
    ));
    let _process = spawn(bootstrap(), &env);
    let error = runtime.init_error(Duration::from_secs(10)).await;
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap()
            .contains("AUDIT_POLICY: audit policy field `rules[0].level`"),
        "{error}"
    );
}

#[tokio::test]
async fn a_bad_detection_rule_file_stops_init_naming_the_rule_and_the_field() {
    let runtime = RuntimeApi::start().await;
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "extends: builtin\nrules:\n- id: my-exec\n  title: exec\n  severity: urgent\n  match: {verbs: [create]}\n",
    )
    .unwrap();
    let mut env = base_env(&runtime, &rx);
    env.push((
        "logTypeConfig".into(),
        logtypeconfig(&rx.upload_domain(), json!({})),
    ));
    env.push(("DETECTIONS_FILE".into(), rules.display().to_string()));
    let mut process = spawn(bootstrap(), &env);
    let error = runtime.init_error(Duration::from_secs(10)).await;
    let message = error["errorMessage"].as_str().unwrap();
    assert!(message.contains("DETECTIONS_FILE"), "{message}");
    assert!(
        message.contains("rules[0] (my-exec): field `severity`"),
        "{message}"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), process.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success());
    assert_eq!(runtime.next_calls(), 0);
}

/// The extension starts alongside the function and may not answer at first: init keeps asking, and the
/// first invocation is delivered. How long init waited is printed (the extension came up after 1 s).
#[tokio::test]
async fn an_extension_that_starts_late_is_waited_for() {
    let runtime = RuntimeApi::start().await;
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:kaf/late-AbCdEf";
    let secret = logtypeconfig(&rx.upload_domain(), json!({}));
    let port = kaf_testkit::free_port();
    let env = secret_env(&runtime, &rx, arn, "t", port);
    let started = tokio::time::Instant::now();
    let process = spawn(bootstrap(), &env);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _extension = SecretsExtension::start_on(port, "t", &[(arn, &secret)]).await;
    let first_next = kaf_testkit::wait_for(Duration::from_secs(10), "first /next", || {
        runtime.first_next()
    })
    .await;
    let waited = first_next.duration_since(started);
    eprintln!("init with an extension 1 s late: {waited:?} to the first /next");
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    let events = fixtures::events(&fixtures::audit2rbac_demo());
    let id = runtime.invoke(
        lambda_event(&subscription("demo", AUDIT_STREAM, &messages(&events))),
        Duration::from_secs(20),
    );
    let done = runtime.finished(&id, Duration::from_secs(20)).await;
    assert!(
        matches!(done.outcome, Outcome::Response(_)),
        "{}",
        process.output()
    );
    assert_eq!(rx.records().len(), events.len());
}

/// The worst case: an extension that never answers (the layer missing) ends init with an error naming the
/// layer, after the 6 s budget, inside Lambda's 10 s init limit. The time taken is printed.
#[tokio::test]
async fn an_extension_that_never_answers_ends_init_inside_the_limit() {
    let runtime = RuntimeApi::start().await;
    let rx = Receiver::start(KEY, LOG_TYPE).await;
    let arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:kaf/none-AbCdEf";
    // Nothing listens on this port.
    let env = secret_env(&runtime, &rx, arn, "t", kaf_testkit::free_port());
    let started = std::time::Instant::now();
    let _process = spawn(bootstrap(), &env);
    let error = runtime.init_error(Duration::from_secs(15)).await;
    let took = started.elapsed();
    eprintln!("init with no extension: error after {took:?}");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("Parameters and Secrets Lambda extension layer"),
        "{message}"
    );
    assert!(took >= Duration::from_secs(5), "gave up early: {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "past the init limit: {took:?}"
    );
}
