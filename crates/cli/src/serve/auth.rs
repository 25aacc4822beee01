//! Who may post audit events: a bearer token from `--token-file`, or a client certificate verified by the
//! TLS layer (optionally limited to `--client-name` CNs/DNS names, since a cluster CA signs many certificates).
//! Refusals say why in words that never contain the presented credential.

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use std::path::Path;

/// The verified client certificate of a connection, as names (subject CNs and DNS SANs).
#[derive(Debug, Clone, Default)]
pub struct PeerCert(pub Option<Vec<String>>);

impl PeerCert {
    /// Names of the first certificate rustls verified for this connection, if any.
    pub fn from_tls(certs: Option<&[rustls::pki_types::CertificateDer<'_>]>) -> Self {
        let Some(leaf) = certs.and_then(<[_]>::first) else {
            return Self(None);
        };
        let mut names = Vec::new();
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) {
            names.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok())
                    .map(str::to_string),
            );
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                names.extend(san.value.general_names.iter().filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                }));
            }
        }
        Self(Some(names))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// 401: no usable credential.
    Unauthenticated(&'static str),
    /// 403: a verified client certificate whose names are not allowed.
    Forbidden(String),
}

pub struct Auth {
    /// SHA-256 of each accepted token: compared as digests, never kept or logged in clear.
    tokens: Vec<[u8; 32]>,
    client_names: Vec<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .field("client_names", &self.client_names)
            .finish()
    }
}

impl Auth {
    /// Tokens: one per line (blank lines and `#` comments ignored), so a new token can be added before the
    /// old one is removed.
    pub fn load(token_file: Option<&Path>, client_names: Vec<String>) -> anyhow::Result<Self> {
        let mut tokens = Vec::new();
        if let Some(path) = token_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--token-file {}", path.display()))?;
            tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(digest),
            );
            anyhow::ensure!(
                !tokens.is_empty(),
                "--token-file {}: no token in it",
                path.display()
            );
        }
        Ok(Self {
            tokens,
            client_names,
        })
    }

    pub fn check(&self, peer: &PeerCert, authorization: Option<&str>) -> Result<(), Denied> {
        if let Some(names) = &peer.0 {
            if self.client_names.is_empty() || names.iter().any(|n| self.client_names.contains(n)) {
                return Ok(());
            }
            return Err(Denied::Forbidden(format!(
                "client certificate {names:?} is not in --client-name"
            )));
        }
        let Some(value) = authorization else {
            return Err(Denied::Unauthenticated(
                "no bearer token and no client certificate",
            ));
        };
        // The scheme is case-insensitive (RFC 9110 §11.1): `BEARER x` is a bearer token too.
        let Some(token) = value
            .trim_start()
            .split_once([' ', '\t'])
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
        else {
            return Err(Denied::Unauthenticated(
                "Authorization is not a bearer token",
            ));
        };
        let presented = digest(token.trim());
        if self.tokens.contains(&presented) {
            Ok(())
        } else {
            Err(Denied::Unauthenticated("bearer token not accepted"))
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn auth(names: &[&str]) -> Auth {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "# rotated weekly\nold-token\n\n new-token \n").unwrap();
        Auth::load(
            Some(file.path()),
            names.iter().map(|s| s.to_string()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn tokens_and_certificates() {
        let a = auth(&[]);
        let none = PeerCert(None);
        assert_eq!(a.check(&none, Some("Bearer new-token")), Ok(()));
        assert_eq!(a.check(&none, Some("Bearer old-token")), Ok(()));
        // Regression: the scheme is case-insensitive.
        for scheme in ["BEARER", "bearer", "BeArEr"] {
            assert_eq!(a.check(&none, Some(&format!("{scheme} new-token"))), Ok(()));
        }
        assert_eq!(a.check(&none, Some("Bearer   new-token")), Ok(()));
        assert!(matches!(
            a.check(&none, Some("Bearer guess")),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            a.check(&none, Some("Basic eDp5")),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            a.check(&none, None),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            a.check(&none, Some("Bearer # rotated weekly")),
            Err(Denied::Unauthenticated(_))
        ));
        let apiserver = PeerCert(Some(vec!["kube-apiserver".into()]));
        assert_eq!(
            a.check(&apiserver, None),
            Ok(()),
            "any verified certificate without --client-name"
        );
        let limited = auth(&["kube-apiserver"]);
        assert_eq!(limited.check(&apiserver, None), Ok(()));
        let kubelet = PeerCert(Some(vec!["system:node:n1".into()]));
        assert!(matches!(
            limited.check(&kubelet, Some("Bearer new-token")),
            Err(Denied::Forbidden(_))
        ));
        assert!(!format!("{limited:?}").contains("token\""), "{limited:?}");
    }

    #[test]
    fn an_empty_token_file_is_an_error_naming_the_flag() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "# nothing\n").unwrap();
        let err = Auth::load(Some(file.path()), vec![]).unwrap_err();
        assert!(err.to_string().contains("--token-file"), "{err}");
    }
}
