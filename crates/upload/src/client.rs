//! The HTTP side: one [`Uploader`] per process (connection reuse), requests sent with bounded concurrency,
//! each retried with capped exponential backoff and full jitter until it succeeds, fails permanently, or the
//! caller's deadline (minus a safety margin) would be passed.

use crate::batch::{BatchPlan, Limits, upload_id};
use crate::retry::{Backoff, parse_retry_after};
use crate::{DeliveryError, InitError, error_chain};
use futures_util::stream::{self, StreamExt as _};
use kaf_config::{ApiKey, LogTypeConfig};
use kaf_pipeline::OutRecord;
use reqwest::header::{HeaderMap, HeaderValue};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Tunables; the defaults follow the contract (500 records, 5 MB, ~30 s read timeout).
#[derive(Debug, Clone)]
pub struct UploadSettings {
    pub limits: Limits,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Stop retrying this long before the deadline, so the caller can still report.
    pub safety_margin: Duration,
    pub user_agent: String,
    /// gzip level 0–9. The default, 6, costs 2–5 µs more CPU per event than 3 and sends 15–20% fewer bytes:
    /// where data transfer out is billed (Lambda, Azure Functions), the bytes cost far more than the CPU
    /// (BENCHMARKS.md, "what a level costs").
    pub gzip_level: u32,
    pub trust: TrustRoots,
}

/// Which CA certificates verify the upload endpoint. Verification itself is always on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TrustRoots {
    /// The system store; `SSL_CERT_FILE` / `SSL_CERT_DIR` replace it when set.
    #[default]
    System,
    /// Only the certificates of this PEM bundle (a private CA in front of the API, tests).
    PemFile(std::path::PathBuf),
}

impl Default for UploadSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            concurrency: 4,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            safety_margin: Duration::from_millis(1500),
            user_agent: format!("kube-audit-forwarder/{}", env!("CARGO_PKG_VERSION")),
            gzip_level: 6,
            trust: TrustRoots::System,
        }
    }
}

/// Counters of one delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadStats {
    /// HTTP attempts, retries included.
    pub requests: u64,
    pub retries: u64,
    /// Requests that finally failed.
    pub failed_requests: u64,
    pub records_delivered: u64,
    pub bytes_uncompressed: u64,
    pub bytes_compressed: u64,
}

impl std::ops::AddAssign for UploadStats {
    fn add_assign(&mut self, o: Self) {
        self.requests += o.requests;
        self.retries += o.retries;
        self.failed_requests += o.failed_requests;
        self.records_delivered += o.records_delivered;
        self.bytes_uncompressed += o.bytes_uncompressed;
        self.bytes_compressed += o.bytes_compressed;
    }
}

/// Records of one request that could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRequest {
    /// Indices into the records given to [`Uploader::deliver`].
    pub records: Range<usize>,
    pub error: DeliveryError,
}

/// The result of [`Uploader::deliver`]: everything delivered when `failed` is empty.
#[derive(Debug, Clone, Default)]
pub struct DeliveryOutcome {
    pub stats: UploadStats,
    pub failed: Vec<FailedRequest>,
}

impl DeliveryOutcome {
    /// Records not delivered.
    pub fn undelivered(&self) -> usize {
        self.failed.iter().map(|f| f.records.len()).sum()
    }

    /// The error to report for the whole delivery: the most severe one.
    pub fn worst_error(&self) -> Option<&DeliveryError> {
        self.failed
            .iter()
            .map(|f| &f.error)
            .max_by_key(|e| e.severity())
    }
}

/// Where and as whom to upload.
#[derive(Debug, Clone)]
struct Target {
    /// Parsed once: a URL string would be parsed again on every request.
    url: reqwest::Url,
    api_key: ApiKey,
    log_type: String,
}

/// Delivers records to the upload API.
#[derive(Debug, Clone)]
pub struct Uploader {
    http: reqwest::Client,
    target: Arc<Target>,
    settings: UploadSettings,
    /// Kept across requests and invocations: a new deflate stream zeroes 256 KiB of state.
    compressors: Arc<crate::gzip::Compressors>,
}

const QUOTA_SIGNALS: [&str; 4] = [
    "log_license_exceeds",
    "blocked_logtype",
    "invalid_logtype",
    "invalid_account",
];

/// The one HTTPS client configuration: rustls (ring), system roots, verification always on.
pub(crate) fn tls_config(trust: &TrustRoots) -> Result<rustls::ClientConfig, InitError> {
    let certs = match trust {
        TrustRoots::System => rustls_native_certs::load_native_certs().certs,
        TrustRoots::PemFile(path) => {
            let pem = std::fs::read(path).map_err(|e| InitError::CaFile(path.clone(), e))?;
            rustls::pki_types::pem::PemObject::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect()
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        // Unparsable certificates in a system bundle are skipped, as every TLS stack does.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(InitError::NoTrustRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Uploader {
    pub fn new(config: &LogTypeConfig, settings: UploadSettings) -> Result<Self, InitError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(&settings.trust)?)
            .https_only(true)
            // Never followed: see `DeliveryError::Redirected`.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(50))
            .user_agent(settings.user_agent.clone())
            .build()?;
        Ok(Self {
            http,
            target: Arc::new(Target {
                url: reqwest::Url::parse(&config.upload_url())
                    .map_err(|e| InitError::UploadUrl(e.to_string()))?,
                api_key: config.api_key.clone(),
                log_type: config.log_type.clone(),
            }),
            compressors: Arc::new(crate::gzip::Compressors::new(settings.gzip_level)),
            settings,
        })
    }

    pub fn settings(&self) -> &UploadSettings {
        &self.settings
    }

    /// Deliver `records` (from `source_key`, e.g. `cluster/stream`) before `deadline`.
    pub async fn deliver(
        &self,
        source_key: &str,
        records: &[OutRecord],
        deadline: Instant,
    ) -> DeliveryOutcome {
        let plan = BatchPlan::new(records, self.settings.limits);
        let halt: Mutex<Option<DeliveryError>> = Mutex::new(None);
        let ctx = Ctx {
            plan: &plan,
            records,
            source_key,
            deadline,
            halt: &halt,
        };
        let results: Vec<(UploadStats, Vec<FailedRequest>)> =
            stream::iter(plan.requests.iter().enumerate())
                .map(|(i, range)| self.send_range(&ctx, range.clone(), i.to_string()))
                .buffer_unordered(self.settings.concurrency.max(1))
                .collect()
                .await;
        let mut outcome = DeliveryOutcome::default();
        for (stats, failed) in results {
            outcome.stats += stats;
            outcome.failed.extend(failed);
        }
        outcome.failed.sort_by_key(|f| f.records.start);
        outcome
    }

    /// One request; on 413 its halves are sent instead (a record alone that is still too large is rejected).
    pub(crate) fn send_range<'a>(
        &'a self,
        ctx: &'a Ctx<'a>,
        range: Range<usize>,
        part: String,
    ) -> futures_util::future::BoxFuture<'a, (UploadStats, Vec<FailedRequest>)> {
        Box::pin(async move {
            let mut stats = UploadStats::default();
            match self
                .send_with_retry(ctx, range.clone(), &part, &mut stats)
                .await
            {
                Ok(()) => {
                    stats.records_delivered += range.len() as u64;
                    (stats, Vec::new())
                }
                Err(Failure::TooLarge) if range.len() > 1 => {
                    let mid = range.start + range.len() / 2;
                    let (s1, mut f1) = self
                        .send_range(ctx, range.start..mid, format!("{part}a"))
                        .await;
                    let (s2, f2) = self
                        .send_range(ctx, mid..range.end, format!("{part}b"))
                        .await;
                    stats += s1;
                    stats += s2;
                    f1.extend(f2);
                    (stats, f1)
                }
                Err(failure) => {
                    let error = match failure {
                        Failure::TooLarge => DeliveryError::Rejected { status: 413 },
                        Failure::Final(e) => e,
                    };
                    stats.failed_requests += 1;
                    (
                        stats,
                        vec![FailedRequest {
                            records: range,
                            error,
                        }],
                    )
                }
            }
        })
    }

    async fn send_with_retry(
        &self,
        ctx: &Ctx<'_>,
        range: Range<usize>,
        part: &str,
        stats: &mut UploadStats,
    ) -> Result<(), Failure> {
        let records = &ctx.records[range.clone()];
        let (first, last) = match (records.first(), records.last()) {
            (Some(f), Some(l)) => (f.event_id.as_str(), l.event_id.as_str()),
            _ => return Ok(()),
        };
        let id = upload_id(ctx.source_key, first, last, records.len(), part);
        let log_size = ctx.plan.log_size(range.clone());
        let (compressed, uncompressed_len) = self
            .compressors
            .with(|compressor| ctx.plan.gzip_body_with(range, compressor))
            .map_err(|e| {
                Failure::Final(DeliveryError::Transient {
                    last: format!("gzip: {e}"),
                })
            })?;
        let compressed = bytes::Bytes::from(compressed);
        stats.bytes_uncompressed += uncompressed_len as u64;
        stats.bytes_compressed += compressed.len() as u64;
        let headers = self.headers(&id, log_size)?;

        let stop_at = ctx
            .deadline
            .checked_sub(self.settings.safety_margin)
            .unwrap_or(ctx.deadline);
        let mut backoff = Backoff::new(self.settings.backoff_base, self.settings.backoff_max);
        // The first failure's reason: a last attempt that the deadline cut short only says "timeout".
        let mut first_reason: Option<String> = None;
        // The latest failure's reason: a backoff can end just past the deadline, and the error must still say
        // why the attempts failed.
        let mut last_reason: Option<String> = None;
        loop {
            if let Some(e) = ctx.halt.lock().ok().and_then(|h| h.clone()) {
                return Err(Failure::Final(e));
            }
            let now = Instant::now();
            if now >= stop_at {
                let last = last_reason
                    .take()
                    .unwrap_or_else(|| "deadline reached before the first attempt".into());
                return Err(Failure::Final(DeliveryError::Transient { last }));
            }
            let timeout = self.settings.request_timeout.min(stop_at - now);
            stats.requests += 1;
            let sent = self
                .http
                .post(self.target.url.clone())
                .headers(headers.clone())
                .body(compressed.clone())
                .timeout(timeout)
                .send()
                .await;
            let cut_short = timeout < self.settings.request_timeout;
            let (mut reason, retry_after) = match classify(sent) {
                Verdict::Delivered => return Ok(()),
                Verdict::TooLarge => return Err(Failure::TooLarge),
                Verdict::Final(e) => {
                    if let Ok(mut h) = ctx.halt.lock() {
                        h.get_or_insert_with(|| e.clone());
                    }
                    return Err(Failure::Final(e));
                }
                Verdict::Retry {
                    reason,
                    retry_after,
                } => (reason, retry_after),
            };
            match &first_reason {
                None => first_reason = Some(reason.clone()),
                Some(first) if cut_short && reason.starts_with("timeout") && first != &reason => {
                    reason = format!("{first} (the last attempt was cut short by the deadline)");
                }
                Some(_) => {}
            }
            last_reason = Some(reason.clone());
            let delay = backoff.next_delay_with_hint(retry_after);
            tracing::warn!(upload_id = %id, attempt = backoff.attempts(), %reason, delay_ms = delay.as_millis() as u64, "upload failed, retrying");
            if !Backoff::wait(delay, Some(stop_at)).await {
                let last = match retry_after {
                    Some(hint) if hint >= delay => format!(
                        "{reason}; the server asked to retry after {} s, past the deadline",
                        hint.as_secs()
                    ),
                    _ => reason,
                };
                return Err(Failure::Final(DeliveryError::Transient { last }));
            }
            stats.retries += 1;
        }
    }

    /// One POST of a gzip'd `body` with every header of the contract, no retry: the receipt, or why not.
    pub(crate) async fn post_once(
        &self,
        id: &str,
        log_size: u64,
        body: Vec<u8>,
    ) -> Result<String, DeliveryError> {
        let headers = self.headers(id, log_size).map_err(|f| match f {
            Failure::Final(e) => e,
            Failure::TooLarge => DeliveryError::Rejected { status: 413 },
        })?;
        let sent = self
            .http
            .post(self.target.url.clone())
            .headers(headers)
            .body(body)
            .timeout(self.settings.request_timeout)
            .send()
            .await;
        let receipt = sent.as_ref().ok().and_then(|r| {
            r.headers()
                .get("x-uploadid")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
        match classify(sent) {
            Verdict::Delivered => Ok(receipt.unwrap_or_default()),
            Verdict::TooLarge => Err(DeliveryError::Rejected { status: 413 }),
            Verdict::Final(e) => Err(e),
            Verdict::Retry { reason, .. } => Err(DeliveryError::Transient { last: reason }),
        }
    }

    fn headers(&self, id: &str, log_size: u64) -> Result<HeaderMap, Failure> {
        let bad_config = |_| Failure::Final(DeliveryError::Rejected { status: 0 });
        let mut h = HeaderMap::new();
        let mut key = HeaderValue::from_str(self.target.api_key.expose()).map_err(bad_config)?;
        key.set_sensitive(true);
        h.insert("X-DeviceKey", key);
        h.insert(
            "X-LogType",
            HeaderValue::from_str(&self.target.log_type).map_err(bad_config)?,
        );
        h.insert("X-StreamMode", HeaderValue::from_static("1"));
        h.insert("Log-Size", HeaderValue::from(log_size));
        h.insert("Content-Type", HeaderValue::from_static("application/json"));
        h.insert("Content-Encoding", HeaderValue::from_static("gzip"));
        h.insert("upload-id", HeaderValue::from_str(id).map_err(bad_config)?);
        Ok(h)
    }
}

pub(crate) struct Ctx<'a> {
    pub(crate) plan: &'a BatchPlan<'a>,
    pub(crate) records: &'a [OutRecord],
    pub(crate) source_key: &'a str,
    pub(crate) deadline: Instant,
    /// After a quota or configuration refusal, requests not yet sent fail the same way without being sent.
    pub(crate) halt: &'a Mutex<Option<DeliveryError>>,
}

enum Failure {
    TooLarge,
    Final(DeliveryError),
}

enum Verdict {
    Delivered,
    TooLarge,
    Final(DeliveryError),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

fn classify(sent: Result<reqwest::Response, reqwest::Error>) -> Verdict {
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            let kind = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect error"
            } else {
                "connection error"
            };
            return Verdict::Retry {
                reason: format!("{kind}: {}", error_chain(&e.without_url())),
                retry_after: None,
            };
        }
    };
    let status = resp.status().as_u16();
    let headers = resp.headers();
    // Both header conventions (fluent: lower-case on 400; logstash: upper-case on 200): check every response.
    if let Some(signal) = quota_signal(headers) {
        return Verdict::Final(DeliveryError::Quota { signal, status });
    }
    match status {
        // An empty id is no receipt either.
        200 if headers
            .get("x-uploadid")
            .is_some_and(|v| !v.as_bytes().trim_ascii().is_empty()) =>
        {
            Verdict::Delivered
        }
        200 => Verdict::Retry {
            reason: "HTTP 200 without x-uploadid".into(),
            retry_after: None,
        },
        300..=399 => Verdict::Final(DeliveryError::Redirected {
            status,
            location: redirect_target(resp.url(), headers),
        }),
        413 => Verdict::TooLarge,
        429 | 500..=599 => Verdict::Retry {
            reason: format!("HTTP {status}"),
            retry_after: headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now())),
        },
        _ => Verdict::Final(DeliveryError::Rejected { status }),
    }
}

/// Where a redirect points, as an operator needs it: the host (never a path or query, which could carry
/// anything), or that it stays on the same host.
fn redirect_target(from: &reqwest::Url, headers: &HeaderMap) -> String {
    let Some(location) = headers.get("location").and_then(|v| v.to_str().ok()) else {
        return "no Location".into();
    };
    match from.join(location.trim()) {
        Ok(to) => match to.host_str() {
            Some(host) if to.host_str() == from.host_str() && to.port() == from.port() => {
                format!("the same host ({host})")
            }
            Some(host) => match to.port() {
                Some(port) => format!("host `{host}:{port}`"),
                None => format!("host `{host}`"),
            },
            None => "a Location without a host".into(),
        },
        Err(_) => "an unreadable Location".into(),
    }
}

fn quota_signal(headers: &HeaderMap) -> Option<String> {
    headers.iter().find_map(|(name, value)| {
        let name = name.as_str(); // lower-case already
        let value = value.to_str().ok()?.trim();
        let signalled = (QUOTA_SIGNALS.contains(&name) && value.eq_ignore_ascii_case("true"))
            || (name == "api_upload_enabled" && value.eq_ignore_ascii_case("false"));
        signalled.then(|| name.to_ascii_uppercase())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn quota_headers_are_recognised_in_any_letter_case() {
        let mut h = HeaderMap::new();
        h.insert("LOG_LICENSE_EXCEEDS", HeaderValue::from_static("True"));
        assert_eq!(quota_signal(&h).as_deref(), Some("LOG_LICENSE_EXCEEDS"));
        let mut h = HeaderMap::new();
        h.insert("blocked_logtype", HeaderValue::from_static("false"));
        assert_eq!(quota_signal(&h), None);
        h.insert("Api_Upload_Enabled", HeaderValue::from_static("FALSE"));
        assert_eq!(quota_signal(&h).as_deref(), Some("API_UPLOAD_ENABLED"));
    }
}
