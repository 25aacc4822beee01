//! Checking an upload endpoint before trusting it with records (`kube-audit-forwarder doctor`): resolve its
//! host, complete a TLS handshake with exactly the uploader's trust roots, and, on request, upload one
//! synthetic record and return the receipt (`x-uploadid`) or the exact refusal.

use crate::batch::{BatchPlan, Limits};
use crate::client::{TrustRoots, Uploader};
use crate::{DeliveryError, InitError, error_chain};
use kaf_pipeline::OutRecord;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Why a probe failed. Messages never include the API key.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("upload URL {0} has no host")]
    NoHost(String),
    #[error("resolving {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("connecting to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("TLS handshake with {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error("{0}")]
    Init(#[from] InitError),
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
}

/// A completed handshake: where the host resolved to, what was negotiated, and the chain the server sent
/// (DER, leaf first), verified against the trust roots.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub host: String,
    pub port: u16,
    pub addresses: Vec<SocketAddr>,
    pub protocol: String,
    pub chain: Vec<Vec<u8>>,
}

/// Resolve `url`'s host and complete a TLS handshake with `trust`, each step within `timeout`.
pub async fn tls_handshake(
    url: &str,
    trust: &TrustRoots,
    timeout: Duration,
) -> Result<Handshake, ProbeError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| ProbeError::NoHost(url.to_string()))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| ProbeError::NoHost(url.to_string()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addresses: Vec<SocketAddr> = within(
        timeout,
        format!("DNS for {host}"),
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await?
    .map_err(|e| ProbeError::Resolve {
        host: host.clone(),
        reason: e.to_string(),
    })?
    .collect();
    let addr = *addresses.first().ok_or_else(|| ProbeError::Resolve {
        host: host.clone(),
        reason: "no addresses".into(),
    })?;
    let tcp = within(
        timeout,
        format!("{addr}"),
        tokio::net::TcpStream::connect(addr),
    )
    .await?
    .map_err(|e| ProbeError::Connect {
        addr,
        reason: e.to_string(),
    })?;
    let config = Arc::new(crate::client::tls_config(trust)?);
    let name =
        rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| ProbeError::Tls {
            host: host.clone(),
            reason: e.to_string(),
        })?;
    let tls = within(
        timeout,
        format!("the TLS handshake with {host}"),
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await?
    .map_err(|e| ProbeError::Tls {
        host: host.clone(),
        reason: error_chain(&e),
    })?;
    let (_, session) = tls.get_ref();
    Ok(Handshake {
        protocol: session
            .protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("TLS")
            .to_string(),
        chain: session
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.as_ref().to_vec())
            .collect(),
        host,
        port,
        addresses,
    })
}

/// `f`, or [`ProbeError::Timeout`] naming `what`.
async fn within<T>(
    timeout: Duration,
    what: String,
    f: impl Future<Output = T>,
) -> Result<T, ProbeError> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| ProbeError::Timeout(what, timeout))
}

impl Uploader {
    /// Upload `record` alone, once, without retries, and return the receipt (`x-uploadid`) or the exact
    /// refusal: what `doctor --send-test` reports.
    pub async fn send_probe(&self, record: &OutRecord) -> Result<String, DeliveryError> {
        let records = std::slice::from_ref(record);
        let plan = BatchPlan::new(records, Limits::default());
        let (body, _) = plan
            .gzip_body(0..1, self.settings().gzip_level)
            .map_err(|e| DeliveryError::Transient {
                last: format!("gzip: {e}"),
            })?;
        let id = crate::batch::upload_id("doctor", &record.event_id, &record.event_id, 1, "probe");
        self.post_once(&id, plan.log_size(0..1), body).await
    }
}
