//! The Lambda Runtime API client (`contracts/aws-lambda.md` §1): `next` → handler → `response` or `error`,
//! one invocation at a time, plus `init/error`.
//!
//! Why not `lambda_runtime`: it panics when `next` carries no `Lambda-Runtime-Deadline-Ms` (some local
//! emulators send none; upstream closed the fix as out of scope), and hands the handler a deadline it cannot
//! question. Here the deadline is a plain `Option` ([`Invocation::deadline_ms`]) and [`retry_budget`] turns it
//! into a budget that survives emulators: `cargo lambda watch` sends a duration (`600000`), not an epoch
//! time. The event arrives as bytes, so the handler decodes it from a slice with its own bounds.

use anyhow::{Context as _, bail};
use bytes::Bytes;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the Runtime API needs to hear about a failed invocation or init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// `errorType`, also sent as `Lambda-Runtime-Function-Error-Type`.
    pub error_type: String,
    /// `errorMessage`: never event content or a secret.
    pub error_message: String,
}

/// One event handed out by `next`.
#[derive(Debug)]
pub struct Invocation {
    pub request_id: String,
    /// `Lambda-Runtime-Deadline-Ms` as sent (epoch milliseconds on AWS), if it was a number.
    pub deadline_ms: Option<u64>,
    pub body: Bytes,
}

pub struct RuntimeApi {
    http: reqwest::Client,
    /// `http://<AWS_LAMBDA_RUNTIME_API>/2018-06-01`.
    base: String,
}

impl RuntimeApi {
    /// From `AWS_LAMBDA_RUNTIME_API`: `host:port` as AWS sets it, or a URL with a path prefix as
    /// `cargo lambda watch` prints it (`http://127.0.0.1:9000/.rt`).
    pub fn from_env() -> anyhow::Result<Self> {
        let api = std::env::var("AWS_LAMBDA_RUNTIME_API")
            .context("AWS_LAMBDA_RUNTIME_API is not set: run this binary as a Lambda function (or under cargo lambda watch)")?;
        let api = api.trim().trim_end_matches('/');
        let base = if api.starts_with("http://") {
            format!("{api}/2018-06-01")
        } else if api.contains("://") {
            bail!("AWS_LAMBDA_RUNTIME_API must be host:port or an http:// URL");
        } else {
            format!("http://{api}/2018-06-01")
        };
        // No overall timeout: `next` is a long poll that may wait for hours between events.
        let http = kaf_upload::local_http_client(None)?;
        Ok(Self { http, base })
    }

    /// Wait for the next event. An error means the Runtime API is gone: the process should exit.
    pub async fn next(&self) -> anyhow::Result<Invocation> {
        loop {
            let response = self
                .http
                .get(format!("{}/runtime/invocation/next", self.base))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(kaf_upload::error_chain(&e)))
                .context("Runtime API: next")?;
            // Some emulators answer 204 to keep the runtime polling.
            if response.status() == reqwest::StatusCode::NO_CONTENT {
                continue;
            }
            if !response.status().is_success() {
                bail!("Runtime API: next answered HTTP {}", response.status());
            }
            let headers = response.headers();
            let request_id = headers
                .get("lambda-runtime-aws-request-id")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .context("Runtime API: next without Lambda-Runtime-Aws-Request-Id")?;
            let deadline_ms = headers
                .get("lambda-runtime-deadline-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = response
                .bytes()
                .await
                .map_err(|e| anyhow::anyhow!(kaf_upload::error_chain(&e)))
                .context("Runtime API: reading the event")?;
            return Ok(Invocation {
                request_id,
                deadline_ms,
                body,
            });
        }
    }

    /// Report success with `body` (JSON).
    pub async fn respond(&self, request_id: &str, body: String) -> anyhow::Result<()> {
        self.post(
            &format!("{}/runtime/invocation/{request_id}/response", self.base),
            body,
            None,
        )
        .await
    }

    /// Report a failed invocation: Lambda's async retries and the OnFailure destination take over.
    pub async fn fail(&self, request_id: &str, error: &Diagnostic) -> anyhow::Result<()> {
        self.post(
            &format!("{}/runtime/invocation/{request_id}/error", self.base),
            error_body(error),
            Some(&error.error_type),
        )
        .await
    }

    /// Report a failed init; the caller exits afterwards.
    pub async fn init_error(&self, error: &Diagnostic) -> anyhow::Result<()> {
        self.post(
            &format!("{}/runtime/init/error", self.base),
            error_body(error),
            Some(&format!("Runtime.{}", error.error_type)),
        )
        .await
    }

    async fn post(&self, url: &str, body: String, error_type: Option<&str>) -> anyhow::Result<()> {
        let mut request = self
            .http
            .post(url)
            .timeout(Duration::from_secs(10))
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(error_type) = error_type {
            request = request.header("Lambda-Runtime-Function-Error-Type", error_type);
        }
        let response = request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(kaf_upload::error_chain(&e)))
            .context("Runtime API: reporting a result")?;
        if !response.status().is_success() {
            bail!(
                "Runtime API refused a result with HTTP {}",
                response.status()
            );
        }
        Ok(())
    }
}

fn error_body(error: &Diagnostic) -> String {
    serde_json::json!({"errorType": error.error_type, "errorMessage": error.error_message})
        .to_string()
}

/// Lambda's longest function timeout: no invocation can have more time than this.
pub const MAX_FUNCTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How long an invocation may retry uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub remaining: Duration,
    /// Why the deadline could not be used, when the fallback was taken.
    pub fallback: Option<&'static str>,
}

/// The retry budget from the `next` deadline. AWS sends the deadline as epoch milliseconds; a deadline that
/// is missing, or already past when the event arrives (an emulator's duration such as `600000` reads as
/// 1970), would leave no time at all, so `fallback` is used instead and the reason is returned for a warning.
pub fn retry_budget(deadline_ms: Option<u64>, now: SystemTime, fallback: Duration) -> Budget {
    let Some(ms) = deadline_ms else {
        return Budget {
            remaining: fallback,
            fallback: Some("the Runtime API sent no Lambda-Runtime-Deadline-Ms"),
        };
    };
    let deadline = UNIX_EPOCH.checked_add(Duration::from_millis(ms));
    match deadline.and_then(|d| d.duration_since(now).ok()) {
        Some(left) if !left.is_zero() => Budget {
            remaining: left.min(MAX_FUNCTION_TIMEOUT),
            fallback: None,
        },
        _ => Budget {
            remaining: fallback,
            fallback: Some(
                "Lambda-Runtime-Deadline-Ms is already past when the event arrived (a local emulator sending a duration, such as cargo lambda watch's 600000?)",
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_in_every_shape_leave_a_budget() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_256_000);
        let fallback = Duration::from_secs(120);
        let in_a_minute = 1_796_256_060_000;
        assert_eq!(
            retry_budget(Some(in_a_minute), now, fallback),
            Budget {
                remaining: Duration::from_secs(60),
                fallback: None
            }
        );
        for deadline in [None, Some(600_000), Some(0), Some(1_796_256_000_000)] {
            let budget = retry_budget(deadline, now, fallback);
            assert_eq!(budget.remaining, fallback, "{deadline:?}");
            assert!(budget.fallback.is_some());
        }
        // Absurdly far away: capped at Lambda's maximum, without overflow.
        assert_eq!(
            retry_budget(Some(32_503_680_000_000), now, fallback).remaining,
            MAX_FUNCTION_TIMEOUT
        );
        assert_eq!(
            retry_budget(Some(u64::MAX), now, fallback).remaining,
            MAX_FUNCTION_TIMEOUT
        );
    }
}
