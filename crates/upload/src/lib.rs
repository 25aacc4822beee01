//! Upload client for the Site24x7-style AppLogs API: the last step of the path.
//!
//! It defines the record format the pipeline renders to ([`format::SITE24X7`]), takes the pipeline's records and
//! delivers them: split into requests within the API limits
//! ([`batch`]: ≤500 records, ≤5 MB uncompressed), each a gzip'd JSON array with every header of the contract
//! and a deterministic `upload-id` (a retried invocation resends the same id), sent with bounded concurrency
//! and retried with capped exponential backoff and jitter inside the caller's deadline ([`client`]).
//!
//! Every failure is classified once ([`DeliveryError`]): transient (worth retrying later), quota (the account
//! or log type is blocked: retrying now will not help) or rejected (configuration: bad key, bad request).
//! The caller decides what to do with the records of failed requests — the Lambda returns an error so that
//! Lambda's async retries and the OnFailure destination keep them; other callers park them.
//!
//! TLS uses rustls with the system trust store (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured); verification
//! cannot be switched off.

pub mod batch;
pub mod client;
pub mod env;
pub mod format;
pub mod forward;
pub mod gzip;
pub mod probe;
pub mod retry;
pub mod summary;

pub use batch::{BatchPlan, Limits};
pub use client::{
    DeliveryOutcome, FailedRequest, TrustRoots, UploadSettings, UploadStats, Uploader,
};
pub use forward::{FailedChunk, Forwarded, UploadSink, worst_error};
pub use summary::Summary;

/// Why a request was not delivered. Messages never include the API key or record content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Network errors, timeouts, 429, 5xx, 200 without `x-uploadid`, still failing at the deadline.
    #[error("transient upload failure, retries exhausted within the deadline: {last}")]
    Transient { last: String },
    /// The service signalled a quota or account condition (e.g. `LOG_LICENSE_EXCEEDS`): do not retry blindly.
    #[error("upload refused by quota or account signal `{signal}` (HTTP {status})")]
    Quota { signal: String, status: u16 },
    /// The request itself was refused (401/403: bad apiKey; other 4xx): retrying cannot help.
    #[error("upload rejected with HTTP {status}: check apiKey, logType and uploadDomain")]
    Rejected { status: u16 },
    /// The endpoint answered with a redirect. Redirects are never followed: a 301–303 would turn the POST into
    /// a GET without the records, and a 307/308 would hand `X-DeviceKey` to whichever host it names.
    #[error(
        "upload endpoint answered HTTP {status} redirecting to {location}; redirects are never followed: set uploadDomain to the final host"
    )]
    Redirected { status: u16, location: String },
}

impl DeliveryError {
    /// Stable class name, for error types, metrics and exit codes.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Transient { .. } => "transient",
            Self::Quota { .. } => "quota",
            Self::Rejected { .. } | Self::Redirected { .. } => "configuration",
        }
    }

    /// Order used to report the one error of a run that had several: configuration first, then quota.
    pub fn severity(&self) -> u8 {
        match self {
            Self::Rejected { .. } | Self::Redirected { .. } => 3,
            Self::Quota { .. } => 2,
            Self::Transient { .. } => 1,
        }
    }
}

/// `error` and every error behind it, `: `-separated, with repeats dropped: what an operator needs to tell an
/// unknown CA from an expired certificate or a refused connection (`error sending request: client error
/// (Connect): invalid peer certificate: UnknownIssuer`). Errors of this crate's stack never hold the key.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// The upload client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("no trusted root certificates found (system store, SSL_CERT_FILE, SSL_CERT_DIR)")]
    NoTrustRoots,
    #[error("cannot read CA file {0}: {1}")]
    CaFile(std::path::PathBuf, std::io::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The upload domain does not make a URL (the config crate checks it first; this should not be seen).
    #[error("the upload domain does not make a valid URL: {0}")]
    UploadUrl(String),
}

/// A client for loopback HTTP (the Lambda Runtime API, the Parameters and Secrets extension on
/// localhost:2773): same TLS stack as the uploader, without the HTTPS-only rule, never following redirects.
/// `timeout` bounds each request as a whole; `None` for long polls.
pub fn local_http_client(
    timeout: Option<std::time::Duration>,
) -> Result<reqwest::Client, InitError> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    Ok(builder.build()?)
}
