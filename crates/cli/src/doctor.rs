//! `doctor`: does this setup work? Run where the forwarder runs (a Lambda's environment, a Function App's
//! settings, a serve/tail host), it checks every logtypeconfig it finds and the audit policy, resolves the
//! upload host and completes a TLS handshake with the uploader's own trust roots (printing the chain), and
//! with `--send-test` uploads one clearly marked synthetic record. One readable report, or `--json`.
//!
//! Exit codes: 0 every check passed; 1 a check failed.

use kaf_config::LogTypeConfig;
use kaf_upload::probe::{Handshake, tls_handshake};
use kaf_upload::{UploadSettings, Uploader};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Base64 logtypeconfig to check; also env `logTypeConfig`, and every `S247_<category>` setting (AKS).
    #[arg(long, env = "logTypeConfig", hide_env_values = true)]
    logtypeconfig: Option<String>,
    /// Audit policy file to check; also env `AUDIT_POLICY` / `AUDIT_POLICY_FILE`.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Upload one synthetic record (`kaf_doctor: true`, `message` saying so) and report the receipt or refusal.
    #[arg(long)]
    send_test: bool,
    /// One JSON object instead of the readable report.
    #[arg(long)]
    json: bool,
    /// Seconds each network step may take.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
}

/// One check's outcome.
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let checks = runtime.block_on(checks(&args, |k| std::env::var(k).ok()));
    if args.json {
        let value = json!({
            "ok": checks.iter().all(|c| c.ok),
            "checks": checks.iter().map(|c| json!({"name": c.name, "ok": c.ok, "detail": c.detail})).collect::<Vec<Value>>(),
        });
        println!("{value:#}");
    } else {
        for c in &checks {
            println!(
                "{} {}: {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        let failed = checks.iter().filter(|c| !c.ok).count();
        println!("{} checks, {failed} failed", checks.len());
    }
    Ok(if checks.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn checks(args: &Args, var: impl Fn(&str) -> Option<String>) -> Vec<Check> {
    let mut out = Vec::new();
    let mut check = |name: String, result: Result<String, String>| {
        let ok = result.is_ok();
        out.push(Check {
            name,
            ok,
            detail: result.unwrap_or_else(|e| e),
        });
        ok
    };

    // Every logtypeconfig this environment holds: the flag or `logTypeConfig`, and the AKS handler's
    // per-category settings.
    let mut sources: Vec<(String, String)> = Vec::new();
    if let Some(text) = args
        .logtypeconfig
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    {
        sources.push(("logTypeConfig".into(), text.to_string()));
    }
    for (name, value) in std::env::vars() {
        if (name.starts_with("S247_") || name.starts_with("s247_")) && !value.trim().is_empty() {
            sources.push((name, value));
        }
    }
    if sources.is_empty() {
        let detail = match var("LOGTYPECONFIG_SECRET_ARN") {
            Some(arn) => Err(format!(
                "only LOGTYPECONFIG_SECRET_ARN ({arn}) is set: the Lambda reads it through the secrets extension at init; pass the secret's value with --logtypeconfig to check it here"
            )),
            None => Err("none found: set --logtypeconfig, logTypeConfig or S247_<category>".into()),
        };
        check("logtypeconfig".into(), detail);
    }
    let mut configs = Vec::new();
    for (name, text) in &sources {
        let result = LogTypeConfig::decode(text)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                if !c.api_upload {
                    return Err("apiUpload is false: this account accepts no API uploads".into());
                }
                let mut detail =
                    format!("log type \"{}\", upload to {}", c.log_type, c.upload_url());
                for warning in &c.warnings {
                    detail.push_str(&format!("; warning: {warning}"));
                }
                configs.push((name.clone(), c));
                Ok(detail)
            });
        check(format!("logtypeconfig {name}"), result);
    }

    let policy = match &args.policy {
        Some(path) => kaf_pipeline::policy::from_env(None, Some(&path.display().to_string())),
        None => kaf_pipeline::policy::from_env(
            var("AUDIT_POLICY").as_deref(),
            var("AUDIT_POLICY_FILE").as_deref(),
        ),
    };
    let policy = match policy {
        Ok(None) => Ok("none set: every event is forwarded".to_string()),
        Ok(Some(p)) => {
            let mut detail = match p.rules.len() {
                1 => "valid, 1 rule".to_string(),
                n => format!("valid, {n} rules"),
            };
            for warning in &p.warnings {
                detail.push_str(&format!("; warning: {warning}"));
            }
            Ok(detail)
        }
        Err(e) => Err(e),
    };
    check("audit policy".into(), policy);

    let settings = match UploadSettings::from_env(&var) {
        Ok(s) => s,
        Err(e) => {
            check("upload settings".into(), Err(e.to_string()));
            return out;
        }
    };
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    // One handshake per distinct endpoint.
    let mut seen = std::collections::BTreeSet::new();
    for (name, config) in &configs {
        let url = config.upload_url();
        if seen.insert(url.clone()) {
            let result = tls_handshake(&url, &settings.trust, timeout)
                .await
                .map(|h| describe(&h))
                .map_err(|e| e.to_string());
            let passed = check(format!("TLS {url}"), result);
            if !passed {
                continue;
            }
        }
        if args.send_test {
            let result = match Uploader::new(config, settings.clone()) {
                Ok(uploader) => uploader
                    .send_probe(&test_record(name))
                    .await
                    .map(|id| format!("accepted, x-uploadid {id}"))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            check(format!("test upload with {name}"), result);
        }
    }
    out
}

/// The handshake in words: addresses, protocol, and each certificate's subject, issuer and expiry.
fn describe(h: &Handshake) -> String {
    let addresses: Vec<String> = h.addresses.iter().map(ToString::to_string).collect();
    let chain: Vec<String> = h
        .chain
        .iter()
        .map(|der| match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => format!(
                "{} issued by {}, expires {}",
                cert.subject(),
                cert.issuer(),
                cert.validity().not_after
            ),
            Err(_) => "a certificate that does not parse".into(),
        })
        .collect();
    format!(
        "{} resolves to {} (connected to {}); {} handshake verified; chain: {}",
        h.host,
        addresses.join(", "),
        h.connected,
        h.protocol,
        chain.join(" <- ")
    )
}

/// A record nobody can take for an audit event.
fn test_record(source: &str) -> kaf_pipeline::OutRecord {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // The delivery side's own fields by the names its format gives them, as the pipeline writes them.
    let format = kaf_upload::format::SITE24X7;
    let mut map = serde_json::Map::new();
    map.insert("kaf_doctor".into(), Value::Bool(true));
    map.insert(
        "message".into(),
        "kube-audit-forwarder doctor: synthetic test record, not an audit event".into(),
    );
    map.insert(format.time_field.into(), now.into());
    map.insert(
        format.source_field.into(),
        "kube-audit-forwarder-doctor".into(),
    );
    map.insert(format.stream_field.into(), source.into());
    kaf_pipeline::OutRecord::new(format!("doctor-{now}"), &map, &format)
}
