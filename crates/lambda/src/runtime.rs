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
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header};
use hyper_util::rt::TokioIo;
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

/// How long a result report may take: the Runtime API is on loopback and answers at once.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The Runtime API over one kept-open HTTP/1.1 connection (hyper's client connection, no pool, no URL
/// parsing per request): a small invocation makes two requests here, and a general-purpose client's
/// per-request machinery was a measurable share of its CPU (issue "Small invocations", BENCHMARKS.md).
pub struct RuntimeApi {
    /// `host:port`, connected to and sent as `Host`.
    authority: String,
    /// The path up to and including `/2018-06-01`.
    base_path: String,
    connection: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

/// `AWS_LAMBDA_RUNTIME_API` as (`host:port`, base path): `host:port` as AWS sets it, or a URL with a path
/// prefix as `cargo lambda watch` prints it (`http://127.0.0.1:9000/.rt`).
fn endpoint(api: &str) -> anyhow::Result<(String, String)> {
    let api = api.trim().trim_end_matches('/');
    let rest = match api.split_once("://") {
        Some(("http", rest)) => rest,
        Some(_) => bail!("AWS_LAMBDA_RUNTIME_API must be host:port or an http:// URL"),
        None => api,
    };
    let (authority, prefix) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let valid = !authority.is_empty()
        && !authority.contains(['@', '?', '#'])
        && !authority.chars().any(char::is_whitespace)
        && !prefix.contains(['?', '#'])
        && !prefix.chars().any(char::is_whitespace);
    if !valid {
        bail!("AWS_LAMBDA_RUNTIME_API must be host:port or an http:// URL");
    }
    // Without a port the URL means port 80.
    let authority = match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.ends_with(']') => {
            if port.parse::<u16>().is_err() {
                bail!("AWS_LAMBDA_RUNTIME_API has no valid port");
            }
            authority.to_string()
        }
        _ => format!("{authority}:80"),
    };
    Ok((authority, format!("{prefix}/2018-06-01")))
}

impl RuntimeApi {
    /// From `AWS_LAMBDA_RUNTIME_API`. Nothing is connected yet: the first request connects.
    pub fn from_env() -> anyhow::Result<Self> {
        let api = std::env::var("AWS_LAMBDA_RUNTIME_API")
            .context("AWS_LAMBDA_RUNTIME_API is not set: run this binary as a Lambda function (or under cargo lambda watch)")?;
        let (authority, base_path) = endpoint(&api)?;
        Ok(Self {
            authority,
            base_path,
            connection: tokio::sync::Mutex::new(None),
        })
    }

    /// Wait for the next event. An error means the Runtime API is gone: the process should exit.
    pub async fn next(&self) -> anyhow::Result<Invocation> {
        let path = format!("{}/runtime/invocation/next", self.base_path);
        loop {
            // No timeout: `next` is a long poll that may wait for hours between events.
            let response = self
                .send(Method::GET, &path, Bytes::new(), None)
                .await
                .context("Runtime API: next")?;
            // Some emulators answer 204 to keep the runtime polling.
            if response.status() == StatusCode::NO_CONTENT {
                response.into_body().collect().await.ok();
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
                .into_body()
                .collect()
                .await
                .context("Runtime API: reading the event")?
                .to_bytes();
            return Ok(Invocation {
                request_id,
                deadline_ms,
                body,
            });
        }
    }

    /// Report success with `body` (JSON).
    pub async fn respond(&self, request_id: &str, body: String) -> anyhow::Result<()> {
        let path = format!(
            "{}/runtime/invocation/{}/response",
            self.base_path,
            path_segment(request_id)
        );
        self.report(&path, body, None).await
    }

    /// Report a failed invocation: Lambda's async retries and the OnFailure destination take over.
    pub async fn fail(&self, request_id: &str, error: &Diagnostic) -> anyhow::Result<()> {
        let path = format!(
            "{}/runtime/invocation/{}/error",
            self.base_path,
            path_segment(request_id)
        );
        self.report(&path, error_body(error), Some(&error.error_type))
            .await
    }

    /// Report a failed init; the caller exits afterwards.
    pub async fn init_error(&self, error: &Diagnostic) -> anyhow::Result<()> {
        let path = format!("{}/runtime/init/error", self.base_path);
        let error_type = format!("Runtime.{}", error.error_type);
        self.report(&path, error_body(error), Some(&error_type))
            .await
    }

    async fn report(
        &self,
        path: &str,
        body: String,
        error_type: Option<&str>,
    ) -> anyhow::Result<()> {
        let exchange = async {
            let response = self
                .send(Method::POST, path, Bytes::from(body), error_type)
                .await?;
            let status = response.status();
            // Read the answer to its end, so the connection is ready for the next request.
            response.into_body().collect().await?;
            anyhow::Ok(status)
        };
        let status = tokio::time::timeout(REPORT_TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {} s", REPORT_TIMEOUT.as_secs()))
            .and_then(|answered| answered)
            .context("Runtime API: reporting a result")?;
        if !status.is_success() {
            bail!("Runtime API refused a result with HTTP {status}");
        }
        Ok(())
    }

    /// One request on the kept-open connection, connecting first when there is none (or the API closed
    /// it). A request that never left (the connection was found closed on the way) is sent once more on a
    /// fresh connection; one that may have reached the API is not repeated.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        error_type: Option<&str>,
    ) -> anyhow::Result<Response<Incoming>> {
        let mut connection = self.connection.lock().await;
        let mut fresh = false;
        loop {
            let sender = match connection.as_mut() {
                Some(sender) if !sender.is_closed() => sender,
                _ => {
                    fresh = true;
                    connection.insert(self.connect().await?)
                }
            };
            if sender.ready().await.is_err() {
                *connection = None;
                if fresh {
                    bail!("the connection closed before the request could be sent");
                }
                continue;
            }
            let mut request = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(header::HOST, &self.authority);
            if method == Method::POST {
                request = request.header(header::CONTENT_TYPE, "application/json");
            }
            if let Some(error_type) = error_type {
                request = request.header("Lambda-Runtime-Function-Error-Type", error_type);
            }
            let request = request
                .body(Full::new(body.clone()))
                .context("building the request")?;
            match sender.send_request(request).await {
                Ok(response) => return Ok(response),
                Err(e) => {
                    *connection = None;
                    if fresh || !e.is_canceled() {
                        return Err(e.into());
                    }
                }
            }
        }
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("connecting to {}", self.authority))?;
        // Requests are written whole; Nagle would only hold a small one back.
        stream.set_nodelay(true).ok();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("starting HTTP/1.1")?;
        // The connection's I/O runs as a task on this (single) thread; its errors reach the request.
        tokio::spawn(async move {
            connection.await.ok();
        });
        Ok(sender)
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

/// `request_id` as one segment of a path. Lambda's ids are UUIDs, which pass unchanged; anything else (an
/// emulator's own ids) is percent-encoded, so the answer still reaches the invocation it belongs to.
fn path_segment(request_id: &str) -> percent_encoding::PercentEncode<'_> {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(request_id, SEGMENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_runtime_api_address_in_every_shape_it_is_given() {
        let cases = [
            ("127.0.0.1:9001", ("127.0.0.1:9001", "/2018-06-01")),
            (
                "http://127.0.0.1:9000/.rt",
                ("127.0.0.1:9000", "/.rt/2018-06-01"),
            ),
            (
                "http://127.0.0.1:9000/.rt/",
                ("127.0.0.1:9000", "/.rt/2018-06-01"),
            ),
            (" localhost:9001 ", ("localhost:9001", "/2018-06-01")),
            ("http://localhost", ("localhost:80", "/2018-06-01")),
            ("[::1]:9001", ("[::1]:9001", "/2018-06-01")),
            ("http://[::1]", ("[::1]:80", "/2018-06-01")),
        ];
        for (given, (authority, base)) in cases {
            assert_eq!(
                endpoint(given).unwrap(),
                (authority.to_string(), base.to_string()),
                "{given}"
            );
        }
        for refused in [
            "https://x:1",
            "",
            "http://",
            "user@host:1",
            "host:1/a?b",
            "ho st:1",
        ] {
            assert!(endpoint(refused).is_err(), "{refused}");
        }
    }

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
