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
    /// No address of the host took a connection: each address with its reason.
    #[error("connecting to {host}: {reasons}")]
    Connect { host: String, reasons: String },
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
    /// The address that took the connection (the first that did, in the resolver's order).
    pub connected: SocketAddr,
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
    if addresses.is_empty() {
        return Err(ProbeError::Resolve {
            host,
            reason: "no addresses".into(),
        });
    }
    handshake_at(host, port, addresses, trust, timeout).await
}

/// [`tls_handshake`] with `host` resolved to `addresses`. Each address is tried in turn, as the uploader's
/// connector tries them: one that refuses (an IPv6 address on a network without IPv6) must not fail the
/// check while the next one works.
async fn handshake_at(
    host: String,
    port: u16,
    addresses: Vec<SocketAddr>,
    trust: &TrustRoots,
    timeout: Duration,
) -> Result<Handshake, ProbeError> {
    let mut refusals = Vec::new();
    let mut connected = None;
    for &addr in &addresses {
        match within(
            timeout,
            addr.to_string(),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(tcp)) => {
                connected = Some((addr, tcp));
                break;
            }
            Ok(Err(e)) => refusals.push(format!("{addr}: {e}")),
            Err(timed_out) => refusals.push(timed_out.to_string()),
        }
    }
    let Some((connected, tcp)) = connected else {
        return Err(ProbeError::Connect {
            host,
            reasons: refusals.join("; "),
        });
    };
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
        connected,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kaf_testkit::receiver::Receiver;

    #[tokio::test]
    async fn an_address_that_refuses_is_passed_over_for_the_next() {
        let rx = Receiver::start("key", "type").await;
        // A port nothing listens on any more.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let trust = TrustRoots::PemFile(rx.ca_file.clone());
        let timeout = Duration::from_secs(10);
        let host = || "127.0.0.1".to_string();

        let handshake = handshake_at(
            host(),
            rx.addr.port(),
            vec![closed, rx.addr],
            &trust,
            timeout,
        )
        .await
        .unwrap();
        assert_eq!(handshake.connected, rx.addr);
        assert_eq!(handshake.addresses, vec![closed, rx.addr]);
        assert!(!handshake.chain.is_empty());

        let refused = handshake_at(host(), closed.port(), vec![closed, closed], &trust, timeout)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.starts_with("connecting to 127.0.0.1: "),
            "{refused}"
        );
        assert_eq!(refused.matches(&closed.to_string()).count(), 2, "{refused}");
    }
}
