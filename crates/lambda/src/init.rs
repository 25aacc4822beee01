//! Cold start: read the logtypeconfig (env `logTypeConfig`, Site24x7's own name, or a Secrets Manager secret
//! named by `LOGTYPECONFIG_SECRET_ARN`, read once through the AWS Parameters and Secrets Lambda extension),
//! compile it, and build the pipeline and the upload client.

use anyhow::{Context as _, anyhow, bail};
use kaf_config::LogTypeConfig;
use kaf_pipeline::Pipeline;
use kaf_upload::retry::Backoff;
use kaf_upload::{UploadSettings, Uploader};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The retry budget without a usable deadline: the SAM template's default function timeout, well below
/// Lambda's 15-minute maximum.
const DEFAULT_DEADLINE_FALLBACK_SECS: u64 = 120;

/// Everything an invocation needs, built once.
pub struct Forwarder {
    pub pipeline: Pipeline,
    pub uploader: Uploader,
    /// Only streams with this prefix are forwarded (`AUDIT_STREAM_PREFIX`).
    pub stream_prefix: String,
    /// The retry budget when the Runtime API's deadline is missing or unusable (`DEADLINE_FALLBACK_SECS`).
    pub deadline_fallback: Duration,
    /// Whether the fallback was already announced (one warning per process).
    pub fallback_warned: AtomicBool,
    /// Most bytes `awslogs.data` may decompress to (`MAX_DECOMPRESSED_BYTES`).
    pub max_decompressed: usize,
    /// `AWS_LAMBDA_FUNCTION_NAME`, the metrics dimension.
    pub function_name: String,
}

/// A whole number in `range`, or the default; errors name the variable.
fn number(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
) -> anyhow::Result<u64> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                anyhow!(
                    "environment variable {name} must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                )
            }),
    }
}

impl Forwarder {
    pub async fn from_env() -> anyhow::Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let config = match (var("logTypeConfig"), var("LOGTYPECONFIG_SECRET_ARN")) {
            (_, Some(arn)) => {
                let text = fetch_secret(&arn).await?;
                parse_config(&text).context("secret named by LOGTYPECONFIG_SECRET_ARN")?
            }
            (Some(text), None) => {
                LogTypeConfig::decode(&text).context("environment variable logTypeConfig")?
            }
            (None, None) => bail!("set logTypeConfig or LOGTYPECONFIG_SECRET_ARN"),
        };
        if !config.api_upload {
            bail!("logtypeconfig says apiUpload: false: this account does not accept API uploads");
        }
        for warning in &config.warnings {
            tracing::warn!(%warning, "logtypeconfig");
        }
        let settings = UploadSettings {
            user_agent: format!("kube-audit-forwarder-lambda/{}", env!("CARGO_PKG_VERSION")),
            ..UploadSettings::from_env(var)?
        };
        let options = kaf_pipeline::Options::from_env(var).map_err(anyhow::Error::msg)?;
        for warning in options.warnings() {
            tracing::warn!(%warning, "configuration");
        }
        let deadline_fallback = Duration::from_secs(number(
            &var,
            "DEADLINE_FALLBACK_SECS",
            1..=900,
            DEFAULT_DEADLINE_FALLBACK_SECS,
        )?);
        let max_decompressed = number(
            &var,
            "MAX_DECOMPRESSED_BYTES",
            1 << 20..=1 << 30,
            kaf_envelope::gunzip::DEFAULT_PAYLOAD_LIMIT as u64,
        )? as usize;
        // What `kube-audit-forwarder doctor` checks offline, once per process: the result in one line (the
        // network half, DNS and TLS, is the first upload's).
        tracing::info!(
            log_type = %config.log_type,
            upload_url = %config.upload_url(),
            config_source = if var("LOGTYPECONFIG_SECRET_ARN").is_some() { "LOGTYPECONFIG_SECRET_ARN" } else { "logTypeConfig" },
            audit_policy_rules = options.policy.as_ref().map_or(0, |p| p.rules.len()),
            redact_secrets = options.redact_secrets,
            detection_rules = options.detection_rules(),
            detections_only = options.detections_only,
            "configuration checked"
        );
        Ok(Self {
            pipeline: options.apply(Pipeline::new(Some(&config), kaf_upload::format::SITE24X7)?),
            uploader: Uploader::new(&config, settings)?,
            stream_prefix: var("AUDIT_STREAM_PREFIX")
                .unwrap_or_else(|| kaf_envelope::cloudwatch::AUDIT_STREAM_PREFIX.to_string()),
            deadline_fallback,
            fallback_warned: AtomicBool::new(false),
            max_decompressed,
            function_name: var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "unknown".into()),
        })
    }
}

/// A secret holds the logtypeconfig as base64 (as pasted from Site24x7) or as plain JSON.
fn parse_config(text: &str) -> Result<LogTypeConfig, kaf_config::ConfigError> {
    if text.trim_start().starts_with('{') {
        LogTypeConfig::from_json(text)
    } else {
        LogTypeConfig::decode(text)
    }
}

/// How long init may spend waiting for the secrets extension, of Lambda's 10 s init limit: the extension
/// starts alongside the function and may not answer at the very first moment.
const SECRET_BUDGET: Duration = Duration::from_secs(6);

/// `GET http://localhost:$PARAMETERS_SECRETS_EXTENSION_HTTP_PORT/secretsmanager/get?secretId=…` with the
/// session token header, retried with backoff (50 ms doubling to 800 ms) within [`SECRET_BUDGET`]; the worst
/// case (an extension that never answers) ends init after about 6 s, inside the 10 s limit.
async fn fetch_secret(arn: &str) -> anyhow::Result<String> {
    let port =
        std::env::var("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT").unwrap_or_else(|_| "2773".into());
    let token = std::env::var("AWS_SESSION_TOKEN").unwrap_or_default();
    let client = kaf_upload::local_http_client(Some(Duration::from_secs(2)))?;
    let url = format!("http://localhost:{port}/secretsmanager/get");
    let stop_at = tokio::time::Instant::now() + SECRET_BUDGET;
    let mut backoff = Backoff::exact(Duration::from_millis(50), Duration::from_millis(800));
    loop {
        let left = stop_at.saturating_duration_since(tokio::time::Instant::now());
        let response = client
            .get(&url)
            .timeout(left.clamp(Duration::from_millis(100), Duration::from_secs(2)))
            .query(&[("secretId", arn)])
            .header("X-Aws-Parameters-Secrets-Token", &token)
            .send()
            .await;
        let last = match response {
            Ok(r) if r.status().is_success() => {
                let bytes = r
                    .bytes()
                    .await
                    .context("reading the secrets extension answer")?;
                let body: serde_json::Value = serde_json::from_slice(&bytes)
                    .context("secrets extension answer is not JSON")?;
                return body
                    .get("SecretString")
                    .and_then(|s| s.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        anyhow!("secret has no SecretString (binary secrets are not supported)")
                    });
            }
            // The body may echo request details; the status is enough.
            Ok(r) => anyhow!("secrets extension answered HTTP {}", r.status().as_u16()),
            Err(e) => anyhow!(
                "secrets extension unreachable: {}",
                kaf_upload::error_chain(&e.without_url())
            ),
        };
        if !Backoff::wait(backoff.next_delay(), Some(stop_at)).await {
            return Err(last.context(format!(
                "reading the logtypeconfig secret, {} attempts in {} s (is the AWS Parameters and Secrets Lambda extension layer added?)",
                backoff.attempts(),
                SECRET_BUDGET.as_secs()
            )));
        }
    }
}
